//! Human-readable output: aligned tables, sizes, durations, times.

use mailproxy_proto::{AccountStatus, InboxItem, QueueItem, StoreState, StreamLine};

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = w - cell.chars().count() + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.trim_end().to_owned()
    };
    let mut lines = vec![line(header.to_vec())];
    for row in rows {
        lines.push(line(row.iter().map(String::as_str).collect()));
    }
    lines.join("\n")
}

/// `1.5 KiB`, `300 B`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `45s`, `3m05s`, `2h07m`, `5d03h`.
pub fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// `2026-11-24 20:48:09` (UTC) from Unix seconds.
pub fn utc(secs: u64) -> String {
    mailproxy_proto::civil::Civil::from_unix(secs).date_time()
}

/// The `status` table, with each account's last error below it.
pub fn status(list: &[AccountStatus]) -> String {
    if list.is_empty() {
        return "no accounts configured".to_owned();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            vec![
                s.account.clone(),
                s.connection.as_str().to_owned(),
                s.store.as_str().to_owned(),
                opt(s.epoch),
                opt(s.document_age.map(duration)),
                opt(s.clock_skew.map(|v| format!("{v}s"))),
                s.queued.to_string(),
                s.in_flight.to_string(),
                s.acknowledged.to_string(),
                s.bounced.to_string(),
                s.delivered.to_string(),
                format!("{} ({})", s.inbox, size(s.inbox_bytes)),
                format!("{}/{}", s.packets_sent, s.retransmissions),
                s.imap_sessions.to_string(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "ACCOUNT",
            "CONN",
            "STORE",
            "EPOCH",
            "DOC AGE",
            "SKEW",
            "QUEUED",
            "SENDING",
            "ACKED",
            "BOUNCED",
            "RECEIVED",
            "INBOX",
            "PACKETS/RETX",
            "IMAP",
        ],
        &rows,
    );
    for s in list {
        if s.store != StoreState::Ok {
            let e = s.store_error.as_deref().unwrap_or("unknown error");
            out.push_str(&format!(
                "\n{}: store {} (retrying by itself): {e}",
                s.account,
                s.store.as_str()
            ));
        }
        if let Some(e) = &s.last_error {
            out.push_str(&format!("\n{}: last error: {e}", s.account));
        }
    }
    out
}

/// The `queue` table.
pub fn queue(items: &[QueueItem]) -> String {
    if items.is_empty() {
        return "the send queue is empty".to_owned();
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|q| {
            vec![
                q.account.clone(),
                q.id.to_string(),
                q.recipient.clone(),
                size(q.size),
                if q.blocks_total == 0 {
                    "-".to_owned()
                } else {
                    format!("{}/{}", q.blocks_acked, q.blocks_total)
                },
                duration(q.age),
                format!(
                    "{}{}",
                    q.state.as_str(),
                    if q.unreliable { " (unreliable)" } else { "" }
                ),
                opt(q.retransmit_in.map(duration)),
                duration(q.bounce_in),
            ]
        })
        .collect();
    table(
        &[
            "ACCOUNT",
            "ID",
            "TO",
            "SIZE",
            "ACKED",
            "AGE",
            "STATE",
            "RETRANSMIT",
            "BOUNCE IN",
        ],
        &rows,
    )
}

/// The `inbox` table.
pub fn inbox(items: &[InboxItem]) -> String {
    if items.is_empty() {
        return "the inbox is empty".to_owned();
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            vec![
                i.account.clone(),
                i.id.to_string(),
                size(i.size),
                utc(i.arrived),
                i.sender
                    .clone()
                    .unwrap_or_else(|| "(local report)".to_owned()),
            ]
        })
        .collect();
    table(
        &["ACCOUNT", "ID", "SIZE", "ARRIVED (UTC)", "SENDER KEY"],
        &rows,
    )
}

/// One stream line for `logs`: `<time> <what>`.
pub fn stream_line(line: &StreamLine) -> String {
    let stamp = |ms: u64| format!("{}.{:03}", utc(ms / 1000), ms % 1000);
    match line {
        StreamLine::Event(e) => {
            // The wire form after the time is already `account kind fields`.
            let wire = line.to_line();
            let rest = wire.splitn(3, ' ').nth(2).unwrap_or("");
            format!("{} EVENT {rest}", stamp(e.time_ms))
        }
        StreamLine::Log(l) => format!(
            "{} {:<5} {}: {}",
            stamp(l.time_ms),
            l.level.as_str(),
            l.target,
            l.message
        ),
        StreamLine::Lagged { dropped } => {
            format!("-- {dropped} lines dropped: reading too slowly --")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailproxy_proto::{Event, EventKind, Level, LogLine, QueueState};

    #[test]
    fn formats() {
        assert_eq!(size(300), "300 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(185), "3m05s");
        assert_eq!(duration(7620), "2h07m");
        assert_eq!(duration(5 * 86_400 + 3 * 3600), "5d03h");
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_795_000_000), "2026-11-18 11:06:40");
        assert_eq!(
            table(&["A", "BB"], &[vec!["xyz".into(), "1".into()]]),
            "A    BB\nxyz  1"
        );
    }

    #[test]
    fn views() {
        let q = QueueItem {
            account: "a@p".into(),
            id: 7,
            recipient: "b@q".into(),
            size: 2048,
            blocks_acked: 1,
            blocks_total: 3,
            age: 65,
            state: QueueState::Sending,
            retransmit_in: None,
            bounce_in: 100,
            unreliable: true,
        };
        let t = queue(&[q]);
        assert!(t.starts_with("ACCOUNT  ID  TO"), "{t}");
        assert!(
            t.contains("a@p      7   b@q  2.0 KiB  1/3    1m05s  sending (unreliable)  -"),
            "{t}"
        );
        assert_eq!(queue(&[]), "the send queue is empty");
        let s = status(&[AccountStatus {
            account: "a@p".into(),
            last_error: Some("refused".into()),
            ..Default::default()
        }]);
        assert!(s.contains("a@p      connecting  ok"), "{s}");
        assert!(s.ends_with("a@p: last error: refused"), "{s}");
        let full = status(&[AccountStatus {
            account: "a@p".into(),
            store: StoreState::Full,
            store_error: Some("No space left on device (os error 28)".into()),
            ..Default::default()
        }]);
        assert!(full.contains("a@p      connecting  full"), "{full}");
        assert!(
            full.ends_with(
                "a@p: store full (retrying by itself): No space left on device (os error 28)"
            ),
            "{full}"
        );
        let log = stream_line(&StreamLine::Log(LogLine {
            time_ms: 1_500,
            level: Level::Warn,
            target: "x".into(),
            message: "m k=1".into(),
        }));
        assert_eq!(log, "1970-01-01 00:00:01.500 WARN  x: m k=1");
        let ev = stream_line(&StreamLine::Event(Event {
            time_ms: 2_000,
            account: "a@p".into(),
            kind: EventKind::Cancelled { id: 4 },
        }));
        assert_eq!(ev, "1970-01-01 00:00:02.000 EVENT a@p cancelled id=4");
    }
}
