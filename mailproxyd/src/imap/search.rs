//! SEARCH: evaluates imap-codec's parsed search keys against one message.
//! Header keys match the unfolded raw field values, BODY the body bytes
//! and TEXT the whole message, all as case-insensitive ASCII substrings.

use std::num::NonZeroU32;

use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

/// Whether `n` is in `set`, `*` standing for `largest`.
pub fn contains(set: &SequenceSet, n: u32, largest: u32) -> bool {
    let v = |s: &SeqOrUid| match s {
        SeqOrUid::Value(v) => v.get(),
        SeqOrUid::Asterisk => largest,
    };
    set.0.as_ref().iter().any(|s| match s {
        Sequence::Single(s) => v(s) == n,
        Sequence::Range(a, b) => {
            let (a, b) = (v(a), v(b));
            (a.min(b)..=a.max(b)).contains(&n)
        }
    })
}

/// What a search looks at for one message; `raw` is loaded on demand.
pub struct Candidate<'a> {
    /// Sequence number.
    pub seq: u32,
    /// UID.
    pub uid: u32,
    /// Messages in the mailbox.
    pub count: u32,
    /// Largest UID in the mailbox.
    pub max_uid: u32,
    /// Flags.
    pub flags: &'a [String],
    /// RFC822.SIZE.
    pub size: u64,
    /// Internal date.
    pub internal: u64,
    /// The message, once needed.
    pub raw: &'a mut dyn FnMut() -> Option<super::cache::Body>,
}

fn has(c: &Candidate<'_>, flag: &str) -> bool {
    c.flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
}

fn icontains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// The unfolded values of header field `name` of `raw`, joined.
fn field(raw: &[u8], name: &[u8]) -> Vec<u8> {
    let header = crate::message::header_section(raw);
    let mut out = Vec::new();
    let mut on = false;
    for line in header.split_inclusive(|&b| b == b'\n') {
        let cont = matches!(line.first(), Some(b' ') | Some(b'\t'));
        if !cont {
            on = false;
            if let Some(p) = line.iter().position(|&b| b == b':') {
                if line[..p].trim_ascii().eq_ignore_ascii_case(name) {
                    on = true;
                    out.extend_from_slice(line[p + 1..].trim_ascii());
                    out.push(b' ');
                }
            }
        } else if on {
            out.extend_from_slice(line.trim_ascii());
            out.push(b' ');
        }
    }
    out
}

fn day(unix: u64) -> chrono::NaiveDate {
    chrono::DateTime::from_timestamp(unix as i64, 0)
        .unwrap_or_default()
        .date_naive()
}

fn sent_day(raw: &[u8]) -> Option<chrono::NaiveDate> {
    let m = mail_parser::MessageParser::default().parse_headers(raw)?;
    let d = m.date()?;
    chrono::DateTime::from_timestamp(d.to_timestamp(), 0).map(|t| t.date_naive())
}

/// Whether candidate `c` matches `key`.
pub fn matches(key: &SearchKey<'_>, c: &mut Candidate<'_>) -> bool {
    let header = |c: &mut Candidate<'_>, name: &[u8], v: &[u8]| -> bool {
        (c.raw)().is_some_and(|raw| icontains(&field(&raw, name), v))
    };
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().all(|k| matches(k, c)),
        SearchKey::Or(a, b) => matches(a, c) || matches(b, c),
        SearchKey::Not(k) => !matches(k, c),
        SearchKey::SequenceSet(s) => contains(s, c.seq, c.count),
        SearchKey::Uid(s) => contains(s, c.uid, c.max_uid),
        SearchKey::All | SearchKey::Old => true,
        SearchKey::New | SearchKey::Recent => false,
        SearchKey::Answered => has(c, "\\Answered"),
        SearchKey::Unanswered => !has(c, "\\Answered"),
        SearchKey::Deleted => has(c, "\\Deleted"),
        SearchKey::Undeleted => !has(c, "\\Deleted"),
        SearchKey::Draft => has(c, "\\Draft"),
        SearchKey::Undraft => !has(c, "\\Draft"),
        SearchKey::Flagged => has(c, "\\Flagged"),
        SearchKey::Unflagged => !has(c, "\\Flagged"),
        SearchKey::Seen => has(c, "\\Seen"),
        SearchKey::Unseen => !has(c, "\\Seen"),
        SearchKey::Keyword(k) => has(c, k.as_ref()),
        SearchKey::Unkeyword(k) => !has(c, k.as_ref()),
        SearchKey::Larger(n) => c.size > u64::from(*n),
        SearchKey::Smaller(n) => c.size < u64::from(*n),
        SearchKey::Before(d) => day(c.internal) < *d.as_ref(),
        SearchKey::On(d) => day(c.internal) == *d.as_ref(),
        SearchKey::Since(d) => day(c.internal) >= *d.as_ref(),
        SearchKey::SentBefore(d) | SearchKey::SentOn(d) | SearchKey::SentSince(d) => {
            let Some(sent) = (c.raw)().and_then(|r| sent_day(&r)) else {
                return false;
            };
            match key {
                SearchKey::SentBefore(_) => sent < *d.as_ref(),
                SearchKey::SentOn(_) => sent == *d.as_ref(),
                _ => sent >= *d.as_ref(),
            }
        }
        SearchKey::From(v) => header(c, b"from", v.as_ref()),
        SearchKey::To(v) => header(c, b"to", v.as_ref()),
        SearchKey::Cc(v) => header(c, b"cc", v.as_ref()),
        SearchKey::Bcc(v) => header(c, b"bcc", v.as_ref()),
        SearchKey::Subject(v) => header(c, b"subject", v.as_ref()),
        SearchKey::Header(name, v) => {
            let (name, v) = (name.as_ref().to_vec(), v.as_ref().to_vec());
            (c.raw)().is_some_and(|raw| {
                let f = field(&raw, &name);
                // An empty value matches every message having the field.
                if v.is_empty() {
                    crate::message::header_value(&raw, &String::from_utf8_lossy(&name)).is_some()
                } else {
                    icontains(&f, &v)
                }
            })
        }
        SearchKey::Body(v) => (c.raw)().is_some_and(|raw| {
            let h = crate::message::header_section(&raw).len();
            icontains(&raw[h..], v.as_ref())
        }),
        SearchKey::Text(v) => (c.raw)().is_some_and(|raw| icontains(&raw, v.as_ref())),
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// UIDs or sequence numbers as SEARCH answers them.
pub fn nonzero(v: impl IntoIterator<Item = u32>) -> Vec<NonZeroU32> {
    v.into_iter().filter_map(NonZeroU32::new).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_are_unfolded_and_case_insensitive() {
        let raw = b"Subject: Hello\r\n World\r\nFrom: a@b\r\n\r\nbody Subject: no\r\n";
        assert!(icontains(&field(raw, b"SUBJECT"), b"hello world"));
        assert!(!icontains(&field(raw, b"subject"), b"no"));
        assert!(icontains(&field(raw, b"from"), b"A@B"));
    }
}
