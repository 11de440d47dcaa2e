#![no_main]
//! POP3 command parser, dot-stuffer and TOP filter on arbitrary input: no
//! panics, progress on every step, and the stuffed output never contains a
//! premature terminator line.
use libfuzzer_sys::fuzz_target;
use mailproxyd::pop3::parser::{self, ParseError};
use mailproxyd::pop3::stuff::{Stuffer, TopFilter};

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    loop {
        match parser::parse(buf) {
            Ok((_, n)) => {
                assert!(n > 0 && n <= buf.len());
                buf = &buf[n..];
            }
            Err(ParseError::Syntax { consumed, .. }) => {
                assert!(consumed > 0 && consumed <= buf.len());
                buf = &buf[consumed..];
            }
            Err(ParseError::LineTooLong) => match buf.iter().position(|&b| b == b'\n') {
                Some(p) => buf = &buf[p + 1..],
                None => break,
            },
            Err(ParseError::Incomplete) => break,
        }
    }
    // Treat the input as a message: stuff it in two pieces and check framing.
    let split = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    let mut out = Vec::new();
    let mut st = Stuffer::new();
    st.push(&data[..split], &mut out);
    st.push(&data[split..], &mut out);
    st.finish(&mut out);
    assert!(out.ends_with(b".\r\n"));
    let body = &out[..out.len() - 3];
    assert!(body.is_empty() || body.ends_with(b"\r\n"));
    for line in body.split(|&b| b == b'\n') {
        assert_ne!(line.strip_suffix(b"\r").unwrap_or(line), b".");
    }
    let lines = data.get(1).copied().unwrap_or(0) as u32;
    let mut top = TopFilter::new(lines);
    let a = top.take(&data[..split]).len();
    let b = top.take(&data[split..]).len();
    assert!(a + b <= data.len());
});
