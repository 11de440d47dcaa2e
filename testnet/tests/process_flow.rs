//! A packet's whole life through in-memory nodes (no network): client ->
//! provider A -> 3 mixes -> provider B -> spool, and the SURB-ACK back
//! through the mixes to A's spool, where the client decrypts it. Also the
//! keyserver and loop services, replays, and the drop rules.

use std::time::Duration;

use katzenpost::block::ForwardBody;
use katzenpost::epoch::{EpochClock, EpochTime};
use katzenpost::kaetzchen::{self, KeyserverRequest, KeyserverResponse, Service, SurbPayload};
use katzenpost::path::recipient_id;
use katzenpost::sphinx::{self, PathHop, RoutingCommand, SurbKeys};
use rand::rngs::OsRng;
use testnet::mixkeys::MixKeyring;
use testnet::process::{process_packet, DropReason, Ingress, NodeRole, Outcome, ProviderContext};
use testnet::replay::ReplayFilters;
use testnet::spool::SpoolEntry;

const PERIOD: Duration = Duration::from_secs(600);

struct Node {
    id: [u8; 32],
    keys: MixKeyring,
    replay: ReplayFilters,
    _dir: tempfile::TempDir,
}

impl Node {
    fn new(tag: u8, epoch: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut keys = MixKeyring::open(dir.path()).unwrap();
        keys.ensure(&mut OsRng, epoch).unwrap();
        Node {
            id: [tag; 32],
            keys,
            replay: ReplayFilters::default(),
            _dir: dir,
        }
    }
    fn hop(&self, epoch: u64, commands: Vec<RoutingCommand>) -> PathHop {
        PathHop {
            id: self.id,
            public_key: self.keys.public_keys(epoch)[&epoch],
            commands,
        }
    }
}

struct Users;
impl ProviderContext for Users {
    fn service_for(&self, r: &[u8; 64]) -> Option<Service> {
        if kaetzchen::recipient_is_endpoint(r, "+keyserver") {
            Some(Service::Keyserver)
        } else if kaetzchen::recipient_is_endpoint(r, "+loop") {
            Some(Service::Loop)
        } else {
            None
        }
    }
    fn user_exists(&self, u: &str) -> bool {
        u == "alice" || u == "bob"
    }
    fn identity_key(&self, u: &str) -> Option<[u8; 32]> {
        (u == "bob").then_some([0xbb; 32])
    }
}

struct Net {
    a: Node,
    mixes: Vec<Node>,
    b: Node,
    now: EpochTime,
}

impl Net {
    fn new() -> Self {
        let now = EpochClock::new(PERIOD).at(Duration::from_secs(1_795_521_600 + 100));
        let e = now.epoch;
        Net {
            a: Node::new(1, e),
            mixes: (2..5).map(|t| Node::new(t, e)).collect(),
            b: Node::new(9, e),
            now,
        }
    }

    fn node_mut(&mut self, id: [u8; 32]) -> (&mut Node, bool) {
        if id == self.a.id {
            (&mut self.a, true)
        } else if id == self.b.id {
            (&mut self.b, true)
        } else {
            (
                self.mixes
                    .iter_mut()
                    .find(|m| m.id == id)
                    .expect("known node"),
                false,
            )
        }
    }

    /// Runs a packet from `first` until it leaves the network; returns the final outcome.
    fn run(&mut self, mut next: [u8; 32], mut packet: Vec<u8>, mut ingress: Ingress) -> Outcome {
        let (now, ctx) = (self.now, Users);
        loop {
            let (node, provider) = self.node_mut(next);
            let role = if provider {
                NodeRole::Provider(&ctx)
            } else {
                NodeRole::Mix
            };
            match process_packet(
                packet,
                ingress,
                &role,
                &node.keys,
                &mut node.replay,
                now,
                PERIOD,
            ) {
                Outcome::Forward {
                    next: n,
                    packet: p,
                    delay,
                } => {
                    assert!(delay <= Duration::from_millis(100));
                    next = n;
                    packet = p;
                    ingress = Ingress::Node;
                }
                other => return other,
            }
        }
    }

    /// A forward packet from alice (at A) to `recipient` at B, with a SURB back to alice.
    fn send(&self, recipient: &str, user_payload: &[u8]) -> (Vec<u8>, SurbKeys, [u8; 16]) {
        let e = self.now.epoch;
        let surb_id = [0x5u8; 16];
        let mut reverse: Vec<PathHop> = self
            .mixes
            .iter()
            .map(|m| m.hop(e, vec![RoutingCommand::NodeDelay(7)]))
            .collect();
        reverse.push(self.a.hop(
            e,
            vec![
                RoutingCommand::Recipient(recipient_id(b"alice").unwrap()),
                RoutingCommand::SurbReply(surb_id),
            ],
        ));
        let (surb, keys) = sphinx::create_surb(&mut OsRng, &reverse).unwrap();
        let mut forward = vec![self.a.hop(e, vec![RoutingCommand::NodeDelay(3)])];
        forward.extend(
            self.mixes
                .iter()
                .map(|m| m.hop(e, vec![RoutingCommand::NodeDelay(5)])),
        );
        forward.push(self.b.hop(
            e,
            vec![
                RoutingCommand::Recipient(recipient_id(recipient.as_bytes()).unwrap()),
                RoutingCommand::NodeDelay(11),
            ],
        ));
        let body = ForwardBody {
            surb: Some(&surb),
            user_payload,
        }
        .encode()
        .unwrap();
        (
            sphinx::create_packet(&mut OsRng, &forward, &body).unwrap(),
            keys,
            surb_id,
        )
    }
}

fn surb_reply_at_alice(outcome: Outcome) -> ([u8; 16], Vec<u8>) {
    match outcome {
        Outcome::Spool {
            user,
            entry: SpoolEntry::SurbReply { surb_id, payload },
            ack: None,
        } => {
            assert_eq!(user, "alice");
            (surb_id, payload)
        }
        other => panic!("expected a SURB reply for alice, got {other:?}"),
    }
}

#[test]
fn block_is_spooled_and_acked_back_to_the_sender() {
    let mut net = Net::new();
    let block = vec![0x42u8; katzenpost::geometry::USER_FORWARD_PAYLOAD_LENGTH];
    let (packet, keys, surb_id) = net.send("Bob", &block);
    let first = net.a.id;
    let outcome = net.run(first, packet.clone(), Ingress::Client);
    let Outcome::Spool {
        user,
        entry,
        ack: Some(ack),
    } = outcome
    else {
        panic!("not spooled: {outcome:?}")
    };
    assert_eq!(user, "bob", "recipient names are case-mapped");
    assert_eq!(entry, SpoolEntry::Message(block));
    let Outcome::Forward {
        next,
        delay,
        packet: ack_packet,
    } = *ack
    else {
        panic!("no ACK packet")
    };
    assert_eq!(
        delay,
        Duration::from_millis(11),
        "the terminal NodeDelay delays the ACK"
    );
    let (got_id, payload) = surb_reply_at_alice(net.run(next, ack_packet, Ingress::Node));
    assert_eq!(got_id, surb_id);
    let plain = keys.decrypt(&payload).unwrap();
    assert_eq!(
        kaetzchen::classify_surb_payload(&plain).unwrap(),
        SurbPayload::Ack
    );

    // The same packet again is a replay at the ingress provider.
    assert_eq!(
        net.run(first, packet, Ingress::Client),
        Outcome::Drop(DropReason::Replay)
    );
}

#[test]
fn keyserver_and_loop_answer_through_the_surb() {
    let mut net = Net::new();
    let first = net.a.id;
    let (packet, keys, _) = net.send("+keyserver", &KeyserverRequest::new("bob").encode());
    // The reply is forwarded on through the SURB's path to alice's provider.
    let (_, payload) = surb_reply_at_alice(net.run(first, packet, Ingress::Client));
    let plain = keys.decrypt(&payload).unwrap();
    let SurbPayload::KaetzchenReply(resp) = kaetzchen::classify_surb_payload(&plain).unwrap()
    else {
        panic!("not a Kaetzchen reply")
    };
    assert_eq!(
        KeyserverResponse::decode(resp)
            .unwrap()
            .identity_key_for("bob")
            .unwrap(),
        [0xbb; 32]
    );

    let (packet, keys, _) = net.send("+loop", &[]);
    let (_, payload) = surb_reply_at_alice(net.run(first, packet, Ingress::Client));
    let plain = keys.decrypt(&payload).unwrap();
    assert_eq!(
        kaetzchen::classify_surb_payload(&plain).unwrap(),
        SurbPayload::KaetzchenReply(&[])
    );
}

#[test]
fn drop_rules() {
    let mut net = Net::new();
    let first = net.a.id;
    // Unknown user at the egress provider.
    let (packet, _, _) = net.send("mallory", &[1, 2, 3]);
    assert_eq!(
        net.run(first, packet, Ingress::Client),
        Outcome::Drop(DropReason::UnknownUser)
    );
    // A packet from a node that would make the provider forward is refused.
    let (packet, _, _) = net.send("bob", &[]);
    assert_eq!(
        net.run(first, packet, Ingress::Node),
        Outcome::Drop(DropReason::BadClass)
    );
    // Garbage and a flipped MAC byte: invalid.
    let (mut packet, _, _) = net.send("bob", &[]);
    packet[450] ^= 1;
    assert!(matches!(
        net.run(first, packet, Ingress::Client),
        Outcome::Drop(DropReason::Invalid(_))
    ));
    assert!(matches!(
        net.run(first, vec![0; 10], Ingress::Client),
        Outcome::Drop(DropReason::Invalid(_))
    ));
}

#[test]
fn previous_epoch_key_still_works_early_in_the_next_epoch() {
    let mut net = Net::new();
    let (packet, _, _) = net.send("bob", &[9]);
    // The packet was built for epoch e; move the network 10 s into e + 1.
    let e = net.now.epoch;
    net.now = EpochTime {
        epoch: e + 1,
        elapsed: Duration::from_secs(10),
        till: PERIOD - Duration::from_secs(10),
    };
    let first = net.a.id;
    assert!(matches!(
        net.run(first, packet.clone(), Ingress::Client),
        Outcome::Spool { .. }
    ));
    // Late in e + 1 the key of e is no longer in force.
    let mut net2 = Net::new();
    let (packet, _, _) = net2.send("bob", &[9]);
    net2.now = EpochTime {
        epoch: e + 1,
        elapsed: Duration::from_secs(300),
        till: Duration::from_secs(300),
    };
    let first = net2.a.id;
    assert!(matches!(
        net2.run(first, packet, Ingress::Client),
        Outcome::Drop(DropReason::Invalid(_))
    ));
}
