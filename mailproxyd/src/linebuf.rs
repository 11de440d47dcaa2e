//! Line framing shared by the SMTP and POP3 parsers: find the first line
//! within a length limit (CRLF or bare LF), and skip the rest of an
//! over-long line.

/// Why nothing was parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// No complete line yet.
    Incomplete,
    /// The line is longer than allowed; skip input up to and including the
    /// next line feed (see [`skip_line`]).
    LineTooLong,
    /// The line is complete but malformed; `consumed` bytes were used.
    Syntax {
        /// Bytes to drop.
        consumed: usize,
        /// Reply text.
        reason: &'static str,
    },
}

/// Whether a connection's first bytes are a TLS handshake record (a
/// ClientHello: content type 22): a client trying TLS on a plain-text port,
/// as Thunderbird's account setup probes each port. No text command starts
/// with that control byte.
pub fn is_tls_handshake(first_bytes: &[u8]) -> bool {
    first_bytes.first() == Some(&0x16)
}

/// Finds the first line within `max` bytes. Returns the line without its
/// terminator (CRLF or bare LF) and the bytes consumed.
pub fn line(buf: &[u8], max: usize) -> Result<(&[u8], usize), ParseError> {
    let window = &buf[..buf.len().min(max)];
    match window.iter().position(|&b| b == b'\n') {
        Some(p) => {
            let l = &buf[..p];
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            Ok((l, p + 1))
        }
        None if buf.len() >= max => Err(ParseError::LineTooLong),
        None => Err(ParseError::Incomplete),
    }
}

/// After [`ParseError::LineTooLong`]: how many bytes of `buf` to drop, and
/// whether the end of the long line was found.
pub fn skip_line(buf: &[u8]) -> (usize, bool) {
    match buf.iter().position(|&b| b == b'\n') {
        Some(p) => (p + 1, true),
        None => (buf.len(), false),
    }
}
