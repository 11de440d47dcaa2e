//! `STATUS`: one line per account.
//!
//! ```text
//! <account> conn=<connecting|up|down> epoch=<n|-> doc_age=<s|-> skew=<s|->
//!     queued=<n> in_flight=<n> acked=<n> bounced=<n> delivered=<n>
//!     inbox=<n> inbox_bytes=<n> packets=<n> retransmits=<n> error=<text|->
//!     store=<ok|failing|full> store_error=<text|-> partials=<n> partial_bytes=<n>
//!     imap_sessions=<n>
//! ```
//!
//! `store` is `failing` while the account's store cannot write (`full` when
//! the disk or quota is full), with the operating system's error in
//! `store_error`; the daemon retries by itself. `partials` and
//! `partial_bytes` are the incomplete incoming messages held. A line from an
//! older daemon has none of these: `store` reads as `ok`.
//!
//! `queued` and `in_flight` count the send queue now (entries not started,
//! entries with blocks out); `acked`, `bounced`, `delivered`, `packets` and
//! `retransmits` count since the daemon started; `inbox` is the inbox now.

use serde::{Deserialize, Serialize};

use crate::fields::{FieldError, FieldWriter, Fields};

/// The state of an account's link to its provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnState {
    /// Not connected yet, or reconnecting.
    #[default]
    Connecting,
    /// A session to the provider is up.
    Up,
    /// The last attempt failed; waiting before the next.
    Down,
}

impl ConnState {
    /// The wire word.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::Connecting => "connecting",
            ConnState::Up => "up",
            ConnState::Down => "down",
        }
    }

    /// Parses the wire word.
    pub fn parse(word: &str) -> Option<ConnState> {
        match word {
            "connecting" => Some(ConnState::Connecting),
            "up" => Some(ConnState::Up),
            "down" => Some(ConnState::Down),
            _ => None,
        }
    }
}

/// Whether an account's store can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreState {
    /// Writes succeed.
    #[default]
    Ok,
    /// Writes fail (an I/O error); the daemon retries.
    Failing,
    /// Writes fail because the disk or quota is full.
    Full,
}

impl StoreState {
    /// The wire word.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreState::Ok => "ok",
            StoreState::Failing => "failing",
            StoreState::Full => "full",
        }
    }

    /// Parses the wire word.
    pub fn parse(word: &str) -> Option<StoreState> {
        match word {
            "ok" => Some(StoreState::Ok),
            "failing" => Some(StoreState::Failing),
            "full" => Some(StoreState::Full),
            _ => None,
        }
    }
}

/// One account's status.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AccountStatus {
    /// `user@provider`.
    pub account: String,
    /// The provider link.
    pub connection: ConnState,
    /// Epoch of the newest verified PKI document held.
    pub epoch: Option<u64>,
    /// Seconds since that document was obtained.
    pub document_age: Option<u64>,
    /// Our clock minus the provider's, in seconds.
    pub clock_skew: Option<i64>,
    /// Queue entries not started yet (including those waiting for a key).
    pub queued: u64,
    /// Queue entries with blocks sent and not all acknowledged.
    pub in_flight: u64,
    /// Queue entries completed by acknowledgement (over the account's life:
    /// the daemon keeps the totals across restarts).
    pub acknowledged: u64,
    /// Queue entries bounced (over the account's life).
    pub bounced: u64,
    /// Incoming messages delivered to the inbox (over the account's life).
    pub delivered: u64,
    /// Messages in the inbox now.
    pub inbox: u64,
    /// Their total size in bytes.
    pub inbox_bytes: u64,
    /// Sphinx packets sent (blocks, retransmissions, decoys; over the
    /// account's life).
    pub packets_sent: u64,
    /// Retransmissions among them.
    pub retransmissions: u64,
    /// The last error (connection, PKI or protocol), if any.
    pub last_error: Option<String>,
    /// Whether the account's store can write.
    #[serde(default)]
    pub store: StoreState,
    /// The store's error while it cannot write.
    #[serde(default)]
    pub store_error: Option<String>,
    /// Incomplete incoming messages held.
    #[serde(default)]
    pub partials: u64,
    /// Their stored bytes.
    #[serde(default)]
    pub partial_bytes: u64,
    /// IMAP sessions logged in to the account now.
    #[serde(default)]
    pub imap_sessions: u64,
}

impl AccountStatus {
    /// The body line.
    pub fn to_line(&self) -> String {
        FieldWriter::new(&[&self.account])
            .text("conn", self.connection.as_str())
            .opt_num("epoch", self.epoch)
            .opt_num("doc_age", self.document_age)
            .opt_num("skew", self.clock_skew)
            .num("queued", self.queued)
            .num("in_flight", self.in_flight)
            .num("acked", self.acknowledged)
            .num("bounced", self.bounced)
            .num("delivered", self.delivered)
            .num("inbox", self.inbox)
            .num("inbox_bytes", self.inbox_bytes)
            .num("packets", self.packets_sent)
            .num("retransmits", self.retransmissions)
            .opt_text("error", self.last_error.as_deref())
            .text("store", self.store.as_str())
            .opt_text("store_error", self.store_error.as_deref())
            .num("partials", self.partials)
            .num("partial_bytes", self.partial_bytes)
            .num("imap_sessions", self.imap_sessions)
            .finish()
    }

    /// Parses a body line.
    pub fn parse_line(line: &str) -> Result<AccountStatus, FieldError> {
        let f = Fields::parse(line, 1)?;
        let conn = f.text("conn")?;
        Ok(AccountStatus {
            account: f.word(0).to_owned(),
            connection: ConnState::parse(&conn).ok_or(FieldError::BadValue {
                key: "conn",
                value: conn,
            })?,
            epoch: f.opt_num("epoch")?,
            document_age: f.opt_num("doc_age")?,
            clock_skew: f.opt_num("skew")?,
            queued: f.count("queued")?,
            in_flight: f.count("in_flight")?,
            acknowledged: f.count("acked")?,
            bounced: f.count("bounced")?,
            delivered: f.count("delivered")?,
            inbox: f.count("inbox")?,
            inbox_bytes: f.count("inbox_bytes")?,
            packets_sent: f.count("packets")?,
            retransmissions: f.count("retransmits")?,
            last_error: f.opt_text("error"),
            store: match f.opt_text("store") {
                None => StoreState::Ok,
                Some(w) => StoreState::parse(&w).ok_or(FieldError::BadValue {
                    key: "store",
                    value: w,
                })?,
            },
            store_error: f.opt_text("store_error"),
            partials: f.opt_num("partials")?.unwrap_or(0),
            partial_bytes: f.opt_num("partial_bytes")?.unwrap_or(0),
            imap_sessions: f.opt_num("imap_sessions")?.unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = AccountStatus {
            account: "alice@provider1".into(),
            connection: ConnState::Up,
            epoch: Some(12),
            document_age: Some(40),
            clock_skew: Some(-2),
            queued: 1,
            in_flight: 2,
            acknowledged: 3,
            bounced: 4,
            delivered: 5,
            inbox: 6,
            inbox_bytes: 7000,
            packets_sent: 80,
            retransmissions: 9,
            last_error: Some("provider refused: bad key".into()),
            store: StoreState::Full,
            store_error: Some("No space left on device (os error 28)".into()),
            partials: 3,
            partial_bytes: 151_662,
            imap_sessions: 2,
        };
        let line = s.to_line();
        assert!(
            line.starts_with("alice@provider1 conn=up epoch=12 "),
            "{line}"
        );
        assert!(!line.contains("bad key"), "text is encoded: {line}");
        assert_eq!(AccountStatus::parse_line(&line), Ok(s));
        let empty = AccountStatus {
            account: "b@p".into(),
            ..Default::default()
        };
        assert_eq!(AccountStatus::parse_line(&empty.to_line()), Ok(empty));
    }

    #[test]
    fn tolerant_of_new_fields_strict_on_bad_values() {
        let s = AccountStatus::parse_line("a@p conn=down future=1 queued=3").unwrap();
        assert_eq!(
            (s.connection, s.queued, s.epoch),
            (ConnState::Down, 3, None)
        );
        assert!(AccountStatus::parse_line("a@p conn=sideways").is_err());
        assert!(AccountStatus::parse_line("a@p queued=3").is_err());
        assert!(AccountStatus::parse_line("a@p conn=up queued=x").is_err());
        assert!(AccountStatus::parse_line("a@p conn=up store=melting").is_err());
        // An older daemon's line: the store reads as ok.
        let old = AccountStatus::parse_line("a@p conn=up queued=1").unwrap();
        assert_eq!(
            (old.store, old.store_error, old.partials),
            (StoreState::Ok, None, 0)
        );
    }
}
