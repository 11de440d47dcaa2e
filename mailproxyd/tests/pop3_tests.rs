//! POP3: parser chunk-split tests and wire transcripts against the server.

mod clients_support;

use base64::Engine;
use clients_support::{Client, Harness};
use mailproxyd::pop3::parser::{self, Command, ParseError};
use mailproxyd::smtp::SmtpSettings;

fn drive(stream: &[u8], chunk: usize) -> Vec<Result<Command, ()>> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match parser::parse(&buf) {
                Ok((c, n)) => {
                    buf.drain(..n);
                    out.push(Ok(c));
                }
                Err(ParseError::Syntax { consumed, .. }) => {
                    buf.drain(..consumed);
                    out.push(Err(()));
                }
                Err(ParseError::Incomplete) => break,
                Err(ParseError::LineTooLong) => panic!("unexpected long line"),
            }
        }
    }
    assert!(buf.is_empty());
    out
}

#[test]
fn command_streams_parse_identically_at_every_chunk_size() {
    let stream =
        b"CAPA\r\nuser Alice@P\r\nPASS a b c\r\nAUTH PLAIN AGEAYg==\r\nSTAT\r\nLIST\r\nLIST 2\r\n\
UIDL\r\nTOP 1 0\r\nRETR 1\r\nDELE 1\r\nLAST\r\nRETR x\r\nRSET\nNOOP\r\nQUIT\r\n";
    let want = drive(stream, stream.len());
    assert_eq!(want.len(), 16);
    assert!(want.contains(&Err(())));
    assert!(want.contains(&Ok(Command::Unknown("LAST".into()))));
    for chunk in 1..=512 {
        assert_eq!(drive(stream, chunk), want, "chunk size {chunk}");
    }
}

fn harness() -> Harness {
    Harness::start(
        &[
            ("alice@p", None, false),
            ("carol@p", Some("pw"), false),
            ("dan@p", Some("dan-pw"), false),
        ],
        SmtpSettings::default(),
    )
}

fn login(h: &Harness, user: &str, pass: &str) -> Client {
    let mut c = Client::connect(h.pop3);
    let g = c.line();
    assert!(
        g.starts_with("+OK") && !g.contains('<'),
        "no APOP timestamp: {g}"
    );
    c.send(format!("USER {user}\r\nPASS {pass}\r\n").as_bytes());
    assert!(c.line().starts_with("+OK"));
    let r = c.line();
    assert!(r.starts_with("+OK"), "{r}");
    c
}

#[test]
fn capa_and_full_transaction() {
    let h = harness();
    let s = h.store("alice@p");
    let m1 = b"Subject: one\r\n\r\n.dot line\r\nbody\r\n".to_vec();
    let m2 = b"Subject: two\r\nX: y\r\n\r\nl1\r\nl2\r\nl3\r\n".to_vec();
    let m3 = b"no final newline".to_vec();
    for m in [&m1, &m2, &m3] {
        s.deliver(m, 1).unwrap();
    }
    let mut c = Client::connect(h.pop3);
    c.line();
    c.send(b"CAPA\r\n");
    assert!(c.line().starts_with("+OK"));
    let capa = String::from_utf8(c.multiline()).unwrap();
    for cap in [
        "USER",
        "UIDL",
        "TOP",
        "RESP-CODES",
        "AUTH-RESP-CODE",
        "PIPELINING",
        "SASL PLAIN",
    ] {
        assert!(capa.lines().any(|l| l == cap), "{cap} missing in {capa}");
    }
    c.send(b"STAT\r\n");
    assert!(c.line().starts_with("-ERR"), "STAT before login");
    c.send(b"user ALICE@P\r\npass anything\r\nSTAT\r\n");
    c.line();
    assert!(c.line().starts_with("+OK"));
    let total = m1.len() + m2.len() + m3.len();
    assert_eq!(c.line(), format!("+OK 3 {total}\r\n"));
    c.send(b"LIST\r\n");
    c.line();
    assert_eq!(
        c.multiline(),
        format!("1 {}\r\n2 {}\r\n3 {}\r\n", m1.len(), m2.len(), m3.len()).into_bytes()
    );
    c.send(b"RETR 1\r\n");
    assert_eq!(c.line(), format!("+OK {} octets\r\n", m1.len()));
    assert_eq!(c.multiline(), m1);
    c.send(b"RETR 3\r\n");
    c.line();
    assert_eq!(c.multiline(), b"no final newline\r\n");
    c.send(b"TOP 2 1\r\nTOP 2 0\r\n");
    c.line();
    assert_eq!(c.multiline(), b"Subject: two\r\nX: y\r\n\r\nl1\r\n");
    c.line();
    assert_eq!(c.multiline(), b"Subject: two\r\nX: y\r\n\r\n");
    c.send(b"LAST\r\nNOOP\r\nDELE 1\r\nDELE 1\r\nRETR 1\r\nLIST 1\r\nSTAT\r\nRSET\r\nSTAT\r\nDELE 2\r\nRETR 9\r\nLIST 0\r\n");
    assert!(c.line().starts_with("-ERR"), "LAST is unknown");
    assert!(c.line().starts_with("+OK"));
    assert!(c.line().starts_with("+OK"));
    assert!(c.line().starts_with("-ERR"));
    assert!(c.line().starts_with("-ERR"));
    assert!(c.line().starts_with("-ERR"));
    assert_eq!(c.line(), format!("+OK 2 {}\r\n", m2.len() + m3.len()));
    assert!(c.line().starts_with("+OK"));
    assert_eq!(c.line(), format!("+OK 3 {total}\r\n"));
    assert!(c.line().starts_with("+OK"));
    assert!(c.line().starts_with("-ERR"));
    assert!(c.line().starts_with("-ERR"));
    c.send(b"UIDL\r\n");
    c.line();
    let uidls = String::from_utf8(c.multiline()).unwrap();
    assert_eq!(uidls.lines().count(), 2, "deleted message hidden: {uidls}");
    c.send(b"QUIT\r\n");
    assert!(c.line().starts_with("+OK"));
    // Message 2 is gone; the others keep their UIDLs.
    let mut c = login(&h, "alice@p", "x");
    c.send(b"UIDL\r\n");
    c.line();
    let after = String::from_utf8(c.multiline()).unwrap();
    let before: Vec<&str> = uidls
        .lines()
        .map(|l| l.split(' ').nth(1).unwrap())
        .collect();
    let now: Vec<&str> = after
        .lines()
        .map(|l| l.split(' ').nth(1).unwrap())
        .collect();
    assert_eq!(now, vec![before[0], before[1]]);
    assert_eq!(s.inbox_len().unwrap(), 2);
}

#[test]
fn dropped_connection_deletes_nothing_and_in_use_is_reported() {
    let h = harness();
    let s = h.store("alice@p");
    s.deliver(b"a\r\n", 1).unwrap();
    let mut c = login(&h, "alice@p", "x");
    // A second session for the same maildrop is refused.
    let mut c2 = Client::connect(h.pop3);
    c2.line();
    c2.send(b"USER alice@p\r\nPASS x\r\n");
    c2.line();
    assert!(c2.line().starts_with("-ERR [IN-USE]"));
    // Mail arriving now appears at the next login only.
    s.deliver(b"b\r\n", 2).unwrap();
    c.send(b"STAT\r\nDELE 1\r\n");
    assert!(c.line().starts_with("+OK 1 "));
    c.line();
    drop(c); // no QUIT
    let mut c = clients_support::pop3_login_once_released(h.pop3, "alice@p", "x");
    c.send(b"STAT\r\nQUIT\r\n");
    assert!(
        c.line().starts_with("+OK 2 "),
        "nothing deleted, new mail visible"
    );
    c.line();
}

#[test]
fn passwords_and_sasl_plain() {
    let h = harness();
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let mut c = Client::connect(h.pop3);
    c.line();
    c.send(b"USER carol@p\r\nPASS wrong\r\n");
    c.line();
    assert!(c.line().starts_with("-ERR [AUTH]"));
    c.send(b"USER nobody@p\r\nPASS x\r\n");
    c.line();
    assert!(c.line().starts_with("-ERR [AUTH]"));
    // Another account's name, in any case, with carol's password (on a
    // connection of its own: failures are slowed down per connection).
    let mut other = Client::connect(h.pop3);
    other.line();
    other.send(b"USER DAN@P\r\nPASS pw\r\n");
    other.line();
    assert!(other.line().starts_with("-ERR [AUTH]"));
    other.send(format!("AUTH PLAIN {}\r\n", b64(b"\0dan@p\0pw")).as_bytes());
    assert!(other.line().starts_with("-ERR [AUTH]"));
    c.send(format!("AUTH PLAIN {}\r\n", b64(b"\0Carol@P\0pw")).as_bytes());
    assert!(c.line().starts_with("+OK"));
    c.send(b"QUIT\r\n");
    c.line();
    let mut c = Client::connect(h.pop3);
    c.line();
    c.send(b"AUTH PLAIN\r\n");
    assert_eq!(c.line(), "+ \r\n");
    c.send(format!("{}\r\n", b64(b"carol@p\0carol@p\0pw")).as_bytes());
    assert!(c.line().starts_with("+OK"));
}

#[test]
fn damaged_message_is_an_error_not_garbage() {
    use redb::{ReadableTable, TableDefinition};
    const CHUNK: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("blob_chunk");
    let d = tempfile::tempdir().unwrap();
    let ks = mailproxyd::store::KeySource::KeyFile;
    let e = {
        let s = mailproxyd::store::Store::open(d.path(), &ks).unwrap();
        s.deliver(b"Subject: x\r\n\r\nsecret\r\n", 1).unwrap()
    };
    {
        let db = redb::Database::open(d.path().join("store.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut c = tx.open_table(CHUNK).unwrap();
            let mut v = c
                .get((e.message.blob, 0))
                .unwrap()
                .unwrap()
                .value()
                .to_vec();
            v[30] ^= 1;
            c.insert((e.message.blob, 0), v.as_slice()).unwrap();
        }
        tx.commit().unwrap();
    }
    // Serve that store through a harness account.
    let h = harness();
    let s = mailproxyd::store::Store::open(d.path(), &ks).unwrap();
    let dir = clients_support::TestDirectory {
        accounts: [(
            "alice@p".to_string(),
            clients_support::TestAccount {
                info: mailproxyd::store::AccountInfo {
                    id: "alice@p".into(),
                    password_required: false,
                    insecure_key_discovery: false,
                },
                password: None,
                store: s,
            },
        )]
        .into(),
        known: Default::default(),
    };
    drop(h);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(mailproxyd::smtp::bind(
            "127.0.0.1:0".parse().unwrap(),
            false,
        ))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(mailproxyd::pop3::serve(
        listener,
        std::sync::Arc::new(dir),
        Default::default(),
        std::future::pending(),
    ));
    let mut c = Client::connect(addr);
    c.line();
    c.send(b"USER alice@p\r\nPASS x\r\nRETR 1\r\nNOOP\r\n");
    c.line();
    c.line();
    let r = c.line();
    assert!(r.starts_with("-ERR [SYS/PERM]"), "{r}");
    assert!(c.line().starts_with("+OK"), "session continues");
}
