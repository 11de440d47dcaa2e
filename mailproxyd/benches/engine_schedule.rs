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
//! Run: `cargo bench -p mailproxyd --bench engine_schedule` (or
//! `scripts/bench-engine`, which also prints the 100k/10 ratios).

use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion};
use mailproxyd::engine::schedule_bench::{fill_queue, SendQueue};
use mailproxyd::store::{KeySource, NewQueueEntry, StorageKey, Store};

const SIZES: [usize; 4] = [10, 1_000, 10_000, 100_000];
/// Largest queue the (linear) full scan is measured at.
const FULL_SCAN_MAX: usize = 10_000;

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, &KeySource::Raw(StorageKey::from_bytes([9; 32]))).unwrap()
}

fn schedule(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine_schedule");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in SIZES {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let t = Instant::now();
        fill_queue(&store, n, "bob@p2").unwrap();
        let q = SendQueue::load(store.clone(), [4; 32], None).unwrap();
        assert_eq!(q.len(), n);
        eprintln!("{n} entries queued and loaded in {:?}", t.elapsed());
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
    for (label, batch) in [("one commit per block (before)", Some(0)), ("batched (now)", None)] {
        let runs: Vec<Duration> = (0..3).map(|_| first_block(batch)).collect();
        println!("25 MiB entry, prepare + first block, {label}: {runs:.2?}");
    }
}

criterion_group!(benches, schedule);

fn main() {
    benches();
    enqueue_to_first_block();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
