//! IMAP with real clients, reading mail sent through the testnet, one world
//! for all of them: Python imaplib (waiting in IDLE for the messages to
//! arrive, and on the sender's side for Sent to show `$Delivered`), fetchmail
//! (in IDLE before anything is sent), curl `imap://`, getmail6, mutt under
//! tmux, mbsync and offlineimap3. Every client's bytes are compared with what
//! was sent and with what POP3 serves.

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
    let mbsync = imap::mbsync(bob.imap, &world.login(BOB), &scratch);
    assert!(mbsync == want, "mbsync's Maildir holds the messages");
    let offlineimap = imap::offlineimap(bob.imap, &world.login(BOB), &scratch);
    assert!(
        offlineimap == want,
        "offlineimap's Maildir holds the messages"
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
