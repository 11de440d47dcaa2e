//! SMTP: parser chunk-split tests and wire transcripts against the server.

mod clients_support;

use base64::Engine;
use clients_support::{assert_absent, Client, Harness};
use mailproxyd::smtp::data::Unstuffer;
use mailproxyd::smtp::parser::{self, Command, ParseError};
use mailproxyd::smtp::SmtpSettings;

#[derive(Debug, PartialEq)]
enum Event {
    Cmd(Command),
    Bad,
    Message(Vec<u8>),
}

/// Drives the sans-I/O parser and unstuffer like the session does, feeding
/// `stream` `chunk` bytes at a time.
fn drive(stream: &[u8], chunk: usize) -> Vec<Event> {
    let mut buf = Vec::new();
    let mut events = Vec::new();
    let mut data: Option<(Unstuffer, Vec<u8>)> = None;
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            if let Some((u, msg)) = data.as_mut() {
                let (n, done) = u.feed(&buf, msg);
                buf.drain(..n);
                if done {
                    events.push(Event::Message(std::mem::take(msg)));
                    data = None;
                    continue;
                }
                break;
            }
            match parser::parse(&buf) {
                Ok((cmd, n)) => {
                    buf.drain(..n);
                    if cmd == Command::Data {
                        data = Some((Unstuffer::new(), Vec::new()));
                    }
                    events.push(Event::Cmd(cmd));
                }
                Err(ParseError::Incomplete) => break,
                Err(ParseError::Syntax { consumed, .. }) => {
                    buf.drain(..consumed);
                    events.push(Event::Bad);
                }
                Err(ParseError::LineTooLong) => panic!("no long lines in this stream"),
            }
        }
    }
    assert!(buf.is_empty(), "leftover input {buf:?}");
    events
}

#[test]
fn command_streams_parse_identically_at_every_chunk_size() {
    let auth = base64::engine::general_purpose::STANDARD.encode(b"\0alice@p\0secret");
    let streams: Vec<Vec<u8>> = vec![
        format!(
            "EHLO client.example\r\nAUTH PLAIN {auth}\r\nmail FROM:<alice@p> size=160 BODY=8BITMIME\r\n\
             RCPT TO:<bob@p>\r\nRCPT TO:<carol@p>\r\nDATA\r\nSubject: t\r\n\r\n..leading dot\r\n\
             .\r\r\nbare\nlf\r\n\x00\u{e9}\r\n.\r\nRSET\r\nNOOP\r\nVRFY x\r\nBOGUS\r\nMAIL FROM:<bad\r\nQUIT\r\n"
        )
        .into_bytes(),
        b"HELO h\nMAIL FROM: <a@b>\nRCPT TO:<c@d>\nDATA\n.\r\n.\r\nQUIT\n".to_vec(),
    ];
    for s in &streams {
        let want = drive(s, s.len());
        assert!(want.iter().any(|e| matches!(e, Event::Message(_))));
        for chunk in 1..=512 {
            assert_eq!(drive(s, chunk), want, "chunk size {chunk}");
        }
    }
    let want = drive(&streams[0], streams[0].len());
    assert!(want.contains(&Event::Message(
        "Subject: t\r\n\r\n.leading dot\r\n\r\r\nbare\nlf\r\n\x00\u{e9}\r\n"
            .as_bytes()
            .to_vec()
    )));
    assert!(want.contains(&Event::Bad));
}

fn harness() -> Harness {
    Harness::start_with(
        &[
            ("alice@p", None, false),
            ("bob@p", None, false),
            ("carol@p", Some("pw"), false),
            ("dave@p", None, true),
            ("erin@p", Some("erin-pw"), false),
        ],
        SmtpSettings {
            max_message_size: 10_000,
            max_bad_commands: 5,
            ..SmtpSettings::default()
        },
        Default::default(),
        &["known@q"],
    )
}

#[test]
fn ehlo_pipelining_data_and_headers() {
    let h = harness();
    let mut c = Client::connect(h.smtp);
    assert!(c.line().starts_with("220 "));
    c.send(b"ehlo [127.0.0.1]\r\n");
    let caps = c.reply();
    for cap in [
        "SIZE 10000",
        "8BITMIME",
        "PIPELINING",
        "ENHANCEDSTATUSCODES",
        "AUTH PLAIN LOGIN",
    ] {
        assert!(
            caps.iter().any(|l| l[4..] == *cap),
            "{cap} missing from {caps:?}"
        );
    }
    // Everything up to DATA in one write.
    c.send(b"MAIL FROM:<Alice@P> BODY=8BITMIME\r\nRCPT TO:<bob@p>\r\nRCPT TO:<nokey@q>\r\nRCPT TO:<known@q>\r\nDATA\r\n");
    assert_eq!(c.code(), 250);
    assert_eq!(c.code(), 250);
    let r = c.reply();
    assert!(r[0].starts_with("550 5.1.1"), "{r:?}");
    assert_eq!(c.code(), 250);
    assert_eq!(c.code(), 354);
    c.send(b"Subject: s\r\n\r\n..x\r\n8bit \xe9\r\n.\r\nQUIT\r\n");
    let r = c.reply();
    assert!(r[0].starts_with("250 2.0.0"), "{r:?}");
    assert_eq!(c.code(), 221);
    let s = h.store("alice@p");
    let ids = s.queue_ids().unwrap();
    assert_eq!(ids.len(), 2, "one entry per accepted recipient");
    let mut rcpts = Vec::new();
    for id in ids {
        let e = s.queue_get(id).unwrap().unwrap();
        rcpts.push(e.recipient.clone());
        let m = s.read_message(e.message.blob).unwrap();
        assert!(m.starts_with(b"Received: from localhost"));
        assert!(m.ends_with(b"Subject: s\r\n\r\n.x\r\n8bit \xe9\r\n"));
        let text = String::from_utf8_lossy(&m);
        assert!(text.contains("\r\nMessage-ID: <"), "Message-ID added");
        assert!(text.contains("with ESMTP id"));
    }
    rcpts.sort();
    assert_eq!(rcpts, ["bob@p", "known@q"]);
}

#[test]
fn oversize_gets_552_and_the_session_goes_on() {
    let h = harness();
    let mut c = Client::connect(h.smtp);
    c.line();
    c.send(b"EHLO x\r\n");
    c.reply();
    c.send(b"MAIL FROM:<alice@p> SIZE=20000\r\n");
    assert!(c.reply()[0].starts_with("552 5.3.4"));
    c.send(b"MAIL FROM:<alice@p>\r\nRCPT TO:<bob@p>\r\nDATA\r\n");
    assert_eq!(c.code(), 250);
    assert_eq!(c.code(), 250);
    assert_eq!(c.code(), 354);
    let big = "x".repeat(998) + "\r\n";
    for _ in 0..30 {
        c.send(big.as_bytes());
    }
    c.send(b".\r\n");
    assert!(c.reply()[0].starts_with("552 5.3.4"));
    c.send(b"NOOP\r\n");
    assert_eq!(c.code(), 250);
    // A message just under the limit is accepted on the same connection.
    c.send(b"MAIL FROM:<alice@p>\r\nRCPT TO:<bob@p>\r\nDATA\r\n");
    assert_eq!(c.code(), 250);
    assert_eq!(c.code(), 250);
    assert_eq!(c.code(), 354);
    c.send(b"Message-ID: <m@x>\r\n\r\nsmall\r\n.\r\n");
    assert_eq!(c.code(), 250);
    assert_eq!(h.store("alice@p").queue_len().unwrap(), 1);
}

#[test]
fn auth_forms_and_password_requirement() {
    let h = harness();
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let mut c = Client::connect(h.smtp);
    c.line();
    c.send(b"EHLO x\r\nMAIL FROM:<carol@p>\r\n");
    c.reply();
    assert!(c.reply()[0].starts_with("530 5.7.0"));
    c.send(format!("AUTH PLAIN {}\r\n", b64(b"\0carol@p\0wrong")).as_bytes());
    assert!(c.reply()[0].starts_with("535 5.7.8"));
    // Another account's name, in any case, with carol's password (on a
    // connection of its own: failures are slowed down per connection).
    let mut other = Client::connect(h.smtp);
    other.line();
    for name in ["erin@p", "ERIN@p"] {
        other
            .send(format!("AUTH PLAIN {}\r\n", b64(format!("\0{name}\0pw").as_bytes())).as_bytes());
        assert!(other.reply()[0].starts_with("535 5.7.8"), "{name}");
    }
    other.send(b"MAIL FROM:<erin@p>\r\n");
    assert!(
        other.reply()[0].starts_with("530 5.7.0"),
        "still not logged in"
    );
    // Continuation form, authzid equal to authcid, case-insensitive id.
    c.send(b"AUTH PLAIN\r\n");
    assert_eq!(c.reply()[0], "334");
    c.send(format!("{}\r\n", b64(b"Carol@P\0Carol@P\0pw")).as_bytes());
    assert!(c.reply()[0].starts_with("235 2.7.0"));
    c.send(b"MAIL FROM:<alice@p>\r\n");
    assert!(
        c.reply()[0].starts_with("553 5.7.1"),
        "cannot send as another account"
    );
    c.send(b"MAIL FROM:<erin@p>\r\n");
    assert!(c.reply()[0].starts_with("553 5.7.1"));
    // The sender matches the login in any case.
    c.send(b"MAIL FROM:<CAROL@p>\r\n");
    assert_eq!(c.code(), 250);

    // AUTH LOGIN (sendemail style) and the initial-response form.
    let mut c = Client::connect(h.smtp);
    c.line();
    c.send(b"EHLO x\r\nAUTH LOGIN\r\n");
    c.reply();
    assert_eq!(c.reply()[0], format!("334 {}", b64(b"Username:")));
    c.send(format!("{}\r\n", b64(b"carol@p")).as_bytes());
    assert_eq!(c.reply()[0], format!("334 {}", b64(b"Password:")));
    c.send(format!("{}\r\n", b64(b"pw")).as_bytes());
    assert_eq!(c.code(), 235);
    let mut c = Client::connect(h.smtp);
    c.line();
    c.send(
        format!(
            "EHLO x\r\nAUTH PLAIN {}\r\nMAIL FROM:<carol@p>\r\n",
            b64(b"\0carol@p\0pw")
        )
        .as_bytes(),
    );
    c.reply();
    assert_eq!(c.code(), 235);
    assert_eq!(c.code(), 250);
    // Cancelled exchange.
    let mut c = Client::connect(h.smtp);
    c.line();
    c.send(b"AUTH PLAIN\r\n*\r\n");
    assert_eq!(c.reply()[0], "334");
    assert_eq!(c.code(), 501);
}

#[test]
fn senders_recipients_and_odd_commands() {
    let h = harness();
    let mut c = Client::connect(h.smtp);
    c.line();
    c.send(b"HELO x\r\nVRFY bob\r\nEXPN list\r\nMAIL FROM:<>\r\nMAIL FROM:<mallory@evil>\r\nRCPT TO:<bob@p>\r\nDATA\r\n");
    assert_eq!(c.code(), 250);
    assert_eq!(c.code(), 252);
    assert_eq!(c.code(), 502);
    assert_eq!(c.code(), 550);
    assert_eq!(c.code(), 550);
    assert_eq!(c.code(), 503);
    assert_eq!(c.code(), 503);
    // 150 recipients through an account with key discovery.
    c.send(b"MAIL FROM:<dave@p>\r\n");
    assert_eq!(c.code(), 250);
    let mut cmds = String::new();
    for i in 0..150 {
        cmds.push_str(&format!("RCPT TO:<user{i}@provider{i}>\r\n"));
    }
    cmds.push_str("RCPT TO:<bad-address>\r\nDATA\r\n");
    c.send(cmds.as_bytes());
    for _ in 0..150 {
        assert_eq!(c.code(), 250);
    }
    assert_eq!(c.code(), 553);
    assert_eq!(c.code(), 354);
    c.send(b"hi\r\n.\r\n");
    assert_eq!(c.code(), 250);
    let s = h.store("dave@p");
    assert_eq!(s.queue_len().unwrap(), 150);
    // The 150 entries share one stored message.
    let blobs: std::collections::HashSet<u64> = s
        .queue_ids()
        .unwrap()
        .into_iter()
        .map(|id| s.queue_get(id).unwrap().unwrap().message.blob)
        .collect();
    assert_eq!(blobs.len(), 1);
}

#[test]
fn long_lines_and_the_bad_command_limit() {
    let h = harness();
    let mut c = Client::connect(h.smtp);
    c.line();
    c.send(format!("NOOP {}\r\n", "y".repeat(600)).as_bytes());
    assert_eq!(c.code(), 501);
    c.send(&vec![b'z'; 20_000]);
    c.send(b"\r\nNOOP\r\n");
    assert!(c.reply()[0].starts_with("500 5.5.2"));
    assert_eq!(c.code(), 250);
    // Two errors so far; five are tolerated, the sixth closes the session.
    c.send(b"FOO\r\nBAR\r\nBAZ\r\nQUX\r\n");
    for _ in 0..4 {
        assert_eq!(c.code(), 500);
    }
    let last = c.reply();
    assert!(last.iter().any(|l| l.starts_with("421 4.7.0")), "{last:?}");
    assert!(c.is_closed());
}

#[test]
fn idle_clients_time_out_without_affecting_others() {
    let h = Harness::start(
        &[("alice@p", None, false), ("bob@p", None, false)],
        SmtpSettings {
            command_timeout: std::time::Duration::from_secs(1),
            ..SmtpSettings::default()
        },
    );
    let mut idle = Client::connect(h.smtp);
    idle.line();
    idle.send(b"MAIL FROM:<alice@p>\r\nRCPT TO:<bob@p>\r\nDATA\r\nhalf a mess");
    let mut busy = Client::connect(h.smtp);
    busy.line();
    busy.send(b"HELO x\r\nMAIL FROM:<alice@p>\r\nRCPT TO:<bob@p>\r\nDATA\r\n");
    for want in [250, 250, 250, 354] {
        assert_eq!(busy.code(), want);
    }
    busy.send(b"Subject: fine\r\n\r\nok\r\n.\r\n");
    assert_eq!(busy.code(), 250);
    // Plain command idleness closes with 421.
    let mut quiet = Client::connect(h.smtp);
    quiet.line();
    let r = quiet.reply();
    assert!(r[0].starts_with("421 4.4.2"), "{r:?}");
    assert!(quiet.is_closed());
    assert_eq!(h.store("alice@p").queue_len().unwrap(), 1);
}

#[test]
fn markers_submitted_over_smtp_never_reach_the_disk() {
    let h = harness();
    let mut c = Client::connect(h.smtp);
    c.line();
    c.send(b"EHLO x\r\nMAIL FROM:<alice@p>\r\nRCPT TO:<bob@p>\r\nDATA\r\n");
    for want in [250, 250, 250, 354] {
        assert_eq!(c.code(), want);
    }
    c.send(b"Subject: SUBJECTMARKER\r\n\r\nBODYMARKER\r\n.\r\nQUIT\r\n");
    assert_eq!(c.code(), 250);
    assert_eq!(c.code(), 221);
    // Through the receive path too (loopback into bob's inbox).
    assert_eq!(h.loop_queues(), 1);
    let bob = h.store("bob@p");
    assert_eq!(bob.inbox_len().unwrap(), 1);
    bob.deliver(b"Subject: RECEIVEDMARKER\r\n\r\nx", 1).unwrap();
    for m in ["SUBJECTMARKER", "BODYMARKER", "RECEIVEDMARKER", "bob@p\0"] {
        assert_absent(h.data_dir.path(), m.as_bytes());
    }
}
