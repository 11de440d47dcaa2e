//! Streaming dot-stuffing for POP3 multi-line responses, and the TOP filter.
//!
//! A line starts at the beginning of the message and after every LF (bare
//! or not), so that clients splitting lines on LF and clients splitting on
//! CRLF both see every stuffed dot and never a premature terminator.

/// Dot-stuffs a message fed in pieces.
#[derive(Debug, Clone)]
pub struct Stuffer {
    line_start: bool,
    last2: [u8; 2],
    any: bool,
}

impl Default for Stuffer {
    fn default() -> Self {
        Stuffer {
            line_start: true,
            last2: [0, 0],
            any: false,
        }
    }
}

impl Stuffer {
    /// A stuffer at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the stuffed form of `chunk` to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if chunk.is_empty() {
            return;
        }
        out.reserve(chunk.len() + 16);
        let mut run = 0;
        let mut i = 0;
        if self.line_start && chunk[0] == b'.' {
            out.push(b'.');
        }
        while let Some(p) = chunk[i..].iter().position(|&b| b == b'\n') {
            let nl = i + p;
            if chunk.get(nl + 1) == Some(&b'.') {
                out.extend_from_slice(&chunk[run..=nl]);
                out.push(b'.');
                run = nl + 1;
            }
            i = nl + 1;
        }
        out.extend_from_slice(&chunk[run..]);
        self.line_start = chunk[chunk.len() - 1] == b'\n';
        self.last2 = if chunk.len() >= 2 {
            [chunk[chunk.len() - 2], chunk[chunk.len() - 1]]
        } else {
            [self.last2[1], chunk[0]]
        };
        self.any = true;
    }

    /// Ends the response: a CRLF if the message did not end with one, then `.` CRLF.
    pub fn finish(&self, out: &mut Vec<u8>) {
        if self.any && self.last2 != *b"\r\n" {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// Passes a message's header, the blank line, and the first `lines` body
/// lines (RFC 1939 TOP).
#[derive(Debug, Clone)]
pub struct TopFilter {
    in_header: bool,
    line_len: usize,
    prev_cr: bool,
    left: u32,
    done: bool,
}

impl TopFilter {
    /// A filter keeping `lines` body lines.
    pub fn new(lines: u32) -> Self {
        TopFilter {
            in_header: true,
            line_len: 0,
            prev_cr: false,
            left: lines,
            done: false,
        }
    }

    /// True once everything wanted has been passed.
    pub fn done(&self) -> bool {
        self.done
    }

    /// The prefix of `chunk` to pass on.
    pub fn take<'a>(&mut self, chunk: &'a [u8]) -> &'a [u8] {
        if self.done {
            return &chunk[..0];
        }
        for (i, &b) in chunk.iter().enumerate() {
            if b == b'\n' {
                let empty = self.line_len == 0 || (self.line_len == 1 && self.prev_cr);
                self.line_len = 0;
                if self.in_header {
                    if empty {
                        self.in_header = false;
                        if self.left == 0 {
                            self.done = true;
                            return &chunk[..=i];
                        }
                    }
                } else {
                    self.left -= 1;
                    if self.left == 0 {
                        self.done = true;
                        return &chunk[..=i];
                    }
                }
            } else {
                self.line_len += 1;
                self.prev_cr = b == b'\r';
            }
        }
        chunk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(msg: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, &b) in msg.iter().enumerate() {
            if b == b'.' && (i == 0 || msg[i - 1] == b'\n') {
                out.push(b'.');
            }
            out.push(b);
        }
        if !msg.is_empty() && !msg.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        out
    }

    fn all_strings(max: usize) -> Vec<Vec<u8>> {
        let mut all = vec![vec![]];
        let mut layer = vec![vec![]];
        for _ in 0..max {
            let mut next = Vec::new();
            for s in &layer {
                for c in [b'a', b'.', b'\r', b'\n'] {
                    let mut t: Vec<u8> = s.clone();
                    t.push(c);
                    next.push(t);
                }
            }
            all.extend(next.iter().cloned());
            layer = next;
        }
        all
    }

    #[test]
    fn stuffer_matches_naive_at_every_split() {
        for s in all_strings(7) {
            let want = naive(&s);
            for a in 0..=s.len() {
                for b in a..=s.len() {
                    let mut st = Stuffer::new();
                    let mut out = Vec::new();
                    st.push(&s[..a], &mut out);
                    st.push(&s[a..b], &mut out);
                    st.push(&s[b..], &mut out);
                    st.finish(&mut out);
                    assert_eq!(out, want, "input {s:?} splits {a},{b}");
                }
            }
        }
    }

    #[test]
    fn stuffed_output_decodes_like_clients_do() {
        // A client splitting on LF: no premature "." line, and unstuffing restores lines.
        for s in all_strings(6) {
            let out = naive(&s);
            let body = &out[..out.len() - 3];
            for line in body.split(|&b| b == b'\n') {
                let l = line.strip_suffix(b"\r").unwrap_or(line);
                assert_ne!(l, b".", "premature terminator for {s:?}");
            }
        }
    }

    #[test]
    fn top() {
        let m = b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3\r\n";
        let run = |n: u32, split: usize| {
            let mut f = TopFilter::new(n);
            let mut out = f.take(&m[..split]).to_vec();
            out.extend_from_slice(f.take(&m[split..]));
            out
        };
        for split in 0..=m.len() {
            assert_eq!(run(0, split), b"A: 1\r\nB: 2\r\n\r\n");
            assert_eq!(run(2, split), b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n");
            assert_eq!(run(9, split), m.to_vec());
        }
        let mut f = TopFilter::new(0);
        assert_eq!(f.take(b"no blank line"), b"no blank line");
    }
}
