//! The one input enum of the dashboard: terminal input, time, and what the
//! runtime learned from the daemon.

use std::time::Duration;

use mailproxy_proto::{AccountInfo, AccountStatus, InboxItem, QueueItem, StreamLine, KEY_LEN};
use ratatui::crossterm::event::{KeyEvent, MouseEvent};

/// The outcome of one snapshot request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched<T> {
    /// The daemon answered.
    Ok(T),
    /// The daemon answered `500` (unrecognised command): it is older than
    /// this dashboard.
    Unsupported,
    /// The daemon answered with another error.
    Failed(String),
}

/// Everything polled from the daemon in one go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// `ACCOUNTS`.
    pub accounts: Fetched<Vec<AccountInfo>>,
    /// `STATUS`.
    pub status: Fetched<Vec<AccountStatus>>,
    /// `QUEUE`.
    pub queue: Fetched<Vec<QueueItem>>,
    /// `INBOX`.
    pub inbox: Fetched<Vec<InboxItem>>,
    /// `LIST_RECIPIENTS`.
    pub recipients: Fetched<Vec<(String, [u8; KEY_LEN])>>,
}

/// An input to [`crate::update::update`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// A key press.
    Key(KeyEvent),
    /// Pasted text (bracketed paste).
    Paste(String),
    /// A mouse event (only with `--mouse`).
    Mouse(MouseEvent),
    /// The terminal was resized (the next draw uses the new size).
    Resize(u16, u16),
    /// A signal (SIGTERM, SIGHUP) or a lost terminal asks the dashboard to end.
    Quit,
    /// Time passes; `now_ms` is unix time in milliseconds.
    Tick {
        /// The current time.
        now_ms: u64,
    },
    /// Connected to the daemon.
    Connected {
        /// Its `VERSION` answer.
        version: String,
    },
    /// A fresh snapshot.
    Snapshot(Box<Snapshot>),
    /// A line of the event subscription.
    Stream(StreamLine),
    /// The event subscription is not available (why).
    StreamUnavailable {
        /// True when the daemon does not know `EVENTS` at all.
        unsupported: bool,
        /// The daemon's answer or the error.
        error: String,
    },
    /// The daemon is not running or went away; the runtime retries after `retry_in`.
    Disconnected {
        /// Why.
        error: String,
        /// Time until the next attempt.
        retry_in: Duration,
    },
    /// The outcome of a [`crate::update::Command`].
    CommandResult {
        /// What was done, e.g. `recipient bob@example.org set`.
        description: String,
        /// `Err` with the daemon's or the connection's error.
        result: Result<(), String>,
    },
}
