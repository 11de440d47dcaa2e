#![no_main]
//! End-to-end block parsing (§6.1), decryption with a fixed key (§6.2), the
//! forward body (§2.9), SURB payload classification and keyserver JSON (§7).

use katzenpost::block::noise::seal_block_with_ephemeral_for_testing_only;
use katzenpost::block::{decrypt_block, open_block, Block, ForwardBody};
use katzenpost::geometry::{BLOCK_LENGTH, FORWARD_PAYLOAD_LENGTH, USER_FORWARD_PAYLOAD_LENGTH};
use katzenpost::kaetzchen::{classify_surb_payload, KeyserverRequest, KeyserverResponse};
use libfuzzer_sys::fuzz_target;

// Key pairs from shared/katzenpost-2019/e2e_block_vector.json.
const RECIPIENT_PRIVATE: [u8; 32] = [
    0x27, 0x81, 0xab, 0xe4, 0x8b, 0xa4, 0x7d, 0x81, 0x16, 0x2e, 0x6e, 0x9b, 0xbb, 0x5e, 0xe2, 0x74,
    0x7e, 0xde, 0xaa, 0x36, 0xb8, 0x7c, 0xc2, 0xd1, 0x8e, 0x5f, 0x0f, 0x4a, 0xf3, 0xef, 0xc4, 0x24,
];
const RECIPIENT_PUBLIC: [u8; 32] = [
    0x5a, 0x82, 0x8f, 0xab, 0x7d, 0x4f, 0xd1, 0x23, 0x00, 0x05, 0xd3, 0x16, 0xc8, 0xd0, 0x52, 0xc6,
    0x09, 0x75, 0xe7, 0x25, 0x41, 0x12, 0x80, 0xac, 0x21, 0xa0, 0x2e, 0xdf, 0xdf, 0x6e, 0x7f, 0x2d,
];
const SENDER_PRIVATE: [u8; 32] = [
    0xf7, 0x0c, 0xe6, 0x00, 0xd9, 0x88, 0xbc, 0x72, 0x78, 0xe9, 0x66, 0xf8, 0xae, 0x40, 0xa4, 0x64,
    0x69, 0xc0, 0x5e, 0x8c, 0xfd, 0x9c, 0xe3, 0x2b, 0x9b, 0x85, 0xce, 0x5c, 0xff, 0xe3, 0xd3, 0x75,
];
const SENDER_PUBLIC: [u8; 32] = [
    0x5a, 0x44, 0x90, 0xb9, 0x9e, 0x59, 0x90, 0xc8, 0xb2, 0x24, 0xc7, 0x09, 0x8e, 0x09, 0x09, 0xde,
    0xac, 0xa6, 0x59, 0x27, 0xc0, 0xb4, 0xc6, 0x90, 0xf2, 0x3c, 0xb0, 0x69, 0x34, 0x73, 0x61, 0x1d,
];
const EPHEMERAL: [u8; 32] = [0x11; 32];

/// `data` zero-extended or truncated to `len` bytes.
fn fit(data: &[u8], len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    let n = data.len().min(len);
    v[..n].copy_from_slice(&data[..n]);
    v
}

fuzz_target!(|data: &[u8]| {
    // Block plaintext parsing, raw and at the right length.
    let _ = Block::decode(data);
    let pt = fit(data, BLOCK_LENGTH);
    if let Ok(b) = Block::decode(&pt) {
        assert!(b.block_id < b.total_blocks);
        assert_eq!(b.encode().unwrap(), pt, "decode/encode round trip");
    }

    // The Noise work is slow (X25519): run it for one input in eight.
    if data.first().is_some_and(|b| b & 7 == 0) {
        // Decryption of arbitrary bytes with a fixed key: an error, never a panic.
        let _ = decrypt_block(&RECIPIENT_PRIVATE, data);
        let _ = decrypt_block(&RECIPIENT_PRIVATE, &fit(data, USER_FORWARD_PAYLOAD_LENGTH));

        // A real ciphertext of the fuzzed plaintext: decrypts to it, then the block checks run.
        let ct = seal_block_with_ephemeral_for_testing_only(
            &SENDER_PRIVATE,
            &RECIPIENT_PUBLIC,
            &pt,
            &EPHEMERAL,
        )
        .unwrap();
        let (opened, sender) = open_block(&RECIPIENT_PRIVATE, &ct).unwrap();
        assert_eq!(opened, pt);
        assert_eq!(sender, SENDER_PUBLIC);
        assert_eq!(
            decrypt_block(&RECIPIENT_PRIVATE, &ct).is_ok(),
            Block::decode(&pt).is_ok()
        );
    }

    // Forward body.
    let _ = ForwardBody::parse(data);
    let body = fit(data, FORWARD_PAYLOAD_LENGTH);
    if let Ok(fb) = ForwardBody::parse(&body) {
        assert_eq!(fb.user_payload.len(), USER_FORWARD_PAYLOAD_LENGTH);
        let again = fb.encode().unwrap();
        assert_eq!(
            again[USER_FORWARD_PAYLOAD_LENGTH..].len(),
            FORWARD_PAYLOAD_LENGTH - USER_FORWARD_PAYLOAD_LENGTH
        );
        assert_eq!(ForwardBody::parse(&again).unwrap().surb, fb.surb);
    }

    // SURB payloads and keyserver JSON.
    let _ = classify_surb_payload(data);
    let _ = classify_surb_payload(&body);
    if let Ok(req) = KeyserverRequest::decode(data) {
        assert_eq!(KeyserverRequest::decode(&req.encode()), Ok(req));
    }
    if let Ok(resp) = KeyserverResponse::decode(data) {
        let again = KeyserverResponse::decode(&resp.encode()).unwrap();
        assert_eq!(again.user, resp.user);
        assert_eq!(again.public_key, resp.public_key);
    }
});
