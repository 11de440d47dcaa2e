//! Forward packet creation (§2.5) and unwrap at a node (§2.6).

use std::ops::Range;

use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::geometry::{
    HEADER_LENGTH, NODE_ID_LENGTH, PAYLOAD_TAG_LENGTH, PER_HOP_ROUTING_INFO_LENGTH,
    ROUTING_INFO_LENGTH, SURB_ID_LENGTH,
};

use super::commands::{parse_block, PathHop, RoutingCommand};
use super::error::SphinxError;
use super::exp::Prepared;
use super::header::{
    create_header, GROUP_ELEMENT_OFFSET, MAC_OFFSET, ROUTING_INFO_OFFSET, STREAM_LENGTH, VERSION,
};
use super::primitives::{mac_eq, replay_tag, sprp_decrypt, sprp_encrypt, HopKeys};

/// Creates a forward packet along `path` (1 to 5 hops) carrying `body`
/// (any length; user packets carry 51,200 bytes).
///
/// Reads 32 random bytes (the ephemeral key). The packet is
/// `header (460) ‖ SPRP(0^16 ‖ body)`.
pub fn create_packet<R: RngCore + CryptoRng>(
    rng: &mut R,
    path: &[PathHop],
    body: &[u8],
) -> Result<Vec<u8>, SphinxError> {
    let created = create_header(rng, path)?;
    let mut packet = vec![0u8; HEADER_LENGTH + PAYLOAD_TAG_LENGTH + body.len()];
    packet[..HEADER_LENGTH].copy_from_slice(&created.header);
    packet[HEADER_LENGTH + PAYLOAD_TAG_LENGTH..].copy_from_slice(body);
    let payload = &mut packet[HEADER_LENGTH..];
    for k in created.keys.iter().rev() {
        sprp_encrypt(&k.payload_sprp, &k.header_iv, payload);
    }
    Ok(packet)
}

/// What unwrapping a packet at a node found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unwrapped {
    /// SHA-512/256 of the packet's group element, for the replay filter.
    pub replay_tag: [u8; 32],
    /// This hop's routing commands in wire order (NextNodeHop included).
    pub commands: Vec<RoutingCommand>,
    /// What to do with the packet buffer now.
    pub action: UnwrapAction,
}

/// The outcome of an unwrap, telling how the packet buffer was left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnwrapAction {
    /// The buffer now holds the packet to send to this node.
    Forward {
        /// The next node's id.
        next_hop: [u8; NODE_ID_LENGTH],
    },
    /// Terminal hop: the buffer's `payload` range is the body (tag checked
    /// and removed).
    Deliver {
        /// Range of the body in the buffer.
        payload: Range<usize>,
    },
    /// Terminal hop of a SURB reply: the buffer's `payload` range is the
    /// whole 16 + body payload, still encrypted under the SURB keys (the
    /// tag is checked after SURB decryption).
    SurbReply {
        /// The SURB id from the SURBReply command.
        surb_id: [u8; SURB_ID_LENGTH],
        /// Range of the encrypted payload in the buffer.
        payload: Range<usize>,
    },
}

impl Unwrapped {
    /// The NodeDelay command's value, if present.
    pub fn node_delay(&self) -> Option<u32> {
        self.commands.iter().find_map(|c| match c {
            RoutingCommand::NodeDelay(d) => Some(*d),
            _ => None,
        })
    }

    /// The Recipient command's id, if present.
    pub fn recipient(&self) -> Option<&[u8; 64]> {
        self.commands.iter().find_map(|c| match c {
            RoutingCommand::Recipient(r) => Some(r),
            _ => None,
        })
    }
}

/// The replay tag of a packet (SHA-512/256 of its group element), or
/// `None` if the packet is shorter than a header. Needs no key.
pub fn packet_replay_tag(packet: &[u8]) -> Option<[u8; 32]> {
    if packet.len() < HEADER_LENGTH {
        return None;
    }
    Some(replay_tag(
        &packet[GROUP_ELEMENT_OFFSET..ROUTING_INFO_OFFSET],
    ))
}

/// Unwraps one layer of `packet` IN PLACE with this node's X25519 mix
/// private key.
///
/// On [`UnwrapAction::Forward`] the buffer holds the next packet (same
/// length); on the terminal actions the result lies in the returned range
/// of the buffer. On error the buffer contents are unspecified (partly
/// processed) and must be dropped. A bad MAC leaves the buffer untouched.
pub fn unwrap_packet(private_key: &[u8; 32], packet: &mut [u8]) -> Result<Unwrapped, SphinxError> {
    if packet.len() < HEADER_LENGTH {
        return Err(SphinxError::PacketTooShort(packet.len()));
    }
    if packet[..GROUP_ELEMENT_OFFSET] != VERSION {
        return Err(SphinxError::BadVersion);
    }
    let mut alpha = [0u8; 32];
    alpha.copy_from_slice(&packet[GROUP_ELEMENT_OFFSET..ROUTING_INFO_OFFSET]);
    let tag = replay_tag(&alpha);
    let prepared = Prepared::new(&alpha);
    let secret = Zeroizing::new(prepared.mul(private_key));
    let keys = HopKeys::derive(&secret);

    let mac = keys.header_mac(&[&packet[..MAC_OFFSET]]);
    if !mac_eq(&mac, &packet[MAC_OFFSET..HEADER_LENGTH]) {
        return Err(SphinxError::BadMac);
    }

    let mut b = Zeroizing::new([0u8; STREAM_LENGTH]);
    b[..ROUTING_INFO_LENGTH].copy_from_slice(&packet[ROUTING_INFO_OFFSET..MAC_OFFSET]);
    keys.xor_header_stream(b.as_mut());
    let commands = parse_block(&b[..PER_HOP_ROUTING_INFO_LENGTH])?;

    let payload = &mut packet[HEADER_LENGTH..];
    sprp_decrypt(&keys.payload_sprp, &keys.header_iv, payload);

    let mut next = None;
    let mut surb_id = None;
    for c in &commands {
        match c {
            RoutingCommand::NextNodeHop { id, mac } => next = Some((*id, *mac)),
            RoutingCommand::SurbReply(id) => surb_id = Some(*id),
            _ => {}
        }
    }

    let action = if let Some((id, mac)) = next {
        let next_alpha = prepared.mul(&keys.blinding);
        packet[GROUP_ELEMENT_OFFSET..ROUTING_INFO_OFFSET].copy_from_slice(&next_alpha);
        packet[ROUTING_INFO_OFFSET..MAC_OFFSET].copy_from_slice(&b[PER_HOP_ROUTING_INFO_LENGTH..]);
        packet[MAC_OFFSET..HEADER_LENGTH].copy_from_slice(&mac);
        UnwrapAction::Forward { next_hop: id }
    } else {
        let len = packet.len() - HEADER_LENGTH;
        if len < PAYLOAD_TAG_LENGTH {
            return Err(SphinxError::PayloadTooShort(len));
        }
        match surb_id {
            Some(surb_id) => UnwrapAction::SurbReply {
                surb_id,
                payload: HEADER_LENGTH..packet.len(),
            },
            None => {
                let tag_range = HEADER_LENGTH..HEADER_LENGTH + PAYLOAD_TAG_LENGTH;
                if packet[tag_range].iter().any(|&x| x != 0) {
                    return Err(SphinxError::BadPayloadTag);
                }
                UnwrapAction::Deliver {
                    payload: HEADER_LENGTH + PAYLOAD_TAG_LENGTH..packet.len(),
                }
            }
        }
    };
    Ok(Unwrapped {
        replay_tag: tag,
        commands,
        action,
    })
}
