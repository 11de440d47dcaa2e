//! Replies: status lines and dot-terminated bodies.

use std::fmt;

use crate::key::{decode_key, encode_key, KEY_LEN};

/// A three-digit reply code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StatusCode(pub u16);

impl StatusCode {
    /// `220`: the greeting.
    pub const READY: StatusCode = StatusCode(220);
    /// `250`: requested action ok.
    pub const OK: StatusCode = StatusCode(250);
    /// `500`: unknown command.
    pub const UNRECOGNISED: StatusCode = StatusCode(500);
    /// `501`: bad arguments (also bad lines: too long, not UTF-8).
    pub const BAD_ARGUMENTS: StatusCode = StatusCode(501);
    /// `554`: the action failed.
    pub const FAILED: StatusCode = StatusCode(554);

    /// Whether this is a 2xx code.
    pub fn is_success(self) -> bool {
        (200..300).contains(&self.0)
    }

    /// The original daemon's fixed text for this code.
    pub fn standard_text(self) -> &'static str {
        match self.0 {
            220 => crate::GREETING,
            250 => "Requested action ok, completed",
            500 => "Syntax error, command unrecognised",
            501 => "Syntax error in parameters or arguments",
            _ => "Transaction failed",
        }
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03}", self.0)
    }
}

/// A status line: code and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The code.
    pub code: StatusCode,
    /// The text after the code (without CRLF).
    pub text: String,
}

impl Status {
    /// A status line with the code's standard text.
    pub fn standard(code: StatusCode) -> Status {
        Status {
            code,
            text: code.standard_text().to_owned(),
        }
    }

    /// `250` with a payload (a key, a version, a summary).
    pub fn ok_with(text: impl Into<String>) -> Status {
        Status {
            code: StatusCode::OK,
            text: text.into(),
        }
    }

    /// The code's standard text followed by `: detail`.
    pub fn with_detail(code: StatusCode, detail: impl fmt::Display) -> Status {
        Status {
            code,
            text: format!(
                "{}: {}",
                code.standard_text(),
                sanitize(&detail.to_string())
            ),
        }
    }

    /// Parses a status line (with or without its CRLF). `None` if the line is
    /// not a status line: three digits followed by a space or the end.
    pub fn parse_line(line: &str) -> Option<Status> {
        let line = line.trim_end_matches(['\r', '\n']);
        let bytes = line.as_bytes();
        if bytes.len() < 3 || !bytes[..3].iter().all(u8::is_ascii_digit) {
            return None;
        }
        if bytes.len() > 3 && bytes[3] != b' ' {
            return None;
        }
        let code = line[..3].parse().ok()?;
        Some(Status {
            code: StatusCode(code),
            text: line.get(4..).unwrap_or("").to_owned(),
        })
    }

    /// The text after the standard prefix (`554 Transaction failed: X` gives `X`).
    pub fn detail(&self) -> &str {
        let std = self.code.standard_text();
        self.text
            .strip_prefix(std)
            .and_then(|rest| rest.strip_prefix(": "))
            .unwrap_or(&self.text)
    }
}

impl fmt::Display for Status {
    /// The wire form, CRLF included.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}\r\n", self.code, sanitize(&self.text))
    }
}

/// Replaces control characters so a text can never break the line framing.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Formats a dot-terminated body: CRLF lines, dot-stuffed, then `.`.
pub fn format_body<I, S>(lines: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = String::new();
    for line in lines {
        let line = sanitize(line.as_ref());
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(&line);
        out.push_str("\r\n");
    }
    out.push_str(".\r\n");
    out
}

/// Why a body was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// More lines than [`Body::MAX_LINES`].
    #[error("body has too many lines")]
    TooManyLines,
}

/// Incremental decoder of a dot-terminated body, one line at a time.
#[derive(Debug, Default, Clone)]
pub struct Body {
    lines: Vec<String>,
    done: bool,
}

impl Body {
    /// Most lines a client accepts in one body.
    pub const MAX_LINES: usize = 1_000_000;

    /// Feeds one line (CRLF optional). Returns `true` once the terminating
    /// `.` has been seen; later lines are not accepted.
    pub fn push_line(&mut self, line: &str) -> Result<bool, BodyError> {
        if self.done {
            return Ok(true);
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line == "." {
            self.done = true;
            return Ok(true);
        }
        if self.lines.len() >= Self::MAX_LINES {
            return Err(BodyError::TooManyLines);
        }
        let line = line.strip_prefix('.').unwrap_or(line);
        self.lines.push(line.to_owned());
        Ok(false)
    }

    /// Whether the terminator has been seen.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The decoded lines.
    pub fn into_lines(self) -> Vec<String> {
        self.lines
    }
}

/// One line of the `LIST_RECIPIENTS` body: `<addr> <base64 key>`.
pub fn format_recipient_line(address: &str, key: &[u8; KEY_LEN]) -> String {
    format!("{address} {}", encode_key(key))
}

/// Parses one `LIST_RECIPIENTS` body line.
pub fn parse_recipient_line(line: &str) -> Result<(String, [u8; KEY_LEN]), String> {
    let mut words = line.split_ascii_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some(address), Some(key), None) => decode_key(key)
            .map(|key| (address.to_owned(), key))
            .map_err(|e| format!("recipient line {line:?}: {e}")),
        _ => Err(format!("malformed recipient line {line:?}")),
    }
}

/// An account as the `ACCOUNTS` command reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccountInfo {
    /// The account id, `user@provider`.
    pub account: String,
    /// The X25519 link public key (register with `ADD_USER`).
    #[serde(with = "key_serde")]
    pub link_key: [u8; KEY_LEN],
    /// The X25519 identity public key (register with `SET_USER_IDENTITY`).
    #[serde(with = "key_serde")]
    pub identity_key: [u8; KEY_LEN],
}

impl AccountInfo {
    /// One line of the `ACCOUNTS` body: `<account> <base64 link> <base64 identity>`.
    pub fn to_line(&self) -> String {
        format!(
            "{} {} {}",
            self.account,
            encode_key(&self.link_key),
            encode_key(&self.identity_key)
        )
    }

    /// Parses one `ACCOUNTS` body line.
    pub fn parse_line(line: &str) -> Result<AccountInfo, String> {
        let mut words = line.split_ascii_whitespace();
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some(account), Some(link), Some(identity), None) => {
                let bad = |e| format!("account line {line:?}: {e}");
                Ok(AccountInfo {
                    account: account.to_owned(),
                    link_key: decode_key(link).map_err(bad)?,
                    identity_key: decode_key(identity).map_err(bad)?,
                })
            }
            _ => Err(format!("malformed account line {line:?}")),
        }
    }
}

/// Serialises keys as base64 strings in JSON.
mod key_serde {
    use super::{decode_key, encode_key, KEY_LEN};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(key: &[u8; KEY_LEN], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode_key(key))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; KEY_LEN], D::Error> {
        let text = String::deserialize(d)?;
        decode_key(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trip() {
        let s = Status::with_detail(StatusCode::FAILED, "unknown recipient 'bob@x'");
        let wire = s.to_string();
        assert_eq!(
            wire,
            "554 Transaction failed: unknown recipient 'bob@x'\r\n"
        );
        let back = Status::parse_line(&wire).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.detail(), "unknown recipient 'bob@x'");
        assert_eq!(
            Status::standard(StatusCode::OK).to_string(),
            "250 Requested action ok, completed\r\n"
        );
        assert_eq!(
            Status::parse_line("250"),
            Some(Status {
                code: StatusCode::OK,
                text: String::new()
            })
        );
    }

    #[test]
    fn status_detection() {
        assert!(Status::parse_line("500@example.org AAAA").is_none());
        assert!(Status::parse_line("bob@example.org AAAA").is_none());
        assert!(Status::parse_line("25").is_none());
        assert!(Status::parse_line("2500 x").is_none());
    }

    #[test]
    fn status_text_cannot_inject_lines() {
        let s = Status::with_detail(StatusCode::FAILED, "a\r\n250 forged");
        assert_eq!(s.to_string().matches("\r\n").count(), 1);
    }

    #[test]
    fn body_round_trip() {
        let lines = ["a@b K1", ".hidden K2", "", "x"];
        let wire = format_body(lines);
        assert_eq!(wire, "a@b K1\r\n..hidden K2\r\n\r\nx\r\n.\r\n");
        let mut body = Body::default();
        let mut done = false;
        for line in wire.split_inclusive("\r\n") {
            done = body.push_line(line).unwrap();
        }
        assert!(done && body.is_done());
        assert_eq!(body.into_lines(), lines);
        assert_eq!(format_body(Vec::<String>::new()), ".\r\n");
    }

    #[test]
    fn recipient_and_account_lines() {
        let line = format_recipient_line("bob@x", &[3; 32]);
        assert_eq!(
            parse_recipient_line(&line),
            Ok(("bob@x".to_owned(), [3; 32]))
        );
        assert!(parse_recipient_line("bob@x").is_err());
        assert!(parse_recipient_line("bob@x AAAA").is_err());
        let info = AccountInfo {
            account: "a@p".into(),
            link_key: [1; 32],
            identity_key: [2; 32],
        };
        assert_eq!(AccountInfo::parse_line(&info.to_line()), Ok(info.clone()));
        assert!(AccountInfo::parse_line("a@p x").is_err());
        let json = serde_json::to_string(&info).unwrap();
        assert!(json.contains(&encode_key(&[1; 32])));
        assert_eq!(serde_json::from_str::<AccountInfo>(&json).unwrap(), info);
    }
}
