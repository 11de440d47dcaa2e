//! The mailproxyd management protocol.
//!
//! This crate is the only place that parses or formats the protocol spoken on
//! mailproxyd's management socket (a Unix stream socket, by default
//! `<DataDir>/management_sock`). It has no I/O except the small async
//! [`client`].
//!
//! # Grammar
//!
//! The protocol is line based and compatible with the original Katzenpost
//! mailproxy's management interface.
//!
//! ```text
//! request    = command *( SP+ argument ) [CR] LF        ; at most MAX_LINE bytes with the LF
//! command    = 1*( ALPHA / "_" )                         ; case-insensitive
//! argument   = 1*( %x21-7E / UTF-8 non-ASCII )           ; no spaces or controls
//! SP+        = 1*( " " / HTAB )                          ; any run of blanks separates arguments
//!
//! status     = code SP text CRLF                         ; code is 250, 500, 501 or 554 (220 greeting)
//! body       = *( body-line CRLF ) "." CRLF              ; dot-stuffed: a line starting with "." gets one more "."
//! ```
//!
//! Leading and trailing blanks on a request line are ignored, so are empty
//! lines. On connect the server sends the greeting
//! `220 Katzenpost Mailproxy Management Interface Service ready`.
//!
//! | request | success reply | errors |
//! |---|---|---|
//! | `GET_RECIPIENT <addr>` | `250 <base64 key>` | 501 arity, 554 unknown recipient |
//! | `SET_RECIPIENT <addr> <key>` | `250 Requested action ok, completed` | 501 arity or bad key, 554 bad address or storage failure |
//! | `REMOVE_RECIPIENT <addr>` | `250 Requested action ok, completed` | 501 arity, 554 unknown recipient |
//! | `LIST_RECIPIENTS` | body of `<addr> <base64 key>` lines, sorted by address | 501 if arguments are given |
//! | `ACCOUNTS` | body of `<account> <base64 link key> <base64 identity key>` lines, sorted | 501 |
//! | `VERSION` | `250 mailproxyd <version> protocol <n>` | 501 |
//! | `RESCAN` | `250 <added> added, <changed> changed, <removed> removed, <bad> bad` | 501, 554 |
//! | `QUERY_RECIPIENT <account> <addr>` | `250 <hex request id>` | 501, 554 (not available yet) |
//! | `SHUTDOWN` | `250 Requested action ok, completed`, then the daemon shuts down | 501 |
//! | `STATUS` | body of [`AccountStatus`] lines, one per account, sorted | 501 |
//! | `QUEUE` | body of [`QueueItem`] lines, sorted by account and id | 501, 554 |
//! | `INBOX` | body of [`InboxItem`] lines (no contents), sorted by account and id | 501, 554 |
//! | `CANCEL <account> <id>` | `250 Requested action ok, completed` | 501, 554 unknown account or id |
//! | `EVENTS [<level>]` | `250 ...`, then a stream of [`StreamLine`]s until `QUIT` (not answered: the server closes) or close | 501 |
//! | `PASSWORD <account> [RESET]` | `250 <password>`: the account's generated SMTP/POP3 password; with `RESET` a new one, which replaces the old at once | 501, 554 unknown account, password set in the config (`PasswordHash`), or authentication off |
//! | `QUIT` | `250 Requested action ok, completed`, then the server closes the connection | 501 |
//!
//! Keys are 32-byte X25519 public keys, given in hex (tried first) or
//! standard base64 (padding optional); the server always answers in padded
//! standard base64. Addresses are `user@provider`; the server normalises
//! them (lower case unless configured otherwise).
//!
//! A command that answers with a body answers with exactly one status line
//! instead when it fails. A status line is three digits followed by a space
//! or the end of the line; a body line never looks like that (body lines start
//! with an address or account, which contain an `@` before any space).
//!
//! An unknown command gets `500`; a line that is too long, not UTF-8 or has
//! control characters gets `501`. Neither has any other effect, and other
//! clients are never affected.
//!
//! Protocol 2 added `STATUS`, `QUEUE`, `INBOX`, `CANCEL` and `EVENTS`; the
//! commands above are unchanged. Their lines are `key=value` fields
//! ([`fields`]) after one or two leading words (account, id), so body lines
//! still start with an account; readers ignore fields they do not know. After
//! `EVENTS` the connection carries only stream lines ([`event`]): `EVENT`,
//! `LOG` and `LAGGED`, never a status line; the server reads further input
//! only to see `QUIT` or the close.
//!
//! `PASSWORD` came later in protocol 2 (an older daemon answers `500`). The
//! password is the login of the account's SMTP and POP3 servers: it never
//! contains blanks, so the whole text after `250 ` is the password. Only the
//! socket's owner can ask for it (the socket is 0600 in a private directory);
//! the daemon logs that it was shown or reset, never the password.

pub mod civil;
pub mod client;
pub mod event;
pub mod fields;
pub mod inbox;
pub mod key;
pub mod locate;
pub mod queue;
pub mod reply;
pub mod request;
pub mod status;

pub use client::{Client, ClientError, EventStream, Reply};
pub use event::{Event, EventKind, Level, LogLine, StreamError, StreamLine};
pub use fields::FieldError;
pub use inbox::InboxItem;
pub use key::{decode_key, encode_key, KeyError, KEY_LEN};
pub use queue::{QueueItem, QueueState};
pub use reply::{AccountInfo, Body, BodyError, Status, StatusCode};
pub use request::{parse, parse_frame, ParseError, Request, MAX_LINE};
pub use status::{AccountStatus, ConnState, StoreState};

/// The management protocol revision implemented by this crate, reported by `VERSION`.
pub const PROTOCOL_VERSION: u32 = 2;

/// The greeting the server sends on connect.
pub const GREETING: &str = "Katzenpost Mailproxy Management Interface Service ready";
