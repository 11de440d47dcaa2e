#![no_main]
//! SMTP command parser, DATA unstuffer and SASL decoding on arbitrary input:
//! no panics, progress on every step, and chunked input decodes exactly as
//! whole input.
use libfuzzer_sys::fuzz_target;
use mailproxyd::smtp::auth;
use mailproxyd::smtp::data::Unstuffer;
use mailproxyd::smtp::parser::{self, Command, ParseError};

#[derive(Debug, PartialEq)]
enum Ev {
    Cmd(Command),
    Bad,
    Long,
    Msg(Vec<u8>),
}

fn drive(input: &[u8], chunk: usize) -> Vec<Ev> {
    let mut buf = Vec::new();
    let mut evs = Vec::new();
    let mut data: Option<(Unstuffer, Vec<u8>)> = None;
    let mut skipping = false;
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            if skipping {
                let (n, found) = parser::skip_line(&buf);
                buf.drain(..n);
                if !found {
                    break;
                }
                skipping = false;
                continue;
            }
            if let Some((u, m)) = data.as_mut() {
                let (n, done) = u.feed(&buf, m);
                assert!(n <= buf.len());
                buf.drain(..n);
                if done {
                    evs.push(Ev::Msg(std::mem::take(m)));
                    data = None;
                    continue;
                }
                break;
            }
            match parser::parse(&buf) {
                Ok((c, n)) => {
                    assert!(n > 0 && n <= buf.len());
                    buf.drain(..n);
                    if c == Command::Data {
                        data = Some((Unstuffer::new(), Vec::new()));
                    }
                    evs.push(Ev::Cmd(c));
                }
                Err(ParseError::Syntax { consumed, .. }) => {
                    assert!(consumed > 0 && consumed <= buf.len());
                    buf.drain(..consumed);
                    evs.push(Ev::Bad);
                }
                Err(ParseError::LineTooLong) => {
                    evs.push(Ev::Long);
                    skipping = true;
                }
                Err(ParseError::Incomplete) => break,
            }
        }
    }
    evs
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let chunk = 1 + data[0] as usize % 64;
    let input = &data[1..];
    let whole = drive(input, input.len().max(1));
    // Long-line detection depends on how much is buffered, so only compare
    // streams without long lines.
    if !whole.contains(&Ev::Long) {
        assert_eq!(drive(input, chunk), whole);
    }
    if let Ok(s) = std::str::from_utf8(input) {
        let _ = auth::decode_plain(s);
        let _ = auth::decode_response(s);
        let _ = parser::normalize_address(s);
    }
});
