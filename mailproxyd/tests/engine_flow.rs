//! The engine against a real in-process testnet: alice@provider1 sends to
//! bob@provider2, each with its own store and engine. One network runs
//! voting authorities instead of the nonvoting one. One puts both accounts
//! behind a real SOCKS5 server (microsocks; one over TCP, one over a Unix
//! socket relayed by socat).

mod socks_support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use mailproxy_proto::EventKind;
use mailproxyd::config::{UpstreamProxyAddress, UpstreamProxyConfig, UpstreamProxyKind};
use mailproxyd::engine::{
    AuthorityConfig, Engine, EngineConfig, PartialLimits, Pki, Timings, Upstream, VotingPeer,
};
use mailproxyd::store::{unix_now, KeySource, NewQueueEntry, StorageKey, Store};
use rand::rngs::OsRng;
use rand::RngCore;
use testnet::config::Params;
use testnet::network::{Network, Shape};
use testnet::voting::ServeFault;

use socks_support::{assert_only_proxied, client_peers, free_port, microsocks, unix_relay};

const PERIOD: u64 = 600;

/// A network whose clients send one packet per `send_ms` on average, with
/// `voting` voting authority peers (0: a nonvoting authority), whose
/// providers also advertise `extra` (a transport and an address).
async fn start_network(
    dir: &Path,
    send_ms: u64,
    voting: usize,
    extra: Option<(String, String)>,
) -> Network {
    let mut params = Params::demo();
    params.provider_extra_transport = extra;
    params.epoch_period_secs = PERIOD;
    params.document.mu = 1.0 / 5.0;
    params.document.mu_max_delay = 20;
    params.document.lambda_p = 1.0 / send_ms as f64;
    params.document.lambda_p_max_delay = 5 * send_ms;
    let shape = Shape {
        params,
        voting_authorities: voting,
        ..Shape::default()
    };
    Network::launch(dir, &shape, false, Duration::from_secs(120))
        .await
        .unwrap()
}

fn key() -> [u8; 32] {
    let mut k = [0u8; 32];
    OsRng.fill_bytes(&mut k);
    k
}

/// One account: keys, store directory and storage key.
struct Account {
    user: &'static str,
    provider: &'static str,
    link: [u8; 32],
    identity: [u8; 32],
    dir: tempfile::TempDir,
    storage: [u8; 32],
}

impl Account {
    fn new(net: &Network, user: &'static str, provider: &'static str) -> Account {
        let a = Account {
            user,
            provider,
            link: key(),
            identity: key(),
            dir: tempfile::tempdir().unwrap(),
            storage: key(),
        };
        net.node(provider)
            .unwrap()
            .provider
            .as_ref()
            .unwrap()
            .add_user(
                user,
                katzenpost::sphinx::public_key(&a.link),
                Some(a.identity_public()),
            )
            .unwrap();
        a
    }

    fn identity_public(&self) -> [u8; 32] {
        katzenpost::sphinx::public_key(&self.identity)
    }

    fn address(&self) -> String {
        format!("{}@{}", self.user, self.provider)
    }

    fn open(&self) -> Store {
        tokio::task::block_in_place(|| {
            Store::open(
                self.dir.path(),
                &KeySource::Raw(StorageKey::from_bytes(self.storage)),
            )
            .unwrap()
        })
    }

    fn config(&self, net: &Network, keys: &Keys) -> EngineConfig {
        let (keys, stored) = (keys.clone(), keys.clone());
        EngineConfig {
            user: self.user.into(),
            provider: self.provider.into(),
            link_private: self.link,
            identity_private: self.identity,
            authority: pki(net),
            upstream: Arc::new(Upstream::direct()),
            provider_key_pin: None,
            send_decoy_traffic: false,
            max_incoming_blocks: 1000,
            partial_limits: PartialLimits::default(),
            recipient_keys: Arc::new(move |a: &str| keys.lock().unwrap().get(a).copied()),
            key_discovery: false,
            store_key: Arc::new(move |a: &str, k: &[u8; 32]| {
                stored.lock().unwrap().insert(a.to_owned(), *k);
                Ok(())
            }),
            timings: Timings {
                polling_interval: Duration::from_millis(200),
                retransmit_slack: Duration::from_secs(2),
                reconnect_min: Duration::from_millis(200),
                reconnect_max: Duration::from_secs(2),
                link_timeout: Duration::from_secs(10),
                epoch_period: Duration::from_secs(PERIOD),
                receive_timeout: None,
                pki_retry: Duration::from_secs(1),
                housekeeping_interval: Duration::from_millis(200),
                report_coalesce: Duration::from_secs(60),
                urgent_queue_lifetime: Duration::from_secs(3600),
                bounce_queue_lifetime: Duration::from_secs(3600),
            },
            events: mailproxyd::events::EventBus::new(4096),
        }
    }
}

/// The network's PKI as an account configures it.
fn pki(net: &Network) -> Pki {
    if !net.spec.is_voting() {
        return AuthorityConfig {
            address: net.spec.authority.address.to_string(),
            public_key: hex::decode(&net.spec.authority.identity_public)
                .unwrap()
                .try_into()
                .unwrap(),
        }
        .into();
    }
    Pki::Voting(
        net.authority_endpoints()
            .unwrap()
            .iter()
            .map(|e| VotingPeer {
                identity_key: e.identity_key,
                link_key: e.link_key,
                addresses: vec![e.address.to_string()],
            })
            .collect(),
    )
}

/// The recipient keys the engines know (shared, so key discovery can add).
type Keys = Arc<Mutex<HashMap<String, [u8; 32]>>>;

struct Pair {
    _netdir: tempfile::TempDir,
    net: Network,
    alice: Account,
    bob: Account,
    keys: Keys,
}

async fn pair(send_ms: u64) -> Pair {
    pair_on(send_ms, 0).await
}

/// [`pair`] on a network of `voting` voting authority peers.
async fn pair_on(send_ms: u64, voting: usize) -> Pair {
    pair_with(send_ms, voting, None).await
}

/// [`pair_on`] whose providers also advertise `extra`.
async fn pair_with(send_ms: u64, voting: usize, extra: Option<(String, String)>) -> Pair {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let netdir = tempfile::tempdir().unwrap();
    let net = start_network(netdir.path(), send_ms, voting, extra).await;
    let alice = Account::new(&net, "alice", "provider1");
    let bob = Account::new(&net, "bob", "provider2");
    let mut keys = HashMap::new();
    keys.insert(alice.address(), alice.identity_public());
    keys.insert(bob.address(), bob.identity_public());
    Pair {
        _netdir: netdir,
        net,
        alice,
        bob,
        keys: Arc::new(Mutex::new(keys)),
    }
}

fn message(len: usize, seed: u8) -> Vec<u8> {
    let mut m =
        format!("From: alice@provider1\r\nTo: bob@provider2\r\nSubject: test {seed}\r\n\r\n")
            .into_bytes();
    let mut i = 0u32;
    while m.len() < len {
        m.extend_from_slice(format!("line {i} of message {seed}\r\n").as_bytes());
        i += 1;
    }
    m
}

fn enqueue(store: &Store, to: &str, msg: &[u8], bounce_in: u64) -> u64 {
    enqueue_with(store, to, msg, bounce_in, false)
}

fn enqueue_with(store: &Store, to: &str, msg: &[u8], bounce_in: u64, unreliable: bool) -> u64 {
    let now = unix_now();
    tokio::task::block_in_place(|| {
        store
            .enqueue(
                "alice",
                msg,
                &[NewQueueEntry {
                    recipient: to.into(),
                    created: now,
                    bounce_at: now + bounce_in,
                    unreliable,
                }],
            )
            .unwrap()[0]
            .id
    })
}

fn inbox(store: &Store) -> Vec<Vec<u8>> {
    store
        .inbox_list()
        .unwrap()
        .iter()
        .map(|e| store.read_message(e.message.blob).unwrap())
        .collect()
}

async fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every packet alice sent (`alice_sent`, over all her engine
/// runs) has reached bob's spool at provider2 or been dropped by a node, and
/// bob has retrieved the spool empty: every copy of every block has then been
/// through bob's engine, so a duplicate delivery would already be in his
/// inbox. (Alice sends nothing else here: no decoys, no key discovery.)
async fn wait_every_copy_retrieved(p: &Pair, alice_sent: u64) {
    use std::sync::atomic::Ordering::Relaxed;
    let provider2 = p.net.node("provider2").expect("provider2 runs").clone();
    wait_for(
        "every packet alice sent to be spooled for bob (or dropped) and retrieved",
        Duration::from_secs(120),
        || {
            let dropped: u64 = p
                .net
                .spec
                .nodes
                .iter()
                .filter_map(|n| p.net.node(&n.name))
                .map(|n| {
                    let c = &n.counters;
                    c.dropped_invalid.load(Relaxed)
                        + c.dropped_replay.load(Relaxed)
                        + c.dropped_other.load(Relaxed)
                        + c.dropped_fault.load(Relaxed)
                })
                .sum();
            provider2.counters.spooled.load(Relaxed) + dropped >= alice_sent
                && provider2
                    .provider
                    .as_ref()
                    .expect("a provider")
                    .spool_len("bob")
                    .expect("bob's spool")
                    == 0
        },
    )
    .await;
}

/// Bob's inbox with our `Received:` field (checked, first) stripped: what
/// remains must be `X-Katzenpost-Sender` and the message as submitted.
fn delivered(store: &Store) -> Vec<Vec<u8>> {
    let prefix = b"Received: from mixnetwork.invalid (mixnetwork.invalid [127.0.0.2]) by katzenpost.localhost (Katzenpost mailproxy) with ESMTP id ";
    inbox(store)
        .into_iter()
        .map(|m| {
            assert!(
                m.starts_with(prefix),
                "{}",
                String::from_utf8_lossy(&m[..80.min(m.len())])
            );
            let end = m.iter().position(|&b| b == b'\n').unwrap();
            let line = String::from_utf8_lossy(&m[prefix.len()..end - 1]).into_owned();
            let (id, rest) = line.split_once(' ').unwrap();
            assert!(
                id.len() == 10 && id.bytes().all(|b| b.is_ascii_hexdigit()),
                "{line}"
            );
            assert!(rest.starts_with("for <bob@provider2>; "), "{line}");
            assert!(rest.ends_with(" +0000"), "{line}");
            m[end + 1..].to_vec()
        })
        .collect()
}

fn expected_delivery(sender: &Account, msg: &[u8]) -> Vec<u8> {
    let mut want = format!(
        "X-Katzenpost-Sender: {}\r\n",
        base64::engine::general_purpose::STANDARD.encode(sender.identity_public())
    )
    .into_bytes();
    want.extend_from_slice(msg);
    want
}

/// Alice's engine `a` sends `msg` to bob, whose inbox is empty: it must be
/// the only message delivered, exactly as sent.
async fn deliver_one(p: &Pair, a: &Engine, a_store: &Store, b_store: &Store, msg: &[u8]) {
    enqueue(a_store, "bob@provider2", msg, 3600);
    a.wake();
    wait_for("delivery", Duration::from_secs(60), || {
        b_store.inbox_len().unwrap() == 1
    })
    .await;
    assert_eq!(delivered(b_store), vec![expected_delivery(&p.alice, msg)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_and_multi_block_messages_arrive_and_complete_by_ack() {
    let p = pair(20).await;
    let a_store = p.alice.open();
    let b_store = p.bob.open();
    let small = message(200, 1);
    let big = message(300 * 1024, 2);
    assert!(katzenpost::block::block_count(big.len()).unwrap() >= 6);
    let small_id = enqueue(&a_store, "bob@provider2", &small, 3600);
    let big_id = enqueue(&a_store, "bob@provider2", &big, 3600);
    // No key for carol: this entry waits until it is cancelled.
    let carol_id = enqueue(&a_store, "carol@provider2", &small, 3600);
    let bus = mailproxyd::events::EventBus::new(4096);
    let mut events = bus.subscribe();
    let mut a_cfg = p.alice.config(&p.net, &p.keys);
    a_cfg.events = bus.clone();
    let mut b_cfg = p.bob.config(&p.net, &p.keys);
    b_cfg.events = bus.clone();
    let a = Engine::start(a_store.clone(), a_cfg);
    let b = Engine::start(b_store.clone(), b_cfg);
    wait_for("bob's inbox", Duration::from_secs(90), || {
        b_store.inbox_len().unwrap() == 2
    })
    .await;
    wait_for(
        "alice's queue to drain by ACK",
        Duration::from_secs(60),
        || a_store.queue_len().unwrap() == 1,
    )
    .await;
    assert!(a.cancel(carol_id).await.unwrap());
    assert!(!a.cancel(carol_id).await.unwrap(), "already cancelled");
    assert_eq!(a_store.queue_len().unwrap(), 0);
    let mut got = delivered(&b_store);
    got.sort_by_key(|m| m.len());
    assert_eq!(got[0], expected_delivery(&p.alice, &small));
    assert_eq!(got[1], expected_delivery(&p.alice, &big));
    let st = a.status();
    assert!(st.connected, "{st:?}");
    assert_eq!(st.state, mailproxyd::engine::ConnState::Up);
    assert!(st.acks >= 7, "{st:?}");
    assert_eq!(st.messages_acked, 2, "{st:?}");
    assert!(st.document_epoch.is_some());
    let fetched = st.document_fetched.expect("document fetch time");
    assert!(
        fetched <= unix_now() && fetched + 300 > unix_now(),
        "{st:?}"
    );
    // Bob's counters (and events) follow his store write.
    wait_for("bob's delivered count", Duration::from_secs(5), || {
        b.status().delivered == 2
    })
    .await;
    // The events tell the same story, without contents.
    use mailproxy_proto::EventKind as K;
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    let at = |acct: &str| -> Vec<K> {
        seen.iter()
            .filter(|e| e.account == acct)
            .map(|e| e.kind.clone())
            .collect()
    };
    let (alice_ev, bob_ev) = (at("alice@provider1"), at("bob@provider2"));
    assert!(alice_ev.contains(&K::ConnectionUp));
    assert!(alice_ev.iter().any(|k| matches!(k, K::Document { .. })));
    let big_blocks = katzenpost::block::block_count(big.len()).unwrap() as u32;
    for (id, len, blocks) in [(small_id, small.len(), 1), (big_id, big.len(), big_blocks)] {
        assert!(alice_ev.contains(&K::Queued {
            id,
            to: "bob@provider2".into(),
            size: len as u64
        }));
        assert!(alice_ev.contains(&K::Sent { id, blocks }), "{alice_ev:?}");
        assert!(alice_ev.contains(&K::Progress {
            id,
            acked: blocks,
            blocks
        }));
        assert!(alice_ev.contains(&K::Acknowledged { id }));
        let pos = |k: &K| alice_ev.iter().position(|x| x == k).unwrap();
        assert!(
            pos(&K::Queued {
                id,
                to: "bob@provider2".into(),
                size: len as u64
            }) < pos(&K::Sent { id, blocks })
        );
        assert!(pos(&K::Sent { id, blocks }) < pos(&K::Acknowledged { id }));
    }
    assert!(alice_ev.contains(&K::Queued {
        id: carol_id,
        to: "carol@provider2".into(),
        size: small.len() as u64
    }));
    assert!(alice_ev.contains(&K::Cancelled { id: carol_id }));
    assert!(!alice_ev.contains(&K::Acknowledged { id: carol_id }));
    let fetched = bob_ev
        .iter()
        .filter(|k| matches!(k, K::Fetched { .. }))
        .count();
    assert!(fetched > big_blocks as usize, "{bob_ev:?}");
    let sender = base64::engine::general_purpose::STANDARD.encode(p.alice.identity_public());
    let delivered: Vec<&K> = bob_ev
        .iter()
        .filter(|k| matches!(k, K::Delivered { .. }))
        .collect();
    assert_eq!(delivered.len(), 2, "{bob_ev:?}");
    let ids: Vec<u64> = b_store.inbox_list().unwrap().iter().map(|e| e.id).collect();
    for d in delivered {
        let K::Delivered {
            id,
            size,
            sender: s,
        } = d
        else {
            unreachable!()
        };
        assert!(ids.contains(id));
        assert_eq!(s.as_deref(), Some(sender.as_str()));
        assert!(inbox(&b_store).iter().any(|m| m.len() as u64 == *size));
    }
    // No state is left behind for completed entries.
    assert!(
        a_store
            .kv_list(mailproxyd::store::KvTable::Surb)
            .unwrap()
            .is_empty()
            || a.status().retransmissions > 0
    );
    assert!(b_store
        .kv_list(mailproxyd::store::KvTable::Partial)
        .unwrap()
        .is_empty());
    assert_eq!(
        a_store.inbox_len().unwrap(),
        0,
        "no bounce or report at alice"
    );
    a.stop().await;
    b.stop().await;
    p.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_loss_at_a_mix_is_repaired_by_retransmission() {
    let p = pair(20).await;
    for m in ["mix1", "mix2"] {
        p.net.node(m).unwrap().set_drop_fraction(0.25);
    }
    let a_store = p.alice.open();
    let b_store = p.bob.open();
    // About 20 blocks plus their ACKs cross layer 0: the chance that a 25%
    // loss drops none of them (which would fail the test below) is ~1e-5.
    // (With 10 blocks at 20% it was ~1% and did happen.)
    let big = message(1024 * 1024, 3);
    enqueue(&a_store, "bob@provider2", &big, 3600);
    let a = Engine::start(a_store.clone(), p.alice.config(&p.net, &p.keys));
    let b = Engine::start(b_store.clone(), p.bob.config(&p.net, &p.keys));
    wait_for("bob's inbox", Duration::from_secs(120), || {
        b_store.inbox_len().unwrap() >= 1
    })
    .await;
    wait_for("alice's queue to drain", Duration::from_secs(120), || {
        a_store.queue_len().unwrap() == 0
    })
    .await;
    let dropped: u64 = ["mix1", "mix2"]
        .iter()
        .map(|m| {
            p.net
                .node(m)
                .unwrap()
                .counters
                .dropped_fault
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum();
    assert!(dropped > 0, "the fault injection dropped nothing");
    let st = a.status();
    assert!(st.retransmissions > 0, "{st:?}");
    assert_eq!(delivered(&b_store), vec![expected_delivery(&p.alice, &big)]);
    eprintln!("loss test: {dropped} packets dropped, alice status {st:?}");
    a.stop().await;
    b.stop().await;
    p.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_restarted_mid_transfer_lose_and_duplicate_nothing() {
    // Slow sending (100 ms per packet, 40 blocks) so the stop lands mid-transfer.
    let p = pair(100).await;
    let big = message(2 * 1024 * 1024, 4);
    let total = katzenpost::block::block_count(big.len()).unwrap() as usize;
    let (a, b, id) = {
        let a_store = p.alice.open();
        let id = enqueue(&a_store, "bob@provider2", &big, 3600);
        let a = Engine::start(a_store.clone(), p.alice.config(&p.net, &p.keys));
        let b = Engine::start(p.bob.open(), p.bob.config(&p.net, &p.keys));
        wait_for("some blocks acked", Duration::from_secs(90), || {
            a_store
                .queue_get(id)
                .unwrap()
                .is_some_and(|e| e.blocks.iter().filter(|b| b.acked).count() >= 5)
        })
        .await;
        (a, b, id)
    };
    a.stop().await;
    b.stop().await;
    let sent_before = a.status().packets_sent;
    let a_store = p.alice.open();
    let e = a_store.queue_get(id).unwrap().expect("entry still queued");
    let acked = e.blocks.iter().filter(|b| b.acked).count();
    assert_eq!(e.blocks.len(), total);
    assert!(acked < total, "stopped too late to test a restart");
    let b_store = p.bob.open();
    let partial = b_store
        .kv_list(mailproxyd::store::KvTable::Partial)
        .unwrap()
        .len();
    eprintln!("restart: alice had {acked}/{total} blocks acked, bob held {partial} blocks");
    let a = Engine::start(a_store.clone(), p.alice.config(&p.net, &p.keys));
    let b = Engine::start(b_store.clone(), p.bob.config(&p.net, &p.keys));
    wait_for("bob's inbox", Duration::from_secs(120), || {
        b_store.inbox_len().unwrap() >= 1
    })
    .await;
    wait_for("alice's queue to drain", Duration::from_secs(60), || {
        a_store.queue_len().unwrap() == 0
    })
    .await;
    // Every copy in flight, from both runs, reaches bob before the check.
    wait_every_copy_retrieved(&p, sent_before + a.status().packets_sent).await;
    assert_eq!(delivered(&b_store), vec![expected_delivery(&p.alice, &big)]);
    a.stop().await;
    b.stop().await;
    p.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_bounces_when_the_recipient_provider_is_down() {
    let mut p = pair(20).await;
    p.net.stop_node("provider2").await;
    let a_store = p.alice.open();
    let msg = message(1000, 5);
    enqueue(&a_store, "bob@provider2", &msg, 3);
    let a = Engine::start(a_store.clone(), p.alice.config(&p.net, &p.keys));
    wait_for("the bounce", Duration::from_secs(60), || {
        a_store.inbox_len().unwrap() == 1
    })
    .await;
    wait_for("the entry to go", Duration::from_secs(10), || {
        a_store.queue_len().unwrap() == 0
    })
    .await;
    let report = String::from_utf8(inbox(&a_store).remove(0)).unwrap();
    assert!(report.contains("multipart/report; report-type=delivery-status"));
    assert!(report.contains("Final-Recipient: rfc822; bob@provider2"));
    assert!(
        report.contains(std::str::from_utf8(&msg).unwrap()),
        "original attached"
    );
    wait_for("the bounce count", Duration::from_secs(5), || {
        a.status().bounced == 1
    })
    .await;
    a.stop().await;
    p.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_is_announced_and_bounces_while_the_own_provider_is_unreachable() {
    let mut p = pair(20).await;
    // Alice's own provider is down: the engine never gets a session.
    p.net.stop_node("provider1").await;
    let a_store = p.alice.open();
    let cfg = p.alice.config(&p.net, &p.keys);
    let mut events = cfg.events.subscribe();
    let a = Engine::start(a_store.clone(), cfg);
    let msg = message(500, 9);
    let id = enqueue(&a_store, "bob@provider2", &msg, 3);
    a.wake();
    let mut kinds = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !kinds.iter().any(|k| matches!(k, EventKind::Bounced { .. })) {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("timed out waiting for the bounce event")
            .unwrap();
        kinds.push(ev.kind);
    }
    let queued = kinds
        .iter()
        .position(|k| matches!(k, EventKind::Queued { id: q, .. } if *q == id))
        .expect("a Queued event without a session");
    let bounced = kinds
        .iter()
        .position(|k| matches!(k, EventKind::Bounced { id: b, .. } if *b == id))
        .unwrap();
    assert!(queued < bounced, "{kinds:?}");
    assert!(
        !kinds.iter().any(|k| matches!(k, EventKind::ConnectionUp)),
        "{kinds:?}"
    );
    wait_for("the report", Duration::from_secs(10), || {
        a_store.inbox_len().unwrap() == 1 && a_store.queue_len().unwrap() == 0
    })
    .await;
    let report = String::from_utf8(inbox(&a_store).remove(0)).unwrap();
    assert!(report.contains("Final-Recipient: rfc822; bob@provider2"));
    assert!(report.contains(std::str::from_utf8(&msg).unwrap()));
    assert_ne!(a.status().state, mailproxyd::engine::ConnState::Up);
    a.stop().await;
    p.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_uses_the_saved_document_without_the_authority() {
    let p = pair(20).await;
    let a_store = p.alice.open();
    let a = Engine::start(a_store.clone(), p.alice.config(&p.net, &p.keys));
    wait_for("a document", Duration::from_secs(30), || {
        a.status().document_epoch.is_some() && a.status().connected
    })
    .await;
    a.stop().await;
    // Point the engine at a dead authority: the saved document must suffice.
    let mut cfg = p.alice.config(&p.net, &p.keys);
    let Pki::Nonvoting(a) = &mut cfg.authority else {
        panic!("a nonvoting network");
    };
    a.address = "127.0.0.1:9".into();
    let b_store = p.bob.open();
    let b = Engine::start(b_store.clone(), p.bob.config(&p.net, &p.keys));
    let a = Engine::start(a_store.clone(), cfg);
    deliver_one(&p, &a, &a_store, &b_store, &message(100, 6)).await;
    a.stop().await;
    b.stop().await;
    p.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreliable_messages_go_without_surbs() {
    let p = pair(20).await;
    let a_store = p.alice.open();
    let b_store = p.bob.open();
    let msg = message(120 * 1024, 7);
    enqueue_with(&a_store, "bob@provider2", &msg, 3600, true);
    let a = Engine::start(a_store.clone(), p.alice.config(&p.net, &p.keys));
    // The entry is done once every block has left, without any ACK.
    wait_for("the entry to leave", Duration::from_secs(60), || {
        a_store.queue_len().unwrap() == 0
    })
    .await;
    assert_eq!(a.status().acks, 0);
    assert!(a_store
        .kv_list(mailproxyd::store::KvTable::Surb)
        .unwrap()
        .is_empty());
    let b = Engine::start(b_store.clone(), p.bob.config(&p.net, &p.keys));
    wait_for("delivery", Duration::from_secs(60), || {
        b_store.inbox_len().unwrap() == 1
    })
    .await;
    assert_eq!(delivered(&b_store), vec![expected_delivery(&p.alice, &msg)]);
    a.stop().await;
    b.stop().await;
    p.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_provider_pin_refuses_the_connection() {
    let p = pair(20).await;
    let a_store = p.alice.open();
    let mut cfg = p.alice.config(&p.net, &p.keys);
    cfg.provider_key_pin = Some([1; 32]);
    let a = Engine::start(a_store.clone(), cfg);
    wait_for("an error", Duration::from_secs(30), || {
        a.status().last_error.is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let st = a.status();
    assert!(!st.connected, "{st:?}");
    assert_eq!(st.packets_sent, 0);
    a.stop().await;
    p.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_engines_send_loop_decoys_when_asked() {
    let p = pair(20).await;
    let a_store = p.alice.open();
    let mut cfg = p.alice.config(&p.net, &p.keys);
    cfg.send_decoy_traffic = true;
    let a = Engine::start(a_store.clone(), cfg);
    wait_for("decoys", Duration::from_secs(30), || {
        a.status().packets_sent >= 5
    })
    .await;
    // Nothing was queued, nothing was delivered or recorded.
    assert_eq!(a.status().acks, 0);
    assert!(a_store
        .kv_list(mailproxyd::store::KvTable::Surb)
        .unwrap()
        .is_empty());
    a.stop().await;
    p.net.shutdown().await;
}

/// Not a speed assertion: prints how long draining a full spool takes,
/// against the polling interval the original would have needed per block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_is_drained_without_waiting_for_polls() {
    let p = pair(20).await;
    let a_store = p.alice.open();
    let msg = message(5 * 1024 * 1024, 8);
    let blocks = katzenpost::block::block_count(msg.len()).unwrap();
    enqueue(&a_store, "bob@provider2", &msg, 3600);
    let a = Engine::start(a_store.clone(), p.alice.config(&p.net, &p.keys));
    // Everything lands in bob's spool before bob starts.
    wait_for("alice's queue to drain", Duration::from_secs(180), || {
        a_store.queue_len().unwrap() == 0
    })
    .await;
    let b_store = p.bob.open();
    let mut cfg = p.bob.config(&p.net, &p.keys);
    let poll = Duration::from_secs(2);
    cfg.timings.polling_interval = poll;
    let started = std::time::Instant::now();
    let b = Engine::start(b_store.clone(), cfg);
    wait_for("delivery", Duration::from_secs(180), || {
        b_store.inbox_len().unwrap() == 1
    })
    .await;
    let took = started.elapsed();
    assert_eq!(delivered(&b_store), vec![expected_delivery(&p.alice, &msg)]);
    eprintln!(
        "drain: {blocks} blocks retrieved and delivered in {:.2} s; one block per poll would take {} s ({:.1}x)",
        took.as_secs_f64(),
        poll.as_secs() * u64::from(blocks),
        (poll.as_secs_f64() * f64::from(blocks)) / took.as_secs_f64()
    );
    a.stop().await;
    b.stop().await;
    p.net.shutdown().await;
}

fn collect(
    events: &mut tokio::sync::broadcast::Receiver<mailproxy_proto::Event>,
) -> Vec<mailproxy_proto::EventKind> {
    let mut out = Vec::new();
    while let Ok(e) = events.try_recv() {
        out.push(e.kind);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_discovery_finds_the_key_and_sends_the_parked_mail_across_a_restart() {
    use mailproxy_proto::EventKind as K;
    let p = pair(20).await;
    // Alice does not know bob's key; his provider does.
    p.keys.lock().unwrap().remove("bob@provider2");
    let a_store = p.alice.open();
    let b_store = p.bob.open();
    let (m1, m2) = (message(300, 11), message(400, 12));
    enqueue(&a_store, "bob@provider2", &m1, 3600);
    enqueue(&a_store, "bob@provider2", &m2, 3600);
    let bus = mailproxyd::events::EventBus::new(4096);
    let mut events = bus.subscribe();
    let cfg = |polling: Duration| {
        let mut c = p.alice.config(&p.net, &p.keys);
        c.key_discovery = true;
        c.events = bus.clone();
        // A query is not re-sent before ETA + slack: long enough here that
        // a re-send would be a bug.
        c.timings.retransmit_slack = Duration::from_secs(60);
        c.timings.polling_interval = polling;
        c
    };
    // First run: the query goes out; the reply waits in alice's spool (her
    // next poll is 30 s away) when the engine stops.
    let a = Engine::start(a_store.clone(), cfg(Duration::from_secs(30)));
    wait_for("the key query", Duration::from_secs(30), || {
        a.status().packets_sent >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.stop().await;
    assert_eq!(a.status().packets_sent, 1, "one query for two messages");
    assert_eq!(
        a_store.queue_len().unwrap(),
        2,
        "the mail is parked in the queue"
    );
    assert!(p.keys.lock().unwrap().get("bob@provider2").is_none());
    assert_eq!(
        a_store
            .kv_list(mailproxyd::store::KvTable::Surb)
            .unwrap()
            .len(),
        1,
        "the outstanding query's SURB is kept"
    );
    drop(a);
    // Second run: the reply is fetched, the key stored, the mail sent.
    let a = Engine::start(a_store.clone(), cfg(Duration::from_millis(200)));
    let b = Engine::start(b_store.clone(), p.bob.config(&p.net, &p.keys));
    wait_for("bob's inbox", Duration::from_secs(60), || {
        b_store.inbox_len().unwrap() == 2
    })
    .await;
    wait_for("alice's queue to drain", Duration::from_secs(60), || {
        a_store.queue_len().unwrap() == 0
    })
    .await;
    let st = a.status();
    assert_eq!(
        st.packets_sent - st.retransmissions,
        2,
        "two blocks and no second query: {st:?}"
    );
    assert_eq!(
        p.keys.lock().unwrap().get("bob@provider2"),
        Some(&p.bob.identity_public())
    );
    let mut got = delivered(&b_store);
    got.sort_by_key(|m| m.len());
    assert_eq!(
        got,
        vec![
            expected_delivery(&p.alice, &m1),
            expected_delivery(&p.alice, &m2)
        ]
    );
    // One notice at alice: the key, a request to verify it, no contents.
    let notices = inbox(&a_store);
    assert_eq!(notices.len(), 1);
    let notice = String::from_utf8(notices[0].clone()).unwrap();
    let bob_b64 = base64::engine::general_purpose::STANDARD.encode(p.bob.identity_public());
    assert!(notice.contains("Subject: Key Discovery\r\n"), "{notice}");
    assert!(notice.contains(&bob_b64));
    assert!(notice.contains("out of band"));
    assert!(!notice.contains("line 0 of message"), "no message contents");
    let ev = collect(&mut events);
    let discovered = ev
        .iter()
        .filter(|k| {
            **k == K::KeyDiscovered {
                to: "bob@provider2".into(),
            }
        })
        .count();
    assert_eq!(discovered, 1, "{ev:?}");
    assert!(ev.contains(&K::Report {
        subject: "Key Discovery".into()
    }));
    a.stop().await;
    b.stop().await;
    p.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_discovery_failures_bounce_the_parked_mail() {
    use mailproxy_proto::EventKind as K;
    let p = pair(20).await;
    let a_store = p.alice.open();
    let (m1, m2, m3) = (message(300, 21), message(300, 22), message(300, 23));
    // Unknown at bob's provider (status 2), twice: one query, two bounces.
    enqueue(&a_store, "nobody@provider2", &m1, 3600);
    enqueue(&a_store, "nobody@provider2", &m2, 3600);
    // A provider that is not in the PKI.
    enqueue(&a_store, "carol@provider9", &m3, 3600);
    let bus = mailproxyd::events::EventBus::new(4096);
    let mut events = bus.subscribe();
    let mut cfg = p.alice.config(&p.net, &p.keys);
    cfg.key_discovery = true;
    cfg.events = bus.clone();
    cfg.timings.retransmit_slack = Duration::from_secs(60);
    let a = Engine::start(a_store.clone(), cfg);
    wait_for("three bounces", Duration::from_secs(60), || {
        a_store.inbox_len().unwrap() == 3
    })
    .await;
    wait_for("the queue to empty", Duration::from_secs(10), || {
        a_store.queue_len().unwrap() == 0
    })
    .await;
    let reports: Vec<String> = inbox(&a_store)
        .into_iter()
        .map(|m| String::from_utf8(m).unwrap())
        .collect();
    for (to, original) in [
        ("nobody@provider2", &m1),
        ("nobody@provider2", &m2),
        ("carol@provider9", &m3),
    ] {
        let original = std::str::from_utf8(original).unwrap();
        let r = reports
            .iter()
            .find(|r| r.contains(original))
            .expect("a bounce with the original attached");
        assert!(r.contains(&format!("Final-Recipient: rfc822; {to}")));
        assert!(r.contains("key discovery failed"), "{r}");
    }
    assert!(reports
        .iter()
        .any(|r| r.contains("the provider has no key for this user")));
    assert!(reports.iter().any(|r| r.contains("provider9")));
    assert_eq!(
        a.status().packets_sent,
        1,
        "one query for nobody, none for provider9"
    );
    // The status counter follows the store write that removed the entry.
    wait_for("the bounce count", Duration::from_secs(5), || {
        a.status().bounced == 3
    })
    .await;
    assert!(p.keys.lock().unwrap().get("nobody@provider2").is_none());
    wait_for("the SURB record to go", Duration::from_secs(5), || {
        a_store
            .kv_list(mailproxyd::store::KvTable::Surb)
            .unwrap()
            .is_empty()
    })
    .await;
    let ev = collect(&mut events);
    for to in ["nobody@provider2", "carol@provider9"] {
        let n = ev
            .iter()
            .filter(|k| matches!(k, K::KeyDiscoveryFailed { to: t, .. } if t == to))
            .count();
        assert_eq!(n, 1, "{to}: {ev:?}");
    }
    assert_eq!(
        ev.iter().filter(|k| matches!(k, K::Bounced { .. })).count(),
        3
    );
    a.stop().await;
    p.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_discovery_gives_up_after_the_urgent_queue_lifetime() {
    let mut p = pair(20).await;
    // The keyserver's provider is down: the query is lost.
    p.net.stop_node("provider2").await;
    let a_store = p.alice.open();
    let msg = message(300, 31);
    enqueue(&a_store, "bob2@provider2", &msg, 3600);
    let mut cfg = p.alice.config(&p.net, &p.keys);
    cfg.key_discovery = true;
    cfg.timings.retransmit_slack = Duration::from_secs(60);
    cfg.timings.urgent_queue_lifetime = Duration::from_secs(4);
    let started = std::time::Instant::now();
    let a = Engine::start(a_store.clone(), cfg);
    wait_for("the bounce", Duration::from_secs(60), || {
        a_store.inbox_len().unwrap() == 1
    })
    .await;
    let r0 = String::from_utf8(inbox(&a_store).remove(0)).unwrap();
    assert!(started.elapsed() >= Duration::from_secs(4), "{r0}");
    let r = String::from_utf8(inbox(&a_store).remove(0)).unwrap();
    assert!(r.contains("urgent queue lifetime"), "{r}");
    assert!(r.contains(std::str::from_utf8(&msg).unwrap()));
    assert_eq!(a.status().packets_sent, 1, "the query was not repeated");
    wait_for("the entry to go", Duration::from_secs(5), || {
        a_store.queue_len().unwrap() == 0
    })
    .await;
    a.stop().await;
    p.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voting_authorities_bad_documents_are_refused_and_mail_flows_with_one_peer_down() {
    let p = pair_on(20, 3).await;
    let a_store = p.alice.open();
    // Every peer spoils its documents the same way: each is refused, and
    // the error names the check that failed.
    for (fault, check) in [
        (
            ServeFault::OwnSignatureOnly,
            "threshold check failed: 1 valid and 0 invalid signature(s) from 3 peer(s), 2 valid needed",
        ),
        (
            ServeFault::Forged,
            "threshold check failed: 1 valid and 2 invalid signature(s)",
        ),
        (ServeFault::ExtraSigner, "signer check failed"),
    ] {
        for a in &p.net.authorities {
            a.set_fault(Some(fault));
        }
        let e = Engine::start(a_store.clone(), p.alice.config(&p.net, &p.keys));
        wait_for(check, Duration::from_secs(30), || {
            e.status().last_error.is_some_and(|m| m.contains(check))
        })
        .await;
        assert_eq!(e.status().document_epoch, None, "{fault:?}");
        e.stop().await;
    }
    // One peer down and one serving a document signed by itself only: the
    // engines go on to the next peer until the good one answers.
    for a in &p.net.authorities {
        a.set_fault(None);
    }
    p.net.authorities[0]
        .refuse
        .store(true, std::sync::atomic::Ordering::Relaxed);
    p.net.authorities[1].set_fault(Some(ServeFault::OwnSignatureOnly));
    let a = Engine::start(a_store.clone(), p.alice.config(&p.net, &p.keys));
    let b_store = p.bob.open();
    let b = Engine::start(b_store.clone(), p.bob.config(&p.net, &p.keys));
    wait_for("documents", Duration::from_secs(30), || {
        [&a, &b]
            .iter()
            .all(|e| e.status().document_epoch.is_some() && e.status().connected)
    })
    .await;
    deliver_one(&p, &a, &a_store, &b_store, &message(3000, 9)).await;
    a.stop().await;
    b.stop().await;
    p.net.shutdown().await;
}

fn socks5(address: UpstreamProxyAddress) -> Arc<Upstream> {
    Arc::new(Upstream::new(
        Some(UpstreamProxyConfig {
            kind: UpstreamProxyKind::Socks5,
            address,
            credentials: None,
        }),
        vec!["tcp".into(), "tcp4".into(), "tcp6".into()],
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_behind_a_real_socks5_proxy_exchange_mail_and_nothing_bypasses_it() {
    let p = pair(20).await;
    let proxy = free_port();
    let upstream = socks5(UpstreamProxyAddress::Tcp(proxy));
    // The proxy is down: nothing connects, and the status says why.
    let a_store = p.alice.open();
    let mut cfg = p.alice.config(&p.net, &p.keys);
    cfg.upstream = upstream.clone();
    let a = Engine::start(a_store.clone(), cfg);
    let unreachable = format!("upstream proxy {proxy} is unreachable");
    wait_for("the proxy error", Duration::from_secs(30), || {
        a.status()
            .last_error
            .is_some_and(|e| e.contains(&unreachable))
    })
    .await;
    let st = a.status();
    assert!(!st.connected, "{st:?}");
    assert_eq!(st.document_epoch, None, "the authority was reached: {st:?}");
    assert!(client_peers(&p.net, "provider1").is_empty());
    a.stop().await;

    // The proxy is up: alice and bob exchange mail through it, alice over
    // TCP and bob over a Unix socket (socat relays it to microsocks).
    let _socks = microsocks(proxy).await;
    let sockdir = tempfile::tempdir().unwrap();
    let sock = sockdir.path().join("socks.sock");
    let _relay = unix_relay(&sock, proxy).await;
    let b_store = p.bob.open();
    let mut a_cfg = p.alice.config(&p.net, &p.keys);
    a_cfg.upstream = upstream.clone();
    let mut b_cfg = p.bob.config(&p.net, &p.keys);
    b_cfg.upstream = socks5(UpstreamProxyAddress::Unix(sock));
    let a = Engine::start(a_store.clone(), a_cfg);
    let b = Engine::start(b_store.clone(), b_cfg);
    deliver_one(&p, &a, &a_store, &b_store, &message(2000, 7)).await;
    assert_only_proxied(&p.net, &[("provider1", "alice"), ("provider2", "bob")]);
    a.stop().await;
    b.stop().await;
    p.net.shutdown().await;
}

/// PreferedTransports against real connections: the providers also
/// advertise a dead address under "onion". Preferring it, the engine dials
/// only that (nothing reaches the provider); preferring tcp4, mail flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefered_transports_decide_which_descriptor_address_is_dialed() {
    let dead = free_port();
    let p = pair_with(20, 0, Some(("onion".into(), dead.to_string()))).await;
    let prefer = |t: [&str; 2]| Arc::new(Upstream::new(None, t.map(String::from).to_vec()));
    let a_store = p.alice.open();
    let mut cfg = p.alice.config(&p.net, &p.keys);
    cfg.upstream = prefer(["onion", "tcp4"]);
    let a = Engine::start(a_store.clone(), cfg);
    let refused = format!("connect to {dead}");
    wait_for(
        "the onion address to be dialed",
        Duration::from_secs(30),
        || a.status().last_error.is_some_and(|e| e.contains(&refused)),
    )
    .await;
    assert!(!a.status().connected);
    assert!(client_peers(&p.net, "provider1").is_empty());
    a.stop().await;

    let b_store = p.bob.open();
    let mut a_cfg = p.alice.config(&p.net, &p.keys);
    a_cfg.upstream = prefer(["tcp4", "onion"]);
    let mut b_cfg = p.bob.config(&p.net, &p.keys);
    b_cfg.upstream = prefer(["tcp4", "onion"]);
    let a = Engine::start(a_store.clone(), a_cfg);
    let b = Engine::start(b_store.clone(), b_cfg);
    deliver_one(&p, &a, &a_store, &b_store, &message(500, 9)).await;
    a.stop().await;
    b.stop().await;
    p.net.shutdown().await;
}
