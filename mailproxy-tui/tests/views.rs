//! Snapshot tests of the views (TestBackend), plus colour and tiny-size checks.

mod common;

use common::*;
use mailproxy_proto::Level;
use mailproxy_tui::app::{Confirm, Field, Modal, Pane, RecipientEditor, State};
use ratatui::style::Color;

fn snapshot(name: &str, state: &State, width: u16, height: u16) -> String {
    let text = text(&render(state, width, height));
    assert_snapshot(name, &text);
    text
}

#[test]
fn dashboard_80x24() {
    let text = snapshot("dashboard_80x24", &populated(), 80, 24);
    // Facts the snapshot must show (checked here so a careless update fails).
    for needle in [
        "mailproxyd 0.1.0 protocol 2",
        "alice@provider1",
        "connection refused",
        "bob@provider2",
        "█░░░░░░░ 17/104",
        "1m05s  9s",
        "no key",
        "q80U2lS+x1P…",
        "(report)",
        "13:13:20",
        "2026-09-19",
        "session to provider1 up",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert!(!text.contains("hidden at info"), "debug line filtered out");
    // IMAP sessions per account, in the last column.
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[2].trim_end_matches('┃').ends_with("Inbox IMAP"),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].contains("2     3   "),
        "alice: 3 sessions: {}",
        lines[3]
    );
}

#[test]
fn dashboard_140x40() {
    let text = snapshot("dashboard_140x40", &populated(), 140, 40);
    assert!(text.contains("provider2: connection refused, retrying in 4s"));
    // Wide enough for the account column in the queue.
    assert!(text.contains("Inbox IMAP Last error"), "{text}");
    let queue_line = text.lines().find(|l| l.contains("17/104")).unwrap();
    assert!(queue_line.contains("alice@provider1"), "{queue_line}");
}

#[test]
fn disconnected_80x24_and_140x40() {
    for (name, w, h) in [
        ("disconnected_80x24", 80, 24),
        ("disconnected_140x40", 140, 40),
    ] {
        let text = snapshot(name, &disconnected(), w, h);
        let first = text.lines().next().unwrap();
        assert!(
            first.contains("daemon not running / connection lost -- retrying in 4s"),
            "{first}"
        );
        assert!(text.contains("no management socket"), "{text}");
    }
    // Data is greyed out: the "up" link is not green any more.
    let buf = render(&disconnected(), 80, 24);
    let live = render(&populated(), 80, 24);
    let (x, y) = find(&live, "up").unwrap();
    assert_eq!(live[(x, y)].fg, Color::Green);
    assert_eq!(buf[(x, y)].fg, Color::DarkGray);
    assert_eq!(buf[(1, 0)].bg, Color::Cyan, "title");
    assert_eq!(buf[(20, 0)].bg, Color::Red, "banner");
}

#[test]
fn help_overlay() {
    let mut s = populated();
    s.modal = Some(Modal::Help);
    let text = snapshot("help_80x24", &s, 80, 24);
    assert!(text.contains("cancel the selected outgoing message"));
}

#[test]
fn editor_with_invalid_key() {
    let mut s = populated();
    s.focus = Pane::Recipients;
    s.modal = Some(Modal::Editor(RecipientEditor {
        address: "frank@provider5".into(),
        key: "0d1c2b3a".into(),
        field: Field::Key,
        editing: false,
        error: Some("invalid key: key is 4 bytes, expected 32".into()),
    }));
    let text = snapshot("editor_invalid_80x24", &s, 80, 24);
    assert!(text.contains("Add recipient"));
    assert!(text.contains("invalid key: key is 4 bytes, expected 32"));
    let text = snapshot("editor_invalid_140x40", &s, 140, 40);
    assert!(text.contains("frank@provider5"));
}

#[test]
fn editor_with_valid_key_and_cursor() {
    let mut s = populated();
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHv8=";
    s.modal = Some(Modal::Editor(RecipientEditor {
        address: "frank@provider5".into(),
        key: key.into(),
        field: Field::Key,
        editing: true,
        error: None,
    }));
    let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(80, 24)).unwrap();
    terminal.draw(|f| mailproxy_tui::view::draw(f, &s)).unwrap();
    let text = text(terminal.backend().buffer());
    assert!(text.contains("Edit recipient"));
    assert!(text.contains("key ok (32 bytes)"));
    let (x, y) = find(terminal.backend().buffer(), key).unwrap();
    let cursor = terminal.get_cursor_position().unwrap();
    assert_eq!(
        (cursor.x, cursor.y),
        (x + key.len() as u16, y),
        "cursor after the key"
    );
}

#[test]
fn confirm_cancel() {
    let mut s = populated();
    s.focus = Pane::Queue;
    s.modal = Some(Modal::Confirm(Confirm::CancelMessage {
        account: "alice@provider1".into(),
        id: 7,
        recipient: "bob@provider2".into(),
    }));
    let text = snapshot("confirm_cancel_80x24", &s, 80, 24);
    assert!(text.contains("Cancel message #7"));
}

#[test]
fn older_daemon_and_empty_panes() {
    let mut s = State::new(NOW_MS, Level::Info);
    s.connection = mailproxy_tui::app::Connection::Connected {
        version: "mailproxyd 0.1.0 protocol 1".into(),
    };
    s.accounts = vec![mailproxy_tui::app::AccountRow {
        account: "alice@provider-0".into(),
        status: None,
        seen_ms: NOW_MS,
    }];
    for c in ["STATUS", "QUEUE", "INBOX", "EVENTS"] {
        s.unsupported.insert(c);
    }
    let text = snapshot("older_daemon_80x24", &s, 80, 24);
    assert!(
        text.contains("daemon does not support STATUS (old version?)"),
        "{text}"
    );
    assert!(
        text.contains("daemon does not support QUEUE (old version?)"),
        "{text}"
    );
    assert!(text.contains("no recipients -- press a to add one"));
    // A longer account name leaves no room for IMAP: the column goes
    // rather than squeezing the others.
    assert!(
        text.contains("Bounced Inbox") && !text.contains("IMAP"),
        "{text}"
    );
}

#[test]
fn connecting_small_terminal_shows_focused_pane() {
    let mut s = populated();
    s.focus = Pane::Queue;
    let text = snapshot("compact_queue_50x12", &s, 50, 12);
    assert!(text.contains("3 Queue"));
    assert!(!text.contains("Recipients"), "{text}");
}

#[test]
fn log_scrolled_up() {
    let mut s = populated();
    s.focus = Pane::Log;
    s.log_offset = 2;
    let text = text(&render(&s, 80, 24));
    assert!(text.contains("scrolled up 2 (G follows)"), "{text}");
    assert!(
        !text.contains("#7 17/104 acked"),
        "the newest lines are below the view"
    );
    assert!(text.contains("session to provider1 up"));
}

#[test]
fn no_panic_at_any_small_size() {
    let mut states = vec![populated(), disconnected(), State::new(0, Level::Trace)];
    let mut help = populated();
    help.modal = Some(Modal::Help);
    let mut editor = populated();
    editor.modal = Some(Modal::Editor(RecipientEditor {
        address: "x".repeat(300),
        key: "é".repeat(300),
        ..RecipientEditor::new()
    }));
    let mut confirm = populated();
    confirm.modal = Some(Modal::Confirm(Confirm::RemoveRecipient {
        address: "bob@provider2".into(),
    }));
    states.extend([help, editor, confirm]);
    for state in &mut states {
        for pane in Pane::ALL {
            state.focus = pane;
            for w in 0..=44 {
                for h in 0..=20 {
                    render(state, w, h);
                }
            }
            render(state, 80, 24);
        }
    }
}

/// Position of the first occurrence of `needle` (ASCII) in the buffer.
fn find(buf: &ratatui::buffer::Buffer, needle: &str) -> Option<(u16, u16)> {
    for y in 0..buf.area.height {
        let row: String = (0..buf.area.width)
            .map(|x| buf[(x, y)].symbol().to_string())
            .collect();
        if let Some(i) = row.find(needle) {
            // Convert a byte index into a cell index.
            let x = row[..i].chars().count() as u16;
            return Some((x, y));
        }
    }
    None
}

/// A daemon sending extreme values (or a clock far off) must not make the
/// dashboard panic (overflow checks are on in tests).
#[test]
fn extreme_values_do_not_panic() {
    use mailproxy_proto::{AccountStatus, Event, EventKind, InboxItem, QueueItem, StreamLine};
    use mailproxy_tui::event::{Fetched, Msg, Snapshot};
    use mailproxy_tui::update::update;
    let max = u64::MAX;
    let status = AccountStatus {
        account: "a@p".into(),
        epoch: Some(max),
        document_age: Some(max),
        clock_skew: Some(i64::MIN),
        queued: max,
        in_flight: max,
        acknowledged: max,
        bounced: max,
        delivered: max,
        inbox: max,
        inbox_bytes: max,
        packets_sent: max,
        retransmissions: max,
        last_error: Some("x".repeat(10_000)),
        imap_sessions: max,
        ..Default::default()
    };
    let item = QueueItem {
        account: "a@p".into(),
        id: max,
        recipient: "r".repeat(1_000),
        size: max,
        blocks_acked: u32::MAX,
        blocks_total: u32::MAX,
        age: max,
        state: mailproxy_proto::QueueState::Sending,
        retransmit_in: Some(max),
        bounce_in: max,
        unreliable: true,
    };
    let inbox = InboxItem {
        account: "a@p".into(),
        id: max,
        size: max,
        arrived: max,
        sender: Some("s".repeat(1_000)),
    };
    let mut s = State::new(max - 1, Level::Trace);
    update(
        &mut s,
        Msg::Connected {
            version: "v".repeat(1_000),
        },
    );
    update(
        &mut s,
        Msg::Snapshot(Box::new(Snapshot {
            accounts: Fetched::Ok(vec![]),
            status: Fetched::Ok(vec![status]),
            queue: Fetched::Ok(vec![item]),
            inbox: Fetched::Ok(vec![inbox]),
            recipients: Fetched::Ok(vec![("q".repeat(1_000), [0xff; 32])]),
        })),
    );
    update(&mut s, Msg::Tick { now_ms: max });
    for kind in [
        EventKind::Queued {
            id: 1,
            to: "t".into(),
            size: max,
        },
        EventKind::Sent { id: 1, blocks: 0 },
        EventKind::Progress {
            id: 1,
            acked: u32::MAX,
            blocks: 1,
        },
        EventKind::Acknowledged { id: 1 },
        EventKind::Bounced {
            id: max,
            to: "t".into(),
            reason: "r".into(),
        },
        EventKind::Delivered {
            id: 2,
            size: max,
            sender: None,
        },
    ] {
        update(
            &mut s,
            Msg::Stream(StreamLine::Event(Event {
                time_ms: max,
                account: "a@p".into(),
                kind,
            })),
        );
    }
    update(
        &mut s,
        Msg::Disconnected {
            error: "e".into(),
            retry_in: std::time::Duration::MAX,
        },
    );
    for (w, h) in [(80, 24), (140, 40), (30, 8)] {
        render(&s, w, h);
    }
    let text = text(&render(&s, 140, 40));
    assert!(
        text.contains("a@p") && text.contains("retrying now"),
        "{text}"
    );
}

/// A failing store is what the account row shows (it stops mail both
/// ways), and the log says so; a recovery clears it.
#[test]
fn store_failing_then_recovered() {
    use mailproxy_proto::{Event, EventKind, StreamLine};
    use mailproxy_tui::event::Msg;
    use mailproxy_tui::update::update;
    let mut state = populated();
    let event = |kind| {
        Msg::Stream(StreamLine::Event(Event {
            time_ms: 1_000,
            account: "bob@provider2".into(),
            kind,
        }))
    };
    update(
        &mut state,
        event(EventKind::StoreFailing {
            error: "No space left on device (os error 28)".into(),
            full: true,
        }),
    );
    let wide = text(&render(&state, 140, 40));
    let row = wide.lines().find(|l| l.contains("bob@provider2")).unwrap();
    assert!(
        row.contains("store full: No space left on device (os error 28)"),
        "{wide}"
    );
    assert!(wide.contains("store full, retrying"), "log line: {wide}");
    update(&mut state, event(EventKind::StoreRecovered));
    let wide = text(&render(&state, 140, 40));
    assert!(!wide.contains("store full: No space"), "{wide}");
    assert!(wide.contains("store writes again"), "{wide}");
}

#[test]
fn received_pane_lists_newest_first() {
    // The daemon lists the inbox oldest first (by id); #4 arrived last.
    let s = populated();
    assert!(s.inbox[0].id < s.inbox[1].id && s.inbox[0].arrived < s.inbox[1].arrived);
    let text = text(&render(&s, 80, 24));
    let row = |needle: &str| {
        text.lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in\n{text}"))
    };
    assert!(
        row("4    (report)") < row("3    q80U2lS+x1P…"),
        "newest first:\n{text}"
    );
}
