//! The engine's scheduling at scale: CPU per send tick (choosing the next
//! due block and reading its ciphertext) and per housekeeping pass, with
//! 10 to 100,000 queued entries; it must stay flat. For comparison,
//! `full_scan` is what every send tick did before the schedule was indexed
//! (open and decrypt every queue entry).
//!
//! Then, printed: the time to prepare a 25 MiB entry and pick its first
//! block (what lies between the SMTP 250 and the first packet, besides at
//! most one housekeeping interval and one Poisson wait), with one commit
//! per block (as before) and with bounded batches (now).
//!
//! Printed at the end: the 100k/10 ratios of both, and the 25 MiB figures.
//! Run: `cargo bench -p mailproxyd --bench engine_schedule` (about 90 s;
//! `--profile dev` reuses the test build).

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use mailproxyd::engine::schedule_bench::{fill_queue, SendQueue};
use mailproxyd::store::{KeySource, NewQueueEntry, StorageKey, Store};

const SIZES: [usize; 4] = [10, 1_000, 10_000, 100_000];
/// Largest queue the (linear) full scan is measured at.
const FULL_SCAN_MAX: usize = 10_000;

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, &KeySource::Raw(StorageKey::from_bytes([9; 32]))).unwrap()
}

/// A filled queue of `n` entries and its schedule.
struct Filled {
    n: usize,
    store: Store,
    queue: SendQueue,
    _dir: tempfile::TempDir,
}

fn fill(n: usize) -> Filled {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let t = Instant::now();
    fill_queue(&store, n, "bob@p2").unwrap();
    let queue = SendQueue::load(store.clone(), [4; 32], None).unwrap();
    assert_eq!(queue.len(), n);
    eprintln!("{n} entries queued and loaded in {:.2?}", t.elapsed());
    Filled {
        n,
        store,
        queue,
        _dir: dir,
    }
}

fn schedule(c: &mut Criterion, filled: &[Filled]) {
    let mut g = c.benchmark_group("engine_schedule");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for f in filled {
        let (n, q, store) = (f.n, &f.queue, &f.store);
        g.bench_with_input(BenchmarkId::new("send_tick", n), &n, |b, _| {
            b.iter(|| assert!(q.pick().unwrap().is_some()))
        });
        g.bench_with_input(BenchmarkId::new("housekeeping", n), &n, |b, _| {
            b.iter(|| q.housekeeping().unwrap())
        });
        if n <= FULL_SCAN_MAX {
            g.bench_with_input(BenchmarkId::new("full_scan", n), &n, |b, _| {
                b.iter(|| {
                    let mut found = 0;
                    for id in store.queue_ids().unwrap() {
                        found += usize::from(store.queue_get(id).unwrap().is_some());
                    }
                    assert_eq!(found, n);
                })
            });
        }
    }
    g.finish();
}

/// Mean time of `f` over `runs` calls.
fn mean(runs: u32, mut f: impl FnMut()) -> Duration {
    let t = Instant::now();
    for _ in 0..runs {
        f();
    }
    t.elapsed() / runs
}

/// The largest queue's cost per operation over the smallest's.
fn ratios(filled: &[Filled]) {
    let (small, large) = (&filled[0], &filled[filled.len() - 1]);
    let tick = |f: &Filled| {
        mean(20_000, || {
            f.queue.pick().unwrap();
        })
    };
    let pass = |f: &Filled| mean(200_000, || f.queue.housekeeping().unwrap());
    for (what, a, b) in [
        ("send tick", tick(small), tick(large)),
        ("housekeeping pass", pass(small), pass(large)),
    ] {
        println!(
            "{what}: {a:.2?} at {} entries, {b:.2?} at {}: ratio {:.2}",
            small.n,
            large.n,
            b.as_secs_f64() / a.as_secs_f64()
        );
    }
}

/// Enqueues a 25 MiB message and times preparing it and picking its first
/// block, with ciphertext commits of `batch` bytes.
fn first_block(batch: Option<usize>) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut msg = b"Subject: big\r\n\r\n".to_vec();
    msg.resize(25 << 20, b'x');
    let to = NewQueueEntry {
        recipient: "bob@p2".into(),
        created: 1,
        bounce_at: 0,
        unreliable: false,
    };
    store.enqueue("alice", &msg, &[to]).unwrap();
    let q = SendQueue::load(store, [4; 32], batch).unwrap();
    let t = Instant::now();
    let (_, block) = q.pick().unwrap().expect("a block");
    assert_eq!(block, 0);
    t.elapsed()
}

fn enqueue_to_first_block() {
    for (label, batch) in [
        ("one commit per block (before)", Some(0)),
        ("batched (now)", None),
    ] {
        let runs: Vec<Duration> = (0..3).map(|_| first_block(batch)).collect();
        println!("25 MiB entry, prepare + first block, {label}: {runs:.2?}");
    }
}

fn main() {
    let filled: Vec<Filled> = SIZES.into_iter().map(fill).collect();
    let mut c = Criterion::default().configure_from_args();
    schedule(&mut c, &filled);
    ratios(&filled);
    enqueue_to_first_block();
    c.final_summary();
}
