//! Wire commands (§4.8): vectors from core v0.0.13 `wire/commands/testdata`
//! (2019 geometry), both directions, plus every parsing rule.

use katzenpost::wire::commands::{Command, CommandError, MESSAGE_ACK_PAYLOAD_LENGTH};
use proptest::prelude::*;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/katzenpost-2019/wire_commands_vectors.json"
);

fn vectors() -> serde_json::Value {
    let text = std::fs::read_to_string(VECTORS)
        .unwrap_or_else(|e| panic!("missing test vector file {VECTORS}: {e}"));
    serde_json::from_str(&text).expect("vector file is JSON")
}

fn hex_field(v: &serde_json::Value, k: &str) -> Vec<u8> {
    hex::decode(v[k].as_str().unwrap_or_else(|| panic!("field {k}"))).expect("hex")
}

fn int_field(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("field {k}"))
}

/// Decodes `frame`, compares with `want`, and re-encodes byte for byte.
fn both_ways(frame: &[u8], want: Command) {
    let got = Command::decode(frame).expect("vector decodes");
    assert_eq!(got, want);
    assert_eq!(want.encode(), frame, "encoding of {want:?}");
    assert_eq!(want.try_encode().unwrap(), frame);
    assert_eq!(want.encoded_len(), frame.len());
}

#[test]
fn vectors_both_ways() {
    let v = vectors();
    both_ways(&hex_field(&v, "NoOp"), Command::NoOp);
    both_ways(&hex_field(&v, "Disconnect"), Command::Disconnect);
    both_ways(
        &hex_field(&v, "SendPacket"),
        Command::SendPacket(hex_field(&v, "SendPacketPayload")),
    );
    both_ways(
        &hex_field(&v, "RetrieveMessage"),
        Command::RetrieveMessage {
            sequence: int_field(&v, "RetrieveMessageSeq") as u32,
        },
    );
    let msg = hex_field(&v, "Message");
    assert_eq!(msg.len(), 51_244);
    both_ways(
        &msg,
        Command::Message {
            queue_size_hint: int_field(&v, "MessageHint") as u8,
            sequence: int_field(&v, "MessageSeq") as u32,
            payload: hex_field(&v, "MessagePayload"),
        },
    );
    let ack = hex_field(&v, "MessageAck");
    assert_eq!(ack.len(), 51_244);
    // The vector's SURB ID is the 16 bytes after type, hint and seq.
    let mut surb_id = [0u8; 16];
    surb_id.copy_from_slice(&ack[12..28]);
    both_ways(
        &ack,
        Command::MessageAck {
            queue_size_hint: int_field(&v, "MessageAckHint") as u8,
            sequence: int_field(&v, "MessageAckSeq") as u32,
            surb_id,
            payload: hex_field(&v, "MessageAckPayload"),
        },
    );
    let empty = hex_field(&v, "MessageEmpty");
    assert_eq!(empty.len(), 51_244);
    both_ways(
        &empty,
        Command::MessageEmpty {
            sequence: int_field(&v, "MessageEmptySeq") as u32,
        },
    );
    both_ways(
        &hex_field(&v, "GetConsensus"),
        Command::GetConsensus {
            epoch: int_field(&v, "GetConsensusEpoch"),
        },
    );
    both_ways(
        &hex_field(&v, "Consensus"),
        Command::Consensus {
            error_code: int_field(&v, "ConsensusErrorCode") as u8,
            payload: hex_field(&v, "ConsensusPayload"),
        },
    );
}

#[test]
fn post_descriptor_and_status() {
    let c = Command::PostDescriptor {
        epoch: 27708,
        payload: b"desc".to_vec(),
    };
    let enc = c.encode();
    assert_eq!(
        enc,
        [
            &[20u8, 0, 0, 0, 0, 12][..],
            &27708u64.to_be_bytes(),
            b"desc"
        ]
        .concat()
    );
    assert_eq!(Command::decode(&enc).unwrap(), c);
    let s = Command::PostDescriptorStatus { error_code: 3 };
    assert_eq!(s.encode(), [21, 0, 0, 0, 0, 1, 3]);
    assert_eq!(Command::decode(&s.encode()).unwrap(), s);
}

#[test]
fn header_rules() {
    assert_eq!(Command::decode(&[]), Err(CommandError::Truncated(0)));
    assert_eq!(
        Command::decode(&[0, 0, 0, 0, 0]),
        Err(CommandError::Truncated(5))
    );
    assert_eq!(
        Command::decode(&[0, 1, 0, 0, 0, 0]),
        Err(CommandError::ReservedByte(1))
    );
    assert!(matches!(
        Command::decode(&[2, 0, 0, 0, 0, 3, 1, 2]),
        Err(CommandError::LengthOverrun {
            declared: 3,
            available: 2
        })
    ));
    // Huge declared length: rejected, nothing allocated.
    assert!(matches!(
        Command::decode(&[2, 0, 0xff, 0xff, 0xff, 0xff]),
        Err(CommandError::LengthOverrun { .. })
    ));
    assert_eq!(
        Command::decode(&[0, 0, 0, 0, 0, 0, 0, 1]),
        Err(CommandError::NonZeroPadding)
    );
    assert_eq!(
        Command::decode(&[7, 0, 0, 0, 0, 0]),
        Err(CommandError::UnknownCommand(7))
    );
    assert_eq!(
        Command::decode(&[22, 0, 0, 0, 0, 0]),
        Err(CommandError::UnknownCommand(22))
    );
}

#[test]
fn zero_padding_is_accepted() {
    let mut f = Command::RetrieveMessage { sequence: 7 }.encode();
    f.extend_from_slice(&[0; 100]);
    assert_eq!(
        Command::decode(&f).unwrap(),
        Command::RetrieveMessage { sequence: 7 }
    );
    let mut f = Command::NoOp.encode();
    f.extend_from_slice(&[0; 10]);
    assert_eq!(Command::decode(&f).unwrap(), Command::NoOp);
}

#[test]
fn length_rules() {
    // NoOp / Disconnect with a body.
    assert!(matches!(
        Command::decode(&[0, 0, 0, 0, 0, 1, 0]),
        Err(CommandError::BodyLength {
            command: "NoOp",
            length: 1
        })
    ));
    assert!(matches!(
        Command::decode(&[1, 0, 0, 0, 0, 1, 0]),
        Err(CommandError::BodyLength {
            command: "Disconnect",
            ..
        })
    ));
    // SendPacket with length 0 is fine.
    assert_eq!(
        Command::decode(&[2, 0, 0, 0, 0, 0]).unwrap(),
        Command::SendPacket(Vec::new())
    );
    // Fixed bodies.
    for (id, want) in [(16u8, 4usize), (18, 8), (21, 1)] {
        for len in [0usize, want - 1, want + 1] {
            if len == want {
                continue;
            }
            let mut f = vec![id, 0];
            f.extend_from_slice(&(len as u32).to_be_bytes());
            f.resize(6 + len, 0);
            assert!(
                matches!(Command::decode(&f), Err(CommandError::BodyLength { .. })),
                "id {id} len {len}"
            );
        }
    }
    // Consensus needs at least the error byte; PostDescriptor at least the epoch.
    assert!(matches!(
        Command::decode(&[19, 0, 0, 0, 0, 0]),
        Err(CommandError::BodyLength {
            command: "Consensus",
            ..
        })
    ));
    assert_eq!(
        Command::decode(&[19, 0, 0, 0, 0, 1, 2]).unwrap(),
        Command::Consensus {
            error_code: 2,
            payload: vec![]
        }
    );
    let mut f = vec![20, 0, 0, 0, 0, 7];
    f.extend_from_slice(&[0; 7]);
    assert!(matches!(
        Command::decode(&f),
        Err(CommandError::BodyLength {
            command: "PostDescriptor",
            ..
        })
    ));
    assert!(matches!(
        Command::decode(&[20, 0, 0, 0, 0, 0]),
        Err(CommandError::BodyLength {
            command: "PostDescriptor",
            ..
        })
    ));
}

fn message_frame(body: &[u8]) -> Vec<u8> {
    let mut f = vec![17, 0];
    f.extend_from_slice(&(body.len() as u32).to_be_bytes());
    f.extend_from_slice(body);
    f
}

#[test]
fn message_rules() {
    let good = Command::Message {
        queue_size_hint: 1,
        sequence: 5,
        payload: vec![0xAB; 50_642],
    }
    .encode();
    assert!(Command::decode(&good).is_ok());
    let body = &good[6..];
    // Non-zero tail after a type-0 payload.
    let mut b = body.to_vec();
    *b.last_mut().unwrap() = 1;
    assert_eq!(
        Command::decode(&message_frame(&b)),
        Err(CommandError::MessageNonZero(0))
    );
    // Wrong body lengths (one short, one long) for every type.
    for t in [0u8, 1, 2] {
        let mut b = body.to_vec();
        b[0] = t;
        b.pop();
        assert!(matches!(
            Command::decode(&message_frame(&b)),
            Err(CommandError::BodyLength {
                command: "Message",
                ..
            })
        ));
        b.push(0);
        b.push(0);
        assert!(matches!(
            Command::decode(&message_frame(&b)),
            Err(CommandError::BodyLength {
                command: "Message",
                ..
            })
        ));
    }
    // Unknown type.
    let mut b = body.to_vec();
    b[0] = 3;
    assert_eq!(
        Command::decode(&message_frame(&b)),
        Err(CommandError::MessageType(3))
    );
    // Empty: everything after seq must be zero; the hint byte is not checked.
    let mut b = vec![0u8; 51_238];
    b[0] = 2;
    b[1] = 9;
    b[5] = 4;
    assert_eq!(
        Command::decode(&message_frame(&b)).unwrap(),
        Command::MessageEmpty { sequence: 4 }
    );
    b[100] = 1;
    assert_eq!(
        Command::decode(&message_frame(&b)),
        Err(CommandError::MessageNonZero(2))
    );
    // Type 1 accepts any payload bytes.
    let mut b = vec![0xFFu8; 51_238];
    b[0] = 1;
    let c = Command::decode(&message_frame(&b)).unwrap();
    match &c {
        Command::MessageAck {
            queue_size_hint,
            sequence,
            surb_id,
            payload,
        } => {
            assert_eq!(*queue_size_hint, 0xFF);
            assert_eq!(*sequence, u32::MAX);
            assert_eq!(surb_id, &[0xFF; 16]);
            assert_eq!(payload.len(), MESSAGE_ACK_PAYLOAD_LENGTH);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(c.encode(), message_frame(&b));
}

#[test]
fn wrong_payload_sizes_are_caught_by_try_encode() {
    let m = Command::Message {
        queue_size_hint: 0,
        sequence: 1,
        payload: vec![1; 10],
    };
    assert!(matches!(
        m.try_encode(),
        Err(CommandError::PayloadLength { .. })
    ));
    // encode() zero-fills to a valid frame.
    let enc = m.encode();
    assert_eq!(enc.len(), 51_244);
    match Command::decode(&enc).unwrap() {
        Command::Message { payload, .. } => {
            assert_eq!(&payload[..10], &[1; 10]);
            assert!(payload[10..].iter().all(|&b| b == 0));
        }
        other => panic!("unexpected {other:?}"),
    }
    let a = Command::MessageAck {
        queue_size_hint: 0,
        sequence: 1,
        surb_id: [0; 16],
        payload: vec![1; MESSAGE_ACK_PAYLOAD_LENGTH + 1],
    };
    assert!(matches!(
        a.try_encode(),
        Err(CommandError::PayloadLength { .. })
    ));
    assert_eq!(a.encode().len(), 51_244);
}

#[test]
fn debug_does_not_print_payloads() {
    let c = Command::SendPacket(b"secret-bytes".to_vec());
    let s = format!("{c:?}");
    assert!(!s.contains("secret") && s.contains("12 bytes"), "{s}");
}

fn arb_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::NoOp),
        Just(Command::Disconnect),
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(Command::SendPacket),
        any::<u32>().prop_map(|sequence| Command::RetrieveMessage { sequence }),
        (any::<u8>(), any::<u32>(), any::<u8>()).prop_map(|(h, s, b)| Command::Message {
            queue_size_hint: h,
            sequence: s,
            payload: vec![b; 50_642]
        }),
        (any::<u8>(), any::<u32>(), any::<[u8; 16]>(), any::<u8>()).prop_map(|(h, s, id, b)| {
            Command::MessageAck {
                queue_size_hint: h,
                sequence: s,
                surb_id: id,
                payload: vec![b; MESSAGE_ACK_PAYLOAD_LENGTH],
            }
        }),
        any::<u32>().prop_map(|sequence| Command::MessageEmpty { sequence }),
        any::<u64>().prop_map(|epoch| Command::GetConsensus { epoch }),
        (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..100)).prop_map(
            |(error_code, payload)| Command::Consensus {
                error_code,
                payload
            }
        ),
        (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..100))
            .prop_map(|(epoch, payload)| Command::PostDescriptor { epoch, payload }),
        any::<u8>().prop_map(|error_code| Command::PostDescriptorStatus { error_code }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn round_trip(c in arb_command(), pad in 0usize..64) {
        let mut enc = c.try_encode().unwrap();
        prop_assert_eq!(&Command::decode(&enc).unwrap(), &c);
        enc.resize(enc.len() + pad, 0);
        prop_assert_eq!(Command::decode(&enc).unwrap(), c);
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(c) = Command::decode(&bytes) {
            // Whatever decodes re-encodes to a prefix of the input (padding stripped).
            let enc = c.encode();
            prop_assert!(bytes.starts_with(&enc));
        }
    }
}
