//! Small text formatters shared by the panes.

/// A duration in seconds, compactly: `45s`, `12m`, `3h05m`, `2d04h`.
pub fn duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3_600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3_600..86_400 => format!("{}h{:02}m", secs / 3_600, secs % 3_600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3_600),
    }
}

/// A size in bytes in at most 8 characters: `512 B`, `1.5 KiB`, `12 MiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{} {}", value as u64, UNITS[unit])
    }
}

/// `HH:MM:SS` (UTC) of a unix time in seconds.
pub fn clock(unix_secs: u64) -> String {
    let s = unix_secs % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3_600, s % 3_600 / 60, s % 60)
}

/// A UTC timestamp for a list: the clock if on the same day as `now`,
/// else the date.
pub fn when(unix_secs: u64, now_secs: u64) -> String {
    if unix_secs / 86_400 == now_secs / 86_400 {
        clock(unix_secs)
    } else {
        mailproxy_proto::civil::Civil::from_unix(unix_secs).date()
    }
}

/// `text` cut to `width` characters (ending in `…` when cut).
pub fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(width.saturating_sub(1)).collect();
        if width > 0 {
            s.push('…');
        }
        s
    }
}

/// The first characters of a key (base64), for lists.
pub fn short_key(key: &str, chars: usize) -> String {
    cut(key, chars)
}

/// A text progress bar `███░░░ 3/6` with `width` bar cells.
pub fn progress(acked: u32, total: u32, width: usize) -> String {
    if total == 0 {
        return "not split yet".to_owned();
    }
    let acked = acked.min(total);
    let filled = (acked as usize * width) / total as usize;
    format!(
        "{}{} {acked}/{total}",
        "█".repeat(filled),
        "░".repeat(width - filled)
    )
}

/// The last `width` characters of `text` (for a field that scrolls left).
pub fn tail(text: &str, width: usize) -> String {
    let n = text.chars().count();
    text.chars().skip(n.saturating_sub(width)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(65), "1m05s");
        assert_eq!(duration(3_600 * 3 + 300), "3h05m");
        assert_eq!(duration(431_935), "4d23h");
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(5_242_880), "5.0 MiB");
        assert_eq!(size(1_048_575), "1023 KiB");
        assert_eq!(size(50 << 20), "50 MiB");
        assert_eq!(size(u64::MAX), "16777216 TiB");
        assert_eq!(clock(1_790_000_000), "14:13:20");
        assert_eq!(when(1_790_000_000, 1_790_000_100), "14:13:20");
        assert_eq!(when(1_790_000_000, 1_790_200_000), "2026-09-21");
        assert_eq!(short_key("abcdefgh", 5), "abcd…");
        assert_eq!(short_key("abc", 5), "abc");
        assert_eq!(progress(17, 104, 10), "█░░░░░░░░░ 17/104");
        assert_eq!(progress(52, 104, 8), "████░░░░ 52/104");
        assert_eq!(progress(3, 3, 4), "████ 3/3");
        assert_eq!(progress(9, 3, 4), "████ 3/3");
        assert_eq!(progress(0, 0, 4), "not split yet");
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(cut("abcdef", 0), "");
        assert_eq!(cut("abcdef", 1), "…");
    }
}
