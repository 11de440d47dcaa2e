//! Requests: byte-level parsing (server side) and formatting (client side).

use std::fmt;

use crate::event::Level;
use crate::key::{decode_key, encode_key, KeyError, KEY_LEN};
use crate::reply::StatusCode;

/// Longest request line accepted, including the terminating LF.
pub const MAX_LINE: usize = 1024;

/// Longest argument accepted (an address is at most 64 + 1 + 253 bytes).
const MAX_ARG: usize = 320;

/// A parsed management request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// `GET_RECIPIENT <addr>`: the recipient's public key.
    GetRecipient {
        /// Recipient address, as typed.
        address: String,
    },
    /// `SET_RECIPIENT <addr> <key>`: add or replace a recipient's key.
    SetRecipient {
        /// Recipient address, as typed.
        address: String,
        /// The X25519 public key.
        key: [u8; KEY_LEN],
    },
    /// `REMOVE_RECIPIENT <addr>`: forget a recipient.
    RemoveRecipient {
        /// Recipient address, as typed.
        address: String,
    },
    /// `LIST_RECIPIENTS`: every recipient with its key, sorted.
    ListRecipients,
    /// `QUERY_RECIPIENT <account> <addr>`: ask the recipient's provider for its key.
    QueryRecipient {
        /// The account (`user@provider`) that asks.
        account: String,
        /// The address looked up.
        address: String,
    },
    /// `ACCOUNTS`: the configured accounts with their public keys.
    Accounts,
    /// `VERSION`: daemon and protocol version.
    Version,
    /// `RESCAN`: re-read the recipient directory (as SIGHUP does).
    Rescan,
    /// `SHUTDOWN`: shut the daemon down gracefully.
    Shutdown,
    /// `STATUS`: per account, connection, PKI and queue figures (protocol 2).
    Status,
    /// `QUEUE`: the outgoing messages (protocol 2).
    Queue,
    /// `INBOX`: the messages in the inboxes, without contents (protocol 2).
    Inbox,
    /// `CANCEL <account> <id>`: drop an outgoing message (protocol 2).
    Cancel {
        /// The sending account.
        account: String,
        /// Its queue id, as `QUEUE` shows it.
        id: u64,
    },
    /// `EVENTS [<level>]`: stream events and log lines at `level` (protocol 2).
    Events {
        /// Log level; `Off` streams events only.
        level: Level,
    },
    /// `PASSWORD <account> [RESET]`: the account's generated SMTP/POP3
    /// password; with `RESET`, a new one replaces it (protocol 2).
    Password {
        /// The account (`user@provider`).
        account: String,
        /// Replace the password with a new one first.
        reset: bool,
    },
    /// `QUIT`: close this connection.
    Quit,
}

/// Why a request line was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// No line feed yet: read more bytes (not an error on the wire).
    #[error("incomplete line")]
    Incomplete,
    /// The line (or the bytes without a line feed so far) exceed [`MAX_LINE`].
    #[error("line too long (limit {MAX_LINE} bytes)")]
    LineTooLong,
    /// The line has bytes after its line feed (only [`parse`] reports this).
    #[error("data after the end of the line")]
    TrailingData,
    /// The line is not valid UTF-8.
    #[error("line is not valid UTF-8")]
    NotUtf8,
    /// The line holds control characters other than blanks and CR LF.
    #[error("line contains control characters")]
    ControlCharacter,
    /// The line is blank (servers ignore it).
    #[error("empty line")]
    Empty,
    /// The command word is not known.
    #[error("unknown command")]
    UnknownCommand,
    /// Wrong number of arguments.
    #[error("{command} takes {expected}")]
    Arity {
        /// The command.
        command: &'static str,
        /// What it takes, in words.
        expected: &'static str,
    },
    /// An argument is longer than any valid one.
    #[error("argument too long")]
    ArgumentTooLong,
    /// The key argument is not a valid key.
    #[error("bad key: {0}")]
    BadKey(KeyError),
}

impl ParseError {
    /// The status code a server answers this error with; `None` when it
    /// answers nothing (incomplete or empty lines).
    pub fn status_code(&self) -> Option<StatusCode> {
        match self {
            ParseError::Incomplete | ParseError::Empty => None,
            ParseError::UnknownCommand => Some(StatusCode::UNRECOGNISED),
            _ => Some(StatusCode::BAD_ARGUMENTS),
        }
    }
}

/// Finds the first complete line in `buf` and parses it.
///
/// Returns the number of bytes the line occupies (including its LF) and the
/// result. With `(0, Err(Incomplete))` the caller reads more; with
/// `(0, Err(LineTooLong))` it answers the error and discards input up to and
/// including the next LF.
pub fn parse_frame(buf: &[u8]) -> (usize, Result<Request, ParseError>) {
    let window = &buf[..buf.len().min(MAX_LINE)];
    match window.iter().position(|&b| b == b'\n') {
        Some(lf) => (lf + 1, parse_line(&buf[..lf])),
        None if buf.len() >= MAX_LINE => (0, Err(ParseError::LineTooLong)),
        None => (0, Err(ParseError::Incomplete)),
    }
}

/// Parses exactly one request line, terminated by LF or CRLF.
pub fn parse(buf: &[u8]) -> Result<Request, ParseError> {
    match parse_frame(buf) {
        (used, _) if used != 0 && used != buf.len() => Err(ParseError::TrailingData),
        (_, result) => result,
    }
}

fn parse_line(line: &[u8]) -> Result<Request, ParseError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = std::str::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
    if line
        .chars()
        .any(|c| c.is_control() && c != ' ' && c != '\t')
    {
        return Err(ParseError::ControlCharacter);
    }
    let mut words = line.split([' ', '\t']).filter(|w| !w.is_empty());
    let Some(command) = words.next() else {
        return Err(ParseError::Empty);
    };
    let args: Vec<&str> = words.collect();
    if args.iter().any(|a| a.len() > MAX_ARG) {
        return Err(ParseError::ArgumentTooLong);
    }
    let command = command.to_ascii_uppercase();
    let arity = |name: &'static str, expected: &'static str, n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(ParseError::Arity {
                command: name,
                expected,
            })
        }
    };
    let request = match command.as_str() {
        "GET_RECIPIENT" => {
            arity("GET_RECIPIENT", "one argument: <address>", 1)?;
            Request::GetRecipient {
                address: args[0].to_owned(),
            }
        }
        "SET_RECIPIENT" => {
            arity("SET_RECIPIENT", "two arguments: <address> <key>", 2)?;
            let key = decode_key(args[1]).map_err(ParseError::BadKey)?;
            Request::SetRecipient {
                address: args[0].to_owned(),
                key,
            }
        }
        "REMOVE_RECIPIENT" => {
            arity("REMOVE_RECIPIENT", "one argument: <address>", 1)?;
            Request::RemoveRecipient {
                address: args[0].to_owned(),
            }
        }
        "QUERY_RECIPIENT" => {
            arity("QUERY_RECIPIENT", "two arguments: <account> <address>", 2)?;
            Request::QueryRecipient {
                account: args[0].to_owned(),
                address: args[1].to_owned(),
            }
        }
        "LIST_RECIPIENTS" => no_args(&args, "LIST_RECIPIENTS", Request::ListRecipients)?,
        "ACCOUNTS" => no_args(&args, "ACCOUNTS", Request::Accounts)?,
        "VERSION" => no_args(&args, "VERSION", Request::Version)?,
        "RESCAN" => no_args(&args, "RESCAN", Request::Rescan)?,
        "SHUTDOWN" => no_args(&args, "SHUTDOWN", Request::Shutdown)?,
        "STATUS" => no_args(&args, "STATUS", Request::Status)?,
        "QUEUE" => no_args(&args, "QUEUE", Request::Queue)?,
        "INBOX" => no_args(&args, "INBOX", Request::Inbox)?,
        "CANCEL" => {
            arity("CANCEL", "two arguments: <account> <id>", 2)?;
            let id = args[1].parse().map_err(|_| ParseError::Arity {
                command: "CANCEL",
                expected: "a numeric <id> (as QUEUE shows it)",
            })?;
            Request::Cancel {
                account: args[0].to_owned(),
                id,
            }
        }
        "EVENTS" => {
            let level = match args.as_slice() {
                [] => Level::Info,
                [word] => Level::parse(word).ok_or(ParseError::Arity {
                    command: "EVENTS",
                    expected: "an optional level: off, error, warn, info, debug or trace",
                })?,
                _ => {
                    return Err(ParseError::Arity {
                        command: "EVENTS",
                        expected: "at most one argument: [<level>]",
                    })
                }
            };
            Request::Events { level }
        }
        "PASSWORD" => {
            let expected = "<account> and an optional RESET";
            let reset = match args.as_slice() {
                [_] => false,
                [_, word] if word.eq_ignore_ascii_case("RESET") => true,
                _ => {
                    return Err(ParseError::Arity {
                        command: "PASSWORD",
                        expected,
                    })
                }
            };
            Request::Password {
                account: args[0].to_owned(),
                reset,
            }
        }
        "QUIT" => no_args(&args, "QUIT", Request::Quit)?,
        _ => return Err(ParseError::UnknownCommand),
    };
    Ok(request)
}

fn no_args(args: &[&str], command: &'static str, request: Request) -> Result<Request, ParseError> {
    if args.is_empty() {
        Ok(request)
    } else {
        Err(ParseError::Arity {
            command,
            expected: "no arguments",
        })
    }
}

impl Request {
    /// The command word.
    pub fn command(&self) -> &'static str {
        match self {
            Request::GetRecipient { .. } => "GET_RECIPIENT",
            Request::SetRecipient { .. } => "SET_RECIPIENT",
            Request::RemoveRecipient { .. } => "REMOVE_RECIPIENT",
            Request::ListRecipients => "LIST_RECIPIENTS",
            Request::QueryRecipient { .. } => "QUERY_RECIPIENT",
            Request::Accounts => "ACCOUNTS",
            Request::Version => "VERSION",
            Request::Rescan => "RESCAN",
            Request::Shutdown => "SHUTDOWN",
            Request::Status => "STATUS",
            Request::Queue => "QUEUE",
            Request::Inbox => "INBOX",
            Request::Cancel { .. } => "CANCEL",
            Request::Events { .. } => "EVENTS",
            Request::Password { .. } => "PASSWORD",
            Request::Quit => "QUIT",
        }
    }

    /// Whether a successful reply is a dot-terminated body rather than a status line.
    pub fn has_body(&self) -> bool {
        matches!(
            self,
            Request::ListRecipients
                | Request::Accounts
                | Request::Status
                | Request::Queue
                | Request::Inbox
        )
    }

    /// The request as a wire line, CRLF-terminated. Fails if an argument
    /// holds blanks or control characters (it could not be parsed back).
    pub fn to_line(&self) -> Result<String, ParseError> {
        let line = self.to_string();
        // Guard against arguments that would change the request's meaning.
        match parse(line.as_bytes()) {
            Ok(parsed) if &parsed == self => Ok(line),
            Ok(_) => Err(ParseError::Arity {
                command: self.command(),
                expected: "arguments without blanks",
            }),
            Err(e) => Err(e),
        }
    }
}

impl fmt::Display for Request {
    /// Formats the wire line including its CRLF.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.command())?;
        match self {
            Request::GetRecipient { address } | Request::RemoveRecipient { address } => {
                write!(f, " {address}")?
            }
            Request::SetRecipient { address, key } => write!(f, " {address} {}", encode_key(key))?,
            Request::QueryRecipient { account, address } => write!(f, " {account} {address}")?,
            Request::Cancel { account, id } => write!(f, " {account} {id}")?,
            Request::Events { level } => write!(f, " {}", level.as_str().to_ascii_lowercase())?,
            Request::Password { account, reset } => {
                write!(f, " {account}")?;
                if *reset {
                    f.write_str(" RESET")?;
                }
            }
            _ => {}
        }
        f.write_str("\r\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command() {
        let key = [7u8; 32];
        let cases = [
            (
                "GET_RECIPIENT bob@example.org\n",
                Request::GetRecipient {
                    address: "bob@example.org".into(),
                },
            ),
            (
                &format!("set_recipient  bob@example.org\t{}\r\n", hex::encode(key)),
                Request::SetRecipient {
                    address: "bob@example.org".into(),
                    key,
                },
            ),
            (
                "Remove_Recipient bob@x\n",
                Request::RemoveRecipient {
                    address: "bob@x".into(),
                },
            ),
            ("  LIST_RECIPIENTS  \r\n", Request::ListRecipients),
            (
                "QUERY_RECIPIENT a@p b@q\n",
                Request::QueryRecipient {
                    account: "a@p".into(),
                    address: "b@q".into(),
                },
            ),
            ("ACCOUNTS\n", Request::Accounts),
            ("version\n", Request::Version),
            ("RESCAN\n", Request::Rescan),
            ("SHUTDOWN\n", Request::Shutdown),
            ("status\n", Request::Status),
            ("QUEUE\n", Request::Queue),
            ("INBOX\n", Request::Inbox),
            (
                "CANCEL a@p 17\n",
                Request::Cancel {
                    account: "a@p".into(),
                    id: 17,
                },
            ),
            ("EVENTS\n", Request::Events { level: Level::Info }),
            (
                "events DEBUG\n",
                Request::Events {
                    level: Level::Debug,
                },
            ),
            ("EVENTS off\n", Request::Events { level: Level::Off }),
            (
                "PASSWORD alice@p\n",
                Request::Password {
                    account: "alice@p".into(),
                    reset: false,
                },
            ),
            (
                "password Alice@P reset\r\n",
                Request::Password {
                    account: "Alice@P".into(),
                    reset: true,
                },
            ),
            ("quit\n", Request::Quit),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line.as_bytes()), Ok(want.clone()), "{line:?}");
            // Formatting then parsing gives the request back.
            assert_eq!(parse(want.to_line().unwrap().as_bytes()), Ok(want));
        }
    }

    #[test]
    fn incomplete_versus_invalid() {
        assert_eq!(parse(b"GET_RECIPIENT bob"), Err(ParseError::Incomplete));
        assert_eq!(parse(b""), Err(ParseError::Incomplete));
        assert_eq!(parse(b"\n"), Err(ParseError::Empty));
        assert_eq!(parse(b"FOO\n"), Err(ParseError::UnknownCommand));
        assert_eq!(parse(b"QUIT\nQUIT\n"), Err(ParseError::TrailingData));
        assert_eq!(parse(b"GET_RECIPIENT \xff\xfe\n"), Err(ParseError::NotUtf8));
        assert_eq!(
            parse(b"GET_RECIPIENT a\x00b\n"),
            Err(ParseError::ControlCharacter)
        );
        assert!(matches!(
            parse(b"GET_RECIPIENT\n"),
            Err(ParseError::Arity { .. })
        ));
        assert!(matches!(
            parse(b"GET_RECIPIENT a b\n"),
            Err(ParseError::Arity { .. })
        ));
        assert!(matches!(
            parse(b"LIST_RECIPIENTS x\n"),
            Err(ParseError::Arity { .. })
        ));
        assert!(matches!(
            parse(b"SET_RECIPIENT a@b nothex!\n"),
            Err(ParseError::BadKey(_))
        ));
        assert!(matches!(
            parse(b"CANCEL a@p x\n"),
            Err(ParseError::Arity { .. })
        ));
        assert!(matches!(
            parse(b"CANCEL a@p\n"),
            Err(ParseError::Arity { .. })
        ));
        assert!(matches!(
            parse(b"EVENTS loud\n"),
            Err(ParseError::Arity { .. })
        ));
        assert!(matches!(
            parse(b"EVENTS info x\n"),
            Err(ParseError::Arity { .. })
        ));
        assert!(matches!(
            parse(b"STATUS x\n"),
            Err(ParseError::Arity { .. })
        ));
        for bad in [
            &b"PASSWORD\n"[..],
            b"PASSWORD a@p now\n",
            b"PASSWORD a@p RESET x\n",
        ] {
            assert!(
                matches!(
                    parse(bad),
                    Err(ParseError::Arity {
                        command: "PASSWORD",
                        ..
                    })
                ),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("GET_RECIPIENT {}\n", "a".repeat(MAX_ARG + 1));
        assert_eq!(parse(long.as_bytes()), Err(ParseError::ArgumentTooLong));
    }

    #[test]
    fn line_limit() {
        let long = vec![b'A'; MAX_LINE];
        assert_eq!(parse_frame(&long), (0, Err(ParseError::LineTooLong)));
        let mut almost = vec![b'A'; MAX_LINE - 1];
        assert_eq!(parse_frame(&almost), (0, Err(ParseError::Incomplete)));
        almost.push(b'\n');
        assert_eq!(
            parse_frame(&almost),
            (MAX_LINE, Err(ParseError::UnknownCommand))
        );
    }

    #[test]
    fn frame_reports_consumed_length() {
        let (used, req) = parse_frame(b"QUIT\r\nVERSION\n");
        assert_eq!((used, req), (6, Ok(Request::Quit)));
    }

    #[test]
    fn status_codes() {
        assert_eq!(
            ParseError::UnknownCommand.status_code(),
            Some(StatusCode::UNRECOGNISED)
        );
        assert_eq!(
            ParseError::NotUtf8.status_code(),
            Some(StatusCode::BAD_ARGUMENTS)
        );
        assert_eq!(ParseError::Incomplete.status_code(), None);
    }

    #[test]
    fn to_line_refuses_injection() {
        let bad = Request::GetRecipient {
            address: "a@b\r\nSHUTDOWN".into(),
        };
        assert!(bad.to_line().is_err());
        let spaced = Request::RemoveRecipient {
            address: "a b".into(),
        };
        assert!(spaced.to_line().is_err());
    }
}
