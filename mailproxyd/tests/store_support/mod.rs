//! Helpers shared by the store fault tests.

use std::time::Duration;

use mailproxyd::store::{Faults, Op, Store};

/// Waits (on the health watch) until the store is healthy again.
pub fn wait_ok(s: &Store) {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), s.wait_healthy()).await })
        .expect("store did not recover within 30 s");
}

/// Waits until the writer has tried `n` more writes (its reopen and probe
/// attempts while failing), polling the fault counters.
pub fn wait_retries(f: &Faults, n: u64) {
    let start = f.calls(Op::Write);
    let mut polls = 0;
    while f.calls(Op::Write) < start + n {
        std::thread::sleep(Duration::from_millis(10));
        polls += 1;
        assert!(polls < 3000, "the writer stopped retrying");
    }
}
