//! Sphinx symmetric primitives (§2.1, §2.2): KDF, MAC, stream cipher, SPRP,
//! replay hash.

use aes::cipher::{KeyIvInit, StreamCipher};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512_256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::geometry::{MAC_LENGTH, SPRP_IV_LENGTH, SPRP_KEY_LENGTH};

/// HKDF info string (lower-case k, as the 2019 code has it).
pub const KDF_INFO: &[u8] = b"katzenpost-kdf-v0-hkdf-sha256";
/// KDF output length.
pub const KDF_OUTPUT_LENGTH: usize = 144;

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;
type HmacSha256 = Hmac<Sha256>;

/// The per-hop keys derived from one shared secret (§2.2).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct HopKeys {
    /// HMAC-SHA256 key of the header MAC.
    pub header_mac: [u8; 32],
    /// AES-128 key of the routing-info stream.
    pub header_enc: [u8; 16],
    /// AES-CTR initial counter block, also the SPRP nonce.
    pub header_iv: [u8; SPRP_IV_LENGTH],
    /// AEZ key of the payload SPRP.
    pub payload_sprp: [u8; SPRP_KEY_LENGTH],
    /// Blinding factor (an X25519 scalar, clamped when used).
    pub blinding: [u8; 32],
}

impl HopKeys {
    /// KDF(shared secret): HKDF-SHA256 expand only, PRK = the secret.
    pub fn derive(shared_secret: &[u8; 32]) -> HopKeys {
        let mut okm = [0u8; KDF_OUTPUT_LENGTH];
        // A 32-byte PRK is valid for SHA-256 and 144 <= 255 * 32.
        let hk = Hkdf::<Sha256>::from_prk(shared_secret).expect("32-byte PRK is valid");
        hk.expand(KDF_INFO, &mut okm)
            .expect("144 bytes is a valid HKDF length");
        let mut k = HopKeys {
            header_mac: [0; 32],
            header_enc: [0; 16],
            header_iv: [0; 16],
            payload_sprp: [0; 48],
            blinding: [0; 32],
        };
        k.header_mac.copy_from_slice(&okm[0..32]);
        k.header_enc.copy_from_slice(&okm[32..48]);
        k.header_iv.copy_from_slice(&okm[48..64]);
        k.payload_sprp.copy_from_slice(&okm[64..112]);
        k.blinding.copy_from_slice(&okm[112..144]);
        okm.zeroize();
        k
    }

    /// XORs the header keystream S(header_enc, header_iv) into `data`.
    pub fn xor_header_stream(&self, data: &mut [u8]) {
        let mut c = Aes128Ctr::new(&self.header_enc.into(), &self.header_iv.into());
        c.apply_keystream(data);
    }

    /// HMAC-SHA256/128 over the concatenation of `parts` with the header MAC key.
    pub fn header_mac(&self, parts: &[&[u8]]) -> [u8; MAC_LENGTH] {
        mac(&self.header_mac, parts)
    }
}

/// HMAC-SHA256 truncated to 16 bytes over the concatenation of `parts`.
pub fn mac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; MAC_LENGTH] {
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    let full = m.finalize().into_bytes();
    let mut out = [0u8; MAC_LENGTH];
    out.copy_from_slice(&full[..MAC_LENGTH]);
    out
}

/// Constant-time equality of two MACs.
pub fn mac_eq(a: &[u8; MAC_LENGTH], b: &[u8]) -> bool {
    b.len() == MAC_LENGTH && bool::from(a.ct_eq(b))
}

/// Replay tag: SHA-512/256 of the header's group element.
pub fn replay_tag(group_element: &[u8]) -> [u8; 32] {
    Sha512_256::digest(group_element).into()
}

/// SPRP encryption (AEZ v5, no AD, tau 0) in place. Empty data is left as is.
pub fn sprp_encrypt(key: &[u8; SPRP_KEY_LENGTH], iv: &[u8; SPRP_IV_LENGTH], data: &mut [u8]) {
    if data.is_empty() {
        return;
    }
    super::aez::encrypt(key, iv, data);
}

/// SPRP decryption (AEZ v5, no AD, tau 0) in place. Empty data is left as is.
pub fn sprp_decrypt(key: &[u8; SPRP_KEY_LENGTH], iv: &[u8; SPRP_IV_LENGTH], data: &mut [u8]) {
    if data.is_empty() {
        return;
    }
    super::aez::decrypt(key, iv, data);
}
