//! Block encryption (§6.2): one `Noise_X_25519_ChaChaPoly_SHA256` handshake
//! message per block, empty prologue, no PSK.
//!
//! The initiator's static key is the sender account's X25519 identity key, the
//! responder's is the recipient's identity key. The ciphertext is
//! `e (32) ‖ enc s (48) ‖ enc block (50,562)` = 50,642 bytes; the recipient
//! learns the sender's static key from the handshake.

use std::sync::LazyLock;

use snow::params::NoiseParams;

use super::fragment::{fragments, Block, BlockError, MessageId};
use crate::geometry::{BLOCK_LENGTH, USER_FORWARD_PAYLOAD_LENGTH};

/// The Noise protocol name (the spec says BLAKE2b; the code, and the network, use SHA-256).
pub const NOISE_PROTOCOL: &str = "Noise_X_25519_ChaChaPoly_SHA256";

static PARAMS: LazyLock<NoiseParams> = LazyLock::new(|| {
    NOISE_PROTOCOL
        .parse()
        .expect("constant Noise protocol name parses")
});

/// Errors sealing or opening a block.
#[derive(Debug, thiserror::Error)]
pub enum NoiseError {
    /// A block ciphertext must be exactly 50,642 bytes.
    #[error("block ciphertext is {len} bytes, expected {USER_FORWARD_PAYLOAD_LENGTH}")]
    BadCiphertextLength { len: usize },
    /// A block plaintext must be exactly 50,546 bytes.
    #[error("block plaintext is {len} bytes, expected {BLOCK_LENGTH}")]
    BadPlaintextLength { len: usize },
    /// The Noise handshake failed (wrong recipient key or corrupted ciphertext).
    #[error("noise: {0}")]
    Noise(#[from] snow::Error),
    /// The handshake did not yield a 32-byte sender key.
    #[error("noise handshake gave no sender static key")]
    NoSenderKey,
    /// The ciphertext decrypted, but the plaintext is not a valid block.
    #[error("invalid block: {0}")]
    Block(#[from] BlockError),
}

/// Encrypts a 50,546-byte block plaintext from `sender_private` (identity key)
/// to `recipient_public`. Returns the 50,642-byte ciphertext. The ephemeral key
/// comes from the operating system's random generator.
pub fn seal_block(
    sender_private: &[u8; 32],
    recipient_public: &[u8; 32],
    plaintext: &[u8],
) -> Result<Vec<u8>, NoiseError> {
    seal_inner(sender_private, recipient_public, plaintext, None)
}

/// [`seal_block`] with a fixed ephemeral private key: for tests and
/// reproducible fixtures only (reusing an ephemeral key leaks plaintext).
#[doc(hidden)]
pub fn seal_block_with_ephemeral_for_testing_only(
    sender_private: &[u8; 32],
    recipient_public: &[u8; 32],
    plaintext: &[u8],
    ephemeral_private: &[u8; 32],
) -> Result<Vec<u8>, NoiseError> {
    seal_inner(
        sender_private,
        recipient_public,
        plaintext,
        Some(ephemeral_private),
    )
}

fn seal_inner(
    sender_private: &[u8; 32],
    recipient_public: &[u8; 32],
    plaintext: &[u8],
    ephemeral: Option<&[u8; 32]>,
) -> Result<Vec<u8>, NoiseError> {
    if plaintext.len() != BLOCK_LENGTH {
        return Err(NoiseError::BadPlaintextLength {
            len: plaintext.len(),
        });
    }
    let mut builder = snow::Builder::new(PARAMS.clone())
        .local_private_key(sender_private)?
        .remote_public_key(recipient_public)?;
    if let Some(e) = ephemeral {
        builder = builder.fixed_ephemeral_key_for_testing_only(e);
    }
    let mut hs = builder.build_initiator()?;
    let mut out = vec![0u8; USER_FORWARD_PAYLOAD_LENGTH];
    let n = hs.write_message(plaintext, &mut out)?;
    if n != USER_FORWARD_PAYLOAD_LENGTH {
        // Cannot happen with this pattern; keep the length invariant explicit.
        return Err(NoiseError::BadCiphertextLength { len: n });
    }
    Ok(out)
}

/// Decrypts a 50,642-byte block ciphertext with the recipient's identity
/// private key. Returns the 50,546-byte plaintext and the sender's static
/// (identity) public key, the only authenticated sender identity.
pub fn open_block(
    recipient_private: &[u8; 32],
    ciphertext: &[u8],
) -> Result<(Vec<u8>, [u8; 32]), NoiseError> {
    if ciphertext.len() != USER_FORWARD_PAYLOAD_LENGTH {
        return Err(NoiseError::BadCiphertextLength {
            len: ciphertext.len(),
        });
    }
    let mut hs = snow::Builder::new(PARAMS.clone())
        .local_private_key(recipient_private)?
        .build_responder()?;
    let mut plaintext = vec![0u8; USER_FORWARD_PAYLOAD_LENGTH];
    let n = hs.read_message(ciphertext, &mut plaintext)?;
    if n != BLOCK_LENGTH {
        return Err(NoiseError::BadPlaintextLength { len: n });
    }
    plaintext.truncate(n);
    let sender: [u8; 32] = hs
        .get_remote_static()
        .and_then(|s| s.try_into().ok())
        .ok_or(NoiseError::NoSenderKey)?;
    Ok((plaintext, sender))
}

/// Encodes `block` (§6.1) and encrypts it (§6.2): the 50,642-byte user payload.
pub fn encrypt_block(
    sender_private: &[u8; 32],
    recipient_public: &[u8; 32],
    block: &Block,
) -> Result<Vec<u8>, NoiseError> {
    let mut plaintext = Box::new([0u8; BLOCK_LENGTH]);
    block.encode_into(&mut plaintext)?;
    seal_block(sender_private, recipient_public, &plaintext[..])
}

/// Fragments `message` (§6.1) and encrypts every block to `recipient_public`
/// (§6.2): the 50,642-byte ciphertexts in block order, ready to be stored and
/// retransmitted byte-identical.
pub fn encrypt_message(
    sender_private: &[u8; 32],
    recipient_public: &[u8; 32],
    message_id: MessageId,
    message: &[u8],
) -> Result<Vec<Vec<u8>>, NoiseError> {
    let mut plaintext = Box::new([0u8; BLOCK_LENGTH]);
    fragments(message_id, message)?
        .map(|b| {
            b.encode_into(&mut plaintext)?;
            seal_block(sender_private, recipient_public, &plaintext[..])
        })
        .collect()
}

/// Decrypts a block ciphertext and parses the block with every receiver check.
/// Returns the sender's static public key and the block.
pub fn decrypt_block(
    recipient_private: &[u8; 32],
    ciphertext: &[u8],
) -> Result<([u8; 32], Block), NoiseError> {
    let (plaintext, sender) = open_block(recipient_private, ciphertext)?;
    Ok((sender, Block::decode(&plaintext)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use x25519_dalek::{PublicKey, StaticSecret};

    fn keypair(seed: u8) -> ([u8; 32], [u8; 32]) {
        let sk = StaticSecret::from([seed; 32]);
        (sk.to_bytes(), PublicKey::from(&sk).to_bytes())
    }

    #[test]
    fn fixed_ephemeral_is_deterministic_and_round_trips() {
        let (ssk, spk) = keypair(1);
        let (rsk, rpk) = keypair(2);
        let block = Block {
            message_id: [9; 16],
            total_blocks: 1,
            block_id: 0,
            payload: b"hi".to_vec(),
        };
        let mut pt = Box::new([0u8; BLOCK_LENGTH]);
        block.encode_into(&mut pt).unwrap();
        let a = seal_block_with_ephemeral_for_testing_only(&ssk, &rpk, &pt[..], &[3; 32]).unwrap();
        let b = seal_block_with_ephemeral_for_testing_only(&ssk, &rpk, &pt[..], &[3; 32]).unwrap();
        assert_eq!(a, b);
        let (sender, got) = decrypt_block(&rsk, &a).unwrap();
        assert_eq!(sender, spk);
        assert_eq!(got, block);
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let (ssk, _) = keypair(1);
        let (rsk, rpk) = keypair(2);
        assert!(matches!(
            seal_block(&ssk, &rpk, &[0u8; 10]),
            Err(NoiseError::BadPlaintextLength { len: 10 })
        ));
        assert!(matches!(
            open_block(&rsk, &[0u8; 10]),
            Err(NoiseError::BadCiphertextLength { len: 10 })
        ));
    }
}
