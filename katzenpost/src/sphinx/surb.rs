//! Single-use reply blocks (§2.8).

use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::geometry::{
    HEADER_LENGTH, NODE_ID_LENGTH, NR_HOPS, PAYLOAD_TAG_LENGTH, SPRP_IV_LENGTH, SPRP_KEY_LENGTH,
    SURB_LENGTH,
};

use super::commands::PathHop;
use super::error::SphinxError;
use super::header::create_header;
use super::primitives::{sprp_decrypt, sprp_encrypt};

/// One SPRP key entry of a SURB decryption token: key ‖ IV.
const ENTRY_LENGTH: usize = SPRP_KEY_LENGTH + SPRP_IV_LENGTH;

/// A SURB: header ‖ first-hop node id ‖ K_final ‖ IV_final (556 bytes).
pub type Surb = [u8; SURB_LENGTH];

/// The SURB creator's decryption token ("SURB keys"): for every hop from the
/// last to the first its SPRP key ‖ IV, then K_final ‖ IV_final; 64 · (n + 1)
/// bytes. Its bytes are the wire/storage form (`as_bytes`, `from_bytes`).
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SurbKeys(Vec<u8>);

impl std::fmt::Debug for SurbKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SurbKeys({} bytes)", self.0.len())
    }
}

impl SurbKeys {
    /// Takes a stored token; its length must be 64 · (n + 1) for 1 ≤ n ≤ 5.
    pub fn from_bytes(bytes: &[u8]) -> Result<SurbKeys, SphinxError> {
        let len = bytes.len();
        let (entries, rest) = (len / ENTRY_LENGTH, len % ENTRY_LENGTH);
        if rest != 0 || !(2..=NR_HOPS + 1).contains(&entries) {
            return Err(SphinxError::BadSurbKeysLength(len));
        }
        Ok(SurbKeys(bytes.to_vec()))
    }

    /// The token's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Decrypts a SURB reply payload (16-byte tag ‖ body) IN PLACE and
    /// checks the tag; returns the body's range in `payload`.
    pub fn decrypt_in_place(
        &self,
        payload: &mut [u8],
    ) -> Result<std::ops::Range<usize>, SphinxError> {
        if payload.len() < PAYLOAD_TAG_LENGTH {
            return Err(SphinxError::PayloadTooShort(payload.len()));
        }
        let entries: Vec<&[u8]> = self.0.chunks_exact(ENTRY_LENGTH).collect();
        let (last, rest) = entries
            .split_last()
            .ok_or(SphinxError::BadSurbKeysLength(0))?;
        for e in rest {
            let (k, iv) = split_entry(e);
            sprp_encrypt(&k, &iv, payload);
        }
        let (k, iv) = split_entry(last);
        sprp_decrypt(&k, &iv, payload);
        if payload[..PAYLOAD_TAG_LENGTH].iter().any(|&b| b != 0) {
            return Err(SphinxError::BadPayloadTag);
        }
        Ok(PAYLOAD_TAG_LENGTH..payload.len())
    }

    /// Decrypts a SURB reply payload into a new vector holding the body.
    pub fn decrypt(&self, payload: &[u8]) -> Result<Vec<u8>, SphinxError> {
        let mut buf = payload.to_vec();
        let range = self.decrypt_in_place(&mut buf)?;
        buf.drain(..range.start);
        Ok(buf)
    }
}

fn split_entry(e: &[u8]) -> ([u8; SPRP_KEY_LENGTH], [u8; SPRP_IV_LENGTH]) {
    let mut k = [0u8; SPRP_KEY_LENGTH];
    let mut iv = [0u8; SPRP_IV_LENGTH];
    k.copy_from_slice(&e[..SPRP_KEY_LENGTH]);
    iv.copy_from_slice(&e[SPRP_KEY_LENGTH..]);
    (k, iv)
}

/// Creates a SURB for the reverse `path` (1 to 5 hops; the last hop carries
/// Recipient and SURBReply). Reads 64 random bytes (K_final ‖ IV_final)
/// first, then the header's 32.
pub fn create_surb<R: RngCore + CryptoRng>(
    rng: &mut R,
    path: &[PathHop],
) -> Result<(Surb, SurbKeys), SphinxError> {
    let mut final_key = [0u8; ENTRY_LENGTH];
    rng.fill_bytes(&mut final_key);
    let created = create_header(rng, path)?;
    let mut surb = [0u8; SURB_LENGTH];
    surb[..HEADER_LENGTH].copy_from_slice(&created.header);
    surb[HEADER_LENGTH..HEADER_LENGTH + NODE_ID_LENGTH].copy_from_slice(&path[0].id);
    surb[HEADER_LENGTH + NODE_ID_LENGTH..].copy_from_slice(&final_key);
    let mut token = Vec::with_capacity(ENTRY_LENGTH * (path.len() + 1));
    for k in created.keys.iter().rev() {
        token.extend_from_slice(&k.payload_sprp);
        token.extend_from_slice(&k.header_iv);
    }
    token.extend_from_slice(&final_key);
    final_key.zeroize();
    Ok((surb, SurbKeys(token)))
}

/// Makes the reply packet for a SURB (deterministic): `header ‖
/// AEZ(K_final, IV_final, 0^16 ‖ body)`. Returns the first hop's node id and
/// the packet. Replies on the network carry a body zero-padded to 51,200
/// bytes (see [`pad_reply_body`]); any length is accepted here.
pub fn packet_from_surb(
    surb: &[u8],
    body: &[u8],
) -> Result<([u8; NODE_ID_LENGTH], Vec<u8>), SphinxError> {
    if surb.len() != SURB_LENGTH {
        return Err(SphinxError::BadSurbLength(surb.len()));
    }
    let mut first_hop = [0u8; NODE_ID_LENGTH];
    first_hop.copy_from_slice(&surb[HEADER_LENGTH..HEADER_LENGTH + NODE_ID_LENGTH]);
    let (k, iv) = split_entry(&surb[HEADER_LENGTH + NODE_ID_LENGTH..]);
    let mut packet = vec![0u8; HEADER_LENGTH + PAYLOAD_TAG_LENGTH + body.len()];
    packet[..HEADER_LENGTH].copy_from_slice(&surb[..HEADER_LENGTH]);
    packet[HEADER_LENGTH + PAYLOAD_TAG_LENGTH..].copy_from_slice(body);
    sprp_encrypt(&k, &iv, &mut packet[HEADER_LENGTH..]);
    Ok((first_hop, packet))
}

/// Zero-pads a reply to the 51,200-byte forward body (a SURB-ACK is all
/// zeros); errors if it is longer.
pub fn pad_reply_body(reply: &[u8]) -> Result<Vec<u8>, SphinxError> {
    use crate::geometry::FORWARD_PAYLOAD_LENGTH;
    if reply.len() > FORWARD_PAYLOAD_LENGTH {
        return Err(SphinxError::PayloadTooLong(reply.len()));
    }
    let mut body = vec![0u8; FORWARD_PAYLOAD_LENGTH];
    body[..reply.len()].copy_from_slice(reply);
    Ok(body)
}

/// Decrypts a SURB reply payload (as received, 16 + body bytes) with the
/// creator's token; returns the body.
pub fn decrypt_surb_payload(keys: &SurbKeys, payload: &[u8]) -> Result<Vec<u8>, SphinxError> {
    keys.decrypt(payload)
}
