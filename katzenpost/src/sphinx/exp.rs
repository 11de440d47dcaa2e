//! X25519 group operations of Sphinx (§2.1): scalars are clamped as RFC 7748
//! `X25519(k, u)` does; there is no all-zero-output check.

use x25519_dalek::{x25519, X25519_BASEPOINT_BYTES};

/// X25519(k, u).
pub fn exp(scalar: &[u8; 32], point: &[u8; 32]) -> [u8; 32] {
    x25519(*scalar, *point)
}

/// X25519(k, 9): the public key of `scalar`.
pub fn exp_base(scalar: &[u8; 32]) -> [u8; 32] {
    x25519(*scalar, X25519_BASEPOINT_BYTES)
}

/// A group element prepared for several multiplications.
pub struct Prepared {
    u: [u8; 32],
}

impl Prepared {
    /// Prepares the u-coordinate `point`.
    pub fn new(point: &[u8; 32]) -> Prepared {
        Prepared { u: *point }
    }

    /// X25519(k, point).
    pub fn mul(&self, scalar: &[u8; 32]) -> [u8; 32] {
        exp(scalar, &self.u)
    }
}
