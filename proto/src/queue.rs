//! `QUEUE`: one line per outgoing message and recipient; `CANCEL` takes the
//! account and id shown.
//!
//! ```text
//! <account> <id> to=<address> size=<bytes> acked=<n> blocks=<n> age=<s>
//!     state=<waiting_key|queued|sending> retransmit_in=<s|-> bounce_in=<s> unreliable=<0|1>
//! ```
//!
//! `blocks` is 0 until the message has been fragmented; `retransmit_in` is the
//! time until the earliest unacknowledged block is re-sent; `bounce_in` the
//! time until the message bounces (0 when due).

use serde::{Deserialize, Serialize};

use crate::fields::{FieldError, FieldWriter, Fields};

/// Where a queued message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueState {
    /// The recipient's key is unknown; key discovery is under way.
    WaitingKey,
    /// No block sent yet.
    Queued,
    /// Blocks sent, not all acknowledged.
    Sending,
}

impl QueueState {
    /// The wire word.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueState::WaitingKey => "waiting_key",
            QueueState::Queued => "queued",
            QueueState::Sending => "sending",
        }
    }

    /// Parses the wire word.
    pub fn parse(word: &str) -> Option<QueueState> {
        match word {
            "waiting_key" => Some(QueueState::WaitingKey),
            "queued" => Some(QueueState::Queued),
            "sending" => Some(QueueState::Sending),
            _ => None,
        }
    }
}

/// One outgoing message to one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueItem {
    /// The sending account.
    pub account: String,
    /// The queue entry id (unique within the account).
    pub id: u64,
    /// The recipient address.
    pub recipient: String,
    /// Message size in bytes.
    pub size: u64,
    /// Blocks acknowledged.
    pub blocks_acked: u32,
    /// Blocks in all (0 until fragmented).
    pub blocks_total: u32,
    /// Seconds since submission.
    pub age: u64,
    /// Where it is.
    pub state: QueueState,
    /// Seconds until the next retransmission, if one is scheduled.
    pub retransmit_in: Option<u64>,
    /// Seconds until it bounces (0 when due).
    pub bounce_in: u64,
    /// Sent without acknowledgements.
    pub unreliable: bool,
}

impl QueueItem {
    /// The body line.
    pub fn to_line(&self) -> String {
        FieldWriter::new(&[&self.account, &self.id.to_string()])
            .text("to", &self.recipient)
            .num("size", self.size)
            .num("acked", self.blocks_acked)
            .num("blocks", self.blocks_total)
            .num("age", self.age)
            .text("state", self.state.as_str())
            .opt_num("retransmit_in", self.retransmit_in)
            .num("bounce_in", self.bounce_in)
            .num("unreliable", u8::from(self.unreliable))
            .finish()
    }

    /// Parses a body line.
    pub fn parse_line(line: &str) -> Result<QueueItem, FieldError> {
        let f = Fields::parse(line, 2)?;
        let id = f.word(1).parse().map_err(|_| FieldError::BadValue {
            key: "id",
            value: f.word(1).to_owned(),
        })?;
        let state = f.text("state")?;
        Ok(QueueItem {
            account: f.word(0).to_owned(),
            id,
            recipient: f.text("to")?,
            size: f.count("size")?,
            blocks_acked: f.num("acked")?,
            blocks_total: f.num("blocks")?,
            age: f.count("age")?,
            state: QueueState::parse(&state).ok_or(FieldError::BadValue {
                key: "state",
                value: state,
            })?,
            retransmit_in: f.opt_num("retransmit_in")?,
            bounce_in: f.count("bounce_in")?,
            unreliable: f.count("unreliable")? != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let q = QueueItem {
            account: "alice@provider1".into(),
            id: 42,
            recipient: "bob@provider2".into(),
            size: 5_242_880,
            blocks_acked: 17,
            blocks_total: 104,
            age: 65,
            state: QueueState::Sending,
            retransmit_in: Some(9),
            bounce_in: 431_935,
            unreliable: false,
        };
        let line = q.to_line();
        assert!(
            line.starts_with("alice@provider1 42 to=bob@provider2 "),
            "{line}"
        );
        assert_eq!(QueueItem::parse_line(&line), Ok(q.clone()));
        let waiting = QueueItem {
            state: QueueState::WaitingKey,
            retransmit_in: None,
            blocks_total: 0,
            blocks_acked: 0,
            unreliable: true,
            ..q
        };
        assert_eq!(QueueItem::parse_line(&waiting.to_line()), Ok(waiting));
    }

    #[test]
    fn rejects_bad_lines() {
        assert!(QueueItem::parse_line("a@p x to=b@q acked=0 blocks=0 state=queued").is_err());
        assert!(QueueItem::parse_line("a@p 1 to=b@q acked=0 blocks=0 state=lost").is_err());
        assert!(QueueItem::parse_line("a@p 1 acked=0 blocks=0 state=queued").is_err());
        assert!(QueueItem::parse_line("a@p").is_err());
    }
}
