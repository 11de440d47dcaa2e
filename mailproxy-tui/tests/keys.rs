//! The state machine without a terminal: keys, events and snapshots in,
//! state and commands out.

mod common;

use std::time::Duration;

use common::*;
use mailproxy_proto::{
    encode_key, AccountInfo, ConnState, Event, EventKind, Level, LogLine, QueueState, StreamLine,
};
use mailproxy_tui::app::{Confirm, Connection, Field, Modal, Pane, State};
use mailproxy_tui::event::{Fetched, Msg, Snapshot};
use mailproxy_tui::update::{update, Command};
use ratatui::crossterm::event::KeyCode;

fn run(state: &mut State, msgs: impl IntoIterator<Item = Msg>) -> Vec<Command> {
    msgs.into_iter().flat_map(|m| update(state, m)).collect()
}

fn type_text(text: &str) -> Vec<Msg> {
    text.chars().map(ch).collect()
}

fn editor(state: &State) -> &mailproxy_tui::app::RecipientEditor {
    match &state.modal {
        Some(Modal::Editor(e)) => e,
        other => panic!("expected the editor, got {other:?}"),
    }
}

fn event(kind: EventKind) -> Msg {
    Msg::Stream(StreamLine::Event(Event {
        time_ms: NOW_MS + 1_000,
        account: "alice@provider1".into(),
        kind,
    }))
}

#[test]
fn focus_cycles_with_tab_shift_tab_and_digits() {
    let mut s = populated();
    assert_eq!(s.focus, Pane::Accounts);
    let order: Vec<Pane> = (0..5)
        .map(|_| {
            update(&mut s, key(KeyCode::Tab));
            s.focus
        })
        .collect();
    assert_eq!(
        order,
        [
            Pane::Recipients,
            Pane::Queue,
            Pane::Received,
            Pane::Log,
            Pane::Accounts
        ]
    );
    update(&mut s, shift_tab());
    assert_eq!(s.focus, Pane::Log);
    update(&mut s, ch('3'));
    assert_eq!(s.focus, Pane::Queue);
    update(&mut s, ch('1'));
    assert_eq!(s.focus, Pane::Accounts);
}

#[test]
fn selection_moves_and_stays_in_bounds() {
    let mut s = populated();
    run(&mut s, [ch('2'), ch('j'), key(KeyCode::Down)]);
    assert_eq!(s.selection(Pane::Recipients), Some(2));
    update(&mut s, ch('j'));
    assert_eq!(s.selection(Pane::Recipients), Some(2), "last row");
    run(&mut s, [ch('k'), key(KeyCode::Up), key(KeyCode::Up)]);
    assert_eq!(s.selection(Pane::Recipients), Some(0));
    update(&mut s, ch('G'));
    assert_eq!(s.selection(Pane::Recipients), Some(2));
    update(&mut s, key(KeyCode::Home));
    assert_eq!(s.selection(Pane::Recipients), Some(0));
    // Other panes keep their own selection.
    assert_eq!(s.selection(Pane::Queue), Some(0));
}

#[test]
fn add_recipient_produces_set_recipient_with_the_decoded_key() {
    let mut s = populated();
    let key_bytes = [7u8; 32];
    let hex_key: String = key_bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut msgs = vec![ch('a')];
    msgs.extend(type_text("frank@provider5"));
    msgs.push(key(KeyCode::Enter)); // moves on to the key
    let commands = run(&mut s, msgs);
    assert!(commands.is_empty());
    assert_eq!(s.focus, Pane::Recipients);
    assert_eq!(editor(&s).field, Field::Key);
    assert_eq!(
        editor(&s).key_message(),
        "paste the recipient's key (hex or base64)"
    );
    // Typing shows the validation live: too short, then ok.
    run(&mut s, type_text(&hex_key[..8]));
    assert_eq!(
        editor(&s).key_message(),
        "invalid key: key is 4 bytes, expected 32"
    );
    run(&mut s, type_text(&hex_key[8..]));
    assert_eq!(editor(&s).key_message(), "key ok (32 bytes)");
    let commands = update(&mut s, key(KeyCode::Enter));
    assert_eq!(
        commands,
        vec![Command::SetRecipient {
            address: "frank@provider5".into(),
            key: key_bytes
        }]
    );
    assert_eq!(s.modal, None);
}

#[test]
fn pasted_base64_key_is_accepted() {
    let mut s = populated();
    let key_bytes = [9u8; 32];
    run(&mut s, [ch('a')]);
    run(&mut s, type_text("gina@p"));
    run(
        &mut s,
        [
            key(KeyCode::Tab),
            Msg::Paste(format!("{}\n", encode_key(&key_bytes))),
        ],
    );
    assert_eq!(
        update(&mut s, key(KeyCode::Enter)),
        vec![Command::SetRecipient {
            address: "gina@p".into(),
            key: key_bytes
        }]
    );
}

#[test]
fn invalid_key_is_refused_with_a_message() {
    let mut s = populated();
    let mut msgs = vec![ch('a')];
    msgs.extend(type_text("frank@provider5"));
    msgs.push(key(KeyCode::Tab));
    msgs.extend(type_text("not-a-key!"));
    msgs.push(key(KeyCode::Enter));
    let commands = run(&mut s, msgs);
    assert!(commands.is_empty(), "{commands:?}");
    let e = editor(&s);
    assert_eq!(
        e.error.as_deref(),
        Some("invalid key: key is neither hex nor base64")
    );
    assert_eq!(e.field, Field::Key);
    // Fixing the key clears the error; Ctrl-U empties the field.
    update(&mut s, ctrl('u'));
    assert_eq!(editor(&s).key, "");
    assert_eq!(editor(&s).error, None);
    // A bad address is refused too, and the cursor goes back to it.
    run(&mut s, type_text(&"ab".repeat(32)));
    run(&mut s, [key(KeyCode::Tab), key(KeyCode::Backspace)]);
    run(&mut s, type_text("x"));
    assert_eq!(editor(&s).address, "frank@providerx");
    run(&mut s, [ctrl('u')]);
    run(&mut s, type_text("frank"));
    assert!(update(&mut s, key(KeyCode::Enter)).is_empty());
    assert_eq!(
        editor(&s).error.as_deref(),
        Some("address must be user@provider")
    );
    assert_eq!(editor(&s).field, Field::Address);
    // Esc leaves without a command.
    assert!(update(&mut s, key(KeyCode::Esc)).is_empty());
    assert_eq!(s.modal, None);
}

#[test]
fn editor_swallows_global_keys_and_bounds_its_fields() {
    let mut s = populated();
    run(&mut s, [ch('a')]);
    let commands = run(&mut s, type_text("q?l123"));
    assert!(
        commands.is_empty(),
        "q in the editor types, it does not quit"
    );
    assert_eq!(editor(&s).address, "q?l123");
    run(&mut s, type_text(&"x".repeat(10_000)));
    assert_eq!(editor(&s).address.len(), mailproxy_tui::app::MAX_FIELD);
    // Ctrl-C quits from anywhere.
    assert_eq!(update(&mut s, ctrl('c')), vec![Command::Quit]);
}

#[test]
fn edit_prefills_the_selected_recipient() {
    let mut s = populated();
    run(&mut s, [ch('2'), ch('j'), ch('e')]);
    let e = editor(&s);
    assert!(e.editing);
    assert_eq!(e.address, "carol@provider1");
    assert_eq!(e.key, encode_key(&[0x22; 32]));
    assert_eq!(e.field, Field::Key);
    // The address is fixed while editing.
    update(&mut s, key(KeyCode::Tab));
    assert_eq!(editor(&s).field, Field::Key);
    run(&mut s, [ctrl('u')]);
    run(&mut s, type_text(&"01".repeat(32)));
    assert_eq!(
        update(&mut s, key(KeyCode::Enter)),
        vec![Command::SetRecipient {
            address: "carol@provider1".into(),
            key: [1; 32]
        }]
    );
}

#[test]
fn remove_needs_confirmation() {
    let mut s = populated();
    run(&mut s, [ch('2'), ch('j')]);
    assert!(update(&mut s, ch('d')).is_empty());
    assert_eq!(
        s.modal,
        Some(Modal::Confirm(Confirm::RemoveRecipient {
            address: "carol@provider1".into()
        }))
    );
    // Other keys do nothing; n cancels.
    assert!(update(&mut s, ch('x')).is_empty());
    assert!(s.modal.is_some());
    assert!(update(&mut s, ch('n')).is_empty());
    assert_eq!(s.modal, None);
    // y confirms.
    update(&mut s, ch('d'));
    assert_eq!(
        update(&mut s, ch('y')),
        vec![Command::RemoveRecipient {
            address: "carol@provider1".into()
        }]
    );
    // d does nothing outside the Recipients pane, or with no recipients.
    update(&mut s, ch('1'));
    assert!(update(&mut s, ch('d')).is_empty());
    assert_eq!(s.modal, None);
    s.recipients.clear();
    run(&mut s, [ch('2'), ch('d')]);
    assert_eq!(s.modal, None);
}

#[test]
fn cancel_flow() {
    let mut s = populated();
    run(&mut s, [ch('3'), ch('j'), ch('c')]);
    assert_eq!(
        s.modal,
        Some(Modal::Confirm(Confirm::CancelMessage {
            account: "alice@provider1".into(),
            id: 8,
            recipient: "erin@provider4".into()
        }))
    );
    assert!(update(&mut s, key(KeyCode::Esc)).is_empty());
    assert_eq!(s.modal, None);
    update(&mut s, ch('c'));
    assert_eq!(
        update(&mut s, key(KeyCode::Enter)),
        vec![Command::Cancel {
            account: "alice@provider1".into(),
            id: 8
        }]
    );
    // The cancelled event removes the row and the count.
    update(&mut s, event(EventKind::Cancelled { id: 8 }));
    assert_eq!(s.queue.len(), 1);
    assert_eq!(s.queue[0].item.id, 7);
}

#[test]
fn level_filter_cycles_and_resubscribes() {
    let mut s = populated();
    let visible = |s: &State| s.visible_log().count();
    assert_eq!(visible(&s), 4, "info hides the debug line");
    assert_eq!(
        update(&mut s, ch('l')),
        vec![Command::Subscribe(Level::Debug)]
    );
    assert_eq!(visible(&s), 5);
    assert_eq!(
        update(&mut s, ch('l')),
        vec![Command::Subscribe(Level::Trace)]
    );
    assert_eq!(
        update(&mut s, ch('l')),
        vec![Command::Subscribe(Level::Off)]
    );
    assert_eq!(visible(&s), 2, "events only");
    assert_eq!(
        update(&mut s, ch('l')),
        vec![Command::Subscribe(Level::Error)]
    );
    assert_eq!(visible(&s), 0);
    assert_eq!(
        update(&mut s, ch('l')),
        vec![Command::Subscribe(Level::Warn)]
    );
    assert_eq!(visible(&s), 1);
    assert_eq!(
        update(&mut s, ch('l')),
        vec![Command::Subscribe(Level::Info)]
    );
}

#[test]
fn log_follows_the_tail_unless_scrolled_up() {
    let mut s = populated();
    let log = |n: u64| {
        Msg::Stream(StreamLine::Log(LogLine {
            time_ms: NOW_MS + n,
            level: Level::Info,
            target: "mailproxyd::engine".into(),
            message: format!("line {n}"),
        }))
    };
    update(&mut s, ch('5'));
    update(&mut s, log(1));
    assert_eq!(s.log_offset, 0);
    run(&mut s, [ch('k'), ch('k')]);
    assert_eq!(s.log_offset, 2);
    update(&mut s, log(2));
    assert_eq!(s.log_offset, 3, "the view stays on the same lines");
    update(&mut s, ch('G'));
    assert_eq!(s.log_offset, 0, "G follows again");
    update(&mut s, key(KeyCode::PageUp));
    assert_eq!(s.log_offset, 5, "clamped to the first line");
}

#[test]
fn quit_and_help() {
    let mut s = populated();
    assert_eq!(update(&mut s, ch('q')), vec![Command::Quit]);
    assert_eq!(update(&mut s, ctrl('c')), vec![Command::Quit]);
    update(&mut s, ch('?'));
    assert_eq!(s.modal, Some(Modal::Help));
    assert!(
        update(&mut s, ch('q')).is_empty(),
        "q closes the help first"
    );
    assert_eq!(s.modal, None);
    assert_eq!(update(&mut s, ch('r')), vec![Command::Refresh]);
    // A signal or a lost terminal quits too, even with a dialog open.
    update(&mut s, ch('a'));
    assert_eq!(update(&mut s, Msg::Quit), vec![Command::Quit]);
}

#[test]
fn events_update_counts_queue_and_inbox_at_once() {
    let mut s = populated();
    let alice = |s: &State| s.accounts[0].status.clone().unwrap();
    update(
        &mut s,
        event(EventKind::Queued {
            id: 9,
            to: "frank@provider5".into(),
            size: 100,
        }),
    );
    assert_eq!(s.queue.len(), 3);
    assert_eq!(s.queue[2].item.state, QueueState::Queued);
    assert_eq!(
        s.queue[2].bounce_in(NOW_MS),
        None,
        "deadline unknown until a snapshot"
    );
    assert_eq!(alice(&s).queued, 2);
    update(&mut s, event(EventKind::Sent { id: 9, blocks: 4 }));
    assert_eq!((alice(&s).queued, alice(&s).in_flight), (1, 2));
    update(
        &mut s,
        event(EventKind::Progress {
            id: 9,
            acked: 3,
            blocks: 4,
        }),
    );
    assert_eq!(
        (s.queue[2].item.blocks_acked, s.queue[2].item.blocks_total),
        (3, 4)
    );
    update(&mut s, event(EventKind::Acknowledged { id: 9 }));
    assert_eq!(s.queue.len(), 2);
    assert_eq!((alice(&s).in_flight, alice(&s).acknowledged), (1, 4));
    update(
        &mut s,
        event(EventKind::Bounced {
            id: 7,
            to: "bob@provider2".into(),
            reason: "not acknowledged".into(),
        }),
    );
    assert_eq!(s.queue.len(), 1);
    assert_eq!((alice(&s).in_flight, alice(&s).bounced), (0, 2));
    update(
        &mut s,
        event(EventKind::Delivered {
            id: 5,
            size: 777,
            sender: Some("AAAA".into()),
        }),
    );
    assert_eq!(s.inbox.len(), 3);
    assert_eq!(s.inbox[2].size, 777);
    assert_eq!(s.inbox[2].arrived, NOW_MS / 1000 + 1);
    assert_eq!(alice(&s).inbox, 3);
    update(
        &mut s,
        event(EventKind::ConnectionDown {
            error: Some("refused".into()),
        }),
    );
    assert_eq!(alice(&s).connection, ConnState::Down);
    assert_eq!(alice(&s).last_error.as_deref(), Some("refused"));
    update(&mut s, event(EventKind::ConnectionUp));
    assert_eq!(alice(&s).connection, ConnState::Up);
    update(&mut s, event(EventKind::Document { epoch: 13 }));
    assert_eq!(alice(&s).epoch, Some(13));
    // Every event is in the log.
    let texts: Vec<&str> = s.log.iter().map(|e| e.text.as_str()).collect();
    assert!(texts.contains(&"#9 acknowledged"), "{texts:?}");
    assert!(texts.contains(&"#7 to bob@provider2 bounced: not acknowledged"));
    // An account first seen in an event gets a row.
    update(
        &mut s,
        Msg::Stream(StreamLine::Event(Event {
            time_ms: NOW_MS,
            account: "new@provider9".into(),
            kind: EventKind::ConnectionUp,
        })),
    );
    assert_eq!(s.accounts.len(), 3);
    // Lagging asks for a snapshot to reconcile.
    assert_eq!(
        update(&mut s, Msg::Stream(StreamLine::Lagged { dropped: 3 })),
        vec![Command::Refresh]
    );
}

#[test]
fn snapshot_replaces_data_and_records_unsupported_commands() {
    let mut s = populated();
    run(&mut s, [ch('2'), ch('G')]);
    let snap = Snapshot {
        accounts: Fetched::Ok(vec![AccountInfo {
            account: "alice@provider-0".into(),
            link_key: [1; 32],
            identity_key: [2; 32],
        }]),
        status: Fetched::Unsupported,
        queue: Fetched::Unsupported,
        inbox: Fetched::Failed("store locked".into()),
        recipients: Fetched::Ok(vec![("x@y".into(), [5; 32])]),
    };
    update(&mut s, Msg::Snapshot(Box::new(snap)));
    assert_eq!(s.accounts.len(), 1);
    assert_eq!(s.accounts[0].account, "alice@provider-0");
    assert_eq!(s.accounts[0].status, None);
    assert!(s.unsupported.contains("STATUS") && s.unsupported.contains("QUEUE"));
    assert!(s.queue.is_empty());
    assert_eq!(s.inbox.len(), 2, "a failed INBOX keeps the last data");
    assert_eq!(s.failures, vec![("INBOX", "store locked".to_string())]);
    assert_eq!(s.selection(Pane::Recipients), Some(0), "selection clamped");
    // A newer snapshot with STATUS clears the note.
    let snap = Snapshot {
        accounts: Fetched::Ok(vec![]),
        status: Fetched::Ok(vec![alice_status()]),
        queue: Fetched::Ok(vec![queue_item("alice@provider1", 1, "b@q")]),
        inbox: Fetched::Ok(vec![]),
        recipients: Fetched::Ok(vec![]),
    };
    update(&mut s, Msg::Snapshot(Box::new(snap)));
    assert!(s.unsupported.is_empty() && s.failures.is_empty());
    assert_eq!(s.accounts[0].status, Some(alice_status()));
    assert_eq!(s.queue.len(), 1);
    assert!(s.queue[0].deadlines_known);
}

#[test]
fn connection_changes_and_countdown() {
    let mut s = populated();
    update(
        &mut s,
        Msg::Disconnected {
            error: "connection refused".into(),
            retry_in: Duration::from_secs(2),
        },
    );
    let Connection::Disconnected {
        since_ms,
        retry_at_ms,
        ..
    } = s.connection.clone()
    else {
        panic!("{:?}", s.connection)
    };
    assert_eq!((since_ms, retry_at_ms), (NOW_MS, NOW_MS + 2_000));
    update(
        &mut s,
        Msg::Tick {
            now_ms: NOW_MS + 3_000,
        },
    );
    update(
        &mut s,
        Msg::Disconnected {
            error: "connection refused".into(),
            retry_in: Duration::from_secs(4),
        },
    );
    let Connection::Disconnected {
        since_ms,
        retry_at_ms,
        ..
    } = s.connection.clone()
    else {
        panic!()
    };
    assert_eq!(since_ms, NOW_MS, "since the first loss");
    assert_eq!(retry_at_ms, NOW_MS + 7_000);
    let warnings = s
        .log
        .iter()
        .filter(|e| e.text.starts_with("disconnected"))
        .count();
    assert_eq!(warnings, 1, "one log line per loss, not per attempt");
    update(
        &mut s,
        Msg::Connected {
            version: "mailproxyd 9 protocol 2".into(),
        },
    );
    assert!(s.connection.is_connected());
    // A missing EVENTS is noted once per connection.
    let notes = |s: &State| {
        s.log
            .iter()
            .filter(|e| e.text.starts_with("no live events"))
            .count()
    };
    for _ in 0..3 {
        update(
            &mut s,
            Msg::StreamUnavailable {
                unsupported: true,
                error: "daemon does not support EVENTS (old version?)".into(),
            },
        );
    }
    assert_eq!(notes(&s), 1);
    assert!(s.unsupported.contains("EVENTS"));
    update(
        &mut s,
        Msg::Connected {
            version: "mailproxyd 10 protocol 2".into(),
        },
    );
    assert!(
        !s.unsupported.contains("EVENTS"),
        "a new daemon may have it"
    );
    // Command results flash in the status bar and expire.
    update(
        &mut s,
        Msg::CommandResult {
            description: "recipient x@y set".into(),
            result: Err("no such account".into()),
        },
    );
    let flash = s.flash.clone().unwrap();
    assert!(flash.error && flash.text == "recipient x@y set: no such account");
    update(
        &mut s,
        Msg::Tick {
            now_ms: NOW_MS + 60_000,
        },
    );
    assert_eq!(s.flash, None);
}

#[test]
fn mouse_click_focuses_and_wheel_moves() {
    use ratatui::crossterm::event::{KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
    use ratatui::layout::Rect;
    let mouse = |kind, column, row| {
        Msg::Mouse(MouseEvent {
            kind,
            column,
            row,
            modifiers: KeyModifiers::NONE,
        })
    };
    let mut s = populated();
    update(&mut s, Msg::Resize(140, 40));
    assert_eq!(s.size, (140, 40));
    let areas = mailproxy_tui::view::pane_areas(Rect::new(0, 0, 140, 40), &s);
    assert_eq!(areas.len(), 5);
    for (pane, rect) in areas {
        update(
            &mut s,
            mouse(
                MouseEventKind::Down(MouseButton::Left),
                rect.x + 2,
                rect.y + 1,
            ),
        );
        assert_eq!(s.focus, pane);
    }
    // The header line is no pane: focus stays.
    update(&mut s, mouse(MouseEventKind::Down(MouseButton::Left), 3, 0));
    assert_eq!(s.focus, Pane::Log);
    update(&mut s, ch('2'));
    update(&mut s, mouse(MouseEventKind::ScrollDown, 0, 0));
    assert_eq!(s.selection(Pane::Recipients), Some(1));
    update(&mut s, mouse(MouseEventKind::ScrollUp, 0, 0));
    assert_eq!(s.selection(Pane::Recipients), Some(0));
}
