//! Local reports placed in the account's own inbox: bounces
//! (multipart/report delivery-status notices with the original attached)
//! and notices about incoming blocks that could not be read. Also the
//! `X-Katzenpost-Sender` header added to delivered mail.

use base64::Engine as _;
use rand::RngCore;

use crate::message::{header_section, rfc5322_date};

const SENDER_HEADER: &str = "X-Katzenpost-Sender";

/// Subject of a bounce.
pub(super) const BOUNCE_SUBJECT: &str = "Undelivered Mail Returned to Sender";
/// Subject of the notice that key discovery stored a key.
pub(super) const KEY_DISCOVERY_SUBJECT: &str = "Key Discovery";
/// Subject of a notice about an unreadable incoming message.
pub(super) const UNREADABLE_SUBJECT: &str = "Unreadable incoming message";
/// Subject of the report on incomplete messages dropped at the limits.
pub(super) const PARTIALS_DROPPED_SUBJECT: &str = "Incomplete incoming messages dropped";

fn boundary() -> String {
    let mut b = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("=_mailproxy_{}", hex::encode(b))
}

fn head(to: &str, subject: &str, now: u64, extra: &str) -> String {
    format!(
        "From: Mail Delivery Subsystem <MAILER-DAEMON@localhost>\r\n\
         To: <{to}>\r\n\
         Subject: {subject}\r\n\
         Date: {}\r\n\
         Message-ID: {}\r\n\
         MIME-Version: 1.0\r\n\
         Auto-Submitted: auto-replied\r\n{extra}",
        rfc5322_date(now),
        crate::message::new_message_id(now),
    )
}

/// A multipart/report bounce for `original` that could not be delivered to
/// `recipient`, addressed to `sender` (the account itself).
pub(super) fn bounce(
    sender: &str,
    recipient: &str,
    original: &[u8],
    now: u64,
    why: &str,
) -> Vec<u8> {
    let b = boundary();
    let mut out = head(
        sender,
        BOUNCE_SUBJECT,
        now,
        &format!(
            "Content-Type: multipart/report; report-type=delivery-status; boundary=\"{b}\"\r\n\r\n"
        ),
    )
    .into_bytes();
    out.extend_from_slice(
        format!(
            "This is a MIME-encapsulated message.\r\n\r\n--{b}\r\n\
             Content-Type: text/plain; charset=us-ascii\r\n\r\n\
             Your message to <{recipient}> could not be delivered: {why}.\r\n\r\n\
             --{b}\r\n\
             Content-Type: message/delivery-status\r\n\r\n\
             Reporting-MTA: dns; localhost\r\n\r\n\
             Final-Recipient: rfc822; {recipient}\r\n\
             Action: failed\r\n\
             Status: 4.4.7\r\n\
             Diagnostic-Code: X-Katzenpost; {why}\r\n\r\n\
             --{b}\r\n\
             Content-Type: message/rfc822\r\n\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(original);
    if !original.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    out
}

/// A notice that an incoming message could not be read.
pub(super) fn unreadable(
    account: &str,
    what: &str,
    sender: Option<&[u8; 32]>,
    now: u64,
) -> Vec<u8> {
    let from = match sender {
        Some(k) => format!(
            "The sender's key was {}.\r\n",
            base64::engine::general_purpose::STANDARD.encode(k)
        ),
        None => "The sender is unknown.\r\n".to_string(),
    };
    let mut out = head(
        account,
        UNREADABLE_SUBJECT,
        now,
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
    );
    out.push_str(&format!(
        "An incoming message could not be read and was dropped: {what}.\r\n{from}"
    ));
    out.into_bytes()
}

/// The report on `count` incomplete incoming messages dropped because the
/// limits on incomplete messages (per sender or in total) were reached.
pub(super) fn partials_dropped(account: &str, count: u64, now: u64) -> Vec<u8> {
    let mut out = head(
        account,
        PARTIALS_DROPPED_SUBJECT,
        now,
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
    );
    out.push_str(&format!(
        "{count} incomplete incoming message(s) were dropped, oldest first, because the limits on \
         incomplete messages (per sender or in total, [Limits] in the configuration) were reached.\r\n\
         Someone may be sending many fragments that never complete. Their senders may retransmit.\r\n"
    ));
    out.into_bytes()
}

/// The notice put in the sender's inbox when key discovery stored a key. It
/// names the recipient and the key, never any message contents.
pub(super) fn key_discovered(account: &str, recipient: &str, key: &[u8; 32], now: u64) -> Vec<u8> {
    let mut out = head(
        account,
        KEY_DISCOVERY_SUBJECT,
        now,
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
    );
    out.push_str(&format!(
        "Key discovery obtained the key of <{recipient}> from its provider:\r\n\r\n\
         {}\r\n\r\n\
         It was stored as that recipient's key, and mail waiting for it is now being sent.\r\n\
         The key was accepted on first use without any verification: the provider could have\r\n\
         substituted its own. Verify it with <{recipient}> out of band (in person, by phone, or\r\n\
         over another channel you trust) before relying on it.\r\n",
        base64::engine::general_purpose::STANDARD.encode(key)
    ));
    out.into_bytes()
}

/// What is delivered for an incoming `msg` from `sender` to `account`: a
/// `Received:` field (as the original mailproxy wrote it, with a random
/// 10-hex-digit id), then `X-Katzenpost-Sender` (see [`with_sender_header`]),
/// then the sender's message, byte for byte except for forged
/// `X-Katzenpost-Sender` fields removed from its header.
pub(super) fn with_delivery_headers(
    msg: &[u8],
    sender: &[u8; 32],
    account: &str,
    now: u64,
) -> Vec<u8> {
    let rest = with_sender_header(msg, sender);
    // Same line ending as the X-Katzenpost-Sender field (the message's own).
    let first = rest.iter().position(|&b| b == b'\n').unwrap_or(0);
    let eol = if first > 0 && rest[first - 1] == b'\r' {
        "\r\n"
    } else {
        "\n"
    };
    let mut id = [0u8; 5];
    rand::rngs::OsRng.fill_bytes(&mut id);
    let mut out = format!(
        "Received: from mixnetwork.invalid (mixnetwork.invalid [127.0.0.2]) by katzenpost.localhost (Katzenpost mailproxy) with ESMTP id {} for <{account}>; {}{eol}",
        hex::encode(id),
        rfc5322_date(now),
    )
    .into_bytes();
    out.extend_from_slice(&rest);
    out
}

/// `msg` with `X-Katzenpost-Sender: <base64 key>` first and any such field
/// the sender put in the header removed.
pub(super) fn with_sender_header(msg: &[u8], sender: &[u8; 32]) -> Vec<u8> {
    let header = header_section(msg);
    let body = &msg[header.len()..];
    let eol: &[u8] = if header.windows(2).any(|w| w == b"\r\n") || header.is_empty() {
        b"\r\n"
    } else {
        b"\n"
    };
    let mut out = Vec::with_capacity(msg.len() + 80);
    out.extend_from_slice(SENDER_HEADER.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(
        base64::engine::general_purpose::STANDARD
            .encode(sender)
            .as_bytes(),
    );
    out.extend_from_slice(eol);
    let mut skipping = false;
    for line in header.split_inclusive(|&b| b == b'\n') {
        let continuation = line.first().is_some_and(|&c| c == b' ' || c == b'\t');
        if continuation && skipping {
            continue;
        }
        skipping = is_field(line, SENDER_HEADER);
        if !skipping {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(body);
    out
}

fn is_field(line: &[u8], name: &str) -> bool {
    line.len() > name.len()
        && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
        && line[name.len()..]
            .iter()
            .find(|&&c| c != b' ' && c != b'\t')
            == Some(&b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_header_is_added_and_forgeries_stripped() {
        let key = [7u8; 32];
        let b64 = base64::engine::general_purpose::STANDARD.encode(key);
        let msg = b"Subject: hi\r\nx-katzenpost-sender: forged\r\n  folded\r\nTo: b\r\n\r\nbody\r\nX-Katzenpost-Sender: in body\r\n";
        let out = with_sender_header(msg, &key);
        let want = format!(
            "X-Katzenpost-Sender: {b64}\r\nSubject: hi\r\nTo: b\r\n\r\nbody\r\nX-Katzenpost-Sender: in body\r\n"
        );
        assert_eq!(out, want.as_bytes());
        let plain = b"Subject: x\r\n\r\nhello";
        let mut want = format!("X-Katzenpost-Sender: {b64}\r\n").into_bytes();
        want.extend_from_slice(plain);
        assert_eq!(with_sender_header(plain, &key), want);
        let lf = with_sender_header(b"A: b\n\nc", &key);
        assert!(lf.ends_with(b"\nA: b\n\nc"));
    }

    #[test]
    fn deliveries_get_received_then_sender_then_the_untouched_message() {
        let key = [7u8; 32];
        let b64 = base64::engine::general_purpose::STANDARD.encode(key);
        let msg = b"Subject: hi\r\nTo: b\r\n\r\nbody \x00\xff bytes\r\n.\r\nno final eol";
        let out = with_delivery_headers(msg, &key, "bob@p2", 1_795_559_252);
        let s = String::from_utf8_lossy(&out);
        let (received, _) = s.split_once("\r\n").unwrap();
        let prefix = "Received: from mixnetwork.invalid (mixnetwork.invalid [127.0.0.2]) by katzenpost.localhost (Katzenpost mailproxy) with ESMTP id ";
        assert!(received.starts_with(prefix), "{received}");
        let tail = &received[prefix.len()..];
        let (id, tail) = tail.split_once(' ').unwrap();
        assert_eq!(id.len(), 10);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(tail, "for <bob@p2>; Tue, 24 Nov 2026 22:27:32 +0000");
        assert!(received.len() < 998);
        let mut want = format!("X-Katzenpost-Sender: {b64}\r\n").into_bytes();
        want.extend_from_slice(msg);
        assert_eq!(&out[received.len() + 2..], want.as_slice());
        // LF-only messages get LF-terminated fields.
        let lf = with_delivery_headers(b"A: b\n\nc\n", &key, "bob@p2", 0);
        let first = lf.iter().position(|&b| b == b'\n').unwrap();
        assert_ne!(lf[first - 1], b'\r');
        assert!(lf.ends_with(b"\nA: b\n\nc\n"));
        // Two deliveries of the same message get different ids.
        let again = with_delivery_headers(msg, &key, "bob@p2", 1_795_559_252);
        assert_ne!(again, out);
    }

    #[test]
    fn bounce_attaches_the_original() {
        let r = bounce(
            "alice@p1",
            "bob@p2",
            b"Subject: x\r\n\r\nhello\r\n",
            0,
            "timed out",
        );
        let s = String::from_utf8(r).unwrap();
        assert!(s.contains("multipart/report; report-type=delivery-status"));
        assert!(s.contains("message/rfc822\r\n\r\nSubject: x\r\n\r\nhello\r\n--"));
        assert!(s.contains("Final-Recipient: rfc822; bob@p2"));
    }
}
