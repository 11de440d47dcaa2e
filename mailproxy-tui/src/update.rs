//! The state machine: `update(&mut State, Msg) -> Vec<Command>`, pure (no
//! I/O, no clock); the runtime executes the returned commands.

use mailproxy_proto::{
    encode_key, AccountStatus, ConnState, Event, EventKind, InboxItem, Level, QueueItem,
    QueueState, StoreState, StreamLine, KEY_LEN,
};
use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEventKind,
};
use ratatui::layout::Rect;

use crate::app::{
    AccountRow, Confirm, Connection, Field, LogEntry, Modal, Origin, Pane, QueueRow,
    RecipientEditor, State, MAX_FIELD,
};
use crate::event::{Fetched, Msg, Snapshot};
use crate::view::pane_at;

/// An effect for the runtime to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `SET_RECIPIENT`.
    SetRecipient {
        /// The address.
        address: String,
        /// The decoded key.
        key: [u8; KEY_LEN],
    },
    /// `REMOVE_RECIPIENT`.
    RemoveRecipient {
        /// The address.
        address: String,
    },
    /// `CANCEL`.
    Cancel {
        /// The sending account.
        account: String,
        /// Queue id.
        id: u64,
    },
    /// Poll a snapshot now (or reconnect now if disconnected).
    Refresh,
    /// Re-subscribe to events with log lines at this level.
    Subscribe(Level),
    /// Leave the dashboard.
    Quit,
}

/// Rows moved by PageUp / PageDown.
const PAGE: usize = 10;

/// The levels `l` cycles through (`Off`: events only).
const LEVELS: [Level; 6] = [
    Level::Off,
    Level::Error,
    Level::Warn,
    Level::Info,
    Level::Debug,
    Level::Trace,
];

/// Applies `msg` to `state` and returns the effects to run.
pub fn update(state: &mut State, msg: Msg) -> Vec<Command> {
    match msg {
        Msg::Key(key) => on_key(state, key),
        Msg::Paste(text) => {
            if let Some(Modal::Editor(editor)) = &mut state.modal {
                for c in text.chars().filter(|c| !c.is_control()) {
                    type_char(editor, c);
                }
            }
            Vec::new()
        }
        Msg::Mouse(mouse) => {
            if state.modal.is_none() {
                match mouse.kind {
                    MouseEventKind::ScrollUp => move_selection(state, -1),
                    MouseEventKind::ScrollDown => move_selection(state, 1),
                    MouseEventKind::Down(MouseButton::Left) => {
                        let (width, height) = state.size;
                        let area = Rect::new(0, 0, width, height);
                        if let Some(pane) = pane_at(area, state, mouse.column, mouse.row) {
                            state.focus = pane;
                        }
                    }
                    _ => {}
                }
            }
            Vec::new()
        }
        Msg::Resize(width, height) => {
            state.size = (width, height);
            Vec::new()
        }
        Msg::Quit => vec![Command::Quit],
        Msg::Tick { now_ms } => {
            state.now_ms = now_ms;
            if state.flash.as_ref().is_some_and(|f| f.until_ms <= now_ms) {
                state.flash = None;
            }
            Vec::new()
        }
        Msg::Connected { version } => {
            // A restarted daemon may be newer: the subscription will say
            // again if it lacks EVENTS (snapshots re-check the rest).
            state.unsupported.remove("EVENTS");
            state.note(Level::Info, format!("connected to {version}"));
            state.connection = Connection::Connected { version };
            Vec::new()
        }
        Msg::Disconnected { error, retry_in } => {
            let since_ms = match &state.connection {
                Connection::Disconnected { since_ms, .. } => *since_ms,
                _ => {
                    state.note(Level::Warn, format!("disconnected: {error}"));
                    state.now_ms
                }
            };
            state.connection = Connection::Disconnected {
                since_ms,
                error,
                retry_at_ms: state
                    .now_ms
                    .saturating_add(u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX)),
            };
            Vec::new()
        }
        Msg::Snapshot(snapshot) => {
            apply_snapshot(state, *snapshot);
            Vec::new()
        }
        Msg::Stream(line) => on_stream(state, line),
        Msg::StreamUnavailable { unsupported, error } => {
            // Said once, not at every re-subscription.
            let known = unsupported && !state.unsupported.insert("EVENTS");
            if !known {
                state.note(Level::Warn, format!("no live events: {error}"));
            }
            Vec::new()
        }
        Msg::CommandResult {
            description,
            result,
        } => {
            match result {
                Ok(()) => {
                    state.note(Level::Info, description.clone());
                    state.flash(description, false);
                }
                Err(e) => {
                    let text = format!("{description}: {e}");
                    state.note(Level::Error, text.clone());
                    state.flash(text, true);
                }
            }
            Vec::new()
        }
    }
}

fn on_key(state: &mut State, key: KeyEvent) -> Vec<Command> {
    if key.kind == KeyEventKind::Release {
        return Vec::new();
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && key.code == KeyCode::Char('c') {
        return vec![Command::Quit];
    }
    match state.modal.take() {
        None => on_key_main(state, key),
        Some(Modal::Help) => Vec::new(), // any key closes the help
        Some(Modal::Confirm(confirm)) => match key.code {
            KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter => match confirm {
                Confirm::RemoveRecipient { address } => {
                    vec![Command::RemoveRecipient { address }]
                }
                Confirm::CancelMessage { account, id, .. } => {
                    vec![Command::Cancel { account, id }]
                }
            },
            KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => Vec::new(),
            _ => {
                state.modal = Some(Modal::Confirm(confirm));
                Vec::new()
            }
        },
        Some(Modal::Editor(mut editor)) => {
            let commands = on_key_editor(&mut editor, key, ctrl);
            if commands.is_none() {
                state.modal = Some(Modal::Editor(editor));
            }
            commands.unwrap_or_default()
        }
    }
}

/// Editor keys; `Some` closes the editor (with the commands to run).
fn on_key_editor(editor: &mut RecipientEditor, key: KeyEvent, ctrl: bool) -> Option<Vec<Command>> {
    match key.code {
        KeyCode::Esc => return Some(Vec::new()),
        // Editing keeps the address: only the key changes.
        KeyCode::Tab | KeyCode::BackTab | KeyCode::Up | KeyCode::Down if !editor.editing => {
            editor.field = match editor.field {
                Field::Address => Field::Key,
                Field::Key => Field::Address,
            };
        }
        KeyCode::Enter => return submit(editor),
        KeyCode::Backspace => {
            field_mut(editor).pop();
            editor.error = None;
        }
        KeyCode::Char('u') if ctrl => {
            field_mut(editor).clear();
            editor.error = None;
        }
        KeyCode::Char(c) if !ctrl => type_char(editor, c),
        _ => {}
    }
    None
}

fn field_mut(editor: &mut RecipientEditor) -> &mut String {
    match editor.field {
        Field::Address => &mut editor.address,
        Field::Key => &mut editor.key,
    }
}

fn type_char(editor: &mut RecipientEditor, c: char) {
    let field = field_mut(editor);
    if field.len() < MAX_FIELD {
        field.push(c);
    }
    editor.error = None;
}

/// Enter in the editor: the command if both fields are valid, else a message.
fn submit(editor: &mut RecipientEditor) -> Option<Vec<Command>> {
    let address = match editor.address_check() {
        Ok(a) => a,
        Err(e) => {
            editor.error = Some(e.to_owned());
            editor.field = Field::Address;
            return None;
        }
    };
    if editor.field == Field::Address && editor.key.trim().is_empty() {
        // Enter after the address moves on to the key.
        editor.field = Field::Key;
        return None;
    }
    match editor.key_check() {
        Ok(key) => Some(vec![Command::SetRecipient { address, key }]),
        Err(e) => {
            editor.error = Some(format!("invalid key: {e}"));
            editor.field = Field::Key;
            None
        }
    }
}

fn on_key_main(state: &mut State, key: KeyEvent) -> Vec<Command> {
    let pane = state.focus;
    match key.code {
        KeyCode::Char('q') => return vec![Command::Quit],
        KeyCode::Tab => state.focus = pane.next(),
        KeyCode::BackTab => state.focus = pane.prev(),
        KeyCode::Char(c @ '1'..='5') => state.focus = Pane::ALL[c as usize - '1' as usize],
        KeyCode::Up | KeyCode::Char('k') => move_selection(state, -1),
        KeyCode::Down | KeyCode::Char('j') => move_selection(state, 1),
        KeyCode::PageUp => move_selection(state, -(PAGE as isize)),
        KeyCode::PageDown => move_selection(state, PAGE as isize),
        KeyCode::Home | KeyCode::Char('g') => move_selection(state, isize::MIN),
        KeyCode::End | KeyCode::Char('G') => move_selection(state, isize::MAX),
        KeyCode::Char('?') | KeyCode::F(1) => state.modal = Some(Modal::Help),
        KeyCode::Char('r') => return vec![Command::Refresh],
        KeyCode::Char('l') => {
            let pos = LEVELS.iter().position(|l| *l == state.level).unwrap_or(0);
            state.level = LEVELS[(pos + 1) % LEVELS.len()];
            state.log_offset = 0;
            state.flash(format!("log level {}", state.level), false);
            return vec![Command::Subscribe(state.level)];
        }
        KeyCode::Char('a') => {
            state.focus = Pane::Recipients;
            state.modal = Some(Modal::Editor(RecipientEditor::new()));
        }
        KeyCode::Char('e') if pane == Pane::Recipients => {
            if let Some((address, key)) =
                state.selection(pane).and_then(|i| state.recipients.get(i))
            {
                state.modal = Some(Modal::Editor(RecipientEditor {
                    address: address.clone(),
                    key: encode_key(key),
                    field: Field::Key,
                    editing: true,
                    error: None,
                }));
            }
        }
        KeyCode::Char('d') | KeyCode::Delete if pane == Pane::Recipients => {
            if let Some((address, _)) = state.selection(pane).and_then(|i| state.recipients.get(i))
            {
                state.modal = Some(Modal::Confirm(Confirm::RemoveRecipient {
                    address: address.clone(),
                }));
            }
        }
        KeyCode::Char('c') | KeyCode::Delete if pane == Pane::Queue => {
            if let Some(row) = state.selection(pane).and_then(|i| state.queue.get(i)) {
                state.modal = Some(Modal::Confirm(Confirm::CancelMessage {
                    account: row.item.account.clone(),
                    id: row.item.id,
                    recipient: row.item.recipient.clone(),
                }));
            }
        }
        _ => {}
    }
    Vec::new()
}

/// Moves the focused pane's selection by `delta` rows (the log scrolls:
/// up moves away from the tail).
fn move_selection(state: &mut State, delta: isize) {
    let pane = state.focus;
    let rows = state.rows(pane);
    let last = rows.saturating_sub(1);
    if pane == Pane::Log {
        // log_offset counts lines up from the tail.
        state.log_offset = step(state.log_offset, -delta, last);
        return;
    }
    let sel = state.selection(pane).unwrap_or(0);
    state.selected[pane.index()] = step(sel, delta, last);
}

fn step(from: usize, delta: isize, last: usize) -> usize {
    if delta == isize::MIN {
        return 0;
    }
    if delta == isize::MAX {
        return last;
    }
    if delta < 0 {
        from.saturating_sub(delta.unsigned_abs())
    } else {
        from.saturating_add(delta as usize).min(last)
    }
}

/// Replaces the polled data (events applied since are reconciled by it).
fn apply_snapshot(state: &mut State, snapshot: Snapshot) {
    let now = state.now_ms;
    state.last_snapshot_ms = Some(now);
    state.failures.clear();
    let note =
        |state: &mut State, command: &'static str, outcome: Result<bool, String>| match outcome {
            Ok(true) => {
                state.unsupported.remove(command);
            }
            Ok(false) => {
                state.unsupported.insert(command);
            }
            Err(e) => {
                state.unsupported.remove(command);
                state.failures.push((command, e));
            }
        };

    let mut ids: Vec<String> = Vec::new();
    match snapshot.accounts {
        Fetched::Ok(accounts) => {
            ids.extend(accounts.into_iter().map(|a| a.account));
            note(state, "ACCOUNTS", Ok(true));
        }
        Fetched::Unsupported => note(state, "ACCOUNTS", Ok(false)),
        Fetched::Failed(e) => note(state, "ACCOUNTS", Err(e)),
    }
    let statuses: Vec<AccountStatus> = match snapshot.status {
        Fetched::Ok(s) => {
            note(state, "STATUS", Ok(true));
            s
        }
        Fetched::Unsupported => {
            note(state, "STATUS", Ok(false));
            Vec::new()
        }
        Fetched::Failed(e) => {
            note(state, "STATUS", Err(e));
            Vec::new()
        }
    };
    ids.extend(statuses.iter().map(|s| s.account.clone()));
    ids.sort();
    ids.dedup();
    state.accounts = ids
        .into_iter()
        .map(|account| AccountRow {
            status: statuses.iter().find(|s| s.account == account).cloned(),
            account,
            seen_ms: now,
        })
        .collect();

    match snapshot.queue {
        Fetched::Ok(items) => {
            note(state, "QUEUE", Ok(true));
            state.queue = items
                .into_iter()
                .map(|item| QueueRow {
                    item,
                    seen_ms: now,
                    deadlines_known: true,
                })
                .collect();
        }
        Fetched::Unsupported => {
            note(state, "QUEUE", Ok(false));
            state.queue.clear();
        }
        Fetched::Failed(e) => note(state, "QUEUE", Err(e)),
    }
    match snapshot.inbox {
        Fetched::Ok(items) => {
            note(state, "INBOX", Ok(true));
            state.inbox = items;
        }
        Fetched::Unsupported => {
            note(state, "INBOX", Ok(false));
            state.inbox.clear();
        }
        Fetched::Failed(e) => note(state, "INBOX", Err(e)),
    }
    match snapshot.recipients {
        Fetched::Ok(list) => {
            note(state, "LIST_RECIPIENTS", Ok(true));
            state.recipients = list;
        }
        Fetched::Unsupported => note(state, "LIST_RECIPIENTS", Ok(false)),
        Fetched::Failed(e) => note(state, "LIST_RECIPIENTS", Err(e)),
    }
    state.clamp_selections();
}

fn on_stream(state: &mut State, line: StreamLine) -> Vec<Command> {
    match line {
        StreamLine::Log(log) => {
            state.push_log(LogEntry {
                origin: Origin::Log,
                time_ms: log.time_ms,
                level: log.level,
                source: log.target,
                text: log.message,
            });
            Vec::new()
        }
        StreamLine::Lagged { dropped } => {
            state.note(
                Level::Warn,
                format!("{dropped} log lines or events dropped (reading too slowly); refreshing"),
            );
            vec![Command::Refresh]
        }
        StreamLine::Event(event) => {
            let entry = LogEntry {
                origin: Origin::Event,
                time_ms: event.time_ms,
                level: event_level(&event.kind),
                source: event.account.clone(),
                text: describe(&event.kind),
            };
            apply_event(state, event);
            state.push_log(entry);
            state.clamp_selections();
            Vec::new()
        }
    }
}

fn event_level(kind: &EventKind) -> Level {
    match kind {
        EventKind::ConnectionDown { .. }
        | EventKind::Bounced { .. }
        | EventKind::KeyDiscoveryFailed { .. } => Level::Warn,
        EventKind::StoreFailing { .. } => Level::Error,
        EventKind::Fetched { .. } => Level::Debug,
        _ => Level::Info,
    }
}

/// A one-line description of an event for the log pane.
pub fn describe(kind: &EventKind) -> String {
    match kind {
        EventKind::ConnectionUp => "connected to the provider".into(),
        EventKind::ConnectionDown { error } => match error {
            Some(e) => format!("provider connection down: {e}"),
            None => "provider connection down".into(),
        },
        EventKind::Document { epoch } => format!("PKI document for epoch {epoch}"),
        EventKind::Queued { id, to, size } => format!("#{id} queued to {to} ({size} bytes)"),
        EventKind::Sent { id, blocks } => format!("#{id} sent ({blocks} blocks)"),
        EventKind::Progress { id, acked, blocks } => format!("#{id} {acked}/{blocks} acked"),
        EventKind::Acknowledged { id } => format!("#{id} acknowledged"),
        EventKind::Bounced { id, to, reason } => format!("#{id} to {to} bounced: {reason}"),
        EventKind::Cancelled { id } => format!("#{id} cancelled"),
        EventKind::KeyDiscovered { to } => format!("key of {to} discovered"),
        EventKind::KeyDiscoveryFailed { to, reason } => {
            format!("key discovery for {to} failed: {reason}")
        }
        EventKind::Fetched { remaining } => format!("fetched a block, {remaining} waiting"),
        EventKind::Delivered { id, size, .. } => format!("message #{id} received ({size} bytes)"),
        EventKind::Report { subject } => format!("report: {subject}"),
        EventKind::StoreFailing { error, full } => format!(
            "store {}, retrying (retrieval paused, SMTP refuses): {error}",
            if *full { "full" } else { "failing" }
        ),
        EventKind::StoreRecovered => "store writes again".into(),
        EventKind::Other { name } => format!("event {name}"),
    }
}

/// Applies an event to the counts, queue and inbox at once (the next
/// snapshot reconciles).
fn apply_event(state: &mut State, event: Event) {
    let now = state.now_ms;
    let Event {
        account,
        kind,
        time_ms,
    } = event;
    match kind {
        EventKind::ConnectionUp => {
            status_mut(state, &account).connection = ConnState::Up;
        }
        EventKind::ConnectionDown { error } => {
            let status = status_mut(state, &account);
            status.connection = ConnState::Down;
            if error.is_some() {
                status.last_error = error;
            }
        }
        EventKind::Document { epoch } => {
            let row = state.account_mut(&account);
            row.seen_ms = now;
            let status = row.status.get_or_insert_with(|| AccountStatus {
                account: account.clone(),
                ..Default::default()
            });
            status.epoch = Some(epoch);
            status.document_age = Some(0);
        }
        EventKind::Queued { id, to, size } => {
            if state.queue_position(&account, id).is_none() {
                let status = status_mut(state, &account);
                status.queued = status.queued.saturating_add(1);
                let row = QueueRow {
                    item: QueueItem {
                        account: account.clone(),
                        id,
                        recipient: to,
                        size,
                        blocks_acked: 0,
                        blocks_total: 0,
                        age: 0,
                        state: QueueState::Queued,
                        retransmit_in: None,
                        bounce_in: 0,
                        unreliable: false,
                    },
                    seen_ms: now,
                    deadlines_known: false,
                };
                let pos = state
                    .queue
                    .partition_point(|r| (r.item.account.as_str(), r.item.id) < (&account, id));
                state.queue.insert(pos, row);
            }
        }
        EventKind::Sent { id, blocks } => {
            start_sending(state, &account, id);
            if let Some(pos) = state.queue_position(&account, id) {
                state.queue[pos].item.blocks_total = blocks;
            }
        }
        EventKind::Progress { id, acked, blocks } => {
            start_sending(state, &account, id);
            if let Some(pos) = state.queue_position(&account, id) {
                let item = &mut state.queue[pos].item;
                item.blocks_acked = acked;
                item.blocks_total = blocks;
            }
        }
        EventKind::Acknowledged { id } => {
            leave_queue(state, &account, id);
            let status = status_mut(state, &account);
            status.acknowledged = status.acknowledged.saturating_add(1);
        }
        EventKind::Bounced { id, .. } => {
            leave_queue(state, &account, id);
            let status = status_mut(state, &account);
            status.bounced = status.bounced.saturating_add(1);
        }
        EventKind::Cancelled { id } => leave_queue(state, &account, id),
        EventKind::Delivered { id, size, sender } => {
            let arrived = time_ms / 1000;
            if !state
                .inbox
                .iter()
                .any(|i| i.account == account && i.id == id)
            {
                let status = status_mut(state, &account);
                status.delivered = status.delivered.saturating_add(1);
                status.inbox = status.inbox.saturating_add(1);
                status.inbox_bytes = status.inbox_bytes.saturating_add(size);
                let pos = state
                    .inbox
                    .partition_point(|i| (i.account.as_str(), i.id) < (&account, id));
                state.inbox.insert(
                    pos,
                    InboxItem {
                        account,
                        id,
                        size,
                        arrived,
                        sender,
                    },
                );
            }
        }
        EventKind::StoreFailing { error, full } => {
            let status = status_mut(state, &account);
            status.store = if full {
                StoreState::Full
            } else {
                StoreState::Failing
            };
            status.store_error = Some(error);
        }
        EventKind::StoreRecovered => {
            let status = status_mut(state, &account);
            status.store = StoreState::Ok;
            status.store_error = None;
        }
        EventKind::KeyDiscovered { .. }
        | EventKind::KeyDiscoveryFailed { .. }
        | EventKind::Fetched { .. }
        | EventKind::Report { .. }
        | EventKind::Other { .. } => {}
    }
}

fn status_mut<'a>(state: &'a mut State, account: &str) -> &'a mut AccountStatus {
    state
        .account_mut(account)
        .status
        .get_or_insert_with(|| AccountStatus {
            account: account.to_owned(),
            ..Default::default()
        })
}

/// A queue row moves from queued to sending (first `sent` or `progress`).
fn start_sending(state: &mut State, account: &str, id: u64) {
    let Some(pos) = state.queue_position(account, id) else {
        return;
    };
    let was = state.queue[pos].item.state;
    if was == QueueState::Sending {
        return;
    }
    state.queue[pos].item.state = QueueState::Sending;
    let status = status_mut(state, account);
    status.queued = status.queued.saturating_sub(1);
    status.in_flight = status.in_flight.saturating_add(1);
}

/// Removes a queue row and takes it off the queued / in-flight counts.
fn leave_queue(state: &mut State, account: &str, id: u64) {
    let Some(pos) = state.queue_position(account, id) else {
        return;
    };
    let row = state.queue.remove(pos);
    let status = status_mut(state, account);
    if row.item.state == QueueState::Sending {
        status.in_flight = status.in_flight.saturating_sub(1);
    } else {
        status.queued = status.queued.saturating_sub(1);
    }
}
