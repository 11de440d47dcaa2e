//! §6.1/§6.2 against the Go-made block in `e2e_block_vector.json`.

use katzenpost::block::{decrypt_block, encrypt_block, fragment, open_block, Block, NoiseError};
use katzenpost::geometry::{BLOCK_LENGTH, USER_FORWARD_PAYLOAD_LENGTH};

const VECTOR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/katzenpost-2019/e2e_block_vector.json"
);

fn vector() -> serde_json::Value {
    let text = std::fs::read_to_string(VECTOR)
        .unwrap_or_else(|e| panic!("test vector {VECTOR} missing: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("test vector {VECTOR} is not JSON: {e}"))
}

fn hex_field(v: &serde_json::Value, name: &str) -> Vec<u8> {
    hex::decode(v[name].as_str().unwrap_or_else(|| panic!("{name} missing"))).unwrap()
}

fn key(v: &serde_json::Value, name: &str) -> [u8; 32] {
    hex_field(v, name).try_into().unwrap()
}

#[test]
fn go_block_decrypts() {
    let v = vector();
    assert_eq!(v["noise_protocol"], katzenpost::block::NOISE_PROTOCOL);
    let ct = hex_field(&v, "block_ciphertext");
    assert_eq!(ct.len(), USER_FORWARD_PAYLOAD_LENGTH);
    assert_eq!(
        v["block_ciphertext_length"].as_u64(),
        Some(USER_FORWARD_PAYLOAD_LENGTH as u64)
    );
    assert_eq!(
        v["block_payload_max"].as_u64(),
        Some(katzenpost::geometry::BLOCK_PAYLOAD_LENGTH as u64)
    );

    let (sender, block) = decrypt_block(&key(&v, "recipient_private_key"), &ct).unwrap();
    assert_eq!(sender, key(&v, "sender_public_key"));
    assert_eq!(block.message_id.to_vec(), hex_field(&v, "message_id"));
    assert_eq!(
        u64::from(block.total_blocks),
        v["total_blocks"].as_u64().unwrap()
    );
    assert_eq!(block.block_id, 0);
    assert_eq!(block.payload, hex_field(&v, "message"));

    // Our own encoding of the same block equals the Go plaintext byte for byte.
    let (plaintext, _) = open_block(&key(&v, "recipient_private_key"), &ct).unwrap();
    assert_eq!(plaintext.len(), BLOCK_LENGTH);
    assert_eq!(block.encode().unwrap(), plaintext);
    let ours = fragment(block.message_id, &hex_field(&v, "message")).unwrap();
    assert_eq!(ours, vec![block]);
}

#[test]
fn go_block_rejects_wrong_key_and_tampering() {
    let v = vector();
    let ct = hex_field(&v, "block_ciphertext");
    // The sender's key is not the recipient's.
    assert!(matches!(
        decrypt_block(&key(&v, "sender_private_key"), &ct),
        Err(NoiseError::Noise(_))
    ));
    for pos in [0, 40, 100, USER_FORWARD_PAYLOAD_LENGTH - 1] {
        let mut bad = ct.clone();
        bad[pos] ^= 0x01;
        assert!(
            decrypt_block(&key(&v, "recipient_private_key"), &bad).is_err(),
            "flip at {pos}"
        );
    }
    assert!(matches!(
        decrypt_block(&key(&v, "recipient_private_key"), &ct[1..]),
        Err(NoiseError::BadCiphertextLength { .. })
    ));
}

#[test]
fn we_encrypt_to_the_vector_keys() {
    let v = vector();
    let block = Block {
        message_id: [0x11; 16],
        total_blocks: 1,
        block_id: 0,
        payload: hex_field(&v, "message"),
    };
    let ct = encrypt_block(
        &key(&v, "sender_private_key"),
        &key(&v, "recipient_public_key"),
        &block,
    )
    .unwrap();
    assert_eq!(ct.len(), USER_FORWARD_PAYLOAD_LENGTH);
    let (sender, got) = decrypt_block(&key(&v, "recipient_private_key"), &ct).unwrap();
    assert_eq!(sender, key(&v, "sender_public_key"));
    assert_eq!(got, block);
    // Fresh ephemeral key every time.
    let ct2 = encrypt_block(
        &key(&v, "sender_private_key"),
        &key(&v, "recipient_public_key"),
        &block,
    )
    .unwrap();
    assert_ne!(ct[..32], ct2[..32]);
}
