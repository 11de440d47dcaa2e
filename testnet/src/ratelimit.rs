//! The provider's per-session rate limiter (§4.9): a token bucket refilled
//! with one token every 60,000 / SendRatePerMinute ms. The real 2019
//! provider's default capacity of 0 dropped nearly everything; ours has a
//! configurable capacity of at least 1, and can be switched off.

use std::time::{Duration, Instant};

/// A token bucket with an injected clock.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: u32,
    interval: Option<Duration>,
    tokens: u32,
    last: Instant,
}

impl TokenBucket {
    /// A bucket that starts full. `per_minute == 0` disables limiting.
    pub fn new(per_minute: u64, capacity: u32, now: Instant) -> Self {
        let capacity = capacity.max(1);
        let interval =
            (per_minute > 0).then(|| Duration::from_micros(60_000_000 / per_minute.max(1)));
        Self {
            capacity,
            interval,
            tokens: capacity,
            last: now,
        }
    }

    /// A bucket that never limits.
    pub fn unlimited(now: Instant) -> Self {
        Self::new(0, 1, now)
    }

    /// Changes the rate (the document's SendRatePerMinute), keeping the tokens.
    pub fn set_rate(&mut self, per_minute: u64, now: Instant) {
        self.refill(now);
        self.interval =
            (per_minute > 0).then(|| Duration::from_micros(60_000_000 / per_minute.max(1)));
    }

    fn refill(&mut self, now: Instant) {
        let Some(interval) = self.interval else {
            return;
        };
        let elapsed = now.saturating_duration_since(self.last);
        let new = (elapsed.as_micros() / interval.as_micros().max(1)) as u64;
        if new > 0 {
            self.tokens = (self.tokens as u64 + new).min(self.capacity as u64) as u32;
            self.last += interval * new.min(u32::MAX as u64) as u32;
        }
        if self.tokens == self.capacity {
            self.last = now;
        }
    }

    /// Takes a token if one is available. `false` means: drop the packet.
    pub fn try_take(&mut self, now: Instant) -> bool {
        if self.interval.is_none() {
            return true;
        }
        self.refill(now);
        if self.tokens > 0 {
            self.tokens -= 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_at_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(60, 2, t0); // one token per second
        assert!(b.try_take(t0));
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0));
        assert!(!b.try_take(t0 + Duration::from_millis(999)));
        assert!(b.try_take(t0 + Duration::from_millis(1000)));
        assert!(!b.try_take(t0 + Duration::from_millis(1500)));
        // A long pause refills only up to the capacity.
        let later = t0 + Duration::from_secs(100);
        assert!(b.try_take(later));
        assert!(b.try_take(later));
        assert!(!b.try_take(later));
    }

    #[test]
    fn zero_rate_means_no_limit() {
        let t0 = Instant::now();
        let mut b = TokenBucket::unlimited(t0);
        for _ in 0..10_000 {
            assert!(b.try_take(t0));
        }
    }

    #[test]
    fn capacity_zero_is_raised_to_one() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100, 0, t0);
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0));
    }
}
