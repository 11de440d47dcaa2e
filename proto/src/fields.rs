//! `key=value` fields, the shape of every body line and event added in
//! protocol 2 (`STATUS`, `QUEUE`, `INBOX`, `EVENTS`).
//!
//! ```text
//! fields = field *( SP field )
//! field  = key "=" value
//! key    = 1*( %x61-7A / DIGIT / "_" )        ; lower case
//! value  = "-" / *( %x21-7E )                 ; "-" means none; see below
//! ```
//!
//! Values are percent-encoded: every byte outside `%x21-7E`, and `%` itself,
//! is written as `%XX` (upper-case hex), so a value never holds a blank or a
//! control character and arbitrary UTF-8 text survives. A value of exactly
//! `-` means "none" (an encoded text `-` is written `%2D`). Readers ignore
//! keys they do not know, so later versions may add fields.

use std::fmt::Write as _;

/// Why a field line was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// A token is not `key=value`.
    #[error("malformed field {0:?}")]
    Malformed(String),
    /// A required field is missing.
    #[error("missing field {0:?}")]
    Missing(&'static str),
    /// A field's value does not have the expected form.
    #[error("bad value for field {key:?}: {value:?}")]
    BadValue {
        /// The field.
        key: &'static str,
        /// The raw value.
        value: String,
    },
    /// The line has too few words.
    #[error("line too short: {0:?}")]
    TooShort(String),
    /// The line holds a control character (values are percent-encoded and
    /// words are identifiers, so no well-formed line has one).
    #[error("control character in line {0:?}")]
    ControlCharacter(String),
}

/// Percent-encodes a text value (never returns `-` alone; the empty text is
/// the empty value, `key=`).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    if out == "-" {
        out = "%2D".to_owned();
    }
    out
}

/// Decodes a percent-encoded value. Invalid escapes and invalid UTF-8 are
/// replaced (U+FFFD) rather than rejected: values are for display.
pub fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Builds a field line.
#[derive(Debug, Default, Clone)]
pub struct FieldWriter {
    out: String,
}

impl FieldWriter {
    /// Starts a line with leading words (account, id, kind...), written as is.
    /// Words must not hold blanks; callers pass identifiers only.
    pub fn new(words: &[&str]) -> FieldWriter {
        FieldWriter {
            out: words.join(" "),
        }
    }

    fn key(&mut self, key: &str) {
        if !self.out.is_empty() {
            self.out.push(' ');
        }
        self.out.push_str(key);
        self.out.push('=');
    }

    /// A number.
    pub fn num(&mut self, key: &str, v: impl std::fmt::Display) -> &mut Self {
        self.key(key);
        let _ = write!(self.out, "{v}");
        self
    }

    /// An optional number (`-` when none).
    pub fn opt_num<T: std::fmt::Display>(&mut self, key: &str, v: Option<T>) -> &mut Self {
        match v {
            Some(v) => self.num(key, v),
            None => self.none(key),
        }
    }

    /// A text value (percent-encoded).
    pub fn text(&mut self, key: &str, v: &str) -> &mut Self {
        self.key(key);
        self.out.push_str(&encode(v));
        self
    }

    /// An optional text value (`-` when none).
    pub fn opt_text(&mut self, key: &str, v: Option<&str>) -> &mut Self {
        match v {
            Some(v) => self.text(key, v),
            None => self.none(key),
        }
    }

    fn none(&mut self, key: &str) -> &mut Self {
        self.key(key);
        self.out.push('-');
        self
    }

    /// The line (without CRLF).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.out)
    }
}

/// A parsed field line: leading words, then fields.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    words: Vec<&'a str>,
    fields: Vec<(&'a str, &'a str)>,
}

impl<'a> Fields<'a> {
    /// Splits `line` into `n_words` leading words and `key=value` fields.
    pub fn parse(line: &'a str, n_words: usize) -> Result<Fields<'a>, FieldError> {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.chars().any(char::is_control) {
            return Err(FieldError::ControlCharacter(line.to_owned()));
        }
        let mut tokens = line.split(' ').filter(|t| !t.is_empty());
        let mut words = Vec::with_capacity(n_words);
        for _ in 0..n_words {
            match tokens.next() {
                Some(w) => words.push(w),
                None => return Err(FieldError::TooShort(line.to_owned())),
            }
        }
        let mut fields = Vec::new();
        for t in tokens {
            match t.split_once('=') {
                Some((k, v)) if !k.is_empty() => fields.push((k, v)),
                _ => return Err(FieldError::Malformed(t.to_owned())),
            }
        }
        Ok(Fields { words, fields })
    }

    /// Leading word `i` (as parsed; `i < n_words`).
    pub fn word(&self, i: usize) -> &'a str {
        self.words[i]
    }

    fn raw(&self, key: &str) -> Option<&'a str> {
        self.fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// A required number.
    pub fn num<T: std::str::FromStr>(&self, key: &'static str) -> Result<T, FieldError> {
        self.opt_num(key)?.ok_or(FieldError::Missing(key))
    }

    /// A number that may be absent or `-`.
    pub fn opt_num<T: std::str::FromStr>(
        &self,
        key: &'static str,
    ) -> Result<Option<T>, FieldError> {
        match self.raw(key) {
            None | Some("-") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| FieldError::BadValue {
                key,
                value: v.to_owned(),
            }),
        }
    }

    /// A number that defaults to zero when absent (counters).
    pub fn count(&self, key: &'static str) -> Result<u64, FieldError> {
        Ok(self.opt_num(key)?.unwrap_or(0))
    }

    /// A required text value.
    pub fn text(&self, key: &'static str) -> Result<String, FieldError> {
        self.opt_text(key).ok_or(FieldError::Missing(key))
    }

    /// A text value that may be absent or `-`.
    pub fn opt_text(&self, key: &str) -> Option<String> {
        match self.raw(key) {
            None | Some("-") => None,
            Some(v) => Some(decode(v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_any_text() {
        for text in [
            "",
            "plain",
            "a b",
            "100%",
            "-",
            "--",
            "x=y",
            "é\r\n\t\u{7f}",
            " ",
        ] {
            let enc = encode(text);
            assert!(enc.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{enc}");
            assert_ne!(enc, "-");
            assert_eq!(decode(&enc), text);
        }
        assert_eq!(encode("a b%"), "a%20b%25");
    }

    #[test]
    fn decoding_tolerates_bad_escapes() {
        assert_eq!(decode("%"), "%");
        assert_eq!(decode("%4"), "%4");
        assert_eq!(decode("%zz"), "%zz");
        assert_eq!(decode("%FF"), "\u{fffd}");
    }

    #[test]
    fn writer_and_parser_agree() {
        let line = FieldWriter::new(&["a@p", "7"])
            .num("n", 3)
            .opt_num::<u64>("none", None)
            .text("t", "hello world")
            .opt_text("e", Some("-"))
            .finish();
        assert_eq!(line, "a@p 7 n=3 none=- t=hello%20world e=%2D");
        let f = Fields::parse(&line, 2).unwrap();
        assert_eq!((f.word(0), f.word(1)), ("a@p", "7"));
        assert_eq!(f.num::<u64>("n"), Ok(3));
        assert_eq!(f.opt_num::<u64>("none"), Ok(None));
        assert_eq!(f.count("absent"), Ok(0));
        assert_eq!(f.text("t").unwrap(), "hello world");
        assert_eq!(f.opt_text("e").as_deref(), Some("-"));
        assert_eq!(f.num::<u64>("missing"), Err(FieldError::Missing("missing")));
        assert!(matches!(
            f.num::<u64>("t"),
            Err(FieldError::BadValue { key: "t", .. })
        ));
        assert!(Fields::parse("a@p", 2).is_err());
        assert!(Fields::parse("a@p novalue", 1).is_err());
        assert!(Fields::parse("a@p =v", 1).is_err());
    }

    #[test]
    fn control_characters_are_refused_anywhere() {
        for line in [
            "a\tb 1",
            "a@p \n\n ",
            "a@p k=v\u{7f}",
            "a@p\r k=v",
            "a@p k=\u{85}",
        ] {
            assert!(
                matches!(Fields::parse(line, 1), Err(FieldError::ControlCharacter(_))),
                "{line:?}"
            );
        }
        // A trailing CRLF is the line's end, not part of it.
        assert!(Fields::parse("a@p k=v\r\n", 1).is_ok());
    }
}
