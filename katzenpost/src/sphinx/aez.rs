//! AEZ v5 as the Sphinx SPRP: 48-byte key used raw (I ‖ J ‖ L), 16-byte
//! nonce, no associated data (an empty list), tau = 0.
//!
//! Two implementations, chosen at run time:
//! * on x86_64 CPUs with AES-NI, messages of 32 bytes or more go through
//!   [`ni`], our AEZ-core with AES instructions interleaved over 8 blocks;
//! * everything else (other CPUs, AEZ-tiny for short messages) uses the
//!   portable `zears` crate.
//!
//! Tests check both against each other on random keys, nonces and lengths.

use zears::Aez;

/// Enciphers `data` (at least one byte) in place.
pub fn encrypt(key: &[u8; 48], nonce: &[u8; 16], data: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if data.len() >= 32 && ni::available() {
        // SAFETY: AES-NI is present (checked at run time).
        unsafe { ni::cipher(true, key, nonce, data) };
        return;
    }
    portable_encrypt(key, nonce, data);
}

/// Deciphers `data` (at least one byte) in place. With tau = 0 this cannot fail.
pub fn decrypt(key: &[u8; 48], nonce: &[u8; 16], data: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if data.len() >= 32 && ni::available() {
        // SAFETY: AES-NI is present (checked at run time).
        unsafe { ni::cipher(false, key, nonce, data) };
        return;
    }
    portable_decrypt(key, nonce, data);
}

/// Whether this CPU uses the AES-NI path for messages of 32 bytes or more.
pub fn accelerated() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        ni::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Portable encipher (zears).
pub fn portable_encrypt(key: &[u8; 48], nonce: &[u8; 16], data: &mut [u8]) {
    Aez::new(key).encrypt_inplace(nonce, &[], 0, data);
}

/// Portable decipher (zears).
pub fn portable_decrypt(key: &[u8; 48], nonce: &[u8; 16], data: &mut [u8]) {
    // tau = 0 means no authenticity check, so decryption always succeeds.
    let _ = Aez::new(key).decrypt_inplace(nonce, &[], 0, data);
}

/// GF(2^128) doubling in AEZ's big-endian convention.
fn dbl(x: u128) -> u128 {
    (x << 1) ^ if x >> 127 == 1 { 0x87 } else { 0 }
}

/// Multiplication by a small integer (double and add).
fn mul(x: u128, k: u32) -> u128 {
    let mut acc = 0;
    let mut p = x;
    let mut k = k;
    while k != 0 {
        if k & 1 == 1 {
            acc ^= p;
        }
        p = dbl(p);
        k >>= 1;
    }
    acc
}

#[cfg(target_arch = "x86_64")]
pub mod ni {
    //! AEZ-core (messages of 32 bytes or more) with AES-NI.

    use core::arch::x86_64::*;

    use super::{dbl, mul};

    /// Whether this CPU has AES-NI (cached by std).
    pub fn available() -> bool {
        std::arch::is_x86_feature_detected!("aes")
    }

    fn block(x: u128) -> __m128i {
        let b = x.to_be_bytes();
        // SAFETY: loadu reads 16 bytes from an unaligned pointer to 16 bytes.
        unsafe { _mm_loadu_si128(b.as_ptr() as *const __m128i) }
    }

    fn load(b: &[u8]) -> __m128i {
        debug_assert!(b.len() >= 16);
        // SAFETY: the slice has at least 16 bytes (all callers pass 16).
        unsafe { _mm_loadu_si128(b[..16].as_ptr() as *const __m128i) }
    }

    fn store(b: &mut [u8], x: __m128i) {
        // SAFETY: the slice has at least 16 bytes (all callers pass 16).
        unsafe { _mm_storeu_si128(b[..16].as_mut_ptr() as *mut __m128i, x) }
    }

    /// Loads a partial block (up to 16 bytes), zero-filled.
    fn load_partial(b: &[u8]) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..b.len()].copy_from_slice(b);
        out
    }

    struct Keys {
        i: __m128i,
        j: __m128i,
        l: __m128i,
        zero: __m128i,
        /// I, J, L as integers, for offsets.
        iu: u128,
        ju: u128,
        lu: u128,
    }

    #[inline]
    #[target_feature(enable = "aes")]
    unsafe fn aes4(k: &Keys, x: __m128i) -> __m128i {
        let x = _mm_aesenc_si128(x, k.j);
        let x = _mm_aesenc_si128(x, k.i);
        let x = _mm_aesenc_si128(x, k.l);
        _mm_aesenc_si128(x, k.zero)
    }

    #[inline]
    #[target_feature(enable = "aes")]
    unsafe fn aes4x8(k: &Keys, x: &mut [__m128i; 8]) {
        for r in [k.j, k.i, k.l, k.zero] {
            for v in x.iter_mut() {
                *v = _mm_aesenc_si128(*v, r);
            }
        }
    }

    #[inline]
    #[target_feature(enable = "aes")]
    unsafe fn aes10(k: &Keys, x: __m128i) -> __m128i {
        let mut x = x;
        for r in [k.i, k.j, k.l, k.i, k.j, k.l, k.i, k.j, k.l, k.i] {
            x = _mm_aesenc_si128(x, r);
        }
        x
    }

    fn xor(a: __m128i, b: __m128i) -> __m128i {
        // SAFETY: SSE2 is part of the x86_64 baseline.
        unsafe { _mm_xor_si128(a, b) }
    }

    /// E_K^{j,i}(x) for j >= 0.
    #[inline]
    #[target_feature(enable = "aes")]
    unsafe fn e(k: &Keys, j: u32, i: u32, x: __m128i) -> __m128i {
        let off = mul(k.ju, j) ^ pow2(k.iu, i.div_ceil(8)) ^ mul(k.lu, i % 8);
        aes4(k, xor(x, block(off)))
    }

    /// E_K^{-1,i}(x).
    #[inline]
    #[target_feature(enable = "aes")]
    unsafe fn e_neg(k: &Keys, i: u32, x: __m128i) -> __m128i {
        aes10(k, xor(x, block(mul(k.lu, i))))
    }

    fn pow2(x: u128, n: u32) -> u128 {
        (0..n).fold(x, |acc, _| dbl(acc))
    }

    fn to_bytes(x: __m128i) -> [u8; 16] {
        let mut b = [0u8; 16];
        store(&mut b, x);
        b
    }

    /// AEZ-core encipher (`enc`) or decipher of `data` (len >= 32) in place,
    /// with tau = 0 and no AD.
    ///
    /// # Safety
    /// The CPU must support AES-NI.
    #[target_feature(enable = "aes")]
    pub unsafe fn cipher(enc: bool, key: &[u8; 48], nonce: &[u8; 16], data: &mut [u8]) {
        assert!(data.len() >= 32);
        let iu = u128::from_be_bytes(key[..16].try_into().expect("16 bytes"));
        let ju = u128::from_be_bytes(key[16..32].try_into().expect("16 bytes"));
        let lu = u128::from_be_bytes(key[32..].try_into().expect("16 bytes"));
        let k = Keys {
            i: block(iu),
            j: block(ju),
            l: block(lu),
            zero: block(0),
            iu,
            ju,
            lu,
        };

        // Δ = AEZ-hash(τ = 0, N): E(3,1, [0]_128) ⊕ E(4,1, N).
        let delta = xor(e(&k, 3, 1, block(0)), e(&k, 4, 1, load(nonce)));

        let pairs = (data.len() - 32) / 32;
        let tail_len = data.len() % 32; // |M_uv| in bytes
        let (body, rest) = data.split_at_mut(pairs * 32);
        let (uv, xy) = rest.split_at_mut(tail_len);
        let lmul: [u128; 8] = core::array::from_fn(|t| mul(lu, t as u32));
        let i_reg = k.i;

        // Pass 1.
        let mut x = block(0);
        let mut ipow = iu; // 2^{ceil(i/8)} I, advanced per group of 8
        let mut chunks = body.chunks_exact_mut(256);
        for group in &mut chunks {
            ipow = dbl(ipow);
            let base = ju ^ ipow;
            let mut a: [__m128i; 8] = core::array::from_fn(|t| {
                xor(load(&group[32 * t + 16..]), block(base ^ lmul[(t + 1) % 8]))
            });
            aes4x8(&k, &mut a);
            let mut w: [__m128i; 8] = [block(0); 8];
            for t in 0..8 {
                w[t] = xor(load(&group[32 * t..]), a[t]);
                a[t] = xor(w[t], i_reg);
            }
            aes4x8(&k, &mut a);
            for t in 0..8 {
                let xi = xor(load(&group[32 * t + 16..]), a[t]);
                store(&mut group[32 * t..], w[t]);
                store(&mut group[32 * t + 16..], xi);
                x = xor(x, xi);
            }
        }
        let rem = chunks.into_remainder();
        if !rem.is_empty() {
            ipow = dbl(ipow);
            let base = ju ^ ipow;
            for (t, pair) in rem.chunks_exact_mut(32).enumerate() {
                let m1 = load(pair);
                let m2 = load(&pair[16..]);
                let wi = xor(m1, aes4(&k, xor(m2, block(base ^ lmul[(t + 1) % 8]))));
                let xi = xor(m2, aes4(&k, xor(wi, i_reg)));
                store(pair, wi);
                store(&mut pair[16..], xi);
                x = xor(x, xi);
            }
        }
        let d = tail_len;
        let (mu, mv) = uv.split_at(d.min(16));
        let mu_b = load_partial(mu);
        let mv_b = load_partial(mv);
        if d > 0 && d < 16 {
            let mut p = mu_b;
            p[d] = 0x80;
            x = xor(x, e(&k, 0, 4, load(&p)));
        } else if d >= 16 {
            let mut p = mv_b;
            p[d - 16] = 0x80;
            x = xor(x, e(&k, 0, 4, load(&mu_b)));
            x = xor(x, e(&k, 0, 5, load(&p)));
        }

        let (mx, my) = (load(xy), load(&xy[16..]));
        let (first, second) = if enc { (1, 2) } else { (2, 1) };
        let sx = xor(xor(xor(mx, delta), x), e(&k, 0, first, my));
        let sy = xor(my, e_neg(&k, first, sx));
        let s = xor(sx, sy);

        // Pass 2.
        let mut y = block(0);
        let mut ipow = iu;
        let mut chunks = body.chunks_exact_mut(256);
        for group in &mut chunks {
            ipow = dbl(ipow);
            let base1 = ju ^ ipow;
            let base2 = dbl(ju) ^ ipow;
            let mut s2: [__m128i; 8] =
                core::array::from_fn(|t| xor(s, block(base2 ^ lmul[(t + 1) % 8])));
            aes4x8(&k, &mut s2);
            let mut yv = [block(0); 8];
            let mut zv = [block(0); 8];
            let mut a = [block(0); 8];
            for t in 0..8 {
                yv[t] = xor(load(&group[32 * t..]), s2[t]);
                zv[t] = xor(load(&group[32 * t + 16..]), s2[t]);
                a[t] = xor(zv[t], i_reg);
                y = xor(y, yv[t]);
            }
            aes4x8(&k, &mut a);
            let mut c2 = [block(0); 8];
            for t in 0..8 {
                c2[t] = xor(yv[t], a[t]);
                a[t] = xor(c2[t], block(base1 ^ lmul[(t + 1) % 8]));
            }
            aes4x8(&k, &mut a);
            for t in 0..8 {
                store(&mut group[32 * t..], xor(zv[t], a[t]));
                store(&mut group[32 * t + 16..], c2[t]);
            }
        }
        let rem = chunks.into_remainder();
        if !rem.is_empty() {
            ipow = dbl(ipow);
            let base1 = ju ^ ipow;
            let base2 = dbl(ju) ^ ipow;
            for (t, pair) in rem.chunks_exact_mut(32).enumerate() {
                let s2 = aes4(&k, xor(s, block(base2 ^ lmul[(t + 1) % 8])));
                let yi = xor(load(pair), s2);
                let zi = xor(load(&pair[16..]), s2);
                let ci2 = xor(yi, aes4(&k, xor(zi, i_reg)));
                let ci = xor(zi, aes4(&k, xor(ci2, block(base1 ^ lmul[(t + 1) % 8]))));
                store(pair, ci);
                store(&mut pair[16..], ci2);
                y = xor(y, yi);
            }
        }
        if d > 0 && d < 16 {
            let mut cu = to_bytes(xor(load(&mu_b), e_neg(&k, 4, s)));
            cu[d..].fill(0);
            uv[..d].copy_from_slice(&cu[..d]);
            cu[d] = 0x80;
            y = xor(y, e(&k, 0, 4, load(&cu)));
        } else if d >= 16 {
            let cu = xor(load(&mu_b), e_neg(&k, 4, s));
            let mut cv = to_bytes(xor(load(&mv_b), e_neg(&k, 5, s)));
            let dv = d - 16;
            cv[dv..].fill(0);
            store(&mut uv[..16], cu);
            uv[16..].copy_from_slice(&cv[..dv]);
            cv[dv] = 0x80;
            y = xor(y, e(&k, 0, 4, cu));
            y = xor(y, e(&k, 0, 5, load(&cv)));
        }
        let cy = xor(sx, e_neg(&k, second, sy));
        let cx = xor(xor(xor(sy, delta), y), e(&k, 0, second, cy));
        store(xy, cx);
        store(&mut xy[16..], cy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{RngCore, SeedableRng};

    /// The dispatching functions agree with the portable implementation on
    /// random keys, nonces and lengths (all tail cases), both directions.
    #[test]
    fn dispatch_matches_portable() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let mut lens: Vec<usize> = (1..=300).collect();
        lens.extend([511, 512, 513, 1024 + 17, 51_216, 51_200 + 16 + 31]);
        for len in lens {
            let mut key = [0u8; 48];
            let mut nonce = [0u8; 16];
            rng.fill_bytes(&mut key);
            rng.fill_bytes(&mut nonce);
            let mut msg = vec![0u8; len];
            rng.fill_bytes(&mut msg);
            let mut a = msg.clone();
            let mut b = msg.clone();
            encrypt(&key, &nonce, &mut a);
            portable_encrypt(&key, &nonce, &mut b);
            assert_eq!(a, b, "encrypt, len {len}");
            decrypt(&key, &nonce, &mut a);
            assert_eq!(a, msg, "round trip, len {len}");
            let mut c = msg.clone();
            let mut d = msg.clone();
            decrypt(&key, &nonce, &mut c);
            portable_decrypt(&key, &nonce, &mut d);
            assert_eq!(c, d, "decrypt, len {len}");
        }
    }

    #[test]
    fn small_multiples() {
        assert_eq!(mul(1, 3), 3);
        assert_eq!(dbl(1 << 127), 0x87);
        assert_eq!(mul(5, 0), 0);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn this_machine_uses_aes_ni_when_present() {
        assert_eq!(accelerated(), std::arch::is_x86_feature_detected!("aes"));
    }
}
