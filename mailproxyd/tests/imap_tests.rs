//! IMAP: raw-byte sessions against the server on port 0 (one transcript fed
//! at many chunk sizes), IDLE, concurrent sessions, the Sent mailbox's
//! keywords, and what is kept across a store reopen.

mod clients_support;
mod store_support;

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use clients_support::{Client, Harness, ServerThread};
use mailproxyd::imap::{self, ImapSettings};
use mailproxyd::smtp::SmtpSettings;
use mailproxyd::store::{Directory, KeySource, Settled, Store, BOX_INBOX, BOX_SENT};

/// The harness's accounts plus an IMAP server over the same directory.
struct World {
    // Stopped before the harness (fields drop in order).
    _imap_server: ServerThread,
    h: Harness,
    imap: SocketAddr,
}

impl World {
    fn start() -> World {
        Self::with(ImapSettings::default())
    }

    fn with(settings: ImapSettings) -> World {
        let h = Harness::start_with(
            &[("alice@p", None, false), ("carol@p", Some("pw"), false)],
            SmtpSettings::default(),
            Default::default(),
            &["bob@q"],
        );
        let dir: Arc<dyn Directory> = h.dir.clone();
        let (server, imap) = ServerThread::spawn(move |stop_rx, addr_tx| async move {
            let l = mailproxyd::smtp::bind("127.0.0.1:0".parse().unwrap(), false)
                .await
                .unwrap();
            addr_tx.send(l.local_addr().unwrap()).unwrap();
            imap::serve(l, dir, settings, async move {
                let _ = stop_rx.await;
            })
            .await;
        });
        World {
            _imap_server: server,
            h,
            imap,
        }
    }

    fn store(&self) -> Store {
        self.h.store("alice@p")
    }
}

/// A raw IMAP client: lines, and literals announced by `{n}`.
struct Imap {
    r: std::io::BufReader<TcpStream>,
    w: TcpStream,
}

impl Imap {
    fn connect(addr: SocketAddr) -> Imap {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut c = Imap {
            r: std::io::BufReader::new(s.try_clone().unwrap()),
            w: s,
        };
        let g = c.line();
        assert!(g.starts_with("* OK [CAPABILITY IMAP4REV1 "), "{g}");
        c
    }

    fn login(addr: SocketAddr) -> Imap {
        let mut c = Imap::connect(addr);
        let r = c.cmd("l LOGIN alice@p x");
        assert!(r.last().unwrap().starts_with("l OK"), "{r:?}");
        c
    }

    fn send(&mut self, b: &[u8]) {
        self.w.write_all(b).unwrap();
    }

    /// One response line with any literals it announces inlined.
    fn line(&mut self) -> String {
        let mut out = Vec::new();
        loop {
            let mut l = Vec::new();
            self.r.read_until(b'\n', &mut l).unwrap();
            assert!(
                !l.is_empty(),
                "connection closed after {:?}",
                String::from_utf8_lossy(&out)
            );
            out.extend_from_slice(&l);
            let Some(n) = literal_len(&l) else { break };
            let mut lit = vec![0u8; n];
            self.r.read_exact(&mut lit).unwrap();
            out.extend_from_slice(&lit);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Sends `tag rest` and returns every line up to the tagged one.
    fn cmd(&mut self, c: &str) -> Vec<String> {
        let tag = c.split(' ').next().unwrap().to_owned();
        self.send(format!("{c}\r\n").as_bytes());
        self.until(&tag)
    }

    fn until(&mut self, tag: &str) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let l = self.line();
            let done = l.starts_with(&format!("{tag} "));
            out.push(l);
            if done {
                return out;
            }
        }
    }
}

fn literal_len(line: &[u8]) -> Option<usize> {
    let l = line.strip_suffix(b"}\r\n")?;
    let open = l.iter().rposition(|&b| b == b'{')?;
    std::str::from_utf8(&l[open + 1..]).ok()?.parse().ok()
}

const M1: &[u8] = b"From: Bob <bob@q>\r\nTo: alice@p\r\nSubject: first one\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n\r\nHello Alice\r\n";
const M2: &[u8] = b"From: Carol <carol@p>\r\nTo: alice@p\r\nSubject: multi\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\npart one\r\n--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b1--\r\n";

/// A whole session as the client sends it, pipelined.
fn script() -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(b"a1 CAPABILITY\r\na2 LOGIN {7}\r\nalice@p {1+}\r\nx\r\n");
    s.extend_from_slice(
        b"a3 SELECT INBOX\r\na4 FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE)\r\n",
    );
    s.extend_from_slice(b"a5 FETCH 2 (BODYSTRUCTURE ENVELOPE)\r\na6 FETCH 1 BODY.PEEK[]\r\n");
    s.extend_from_slice(b"a7 FETCH 2 (BODY.PEEK[1] BODY.PEEK[2.MIME] BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[TEXT]<2.5>)\r\n");
    s.extend_from_slice(
        b"a8 FETCH 1 FLAGS\r\na9 FETCH 1 BODY[]\r\nb1 SEARCH UNSEEN\r\nb2 SEARCH SEEN\r\n",
    );
    s.extend_from_slice(b"b3 UID SEARCH OR FROM carol SUBJECT first\r\nb4 SEARCH NOT BODY \"part one\" LARGER 10\r\n");
    s.extend_from_slice(b"b5 SEARCH HEADER Content-Type multipart SINCE 1-Jan-2020 BEFORE 1-Jan-2100 SMALLER 100000\r\n");
    s.extend_from_slice(b"b6 CREATE Archive/2026\r\nb7 LIST \"\" *\r\nb8 COPY 1 Archive/2026\r\nb9 STATUS Archive/2026 (MESSAGES UIDNEXT UIDVALIDITY UNSEEN)\r\n");
    s.extend_from_slice(b"c1 APPEND Archive/2026 (\\Flagged) \"07-Dec-2026 10:00:00 +0000\" {14}\r\nSubject: a\r\n\r\n\r\nc2 NOOP\r\n");
    s.extend_from_slice(
        b"c3 STORE 1 +FLAGS (\\Deleted $Label)\r\nc4 UID STORE 1:* +FLAGS.SILENT (\\Seen)\r\n",
    );
    s.extend_from_slice(b"c4a FETCH 2 (RFC822.HEADER RFC822.TEXT BODY.PEEK[]<6.5> RFC822)\r\nc5 FETCH 1:2 FLAGS\r\n");
    s.extend_from_slice(b"c6 STORE 2 +FLAGS.SILENT (\\Deleted)\r\nc7 UID EXPUNGE 1:*\r\nc8 LSUB \"\" *\r\nc9 NAMESPACE\r\n");
    s.extend_from_slice(b"d1 ID NIL\r\nd2 ENABLE UTF8=ACCEPT\r\nd3 SELECT Archive/2026\r\nd4 UID FETCH 1:* (FLAGS)\r\nd5 MOVE 1 Trash\r\n");
    s.extend_from_slice(b"d6 RENAME Archive/2026 Old\r\nd7 LIST \"\" \"%\"\r\nd8 BOGUS\r\nd9 CLOSE\r\ne1 LOGOUT\r\n");
    s
}

/// Runs [`script`] sent in chunks of `chunk` bytes on a fresh world;
/// returns everything the server sent.
fn transcript(chunk: usize) -> String {
    let w = World::start();
    let s = w.store();
    s.deliver(M1, 1_795_000_000).unwrap();
    s.deliver(M2, 1_795_000_100).unwrap();
    let mut sock = TcpStream::connect(w.imap).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    sock.set_nodelay(true).unwrap();
    let mut reader = sock.try_clone().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        reader.read_to_end(&mut v).unwrap();
        v
    });
    for piece in script().chunks(chunk) {
        sock.write_all(piece).unwrap();
    }
    String::from_utf8(out.join().unwrap()).unwrap()
}

fn tagged<'a>(t: &'a str, tag: &str) -> &'a str {
    t.lines()
        .find(|l| l.starts_with(&format!("{tag} ")))
        .unwrap_or_else(|| panic!("no reply to {tag} in {t}"))
}

fn between<'a>(t: &'a str, from: &str, to: &str) -> &'a str {
    let a = t.find(&format!("\r\n{from} ")).expect(from);
    let b = t.find(&format!("\r\n{to} ")).expect(to);
    &t[a..b + 2]
}

#[test]
fn one_session_gives_the_same_answers_at_every_chunk_size() {
    let want = transcript(usize::MAX);
    let t = want.as_str();
    // What the answers say.
    let caps = t.lines().next().unwrap();
    for c in [
        "IDLE",
        "UIDPLUS",
        "MOVE",
        "NAMESPACE",
        "ID",
        "ENABLE",
        "LITERAL+",
        "SPECIAL-USE",
        "CHILDREN",
        "AUTH=PLAIN",
    ] {
        assert!(
            caps.split([' ', ']']).any(|w| w == c),
            "{c} missing: {caps}"
        );
    }
    assert!(t.contains("\r\n+ "), "sync literal gets a continuation");
    assert!(tagged(t, "a2").starts_with("a2 OK"), "LOGIN with literals");
    let sel = between(t, "a2", "a3");
    assert!(
        sel.contains("* 2 EXISTS") && sel.contains("[UIDVALIDITY 1]") && sel.contains("[UNSEEN 1]"),
        "{sel}"
    );
    assert!(tagged(t, "a3").contains("[READ-WRITE]"));
    let f = between(t, "a3", "a4");
    assert!(f.contains(&format!("RFC822.SIZE {}", M1.len())), "{f}");
    assert!(f.contains("INTERNALDATE \""), "{f}");
    let bs = between(t, "a4", "a5");
    assert!(
        bs.contains("(\"TEXT\" \"plain\"") || bs.contains("(\"text\" \"plain\""),
        "{bs}"
    );
    assert!(bs.contains("\"mixed\""), "{bs}");
    assert!(
        bs.contains("ENVELOPE (NIL \"multi\" ((\"Carol\" NIL \"carol\" \"p\"))"),
        "{bs}"
    );
    assert!(
        bs.contains("(\"application\" \"octet-stream\" NIL NIL NIL \"BASE64\" 4)"),
        "{bs}"
    );
    let body = between(t, "a5", "a6");
    assert!(
        body.contains(std::str::from_utf8(M1).unwrap()),
        "BODY.PEEK[] is the message: {body}"
    );
    assert!(!body.contains("\\Seen"), "PEEK sets nothing");
    let parts = between(t, "a6", "a7");
    assert!(parts.contains("BODY[1] {8}\r\npart one"), "{parts}");
    assert!(parts.contains("BODY[2.MIME] {"), "{parts}");
    assert!(parts.contains("Subject: multi\r\n\r\n"), "{parts}");
    assert!(
        parts.contains("BODY[TEXT]<2> {5}\r\nb1\r\nC"),
        "partial: {parts}"
    );
    assert!(between(t, "a7", "a8").contains("FLAGS ()"));
    assert!(
        between(t, "a8", "a9").contains("\\Seen"),
        "BODY[] sets \\Seen"
    );
    assert!(between(t, "a9", "b1").contains("* SEARCH 2\r"));
    assert!(between(t, "b1", "b2").contains("* SEARCH 1\r"));
    let uids = between(t, "b2", "b3");
    assert!(
        uids.contains("* SEARCH ") && uids.split(' ').count() >= 4,
        "two UIDs: {uids}"
    );
    assert!(between(t, "b3", "b4").contains("* SEARCH 1\r"), "NOT BODY");
    assert!(
        between(t, "b4", "b5").contains("* SEARCH 2\r"),
        "HEADER/SINCE/BEFORE"
    );
    let list = between(t, "b6", "b7");
    for l in [
        "\"/\" INBOX\r",
        "(\\HasNoChildren \\Sent) \"/\" Sent\r",
        "\\Trash",
        "\"/\" Archive/2026\r",
    ] {
        assert!(list.contains(l), "{l} in {list}");
    }
    assert!(tagged(t, "b8").contains("[COPYUID "), "{}", tagged(t, "b8"));
    assert!(
        between(t, "b8", "b9").contains("(MESSAGES 1 UIDNEXT "),
        "{t}"
    );
    assert!(tagged(t, "c1").contains("[APPENDUID "));
    assert!(between(t, "c2", "c3").contains("FLAGS (\\Seen \\Deleted $Label)"));
    assert!(!between(t, "c3", "c4").contains("FETCH"), "SILENT");
    // Whole-message items, and a partial of the whole (served from the
    // cache of decrypted bodies by now).
    let head = M2.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let items = between(t, "c4", "c4a");
    let (h, x) = (
        std::str::from_utf8(&M2[..head]).unwrap(),
        std::str::from_utf8(&M2[head..]).unwrap(),
    );
    let whole = std::str::from_utf8(M2).unwrap();
    for want in [
        format!("RFC822.HEADER {{{}}}\r\n{h}", h.len()),
        format!("RFC822.TEXT {{{}}}\r\n{x}", x.len()),
        "BODY[]<6> {5}\r\nCarol".to_owned(),
        format!("RFC822 {{{}}}\r\n{whole}", whole.len()),
    ] {
        assert!(items.contains(&want), "{want:?} in {items}");
    }
    let expunged = between(t, "c6", "c7");
    assert!(
        expunged.contains("* 1 EXPUNGE\r\n* 1 EXPUNGE"),
        "both gone: {expunged}"
    );
    assert!(between(t, "c7", "c8").contains("\"/\" INBOX\r"));
    assert!(
        !between(t, "c7", "c8").contains("Archive"),
        "not subscribed"
    );
    assert!(between(t, "c8", "c9").contains("* NAMESPACE ((\"\" \"/\")) NIL NIL"));
    assert!(between(t, "c9", "d1").contains("* ID (\"name\" \"mailproxyd\")"));
    let sel2 = between(t, "d2", "d3");
    assert!(sel2.contains("* 2 EXISTS"), "copy and append: {sel2}");
    let copied = between(t, "d3", "d4");
    assert!(
        copied.contains("FLAGS (\\Seen))") && copied.contains("FLAGS (\\Flagged))"),
        "{copied}"
    );
    let mv = between(t, "d4", "d5");
    assert!(
        mv.contains("* OK [COPYUID ") && mv.contains("* 1 EXPUNGE"),
        "{mv}"
    );
    assert!(tagged(t, "d6").starts_with("d6 OK"), "RENAME");
    let top = between(t, "d6", "d7");
    assert!(
        top.contains("(\\HasNoChildren) \"/\" Old\r") && !top.contains("Archive"),
        "{top}"
    );
    assert!(tagged(t, "d8").starts_with("d8 BAD"));
    assert!(tagged(t, "e1").starts_with("e1 OK"));
    // The same bytes however the input is split.
    for chunk in (1..=48).chain([64, 100, 333, 1000]) {
        assert_eq!(transcript(chunk), want, "chunk size {chunk}");
    }
}

#[test]
fn idle_reports_a_delivery_and_a_deletion_by_another_session() {
    let w = World::start();
    let s = w.store();
    for i in 0..3 {
        s.deliver(format!("Subject: {i}\r\n\r\nbody {i}\r\n").as_bytes(), 5)
            .unwrap();
    }
    let mut idler = Imap::login(w.imap);
    let r = idler.cmd("s SELECT INBOX");
    assert!(r.iter().any(|l| l == "* 3 EXISTS\r\n"), "{r:?}");
    idler.send(b"i IDLE\r\n");
    assert!(idler.line().starts_with("+ "));
    // The engine's deliver path wakes the idler.
    s.deliver(b"Subject: new\r\n\r\nnew\r\n", 6).unwrap();
    assert_eq!(idler.line(), "* 4 EXISTS\r\n");
    // Another session expunges message 2 while the first idles.
    let mut other = Imap::login(w.imap);
    other.cmd("s SELECT INBOX");
    let r = other.cmd("x STORE 2 +FLAGS.SILENT (\\Deleted)");
    assert!(r.last().unwrap().starts_with("x OK"));
    let r = other.cmd("y EXPUNGE");
    assert_eq!(r[0], "* 2 EXPUNGE\r\n");
    let l = idler.line();
    let l = if l.contains("FETCH") { idler.line() } else { l };
    assert_eq!(l, "* 2 EXPUNGE\r\n");
    // POP3 deletes what was message 1: gone for IMAP too.
    let mut pop = Client::connect(w.h.pop3);
    pop.line();
    pop.send(b"USER alice@p\r\nPASS x\r\nDELE 1\r\nQUIT\r\n");
    for _ in 0..4 {
        assert!(pop.line().starts_with("+OK"));
    }
    assert_eq!(idler.line(), "* 1 EXPUNGE\r\n");
    idler.send(b"DONE\r\n");
    assert!(idler.line().starts_with("i OK"));
    let r = idler.cmd("f FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
    let subjects: Vec<&String> = r.iter().filter(|l| l.contains("Subject:")).collect();
    assert_eq!(subjects.len(), 2, "{r:?}");
    assert!(
        subjects[0].contains("Subject: 2") && subjects[1].contains("Subject: new"),
        "{r:?}"
    );
    assert_eq!(s.mailbox_messages(BOX_INBOX).unwrap().len(), 2);
    assert_eq!(s.inbox_list().unwrap().len(), 2, "POP3 sees the same");
}

#[test]
fn sent_keeps_a_copy_whose_keywords_follow_delivery() {
    let w = World::start();
    let mut smtp = Client::connect(w.h.smtp);
    assert_eq!(smtp.code(), 220);
    smtp.send(b"EHLO x\r\n");
    smtp.reply();
    let msg = "Subject: to bob\r\n\r\nhello bob\r\n";
    for (line, code) in [
        ("MAIL FROM:<alice@p>\r\n".to_owned(), 250),
        ("RCPT TO:<bob@q>\r\n".to_owned(), 250),
        ("RCPT TO:<carol@p>\r\n".to_owned(), 250),
        ("DATA\r\n".to_owned(), 354),
        (format!("{msg}.\r\n"), 250),
    ] {
        smtp.send(line.as_bytes());
        assert_eq!(smtp.code(), code, "{line}");
    }
    let s = w.store();
    let sent = s.mailbox_messages(BOX_SENT).unwrap();
    assert_eq!(sent.len(), 1);
    let queue = s.queue_ids().unwrap();
    assert_eq!(queue.len(), 2);
    let mut c = Imap::login(w.imap);
    c.cmd("s SELECT Sent");
    let r = c.cmd("f FETCH 1 (FLAGS BODY.PEEK[])");
    assert!(r[0].contains("$Queued"), "{r:?}");
    assert!(
        r[0].ends_with(&format!("{msg})\r\n")),
        "the submitted bytes: {r:?}"
    );
    c.send(b"i IDLE\r\n");
    assert!(c.line().starts_with("+ "));
    // One recipient acknowledged: still queued for the other.
    assert!(s.sent_settle(queue[0], Settled::Delivered).unwrap());
    assert!(
        !s.sent_settle(queue[0], Settled::Delivered).unwrap(),
        "once"
    );
    let mut q2 = s.queue_get(queue[1]).unwrap().unwrap();
    q2.engine = vec![1];
    s.queue_update(&q2).unwrap();
    assert!(s.sent_settle(queue[1], Settled::Delivered).unwrap());
    let l = c.line();
    assert!(l.contains("FLAGS (\\Seen $Delivered)"), "{l}");
    c.send(b"DONE\r\n");
    assert!(c.line().starts_with("i OK"));
    // A second submission bounces for one recipient.
    smtp.send(b"MAIL FROM:<alice@p>\r\nRCPT TO:<bob@q>\r\nDATA\r\n");
    assert_eq!(smtp.code(), 250);
    assert_eq!(smtp.code(), 250);
    assert_eq!(smtp.code(), 354);
    smtp.send(b"Subject: b\r\n\r\nx\r\n.\r\n");
    assert_eq!(smtp.code(), 250);
    let id = *s.queue_ids().unwrap().last().unwrap();
    s.sent_settle(id, Settled::Bounced).unwrap();
    let r = c.cmd("n NOOP");
    assert!(r.iter().any(|l| l.contains("* 2 EXISTS")), "{r:?}");
    let r = c.cmd("f FETCH 2 FLAGS");
    assert!(
        r[0].contains("$Bounced") && !r[0].contains("$Queued") && !r[0].contains("$Delivered"),
        "{r:?}"
    );
    // A third one whose queue entry vanished while we were not looking:
    // reconciled at start, without claiming an outcome.
    smtp.send(b"MAIL FROM:<alice@p>\r\nRCPT TO:<bob@q>\r\nDATA\r\n");
    for code in [250, 250, 354] {
        assert_eq!(smtp.code(), code);
    }
    smtp.send(b"Subject: c\r\n\r\ny\r\n.\r\n");
    assert_eq!(smtp.code(), 250);
    let id = *s.queue_ids().unwrap().last().unwrap();
    s.queue_remove(id).unwrap();
    assert!(s.sent_reconcile().unwrap());
    let third = s.mailbox_messages(BOX_SENT).unwrap().pop().unwrap();
    assert_eq!(third.flags, vec!["\\Seen".to_owned()]);
    // The Sent copy shares the blob: reading it still works after the
    // queue entries are gone.
    assert_eq!(
        s.read_message(third.message.blob).unwrap().len() as u64,
        third.message.len
    );
}

#[test]
fn tls_hello_and_repeated_bad_commands_close_the_connection() {
    let w = World::start();
    let mut c = Imap::connect(w.imap);
    c.send(&[0x16, 0x03, 0x01, 0x00, 0x10]);
    let l = c.line();
    assert!(l.starts_with("* BYE") && l.contains("TLS"), "{l}");
    let mut rest = Vec::new();
    assert_eq!(c.r.read_to_end(&mut rest).unwrap(), 0, "closed");
    let mut c = Imap::connect(w.imap);
    for i in 0..9 {
        let r = c.cmd(&format!("t{i} FROB"));
        assert!(r[0].starts_with(&format!("t{i} BAD")), "{r:?}");
    }
    c.send(b"t9 FROB\r\n");
    assert!(c.line().starts_with("t9 BAD"));
    assert!(c.line().starts_with("* BYE"));
    let mut rest = Vec::new();
    assert_eq!(c.r.read_to_end(&mut rest).unwrap(), 0, "closed");
}

#[test]
fn oversized_literals_are_refused_and_logins_checked() {
    let w = World::with(ImapSettings {
        max_command: 1000,
        ..ImapSettings::default()
    });
    let mut c = Imap::connect(w.imap);
    let r = c.cmd("a SELECT INBOX");
    assert!(r[0].starts_with("a NO"), "before login: {r:?}");
    let r = c.cmd("b LOGIN carol@p wrong");
    assert!(r[0].starts_with("b NO [AUTHENTICATIONFAILED]"), "{r:?}");
    // AUTHENTICATE PLAIN with a continuation.
    c.send(b"c AUTHENTICATE PLAIN\r\n");
    assert!(c.line().starts_with("+"));
    c.send(b"AGNhcm9sQHAAcHc=\r\n");
    assert!(c.line().starts_with("c OK"), "carol@p / pw");
    let r = c.cmd("d APPEND INBOX {5000}");
    assert!(r[0].starts_with("d BAD"), "{r:?}");
    let r = c.cmd("e APPEND INBOX {19}\r\nSubject: x\r\n\r\nshort");
    assert!(r.iter().any(|l| l.starts_with("+ ")), "accepted: {r:?}");
    assert!(r.last().unwrap().starts_with("e OK [APPENDUID 1 "), "{r:?}");
    assert_eq!(
        w.h.store("carol@p").inbox_list().unwrap().len(),
        1,
        "POP3 sees it"
    );
    // A non-synchronising literal past the limit is read and dropped.
    let mut big = b"f APPEND INBOX {3000+}\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', 3000));
    big.extend_from_slice(b"\r\n");
    c.send(&big);
    assert!(c.line().starts_with("f BAD"));
    let r = c.cmd("g NOOP");
    assert!(r.last().unwrap().starts_with("g OK"), "still in step");
}

#[test]
fn flags_uids_and_mailboxes_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (uids, next, validity) = {
        let s = Store::open(dir.path(), &KeySource::KeyFile).unwrap();
        s.deliver(b"Subject: a\r\n\r\na\r\n", 1).unwrap();
        s.deliver(b"Subject: b\r\n\r\nb\r\n", 2).unwrap();
        let msgs = s.mailbox_messages(BOX_INBOX).unwrap();
        s.mailbox_set_flags(
            BOX_INBOX,
            vec![(msgs[1].uid, vec!["\\Flagged".into(), "$Work".into()])],
        )
        .unwrap();
        let b = s.mailbox_create("Projects").unwrap().unwrap();
        assert!(s.mailbox_create("Projects").unwrap().is_none(), "exists");
        s.mailbox_copy(BOX_INBOX, &[msgs[0].uid], b.id, false)
            .unwrap();
        // Expunge the newest: its UID must not come back.
        s.mailbox_expunge(BOX_INBOX, &[msgs[1].uid]).unwrap();
        let uids: Vec<u64> = s
            .mailbox_messages(BOX_INBOX)
            .unwrap()
            .iter()
            .map(|m| m.uid)
            .collect();
        (uids, s.uid_next(), b.uidvalidity)
    };
    let s = Store::open(dir.path(), &KeySource::KeyFile).unwrap();
    let msgs = s.mailbox_messages(BOX_INBOX).unwrap();
    assert_eq!(msgs.iter().map(|m| m.uid).collect::<Vec<_>>(), uids);
    assert!(s.uid_next() >= next, "UIDs never go back");
    let b = s.mailbox_find("Projects").unwrap().unwrap();
    assert_eq!(b.uidvalidity, validity);
    let copied = s.mailbox_messages(b.id).unwrap();
    assert_eq!(copied.len(), 1);
    assert_eq!(
        s.read_message(copied[0].message.blob).unwrap(),
        b"Subject: a\r\n\r\na\r\n"
    );
    let e = s.deliver(b"Subject: c\r\n\r\nc\r\n", 3).unwrap();
    assert!(
        e.id >= next,
        "new UID {} above every earlier one ({next})",
        e.id
    );
    // Flags are sealed: the plaintext keyword is nowhere on disk.
    s.mailbox_set_flags(BOX_INBOX, vec![(e.id, vec!["$VerySecretKeyword".into()])])
        .unwrap();
    drop(s);
    clients_support::assert_absent(dir.path(), b"$VerySecretKeyword");
    clients_support::assert_absent(dir.path(), b"Projects");
}

/// The `* SEARCH` line of a reply (trimmed), after checking it completed.
fn search(c: &mut Imap, cmd: &str) -> String {
    let r = c.cmd(cmd);
    let tag = cmd.split(' ').next().unwrap();
    assert!(
        r.last().unwrap().starts_with(&format!("{tag} OK")),
        "{cmd}: {r:?}"
    );
    let hits: Vec<&String> = r.iter().filter(|l| l.starts_with("* SEARCH")).collect();
    assert_eq!(hits.len(), 1, "{cmd}: {r:?}");
    hits[0].trim_end().to_owned()
}

#[test]
fn search_keys_select_exactly_the_matching_messages() {
    let w = World::start();
    let s = w.store();
    // Three messages arrived on three days, of growing size, two tagged.
    let days = [1_768_046_400, 1_781_524_800, 1_796_126_400]; // 10-Jan, 15-Jun, 1-Dec-2026
    let bodies = ["short\r\n", &"x".repeat(500), &"y".repeat(5_000)];
    let tags = ["X-Tag: alpha\r\n", "X-Tag: beta\r\n", ""];
    for (i, ((day, body), tag)) in days.iter().zip(bodies).zip(tags).enumerate() {
        let m = format!("From: f{i}@q\r\nSubject: number {i}\r\n{tag}\r\n{body}\r\n");
        s.deliver(m.as_bytes(), *day).unwrap();
    }
    let mut c = Imap::login(w.imap);
    c.cmd("s SELECT INBOX");
    for (cmd, want) in [
        ("a SEARCH ALL", "* SEARCH 1 2 3"),
        ("b SEARCH SINCE 1-Jun-2026", "* SEARCH 2 3"),
        ("c SEARCH BEFORE 15-Jun-2026", "* SEARCH 1"),
        (
            "d SEARCH SINCE 15-Jun-2026 BEFORE 16-Jun-2026",
            "* SEARCH 2",
        ),
        ("e SEARCH LARGER 400", "* SEARCH 2 3"),
        ("f SEARCH SMALLER 400", "* SEARCH 1"),
        ("g SEARCH LARGER 400 SMALLER 4000", "* SEARCH 2"),
        ("h SEARCH HEADER X-Tag alpha", "* SEARCH 1"),
        ("i SEARCH HEADER X-Tag \"\"", "* SEARCH 1 2"),
        ("j SEARCH NOT HEADER X-Tag \"\"", "* SEARCH 3"),
        (
            "k SEARCH OR SUBJECT \"number 0\" LARGER 4000",
            "* SEARCH 1 3",
        ),
        ("l SEARCH NOT OR FROM f0 FROM f2", "* SEARCH 2"),
        (
            "m SEARCH OR (HEADER X-Tag beta SINCE 1-Jun-2026) (SINCE 1-Dec-2026)",
            "* SEARCH 2 3",
        ),
        ("n SEARCH UID 2:*", "* SEARCH 2 3"),
        ("o SEARCH HEADER X-Tag gamma", "* SEARCH"),
    ] {
        assert_eq!(search(&mut c, cmd), want, "{cmd}");
    }
    // After an expunge the UID key still names UIDs, answered as sequence
    // numbers by SEARCH and as UIDs by UID SEARCH.
    c.cmd("x STORE 1 +FLAGS.SILENT (\\Deleted)");
    let r = c.cmd("y EXPUNGE");
    assert_eq!(r[0], "* 1 EXPUNGE\r\n");
    assert_eq!(search(&mut c, "p SEARCH UID 3"), "* SEARCH 2");
    assert_eq!(search(&mut c, "q UID SEARCH UID 3"), "* SEARCH 3");
    assert_eq!(search(&mut c, "r UID SEARCH UID 1"), "* SEARCH");
    assert_eq!(search(&mut c, "t UID SEARCH NOT UID 2"), "* SEARCH 3");
}

#[test]
fn authenticate_plain_with_and_without_initial_response() {
    let w = World::start();
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    let mut c = Imap::connect(w.imap);
    // A wrong password, then a cancelled exchange, then garbage.
    c.send(b"a AUTHENTICATE PLAIN\r\n");
    assert!(c.line().starts_with("+"));
    c.send(format!("{}\r\n", b64("\0carol@p\0wrong")).as_bytes());
    let l = c.line();
    assert!(l.starts_with("a NO [AUTHENTICATIONFAILED]"), "{l}");
    c.send(b"b AUTHENTICATE PLAIN\r\n");
    assert!(c.line().starts_with("+"));
    c.send(b"*\r\n");
    let l = c.line();
    assert!(l.starts_with("b BAD"), "cancelled: {l}");
    c.send(b"c AUTHENTICATE PLAIN\r\n");
    assert!(c.line().starts_with("+"));
    c.send(format!("{}\r\n", b64("no separators")).as_bytes());
    let l = c.line();
    assert!(l.starts_with("c BAD"), "malformed: {l}");
    // Acting as another identity is refused.
    let r = c.cmd(&format!(
        "c2 AUTHENTICATE PLAIN {}",
        b64("alice@p\0carol@p\0pw")
    ));
    assert!(r.last().unwrap().starts_with("c2 BAD"), "authzid: {r:?}");
    let r = c.cmd("d AUTHENTICATE CRAM-MD5");
    assert!(r.last().unwrap().starts_with("d NO"), "{r:?}");
    let r = c.cmd("e SELECT INBOX");
    assert!(
        r.last().unwrap().starts_with("e NO"),
        "still logged out: {r:?}"
    );
    // The initial response form (RFC 4959), with an authorisation id equal
    // to the user.
    let r = c.cmd(&format!(
        "f AUTHENTICATE PLAIN {}",
        b64("carol@p\0carol@p\0pw")
    ));
    assert!(r.last().unwrap().starts_with("f OK"), "{r:?}");
    let r = c.cmd("g SELECT INBOX");
    assert!(r.last().unwrap().starts_with("g OK"), "{r:?}");
    let r = c.cmd("h AUTHENTICATE PLAIN");
    assert!(r.last().unwrap().starts_with("h BAD"), "already in: {r:?}");
}

/// What an IDLE refresh relies on: a message's fingerprint changes when its
/// flags are rewritten and only then, and `mailbox_messages_some` reads just
/// the messages asked for (those still there).
#[test]
fn fingerprints_change_only_for_rewritten_messages() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), &KeySource::KeyFile).unwrap();
    for (i, body) in ["a", "b", "c"].iter().enumerate() {
        s.deliver(
            format!("Subject: {body}\r\n\r\n{body}\r\n").as_bytes(),
            i as u64,
        )
        .unwrap();
    }
    let projects = s.mailbox_create("Projects").unwrap().unwrap();
    let p1 = s
        .mailbox_append(projects.id, b"Subject: p\r\n\r\np\r\n", vec![], 5)
        .unwrap();
    let p2 = s
        .mailbox_append(projects.id, b"Subject: q\r\n\r\nq\r\n", vec![], 6)
        .unwrap();
    for mailbox in [BOX_INBOX, projects.id] {
        let before = s.mailbox_fingerprints(mailbox).unwrap();
        let uids: Vec<u64> = s
            .mailbox_messages(mailbox)
            .unwrap()
            .iter()
            .map(|m| m.uid)
            .collect();
        assert_eq!(before.iter().map(|f| f.0).collect::<Vec<_>>(), uids);
        assert_eq!(s.mailbox_fingerprints(mailbox).unwrap(), before, "stable");

        s.mailbox_set_flags(mailbox, vec![(uids[1], vec!["\\Seen".into()])])
            .unwrap();
        let after = s.mailbox_fingerprints(mailbox).unwrap();
        let changed: Vec<u64> = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| b != a)
            .map(|(b, _)| b.0)
            .collect();
        assert_eq!(changed, vec![uids[1]], "mailbox {mailbox}");

        let some = s
            .mailbox_messages_some(mailbox, &[uids[1], u64::MAX])
            .unwrap();
        assert_eq!(some.len(), 1, "a missing UID is skipped");
        assert_eq!(
            (some[0].uid, some[0].flags.clone()),
            (uids[1], vec!["\\Seen".to_string()])
        );
    }
    assert_eq!(
        s.mailbox_fingerprints(projects.id)
            .unwrap()
            .iter()
            .map(|f| f.0)
            .collect::<Vec<_>>(),
        vec![p1, p2]
    );
}

/// The IMAP write sites of the store (flags, APPEND, COPY/MOVE, EXPUNGE,
/// CREATE) under injected EIO and ENOSPC: each fails with an error (IMAP
/// answers NO), nothing of it lands, and once the fault is gone the store
/// recovers by itself and the same writes succeed and persist.
#[test]
fn imap_mailbox_writes_fail_cleanly_under_store_faults_and_recover() {
    use mailproxyd::store::{Fault, Faults, Op};
    for fault in [Fault::Io, Fault::NoSpace] {
        let dir = tempfile::tempdir().unwrap();
        let f = Faults::new();
        let s = Store::open_with_faults(dir.path(), &KeySource::KeyFile, f.clone()).unwrap();
        s.deliver(b"Subject: a\r\n\r\na\r\n", 1).unwrap();
        let work = s.mailbox_create("Work").unwrap().unwrap();
        let uid = s.mailbox_messages(BOX_INBOX).unwrap()[0].uid;
        let snapshot = |s: &Store| {
            (
                s.mailboxes().unwrap(),
                s.mailbox_messages(BOX_INBOX).unwrap(),
                s.mailbox_messages(work.id).unwrap(),
            )
        };
        let before = snapshot(&s);
        let writes = |s: &Store| -> Vec<Result<(), mailproxyd::store::StoreError>> {
            vec![
                s.mailbox_set_flags(BOX_INBOX, vec![(uid, vec!["\\Seen".into()])]),
                s.mailbox_append(work.id, b"Subject: b\r\n\r\nb\r\n", vec![], 2)
                    .map(drop),
                s.mailbox_copy(BOX_INBOX, &[uid], work.id, false).map(drop),
                s.mailbox_create("Other").map(drop),
                s.mailbox_expunge(BOX_INBOX, &[uid]),
            ]
        };
        f.fail_all(Op::Write, fault);
        for (i, r) in writes(&s).into_iter().enumerate() {
            assert!(
                r.is_err(),
                "{fault:?}: write {i} succeeded on a failing disk"
            );
        }
        // It keeps trying to reopen on its own while the disk fails.
        store_support::wait_retries(&f, 2);
        f.clear();
        store_support::wait_ok(&s);
        assert_eq!(snapshot(&s), before, "{fault:?}: a failed write landed");

        for (i, r) in writes(&s).into_iter().enumerate() {
            r.unwrap_or_else(|e| panic!("{fault:?}: write {i} after recovery: {e}"));
        }
        let after = snapshot(&s);
        assert!(after.1.is_empty(), "expunged");
        assert_eq!(after.2.len(), 2, "appended and copied");
        assert!(after.0.iter().any(|b| b.name == "Other"));
        drop(s);
        let s = Store::open(dir.path(), &KeySource::KeyFile).unwrap();
        assert_eq!(snapshot(&s), after, "{fault:?}: persisted");
    }
}

/// Polls `cond` every 10 ms until it holds (at most 10 s).
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn decrypted_bodies_leave_memory_on_expunge_and_with_the_last_session() {
    let caches = Arc::new(imap::cache::Caches::default());
    let w = World::with(ImapSettings {
        caches: caches.clone(),
        cache_grace: Duration::ZERO,
        ..ImapSettings::default()
    });
    let s = w.store();
    s.deliver(M1, 1_795_000_000).unwrap();
    let second = s.deliver(M2, 1_795_000_100).unwrap();
    s.deliver(M1, 1_795_000_200).unwrap();
    let held = || caches.bodies.usage().1;
    let mut a = Imap::login(w.imap);
    a.cmd("t1 SELECT INBOX");
    let r = a.cmd("t2 FETCH 1:* BODY.PEEK[]");
    assert!(r.last().unwrap().starts_with("t2 OK"), "{r:?}");
    assert_eq!(held(), 3, "FETCH keeps what it decrypted");
    // SEARCH BODY reads through without adding: a fresh delivery is not kept.
    s.deliver(M2, 1_795_000_300).unwrap();
    let r = a.cmd("t30 NOOP");
    assert!(r.iter().any(|l| l.trim_end() == "* 4 EXISTS"), "{r:?}");
    let r = a.cmd("t3 SEARCH BODY \"part one\"");
    assert!(r.iter().any(|l| l.trim_end() == "* SEARCH 2 4"), "{r:?}");
    assert_eq!(held(), 3);
    // Its own EXPUNGE.
    a.cmd("t4 STORE 1 +FLAGS.SILENT (\\Deleted)");
    let r = a.cmd("t5 EXPUNGE");
    assert!(r.iter().any(|l| l.trim_end() == "* 1 EXPUNGE"), "{r:?}");
    assert_eq!(held(), 2);
    // Another client's deletion (POP3's DELE), once this session sees it.
    s.inbox_delete(&[second.id]).unwrap();
    let r = a.cmd("t6 NOOP");
    assert!(r.iter().any(|l| l.trim_end() == "* 1 EXPUNGE"), "{r:?}");
    assert_eq!(held(), 1);
    // Two sessions: the bodies stay until the last one ends.
    let mut b = Imap::login(w.imap);
    b.cmd("u1 LOGOUT");
    a.cmd("t7 NOOP");
    assert_eq!(held(), 1, "a session of the account is still there");
    a.cmd("t8 LOGOUT");
    eventually("the last session's end to drop the bodies", || held() == 0);
    assert_eq!(caches.bodies.usage().0, 0);
}

#[test]
fn a_change_wakes_the_watchers_of_its_own_mailbox_only() {
    let w = World::start();
    let s = w.store();
    let mut inbox = s.mailbox_changes(BOX_INBOX);
    let mut sent = s.mailbox_changes(BOX_SENT);
    let mut inbox2 = s.mailbox_changes(BOX_INBOX);
    // Which watchers saw a change since the last call (and take it).
    let mut woke = move || {
        [&mut inbox, &mut sent, &mut inbox2].map(|r| {
            let w = r.has_changed().unwrap();
            r.borrow_and_update();
            w
        })
    };
    s.deliver(M1, 1_795_000_000).unwrap();
    assert_eq!(woke(), [true, false, true], "a delivery: INBOX");
    let uid = s.mailbox_append(BOX_SENT, M2, vec![], 1).unwrap();
    assert_eq!(woke(), [false, true, false], "an APPEND to Sent");
    s.mailbox_set_flags(BOX_SENT, vec![(uid, vec!["\\Seen".into()])])
        .unwrap();
    assert_eq!(woke(), [false, true, false], "flags in Sent");
    let copied = s.mailbox_copy(BOX_SENT, &[uid], BOX_INBOX, false).unwrap();
    assert_eq!(woke(), [true, false, true], "a COPY: its target");
    s.mailbox_copy(BOX_INBOX, &[copied[0].1], BOX_SENT, true)
        .unwrap();
    assert_eq!(woke(), [true, true, true], "a MOVE: both");
    s.mailbox_expunge(BOX_SENT, &[uid]).unwrap();
    assert_eq!(woke(), [false, true, false], "an EXPUNGE in Sent");
    let user = s.mailbox_create("Archive").unwrap().unwrap();
    s.mailbox_delete(user.id).unwrap();
    assert_eq!(woke(), [true, true, true], "a DELETE: everyone");
    assert_eq!(woke(), [false, false, false]);
}
