//! Mail through the whole network between real mailproxyd accounts, sent and
//! read with stock clients: bytes identical, big messages, several
//! recipients, replies, unknown recipients, key discovery.

use std::time::Duration;

use mailproxy_e2e::mail::{self, strip_added};
use mailproxy_e2e::{wait_for, DaemonSpec, World};

const ALICE: &str = "alice@provider1";
const BOB: &str = "bob@provider2";
const CAROL: &str = "carol@provider1";
const DAVE: &str = "dave@provider2";

/// Bound for one message to cross the network (the machine is loaded).
const DELIVERY: Duration = Duration::from_secs(240);

/// Waits until `user`'s maildrop at `world`'s daemon holds `n` messages and
/// returns them (native client).
fn wait_messages(world: &World, user: &str, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
    let pop3 = world.daemon_of(user).pop3;
    let login = world.login(user);
    wait_for(
        &format!("{n} message(s) in {user}'s POP3"),
        timeout,
        Duration::from_millis(250),
        || (mail::pop3_count(pop3, &login) >= n).then_some(()),
    );
    mail::pop3_all(pop3, &login)
}

/// Index of the first byte where `a` and `b` differ.
fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

/// Asserts `delivered` is `sent` plus only our added fields, from `sender`.
fn assert_delivered(delivered: &[u8], sent: &[u8], sender: &[u8; 32]) {
    let (key, rest) = strip_added(delivered);
    assert_eq!(
        key.as_deref(),
        Some(&sender[..]),
        "X-Katzenpost-Sender is not the sender's identity key"
    );
    assert!(
        rest == sent,
        "delivered body differs from what was sent ({} vs {} bytes) from byte {}: delivered {:?}, sent {:?}",
        rest.len(),
        sent.len(),
        first_difference(rest, sent),
        String::from_utf8_lossy(&rest[first_difference(rest, sent).min(rest.len())..][..rest.len().saturating_sub(first_difference(rest, sent)).min(80)]),
        String::from_utf8_lossy(&sent[first_difference(rest, sent).min(sent.len())..][..sent.len().saturating_sub(first_difference(rest, sent)).min(80)])
    );
}

#[test]
fn swaks_and_curl_to_bob_read_with_curl_and_poplib() {
    let world = World::simple(&[ALICE, BOB]);
    let alice = world.daemon_of(ALICE);
    let scratch = world.scratch();
    let m1 = mail::message(
        ALICE,
        &[BOB],
        "via swaks",
        "hello bob, from swaks\n.\n..two dots\nend",
    );
    let m2 = mail::message(
        ALICE,
        &[BOB],
        "via curl",
        "hello bob, from curl\n\nTrailing spaces  \nend",
    );
    mail::swaks_send(alice.smtp, &world.login(ALICE), &[BOB], &m1, &scratch);
    mail::curl_send(alice.smtp, &world.login(ALICE), &[BOB], &m2, &scratch);

    let got = wait_messages(&world, BOB, 2, DELIVERY);
    assert_eq!(got.len(), 2, "exactly two messages");
    let alice_key = world.identity(ALICE);
    let bob_pop3 = world.daemon_of(BOB).pop3;
    // Arrival order is not fixed: match by subject.
    let by_subject = |msgs: &[Vec<u8>], s: &str| -> Vec<u8> {
        msgs.iter()
            .find(|m| String::from_utf8_lossy(m).contains(&format!("Subject: {s}\r\n")))
            .unwrap_or_else(|| panic!("no message with subject {s}"))
            .clone()
    };
    let curl: Vec<Vec<u8>> = (1..=2)
        .map(|i| mail::curl_retr(bob_pop3, &world.login(BOB), i))
        .collect();
    let poplib = mail::poplib_retr_all(bob_pop3, &world.login(BOB));
    assert_eq!(poplib.len(), 2);
    for (subject, sent) in [("via swaks", &m1), ("via curl", &m2)] {
        let native = by_subject(&got, subject);
        assert_delivered(&native, sent, &alice_key);
        assert_eq!(by_subject(&curl, subject), native, "curl's copy differs");
        assert_eq!(
            by_subject(&poplib, subject),
            native,
            "poplib's copy differs"
        );
    }
}

/// Messages in `user`'s maildrop whose header has `Subject: {subject}`.
fn with_subject<'a>(msgs: &'a [Vec<u8>], subject: &str) -> Vec<&'a Vec<u8>> {
    let needle = format!("\r\nSubject: {subject}\r\n");
    msgs.iter()
        .filter(|m| {
            let head_end = m
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .unwrap_or(m.len());
            String::from_utf8_lossy(&m[..head_end + 2]).contains(&needle)
        })
        .collect()
}

#[test]
fn five_mib_message_arrives_byte_identical() {
    let world = World::simple(&[ALICE, BOB]);
    let alice = world.daemon_of(ALICE);
    let body = mail::big_body(5 << 20, 7);
    let sent = mail::message(ALICE, &[BOB], "five MiB", &body);
    assert!(sent.len() >= 5 << 20);
    mail::curl_send(
        alice.smtp,
        &world.login(ALICE),
        &[BOB],
        &sent,
        &world.scratch(),
    );
    let got = wait_messages(&world, BOB, 1, DELIVERY * 2);
    assert_eq!(got.len(), 1);
    assert_delivered(&got[0], &sent, &world.identity(ALICE));
    let curl = mail::curl_retr(world.daemon_of(BOB).pop3, &world.login(BOB), 1);
    assert!(curl == got[0], "curl's copy of the 5 MiB message differs");
}

#[test]
fn a_forged_sender_header_is_replaced() {
    let world = World::simple(&[ALICE, BOB]);
    let forged = format!("X-Katzenpost-Sender: {}\r\n", "A".repeat(43) + "=");
    let clean = mail::message(ALICE, &[BOB], "forged", "who sent this?");
    let mut sent = forged.clone().into_bytes();
    sent.extend_from_slice(&clean);
    mail::curl_send(
        world.daemon_of(ALICE).smtp,
        &world.login(ALICE),
        &[BOB],
        &sent,
        &world.scratch(),
    );
    let got = wait_messages(&world, BOB, 1, DELIVERY);
    assert_eq!(got.len(), 1);
    // Only the true sender's key remains; the rest is what was sent without
    // the forged field.
    assert_delivered(&got[0], &clean, &world.identity(ALICE));
    let text = String::from_utf8_lossy(&got[0]).to_ascii_lowercase();
    assert_eq!(text.matches("x-katzenpost-sender:").count(), 1);
}

#[test]
fn one_message_to_three_recipients_arrives_once_each() {
    let world = World::simple(&[ALICE, BOB, CAROL, DAVE]);
    let alice = world.daemon_of(ALICE);
    let rcpts = [BOB, CAROL, DAVE];
    let sent = mail::message(ALICE, &rcpts, "to three", "one copy each, please");
    mail::swaks_send(
        alice.smtp,
        &world.login(ALICE),
        &rcpts,
        &sent,
        &world.scratch(),
    );
    for r in rcpts {
        let got = wait_messages(&world, r, 1, DELIVERY);
        assert_eq!(got.len(), 1, "{r}");
        assert_delivered(&got[0], &sent, &world.identity(ALICE));
    }
    // Every copy alice sent (retransmissions too) has reached its
    // recipient's engine: still exactly one message each.
    world.wait_every_copy_retrieved(ALICE, &rcpts, 0);
    for r in rcpts {
        assert_eq!(
            mail::pop3_count(alice.pop3, &world.login(r)),
            1,
            "{r} got a second copy"
        );
    }
    assert_eq!(
        mail::pop3_count(alice.pop3, &world.login(ALICE)),
        0,
        "alice got a report"
    );
}

#[test]
fn bob_replies_and_alice_sees_his_key() {
    let world = World::simple(&[ALICE, BOB]);
    let d = world.daemon_of(ALICE);
    let scratch = world.scratch();
    let question = mail::message(ALICE, &[BOB], "question", "are you there?");
    mail::swaks_send(d.smtp, &world.login(ALICE), &[BOB], &question, &scratch);
    let got = wait_messages(&world, BOB, 1, DELIVERY);
    let (_, original) = strip_added(&got[0]);
    assert_eq!(original, &question[..]);

    // Bob answers with curl, quoting alice's Message-ID.
    let id = String::from_utf8_lossy(original)
        .lines()
        .find_map(|l| l.strip_prefix("Message-ID: ").map(str::to_string))
        .expect("the question has a Message-ID");
    let mut reply = format!("In-Reply-To: {id}\r\nReferences: {id}\r\n").into_bytes();
    reply.extend(mail::message(
        BOB,
        &[ALICE],
        "Re: question",
        "> are you there?\nyes",
    ));
    mail::curl_send(d.smtp, &world.login(BOB), &[ALICE], &reply, &scratch);
    let got = wait_messages(&world, ALICE, 1, DELIVERY);
    assert_eq!(got.len(), 1);
    assert_delivered(&got[0], &reply, &world.identity(BOB));
}

#[test]
fn unknown_recipient_without_key_discovery_gets_550() {
    let world = World::simple(&[ALICE, BOB]);
    let d = world.daemon_of(ALICE);
    let out = mail::swaks_rcpt_only(d.smtp, &world.login(ALICE), "nobody@provider2");
    assert!(out.contains("<** 550"), "expected 550 for RCPT:\n{out}");
    // A known recipient in the same conversation is accepted.
    let out = mail::swaks_rcpt_only(d.smtp, &world.login(ALICE), BOB);
    assert!(
        !out.contains("<** ") && out.contains("<-  250"),
        "expected 250 for RCPT {BOB}:\n{out}"
    );
}

#[test]
fn key_discovery_end_to_end() {
    let world = World::builder()
        .daemon(
            DaemonSpec::new(&[ALICE])
                .key_discovery(ALICE)
                .without_recipient(BOB),
        )
        .daemon(DaemonSpec::new(&[BOB]))
        .build();
    let alice = world.daemon_of(ALICE);
    let (ok, _) = alice.ctl(&["get-recipient", BOB]);
    assert!(!ok, "bob's key must not be known before the test");

    let sent = mail::message(ALICE, &[BOB], "discovered", "found you by key discovery");
    mail::swaks_send(
        alice.smtp,
        &world.login(ALICE),
        &[BOB],
        &sent,
        &world.scratch(),
    );
    let got = wait_messages(&world, BOB, 1, DELIVERY);
    assert_eq!(got.len(), 1);
    assert_delivered(&got[0], &sent, &world.identity(ALICE));

    // Alice is told to verify the key, and the key is now known.
    let notices = wait_messages(&world, ALICE, 1, DELIVERY);
    assert_eq!(
        with_subject(&notices, "Key Discovery").len(),
        1,
        "one Key Discovery notice in alice's inbox"
    );
    let (ok, v) = alice.ctl(&["get-recipient", BOB]);
    assert!(ok, "get-recipient {BOB} failed: {v}");
    let key = v["key"].as_str().expect("a key");
    let bob = world.identity(BOB);
    use base64::Engine as _;
    let decoded = hex::decode(key)
        .ok()
        .or_else(|| base64::engine::general_purpose::STANDARD.decode(key).ok())
        .expect("key is hex or base64");
    assert_eq!(decoded, bob, "the discovered key is bob's identity key");
}
