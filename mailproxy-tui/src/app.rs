//! The dashboard's state: everything the views show. No terminal, no socket.

use std::collections::{BTreeSet, VecDeque};

use mailproxy_proto::{decode_key, AccountStatus, InboxItem, KeyError, Level, QueueItem, KEY_LEN};

/// Most log entries kept (oldest dropped first).
pub const LOG_CAPACITY: usize = 2_000;

/// Longest text accepted in an editor field (a key is at most 64 characters).
pub const MAX_FIELD: usize = 256;

/// The panes, in focus order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pane {
    /// Accounts and their connection state.
    Accounts,
    /// Recipient keys.
    Recipients,
    /// The send queue.
    Queue,
    /// Received mail (metadata only).
    Received,
    /// Log lines and events.
    Log,
}

impl Pane {
    /// Every pane, in focus order (keys `1`-`5`).
    pub const ALL: [Pane; 5] = [
        Pane::Accounts,
        Pane::Recipients,
        Pane::Queue,
        Pane::Received,
        Pane::Log,
    ];

    /// Position in [`Pane::ALL`].
    pub fn index(self) -> usize {
        Pane::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }

    /// The next pane (wrapping).
    pub fn next(self) -> Pane {
        Pane::ALL[(self.index() + 1) % Pane::ALL.len()]
    }

    /// The previous pane (wrapping).
    pub fn prev(self) -> Pane {
        Pane::ALL[(self.index() + Pane::ALL.len() - 1) % Pane::ALL.len()]
    }

    /// The pane's title.
    pub fn title(self) -> &'static str {
        match self {
            Pane::Accounts => "Accounts",
            Pane::Recipients => "Recipients",
            Pane::Queue => "Queue",
            Pane::Received => "Received",
            Pane::Log => "Log",
        }
    }
}

/// The link to the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// Not connected yet (start-up).
    Connecting,
    /// Connected; `version` is the daemon's `VERSION` answer.
    Connected {
        /// E.g. `mailproxyd 0.1.0 protocol 2`.
        version: String,
    },
    /// The daemon is not running or the connection was lost.
    Disconnected {
        /// When the link was lost (unix ms).
        since_ms: u64,
        /// Why.
        error: String,
        /// When the next attempt is made (unix ms).
        retry_at_ms: u64,
    },
}

impl Connection {
    /// Whether the data shown is live.
    pub fn is_connected(&self) -> bool {
        matches!(self, Connection::Connected { .. })
    }
}

/// One account row: the id, and its status when the daemon reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    /// `user@provider`.
    pub account: String,
    /// `STATUS` line (or built up from events); `None` if not known.
    pub status: Option<AccountStatus>,
    /// When `status.document_age` was current (unix ms).
    pub seen_ms: u64,
}

/// One queue row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRow {
    /// The item as last reported (or built from events).
    pub item: QueueItem,
    /// When `item`'s relative times (age, deadlines) were current (unix ms).
    pub seen_ms: u64,
    /// False for rows made from a `queued` event: deadlines are unknown
    /// until the next snapshot.
    pub deadlines_known: bool,
}

impl QueueRow {
    /// Seconds elapsed since `seen_ms`.
    fn elapsed(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.seen_ms) / 1000
    }

    /// Age in seconds at `now_ms`.
    pub fn age(&self, now_ms: u64) -> u64 {
        self.item.age.saturating_add(self.elapsed(now_ms))
    }

    /// Seconds to the next retransmission at `now_ms`, if scheduled and known.
    pub fn retransmit_in(&self, now_ms: u64) -> Option<u64> {
        if !self.deadlines_known {
            return None;
        }
        self.item
            .retransmit_in
            .map(|s| s.saturating_sub(self.elapsed(now_ms)))
    }

    /// Seconds to the bounce deadline at `now_ms`, if known.
    pub fn bounce_in(&self, now_ms: u64) -> Option<u64> {
        self.deadlines_known
            .then(|| self.item.bounce_in.saturating_sub(self.elapsed(now_ms)))
    }
}

/// Where a log entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A daemon log line (`LOG`).
    Log,
    /// A daemon event (`EVENT`).
    Event,
    /// The dashboard itself (connection changes, command results).
    Tui,
}

/// One entry of the log pane: a daemon log line, an event, or a note of
/// the dashboard itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Where it came from.
    pub origin: Origin,
    /// Unix ms.
    pub time_ms: u64,
    /// Severity (events are `Info`, or `Warn` for failures).
    pub level: Level,
    /// The log target, the account of an event, or `tui`.
    pub source: String,
    /// The text.
    pub text: String,
}

/// Which field of the recipient editor has the cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The address.
    Address,
    /// The key.
    Key,
}

/// The recipient editor (`a` / `e`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientEditor {
    /// Address text as typed.
    pub address: String,
    /// Key text as typed.
    pub key: String,
    /// The focused field.
    pub field: Field,
    /// True when editing an existing recipient.
    pub editing: bool,
    /// Why the last submit was refused.
    pub error: Option<String>,
}

impl RecipientEditor {
    /// An empty editor for a new recipient.
    pub fn new() -> RecipientEditor {
        RecipientEditor {
            address: String::new(),
            key: String::new(),
            field: Field::Address,
            editing: false,
            error: None,
        }
    }

    /// The key as typed, decoded (hex or base64).
    pub fn key_check(&self) -> Result<[u8; KEY_LEN], KeyError> {
        decode_key(&self.key)
    }

    /// The address, validated (the daemon normalises it further).
    pub fn address_check(&self) -> Result<String, &'static str> {
        check_address(&self.address)
    }

    /// The live validation line shown under the key field.
    pub fn key_message(&self) -> String {
        match self.key_check() {
            Ok(_) => "key ok (32 bytes)".to_owned(),
            Err(KeyError::Empty) => "paste the recipient's key (hex or base64)".to_owned(),
            Err(e) => format!("invalid key: {e}"),
        }
    }
}

impl Default for RecipientEditor {
    fn default() -> Self {
        RecipientEditor::new()
    }
}

/// Checks an address typed by the user: `user@provider`, no blanks.
pub fn check_address(text: &str) -> Result<String, &'static str> {
    let text = text.trim();
    if text.is_empty() {
        return Err("address is empty");
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("address must not contain blanks");
    }
    match text.split_once('@') {
        Some((user, provider)) if !user.is_empty() && !provider.is_empty() => {
            if provider.contains('@') {
                Err("address has more than one '@'")
            } else {
                Ok(text.to_owned())
            }
        }
        _ => Err("address must be user@provider"),
    }
}

/// What a confirm dialog asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirm {
    /// Remove a recipient.
    RemoveRecipient {
        /// The address.
        address: String,
    },
    /// Cancel an outgoing message.
    CancelMessage {
        /// The sending account.
        account: String,
        /// Queue id.
        id: u64,
        /// Its recipient (shown).
        recipient: String,
    },
}

/// A dialog on top of the panes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modal {
    /// The key help.
    Help,
    /// Add or edit a recipient.
    Editor(RecipientEditor),
    /// Yes/no question.
    Confirm(Confirm),
}

/// A short message in the status bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    /// The text.
    pub text: String,
    /// Shown as an error.
    pub error: bool,
    /// Hidden after this time (unix ms).
    pub until_ms: u64,
}

/// Everything the dashboard shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// The current time (unix ms), advanced by ticks.
    pub now_ms: u64,
    /// The link to the daemon.
    pub connection: Connection,
    /// Accounts, sorted.
    pub accounts: Vec<AccountRow>,
    /// Recipients `(address, key)`, sorted by address.
    pub recipients: Vec<(String, [u8; KEY_LEN])>,
    /// The send queue, sorted by account and id.
    pub queue: Vec<QueueRow>,
    /// Received messages, sorted by account and id.
    pub inbox: Vec<InboxItem>,
    /// Log lines and events, oldest first, at most [`LOG_CAPACITY`].
    pub log: VecDeque<LogEntry>,
    /// The log level shown (and subscribed to).
    pub level: Level,
    /// The focused pane.
    pub focus: Pane,
    /// Selected row per pane (indexed by [`Pane::index`]); unused for the log.
    pub selected: [usize; 5],
    /// Log lines scrolled up from the tail; 0 follows the tail.
    pub log_offset: usize,
    /// The open dialog.
    pub modal: Option<Modal>,
    /// Commands the daemon answered `500` to (an older daemon).
    pub unsupported: BTreeSet<&'static str>,
    /// Other failures of the last snapshot, by command.
    pub failures: Vec<(&'static str, String)>,
    /// A status bar message.
    pub flash: Option<Flash>,
    /// When the last snapshot arrived (unix ms).
    pub last_snapshot_ms: Option<u64>,
    /// The terminal size `(columns, rows)` (for mouse clicks).
    pub size: (u16, u16),
}

impl State {
    /// A fresh state at `now_ms`, showing log lines at `level`.
    pub fn new(now_ms: u64, level: Level) -> State {
        State {
            now_ms,
            connection: Connection::Connecting,
            accounts: Vec::new(),
            recipients: Vec::new(),
            queue: Vec::new(),
            inbox: Vec::new(),
            log: VecDeque::new(),
            level,
            focus: Pane::Accounts,
            selected: [0; 5],
            log_offset: 0,
            modal: None,
            unsupported: BTreeSet::new(),
            failures: Vec::new(),
            flash: None,
            last_snapshot_ms: None,
            size: (80, 24),
        }
    }

    /// Appends a log entry, dropping the oldest beyond [`LOG_CAPACITY`];
    /// keeps a scrolled-up view where it is.
    pub fn push_log(&mut self, entry: LogEntry) {
        if self.log_offset > 0 && self.shows(&entry) {
            self.log_offset += 1;
        }
        self.log.push_back(entry);
        while self.log.len() > LOG_CAPACITY {
            self.log.pop_front();
        }
        self.clamp_log_offset();
    }

    /// Keeps a scrolled-up log view within the lines shown (counting them
    /// only when scrolled: following the tail is the common, cheap case).
    fn clamp_log_offset(&mut self) {
        if self.log_offset > 0 {
            self.log_offset = self
                .log_offset
                .min(self.visible_log_len().saturating_sub(1));
        }
    }

    /// A note of the dashboard itself in the log.
    pub fn note(&mut self, level: Level, text: impl Into<String>) {
        let entry = LogEntry {
            origin: Origin::Tui,
            time_ms: self.now_ms,
            level,
            source: "tui".into(),
            text: text.into(),
        };
        self.push_log(entry);
    }

    /// Whether the level filter shows `entry`: entries at the level or
    /// more severe; at `Off` (no daemon log lines) events and notes only.
    pub fn shows(&self, entry: &LogEntry) -> bool {
        if self.level == Level::Off {
            entry.origin != Origin::Log
        } else {
            self.level.admits(entry.level)
        }
    }

    /// The log entries the filter shows, oldest first.
    pub fn visible_log(&self) -> impl Iterator<Item = &LogEntry> {
        self.log.iter().filter(|e| self.shows(e))
    }

    /// How many entries the filter shows.
    pub fn visible_log_len(&self) -> usize {
        self.visible_log().count()
    }

    /// Number of rows of a pane (for selection bounds).
    pub fn rows(&self, pane: Pane) -> usize {
        match pane {
            Pane::Accounts => self.accounts.len(),
            Pane::Recipients => self.recipients.len(),
            Pane::Queue => self.queue.len(),
            Pane::Received => self.inbox.len(),
            Pane::Log => self.visible_log_len(),
        }
    }

    /// The selected row of a pane, clamped to its rows.
    pub fn selection(&self, pane: Pane) -> Option<usize> {
        let rows = self.rows(pane);
        (rows > 0).then(|| self.selected[pane.index()].min(rows - 1))
    }

    /// Clamps every selection to its pane's rows (the log has no
    /// selection, only its scroll offset).
    pub fn clamp_selections(&mut self) {
        for pane in Pane::ALL {
            if pane == Pane::Log {
                continue;
            }
            let rows = self.rows(pane);
            let sel = &mut self.selected[pane.index()];
            *sel = (*sel).min(rows.saturating_sub(1));
        }
        self.clamp_log_offset();
    }

    /// Shows `text` in the status bar for a few seconds.
    pub fn flash(&mut self, text: impl Into<String>, error: bool) {
        self.flash = Some(Flash {
            text: text.into(),
            error,
            until_ms: self.now_ms.saturating_add(5_000),
        });
    }

    /// The row of an account, created if missing.
    pub fn account_mut(&mut self, account: &str) -> &mut AccountRow {
        let pos = match self
            .accounts
            .binary_search_by(|a| a.account.as_str().cmp(account))
        {
            Ok(pos) => pos,
            Err(pos) => {
                self.accounts.insert(
                    pos,
                    AccountRow {
                        account: account.to_owned(),
                        status: None,
                        seen_ms: self.now_ms,
                    },
                );
                pos
            }
        };
        &mut self.accounts[pos]
    }

    /// The position of a queue row.
    pub fn queue_position(&self, account: &str, id: u64) -> Option<usize> {
        self.queue
            .iter()
            .position(|r| r.item.account == account && r.item.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(level: Level, n: usize) -> LogEntry {
        LogEntry {
            origin: Origin::Log,
            time_ms: n as u64,
            level,
            source: "t".into(),
            text: n.to_string(),
        }
    }

    #[test]
    fn log_is_bounded_and_keeps_scroll_position() {
        let mut s = State::new(0, Level::Info);
        for n in 0..LOG_CAPACITY + 10 {
            s.push_log(entry(Level::Info, n));
        }
        assert_eq!(s.log.len(), LOG_CAPACITY);
        assert_eq!(s.log.front().unwrap().text, "10");
        s.log_offset = 5;
        s.push_log(entry(Level::Info, 1));
        assert_eq!(s.log_offset, 6, "scrolled view stays on the same lines");
        s.push_log(entry(Level::Debug, 2));
        assert_eq!(s.log_offset, 6, "hidden lines do not move the view");
    }

    #[test]
    fn level_off_shows_events_and_notes_only() {
        let mut s = State::new(0, Level::Off);
        s.push_log(entry(Level::Error, 1));
        s.push_log(LogEntry {
            origin: Origin::Event,
            ..entry(Level::Info, 2)
        });
        s.note(Level::Warn, "3");
        let shown: Vec<&str> = s.visible_log().map(|e| e.text.as_str()).collect();
        assert_eq!(shown, ["2", "3"]);
    }

    #[test]
    fn addresses() {
        assert_eq!(check_address(" bob@p "), Ok("bob@p".into()));
        for bad in ["", "bob", "@p", "bob@", "b ob@p", "a@b@c"] {
            assert!(check_address(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn queue_row_times_advance() {
        let row = QueueRow {
            item: QueueItem {
                account: "a@p".into(),
                id: 1,
                recipient: "b@q".into(),
                size: 1,
                blocks_acked: 0,
                blocks_total: 1,
                age: 10,
                state: mailproxy_proto::QueueState::Sending,
                retransmit_in: Some(3),
                bounce_in: 100,
                unreliable: false,
            },
            seen_ms: 1_000,
            deadlines_known: true,
        };
        assert_eq!(row.age(6_000), 15);
        assert_eq!(row.retransmit_in(6_000), Some(0));
        assert_eq!(row.bounce_in(6_000), Some(95));
        let unknown = QueueRow {
            deadlines_known: false,
            ..row
        };
        assert_eq!(unknown.bounce_in(6_000), None);
    }
}
