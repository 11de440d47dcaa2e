//! Streaming DATA decoder: dot-unstuffing and end-of-data detection.
//!
//! A line starts at the beginning of DATA and after every CRLF. At a line
//! start, `.` CRLF ends the message and a leading `.` is otherwise removed.
//! Every other byte (bare CR, bare LF, NUL, 8-bit) passes through unchanged.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    LineStart,
    Mid,
    Cr,
}

/// Decodes a DATA stream incrementally.
#[derive(Debug, Clone)]
pub struct Unstuffer {
    state: State,
}

impl Default for Unstuffer {
    fn default() -> Self {
        Unstuffer {
            state: State::LineStart,
        }
    }
}

impl Unstuffer {
    /// A decoder positioned at the start of the message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes as much of `input` as possible, appending message bytes to
    /// `out`. Returns the bytes consumed and whether the end-of-data line was
    /// seen (it is consumed; bytes after it are left alone). Fewer bytes than
    /// given may be consumed when a line start is ambiguous (`.` or `.\r`);
    /// call again with those bytes followed by more input.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
        let mut i = 0;
        let mut run = 0; // start of the pending pass-through run
        while i < input.len() {
            match self.state {
                State::LineStart => {
                    if input[i] == b'.' {
                        out.extend_from_slice(&input[run..i]);
                        match (input.get(i + 1), input.get(i + 2)) {
                            (Some(b'\r'), Some(b'\n')) => {
                                self.state = State::LineStart;
                                return (i + 3, true);
                            }
                            (None, _) | (Some(b'\r'), None) => return (i, false),
                            _ => {
                                // A stuffed dot: drop it.
                                i += 1;
                                run = i;
                                self.state = State::Mid;
                                continue;
                            }
                        }
                    }
                    self.state = State::Mid;
                }
                State::Mid => {
                    // Fast path: skip to the next CR.
                    match input[i..].iter().position(|&b| b == b'\r') {
                        Some(p) => {
                            i += p + 1;
                            self.state = State::Cr;
                        }
                        None => i = input.len(),
                    }
                }
                State::Cr => {
                    self.state = match input[i] {
                        b'\n' => State::LineStart,
                        b'\r' => State::Cr,
                        _ => State::Mid,
                    };
                    i += 1;
                }
            }
        }
        out.extend_from_slice(&input[run..]);
        (input.len(), false)
    }
}

/// Dot-stuffs `msg` for transmission with SMTP DATA (line starts after
/// CRLF), adding a final CRLF if needed and the end-of-data line.
pub fn stuff(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + msg.len() / 64 + 5);
    let mut line_start = true;
    for (i, &b) in msg.iter().enumerate() {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n' && i > 0 && msg[i - 1] == b'\r';
    }
    if !msg.is_empty() && !msg.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Obviously-correct reference decoder working on the whole input.
    fn naive(input: &[u8]) -> Option<(Vec<u8>, usize)> {
        let mut out = Vec::new();
        let mut pos = 0;
        let mut at_start = true;
        loop {
            if at_start && input[pos..].starts_with(b".\r\n") {
                return Some((out, pos + 3));
            }
            if at_start && input.get(pos) == Some(&b'.') {
                if input.len() < pos + 3 {
                    return None; // undecidable yet
                }
                pos += 1;
            }
            let b = *input.get(pos)?;
            out.push(b);
            pos += 1;
            at_start = b == b'\n' && pos >= 2 && input[pos - 2] == b'\r';
        }
    }

    fn streamed(input: &[u8], split: &[usize]) -> Option<(Vec<u8>, usize)> {
        // Feed `input` in pieces ending at each split point, keeping unconsumed bytes.
        let mut u = Unstuffer::new();
        let mut out = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut total = 0;
        let mut last = 0;
        for &s in split.iter().chain(std::iter::once(&input.len())) {
            pending.extend_from_slice(&input[last..s]);
            last = s;
            let (n, done) = u.feed(&pending, &mut out);
            total += n;
            pending.drain(..n);
            if done {
                return Some((out, total));
            }
        }
        None
    }

    fn all_strings(max: usize) -> Vec<Vec<u8>> {
        let alpha = [b'a', b'.', b'\r', b'\n'];
        let mut all = vec![vec![]];
        let mut layer = vec![vec![]];
        for _ in 0..max {
            let mut next = Vec::new();
            for s in &layer {
                for &c in &alpha {
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
    fn unstuffer_matches_naive_at_every_split() {
        let mut checked = 0;
        for s in all_strings(7) {
            let want = naive(&s);
            // No split, and every single split point, and byte-at-a-time.
            assert_eq!(streamed(&s, &[]), want, "input {s:?}");
            for k in 0..=s.len() {
                assert_eq!(streamed(&s, &[k]), want, "input {s:?} split {k}");
            }
            let every: Vec<usize> = (1..s.len()).collect();
            assert_eq!(streamed(&s, &every), want, "input {s:?} bytewise");
            checked += 1;
        }
        assert_eq!(checked, (0..=7).map(|k| 4usize.pow(k)).sum::<usize>());
    }

    #[test]
    fn stuff_then_unstuff_round_trips() {
        for s in all_strings(7) {
            let enc = stuff(&s);
            let (dec, n) = streamed(&enc, &[]).expect("terminated");
            assert_eq!(n, enc.len());
            let mut want = s.clone();
            if !want.is_empty() && !want.ends_with(b"\r\n") {
                want.extend_from_slice(b"\r\n");
            }
            assert_eq!(dec, want, "input {s:?}");
        }
    }

    #[test]
    fn examples() {
        assert_eq!(naive(b".\r\n"), Some((vec![], 3)));
        assert_eq!(
            naive(b"a\r\n..b\r\n.\r\nX"),
            Some((b"a\r\n.b\r\n".to_vec(), 11))
        );
        assert_eq!(naive(b"a\n.\r\n"), None, "bare LF does not start a line");
        assert_eq!(
            streamed(b"a\r\n.\rb\r\n.\r\n", &[4]),
            Some((b"a\r\n\rb\r\n".to_vec(), 11))
        );
    }
}
