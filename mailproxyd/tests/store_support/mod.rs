//! Helpers shared by the store fault tests.

use std::time::Duration;

use mailproxyd::store::Store;

/// Waits (on the health watch) until the store is healthy again.
pub fn wait_ok(s: &Store) {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), s.wait_healthy()).await })
        .expect("store did not recover within 30 s");
}
