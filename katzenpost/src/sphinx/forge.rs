//! Building packets with arbitrary (even invalid) routing information for
//! fuzzing and tests: the header is sealed (encrypted and MACed) correctly
//! for one node, so unwrap gets past the MAC check to command parsing.

use crate::geometry::{HEADER_LENGTH, ROUTING_INFO_LENGTH};

use super::exp::{exp, exp_base};
use super::header::{
    GROUP_ELEMENT_OFFSET, MAC_OFFSET, ROUTING_INFO_OFFSET, STREAM_LENGTH, VERSION,
};
use super::primitives::{sprp_encrypt, HopKeys};

/// A one-hop packet for the node with public key `node_public`, with the
/// ephemeral secret `ephemeral`, whose routing information decrypts to
/// `routing_plain` (410 bytes, any content) and whose payload decrypts to
/// `payload_plain` (any length, tag included).
pub fn forge_packet(
    node_public: &[u8; 32],
    ephemeral: &[u8; 32],
    routing_plain: &[u8; ROUTING_INFO_LENGTH],
    payload_plain: &[u8],
) -> Vec<u8> {
    let alpha = exp_base(ephemeral);
    let keys = HopKeys::derive(&exp(ephemeral, node_public));
    let mut packet = vec![0u8; HEADER_LENGTH + payload_plain.len()];
    packet[..GROUP_ELEMENT_OFFSET].copy_from_slice(&VERSION);
    packet[GROUP_ELEMENT_OFFSET..ROUTING_INFO_OFFSET].copy_from_slice(&alpha);
    let mut ks = [0u8; STREAM_LENGTH];
    keys.xor_header_stream(&mut ks);
    for (o, (p, k)) in packet[ROUTING_INFO_OFFSET..MAC_OFFSET]
        .iter_mut()
        .zip(routing_plain.iter().zip(ks.iter()))
    {
        *o = p ^ k;
    }
    let mac = keys.header_mac(&[&packet[..MAC_OFFSET]]);
    packet[MAC_OFFSET..HEADER_LENGTH].copy_from_slice(&mac);
    packet[HEADER_LENGTH..].copy_from_slice(payload_plain);
    sprp_encrypt(
        &keys.payload_sprp,
        &keys.header_iv,
        &mut packet[HEADER_LENGTH..],
    );
    packet
}
