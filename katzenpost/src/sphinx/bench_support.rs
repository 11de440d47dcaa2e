//! The primitives as the benchmarks measure them (not a stable API).

/// X25519 with x25519-dalek's Montgomery ladder.
pub fn x25519_ladder(k: &[u8; 32], u: &[u8; 32]) -> [u8; 32] {
    super::exp::ladder(k, u)
}

/// X25519 as Sphinx computes it (Edwards form, ladder for twist points).
pub fn x25519(k: &[u8; 32], u: &[u8; 32]) -> [u8; 32] {
    super::exp::exp(k, u)
}

/// AEZ encipher as Sphinx runs it (AES-NI when present).
pub fn aez_encrypt(key: &[u8; 48], nonce: &[u8; 16], data: &mut [u8]) {
    super::aez::encrypt(key, nonce, data)
}

/// AEZ encipher with the portable implementation (zears).
pub fn aez_encrypt_portable(key: &[u8; 48], nonce: &[u8; 16], data: &mut [u8]) {
    super::aez::portable_encrypt(key, nonce, data)
}
