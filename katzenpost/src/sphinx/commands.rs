//! Per-hop routing commands (§2.4).

use crate::geometry::{MAC_LENGTH, NODE_ID_LENGTH, RECIPIENT_ID_LENGTH, SURB_ID_LENGTH};

/// One routing command inside a hop's 82-byte routing block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutingCommand {
    /// Forward to the next node, whose header MAC this is.
    NextNodeHop { id: [u8; NODE_ID_LENGTH], mac: [u8; MAC_LENGTH] },
    /// Deliver to this recipient (user name or Kaetzchen endpoint, NUL-padded).
    Recipient([u8; RECIPIENT_ID_LENGTH]),
    /// This is a SURB reply with this SURB id.
    SurbReply([u8; SURB_ID_LENGTH]),
    /// Hold the packet this many milliseconds.
    NodeDelay(u32),
}

/// One hop of a path as header creation needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathHop {
    /// The node's id (its Ed25519 identity key).
    pub id: [u8; NODE_ID_LENGTH],
    /// The node's X25519 mix key for the epoch the packet reaches it.
    pub public_key: [u8; 32],
    /// This hop's commands: only NodeDelay, Recipient and SURBReply
    /// (NextNodeHop is added by header creation).
    pub commands: Vec<RoutingCommand>,
}
