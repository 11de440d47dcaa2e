//! Header creation (§2.5).

use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::geometry::{
    AD_LENGTH, GROUP_ELEMENT_LENGTH, HEADER_LENGTH, MAC_LENGTH, NR_HOPS,
    PER_HOP_ROUTING_INFO_LENGTH, ROUTING_INFO_LENGTH,
};

use super::commands::{check_hop_commands, encode_block, PathHop, RoutingCommand};
use super::error::SphinxError;
use super::exp::{exp_base, ScalarChain};
use super::primitives::HopKeys;

/// Length of one hop's header keystream: routing info plus one block.
pub(crate) const STREAM_LENGTH: usize = ROUTING_INFO_LENGTH + PER_HOP_ROUTING_INFO_LENGTH;

/// Offset of the group element in a header.
pub(crate) const GROUP_ELEMENT_OFFSET: usize = AD_LENGTH;
/// Offset of the routing information in a header.
pub(crate) const ROUTING_INFO_OFFSET: usize = GROUP_ELEMENT_OFFSET + GROUP_ELEMENT_LENGTH;
/// Offset of the MAC in a header.
pub(crate) const MAC_OFFSET: usize = ROUTING_INFO_OFFSET + ROUTING_INFO_LENGTH;

/// The Sphinx version bytes (AD).
pub(crate) const VERSION: [u8; AD_LENGTH] = [0, 0];

/// A created header with the per-hop keys its creator needs for the payload.
pub(crate) struct CreatedHeader {
    pub header: [u8; HEADER_LENGTH],
    pub keys: Vec<HopKeys>,
}

/// Checks a path's length and commands.
pub(crate) fn check_path(path: &[PathHop]) -> Result<(), SphinxError> {
    if path.is_empty() || path.len() > NR_HOPS {
        return Err(SphinxError::BadPathLength(path.len()));
    }
    for (i, hop) in path.iter().enumerate() {
        check_hop_commands(&hop.commands, i + 1 == path.len())?;
    }
    Ok(())
}

/// Shared secrets and group elements along a path: for every hop i the keys
/// of s_i and α_i.
///
/// s_i = X25519(b_{i−1}, … X25519(b_0, X25519(x, pk_i))) and
/// α_i = X25519(b_{i−1}, … X25519(x, 9)), each computed as one
/// multiplication by the combined scalar ([`ScalarChain`]).
fn path_secrets(x: &[u8; 32], path: &[PathHop]) -> (Vec<HopKeys>, Vec<[u8; 32]>) {
    let n = path.len();
    let mut keys: Vec<HopKeys> = Vec::with_capacity(n);
    let mut alphas = Vec::with_capacity(n);
    let mut chain = ScalarChain::new(x);
    alphas.push(exp_base(x));
    for (i, hop) in path.iter().enumerate() {
        if i >= 1 {
            chain.push(&keys[i - 1].blinding);
            alphas.push(chain.apply_base());
        }
        let s = Zeroizing::new(chain.apply(&hop.public_key));
        keys.push(HopKeys::derive(&s));
    }
    (keys, alphas)
}

/// The 2019 construction step by step (20 X25519 operations for 5 hops):
/// the reference [`path_secrets`] is tested against.
#[cfg(test)]
fn path_secrets_sequential(x: &[u8; 32], path: &[PathHop]) -> (Vec<HopKeys>, Vec<[u8; 32]>) {
    use super::exp::ladder;
    let mut keys: Vec<HopKeys> = Vec::new();
    let mut alphas = vec![ladder(x, &x25519_dalek::X25519_BASEPOINT_BYTES)];
    for (i, hop) in path.iter().enumerate() {
        let mut s = ladder(x, &hop.public_key);
        for k in &keys {
            s = ladder(&k.blinding, &s);
        }
        if i >= 1 {
            let a = ladder(&keys[i - 1].blinding, &alphas[i - 1]);
            alphas.push(a);
        }
        keys.push(HopKeys::derive(&s));
    }
    (keys, alphas)
}

/// Creates a header for `path` (1 to 5 hops), reading 32 random bytes for
/// the ephemeral key.
pub(crate) fn create_header<R: RngCore + CryptoRng>(
    rng: &mut R,
    path: &[PathHop],
) -> Result<CreatedHeader, SphinxError> {
    check_path(path)?;
    let n = path.len();
    let mut x = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(x.as_mut());
    let (keys, alphas) = path_secrets(&x, path);

    // Keystreams and filler pads. pad_i has 82 * (i + 1) bytes.
    let mut streams: Vec<Zeroizing<[u8; STREAM_LENGTH]>> = Vec::with_capacity(n);
    let mut pads: Vec<Vec<u8>> = Vec::with_capacity(n);
    for (i, k) in keys.iter().enumerate() {
        let mut ks = Zeroizing::new([0u8; STREAM_LENGTH]);
        k.xor_header_stream(ks.as_mut());
        let pad_len = PER_HOP_ROUTING_INFO_LENGTH * (i + 1);
        let mut pad = ks[STREAM_LENGTH - pad_len..].to_vec();
        if i >= 1 {
            for (p, q) in pad.iter_mut().zip(pads[i - 1].iter()) {
                *p ^= q;
            }
        }
        pads.push(pad);
        streams.push(ks);
    }

    // Routing info from the last hop backwards. `ri` always holds 410
    // bytes; the live part for hop i is ri[82 * i ..] before prepending.
    let mut ri = [0u8; ROUTING_INFO_LENGTH];
    let mut mac = [0u8; MAC_LENGTH];
    for i in (0..n).rev() {
        let start = PER_HOP_ROUTING_INFO_LENGTH * i;
        let block = &mut ri[start..start + PER_HOP_ROUTING_INFO_LENGTH];
        if i + 1 < n {
            let mut cmds: Vec<RoutingCommand> = path[i].commands.clone();
            cmds.push(RoutingCommand::NextNodeHop {
                id: path[i + 1].id,
                mac,
            });
            encode_block(&cmds, block)?;
        } else {
            encode_block(&path[i].commands, block)?;
        }
        let live = &mut ri[start..];
        for (r, s) in live.iter_mut().zip(streams[i].iter()) {
            *r ^= s;
        }
        let live = &ri[start..];
        mac = if i == 0 {
            keys[i].header_mac(&[&VERSION, &alphas[i], live])
        } else {
            keys[i].header_mac(&[&VERSION, &alphas[i], live, &pads[i - 1]])
        };
    }

    let mut header = [0u8; HEADER_LENGTH];
    header[..AD_LENGTH].copy_from_slice(&VERSION);
    header[GROUP_ELEMENT_OFFSET..ROUTING_INFO_OFFSET].copy_from_slice(&alphas[0]);
    header[ROUTING_INFO_OFFSET..MAC_OFFSET].copy_from_slice(&ri);
    header[MAC_OFFSET..].copy_from_slice(&mac);
    Ok(CreatedHeader { header, keys })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn combined_scalars_match_the_2019_sequence() {
        let mut rng = ChaCha20Rng::seed_from_u64(31);
        for n in 1..=5 {
            let path: Vec<PathHop> = (0..n)
                .map(|_| {
                    let mut sk = [0u8; 32];
                    rng.fill_bytes(&mut sk);
                    PathHop {
                        id: [0; 32],
                        public_key: exp_base(&sk),
                        commands: vec![],
                    }
                })
                .collect();
            let mut x = [0u8; 32];
            rng.fill_bytes(&mut x);
            let (k1, a1) = path_secrets(&x, &path);
            let (k2, a2) = path_secrets_sequential(&x, &path);
            assert_eq!(a1, a2);
            assert_eq!(k1.len(), n);
            for (a, b) in k1.iter().zip(k2.iter()) {
                assert_eq!(a.header_mac, b.header_mac);
                assert_eq!(a.blinding, b.blinding);
                assert_eq!(a.payload_sprp, b.payload_sprp);
            }
        }
    }
}
