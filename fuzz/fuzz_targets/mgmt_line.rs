#![no_main]
//! Management protocol: the request parser and the client-side reply decoders
//! must never panic, and whatever parses must format and parse back the same
//! (protocol 2 body lines and event stream lines included).
use libfuzzer_sys::fuzz_target;
use mailproxy_proto::reply::{parse_recipient_line, AccountInfo, Body, Status};
use mailproxy_proto::{
    parse, parse_frame, AccountStatus, InboxItem, ParseError, QueueItem, StreamLine, MAX_LINE,
};

fuzz_target!(|data: &[u8]| {
    // Framing: consume the input the way the server does.
    let mut rest = data;
    loop {
        let (used, result) = parse_frame(rest);
        assert!(used <= rest.len() && used <= MAX_LINE);
        match result {
            Err(ParseError::Incomplete) => {
                assert_eq!(used, 0);
                assert!(rest.len() < MAX_LINE);
                break;
            }
            Err(ParseError::LineTooLong) => {
                assert_eq!(used, 0);
                match rest.iter().position(|&b| b == b'\n') {
                    Some(lf) => rest = &rest[lf + 1..],
                    None => break,
                }
            }
            Ok(request) => {
                assert!(used > 0);
                let line = request.to_line().expect("a parsed request formats");
                assert_eq!(parse(line.as_bytes()), Ok(request));
                rest = &rest[used..];
            }
            Err(_) => {
                assert!(used > 0);
                rest = &rest[used..];
            }
        }
    }
    let _ = parse(data);
    // Client-side decoders on arbitrary text.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Status::parse_line(text);
        let _ = parse_recipient_line(text);
        let _ = AccountInfo::parse_line(text);
        // Protocol 2: whatever parses formats to a line that parses the same.
        if let Ok(s) = AccountStatus::parse_line(text) {
            assert_eq!(AccountStatus::parse_line(&s.to_line()), Ok(s));
        }
        if let Ok(q) = QueueItem::parse_line(text) {
            assert_eq!(QueueItem::parse_line(&q.to_line()), Ok(q));
        }
        if let Ok(i) = InboxItem::parse_line(text) {
            assert_eq!(InboxItem::parse_line(&i.to_line()), Ok(i));
        }
        if let Ok(l) = StreamLine::parse_line(text) {
            assert_eq!(StreamLine::parse_line(&l.to_line()), Ok(l));
        }
        let mut body = Body::default();
        for line in text.split_inclusive('\n') {
            if body.push_line(line).unwrap_or(true) {
                break;
            }
        }
    }
});
