//! Sizes and constants of the katzenpost-2019 geometry (§1).

/// Maximum path length: ingress provider, 3 mix layers, egress provider.
pub const NR_HOPS: usize = 5;
/// A node id: the node's Ed25519 identity public key.
pub const NODE_ID_LENGTH: usize = 32;
/// A recipient id: user name or Kaetzchen endpoint, NUL-padded.
pub const RECIPIENT_ID_LENGTH: usize = 64;
/// A SURB id.
pub const SURB_ID_LENGTH: usize = 16;
/// X25519 group element / key.
pub const GROUP_ELEMENT_LENGTH: usize = 32;
/// Sphinx header MAC.
pub const MAC_LENGTH: usize = 16;
/// The Sphinx associated data (version) bytes at the start of a header.
pub const AD_LENGTH: usize = 2;
/// Per-hop routing information.
pub const PER_HOP_ROUTING_INFO_LENGTH: usize = 82;
/// Routing information for all hops.
pub const ROUTING_INFO_LENGTH: usize = PER_HOP_ROUTING_INFO_LENGTH * NR_HOPS;
/// Sphinx header: AD, group element, routing info, MAC.
pub const HEADER_LENGTH: usize =
    AD_LENGTH + GROUP_ELEMENT_LENGTH + ROUTING_INFO_LENGTH + MAC_LENGTH;
/// Zero bytes in front of the payload body.
pub const PAYLOAD_TAG_LENGTH: usize = 16;
/// The Sphinx forward payload body.
pub const FORWARD_PAYLOAD_LENGTH: usize = 51_200;
/// A whole Sphinx packet.
pub const PACKET_LENGTH: usize = HEADER_LENGTH + PAYLOAD_TAG_LENGTH + FORWARD_PAYLOAD_LENGTH;
/// AEZ key of the SPRP.
pub const SPRP_KEY_LENGTH: usize = 48;
/// AEZ nonce / AES-CTR IV.
pub const SPRP_IV_LENGTH: usize = 16;
/// A SURB: header, first-hop node id, SPRP key and IV.
pub const SURB_LENGTH: usize = HEADER_LENGTH + NODE_ID_LENGTH + SPRP_KEY_LENGTH + SPRP_IV_LENGTH;
/// flags u8 and reserved u8 in front of the SURB in a forward body.
pub const SPHINX_PLAINTEXT_HEADER_LENGTH: usize = 2;
/// User payload in a forward body (= end-to-end block ciphertext length).
pub const USER_FORWARD_PAYLOAD_LENGTH: usize =
    FORWARD_PAYLOAD_LENGTH - (SPHINX_PLAINTEXT_HEADER_LENGTH + SURB_LENGTH);
/// Noise_X overhead of one end-to-end block (e, encrypted s, tag).
pub const NOISE_X_OVERHEAD: usize = 32 + 32 + 16 + 16;
/// End-to-end block plaintext.
pub const BLOCK_LENGTH: usize = USER_FORWARD_PAYLOAD_LENGTH - NOISE_X_OVERHEAD;
/// End-to-end block header: message id, total, index, length.
pub const BLOCK_HEADER_LENGTH: usize = 16 + 2 + 2 + 4;
/// Message bytes per end-to-end block.
pub const BLOCK_PAYLOAD_LENGTH: usize = BLOCK_LENGTH - BLOCK_HEADER_LENGTH;
/// Wire command header: id, reserved, u32be length.
pub const WIRE_COMMAND_HEADER_LENGTH: usize = 6;
/// Body of a wire Message / MessageACK / MessageEmpty command.
pub const WIRE_MESSAGE_BODY_LENGTH: usize = 51_238;
/// Largest Noise transport message on a link, tag included.
pub const MAX_NOISE_MESSAGE_LENGTH: usize = 1_048_576;
/// Mix keys each descriptor publishes (epochs e, e+1, e+2).
pub const MIX_KEYS_PER_DESCRIPTOR: usize = 3;

const _: () = assert!(HEADER_LENGTH == 460);
const _: () = assert!(PACKET_LENGTH == 51_676);
const _: () = assert!(SURB_LENGTH == 556);
const _: () = assert!(USER_FORWARD_PAYLOAD_LENGTH == 50_642);
const _: () = assert!(BLOCK_LENGTH == 50_546);
const _: () = assert!(BLOCK_PAYLOAD_LENGTH == 50_522);
const _: () = assert!(WIRE_COMMAND_HEADER_LENGTH + WIRE_MESSAGE_BODY_LENGTH == 51_244);
