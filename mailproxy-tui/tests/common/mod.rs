//! Fixtures shared by the dashboard tests.
#![allow(dead_code)]

use std::time::Duration;

use mailproxy_proto::{AccountStatus, ConnState, InboxItem, Level, QueueItem, QueueState};
use mailproxy_tui::app::{AccountRow, Connection, LogEntry, Origin, QueueRow, State};
use mailproxy_tui::event::Msg;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;

/// The fixed "now" of every fixture: 2026-09-21 14:13:20 UTC.
pub const NOW_MS: u64 = 1_790_000_000_000;

pub fn key(code: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

pub fn ch(c: char) -> Msg {
    key(KeyCode::Char(c))
}

pub fn ctrl(c: char) -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

pub fn shift_tab() -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT))
}

pub fn queue_item(account: &str, id: u64, to: &str) -> QueueItem {
    QueueItem {
        account: account.into(),
        id,
        recipient: to.into(),
        size: 5_242_880,
        blocks_acked: 17,
        blocks_total: 104,
        age: 65,
        state: QueueState::Sending,
        retransmit_in: Some(9),
        bounce_in: 431_935,
        unreliable: false,
    }
}

pub fn alice_status() -> AccountStatus {
    AccountStatus {
        account: "alice@provider1".into(),
        connection: ConnState::Up,
        epoch: Some(12),
        document_age: Some(40),
        clock_skew: Some(-2),
        queued: 1,
        in_flight: 1,
        acknowledged: 3,
        bounced: 1,
        delivered: 2,
        inbox: 2,
        inbox_bytes: 3_234,
        packets_sent: 80,
        retransmissions: 9,
        last_error: None,
        imap_sessions: 3,
        ..Default::default()
    }
}

/// A connected dashboard with two accounts, three recipients, two queued
/// messages, two received ones and a few log lines.
pub fn populated() -> State {
    let mut s = State::new(NOW_MS, Level::Info);
    s.connection = Connection::Connected {
        version: "mailproxyd 0.1.0 protocol 2".into(),
    };
    s.accounts = vec![
        AccountRow {
            account: "alice@provider1".into(),
            status: Some(alice_status()),
            seen_ms: NOW_MS,
        },
        AccountRow {
            account: "bob@provider2".into(),
            status: Some(AccountStatus {
                account: "bob@provider2".into(),
                connection: ConnState::Down,
                last_error: Some("connection refused".into()),
                ..Default::default()
            }),
            seen_ms: NOW_MS,
        },
    ];
    s.recipients = vec![
        ("bob@provider2".into(), [0x11; 32]),
        ("carol@provider1".into(), [0x22; 32]),
        ("dave@provider3".into(), [0x33; 32]),
    ];
    s.queue = vec![
        QueueRow {
            item: queue_item("alice@provider1", 7, "bob@provider2"),
            seen_ms: NOW_MS,
            deadlines_known: true,
        },
        QueueRow {
            item: QueueItem {
                state: QueueState::WaitingKey,
                size: 300,
                blocks_acked: 0,
                blocks_total: 0,
                retransmit_in: None,
                age: 5,
                ..queue_item("alice@provider1", 8, "erin@provider4")
            },
            seen_ms: NOW_MS,
            deadlines_known: true,
        },
    ];
    s.inbox = vec![
        InboxItem {
            account: "alice@provider1".into(),
            id: 3,
            size: 1_234,
            arrived: NOW_MS / 1000 - 200_000,
            sender: Some("q80U2lS+x1PnkX3LhC7DTkbhtEXcGRvN0pHvOS8E5Gk=".into()),
        },
        InboxItem {
            account: "alice@provider1".into(),
            id: 4,
            size: 2_000,
            arrived: NOW_MS / 1000 - 3_600,
            sender: None,
        },
    ];
    for (i, (level, source, text)) in [
        (Level::Info, "mailproxyd::engine", "session to provider1 up"),
        (
            Level::Info,
            "alice@provider1",
            "#7 queued to bob@provider2 (5242880 bytes)",
        ),
        (
            Level::Warn,
            "mailproxyd::engine",
            "provider2: connection refused, retrying in 4s",
        ),
        (Level::Debug, "mailproxyd::engine::arq", "hidden at info"),
        (Level::Info, "alice@provider1", "#7 17/104 acked"),
    ]
    .into_iter()
    .enumerate()
    {
        s.log.push_back(LogEntry {
            origin: if source.contains('@') {
                Origin::Event
            } else {
                Origin::Log
            },
            time_ms: NOW_MS - 60_000 + i as u64 * 1_000,
            level,
            source: source.into(),
            text: text.into(),
        });
    }
    s
}

/// The same state, after the daemon went away.
pub fn disconnected() -> State {
    let mut s = populated();
    s.connection = Connection::Disconnected {
        since_ms: NOW_MS - 10_000,
        error: "mailproxyd is not running (no management socket at /run/mp/management_sock)".into(),
        retry_at_ms: NOW_MS + Duration::from_secs(4).as_millis() as u64,
    };
    s
}

/// Renders `state` at `width` x `height`.
pub fn render(state: &State, width: u16, height: u16) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| mailproxy_tui::view::draw(frame, state))
        .unwrap();
    terminal.backend().buffer().clone()
}

/// The buffer's text, one line per row, trailing blanks trimmed.
pub fn text(buf: &Buffer) -> String {
    let area = buf.area;
    let mut out = String::new();
    for y in 0..area.height {
        let mut line = String::new();
        for x in 0..area.width {
            line.push_str(buf[(area.x + x, area.y + y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Compares `actual` with `tests/snapshots/<name>.txt`; `UPDATE_SNAPSHOTS=1`
/// rewrites the file instead (review the diff before committing).
pub fn assert_snapshot(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "snapshot {} missing ({e}); run with UPDATE_SNAPSHOTS=1 and review it\nactual:\n{actual}",
            path.display()
        )
    });
    if expected != actual {
        panic!(
            "snapshot {} differs (UPDATE_SNAPSHOTS=1 rewrites it)\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        );
    }
}
