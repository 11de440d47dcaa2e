//! A real network on 127.0.0.1: authority, 3 layers x 2 mixes, 2 providers,
//! all speaking the link protocol. A test client registered at provider1
//! sends packets through provider1 -> 3 mixes -> provider2.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use katzenpost::block::ForwardBody;
use katzenpost::epoch::EpochClock;
use katzenpost::kaetzchen::{self, KeyserverRequest, KeyserverResponse, SurbPayload};
use katzenpost::path::{select_paths, PathRequest, SurbRequest};
use katzenpost::pki::document::Document;
use katzenpost::sphinx::{self, SurbKeys};
use katzenpost::wire::commands::{consensus_status, descriptor_status, Command};
use katzenpost::wire::handshake::{ExpectPeer, LocalIdentity};
use katzenpost::wire::session::Session;
use rand::rngs::OsRng;
use rand::RngCore;
use testnet::config::Params;
use testnet::link::{dial, recv, send, session_config};
use testnet::network::{init, Network, Shape};
use tokio::net::TcpStream;

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

async fn start(period: u64) -> (tempfile::TempDir, Network) {
    let dir = tempfile::tempdir().unwrap();
    let mut params = Params::demo();
    params.epoch_period_secs = period;
    params.document.mu = 1.0 / 5.0; // 5 ms mean per hop
    params.document.mu_max_delay = 20;
    init(
        dir.path(),
        &Shape {
            params,
            ..Shape::default()
        },
    )
    .unwrap();
    let net = Network::start(dir.path(), false).await.unwrap();
    net.wait_ready(Duration::from_secs(30)).await.unwrap();
    (dir, net)
}

struct Client {
    session: Session<TcpStream>,
    seq: u32,
}

impl Client {
    async fn connect(net: &Network, provider: &str, user: &str, link: [u8; 32]) -> Client {
        let node = net.node(provider).unwrap();
        let doc = node.document(node.clock.now().epoch).unwrap();
        let desc = doc.provider_by_name(provider).unwrap().clone();
        let identity = LocalIdentity::new(link, user.as_bytes().to_vec()).unwrap();
        let config = session_config(identity, Arc::new(ExpectPeer::from_descriptor(&desc)));
        let addr = desc.addresses["tcp4"][0].clone();
        Client {
            session: dial(&addr, &config).await.unwrap(),
            seq: 0,
        }
    }

    /// Retrieves until a MessageAck arrives (or the time runs out).
    async fn next_ack(&mut self, within: Duration) -> Option<([u8; 16], Vec<u8>)> {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            send(
                &mut self.session,
                &Command::RetrieveMessage { sequence: self.seq },
            )
            .await
            .unwrap();
            match recv(&mut self.session).await.unwrap() {
                Command::MessageAck {
                    sequence,
                    surb_id,
                    payload,
                    ..
                } => {
                    assert_eq!(sequence, self.seq);
                    self.seq += 1;
                    return Some((surb_id, payload));
                }
                Command::Message { sequence, .. } => {
                    assert_eq!(sequence, self.seq);
                    self.seq += 1;
                }
                Command::MessageEmpty { sequence } => {
                    assert_eq!(sequence, self.seq);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        None
    }
}

fn register(net: &Network, provider: &str, user: &str, identity: Option<[u8; 32]>) -> [u8; 32] {
    let mut link = [0u8; 32];
    OsRng.fill_bytes(&mut link);
    let p = net.node(provider).unwrap().provider.as_ref().unwrap();
    p.add_user(user, sphinx::public_key(&link), identity)
        .unwrap();
    link
}

/// A forward packet from alice@provider1 to `recipient`@`dst` with a SURB back.
fn packet(
    doc: &Document,
    clock: &EpochClock,
    dst: &str,
    recipient: &[u8],
    payload: &[u8],
) -> (Vec<u8>, SurbKeys, [u8; 16]) {
    let mut surb_id = [0u8; 16];
    OsRng.fill_bytes(&mut surb_id);
    let req = PathRequest {
        src_provider: "provider1",
        dst_provider: dst,
        recipient,
        surb: Some(SurbRequest {
            own_user: b"alice",
            surb_id,
        }),
    };
    let paths = select_paths(doc, clock, &req, &mut OsRng, now).unwrap();
    let (surb, keys) = sphinx::create_surb(&mut OsRng, paths.surb.as_ref().unwrap()).unwrap();
    let body = ForwardBody {
        surb: Some(&surb),
        user_payload: payload,
    }
    .encode()
    .unwrap();
    (
        sphinx::create_packet(&mut OsRng, &paths.forward, &body).unwrap(),
        keys,
        surb_id,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_cross_the_network_and_acks_come_back() {
    let (_dir, net) = start(600).await;
    let alice = register(&net, "provider1", "alice", None);
    register(&net, "provider2", "bob", Some([0xb0; 32]));
    let mut client = Client::connect(&net, "provider1", "alice", alice).await;
    let p1 = net.node("provider1").unwrap();
    let doc = p1.document(p1.clock.now().epoch).unwrap();

    // The document the provider proxies verifies with the authority's key.
    send(
        &mut client.session,
        &Command::GetConsensus { epoch: doc.epoch },
    )
    .await
    .unwrap();
    let Command::Consensus {
        error_code: consensus_status::OK,
        payload,
    } = recv(&mut client.session).await.unwrap()
    else {
        panic!("no consensus")
    };
    let auth_key: [u8; 32] = hex::decode(&net.spec.authority.identity_public)
        .unwrap()
        .try_into()
        .unwrap();
    let verified = Document::verify_and_parse(
        &payload,
        &ed25519_dalek::VerifyingKey::from_bytes(&auth_key).unwrap(),
        now().as_secs(),
    )
    .unwrap();
    assert_eq!(verified.topology.len(), 3);
    assert!(verified.topology.iter().all(|l| l.len() == 2));
    assert_eq!(verified.providers.len(), 2);

    // A block to bob: lands in bob's spool at provider2, and the SURB-ACK comes back.
    let block = vec![0x77u8; katzenpost::geometry::USER_FORWARD_PAYLOAD_LENGTH];
    let (pkt, keys, surb_id) = packet(&doc, &p1.clock, "provider2", b"bob", &block);
    send(&mut client.session, &Command::SendPacket(pkt.clone()))
        .await
        .unwrap();
    let (id, reply) = client
        .next_ack(Duration::from_secs(20))
        .await
        .expect("SURB-ACK");
    assert_eq!(id, surb_id);
    assert_eq!(
        kaetzchen::classify_surb_payload(&keys.decrypt(&reply).unwrap()).unwrap(),
        SurbPayload::Ack
    );
    let p2 = net.node("provider2").unwrap().provider.as_ref().unwrap();
    assert_eq!(p2.spool_len("bob").unwrap(), 1);

    // The same packet again is dropped as a replay at provider1.
    let before = p1.counters.dropped_replay.load(Ordering::Relaxed);
    send(&mut client.session, &Command::SendPacket(pkt))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while p1.counters.dropped_replay.load(Ordering::Relaxed) == before {
        assert!(tokio::time::Instant::now() < deadline, "replay not dropped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(p2.spool_len("bob").unwrap(), 1);

    // The keyserver at provider2 answers with bob's identity key.
    let (pkt, keys, _) = packet(
        &doc,
        &p1.clock,
        "provider2",
        b"+keyserver",
        &KeyserverRequest::new("bob").encode(),
    );
    send(&mut client.session, &Command::SendPacket(pkt))
        .await
        .unwrap();
    let (_, reply) = client
        .next_ack(Duration::from_secs(20))
        .await
        .expect("keyserver reply");
    let plain = keys.decrypt(&reply).unwrap();
    let SurbPayload::KaetzchenReply(resp) = kaetzchen::classify_surb_payload(&plain).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        KeyserverResponse::decode(resp)
            .unwrap()
            .identity_key_for("bob")
            .unwrap(),
        [0xb0; 32]
    );

    // The loop service answers too.
    let (pkt, keys, _) = packet(&doc, &p1.clock, "provider1", b"+loop", &[]);
    send(&mut client.session, &Command::SendPacket(pkt))
        .await
        .unwrap();
    let (_, reply) = client
        .next_ack(Duration::from_secs(20))
        .await
        .expect("loop reply");
    let plain = keys.decrypt(&reply).unwrap();
    assert_eq!(
        kaetzchen::classify_surb_payload(&plain).unwrap(),
        SurbPayload::KaetzchenReply(&[])
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authority_refuses_a_node_not_on_its_whitelist() {
    let (_dir, net) = start(600).await;
    let stranger = ed25519_dalek::SigningKey::generate(&mut OsRng);
    let x = katzenpost::wire::handshake::ed25519_secret_to_x25519(&stranger.to_bytes());
    let identity = LocalIdentity::new(*x, stranger.verifying_key().to_bytes().to_vec()).unwrap();
    let auth_key: [u8; 32] = hex::decode(&net.spec.authority.identity_public)
        .unwrap()
        .try_into()
        .unwrap();
    let config = session_config(
        identity,
        Arc::new(ExpectPeer::authority(&auth_key).unwrap()),
    );
    let addr = net.spec.authority.address.to_string();
    let result = testnet::link::request(
        &addr,
        &config,
        &Command::PostDescriptor {
            epoch: 1,
            payload: vec![1],
        },
    )
    .await;
    assert!(
        result.is_err(),
        "the handshake must fail for a stranger, got {result:?}"
    );
    // A whitelisted node's descriptor signed by someone else is forbidden too.
    let mix1 = net.node("mix1").unwrap();
    let e = mix1.clock.now().epoch;
    let facts = testnet::descriptor::NodeFacts {
        name: "mix1",
        role: testnet::config::Role::Mix,
        link_public: [1; 32],
        address: "127.0.0.1:9".parse().unwrap(),
        extra_transport: None,
    };
    let keys = (e..e + 3).map(|x| (x, [2; 32])).collect();
    let desc = testnet::descriptor::signed_descriptor(facts, &stranger, keys, now().as_secs(), 600)
        .unwrap();
    let id = mix1.config.identity.clone();
    let x = katzenpost::wire::handshake::ed25519_secret_to_x25519(&id.to_bytes());
    let identity = LocalIdentity::new(*x, id.verifying_key().to_bytes().to_vec()).unwrap();
    let config = session_config(
        identity,
        Arc::new(ExpectPeer::authority(&auth_key).unwrap()),
    );
    let reply = testnet::link::request(
        &addr,
        &config,
        &Command::PostDescriptor {
            epoch: e,
            payload: desc.signed,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        reply,
        Command::PostDescriptorStatus {
            error_code: descriptor_status::FORBIDDEN
        }
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_keep_flowing_across_an_epoch_rollover() {
    let period = 12;
    let (_dir, net) = start(period).await;
    let alice = register(&net, "provider1", "alice", None);
    register(&net, "provider2", "bob", None);
    let p1 = net.node("provider1").unwrap().clone();
    let start_epoch = p1.clock.now().epoch;
    let mut client = Client::connect(&net, "provider1", "alice", alice).await;
    let mut acked_epochs = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3 * period);
    while acked_epochs.len() < 2 && tokio::time::Instant::now() < deadline {
        let t = p1.clock.now();
        let Some(doc) = p1.document(t.epoch) else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(_) = select_paths(
            &doc,
            &p1.clock,
            &PathRequest {
                src_provider: "provider1",
                dst_provider: "provider2",
                recipient: b"bob",
                surb: None,
            },
            &mut OsRng,
            now,
        ) else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let (pkt, keys, _) = packet(&doc, &p1.clock, "provider2", b"bob", &[t.epoch as u8]);
        send(&mut client.session, &Command::SendPacket(pkt))
            .await
            .unwrap();
        if let Some((_, reply)) = client.next_ack(Duration::from_secs(5)).await {
            if keys.decrypt(&reply).is_ok() {
                acked_epochs.insert(t.epoch);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        acked_epochs.len() >= 2,
        "ACKs in epochs {acked_epochs:?} starting from {start_epoch}"
    );
    net.shutdown().await;
}
