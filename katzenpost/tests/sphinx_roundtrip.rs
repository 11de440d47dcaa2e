//! Sphinx round trips (create, then unwrap at every hop) and malformed input.

use katzenpost::geometry::{FORWARD_PAYLOAD_LENGTH, HEADER_LENGTH, PACKET_LENGTH, SURB_LENGTH};
use katzenpost::sphinx::{
    create_packet, create_surb, decrypt_surb_payload, packet_from_surb, pad_reply_body,
    unwrap_packet, PathHop, RoutingCommand, SphinxError, SurbKeys, UnwrapAction,
};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

struct Node {
    sk: [u8; 32],
    hop: PathHop,
}

fn node(rng: &mut ChaCha20Rng, commands: Vec<RoutingCommand>) -> Node {
    let mut sk = [0u8; 32];
    rng.fill_bytes(&mut sk);
    let mut id = [0u8; 32];
    rng.fill_bytes(&mut id);
    let public_key = x25519_dalek::x25519(sk, x25519_dalek::X25519_BASEPOINT_BYTES);
    Node {
        sk,
        hop: PathHop {
            id,
            public_key,
            commands,
        },
    }
}

/// Random commands for a hop: non-terminal hops get an optional NodeDelay
/// and SURBReply (they fit beside NextNodeHop), the terminal hop any
/// fitting subset of Recipient, SURBReply, NodeDelay, in random order.
fn random_commands(rng: &mut ChaCha20Rng, terminal: bool) -> Vec<RoutingCommand> {
    let bits = rng.next_u32();
    let mut cmds = Vec::new();
    if bits & 1 != 0 {
        cmds.push(RoutingCommand::NodeDelay(rng.next_u32()));
    }
    if bits & 2 != 0 {
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        cmds.push(RoutingCommand::SurbReply(id));
    }
    if terminal && bits & 4 != 0 {
        let mut r = [0u8; 64];
        rng.fill_bytes(&mut r);
        cmds.push(RoutingCommand::Recipient(r));
        if cmds.len() == 3 {
            cmds.remove(0); // all three do not fit in 82 bytes
        }
    }
    if bits & 8 != 0 {
        cmds.reverse();
    }
    cmds
}

fn random_path(rng: &mut ChaCha20Rng, hops: usize) -> Vec<Node> {
    (0..hops)
        .map(|i| {
            let cmds = random_commands(rng, i + 1 == hops);
            node(rng, cmds)
        })
        .collect()
}

/// Unwraps `packet` through `nodes`, checking commands and next hops; returns
/// the terminal action and the final buffer.
fn walk(nodes: &[Node], mut packet: Vec<u8>) -> (UnwrapAction, Vec<u8>) {
    let len = packet.len();
    for (i, n) in nodes.iter().enumerate() {
        let out = unwrap_packet(&n.sk, &mut packet).expect("unwrap");
        assert_eq!(packet.len(), len);
        let mut want = n.hop.commands.clone();
        if i + 1 < nodes.len() {
            match (&out.action, out.commands.last()) {
                (
                    UnwrapAction::Forward { next_hop },
                    Some(RoutingCommand::NextNodeHop { id, mac }),
                ) => {
                    assert_eq!(next_hop, &nodes[i + 1].hop.id);
                    assert_eq!(id, &nodes[i + 1].hop.id);
                    assert_eq!(&packet[HEADER_LENGTH - 16..HEADER_LENGTH], mac);
                    want.push(RoutingCommand::NextNodeHop { id: *id, mac: *mac });
                }
                other => panic!("hop {i}: expected a forward, got {other:?}"),
            }
            assert_eq!(out.commands, want);
        } else {
            assert_eq!(out.commands, want);
            return (out.action, packet);
        }
    }
    unreachable!("empty path")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn forward_round_trip(seed in any::<u64>(), hops in 1usize..=5, len in 0usize..1500, full in any::<bool>()) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let nodes = random_path(&mut rng, hops);
        let path: Vec<PathHop> = nodes.iter().map(|n| n.hop.clone()).collect();
        let len = if full { FORWARD_PAYLOAD_LENGTH } else { len };
        let mut body = vec![0u8; len];
        rng.fill_bytes(&mut body);
        let packet = create_packet(&mut rng, &path, &body).unwrap();
        prop_assert_eq!(packet.len(), HEADER_LENGTH + 16 + len);
        let (action, buf) = walk(&nodes, packet);
        let terminal_surb = nodes.last().unwrap().hop.commands.iter().any(|c| matches!(c, RoutingCommand::SurbReply(_)));
        match action {
            UnwrapAction::Deliver { payload } => {
                prop_assert!(!terminal_surb);
                prop_assert_eq!(&buf[payload], &body[..]);
            }
            UnwrapAction::SurbReply { payload, .. } => {
                // A forward packet marked as a SURB reply: the payload is the
                // plaintext with its zero tag.
                prop_assert!(terminal_surb);
                prop_assert_eq!(&buf[payload.start..payload.start + 16], &[0u8; 16][..]);
                prop_assert_eq!(&buf[payload.start + 16..payload.end], &body[..]);
            }
            UnwrapAction::Forward { .. } => prop_assert!(false, "terminal forward"),
        }
    }

    #[test]
    fn surb_round_trip(seed in any::<u64>(), hops in 1usize..=5, len in 0usize..1500, full in any::<bool>()) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut nodes = random_path(&mut rng, hops);
        let mut surb_id = [0u8; 16];
        rng.fill_bytes(&mut surb_id);
        nodes.last_mut().unwrap().hop.commands =
            vec![RoutingCommand::Recipient([b'a'; 64]), RoutingCommand::SurbReply(surb_id)];
        let path: Vec<PathHop> = nodes.iter().map(|n| n.hop.clone()).collect();
        let (surb, keys) = create_surb(&mut rng, &path).unwrap();
        prop_assert_eq!(surb.len(), SURB_LENGTH);
        prop_assert_eq!(keys.as_bytes().len(), 64 * (hops + 1));
        let mut reply = vec![0u8; len];
        rng.fill_bytes(&mut reply);
        let body = if full { pad_reply_body(&reply).unwrap() } else { reply.clone() };
        let (first, packet) = packet_from_surb(&surb, &body).unwrap();
        prop_assert_eq!(first, path[0].id);
        // Deterministic.
        prop_assert_eq!(&packet_from_surb(&surb, &body).unwrap().1, &packet);
        let (action, mut buf) = walk(&nodes, packet);
        match action {
            UnwrapAction::SurbReply { surb_id: got, payload } => {
                prop_assert_eq!(got, surb_id);
                let keys = SurbKeys::from_bytes(keys.as_bytes()).unwrap();
                prop_assert_eq!(decrypt_surb_payload(&keys, &buf[payload.clone()]).unwrap(), body.clone());
                let range = keys.decrypt_in_place(&mut buf[payload.clone()]).unwrap();
                prop_assert_eq!(&buf[payload][range], &body[..]);
            }
            other => prop_assert!(false, "expected a SURB reply, got {:?}", other),
        }
    }
}

fn fixed_path(rng: &mut ChaCha20Rng, hops: usize) -> Vec<Node> {
    (0..hops)
        .map(|i| {
            let cmds = if i + 1 == hops {
                vec![
                    RoutingCommand::Recipient([b'x'; 64]),
                    RoutingCommand::NodeDelay(5),
                ]
            } else {
                vec![RoutingCommand::NodeDelay(7)]
            };
            node(rng, cmds)
        })
        .collect()
}

#[test]
fn full_size_packet_is_51676_bytes() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let nodes = fixed_path(&mut rng, 5);
    let path: Vec<PathHop> = nodes.iter().map(|n| n.hop.clone()).collect();
    let body = vec![0x5a; FORWARD_PAYLOAD_LENGTH];
    let packet = create_packet(&mut rng, &path, &body).unwrap();
    assert_eq!(packet.len(), PACKET_LENGTH);
    let (action, buf) = walk(&nodes, packet);
    match action {
        UnwrapAction::Deliver { payload } => assert_eq!(&buf[payload], &body[..]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_paths_are_rejected() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    assert_eq!(
        create_packet(&mut rng, &[], b"x"),
        Err(SphinxError::BadPathLength(0))
    );
    let six: Vec<PathHop> = fixed_path(&mut rng, 6).into_iter().map(|n| n.hop).collect();
    assert_eq!(
        create_packet(&mut rng, &six, b"x"),
        Err(SphinxError::BadPathLength(6))
    );
    assert!(matches!(
        create_surb(&mut rng, &six),
        Err(SphinxError::BadPathLength(6))
    ));

    let mut path: Vec<PathHop> = fixed_path(&mut rng, 3).into_iter().map(|n| n.hop).collect();
    path[1].commands.push(RoutingCommand::NextNodeHop {
        id: [1; 32],
        mac: [2; 16],
    });
    assert_eq!(
        create_packet(&mut rng, &path, b"x"),
        Err(SphinxError::NextNodeHopInInput)
    );

    let mut path: Vec<PathHop> = fixed_path(&mut rng, 3).into_iter().map(|n| n.hop).collect();
    path[0].commands.push(RoutingCommand::Recipient([0; 64]));
    assert_eq!(
        create_packet(&mut rng, &path, b"x"),
        Err(SphinxError::CommandsTooLong)
    );

    let mut path: Vec<PathHop> = fixed_path(&mut rng, 2).into_iter().map(|n| n.hop).collect();
    path[1].commands.push(RoutingCommand::SurbReply([0; 16]));
    assert_eq!(
        create_packet(&mut rng, &path, b"x"),
        Err(SphinxError::CommandsTooLong)
    );

    let mut path: Vec<PathHop> = fixed_path(&mut rng, 2).into_iter().map(|n| n.hop).collect();
    path[0].commands.push(RoutingCommand::NodeDelay(1));
    assert_eq!(
        create_packet(&mut rng, &path, b"x"),
        Err(SphinxError::DuplicateCommand(0x80))
    );
}

#[test]
fn malformed_packets_are_errors() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let nodes = fixed_path(&mut rng, 3);
    let path: Vec<PathHop> = nodes.iter().map(|n| n.hop.clone()).collect();
    let packet = create_packet(&mut rng, &path, &[7u8; 300]).unwrap();
    let sk = nodes[0].sk;

    for len in [0, 1, 2, 34, HEADER_LENGTH - 1] {
        let mut p = packet[..len].to_vec();
        assert_eq!(
            unwrap_packet(&sk, &mut p),
            Err(SphinxError::PacketTooShort(len))
        );
    }
    // Version bytes.
    let mut p = packet.clone();
    p[1] = 1;
    assert_eq!(unwrap_packet(&sk, &mut p), Err(SphinxError::BadVersion));
    // Any flipped header bit after the version fails the MAC and leaves
    // the buffer untouched.
    for pos in [2, 20, 33, 34, 100, 443, 444, 459] {
        let mut p = packet.clone();
        p[pos] ^= 0x10;
        let before = p.clone();
        assert_eq!(
            unwrap_packet(&sk, &mut p),
            Err(SphinxError::BadMac),
            "byte {pos}"
        );
        assert_eq!(p, before);
    }
    // Wrong key.
    let mut p = packet.clone();
    assert_eq!(
        unwrap_packet(&nodes[1].sk, &mut p),
        Err(SphinxError::BadMac)
    );
    // A header alone is fine at a forward hop, but no terminal payload.
    let mut p = packet[..HEADER_LENGTH].to_vec();
    assert!(matches!(
        unwrap_packet(&sk, &mut p).unwrap().action,
        UnwrapAction::Forward { .. }
    ));

    // Corrupted payload: the terminal tag check catches it.
    let mut p = packet.clone();
    p[HEADER_LENGTH + 50] ^= 1;
    unwrap_packet(&nodes[0].sk, &mut p).unwrap();
    unwrap_packet(&nodes[1].sk, &mut p).unwrap();
    assert_eq!(
        unwrap_packet(&nodes[2].sk, &mut p),
        Err(SphinxError::BadPayloadTag)
    );

    // Terminal payload shorter than the tag.
    let one: Vec<PathHop> = vec![path[2].clone()];
    let p = create_packet(&mut rng, &one, b"").unwrap();
    let mut short = p[..HEADER_LENGTH + 15].to_vec();
    assert_eq!(
        unwrap_packet(&nodes[2].sk, &mut short),
        Err(SphinxError::PayloadTooShort(15))
    );
    let mut ok = p.clone();
    match unwrap_packet(&nodes[2].sk, &mut ok).unwrap().action {
        UnwrapAction::Deliver { payload } => assert!(payload.is_empty()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn surb_inputs_are_checked() {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    assert_eq!(
        packet_from_surb(&[0u8; 555], b"x").unwrap_err(),
        SphinxError::BadSurbLength(555)
    );
    for len in [0, 64, 127, 129, 448] {
        assert_eq!(
            SurbKeys::from_bytes(&vec![0u8; len]).unwrap_err(),
            SphinxError::BadSurbKeysLength(len)
        );
    }
    assert_eq!(
        pad_reply_body(&vec![0u8; FORWARD_PAYLOAD_LENGTH + 1]).unwrap_err(),
        SphinxError::PayloadTooLong(51_201)
    );
    let ack = pad_reply_body(b"").unwrap();
    assert_eq!(ack, vec![0u8; FORWARD_PAYLOAD_LENGTH]);

    let mut nodes = fixed_path(&mut rng, 2);
    nodes[1].hop.commands = vec![
        RoutingCommand::Recipient([1; 64]),
        RoutingCommand::SurbReply([2; 16]),
    ];
    let path: Vec<PathHop> = nodes.iter().map(|n| n.hop.clone()).collect();
    let (surb, keys) = create_surb(&mut rng, &path).unwrap();
    let (_, packet) = packet_from_surb(&surb, b"hello").unwrap();
    let (action, buf) = walk(&nodes, packet);
    let UnwrapAction::SurbReply { payload, .. } = action else {
        panic!("not a SURB reply")
    };
    // Wrong token: the tag check fails.
    let (_, other_keys) = create_surb(&mut rng, &path).unwrap();
    assert_eq!(
        other_keys.decrypt(&buf[payload.clone()]),
        Err(SphinxError::BadPayloadTag)
    );
    assert_eq!(
        keys.decrypt(&buf[payload.start..payload.start + 15]),
        Err(SphinxError::PayloadTooShort(15))
    );
    assert_eq!(keys.decrypt(&buf[payload]).unwrap(), b"hello");
}

/// SURB creation reads its 64 key bytes before the header's 32: with a
/// counting RNG, the SURB's K_final ‖ IV_final are the first 64 bytes.
#[test]
fn surb_reads_key_material_first() {
    struct Counter(u8);
    impl RngCore for Counter {
        fn next_u32(&mut self) -> u32 {
            let mut b = [0u8; 4];
            self.fill_bytes(&mut b);
            u32::from_le_bytes(b)
        }
        fn next_u64(&mut self) -> u64 {
            let mut b = [0u8; 8];
            self.fill_bytes(&mut b);
            u64::from_le_bytes(b)
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for d in dest {
                *d = self.0;
                self.0 = self.0.wrapping_add(1);
            }
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
    impl rand_core::CryptoRng for Counter {}
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let nodes = fixed_path(&mut rng, 1);
    let path: Vec<PathHop> = nodes.iter().map(|n| n.hop.clone()).collect();
    let (surb, keys) = create_surb(&mut Counter(0), &path).unwrap();
    let want: Vec<u8> = (0u8..64).collect();
    assert_eq!(&surb[SURB_LENGTH - 64..], &want[..]);
    assert_eq!(&keys.as_bytes()[64..], &want[..]);
    // The ephemeral key is bytes 64..96: α = X25519(x, 9).
    let x: [u8; 32] = (64u8..96).collect::<Vec<_>>().try_into().unwrap();
    assert_eq!(
        &surb[2..34],
        &x25519_dalek::x25519(x, x25519_dalek::X25519_BASEPOINT_BYTES)
    );
}

/// Correctly sealed headers whose routing information holds bad commands:
/// unwrap gets past the MAC and must reject the commands.
#[test]
fn bad_commands_behind_a_valid_mac_are_errors() {
    use katzenpost::sphinx::forge::forge_packet;
    use katzenpost::sphinx::public_key;
    let sk = [0x33u8; 32];
    let pk = public_key(&sk);
    let eph = [0x44u8; 32];
    let payload = [0u8; 40];
    let unwrap = |ri: &[u8; 410], payload: &[u8]| {
        let mut p = forge_packet(&pk, &eph, ri, payload);
        unwrap_packet(&sk, &mut p).map(|u| u.action)
    };

    let mut ri = [0u8; 410];
    ri[0] = 0x04;
    assert_eq!(unwrap(&ri, &payload), Err(SphinxError::UnknownCommand(4)));

    let mut ri = [0u8; 410];
    ri[..5].copy_from_slice(&[0x80, 0, 0, 0, 1]);
    ri[5..10].copy_from_slice(&[0x80, 0, 0, 0, 2]);
    assert_eq!(
        unwrap(&ri, &payload),
        Err(SphinxError::DuplicateCommand(0x80))
    );

    let mut ri = [0u8; 410];
    ri[81] = 1; // garbage after the NULL terminator inside the 82-byte block
    assert_eq!(unwrap(&ri, &payload), Err(SphinxError::NonZeroPadding));

    // Bytes after the hop's 82-byte block are the next hop's business.
    let mut ri = [0u8; 410];
    ri[82] = 0xff;
    assert!(matches!(
        unwrap(&ri, &payload),
        Ok(UnwrapAction::Deliver { .. })
    ));

    // Recipient (65 bytes) then a truncated NextNodeHop.
    let mut ri = [0u8; 410];
    ri[0] = 0x02;
    ri[65] = 0x01;
    assert_eq!(unwrap(&ri, &payload), Err(SphinxError::TruncatedCommand(1)));

    // A SURB reply terminal hop with a payload shorter than the tag.
    let mut ri = [0u8; 410];
    ri[..17].copy_from_slice(&RoutingCommand::SurbReply([5; 16]).to_bytes());
    assert_eq!(
        unwrap(&ri, &payload[..10]),
        Err(SphinxError::PayloadTooShort(10))
    );
    match unwrap(&ri, &payload).unwrap() {
        UnwrapAction::SurbReply {
            surb_id,
            payload: range,
        } => {
            assert_eq!(surb_id, [5; 16]);
            assert_eq!(range, HEADER_LENGTH..HEADER_LENGTH + 40);
        }
        other => panic!("{other:?}"),
    }

    // A forward hop with a 1-byte payload is still forwarded (Go does too).
    let mut ri = [0u8; 410];
    ri[..49].copy_from_slice(
        &RoutingCommand::NextNodeHop {
            id: [8; 32],
            mac: [9; 16],
        }
        .to_bytes(),
    );
    assert_eq!(
        unwrap(&ri, &payload[..1]),
        Ok(UnwrapAction::Forward { next_hop: [8; 32] })
    );
}
