//! §6.1 fragmentation round trips, with §6.2 encryption for a few sizes.

use katzenpost::block::{
    assemble, decrypt_block, encrypt_block, encrypt_message, fragment, fragments, seal_block,
    Block, BlockError, NoiseError,
};
use katzenpost::geometry::{BLOCK_LENGTH, BLOCK_PAYLOAD_LENGTH};
use proptest::prelude::*;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use x25519_dalek::{PublicKey, StaticSecret};

fn message(len: usize, seed: u64) -> Vec<u8> {
    let mut m = vec![0u8; len];
    ChaCha20Rng::seed_from_u64(seed).fill_bytes(&mut m);
    m
}

fn check_round_trip(msg: &[u8]) {
    let id = [0xab; 16];
    let blocks = fragment(id, msg).unwrap();
    let want_total = msg.len().div_ceil(BLOCK_PAYLOAD_LENGTH).max(1);
    assert_eq!(blocks.len(), want_total, "len {}", msg.len());
    for (i, b) in blocks.iter().enumerate() {
        assert_eq!(b.message_id, id);
        assert_eq!(usize::from(b.total_blocks), want_total);
        assert_eq!(usize::from(b.block_id), i);
        if i + 1 < blocks.len() {
            assert_eq!(
                b.payload.len(),
                BLOCK_PAYLOAD_LENGTH,
                "all but the last block are full"
            );
        }
        let enc = b.encode().unwrap();
        assert_eq!(enc.len(), BLOCK_LENGTH);
        assert_eq!(&Block::decode(&enc).unwrap(), b);
    }
    // Reversed order assembles the same.
    assert_eq!(assemble(blocks.iter().rev()).unwrap(), msg);
}

#[test]
fn round_trips_from_empty_to_several_mib() {
    let p = BLOCK_PAYLOAD_LENGTH;
    for len in [
        0,
        1,
        2,
        p - 1,
        p,
        p + 1,
        2 * p,
        3 * p - 7,
        1 << 20,
        5 << 20,
        (7 << 20) + 12_345,
    ] {
        check_round_trip(&message(len, len as u64));
    }
}

#[test]
fn empty_message_is_one_empty_block() {
    let blocks = fragment([1; 16], b"").unwrap();
    assert_eq!(blocks.len(), 1);
    assert_eq!(
        (
            blocks[0].total_blocks,
            blocks[0].block_id,
            blocks[0].payload.len()
        ),
        (1, 0, 0)
    );
    let enc = blocks[0].encode().unwrap();
    assert_eq!(&enc[16..24], &[0, 1, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn five_mib_is_104_blocks() {
    assert_eq!(fragment([0; 16], &vec![0u8; 5 << 20]).unwrap().len(), 104);
}

fn keypair(seed: u64) -> ([u8; 32], [u8; 32]) {
    let mut b = [0u8; 32];
    ChaCha20Rng::seed_from_u64(seed).fill_bytes(&mut b);
    let sk = StaticSecret::from(b);
    (sk.to_bytes(), PublicKey::from(&sk).to_bytes())
}

#[test]
fn encrypted_round_trips() {
    let (ssk, spk) = keypair(1);
    let (rsk, rpk) = keypair(2);
    let p = BLOCK_PAYLOAD_LENGTH;
    for len in [0, 1, p, p + 1, 300_000] {
        let msg = message(len, 99 + len as u64);
        let blocks = fragment([len as u8; 16], &msg).unwrap();
        let mut received = Vec::new();
        for b in &blocks {
            let ct = encrypt_block(&ssk, &rpk, b).unwrap();
            let (sender, got) = decrypt_block(&rsk, &ct).unwrap();
            assert_eq!(sender, spk);
            received.push(got);
        }
        assert_eq!(&received, &blocks);
        assert_eq!(assemble(&received).unwrap(), msg);
    }
}

fn raw_plaintext(total: u16, id: u16, len: u32) -> Vec<u8> {
    let mut pt = vec![0u8; BLOCK_LENGTH];
    pt[..16].copy_from_slice(&[5; 16]);
    pt[16..18].copy_from_slice(&total.to_be_bytes());
    pt[18..20].copy_from_slice(&id.to_be_bytes());
    pt[20..24].copy_from_slice(&len.to_be_bytes());
    pt
}

#[test]
fn receiver_checks_after_decryption() {
    let (ssk, _) = keypair(3);
    let (rsk, rpk) = keypair(4);
    let open = |pt: &[u8]| decrypt_block(&rsk, &seal_block(&ssk, &rpk, pt).unwrap());

    assert!(open(&raw_plaintext(1, 0, 10)).is_ok());
    let mut pt = raw_plaintext(1, 0, 10);
    pt[24 + 10] = 1;
    assert!(matches!(
        open(&pt),
        Err(NoiseError::Block(BlockError::NonZeroPadding))
    ));
    // Padding is checked for empty blocks too.
    let mut pt = raw_plaintext(1, 0, 0);
    pt[BLOCK_LENGTH - 1] = 1;
    assert!(matches!(
        open(&pt),
        Err(NoiseError::Block(BlockError::NonZeroPadding))
    ));
    assert!(matches!(
        open(&raw_plaintext(2, 2, 0)),
        Err(NoiseError::Block(BlockError::BlockIdOutOfRange {
            block_id: 2,
            total_blocks: 2
        }))
    ));
    assert!(matches!(
        open(&raw_plaintext(0, 0, 0)),
        Err(NoiseError::Block(BlockError::BlockIdOutOfRange { .. }))
    ));
    assert!(matches!(
        open(&raw_plaintext(1, 0, BLOCK_PAYLOAD_LENGTH as u32 + 1)),
        Err(NoiseError::Block(BlockError::PayloadTooLong { .. }))
    ));
    assert!(matches!(
        open(&raw_plaintext(1, 0, u32::MAX)),
        Err(NoiseError::Block(BlockError::PayloadTooLong { .. }))
    ));
    // A full block (no padding at all) is fine.
    assert!(open(&raw_plaintext(1, 0, BLOCK_PAYLOAD_LENGTH as u32)).is_ok());
}

#[test]
fn decode_rejects_wrong_lengths() {
    assert_eq!(
        Block::decode(&[0u8; BLOCK_LENGTH - 1]),
        Err(BlockError::BadLength {
            len: BLOCK_LENGTH - 1
        })
    );
    assert_eq!(
        Block::decode(&[0u8; BLOCK_LENGTH + 1]),
        Err(BlockError::BadLength {
            len: BLOCK_LENGTH + 1
        })
    );
    assert_eq!(Block::decode(&[]), Err(BlockError::BadLength { len: 0 }));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prop_round_trip(len in 0usize..(4 * BLOCK_PAYLOAD_LENGTH), seed in any::<u64>()) {
        let msg = message(len, seed);
        let blocks = fragment([7; 16], &msg).unwrap();
        let decoded: Vec<Block> = blocks.iter().map(|b| Block::decode(&b.encode().unwrap()).unwrap()).collect();
        prop_assert_eq!(assemble(&decoded).unwrap(), msg);
    }

    #[test]
    fn prop_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), total in any::<u16>(), id in any::<u16>(), len in any::<u32>()) {
        let mut pt = raw_plaintext(total, id, len);
        pt[24..24 + bytes.len()].copy_from_slice(&bytes);
        if let Ok(b) = Block::decode(&pt) {
            prop_assert!(b.block_id < b.total_blocks);
            prop_assert!(b.payload.len() <= BLOCK_PAYLOAD_LENGTH);
            prop_assert_eq!(b.encode().unwrap(), pt);
        }
    }
}

#[test]
fn lazy_fragments_match_owned_blocks() {
    for len in [0, 1, BLOCK_PAYLOAD_LENGTH, 3 * BLOCK_PAYLOAD_LENGTH + 5] {
        let msg = message(len, 1000 + len as u64);
        let lazy = fragments([3; 16], &msg).unwrap();
        assert_eq!(lazy.len(), len.div_ceil(BLOCK_PAYLOAD_LENGTH).max(1));
        let owned: Vec<Block> = lazy.map(|b| b.to_block()).collect();
        assert_eq!(owned, fragment([3; 16], &msg).unwrap());
        for b in &owned {
            let mut out = Box::new([0u8; BLOCK_LENGTH]);
            b.as_block_ref().encode_into(&mut out).unwrap();
            assert_eq!(out.to_vec(), b.encode().unwrap());
        }
    }
}

#[test]
fn encrypt_message_round_trip() {
    let (ssk, spk) = keypair(5);
    let (rsk, rpk) = keypair(6);
    let msg = message(2 * BLOCK_PAYLOAD_LENGTH + 77, 5);
    let cts = encrypt_message(&ssk, &rpk, [8; 16], &msg).unwrap();
    assert_eq!(cts.len(), 3);
    let mut blocks = Vec::new();
    for ct in &cts {
        assert_eq!(ct.len(), katzenpost::geometry::USER_FORWARD_PAYLOAD_LENGTH);
        let (sender, b) = decrypt_block(&rsk, ct).unwrap();
        assert_eq!(sender, spk);
        assert_eq!(b.message_id, [8; 16]);
        blocks.push(b);
    }
    assert_eq!(assemble(blocks.iter().rev()).unwrap(), msg);
    assert_eq!(encrypt_message(&ssk, &rpk, [8; 16], b"").unwrap().len(), 1);
}
