//! Bounded waiting for conditions (generous: the machine is loaded).

use std::time::{Duration, Instant};

/// Polls `check` every `every` until it returns `Some`, or panics naming
/// `what` after `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    wait_until(what, timeout, every, || check().ok_or_else(String::new))
}

/// Polls `check` every `every` until it returns `Ok`, or panics naming
/// `what` and the last `Err` (what was seen instead) after `timeout`.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    loop {
        let seen = match check() {
            Ok(v) => return v,
            Err(seen) => seen,
        };
        if start.elapsed() > timeout {
            if seen.is_empty() {
                panic!("timed out after {timeout:?} waiting for {what}");
            }
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {seen}");
        }
        std::thread::sleep(every);
    }
}
