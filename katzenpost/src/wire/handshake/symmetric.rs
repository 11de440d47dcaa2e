//! The Noise symmetric state over BLAKE2b-512 and ChaCha20-Poly1305 (§4.2),
//! and the cipher state used for the transport messages after the handshake.

use blake2::{Blake2b512, Digest};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Tag};
use hmac::{Mac, SimpleHmac};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of the BLAKE2b-512 output (h and ck).
pub const HASH_LEN: usize = 64;
/// ChaCha20-Poly1305 key length.
pub const KEY_LEN: usize = 32;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;

/// Error of an AEAD operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    /// The authentication tag did not verify (wrong key, tampered or misordered data).
    #[error("authentication tag mismatch")]
    BadTag,
    /// The input is shorter than a tag.
    #[error("ciphertext shorter than its tag")]
    TooShort,
    /// The nonce counter reached 2^64 − 1, which is reserved for Rekey.
    #[error("nonce space exhausted")]
    NonceExhausted,
}

fn nonce_bytes(n: u64) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[4..].copy_from_slice(&n.to_le_bytes());
    b
}

/// A Noise CipherState: a ChaCha20-Poly1305 key and a 64-bit nonce counter.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct CipherState {
    key: [u8; KEY_LEN],
    nonce: u64,
}

impl std::fmt::Debug for CipherState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CipherState")
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

impl CipherState {
    /// A cipher state with the given key and next nonce.
    pub fn new(key: [u8; KEY_LEN], nonce: u64) -> Self {
        CipherState { key, nonce }
    }

    /// The next nonce that will be used.
    pub fn nonce(&self) -> u64 {
        self.nonce
    }

    fn aead(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new((&self.key).into())
    }

    fn take_nonce(&mut self) -> Result<u64, CipherError> {
        if self.nonce == u64::MAX {
            return Err(CipherError::NonceExhausted);
        }
        let n = self.nonce;
        self.nonce += 1;
        Ok(n)
    }

    /// Encrypts `buf` in place with the next nonce and returns the tag.
    pub fn encrypt_in_place(
        &mut self,
        ad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], CipherError> {
        let n = self.take_nonce()?;
        let tag = self
            .aead()
            .encrypt_in_place_detached(&nonce_bytes(n).into(), ad, buf)
            .map_err(|_| CipherError::BadTag)?;
        Ok(tag.into())
    }

    /// Decrypts `buf` (ciphertext ‖ tag) in place and returns the plaintext
    /// length. The nonce advances only on success.
    pub fn decrypt_in_place(&mut self, ad: &[u8], buf: &mut [u8]) -> Result<usize, CipherError> {
        if buf.len() < TAG_LEN {
            return Err(CipherError::TooShort);
        }
        if self.nonce == u64::MAX {
            return Err(CipherError::NonceExhausted);
        }
        let split = buf.len() - TAG_LEN;
        let (ct, tag) = buf.split_at_mut(split);
        let tag = Tag::clone_from_slice(tag);
        self.aead()
            .decrypt_in_place_detached(&nonce_bytes(self.nonce).into(), ad, ct, &tag)
            .map_err(|_| CipherError::BadTag)?;
        self.nonce += 1;
        Ok(split)
    }

    /// Encrypts `plaintext` into a new vector (ciphertext ‖ tag).
    pub fn encrypt(&mut self, ad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CipherError> {
        let mut out = Vec::with_capacity(plaintext.len() + TAG_LEN);
        out.extend_from_slice(plaintext);
        let tag = self.encrypt_in_place(ad, &mut out)?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Decrypts `ciphertext ‖ tag` into a new vector.
    pub fn decrypt(&mut self, ad: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, CipherError> {
        let mut buf = ciphertext.to_vec();
        let n = self.decrypt_in_place(ad, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Noise Rekey: the key becomes the first 32 bytes of
    /// ENCRYPT(k, 2^64 − 1, empty, 0^32). The nonce counter is kept.
    pub fn rekey(&mut self) {
        let mut block = [0u8; KEY_LEN];
        // Encryption with a valid key cannot fail.
        let _tag = self
            .aead()
            .encrypt_in_place_detached(&nonce_bytes(u64::MAX).into(), &[], &mut block)
            .expect("ChaCha20-Poly1305 encryption is infallible for 32 bytes");
        self.key = block;
        block.zeroize();
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Zeroizing<[u8; HASH_LEN]> {
    let mut mac = <SimpleHmac<Blake2b512> as Mac>::new_from_slice(key)
        .expect("HMAC accepts keys of any length");
    for p in parts {
        mac.update(p);
    }
    Zeroizing::new(mac.finalize().into_bytes().into())
}

/// Noise HKDF with two outputs over HMAC-BLAKE2b-512.
fn hkdf2(ck: &[u8], ikm: &[u8]) -> (Zeroizing<[u8; HASH_LEN]>, Zeroizing<[u8; HASH_LEN]>) {
    let temp = hmac(ck, &[ikm]);
    let o1 = hmac(&temp[..], &[&[1]]);
    let o2 = hmac(&temp[..], &[&o1[..], &[2]]);
    (o1, o2)
}

/// The Noise SymmetricState: chaining key, handshake hash and an optional key.
pub struct SymmetricState {
    ck: Zeroizing<[u8; HASH_LEN]>,
    h: [u8; HASH_LEN],
    cipher: Option<CipherState>,
}

impl SymmetricState {
    /// InitializeSymmetric for a protocol name of at most 64 bytes.
    pub fn new(protocol_name: &[u8]) -> Self {
        assert!(
            protocol_name.len() <= HASH_LEN,
            "protocol name longer than HASHLEN"
        );
        let mut h = [0u8; HASH_LEN];
        h[..protocol_name.len()].copy_from_slice(protocol_name);
        SymmetricState {
            ck: Zeroizing::new(h),
            h,
            cipher: None,
        }
    }

    /// The handshake hash so far.
    pub fn handshake_hash(&self) -> [u8; HASH_LEN] {
        self.h
    }

    /// MixHash(data).
    pub fn mix_hash(&mut self, data: &[u8]) {
        let mut d = Blake2b512::new();
        d.update(self.h);
        d.update(data);
        self.h = d.finalize().into();
    }

    /// MixKey(ikm): new chaining key and a fresh cipher key with nonce 0.
    pub fn mix_key(&mut self, ikm: &[u8]) {
        let (ck, temp_k) = hkdf2(&self.ck[..], ikm);
        self.ck = ck;
        let mut k = [0u8; KEY_LEN];
        k.copy_from_slice(&temp_k[..KEY_LEN]);
        self.cipher = Some(CipherState::new(k, 0));
        k.zeroize();
    }

    /// EncryptAndHash: appends the (possibly clear) payload to `out`.
    pub fn encrypt_and_hash(
        &mut self,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CipherError> {
        let start = out.len();
        match self.cipher.as_mut() {
            None => out.extend_from_slice(plaintext),
            Some(cs) => {
                let ct = cs.encrypt(&self.h, plaintext)?;
                out.extend_from_slice(&ct);
            }
        }
        let h_input = out[start..].to_vec();
        self.mix_hash(&h_input);
        Ok(())
    }

    /// DecryptAndHash of `data` (ciphertext ‖ tag, or clear text without a key).
    pub fn decrypt_and_hash(&mut self, data: &[u8]) -> Result<Zeroizing<Vec<u8>>, CipherError> {
        let pt = match self.cipher.as_mut() {
            None => data.to_vec(),
            Some(cs) => cs.decrypt(&self.h, data)?,
        };
        self.mix_hash(data);
        Ok(Zeroizing::new(pt))
    }

    /// Split: (initiator → responder, responder → initiator) cipher states.
    pub fn split(&self) -> (CipherState, CipherState) {
        let (o1, o2) = hkdf2(&self.ck[..], &[]);
        let mut k1 = [0u8; KEY_LEN];
        let mut k2 = [0u8; KEY_LEN];
        k1.copy_from_slice(&o1[..KEY_LEN]);
        k2.copy_from_slice(&o2[..KEY_LEN]);
        (CipherState::new(k1, 0), CipherState::new(k2, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_round_trip_and_nonce_order() {
        let mut a = CipherState::new([7; 32], 0);
        let mut b = CipherState::new([7; 32], 0);
        let c1 = a.encrypt(b"ad", b"one").unwrap();
        let c2 = a.encrypt(b"ad", b"two").unwrap();
        // Out of order fails and does not advance the nonce.
        assert_eq!(b.decrypt(b"ad", &c2), Err(CipherError::BadTag));
        assert_eq!(b.decrypt(b"ad", &c1).unwrap(), b"one");
        assert_eq!(b.decrypt(b"ad", &c2).unwrap(), b"two");
        assert_eq!(b.decrypt(b"ad", &[0; 3]), Err(CipherError::TooShort));
    }

    #[test]
    fn rekey_keeps_nonce_and_changes_key() {
        let mut a = CipherState::new([1; 32], 5);
        let before = a.key;
        a.rekey();
        assert_eq!(a.nonce(), 5);
        assert_ne!(a.key, before);
        let mut b = CipherState::new([1; 32], 5);
        b.rekey();
        assert_eq!(a.key, b.key);
    }

    #[test]
    fn nonce_exhaustion_is_an_error() {
        let mut a = CipherState::new([1; 32], u64::MAX - 1);
        assert!(a.encrypt(&[], b"x").is_ok());
        assert_eq!(a.encrypt(&[], b"x"), Err(CipherError::NonceExhausted));
    }

    #[test]
    fn hkdf_matches_definition() {
        // HKDF(ck, ikm): temp = HMAC(ck, ikm); o1 = HMAC(temp, 01); o2 = HMAC(temp, o1 ‖ 02).
        let (o1, o2) = hkdf2(b"chaining key", b"input");
        let temp = hmac(b"chaining key", &[b"input"]);
        let mut o2_input = o1.to_vec();
        o2_input.push(2);
        assert_eq!(o1[..], hmac(&temp[..], &[&[1u8]])[..]);
        assert_eq!(o2[..], hmac(&temp[..], &[&o2_input])[..]);
        assert_ne!(o1[..], o2[..]);
    }
}
