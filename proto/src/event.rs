//! `EVENTS [<level>]`: a subscription. After `250`, the server streams one
//! line per event and per log record at `<level>` or more severe, until the
//! client sends `QUIT` or closes the connection. Nothing is ever polled.
//!
//! ```text
//! stream-line = event / log / lagged
//! event  = "EVENT" SP <unix ms> SP <account> SP <kind> *( SP field )
//! log    = "LOG" SP <unix ms> SP <LEVEL> SP "target=" value SP "msg=" value
//! lagged = "LAGGED" SP <n>            ; n lines were dropped: the client read too slowly
//! ```
//!
//! After `EVENTS` the server ignores every input line but `QUIT`, which it
//! does not answer: it closes the connection (so does daemon shutdown).
//! `LAGGED n` replaces lines the server dropped because the client read too
//! slowly (for log lines, `n` may count lines below the subscribed level:
//! it is an upper bound). A client that never reads never slows the daemon.
//!
//! `<level>` is `off` (events only), `error`, `warn`, `info` (the default),
//! `debug` or `trace`. Fields are as in [`crate::fields`]. Events and logs
//! never hold message contents or keys other than public identity keys.
//!
//! | kind | fields | meaning |
//! |---|---|---|
//! | `connection_up` | | a session to the provider is up |
//! | `connection_down` | `error` | the session ended or could not be made |
//! | `document` | `epoch` | a verified PKI document was obtained |
//! | `queued` | `id` `to` `size` | the engine picked up a new queue entry |
//! | `sent` | `id` `blocks` | every block of the entry has been sent once |
//! | `progress` | `id` `acked` `blocks` | a block was acknowledged |
//! | `acknowledged` | `id` | all blocks acknowledged; the entry left the queue |
//! | `bounced` | `id` `to` `reason` | the entry bounced; a report is in the inbox |
//! | `cancelled` | `id` | the entry was cancelled (`CANCEL`) |
//! | `key_discovered` | `to` | key discovery stored a recipient's key |
//! | `key_discovery_failed` | `to` `reason` | key discovery gave up |
//! | `fetched` | `remaining` | one block was retrieved from the provider |
//! | `delivered` | `id` `size` `sender` | a message was put in the inbox |
//! | `report` | `subject` | the daemon put a report in the inbox |
//!
//! Readers keep events of kinds they do not know as [`EventKind::Other`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::fields::{FieldError, FieldWriter, Fields};

/// A log level, or `Off` for events only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// No log lines.
    Off,
    /// Errors.
    Error,
    /// Warnings and more severe.
    Warn,
    /// Informational and more severe.
    Info,
    /// Debugging and more severe.
    Debug,
    /// Everything.
    Trace,
}

impl Level {
    /// The upper-case word used on `LOG` lines (`OFF` for [`Level::Off`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Off => "OFF",
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        }
    }

    /// Parses a level word, case-insensitively: `off` (or `none`), `error`,
    /// `warn` (or `warning`), `info` (or `notice`), `debug`, `trace`.
    pub fn parse(word: &str) -> Option<Level> {
        Some(match word.to_ascii_lowercase().as_str() {
            "off" | "none" => Level::Off,
            "error" => Level::Error,
            "warn" | "warning" => Level::Warn,
            // `notice` is the 2019 mailproxy config's word for it.
            "info" | "notice" => Level::Info,
            "debug" => Level::Debug,
            "trace" => Level::Trace,
            _ => return None,
        })
    }

    /// Whether a record at `record` passes a subscription at `self`.
    pub fn admits(self, record: Level) -> bool {
        record != Level::Off && record <= self
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// A session to the provider is up.
    ConnectionUp,
    /// The session ended or could not be made.
    ConnectionDown {
        /// Why, if known.
        error: Option<String>,
    },
    /// A verified PKI document was obtained.
    Document {
        /// Its epoch.
        epoch: u64,
    },
    /// The engine picked up a new queue entry.
    Queued {
        /// Queue entry id.
        id: u64,
        /// Recipient.
        to: String,
        /// Message size in bytes.
        size: u64,
    },
    /// Every block of the entry has been sent once.
    Sent {
        /// Queue entry id.
        id: u64,
        /// Number of blocks.
        blocks: u32,
    },
    /// A block was acknowledged.
    Progress {
        /// Queue entry id.
        id: u64,
        /// Blocks acknowledged so far.
        acked: u32,
        /// Blocks in all.
        blocks: u32,
    },
    /// All blocks acknowledged; the entry left the queue.
    Acknowledged {
        /// Queue entry id.
        id: u64,
    },
    /// The entry bounced; a report is in the inbox.
    Bounced {
        /// Queue entry id.
        id: u64,
        /// Recipient.
        to: String,
        /// Why.
        reason: String,
    },
    /// The entry was cancelled.
    Cancelled {
        /// Queue entry id.
        id: u64,
    },
    /// Key discovery stored a recipient's key.
    KeyDiscovered {
        /// The recipient.
        to: String,
    },
    /// Key discovery gave up.
    KeyDiscoveryFailed {
        /// The recipient.
        to: String,
        /// Why.
        reason: String,
    },
    /// One block was retrieved from the provider.
    Fetched {
        /// The provider's count of blocks still waiting.
        remaining: u32,
    },
    /// A message was put in the inbox.
    Delivered {
        /// Inbox id.
        id: u64,
        /// Size in bytes.
        size: u64,
        /// The sender's identity key (base64), if any.
        sender: Option<String>,
    },
    /// The daemon put a report in the inbox.
    Report {
        /// The report's subject.
        subject: String,
    },
    /// The account's store cannot write (retrieval pauses, SMTP answers
    /// 452/451); it retries by itself.
    StoreFailing {
        /// The error, with the operating system's words.
        error: String,
        /// The disk (or quota) is full.
        full: bool,
    },
    /// The account's store writes again.
    StoreRecovered,
    /// A kind this version does not know (from a newer server).
    Other {
        /// The kind word.
        name: String,
    },
}

impl EventKind {
    /// The kind word on the wire.
    pub fn name(&self) -> &str {
        match self {
            EventKind::ConnectionUp => "connection_up",
            EventKind::ConnectionDown { .. } => "connection_down",
            EventKind::Document { .. } => "document",
            EventKind::Queued { .. } => "queued",
            EventKind::Sent { .. } => "sent",
            EventKind::Progress { .. } => "progress",
            EventKind::Acknowledged { .. } => "acknowledged",
            EventKind::Bounced { .. } => "bounced",
            EventKind::Cancelled { .. } => "cancelled",
            EventKind::KeyDiscovered { .. } => "key_discovered",
            EventKind::KeyDiscoveryFailed { .. } => "key_discovery_failed",
            EventKind::Fetched { .. } => "fetched",
            EventKind::Delivered { .. } => "delivered",
            EventKind::Report { .. } => "report",
            EventKind::StoreFailing { .. } => "store_failing",
            EventKind::StoreRecovered => "store_recovered",
            EventKind::Other { name } => name,
        }
    }

    fn write_fields(&self, w: &mut FieldWriter) {
        match self {
            EventKind::ConnectionUp | EventKind::StoreRecovered | EventKind::Other { .. } => {}
            EventKind::ConnectionDown { error } => {
                w.opt_text("error", error.as_deref());
            }
            EventKind::Document { epoch } => {
                w.num("epoch", epoch);
            }
            EventKind::Queued { id, to, size } => {
                w.num("id", id).text("to", to).num("size", size);
            }
            EventKind::Sent { id, blocks } => {
                w.num("id", id).num("blocks", blocks);
            }
            EventKind::Progress { id, acked, blocks } => {
                w.num("id", id).num("acked", acked).num("blocks", blocks);
            }
            EventKind::Acknowledged { id } | EventKind::Cancelled { id } => {
                w.num("id", id);
            }
            EventKind::Bounced { id, to, reason } => {
                w.num("id", id).text("to", to).text("reason", reason);
            }
            EventKind::KeyDiscovered { to } => {
                w.text("to", to);
            }
            EventKind::KeyDiscoveryFailed { to, reason } => {
                w.text("to", to).text("reason", reason);
            }
            EventKind::Fetched { remaining } => {
                w.num("remaining", remaining);
            }
            EventKind::Delivered { id, size, sender } => {
                w.num("id", id)
                    .num("size", size)
                    .opt_text("sender", sender.as_deref());
            }
            EventKind::Report { subject } => {
                w.text("subject", subject);
            }
            EventKind::StoreFailing { error, full } => {
                w.text("error", error)
                    .text("full", if *full { "yes" } else { "no" });
            }
        }
    }

    fn read(name: &str, f: &Fields<'_>) -> Result<EventKind, FieldError> {
        Ok(match name {
            "connection_up" => EventKind::ConnectionUp,
            "connection_down" => EventKind::ConnectionDown {
                error: f.opt_text("error"),
            },
            "document" => EventKind::Document {
                epoch: f.num("epoch")?,
            },
            "queued" => EventKind::Queued {
                id: f.num("id")?,
                to: f.text("to")?,
                size: f.count("size")?,
            },
            "sent" => EventKind::Sent {
                id: f.num("id")?,
                blocks: f.num("blocks")?,
            },
            "progress" => EventKind::Progress {
                id: f.num("id")?,
                acked: f.num("acked")?,
                blocks: f.num("blocks")?,
            },
            "acknowledged" => EventKind::Acknowledged { id: f.num("id")? },
            "bounced" => EventKind::Bounced {
                id: f.num("id")?,
                to: f.text("to")?,
                reason: f.opt_text("reason").unwrap_or_default(),
            },
            "cancelled" => EventKind::Cancelled { id: f.num("id")? },
            "key_discovered" => EventKind::KeyDiscovered { to: f.text("to")? },
            "key_discovery_failed" => EventKind::KeyDiscoveryFailed {
                to: f.text("to")?,
                reason: f.opt_text("reason").unwrap_or_default(),
            },
            "fetched" => EventKind::Fetched {
                remaining: f.count("remaining")? as u32,
            },
            "delivered" => EventKind::Delivered {
                id: f.num("id")?,
                size: f.count("size")?,
                sender: f.opt_text("sender"),
            },
            "report" => EventKind::Report {
                subject: f.opt_text("subject").unwrap_or_default(),
            },
            "store_failing" => EventKind::StoreFailing {
                error: f.opt_text("error").unwrap_or_default(),
                full: f.opt_text("full").as_deref() == Some("yes"),
            },
            "store_recovered" => EventKind::StoreRecovered,
            other => EventKind::Other {
                name: other.to_owned(),
            },
        })
    }
}

/// An event of one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Unix time in milliseconds.
    pub time_ms: u64,
    /// The account it concerns.
    pub account: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// A log record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Unix time in milliseconds.
    pub time_ms: u64,
    /// Its level (never [`Level::Off`]).
    pub level: Level,
    /// The module that logged it.
    pub target: String,
    /// The message with its fields, as the log file shows it.
    pub message: String,
}

/// One line of an event stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamLine {
    /// An event.
    Event(Event),
    /// A log record.
    Log(LogLine),
    /// This many lines were dropped because the client read too slowly.
    Lagged {
        /// How many.
        dropped: u64,
    },
}

/// Why a stream line was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// Not an `EVENT`, `LOG` or `LAGGED` line.
    #[error("not an event stream line: {0:?}")]
    Unknown(String),
    /// The line's fields are malformed.
    #[error(transparent)]
    Field(#[from] FieldError),
}

fn bad(key: &'static str, value: &str) -> FieldError {
    FieldError::BadValue {
        key,
        value: value.to_owned(),
    }
}

impl StreamLine {
    /// The wire line, without CRLF.
    pub fn to_line(&self) -> String {
        match self {
            StreamLine::Event(e) => {
                let time = e.time_ms.to_string();
                let mut w = FieldWriter::new(&["EVENT", &time, &e.account, e.kind.name()]);
                e.kind.write_fields(&mut w);
                w.finish()
            }
            StreamLine::Log(l) => {
                let time = l.time_ms.to_string();
                FieldWriter::new(&["LOG", &time, l.level.as_str()])
                    .text("target", &l.target)
                    .text("msg", &l.message)
                    .finish()
            }
            StreamLine::Lagged { dropped } => format!("LAGGED {dropped}"),
        }
    }

    /// Parses a wire line (CRLF optional).
    pub fn parse_line(line: &str) -> Result<StreamLine, StreamError> {
        let line = line.trim_end_matches(['\r', '\n']);
        let first = line.split(' ').next().unwrap_or("");
        match first {
            "EVENT" => {
                let f = Fields::parse(line, 4)?;
                let time_ms = f.word(1).parse().map_err(|_| bad("time", f.word(1)))?;
                Ok(StreamLine::Event(Event {
                    time_ms,
                    account: f.word(2).to_owned(),
                    kind: EventKind::read(f.word(3), &f)?,
                }))
            }
            "LOG" => {
                let f = Fields::parse(line, 3)?;
                let time_ms = f.word(1).parse().map_err(|_| bad("time", f.word(1)))?;
                let level = Level::parse(f.word(2))
                    .filter(|l| *l != Level::Off)
                    .ok_or_else(|| bad("level", f.word(2)))?;
                Ok(StreamLine::Log(LogLine {
                    time_ms,
                    level,
                    target: f.opt_text("target").unwrap_or_default(),
                    message: f.opt_text("msg").unwrap_or_default(),
                }))
            }
            "LAGGED" => {
                let f = Fields::parse(line, 2)?;
                let dropped = f.word(1).parse().map_err(|_| bad("dropped", f.word(1)))?;
                Ok(StreamLine::Lagged { dropped })
            }
            _ => Err(StreamError::Unknown(line.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<EventKind> {
        vec![
            EventKind::ConnectionUp,
            EventKind::StoreFailing {
                error: "No space left on device (os error 28)".into(),
                full: true,
            },
            EventKind::StoreFailing {
                error: "Input/output error (os error 5)".into(),
                full: false,
            },
            EventKind::StoreRecovered,
            EventKind::ConnectionDown {
                error: Some("connection refused".into()),
            },
            EventKind::ConnectionDown { error: None },
            EventKind::Document { epoch: 9 },
            EventKind::Queued {
                id: 1,
                to: "bob@provider2".into(),
                size: 300,
            },
            EventKind::Sent { id: 1, blocks: 3 },
            EventKind::Progress {
                id: 1,
                acked: 2,
                blocks: 3,
            },
            EventKind::Acknowledged { id: 1 },
            EventKind::Bounced {
                id: 2,
                to: "x@y".into(),
                reason: "not acknowledged in 432000 s".into(),
            },
            EventKind::Cancelled { id: 3 },
            EventKind::KeyDiscovered { to: "z@w".into() },
            EventKind::KeyDiscoveryFailed {
                to: "z@w".into(),
                reason: "no such user".into(),
            },
            EventKind::Fetched { remaining: 99 },
            EventKind::Delivered {
                id: 4,
                size: 1000,
                sender: Some("AAAA+/==".into()),
            },
            EventKind::Delivered {
                id: 5,
                size: 10,
                sender: None,
            },
            EventKind::Report {
                subject: "Undecryptable message".into(),
            },
        ]
    }

    #[test]
    fn every_event_kind_round_trips() {
        for kind in every_kind() {
            let line = StreamLine::Event(Event {
                time_ms: 1_790_000_000_123,
                account: "alice@provider1".into(),
                kind,
            });
            let wire = line.to_line();
            assert!(
                wire.starts_with("EVENT 1790000000123 alice@provider1 "),
                "{wire}"
            );
            assert!(!wire.contains(['\r', '\n']));
            assert_eq!(StreamLine::parse_line(&wire), Ok(line.clone()), "{wire}");
            // JSON (mailproxyctl --json) round-trips too.
            let json = serde_json::to_string(&line).unwrap();
            assert_eq!(serde_json::from_str::<StreamLine>(&json).unwrap(), line);
        }
    }

    #[test]
    fn logs_and_lag() {
        let log = StreamLine::Log(LogLine {
            time_ms: 5,
            level: Level::Warn,
            target: "mailproxyd::engine".into(),
            message: "reconnecting in 2s error=\"refused\"\r\nLOG forged".into(),
        });
        let wire = log.to_line();
        assert!(
            wire.starts_with("LOG 5 WARN target=mailproxyd::engine msg="),
            "{wire}"
        );
        assert!(!wire.contains(['\r', '\n']));
        assert_eq!(wire.matches(' ').count(), 4, "{wire}");
        assert_eq!(StreamLine::parse_line(&wire), Ok(log));
        let lag = StreamLine::Lagged { dropped: 12 };
        assert_eq!(lag.to_line(), "LAGGED 12");
        assert_eq!(StreamLine::parse_line("LAGGED 12\r\n"), Ok(lag));
    }

    #[test]
    fn unknown_kinds_are_kept_bad_lines_rejected() {
        assert_eq!(
            StreamLine::parse_line("EVENT 1 a@p teleported far=away"),
            Ok(StreamLine::Event(Event {
                time_ms: 1,
                account: "a@p".into(),
                kind: EventKind::Other {
                    name: "teleported".into()
                },
            }))
        );
        for bad in [
            "",
            "250 ok",
            "EVENT",
            "EVENT x a@p queued id=1 to=b size=1",
            "EVENT 1 a@p queued to=b",
            "LOG 1 LOUD msg=x",
            "LOG 1 OFF msg=x",
            "LAGGED many",
        ] {
            assert!(StreamLine::parse_line(bad).is_err(), "{bad:?}");
        }
    }

    /// Found by `scripts/fuzz` (target mgmt_line): a kind name of two
    /// newlines was accepted, and its `to_line()` did not parse back.
    #[test]
    fn fuzz_regression_control_characters_in_names() {
        let found = "EVENT 0 0O \n\n ";
        assert!(matches!(
            StreamLine::parse_line(found),
            Err(StreamError::Field(FieldError::ControlCharacter(_)))
        ));
        for bad in [
            "EVENT 0 a@p\u{1b}[31m queued id=1 to=b size=1",
            "EVENT 0 a@p report subject=x\ty",
            "LOG 1 INFO target=x msg=\u{0}",
            "LAGGED 1\u{7f}",
        ] {
            assert!(StreamLine::parse_line(bad).is_err(), "{bad:?}");
        }
        // Whatever parses formats to a line that parses the same.
        for good in [
            "EVENT 0 0O x",
            "EVENT 0 a@p teleported  far=away ",
            "LAGGED 3\r\n",
        ] {
            let line = StreamLine::parse_line(good).unwrap();
            assert_eq!(
                StreamLine::parse_line(&line.to_line()),
                Ok(line),
                "{good:?}"
            );
        }
    }

    #[test]
    fn levels() {
        assert_eq!(Level::parse("WARNING"), Some(Level::Warn));
        assert_eq!(Level::parse("loud"), None);
        assert_eq!(Level::parse("Notice"), Some(Level::Info));
        assert!(Level::Info.admits(Level::Error));
        assert!(Level::Info.admits(Level::Info));
        assert!(!Level::Info.admits(Level::Debug));
        assert!(!Level::Off.admits(Level::Error));
        assert!(!Level::Trace.admits(Level::Off));
    }
}
