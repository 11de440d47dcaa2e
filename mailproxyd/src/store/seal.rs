//! Sealing of stored records with XChaCha20-Poly1305.
//!
//! XChaCha20-Poly1305 rather than ChaCha20-Poly1305: every record is sealed
//! with a fresh random nonce, and a 192-bit nonce makes random nonces safe
//! for any number of records under one key (with 96 bits the birthday bound
//! caps a key at roughly 2^32 seals). Each record's table name and key are the
//! associated data, so a sealed value moved to another key or table fails to
//! open. Keys of the generic tables are replaced by a keyed blind index
//! (HMAC-SHA-256) so that they reveal nothing either.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Format version byte in front of every sealed value.
const SEAL_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// A 32-byte storage key (zeroed on drop).
#[derive(Clone)]
pub struct StorageKey(pub(crate) Zeroizing<[u8; 32]>);

impl StorageKey {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        StorageKey(Zeroizing::new(bytes))
    }
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut k[..]);
        StorageKey(k)
    }
}

impl std::fmt::Debug for StorageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StorageKey(..)")
    }
}

/// A sealed value failed to open: wrong key, or the record was altered or moved.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("sealed record in table {table} failed authentication (wrong key or tampered record)")]
pub struct OpenError {
    /// Table the record was read from.
    pub table: &'static str,
}

/// Seals and opens records, and computes blind indexes.
pub struct Sealer {
    aead: XChaCha20Poly1305,
    index_key: Zeroizing<[u8; 32]>,
}

fn subkey(key: &StorageKey, label: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(b"mailproxy store subkey v1\0");
    h.update(label);
    h.update(&key.0[..]);
    Zeroizing::new(h.finalize().into())
}

fn associated_data(table: &str, key: &[u8]) -> Vec<u8> {
    let mut ad = Vec::with_capacity(24 + table.len() + key.len());
    ad.extend_from_slice(b"mailproxy store v1\0");
    ad.extend_from_slice(table.as_bytes());
    ad.push(0);
    ad.extend_from_slice(key);
    ad
}

impl Sealer {
    /// Derives the sealing and indexing sub-keys from the storage key.
    pub fn new(key: &StorageKey) -> Self {
        let aead_key = subkey(key, b"aead");
        Sealer {
            aead: XChaCha20Poly1305::new((&*aead_key).into()),
            index_key: subkey(key, b"index"),
        }
    }

    /// Seals `plaintext` as the value of `key` in `table`.
    pub fn seal(&self, table: &str, key: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ad = associated_data(table, key);
        let ct = self
            .aead
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &ad,
                },
            )
            // Encryption only fails for inputs beyond 2^38 bytes, which the
            // size limits exclude; treat it as a bug, not as input.
            .expect("XChaCha20-Poly1305 input within limits");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Opens a value sealed for `key` in `table`.
    pub fn open(
        &self,
        table: &'static str,
        key: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < 1 + NONCE_LEN + TAG_LEN || sealed[0] != SEAL_VERSION {
            return Err(OpenError { table });
        }
        let ad = associated_data(table, key);
        self.aead
            .decrypt(
                XNonce::from_slice(&sealed[1..1 + NONCE_LEN]),
                Payload {
                    msg: &sealed[1 + NONCE_LEN..],
                    aad: &ad,
                },
            )
            .map_err(|_| OpenError { table })
    }

    /// A keyed blind index of `key` for `table` (HMAC-SHA-256).
    pub fn blind(&self, table: &str, key: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.index_key[..])
            .expect("HMAC takes any key length");
        mac.update(table.as_bytes());
        mac.update(&[0]);
        mac.update(key);
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_binding() {
        let s = Sealer::new(&StorageKey::generate());
        let sealed = s.seal("inbox", b"k1", b"hello");
        assert_eq!(s.open("inbox", b"k1", &sealed).unwrap(), b"hello");
        assert!(s.open("inbox", b"k2", &sealed).is_err(), "key is bound");
        assert!(s.open("queue", b"k1", &sealed).is_err(), "table is bound");
        let other = Sealer::new(&StorageKey::generate());
        assert!(other.open("inbox", b"k1", &sealed).is_err(), "wrong key");
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 1;
            assert!(s.open("inbox", b"k1", &t).is_err(), "flip at {i}");
        }
        assert!(s.open("inbox", b"k1", &sealed[..10]).is_err());
        assert_ne!(s.seal("inbox", b"k1", b"hello"), sealed, "random nonces");
        assert_ne!(s.blind("a", b"x"), s.blind("b", b"x"));
        assert_eq!(s.blind("a", b"x"), s.blind("a", b"x"));
        assert_ne!(s.blind("a", b"x"), other.blind("a", b"x"));
    }
}
