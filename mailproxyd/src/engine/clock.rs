//! Unix time as the engine sees it: the wall clock, plus however far
//! tokio's clock was moved on while paused (unit tests advance it to reach
//! retransmissions and deadlines in milliseconds). Outside paused time the
//! two clocks agree and this is the wall clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix time now.
pub(super) fn unix_now_duration() -> Duration {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let ahead = tokio::time::Instant::now()
        .into_std()
        .saturating_duration_since(std::time::Instant::now());
    wall + ahead
}

/// Unix seconds now.
pub(super) fn unix_now() -> u64 {
    unix_now_duration().as_secs()
}
