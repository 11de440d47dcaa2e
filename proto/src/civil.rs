//! Calendar dates from Unix time (UTC, proleptic Gregorian), for the lists
//! and headers the daemon and its clients print. One implementation for the
//! daemon, mailproxyctl and the TUI.

/// A Unix time broken down in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    /// Year.
    pub year: i64,
    /// Month, 1-12.
    pub month: u32,
    /// Day of the month, 1-31.
    pub day: u32,
    /// Hour, 0-23.
    pub hour: u32,
    /// Minute, 0-59.
    pub minute: u32,
    /// Second, 0-59.
    pub second: u32,
}

impl Civil {
    /// The UTC date and time of `unix` seconds since 1970-01-01.
    pub fn from_unix(unix: u64) -> Civil {
        // Howard Hinnant's civil_from_days.
        let days = (unix / 86_400) as i64;
        let secs = (unix % 86_400) as u32;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        Civil {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: secs / 3600,
            minute: secs % 3600 / 60,
            second: secs % 60,
        }
    }

    /// `YYYY-MM-DD`.
    pub fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// `YYYY-MM-DD HH:MM:SS`.
    pub fn date_time(&self) -> String {
        format!(
            "{} {:02}:{:02}:{:02}",
            self.date(),
            self.hour,
            self.minute,
            self.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Civil;

    #[test]
    fn known_dates() {
        assert_eq!(Civil::from_unix(0).date_time(), "1970-01-01 00:00:00");
        assert_eq!(Civil::from_unix(951_782_400).date(), "2000-02-29");
        assert_eq!(
            Civil::from_unix(1_795_000_000).date_time(),
            "2026-11-18 11:06:40"
        );
        assert_eq!(Civil::from_unix(20_716 * 86_400).date(), "2026-09-20");
        let c = Civil::from_unix(4_102_444_799); // 2099-12-31 23:59:59
        assert_eq!(
            (c.year, c.month, c.day, c.hour, c.minute, c.second),
            (2099, 12, 31, 23, 59, 59)
        );
    }
}
