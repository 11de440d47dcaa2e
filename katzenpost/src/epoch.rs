//! Epochs (§3): numbered from 2017-06-01 00:00:00 UTC, 3 hours long by
//! default in this profile. The clock is always passed in.

use std::time::Duration;

/// Unix time of the start of epoch 0 (2017-06-01 00:00:00 UTC).
pub const EPOCH_ZERO_UNIX: u64 = 1_496_275_200;
/// The profile's epoch period.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(3 * 60 * 60);

/// Where a moment falls in the epoch sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochTime {
    /// The epoch number.
    pub epoch: u64,
    /// Time since the epoch began.
    pub elapsed: Duration,
    /// Time until the next epoch begins.
    pub till: Duration,
}

/// Epoch arithmetic for one period length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochClock {
    period: Duration,
}

impl Default for EpochClock {
    fn default() -> Self {
        Self {
            period: DEFAULT_PERIOD,
        }
    }
}

impl EpochClock {
    /// An epoch clock with the given period. A zero period is replaced by one millisecond.
    pub fn new(period: Duration) -> Self {
        Self {
            period: period.max(Duration::from_millis(1)),
        }
    }

    /// The epoch period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The epoch at `unix` (time since the Unix epoch). Times before epoch 0 count as epoch 0.
    pub fn at(&self, unix: Duration) -> EpochTime {
        let since = unix.saturating_sub(Duration::from_secs(EPOCH_ZERO_UNIX));
        let period = self.period.as_nanos();
        let epoch = (since.as_nanos() / period) as u64;
        let elapsed = Duration::from_nanos((since.as_nanos() % period) as u64);
        EpochTime {
            epoch,
            elapsed,
            till: self.period - elapsed,
        }
    }

    /// Unix time at which `epoch` begins.
    pub fn start_of(&self, epoch: u64) -> Duration {
        Duration::from_secs(EPOCH_ZERO_UNIX)
            + self
                .period
                .saturating_mul(epoch.min(u32::MAX as u64) as u32)
    }

    /// The epoch at the system clock's now.
    pub fn now(&self) -> EpochTime {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.at(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_27708_starts_2026_11_24_noon() {
        // 2026-11-24 12:00:00 UTC
        let start = Duration::from_secs(1_795_521_600);
        let c = EpochClock::default();
        let t = c.at(start);
        assert_eq!(t.epoch, 27708);
        assert_eq!(t.elapsed, Duration::ZERO);
        assert_eq!(t.till, DEFAULT_PERIOD);
        let t = c.at(start - Duration::from_secs(1));
        assert_eq!(t.epoch, 27707);
        assert_eq!(t.till, Duration::from_secs(1));
        assert_eq!(c.start_of(27708), start);
    }
}
