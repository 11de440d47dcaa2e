//! AEZ v5 as the Sphinx SPRP: 48-byte key used raw, 16-byte nonce, no
//! associated data (an empty list), tau = 0.

use zears::Aez;

/// Enciphers `data` (at least one byte) in place.
pub fn encrypt(key: &[u8; 48], nonce: &[u8; 16], data: &mut [u8]) {
    Aez::new(key).encrypt_inplace(nonce, &[], 0, data);
}

/// Deciphers `data` (at least one byte) in place. With tau = 0 this cannot fail.
pub fn decrypt(key: &[u8; 48], nonce: &[u8; 16], data: &mut [u8]) {
    // tau = 0 means no authenticity check, so decryption always succeeds.
    let _ = Aez::new(key).decrypt_inplace(nonce, &[], 0, data);
}
