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
    wait_for(
        &format!("{n} message(s) in {user}'s POP3"),
        timeout,
        Duration::from_millis(250),
        || (mail::pop3_count(pop3, user) >= n).then_some(()),
    );
    mail::pop3_all(pop3, user)
}

/// Index of the first byte where `a` and `b` differ.
fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()))
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
    let m1 = mail::message(ALICE, &[BOB], "via swaks", "hello bob, from swaks\n.\n..two dots\nend");
    let m2 = mail::message(ALICE, &[BOB], "via curl", "hello bob, from curl\n\nTrailing spaces  \nend");
    mail::swaks_send(alice.smtp, ALICE, &[BOB], &m1, &scratch);
    mail::curl_send(alice.smtp, ALICE, &[BOB], &m2, &scratch);

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
    let curl: Vec<Vec<u8>> = (1..=2).map(|i| mail::curl_retr(bob_pop3, BOB, i)).collect();
    let poplib = mail::poplib_retr_all(bob_pop3, BOB);
    assert_eq!(poplib.len(), 2);
    for (subject, sent) in [("via swaks", &m1), ("via curl", &m2)] {
        let native = by_subject(&got, subject);
        assert_delivered(&native, sent, &alice_key);
        assert_eq!(by_subject(&curl, subject), native, "curl's copy differs");
        assert_eq!(by_subject(&poplib, subject), native, "poplib's copy differs");
    }
}
