//! NewHope-Simple key exchange ("NewHope without reconciliation"), exactly as
//! katzenpost/newhope@0c77ddc encodes it (§4.4).
//!
//! Alice (the handshake initiator) sends a 1,824-byte message, Bob answers
//! with 2,176 bytes, and both derive the same 32-byte shared secret (with a
//! failure probability below 2^-60). Randomness is drawn in the reference's
//! order so that a replayed RNG reproduces the reference's bytes.

pub mod poly;

use poly::{Poly, COMPRESSED_LEN, PACKED_LEN};
use rand_core::{CryptoRng, RngCore};
use sha3::{Digest, Sha3_256};
use zeroize::Zeroizing;

/// Length of the public seed.
pub const SEED_LEN: usize = 32;
/// Length of Alice's message: packed b̂ ‖ seed.
pub const ALICE_MESSAGE_LEN: usize = PACKED_LEN + SEED_LEN;
/// Length of Bob's message: packed û ‖ compressed v.
pub const BOB_MESSAGE_LEN: usize = PACKED_LEN + COMPRESSED_LEN;
/// Length of the shared secret.
pub const SHARED_SECRET_LEN: usize = 32;

const _: () = assert!(ALICE_MESSAGE_LEN == 1824);
const _: () = assert!(BOB_MESSAGE_LEN == 2176);

/// The 32-byte shared secret, wiped on drop.
pub type SharedSecret = Zeroizing<[u8; SHARED_SECRET_LEN]>;

/// Alice's secret state between her message and Bob's answer.
pub struct AlicePrivateKey {
    s_hat: Poly,
}

impl std::fmt::Debug for AlicePrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AlicePrivateKey(..)")
    }
}

fn sha3_256(data: &[u8]) -> [u8; 32] {
    Sha3_256::digest(data).into()
}

fn random32<R: RngCore + CryptoRng>(rng: &mut R) -> Zeroizing<[u8; 32]> {
    let mut b = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(&mut b[..]);
    b
}

/// Alice's key generation: returns her secret state and her 1,824-byte
/// message. Draws 32 bytes (hashed into the public seed), then the 32-byte
/// noise seed.
pub fn alice_keygen<R: RngCore + CryptoRng>(
    rng: &mut R,
) -> (AlicePrivateKey, [u8; ALICE_MESSAGE_LEN]) {
    let seed = sha3_256(&random32(rng)[..]);
    let a_hat = poly::parse_seed(&seed);
    let nseed = random32(rng);
    let s_hat = poly::ntt(&poly::noise(&nseed, 0));
    let e_hat = poly::ntt(&poly::noise(&nseed, 1));
    let b_hat = poly::add_poly(&poly::pointwise(&a_hat, &s_hat), &e_hat);

    let mut msg = [0u8; ALICE_MESSAGE_LEN];
    let (packed, seed_out) = msg.split_at_mut(PACKED_LEN);
    poly::pack14(&b_hat, packed.try_into().expect("PACKED_LEN"));
    seed_out.copy_from_slice(&seed);
    (AlicePrivateKey { s_hat }, msg)
}

/// Bob's answer to Alice's message: his 2,176-byte message and the shared
/// secret. Draws the 32-byte noise seed, then 32 bytes hashed into ν.
/// Every 1,824-byte string is a valid Alice message, so this cannot fail.
pub fn bob_respond<R: RngCore + CryptoRng>(
    rng: &mut R,
    alice: &[u8; ALICE_MESSAGE_LEN],
) -> ([u8; BOB_MESSAGE_LEN], SharedSecret) {
    let nseed = random32(rng);
    let nu = Zeroizing::new(sha3_256(&random32(rng)[..]));

    let (packed, seed) = alice.split_at(PACKED_LEN);
    let b_hat = poly::unpack14(packed.try_into().expect("PACKED_LEN"));
    let a_hat = poly::parse_seed(seed.try_into().expect("SEED_LEN"));

    let s_hat = poly::ntt(&poly::noise(&nseed, 0));
    let e_hat = poly::ntt(&poly::noise(&nseed, 1));
    let e2 = poly::noise(&nseed, 2);

    let u_hat = poly::add_poly(&poly::pointwise(&a_hat, &s_hat), &e_hat);
    let v = poly::add_poly(
        &poly::add_poly(&poly::intt(&poly::pointwise(&b_hat, &s_hat)), &e2),
        &poly::encode_message(&nu),
    );

    let mut msg = [0u8; BOB_MESSAGE_LEN];
    let (u_out, v_out) = msg.split_at_mut(PACKED_LEN);
    poly::pack14(&u_hat, u_out.try_into().expect("PACKED_LEN"));
    poly::compress3(&v, v_out.try_into().expect("COMPRESSED_LEN"));
    (msg, Zeroizing::new(sha3_256(&nu[..])))
}

impl AlicePrivateKey {
    /// Alice's shared secret from Bob's message. Every 2,176-byte string is
    /// accepted (a forged message just yields a secret nobody else knows).
    pub fn shared_secret(&self, bob: &[u8; BOB_MESSAGE_LEN]) -> SharedSecret {
        let (packed, compressed) = bob.split_at(PACKED_LEN);
        let u_hat = poly::unpack14(packed.try_into().expect("PACKED_LEN"));
        let v = poly::decompress3(compressed.try_into().expect("COMPRESSED_LEN"));
        let k = poly::sub_poly(&poly::intt(&poly::pointwise(&self.s_hat, &u_hat)), &v);
        let nu = Zeroizing::new(poly::decode_message(&k));
        Zeroizing::new(sha3_256(&nu[..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn round_trips_for_many_seeds() {
        for seed in 0..64u64 {
            let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
            let (alice, a_msg) = alice_keygen(&mut rng);
            let (b_msg, bob_secret) = bob_respond(&mut rng, &a_msg);
            let alice_secret = alice.shared_secret(&b_msg);
            assert_eq!(alice_secret[..], bob_secret[..], "seed {seed}");
        }
    }

    #[test]
    fn tampered_bob_message_changes_secret() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let (alice, a_msg) = alice_keygen(&mut rng);
        let (mut b_msg, bob_secret) = bob_respond(&mut rng, &a_msg);
        // Move many û coefficients: the decoded ν becomes unrelated.
        for b in b_msg[..PACKED_LEN].iter_mut() {
            *b = b.wrapping_add(0x55);
        }
        assert_ne!(alice.shared_secret(&b_msg)[..], bob_secret[..]);
    }

    #[test]
    fn messages_differ_per_randomness() {
        let mut r1 = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let mut r2 = rand_chacha::ChaCha20Rng::seed_from_u64(2);
        assert_ne!(alice_keygen(&mut r1).1[..], alice_keygen(&mut r2).1[..]);
    }
}
