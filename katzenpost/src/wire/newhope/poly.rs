//! Polynomial arithmetic of NewHope-Simple (§4.4): R_q = Z_q[x]/(x^1024 + 1),
//! q = 12289, with the reference's NTT conventions, seed expansion, noise
//! sampling, 14-bit packing, 3-bit compression and message encoding.
//!
//! Coefficients are kept fully reduced in `[0, q)` as `u16`.

use chacha20::cipher::{KeyIvInit, StreamCipher};
use sha3::digest::{ExtendableOutput, Update, XofReader};

/// Ring dimension.
pub const N: usize = 1024;
/// The modulus.
pub const Q: u32 = 12289;
/// Bytes of a polynomial packed with 14 bits per coefficient.
pub const PACKED_LEN: usize = N * 14 / 8;
/// Bytes of a polynomial compressed to 3 bits per coefficient.
pub const COMPRESSED_LEN: usize = N * 3 / 8;

/// ψ = 7, a primitive 2048-th root of unity mod q.
const PSI: u32 = 7;
/// Half of q, rounded down: the encoding of a 1 bit.
const HALF_Q: u32 = 6144;

/// A polynomial with coefficients in `[0, q)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Poly(pub [u16; N]);

impl Poly {
    /// The zero polynomial.
    pub fn zero() -> Self {
        Poly([0; N])
    }
}

impl Drop for Poly {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0[..]);
    }
}

const fn pow_mod(mut b: u32, mut e: u32) -> u32 {
    let mut r = 1u32;
    b %= Q;
    while e > 0 {
        if e & 1 == 1 {
            r = r * b % Q;
        }
        b = b * b % Q;
        e >>= 1;
    }
    r
}

const fn bitrev10(x: usize) -> usize {
    let mut r = 0;
    let mut i = 0;
    while i < 10 {
        r |= ((x >> i) & 1) << (9 - i);
        i += 1;
    }
    r
}

/// ψ^i for i in 0..2048.
const PSI_POWERS: [u16; 2 * N] = {
    let mut t = [0u16; 2 * N];
    let mut acc = 1u32;
    let mut i = 0;
    while i < 2 * N {
        t[i] = acc as u16;
        acc = acc * PSI % Q;
        i += 1;
    }
    t
};

/// 1024⁻¹ mod q.
const N_INV: u32 = pow_mod(N as u32, Q - 2);

#[inline]
fn add(a: u32, b: u32) -> u32 {
    let s = a + b;
    if s >= Q {
        s - Q
    } else {
        s
    }
}

#[inline]
fn sub(a: u32, b: u32) -> u32 {
    if a >= b {
        a - b
    } else {
        a + Q - b
    }
}

#[inline]
fn mul(a: u32, b: u32) -> u32 {
    a * b % Q
}

/// Iterative radix-2 decimation-in-time transform of bit-reversed input to
/// natural-order output: `out[k] = Σ_i a_nat[i] · ω^(i·k)` where `a_nat` is the
/// input read in natural order, with ω = ψ² (or ω⁻¹ when `inverse`).
fn dit(a: &mut [u32; N], inverse: bool) {
    let mut len = 2;
    while len <= N {
        let half = len / 2;
        // ω_len = ψ^(2·N/len) (or its inverse).
        let step = 2 * N / len;
        for start in (0..N).step_by(len) {
            for j in 0..half {
                let e = (j * step) % (2 * N);
                let e = if inverse { (2 * N - e) % (2 * N) } else { e };
                let w = PSI_POWERS[e] as u32;
                let u = a[start + j];
                let v = mul(a[start + j + half], w);
                a[start + j] = add(u, v);
                a[start + j + half] = sub(u, v);
            }
        }
        len <<= 1;
    }
}

/// The forward NTT of §4.4: `P̂[k] = Σ_j p[j] · ψ^(bitrev10(j)·(2k+1))`.
pub fn ntt(p: &Poly) -> Poly {
    // Input index j carries the coefficient of x^bitrev10(j); scaling it by
    // ψ^bitrev10(j) gives a bit-reversed sequence for the ω-DFT.
    let mut a = [0u32; N];
    for (j, slot) in a.iter_mut().enumerate() {
        *slot = mul(p.0[j] as u32, PSI_POWERS[bitrev10(j)] as u32);
    }
    dit(&mut a, false);
    let mut out = Poly::zero();
    for (o, v) in out.0.iter_mut().zip(a.iter()) {
        *o = *v as u16;
    }
    zeroize::Zeroize::zeroize(&mut a[..]);
    out
}

/// The inverse NTT of §4.4: `p[j] = 1024⁻¹ · Σ_k P̂[k] · ψ^(−j·(2k+1))`, output
/// in natural coefficient order.
pub fn intt(p: &Poly) -> Poly {
    let mut a = [0u32; N];
    for (k, v) in p.0.iter().enumerate() {
        a[bitrev10(k)] = *v as u32;
    }
    dit(&mut a, true);
    let mut out = Poly::zero();
    for (j, o) in out.0.iter_mut().enumerate() {
        let psi_inv_j = PSI_POWERS[(2 * N - j) % (2 * N)] as u32;
        *o = mul(mul(a[j], psi_inv_j), N_INV) as u16;
    }
    zeroize::Zeroize::zeroize(&mut a[..]);
    out
}

/// Coefficient-wise product.
pub fn pointwise(a: &Poly, b: &Poly) -> Poly {
    let mut out = Poly::zero();
    for i in 0..N {
        out.0[i] = mul(a.0[i] as u32, b.0[i] as u32) as u16;
    }
    out
}

/// Coefficient-wise sum.
pub fn add_poly(a: &Poly, b: &Poly) -> Poly {
    let mut out = Poly::zero();
    for i in 0..N {
        out.0[i] = add(a.0[i] as u32, b.0[i] as u32) as u16;
    }
    out
}

/// Coefficient-wise difference.
pub fn sub_poly(a: &Poly, b: &Poly) -> Poly {
    let mut out = Poly::zero();
    for i in 0..N {
        out.0[i] = sub(a.0[i] as u32, b.0[i] as u32) as u16;
    }
    out
}

/// Parse(seed): the public polynomial â from SHAKE128(seed), rejection
/// sampling little-endian u16 values below 5q and reducing them mod q.
pub fn parse_seed(seed: &[u8; 32]) -> Poly {
    let mut xof = sha3::Shake128::default();
    xof.update(seed);
    let mut reader = xof.finalize_xof();
    let mut out = Poly::zero();
    let mut buf = [0u8; 168];
    let mut filled = 0;
    while filled < N {
        reader.read(&mut buf);
        for pair in buf.chunks_exact(2) {
            let v = u16::from_le_bytes([pair[0], pair[1]]) as u32;
            if v < 5 * Q {
                out.0[filled] = (v % Q) as u16;
                filled += 1;
                if filled == N {
                    break;
                }
            }
        }
    }
    out
}

/// Noise(seed, nonce): centred binomial ψ₁₆ from 4,096 bytes of ChaCha20
/// keystream (key = seed, 64-bit nonce = (nonce, 0, …, 0), counter from 0).
pub fn noise(seed: &[u8; 32], nonce: u8) -> Poly {
    // The IETF variant with nonce 0^4 ‖ nonce8 equals the original 64-bit-nonce
    // ChaCha20 for the first 2^32 blocks.
    let mut iv = [0u8; 12];
    iv[4] = nonce;
    let mut cipher = chacha20::ChaCha20::new(seed.into(), &iv.into());
    let mut buf = [0u8; 4 * N];
    cipher.apply_keystream(&mut buf);
    let mut out = Poly::zero();
    for (i, w) in buf.chunks_exact(4).enumerate() {
        let pos = w[0].count_ones() + w[1].count_ones();
        let neg = w[2].count_ones() + w[3].count_ones();
        out.0[i] = sub(pos, neg) as u16;
    }
    zeroize::Zeroize::zeroize(&mut buf[..]);
    out
}

/// Pack14: 14-bit little-endian fields, 4 coefficients per 7 bytes.
pub fn pack14(p: &Poly, out: &mut [u8; PACKED_LEN]) {
    for (c, o) in p.0.chunks_exact(4).zip(out.chunks_exact_mut(7)) {
        let acc = (c[0] as u64) | (c[1] as u64) << 14 | (c[2] as u64) << 28 | (c[3] as u64) << 42;
        o.copy_from_slice(&acc.to_le_bytes()[..7]);
    }
}

/// Unpack14, reducing every field mod q (fields up to 16,383 can appear).
pub fn unpack14(bytes: &[u8; PACKED_LEN]) -> Poly {
    let mut out = Poly::zero();
    for (c, b) in out.0.chunks_exact_mut(4).zip(bytes.chunks_exact(7)) {
        let mut le = [0u8; 8];
        le[..7].copy_from_slice(b);
        let acc = u64::from_le_bytes(le);
        for (k, slot) in c.iter_mut().enumerate() {
            let v = ((acc >> (14 * k)) & 0x3fff) as u32;
            *slot = if v >= Q { v - Q } else { v } as u16;
        }
    }
    out
}

/// Compress3: `⌊(8c + 6144) / q⌋ mod 8`, 3-bit little-endian fields.
pub fn compress3(p: &Poly, out: &mut [u8; COMPRESSED_LEN]) {
    for (c, o) in p.0.chunks_exact(8).zip(out.chunks_exact_mut(3)) {
        let mut acc = 0u32;
        for (k, &v) in c.iter().enumerate() {
            let t = ((8 * v as u32 + HALF_Q) / Q) & 7;
            acc |= t << (3 * k);
        }
        o.copy_from_slice(&acc.to_le_bytes()[..3]);
    }
}

/// Decompress3: `⌊(t·q + 4) / 8⌋`.
pub fn decompress3(bytes: &[u8; COMPRESSED_LEN]) -> Poly {
    let mut out = Poly::zero();
    for (c, b) in out.0.chunks_exact_mut(8).zip(bytes.chunks_exact(3)) {
        let acc = u32::from_le_bytes([b[0], b[1], b[2], 0]);
        for (k, slot) in c.iter_mut().enumerate() {
            let t = (acc >> (3 * k)) & 7;
            *slot = ((t * Q + 4) / 8) as u16;
        }
    }
    out
}

/// Encode(ν): bit i of ν sets coefficients i, i+256, i+512, i+768 to 6144.
pub fn encode_message(nu: &[u8; 32]) -> Poly {
    let mut out = Poly::zero();
    for i in 0..256 {
        let bit = ((nu[i / 8] >> (i % 8)) & 1) as u16;
        for j in 0..4 {
            out.0[i + 256 * j] = bit * HALF_Q as u16;
        }
    }
    out
}

/// Decode(k): bit i is 1 when the distance of its four coefficients from
/// q/2 sums to less than q.
pub fn decode_message(k: &Poly) -> [u8; 32] {
    let mut nu = [0u8; 32];
    for i in 0..256 {
        let mut t = 0u32;
        for j in 0..4 {
            let c = k.0[i + 256 * j] as u32;
            t += c.abs_diff(HALF_Q);
        }
        // Constant time: (t - q) >> 31 is 1 exactly when t < q.
        let bit = (t.wrapping_sub(Q) >> 31) as u8;
        nu[i / 8] |= bit << (i % 8);
    }
    nu
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Naive evaluation of the §4.4 definition, for comparison.
    fn ntt_naive(p: &Poly) -> Poly {
        let mut out = Poly::zero();
        for k in 0..N {
            let mut acc = 0u64;
            for j in 0..N {
                let e = (bitrev10(j) * (2 * k + 1)) % (2 * N);
                acc += p.0[j] as u64 * PSI_POWERS[e] as u64;
            }
            out.0[k] = (acc % Q as u64) as u16;
        }
        out
    }

    fn intt_naive(p: &Poly) -> Poly {
        let mut out = Poly::zero();
        for j in 0..N {
            let mut acc = 0u64;
            for k in 0..N {
                let e = (2 * N - (j * (2 * k + 1)) % (2 * N)) % (2 * N);
                acc += p.0[k] as u64 * PSI_POWERS[e] as u64;
            }
            out.0[j] = ((acc % Q as u64) as u32 * N_INV % Q) as u16;
        }
        out
    }

    fn sample(seed: u8) -> Poly {
        let mut s = [0u8; 32];
        s[0] = seed;
        parse_seed(&s)
    }

    #[test]
    fn psi_is_primitive_2048th_root() {
        assert_eq!(pow_mod(PSI, 2048), 1);
        assert_ne!(pow_mod(PSI, 1024), 1);
        assert_eq!(N_INV * N as u32 % Q, 1);
    }

    #[test]
    fn ntt_matches_definition() {
        let p = sample(1);
        assert_eq!(ntt(&p).0[..], ntt_naive(&p).0[..]);
        let h = ntt(&p);
        assert_eq!(intt(&h).0[..], intt_naive(&h).0[..]);
    }

    #[test]
    fn intt_of_ntt_is_bit_reversal() {
        let p = sample(2);
        let back = intt(&ntt(&p));
        for i in 0..N {
            assert_eq!(back.0[i], p.0[bitrev10(i)]);
        }
    }

    #[test]
    fn ntt_multiplies_negacyclically() {
        // x^1 · x^1023 = x^1024 = -1 in R_q. NTT input index j holds x^bitrev(j).
        let mut a = Poly::zero();
        a.0[bitrev10(1)] = 1;
        let mut b = Poly::zero();
        b.0[bitrev10(1023)] = 1;
        let prod = intt(&pointwise(&ntt(&a), &ntt(&b)));
        let mut want = Poly::zero();
        want.0[0] = (Q - 1) as u16;
        assert_eq!(prod.0[..], want.0[..]);
    }

    #[test]
    fn pack_roundtrip() {
        let p = sample(3);
        let mut buf = [0u8; PACKED_LEN];
        pack14(&p, &mut buf);
        assert_eq!(unpack14(&buf).0[..], p.0[..]);
        // Over-range fields reduce mod q.
        let mut all_ones = [0xffu8; PACKED_LEN];
        all_ones[0] = 0xff;
        assert_eq!(unpack14(&all_ones).0[0] as u32, 16383 - Q);
    }

    #[test]
    fn compress_error_is_small() {
        let p = sample(4);
        let mut buf = [0u8; COMPRESSED_LEN];
        compress3(&p, &mut buf);
        let d = decompress3(&buf);
        for i in 0..N {
            let diff = sub(p.0[i] as u32, d.0[i] as u32);
            let dist = diff.min(Q - diff);
            assert!(dist <= Q / 16 + 1, "coefficient {i}: distance {dist}");
        }
    }

    #[test]
    fn noise_is_bounded_and_centred() {
        let p = noise(&[9; 32], 0);
        let mut sum = 0i64;
        for &c in p.0.iter() {
            let c = c as i64;
            let signed = if c > Q as i64 / 2 { c - Q as i64 } else { c };
            assert!((-16..=16).contains(&signed));
            sum += signed;
        }
        assert!(sum.abs() < 400, "sum {sum}");
        assert_ne!(noise(&[9; 32], 0).0[..], noise(&[9; 32], 1).0[..]);
    }

    #[test]
    fn message_encoding_roundtrip() {
        let nu: [u8; 32] = core::array::from_fn(|i| (i * 37 + 11) as u8);
        let enc = encode_message(&nu);
        assert_eq!(decode_message(&enc), nu);
        // Small noise does not flip bits.
        let noisy = add_poly(&enc, &noise(&[5; 32], 3));
        assert_eq!(decode_message(&noisy), nu);
    }
}
