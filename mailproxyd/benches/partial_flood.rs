//! The partial-message flood of issue 12: process RSS and store size while
//! distinct partial messages from random senders arrive at one account.
//!
//! Drives the engine's real receive path in-process (`Incoming::load`, then
//! `accept` per payload, through the hidden `engine::bench` module) on a
//! real store. Each payload is the first block (of 2) of a distinct message
//! from a fresh random sender key, encrypted to the account's identity key
//! on the fly (generating 100,000 payloads of 51 KB up front would be 5 GB);
//! the time spent encrypting is reported apart.
//!
//! Prints, after the empty store is loaded, when the bound is first reached,
//! every `--every` messages and at the end: messages, VmRSS and VmHWM, the
//! store file's size, the in-memory index (partial messages and their stored
//! bytes), elapsed time and rates. The references, measured in the same run:
//! RSS after loading the empty store and when the bound is reached (from
//! there on RSS must stay flat), and a bare store loop making the same
//! commits with the same bytes and no receive logic (`kv_put` of a block
//! record, `kv_remove_many` of the oldest once the bound is held), run in a
//! child process (its store's cache stays out of the flood's RSS) before and
//! after the flood, since commit rates swing with the machine's load.
//!
//! `cargo bench -p mailproxyd --bench partial_flood -- --messages 20000`
//! (defaults: 100,000 messages and the daemon's default `[Limits]`).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use katzenpost::block::{encrypt_block, fragments, Block};
use katzenpost::geometry::{BLOCK_LENGTH, BLOCK_PAYLOAD_LENGTH};
use mailproxyd::engine::bench::{Incoming, Outcome};
use mailproxyd::engine::{PartialLimits, Timings};
use mailproxyd::store::{KeySource, KvTable, StorageKey, Store, DB_FILE};
use rand::RngCore;

const ACCOUNT: &str = "bob@provider";
/// Bytes one stored block takes in `KvTable::Partial` (first-seen time and
/// the block's encoding), as the receive path counts them.
const STORED_BLOCK_BYTES: u64 = 8 + BLOCK_LENGTH as u64;

#[derive(Parser, Debug)]
#[command(about = "RSS and store size under a flood of partial incoming messages")]
struct Args {
    /// Distinct partial messages to send.
    #[arg(long, default_value_t = 100_000)]
    messages: usize,
    /// Print a line every this many messages.
    #[arg(long, default_value_t = 10_000)]
    every: usize,
    /// `[Limits]`: most partial messages held (default as the daemon's).
    #[arg(long)]
    limit_messages: Option<usize>,
    /// `[Limits]`: most bytes of partial blocks held.
    #[arg(long)]
    limit_bytes: Option<u64>,
    /// Records the bare store reference loop writes (default: min(messages, 10,000)).
    #[arg(long)]
    reference: Option<usize>,
    /// Where the stores go (default: a temporary directory under cargo's
    /// target directory, on a real disk).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Run only the bare store loop in this directory and print its rate
    /// (the parent runs itself so).
    #[arg(long, hide = true)]
    reference_only: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// VmRSS and VmHWM of this process, in KiB.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn file_size(dir: &Path) -> u64 {
    std::fs::metadata(dir.join(DB_FILE)).map_or(0, |m| m.len())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn open(dir: &Path) -> Store {
    std::fs::create_dir_all(dir).unwrap();
    Store::open(dir, &KeySource::Raw(StorageKey::from_bytes([5; 32]))).unwrap()
}

/// Makes the payloads: the first block of a distinct 2-block message from a
/// new random sender each time, encrypted to `recipient`.
struct Payloads {
    recipient: [u8; 32],
    message: Vec<u8>,
    rng: rand::rngs::ThreadRng,
    /// Time spent making them.
    spent: Duration,
}

impl Payloads {
    fn new(recipient: [u8; 32]) -> Self {
        Payloads {
            recipient,
            message: vec![b'f'; BLOCK_PAYLOAD_LENGTH + 1],
            rng: rand::thread_rng(),
            spent: Duration::ZERO,
        }
    }

    fn first_block(&mut self) -> Block {
        let mut id = [0u8; 16];
        self.rng.fill_bytes(&mut id);
        let mut blocks = fragments(id, &self.message).unwrap();
        assert_eq!(blocks.len(), 2);
        blocks.next().unwrap().to_block()
    }

    fn payload(&mut self) -> Vec<u8> {
        let t = Instant::now();
        let mut sender = [0u8; 32];
        self.rng.fill_bytes(&mut sender);
        let block = self.first_block();
        let ct = encrypt_block(&sender, &self.recipient, &block).unwrap();
        self.spent += t.elapsed();
        ct
    }
}

struct Line<'a> {
    label: &'a str,
    messages: usize,
    dir: &'a Path,
    usage: (usize, u64),
    elapsed: Duration,
    interval_rate: Option<f64>,
    generate: Duration,
}

fn header() {
    println!(
        "{:<10} {:>9} {:>10} {:>10} {:>11} {:>9} {:>11} {:>9} {:>10} {:>10} {:>8}",
        "point",
        "messages",
        "VmRSS_KiB",
        "VmHWM_KiB",
        "store_MiB",
        "partials",
        "index_MiB",
        "elapsed_s",
        "msg/s",
        "interval/s",
        "encrypt%"
    );
}

fn print(l: &Line) {
    let (rss, hwm) = rss();
    let secs = l.elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        l.messages as f64 / secs
    } else {
        0.0
    };
    let enc = if secs > 0.0 {
        100.0 * l.generate.as_secs_f64() / secs
    } else {
        0.0
    };
    println!(
        "{:<10} {:>9} {:>10} {:>10} {:>11.1} {:>9} {:>11.1} {:>9.1} {:>10.0} {:>10} {:>8.1}",
        l.label,
        l.messages,
        rss,
        hwm,
        mib(file_size(l.dir)),
        l.usage.0,
        mib(l.usage.1),
        secs,
        rate,
        l.interval_rate.map_or("-".into(), |r| format!("{r:.0}")),
        enc
    );
}

/// The flood through the receive path, printing as it goes; what the
/// summary needs.
fn flood(args: &Args, limits: PartialLimits, dir: &Path) -> FloodResult {
    let (rss_start, _) = rss();
    let store = open(dir);
    let mut identity = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut identity);
    let recipient = katzenpost::sphinx::public_key(&identity);
    let coalesce = Timings::default().report_coalesce;
    let mut inc = Incoming::load(&store, 1000, coalesce, limits, ACCOUNT).unwrap();
    let (rss_empty, _) = rss();
    println!(
        "flood: {} messages, limits {} messages / {:.0} MiB total, {} / {:.0} MiB per sender; store in {}",
        args.messages,
        limits.messages,
        mib(limits.bytes),
        limits.messages_per_sender,
        mib(limits.bytes_per_sender),
        dir.display()
    );
    header();
    let start = Instant::now();
    let mut payloads = Payloads::new(recipient);
    let line = |label: &str, n: usize, inc: &Incoming, p: &Payloads, interval: Option<f64>| {
        print(&Line {
            label,
            messages: n,
            dir,
            usage: inc.partial_usage(),
            elapsed: start.elapsed(),
            interval_rate: interval,
            generate: p.spent,
        })
    };
    line("empty", 0, &inc, &payloads, None);
    let mut rss_bound = None;
    let mut other = 0usize;
    let mut last = (0usize, Instant::now());
    for i in 1..=args.messages {
        let ct = payloads.payload();
        match inc.accept(&store, &identity, &ct, ACCOUNT).unwrap() {
            Outcome::Stored => {}
            o => {
                other += 1;
                if other <= 5 {
                    eprintln!("message {i}: {o:?} (expected Stored)");
                }
            }
        }
        let (held, bytes) = inc.partial_usage();
        assert!(
            held <= limits.messages && bytes <= limits.bytes,
            "index over the bound at message {i}: {held} messages, {bytes} bytes"
        );
        let at_bound = i == limits.messages;
        if at_bound || i % args.every == 0 || i == args.messages {
            let interval = (i - last.0) as f64 / last.1.elapsed().as_secs_f64();
            last = (i, Instant::now());
            let label = if at_bound {
                "bound"
            } else if i == args.messages {
                "end"
            } else {
                "flood"
            };
            line(label, i, &inc, &payloads, Some(interval));
            if at_bound {
                rss_bound = Some(rss().0);
            }
        }
    }
    let elapsed = start.elapsed();
    let (rss_end, hwm) = rss();
    // The disk agrees with the index, and one report covers every drop.
    let mut on_disk = 0usize;
    store
        .kv_for_each(KvTable::Partial, |_, _| {
            on_disk += 1;
            Ok(())
        })
        .unwrap();
    let (held, bytes) = inc.partial_usage();
    let reports = store.inbox_len().unwrap();
    println!(
        "end: {held} partials in the index ({:.1} MiB of blocks), {on_disk} records in the Partial table, {reports} report(s) in the inbox, {other} payload(s) not Stored",
        mib(bytes)
    );
    FloodResult {
        elapsed,
        generate: payloads.spent,
        rss_start,
        rss_empty,
        rss_bound,
        rss_end,
        hwm,
        store_bytes: file_size(dir),
        index_bytes: bytes,
    }
}

struct FloodResult {
    elapsed: Duration,
    generate: Duration,
    rss_start: u64,
    rss_empty: u64,
    rss_bound: Option<u64>,
    rss_end: u64,
    hwm: u64,
    store_bytes: u64,
    index_bytes: u64,
}

/// The same commits with the same bytes straight on a store: a block record
/// put per message, and once `bound` records are held the oldest removed
/// first (as `accept` drops its victim, then stores). Returns records/s.
fn reference(n: usize, bound: usize, dir: &Path) -> f64 {
    let store = open(dir);
    let mut rng = rand::thread_rng();
    let mut value = vec![0u8; STORED_BLOCK_BYTES as usize];
    rng.fill_bytes(&mut value);
    let mut held: VecDeque<Vec<u8>> = VecDeque::new();
    let start = Instant::now();
    for _ in 0..n {
        // Sender key, message id, block id: the receive path's key shape.
        let mut key = vec![0u8; 32 + 16 + 2];
        rng.fill_bytes(&mut key);
        if held.len() >= bound {
            let old = held.pop_front().unwrap();
            store.kv_remove_many(KvTable::Partial, &[old]).unwrap();
        }
        store.kv_put(KvTable::Partial, &key, &value).unwrap();
        held.push_back(key);
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Runs [`reference`] in a child process (this program again); records/s.
fn reference_child(n: usize, bound: usize, dir: &Path) -> f64 {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--reference", &n.to_string()])
        .args(["--limit-messages", &bound.to_string()])
        .arg("--reference-only")
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "reference loop failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn main() {
    let args = Args::parse();
    let defaults = PartialLimits::default();
    let limits = PartialLimits {
        messages: args.limit_messages.unwrap_or(defaults.messages),
        bytes: args.limit_bytes.unwrap_or(defaults.bytes),
        ..defaults
    };
    if let Some(dir) = &args.reference_only {
        let n = args.reference.unwrap_or(10_000);
        println!("{}", reference(n, limits.messages, dir));
        return;
    }
    let base = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).unwrap();
            tempfile::tempdir_in(d).unwrap()
        }
        None => tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap(),
    };
    let n_ref = args.reference.unwrap_or(args.messages.min(10_000));
    let ref_before = reference_child(n_ref, limits.messages, &base.path().join("ref-before"));
    let f = flood(&args, limits, &base.path().join("flood"));
    let ref_after = reference_child(n_ref, limits.messages, &base.path().join("ref-after"));

    let secs = f.elapsed.as_secs_f64();
    let rate = args.messages as f64 / secs;
    let accept_secs = (f.elapsed - f.generate).as_secs_f64();
    let accept_rate = args.messages as f64 / accept_secs;
    println!();
    println!("summary");
    println!(
        "  RSS KiB: process start {}, empty store loaded {}, bound reached {}, end {} (peak {})",
        f.rss_start,
        f.rss_empty,
        f.rss_bound.map_or("-".into(), |r| r.to_string()),
        f.rss_end,
        f.hwm
    );
    if let Some(b) = f.rss_bound {
        println!(
            "  RSS growth from the bound to the end: {:+} KiB ({:+.1}%) over {} more messages",
            f.rss_end as i64 - b as i64,
            100.0 * (f.rss_end as f64 - b as f64) / b as f64,
            args.messages - limits.messages
        );
    }
    println!(
        "  store file {:.1} MiB for {:.1} MiB of partial blocks held ({:.2}x); bound {:.0} MiB",
        mib(f.store_bytes),
        mib(f.index_bytes),
        f.store_bytes as f64 / f.index_bytes.max(1) as f64,
        mib(limits.bytes)
    );
    println!(
        "  rate {rate:.0} msg/s overall; {accept_rate:.0} msg/s in accept alone; encrypting the payloads took {:.1} s ({:.1}% of {secs:.1} s)",
        f.generate.as_secs_f64(),
        100.0 * f.generate.as_secs_f64() / secs
    );
    println!(
        "  reference: bare store loop, same commits and bytes, {n_ref} records: {ref_before:.0} records/s before the flood, {ref_after:.0} after; accept runs at {:.2}x / {:.2}x of them",
        accept_rate / ref_before,
        accept_rate / ref_after
    );
}
