//! X25519 group operations of Sphinx (§2.1): scalars are clamped as RFC 7748
//! `X25519(k, u)` does; there is no all-zero-output check.
//!
//! Speed: instead of the Montgomery ladder, points are mapped to the
//! Edwards form and multiplied with curve25519-dalek's variable-base
//! multiplication (its AVX2 backend is picked at run time); only the
//! u-coordinate is returned, so the sign chosen by the map does not matter.
//! u-coordinates on the quadratic twist have no Edwards point: those fall
//! back to the ladder (whether α lies on the twist is public anyway).
//!
//! Header creation multiplies a node key by a chain of clamped scalars
//! x, b_0, …, b_{i−1}. Every clamped scalar is a multiple of 8, so the chain
//! equals one multiplication of the prime-order point [8]P by
//! 8^{k−1} · Π (c_j / 8) mod ℓ ([`ScalarChain`]), and the group elements
//! α_i are fixed-base multiplications by 8^k · Π (c_j / 8) mod ℓ.

use curve25519_dalek::constants::ED25519_BASEPOINT_TABLE;
use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::{EdwardsPoint, Scalar};
use zeroize::{Zeroize, Zeroizing};

/// RFC 7748 clamping.
fn clamp(k: &[u8; 32]) -> [u8; 32] {
    let mut c = *k;
    c[0] &= 248;
    c[31] &= 127;
    c[31] |= 64;
    c
}

/// clamp(k) / 8 as a scalar mod ℓ.
fn clamped_div8(k: &[u8; 32]) -> Scalar {
    let mut c = clamp(k);
    let mut carry = 0u8;
    for b in c.iter_mut().rev() {
        let next = *b & 7;
        *b = (*b >> 3) | (carry << 5);
        carry = next;
    }
    let s = Scalar::from_bytes_mod_order(c);
    c.zeroize();
    s
}

/// X25519 with the Montgomery ladder (the reference; used for twist points).
pub fn ladder(scalar: &[u8; 32], point: &[u8; 32]) -> [u8; 32] {
    x25519_dalek::x25519(*scalar, *point)
}

/// X25519(k, u).
pub fn exp(scalar: &[u8; 32], point: &[u8; 32]) -> [u8; 32] {
    Prepared::new(point).mul(scalar)
}

/// X25519(k, 9): the public key of `scalar`.
pub fn exp_base(scalar: &[u8; 32]) -> [u8; 32] {
    EdwardsPoint::mul_base_clamped(*scalar).to_montgomery().0
}

/// A group element prepared for several multiplications.
pub struct Prepared {
    u: [u8; 32],
    edwards: Option<EdwardsPoint>,
}

impl Prepared {
    /// Prepares the u-coordinate `point`.
    pub fn new(point: &[u8; 32]) -> Prepared {
        Prepared {
            u: *point,
            edwards: MontgomeryPoint(*point).to_edwards(0),
        }
    }

    /// X25519(k, point).
    pub fn mul(&self, scalar: &[u8; 32]) -> [u8; 32] {
        match &self.edwards {
            Some(p) => p.mul_clamped(*scalar).to_montgomery().0,
            None => ladder(scalar, &self.u),
        }
    }
}

/// The chain of clamped scalars x, b_0, b_1, … of header creation.
pub struct ScalarChain {
    scalars: Vec<Zeroizing<[u8; 32]>>,
    /// Π clamp(c_j) / 8 mod ℓ.
    product: Scalar,
}

impl Drop for ScalarChain {
    fn drop(&mut self) {
        self.product.zeroize();
    }
}

impl ScalarChain {
    /// A chain holding the ephemeral secret x.
    pub fn new(x: &[u8; 32]) -> ScalarChain {
        ScalarChain {
            scalars: vec![Zeroizing::new(*x)],
            product: clamped_div8(x),
        }
    }

    /// Appends a blinding factor.
    pub fn push(&mut self, b: &[u8; 32]) {
        self.product *= clamped_div8(b);
        self.scalars.push(Zeroizing::new(*b));
    }

    fn eights(n: usize) -> Scalar {
        let mut s = Scalar::ONE;
        for _ in 0..n {
            s *= Scalar::from(8u8);
        }
        s
    }

    /// X25519(c_{k−1}, … X25519(c_1, X25519(c_0, u))).
    pub fn apply(&self, u: &[u8; 32]) -> [u8; 32] {
        match MontgomeryPoint(*u).to_edwards(0) {
            Some(p) => {
                let mut m = self.product * Self::eights(self.scalars.len() - 1);
                let r = (m * p.mul_by_cofactor()).to_montgomery().0;
                m.zeroize();
                r
            }
            None => {
                let mut acc = *u;
                for c in &self.scalars {
                    acc = ladder(c, &acc);
                }
                acc
            }
        }
    }

    /// X25519(c_{k−1}, … X25519(c_0, 9)).
    pub fn apply_base(&self) -> [u8; 32] {
        let mut m = self.product * Self::eights(self.scalars.len());
        let r = (&m * ED25519_BASEPOINT_TABLE).to_montgomery().0;
        m.zeroize();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{RngCore, SeedableRng};

    fn random(rng: &mut ChaCha20Rng) -> [u8; 32] {
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut b);
        b
    }

    /// Points to try: random u (about half on the twist), honest public
    /// keys, small-order points, u ≥ p, the top bit set.
    fn points(rng: &mut ChaCha20Rng) -> Vec<[u8; 32]> {
        let mut pts: Vec<[u8; 32]> = (0..40).map(|_| random(rng)).collect();
        for _ in 0..10 {
            pts.push(ladder(&random(rng), &x25519_dalek::X25519_BASEPOINT_BYTES));
        }
        let mut one = [0u8; 32];
        one[0] = 1;
        pts.push([0u8; 32]);
        pts.push(one);
        // p − 1 (= −1, on the twist), p, p + 1 (non-canonical).
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        let mut pm1 = p;
        pm1[0] = 0xec;
        let mut pp1 = p;
        pp1[0] = 0xee;
        pts.extend([p, pm1, pp1]);
        // A point of order 8 (u = 325606250916557431795983626356110631294008115727848805560023387167927233504).
        pts.push(hex_point(
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        ));
        let mut top = ladder(&random(rng), &x25519_dalek::X25519_BASEPOINT_BYTES);
        top[31] |= 0x80;
        pts.push(top);
        pts
    }

    fn hex_point(h: &str) -> [u8; 32] {
        hex::decode(h).unwrap().try_into().unwrap()
    }

    #[test]
    fn exp_matches_ladder() {
        let mut rng = ChaCha20Rng::seed_from_u64(21);
        let mut twist = 0;
        for u in points(&mut rng) {
            if MontgomeryPoint(u).to_edwards(0).is_none() {
                twist += 1;
            }
            let prepared = Prepared::new(&u);
            for _ in 0..3 {
                let k = random(&mut rng);
                assert_eq!(exp(&k, &u), ladder(&k, &u), "u = {}", hex::encode(u));
                assert_eq!(prepared.mul(&k), ladder(&k, &u));
            }
        }
        assert!(twist > 5, "twist fallback exercised");
    }

    #[test]
    fn exp_base_matches_ladder() {
        let mut rng = ChaCha20Rng::seed_from_u64(22);
        for _ in 0..20 {
            let k = random(&mut rng);
            assert_eq!(
                exp_base(&k),
                ladder(&k, &x25519_dalek::X25519_BASEPOINT_BYTES)
            );
        }
    }

    #[test]
    fn scalar_chain_matches_sequential_ladder() {
        let mut rng = ChaCha20Rng::seed_from_u64(23);
        let pts = points(&mut rng);
        for (n, u) in pts.iter().enumerate() {
            let x = random(&mut rng);
            let mut chain = ScalarChain::new(&x);
            let mut seq = ladder(&x, u);
            let mut seq_base = ladder(&x, &x25519_dalek::X25519_BASEPOINT_BYTES);
            for _ in 0..(n % 5) {
                let b = random(&mut rng);
                chain.push(&b);
                seq = ladder(&b, &seq);
                seq_base = ladder(&b, &seq_base);
            }
            assert_eq!(chain.apply(u), seq, "u = {}", hex::encode(u));
            assert_eq!(chain.apply_base(), seq_base);
        }
    }
}
