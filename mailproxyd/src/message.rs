//! What the mail front adds to a submitted message: our `Received:` header
//! and a `Message-ID:` when the client sent none. The message itself is
//! never re-encoded: both headers are prepended and every submitted byte
//! follows unchanged.

use rand::Rng;

/// Host name used in our headers (as the original daemon did).
pub const HOSTNAME: &str = "katzenpost.localhost";

/// The header section: bytes up to and including the blank line (or the
/// whole message if it has no body separator).
pub fn header_section(msg: &[u8]) -> &[u8] {
    let mut i = 0;
    while i < msg.len() {
        // At a line start: an empty line ends the header.
        if msg[i..].starts_with(b"\r\n") {
            return &msg[..i + 2];
        }
        if msg[i] == b'\n' {
            return &msg[..i + 1];
        }
        match msg[i..].iter().position(|&b| b == b'\n') {
            Some(p) => i += p + 1,
            None => return msg,
        }
    }
    msg
}

/// True if the header section contains a field named `name` (case-insensitive).
pub fn has_header(msg: &[u8], name: &str) -> bool {
    header_value(msg, name).is_some()
}

/// The raw value of the first header field `name` (without folding lines).
pub fn header_value<'a>(msg: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let h = header_section(msg);
    for line in h.split(|&b| b == b'\n') {
        if line.len() > name.len()
            && line[name.len()] == b':'
            && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
        {
            let v = &line[name.len() + 1..];
            let v = v.strip_suffix(b"\r").unwrap_or(v);
            return Some(v.trim_ascii());
        }
    }
    None
}

/// (year, month, day, hour, minute, second) of a Unix time, UTC.
fn civil(unix: u64) -> (i64, u32, u32, u32, u32, u32) {
    let c = mailproxy_proto::civil::Civil::from_unix(unix);
    (c.year, c.month, c.day, c.hour, c.minute, c.second)
}

/// Formats a Unix time as an RFC 5322 date in UTC: `Tue, 24 Nov 2026 14:48:35 +0000`.
pub fn rfc5322_date(unix: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(unix);
    let days = unix / 86_400;
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(mo - 1) as usize];
    format!("{wd}, {d:02} {mon} {y} {h:02}:{mi:02}:{s:02} +0000")
}

/// A new Message-ID value `<YYYYmmddHHMMSS.random@katzenpost.localhost>`.
pub fn new_message_id(unix: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(unix);
    let r: u64 = rand::thread_rng().gen();
    format!(
        "<{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}.{}@{HOSTNAME}>",
        base36(r)
    )
}

fn base36(mut v: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(v % 36) as usize]);
        v /= 36;
        if v == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

/// The headers we prepend to a submitted message: `Received:` always and
/// `Message-ID:` if the message has none. `esmtp` / `authenticated` select
/// the protocol keyword (SMTP, ESMTP, ESMTPA). The client's identity is not
/// recorded, nor are recipients (the header travels to them).
pub fn prepended_headers(msg: &[u8], unix: u64, esmtp: bool, authenticated: bool) -> Vec<u8> {
    let mut id = [0u8; 5];
    rand::thread_rng().fill(&mut id);
    let proto = match (esmtp, authenticated) {
        (_, true) => "ESMTPA",
        (true, false) => "ESMTP",
        (false, false) => "SMTP",
    };
    let mut out = format!(
        "Received: from localhost (localhost [127.0.0.1])\r\n\tby {HOSTNAME} (mailproxyd) with {proto} id {}\r\n\tfor <recipient@anonymous.invalid>; {}\r\n",
        hex::encode(id),
        rfc5322_date(unix)
    );
    if !has_header(msg, "Message-ID") {
        out.push_str(&format!("Message-ID: {}\r\n", new_message_id(unix)));
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_found_case_insensitively_only_in_header() {
        let m = b"Subject: x\r\nmessage-id: <a@b>\r\n\r\nMessage-ID: body\r\n";
        assert_eq!(header_value(m, "Message-ID"), Some(&b"<a@b>"[..]));
        let m = b"Subject: x\r\n\r\nMessage-ID: <in body>\r\n";
        assert!(!has_header(m, "message-id"));
        let m = b"Subject: x\nMessage-Id: <lf>\n\nbody";
        assert_eq!(header_value(m, "message-id"), Some(&b"<lf>"[..]));
        assert_eq!(header_section(b"A: b\r\n\r\nbody"), b"A: b\r\n\r\n");
        assert_eq!(header_section(b"no separator"), b"no separator");
        assert!(!has_header(b"", "Message-ID"));
    }

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(1795531715), "Tue, 24 Nov 2026 14:48:35 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn prepended() {
        let with = prepended_headers(b"Message-ID: <x@y>\r\n\r\nb", 0, true, false);
        let s = String::from_utf8(with).unwrap();
        assert!(s.starts_with("Received: from localhost"));
        assert!(s.contains("with ESMTP id "));
        assert!(!s.contains("Message-ID"));
        let without =
            String::from_utf8(prepended_headers(b"Subject: s\r\n\r\nb", 0, false, true)).unwrap();
        assert!(without.contains("with ESMTPA id "));
        assert!(without.contains("Message-ID: <19700101000000."));
        assert!(without.ends_with("@katzenpost.localhost>\r\n"));
    }
}
