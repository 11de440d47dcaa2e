//! IMAP with real clients, reading mail sent through the testnet, one world
//! for all of them: Python imaplib (waiting in IDLE for the messages to
//! arrive, and on the sender's side for Sent to show `$Delivered`), fetchmail
//! (in IDLE before anything is sent), curl `imap://`, getmail6, mutt under
//! tmux, mbsync and offlineimap3. Every client's bytes are compared with what
//! was sent and with what POP3 serves. Last, mbsync syncs the other way: a
//! flag set and a message written in its Maildir reach the server.

use std::time::Duration;

use mailproxy_e2e::imap::{self, lf};
use mailproxy_e2e::mail::{self, strip_added};
use mailproxy_e2e::World;

const ALICE: &str = "alice@provider1";
const BOB: &str = "bob@provider2";

/// Bound for messages to cross the network (the machine is loaded).
const DELIVERY: Duration = Duration::from_secs(240);

#[test]
fn imap_clients_read_mail_from_the_testnet_and_sent_shows_delivery() {
    let world = World::simple(&[ALICE, BOB]);
    let (alice, bob) = (world.daemon_of(ALICE), world.daemon_of(BOB));
    let scratch = world.scratch();
    // Bob's clients are idling before anything is sent.
    let waiting = imap::imaplib(bob.imap, &world.login(BOB), "INBOX", 2, "-", DELIVERY);
    let mut fetchmail = imap::FetchmailIdle::start(bob.imap, &world.login(BOB), &scratch);
    fetchmail.wait_idling(DELIVERY);
    let m1 = mail::message(ALICE, &[BOB], "imap one", "hello bob, over IMAP\n.\nend");
    let m2 = mail::message(ALICE, &[BOB], "imap two", &mail::big_body(60_000, 7));
    mail::swaks_send(alice.smtp, &world.login(ALICE), &[BOB], &m1, &scratch);
    mail::curl_send(alice.smtp, &world.login(ALICE), &[BOB], &m2, &scratch);
    let got = imap::imaplib_result(waiting);
    assert_eq!(got.len(), 2, "both messages reached the idling client");
    // In INBOX order (network order may differ from sending order).
    let inbox: Vec<Vec<u8>> = got.iter().map(|(_, m)| m.clone()).collect();
    let mut by_size = inbox.clone();
    by_size.sort_by_key(|m| m.len());
    for (got, sent) in by_size.iter().zip([&m1, &m2]) {
        let (key, rest) = strip_added(got);
        assert_eq!(
            key.as_deref(),
            Some(&world.identity(ALICE)[..]),
            "sender key"
        );
        assert!(rest == &sent[..], "IMAP bytes differ from the sent message");
    }

    // fetchmail, idling since before the sending, got both through IDLE,
    // byte for byte (its MDA appends them in INBOX order).
    fetchmail.wait_for_mail(&inbox.concat(), DELIVERY);
    let log = fetchmail.log();
    assert!(
        log.lines()
            .any(|l| l == "fetchmail: IMAP< * 1 EXISTS" || l == "fetchmail: IMAP< * 2 EXISTS"),
        "the server announced the mail in IDLE:\n{log}"
    );
    drop(fetchmail);

    // curl reads the same bytes, and so does POP3 (INBOX is the maildrop).
    let pop = mail::pop3_all(bob.pop3, &world.login(BOB));
    for (i, m) in inbox.iter().enumerate() {
        assert_eq!(
            &imap::curl_fetch(bob.imap, &world.login(BOB), "INBOX", i + 1),
            m
        );
        assert_eq!(
            &pop[i],
            m,
            "POP3 message {} is IMAP message {}",
            i + 1,
            i + 1
        );
    }

    // Alice's Sent: both copies, delivered once bob's provider acknowledged.
    let sent = imap::imaplib_result(imap::imaplib(
        alice.imap,
        &world.login(ALICE),
        "Sent",
        2,
        "$Delivered",
        DELIVERY,
    ));
    assert_eq!(sent.len(), 2);
    for (flags, m) in &sent {
        assert!(
            flags.contains("$Delivered") && !flags.contains("$Queued"),
            "{flags}"
        );
        assert!(
            m.ends_with(&m1) || m.ends_with(&m2),
            "the Sent copy is the submitted message (after our Received header)"
        );
    }
    assert_eq!(
        imap::curl_fetch(alice.imap, &world.login(ALICE), "Sent", 1),
        sent[0].1
    );

    // The Maildir and mbox clients store LF line ends.
    let want: Vec<Vec<u8>> = inbox.iter().map(|m| lf(m)).collect();
    // getmail6 rewrites the header (folds long fields, adds Return-Path
    // and X-getmail-retrieved-from-mailbox): the body is compared, and
    // every field of the sent header must be there as sent.
    let gm = imap::getmail(bob.imap, &world.login(BOB), &scratch);
    assert_eq!(gm.len(), 2, "getmail delivered both");
    for (g, sent) in gm.iter().zip([&m1, &m2]) {
        let (head, body) = split_header(g);
        let sent = lf(sent);
        let (sent_head, sent_body) = split_header(&sent);
        assert!(body == sent_body, "getmail's body is the sent body");
        for field in sent_head.split(|&b| b == b'\n') {
            assert!(
                head.split(|&b| b == b'\n').any(|l| l == field),
                "getmail kept {:?}",
                String::from_utf8_lossy(field)
            );
        }
    }
    let mutt = imap::mutt_pipe(bob.imap, &world.login(BOB), 2, &scratch);
    assert!(mutt == want, "mutt piped the messages");
    let mbsync = imap::Mbsync::new(bob.imap, &world.login(BOB), &scratch);
    mbsync.sync(&["--pull"]);
    assert!(
        mbsync.pulled() == want,
        "mbsync's Maildir holds the messages"
    );
    let offlineimap = imap::offlineimap(bob.imap, &world.login(BOB), &scratch);
    assert!(
        offlineimap == want,
        "offlineimap's Maildir holds the messages"
    );

    // mbsync the other way (APPEND, STORE): a message written into its
    // Maildir and a flag set there reach the server.
    let written = mbsync_push(&mbsync);
    mbsync.sync(&[]);
    let flags = imap::curl_command(bob.imap, &world.login(BOB), "INBOX", "FETCH 1:* (FLAGS)");
    let flagged_line = flags
        .lines()
        .find(|l| l.contains("\\Flagged"))
        .unwrap_or_else(|| panic!("a message is \\Flagged: {flags}"));
    assert!(
        flagged_line.starts_with("* 1 FETCH"),
        "message 1 is the flagged one: {flags}"
    );
    let appended = imap::curl_fetch(bob.imap, &world.login(BOB), "INBOX", 3);
    assert_eq!(
        String::from_utf8_lossy(&imap::without_tuid(&appended)),
        String::from_utf8_lossy(&crlf(&written)),
        "the server has the written message (and mbsync's X-TUID)"
    );
    assert_eq!(
        mail::pop3_all(bob.pop3, &world.login(BOB)).len(),
        3,
        "POP3 sees the appended message"
    );
}

/// An LF message's header (without the blank line) and body.
fn split_header(m: &[u8]) -> (&[u8], &[u8]) {
    let at = m
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("a header and a body");
    (&m[..at], &m[at + 2..])
}

/// Flags message 1 (UID 1) in mbsync's Maildir and writes a new message
/// there; returns the new message.
fn mbsync_push(mbsync: &imap::Mbsync) -> Vec<u8> {
    let cur = mbsync.folder().join("cur");
    let first = std::fs::read_dir(&cur)
        .expect("mbsync's cur")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .find(|n| n.contains(",U=1:"))
        .expect("UID 1 in mbsync's Maildir");
    // Maildir flags are the letters after ":2,", sorted.
    let (base, flags) = first.split_once(":2,").expect("maildir info");
    let mut flags: Vec<char> = flags.chars().chain(['F']).collect();
    flags.sort_unstable();
    let flagged: String = flags.into_iter().collect();
    std::fs::rename(cur.join(&first), cur.join(format!("{base}:2,{flagged}"))).expect("flag");
    let m = b"From: <bob@provider2>\nSubject: written in the Maildir\nMessage-ID: <mbsync@e2e.test>\n\nnear side\n".to_vec();
    std::fs::write(mbsync.folder().join("new").join("1800000000.e2e.test"), &m).expect("write");
    m
}

/// `m` with LF line ends made CRLF.
fn crlf(m: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.len() + m.len() / 40);
    for &b in m {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}
