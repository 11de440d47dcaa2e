//! POP3 against what mail clients' account setup throws at it, in raw
//! bytes: a TLS ClientHello on the plain-text port and a stream of bad
//! commands each end the connection at once (Thunderbird's probe then moves
//! on instead of waiting for its timeout), and the INFO log records DELE and
//! how many messages a QUIT deleted, never their contents.

mod clients_support;

use std::io::Read;
use std::time::{Duration, Instant};

use clients_support::{Client, Harness};
use mailproxy_proto::Level;
use mailproxyd::smtp::SmtpSettings;

fn harness() -> Harness {
    Harness::start(&[("alice@p", Some("pw"), false)], SmtpSettings::default())
}

/// A TLS 1.2/1.3 ClientHello record as a client sends it first (its random
/// part includes line feeds, as real ones may).
fn client_hello() -> Vec<u8> {
    let mut body = vec![0x01, 0x00, 0x01, 0xfc, 0x03, 0x03];
    body.extend((0..=255u8).cycle().take(508));
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(body.len() as u16).to_be_bytes());
    record.extend(body);
    record
}

/// Reads until the server closes the connection; returns what it sent and
/// how long the close took. A server that keeps the connection open fails
/// the read (a generous timeout) instead.
fn until_closed(c: &mut Client) -> (String, Duration) {
    let start = Instant::now();
    c.w.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut rest = Vec::new();
    c.r.read_to_end(&mut rest)
        .expect("the server closes the connection");
    (String::from_utf8_lossy(&rest).into_owned(), start.elapsed())
}

#[test]
fn a_tls_client_hello_gets_one_line_and_the_connection_closed() {
    let h = harness();
    let mut c = Client::connect(h.pop3);
    assert!(c.line().starts_with("+OK"));
    c.send(&client_hello());
    let (rest, _) = until_closed(&mut c);
    assert_eq!(
        rest,
        "-ERR This port speaks plain POP3, not TLS; closing connection\r\n"
    );
    // The greeting had not even been read: the same.
    let mut c = Client::connect(h.pop3);
    c.send(&client_hello());
    let (rest, _) = until_closed(&mut c);
    assert!(rest.starts_with("+OK POP3 server ready\r\n-ERR This port speaks plain POP3, not TLS"));
    // A session that started in plain text is not second-guessed later:
    // a 0x16 byte after a command is just a bad command.
    let mut c = Client::connect(h.pop3);
    assert!(c.line().starts_with("+OK"));
    c.send(b"NOOP\r\n\x16\x03\x01\r\nCAPA\r\n");
    assert!(c.line().starts_with("-ERR"), "NOOP before login");
    assert!(c.line().starts_with("-ERR"), "the stray bytes");
    assert!(c.line().starts_with("+OK Capability"), "still open");
}

#[test]
fn ten_bad_commands_are_tolerated_and_the_eleventh_closes() {
    let h = harness();
    let mut c = Client::connect(h.pop3);
    assert!(c.line().starts_with("+OK"));
    for i in 0..10 {
        c.send(b"\xff\xfe not a command\r\n");
        let l = c.line();
        assert!(l.starts_with("-ERR"), "bad command {i}: {l}");
    }
    c.send(b"CAPA\r\n");
    assert!(
        c.line().starts_with("+OK"),
        "ten bad commands are tolerated"
    );
    c.multiline();
    c.send(b"\xff\xfe not a command\r\n");
    let (rest, _) = until_closed(&mut c);
    assert_eq!(
        rest,
        "-ERR command is not UTF-8\r\n-ERR Too many errors, closing connection\r\n"
    );
}

#[test]
fn dele_and_quit_are_in_the_info_log_without_contents() {
    mailproxyd::logging::init(&mailproxyd::config::LoggingConfig {
        disable: true,
        file: None,
        level: Level::Info,
    })
    .unwrap();
    let mut log = mailproxyd::logging::bus().subscribe(Level::Info);
    let h = harness();
    let s = h.store("alice@p");
    for body in [
        "Subject: secret one\r\n\r\nsecret body\r\n",
        "Subject: two\r\n\r\nx\r\n",
    ] {
        s.deliver(body.as_bytes(), 1).unwrap();
    }
    let mut c = Client::connect(h.pop3);
    c.line();
    c.send(b"USER alice@p\r\nPASS pw\r\n");
    c.line();
    assert!(c.line().starts_with("+OK"));
    c.send(b"DELE 1\r\nDELE 2\r\nRSET\r\nDELE 2\r\nQUIT\r\n");
    for _ in 0..4 {
        assert!(c.line().starts_with("+OK"));
    }
    assert_eq!(c.line(), "+OK Bye (1 message(s) deleted)\r\n");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut lines = Vec::new();
    rt.block_on(async {
        while !lines.iter().any(|l: &String| l.contains("POP3 QUIT")) {
            let line = tokio::time::timeout(Duration::from_secs(30), log.recv())
                .await
                .expect("the QUIT log line")
                .unwrap();
            if line.level == Level::Info {
                lines.push(line.message);
            }
        }
    });
    let pop3: Vec<&String> = lines.iter().filter(|l| l.contains("POP3")).collect();
    let deles: Vec<&&String> = pop3.iter().filter(|l| l.contains("POP3 DELE")).collect();
    assert_eq!(deles.len(), 3, "{pop3:?}");
    assert!(
        deles[0].contains("POP3 DELE 1") && deles[0].contains("account=alice@p"),
        "{pop3:?}"
    );
    let quit = pop3.iter().find(|l| l.contains("POP3 QUIT")).unwrap();
    assert!(
        quit.contains("1 message(s) deleted") && quit.contains("deleted=1"),
        "{quit}"
    );
    assert!(quit.contains("account=alice@p"), "{quit}");
    for l in &lines {
        assert!(!l.contains("secret"), "no contents in the log: {l}");
    }
}
