//! §6.3 reassembly: order, duplicates, inconsistent totals, dedup of completed
//! messages under the same (sender, message id) key, persistence of the state.

use std::time::Duration;

use katzenpost::block::{
    assemble, fragment, Accepted, AddOutcome, Block, BlockError, PartialMessage, Reassembler,
    ReassemblyError, ReassemblyKey,
};
use katzenpost::geometry::BLOCK_PAYLOAD_LENGTH;
use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

const ALICE: [u8; 32] = [0xa1; 32];
const MALLORY: [u8; 32] = [0x66; 32];

fn message(len: usize, seed: u64) -> Vec<u8> {
    let mut m = vec![0u8; len];
    ChaCha20Rng::seed_from_u64(seed).fill_bytes(&mut m);
    m
}

#[test]
fn out_of_order_with_duplicates() {
    let msg = message(5 * BLOCK_PAYLOAD_LENGTH + 100, 1);
    let blocks = fragment([1; 16], &msg).unwrap();
    assert_eq!(blocks.len(), 6);
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    for _ in 0..20 {
        let mut order: Vec<Block> = blocks
            .iter()
            .chain(blocks.iter().take(3))
            .cloned()
            .collect();
        order.shuffle(&mut rng);
        let mut r = Reassembler::new();
        let mut completed = None;
        let mut dups = 0;
        let mut after = 0;
        for b in order {
            match r.accept(ALICE, b, 1000).unwrap() {
                Accepted::Stored { total, .. } => {
                    assert_eq!(total, 6);
                    assert!(completed.is_none());
                }
                Accepted::Duplicate => dups += 1,
                Accepted::Complete(m) => {
                    assert!(completed.is_none());
                    completed = Some(m);
                }
                Accepted::AlreadyDelivered => after += 1,
            }
        }
        assert_eq!(completed.as_deref(), Some(&msg[..]));
        assert_eq!(dups + after, 3);
        assert_eq!(r.partial_count(), 0);
        assert!(r.is_completed(&ReassemblyKey {
            sender: ALICE,
            message_id: [1; 16]
        }));
    }
}

#[test]
fn late_block_of_delivered_message_is_dropped_not_restarted() {
    // Original defect #7: a late retransmission must not start a new partial message.
    let blocks = fragment([2; 16], &message(2 * BLOCK_PAYLOAD_LENGTH, 2)).unwrap();
    let mut r = Reassembler::new();
    assert!(matches!(
        r.accept(ALICE, blocks[0].clone(), 10).unwrap(),
        Accepted::Stored { have: 1, total: 2 }
    ));
    assert!(matches!(
        r.accept(ALICE, blocks[1].clone(), 11).unwrap(),
        Accepted::Complete(_)
    ));
    assert_eq!(
        r.accept(ALICE, blocks[0].clone(), 500).unwrap(),
        Accepted::AlreadyDelivered
    );
    assert_eq!(r.partial_count(), 0);
    // Single-block messages too.
    let one = fragment([3; 16], b"hello").unwrap();
    assert_eq!(
        r.accept(ALICE, one[0].clone(), 12).unwrap(),
        Accepted::Complete(b"hello".to_vec())
    );
    assert_eq!(
        r.accept(ALICE, one[0].clone(), 13).unwrap(),
        Accepted::AlreadyDelivered
    );
}

#[test]
fn same_message_id_from_another_sender_is_separate() {
    let a = fragment([4; 16], b"from alice").unwrap();
    let m = fragment([4; 16], b"from mallory").unwrap();
    let mut r = Reassembler::new();
    assert_eq!(
        r.accept(ALICE, a[0].clone(), 1).unwrap(),
        Accepted::Complete(b"from alice".to_vec())
    );
    assert_eq!(
        r.accept(MALLORY, m[0].clone(), 1).unwrap(),
        Accepted::Complete(b"from mallory".to_vec())
    );
}

#[test]
fn inconsistent_totals_are_rejected() {
    let blocks = fragment([5; 16], &message(3 * BLOCK_PAYLOAD_LENGTH, 5)).unwrap();
    let mut r = Reassembler::new();
    r.accept(ALICE, blocks[0].clone(), 1).unwrap();
    let mut liar = blocks[1].clone();
    liar.total_blocks = 2;
    assert_eq!(
        r.accept(ALICE, liar, 2),
        Err(ReassemblyError::InconsistentTotal {
            expected: 3,
            got: 2
        })
    );
    // The bad block was not stored; the real ones still complete the message.
    r.accept(ALICE, blocks[1].clone(), 3).unwrap();
    assert!(matches!(
        r.accept(ALICE, blocks[2].clone(), 4).unwrap(),
        Accepted::Complete(_)
    ));

    let mut mixed = blocks.clone();
    mixed[2].total_blocks = 4;
    assert!(matches!(
        assemble(&mixed),
        Err(ReassemblyError::InconsistentTotal { .. })
    ));
}

#[test]
fn invalid_blocks_are_rejected() {
    let mut r = Reassembler::new();
    let b = Block {
        message_id: [6; 16],
        total_blocks: 2,
        block_id: 2,
        payload: vec![],
    };
    assert_eq!(
        r.accept(ALICE, b, 1),
        Err(ReassemblyError::Block(BlockError::BlockIdOutOfRange {
            block_id: 2,
            total_blocks: 2
        }))
    );
    let b = Block {
        message_id: [6; 16],
        total_blocks: 1,
        block_id: 0,
        payload: vec![0; BLOCK_PAYLOAD_LENGTH + 1],
    };
    assert!(matches!(
        r.accept(ALICE, b, 1),
        Err(ReassemblyError::Block(BlockError::PayloadTooLong { .. }))
    ));
    assert_eq!(r.partial_count(), 0);
}

#[test]
fn size_limit() {
    let mut r = Reassembler::with_max_total_blocks(10);
    let b = Block {
        message_id: [8; 16],
        total_blocks: 11,
        block_id: 0,
        payload: vec![1; 10],
    };
    assert_eq!(
        r.accept(ALICE, b, 1),
        Err(ReassemblyError::TooManyBlocks { total: 11, max: 10 })
    );
    let b = Block {
        message_id: [8; 16],
        total_blocks: 10,
        block_id: 0,
        payload: vec![1; 10],
    };
    assert!(r.accept(ALICE, b, 1).is_ok());
}

#[test]
fn pure_assemble_checks() {
    let blocks = fragment([9; 16], &message(3 * BLOCK_PAYLOAD_LENGTH - 1, 9)).unwrap();
    assert_eq!(
        assemble(&blocks[..2]),
        Err(ReassemblyError::Incomplete { have: 2, total: 3 })
    );
    assert_eq!(
        assemble(&[]),
        Err(ReassemblyError::Incomplete { have: 0, total: 0 })
    );
    let mut other = blocks.clone();
    other[1].message_id = [10; 16];
    assert_eq!(assemble(&other), Err(ReassemblyError::MixedMessages));
    // A duplicate keeps the first occurrence.
    let mut dup = blocks.clone();
    let mut evil = blocks[0].clone();
    evil.payload = vec![0xee; 3];
    dup.push(evil);
    assert_eq!(assemble(&dup).unwrap(), assemble(&blocks).unwrap());
}

#[test]
fn partial_message_api() {
    let blocks = fragment([11; 16], &message(2 * BLOCK_PAYLOAD_LENGTH + 1, 11)).unwrap();
    let mut p = PartialMessage::new(blocks[2].clone(), 77).unwrap();
    assert_eq!((p.total_blocks(), p.have(), p.first_seen()), (3, 1, 77));
    assert!(p.contains(2) && !p.contains(0));
    assert_eq!(
        p.assemble(),
        Err(ReassemblyError::Incomplete { have: 1, total: 3 })
    );
    assert_eq!(p.add(blocks[2].clone()).unwrap(), AddOutcome::Duplicate);
    assert_eq!(
        p.add(blocks[0].clone()).unwrap(),
        AddOutcome::Stored { have: 2, total: 3 }
    );
    assert_eq!(p.add(blocks[1].clone()).unwrap(), AddOutcome::Complete);
    assert!(p.is_complete());
    assert_eq!(p.assemble().unwrap(), assemble(&blocks).unwrap());
}

#[test]
fn state_survives_serialisation() {
    let blocks = fragment([12; 16], &message(3 * BLOCK_PAYLOAD_LENGTH, 12)).unwrap();
    let done = fragment([13; 16], b"done").unwrap();
    let mut r = Reassembler::new();
    r.accept(ALICE, blocks[0].clone(), 1).unwrap();
    r.accept(ALICE, done[0].clone(), 1).unwrap();

    let mut bytes = Vec::new();
    ciborium::into_writer(&r, &mut bytes).unwrap();
    // Payloads are stored as byte strings, not arrays of integers.
    assert!(
        bytes.len() < BLOCK_PAYLOAD_LENGTH + 1024,
        "{} bytes",
        bytes.len()
    );
    let mut back: Reassembler = ciborium::from_reader(&bytes[..]).unwrap();
    assert_eq!(back, r);
    assert_eq!(
        back.accept(ALICE, done[0].clone(), 2).unwrap(),
        Accepted::AlreadyDelivered
    );
    back.accept(ALICE, blocks[2].clone(), 2).unwrap();
    assert!(
        matches!(back.accept(ALICE, blocks[1].clone(), 3).unwrap(), Accepted::Complete(m) if m == assemble(&blocks).unwrap())
    );

    // One partial message on its own, and its key as fixed bytes.
    let p = PartialMessage::new(blocks[1].clone(), 5).unwrap();
    let mut bytes = Vec::new();
    ciborium::into_writer(&p, &mut bytes).unwrap();
    assert_eq!(
        ciborium::from_reader::<PartialMessage, _>(&bytes[..]).unwrap(),
        p
    );
    let key = ReassemblyKey {
        sender: ALICE,
        message_id: [12; 16],
    };
    assert_eq!(ReassemblyKey::from_bytes(&key.to_bytes()), key);
}

#[test]
fn corrupt_state_is_an_error_not_a_panic() {
    #[derive(serde::Serialize)]
    struct Repr {
        total_blocks: u16,
        first_seen: u64,
        payloads: std::collections::BTreeMap<u16, serde_bytes::ByteBuf>,
    }
    let bad = |total, id, len| {
        let mut payloads = std::collections::BTreeMap::new();
        payloads.insert(id, serde_bytes::ByteBuf::from(vec![0u8; len]));
        let mut bytes = Vec::new();
        ciborium::into_writer(
            &Repr {
                total_blocks: total,
                first_seen: 0,
                payloads,
            },
            &mut bytes,
        )
        .unwrap();
        ciborium::from_reader::<PartialMessage, _>(&bytes[..])
    };
    assert!(bad(2, 1, 10).is_ok());
    assert!(bad(2, 2, 10).is_err());
    assert!(bad(0, 0, 10).is_err());
    assert!(bad(2, 0, BLOCK_PAYLOAD_LENGTH + 1).is_err());
    assert!(ciborium::from_reader::<PartialMessage, _>(&[0xa0][..]).is_err());
}

#[test]
fn sweep_expires_partials_and_dedup_records() {
    let big = fragment([14; 16], &message(2 * BLOCK_PAYLOAD_LENGTH, 14)).unwrap();
    let small = fragment([15; 16], b"x").unwrap();
    let mut r = Reassembler::new();
    r.accept(ALICE, big[0].clone(), 100).unwrap();
    r.accept(ALICE, small[0].clone(), 100).unwrap();
    let day = Duration::from_secs(86_400);

    // No partial timeout: partials stay; dedup records younger than 5 days stay.
    assert!(r.sweep(100 + 86_400, None, 5 * day).is_empty());
    assert_eq!((r.partial_count(), r.completed_count()), (1, 1));

    let dropped = r.sweep(100 + 3600, Some(Duration::from_secs(3600)), 5 * day);
    assert_eq!(
        dropped,
        vec![ReassemblyKey {
            sender: ALICE,
            message_id: [14; 16]
        }]
    );
    assert_eq!((r.partial_count(), r.completed_count()), (0, 1));

    r.sweep(100 + 5 * 86_400, None, 5 * day);
    assert_eq!(r.completed_count(), 0);
}
