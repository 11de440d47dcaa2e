//! Per-hop routing commands (§2.4).
//!
//! A hop's commands live in an 82-byte block of the decrypted routing
//! information. [`encode_block`] writes a command list (zero-filled, which is
//! the terminating NULL command when there is room), [`parse_block`] reads one
//! back with the 2019 rules: a 0x00 id ends the list and must be followed by
//! zero bytes only, a single trailing byte must be 0x00, and each command type
//! may occur at most once.

use crate::geometry::{
    MAC_LENGTH, NODE_ID_LENGTH, PER_HOP_ROUTING_INFO_LENGTH, RECIPIENT_ID_LENGTH, SURB_ID_LENGTH,
};

use super::error::SphinxError;

/// Command id of the NULL terminator.
pub const NULL_CMD: u8 = 0x00;
/// Command id of [`RoutingCommand::NextNodeHop`].
pub const NEXT_NODE_HOP_CMD: u8 = 0x01;
/// Command id of [`RoutingCommand::Recipient`].
pub const RECIPIENT_CMD: u8 = 0x02;
/// Command id of [`RoutingCommand::SurbReply`].
pub const SURB_REPLY_CMD: u8 = 0x03;
/// Command id of [`RoutingCommand::NodeDelay`].
pub const NODE_DELAY_CMD: u8 = 0x80;

/// Encoded length of a NextNodeHop command (id, node id, MAC).
pub const NEXT_NODE_HOP_LENGTH: usize = 1 + NODE_ID_LENGTH + MAC_LENGTH;
/// Encoded length of a Recipient command.
pub const RECIPIENT_LENGTH: usize = 1 + RECIPIENT_ID_LENGTH;
/// Encoded length of a SURBReply command.
pub const SURB_REPLY_LENGTH: usize = 1 + SURB_ID_LENGTH;
/// Encoded length of a NodeDelay command.
pub const NODE_DELAY_LENGTH: usize = 1 + 4;

/// One routing command inside a hop's 82-byte routing block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutingCommand {
    /// Forward to the next node, whose header MAC this is.
    NextNodeHop {
        id: [u8; NODE_ID_LENGTH],
        mac: [u8; MAC_LENGTH],
    },
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

impl RoutingCommand {
    /// The command's id byte.
    pub fn id(&self) -> u8 {
        match self {
            RoutingCommand::NextNodeHop { .. } => NEXT_NODE_HOP_CMD,
            RoutingCommand::Recipient(_) => RECIPIENT_CMD,
            RoutingCommand::SurbReply(_) => SURB_REPLY_CMD,
            RoutingCommand::NodeDelay(_) => NODE_DELAY_CMD,
        }
    }

    /// Length of the encoding, id byte included.
    pub fn encoded_len(&self) -> usize {
        body_length(self.id()).map_or(1, |n| n + 1)
    }

    /// Writes the encoding into the front of `out`; returns the bytes written.
    ///
    /// Errors with [`SphinxError::CommandsTooLong`] when `out` is too short.
    pub fn encode_into(&self, out: &mut [u8]) -> Result<usize, SphinxError> {
        let len = self.encoded_len();
        let out = out.get_mut(..len).ok_or(SphinxError::CommandsTooLong)?;
        out[0] = self.id();
        match self {
            RoutingCommand::NextNodeHop { id, mac } => {
                out[1..1 + NODE_ID_LENGTH].copy_from_slice(id);
                out[1 + NODE_ID_LENGTH..].copy_from_slice(mac);
            }
            RoutingCommand::Recipient(r) => out[1..].copy_from_slice(r),
            RoutingCommand::SurbReply(s) => out[1..].copy_from_slice(s),
            RoutingCommand::NodeDelay(d) => out[1..].copy_from_slice(&d.to_be_bytes()),
        }
        Ok(len)
    }

    /// The encoding as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.encoded_len()];
        // The buffer has exactly the needed length.
        let _ = self.encode_into(&mut v);
        v
    }

    /// Parses one command from the front of `data`, returning it and the
    /// bytes it used. `Ok(None)` means a NULL command (the caller decides
    /// what may follow it).
    pub fn decode_one(data: &[u8]) -> Result<Option<(RoutingCommand, usize)>, SphinxError> {
        let (&id, rest) = data
            .split_first()
            .ok_or(SphinxError::TruncatedCommand(NULL_CMD))?;
        if id == NULL_CMD {
            return Ok(None);
        }
        let len = body_length(id).ok_or(SphinxError::UnknownCommand(id))?;
        let body = rest.get(..len).ok_or(SphinxError::TruncatedCommand(id))?;
        let cmd = match id {
            NEXT_NODE_HOP_CMD => {
                let mut nid = [0u8; NODE_ID_LENGTH];
                let mut mac = [0u8; MAC_LENGTH];
                nid.copy_from_slice(&body[..NODE_ID_LENGTH]);
                mac.copy_from_slice(&body[NODE_ID_LENGTH..]);
                RoutingCommand::NextNodeHop { id: nid, mac }
            }
            RECIPIENT_CMD => {
                let mut r = [0u8; RECIPIENT_ID_LENGTH];
                r.copy_from_slice(body);
                RoutingCommand::Recipient(r)
            }
            SURB_REPLY_CMD => {
                let mut s = [0u8; SURB_ID_LENGTH];
                s.copy_from_slice(body);
                RoutingCommand::SurbReply(s)
            }
            _ => {
                let mut d = [0u8; 4];
                d.copy_from_slice(body);
                RoutingCommand::NodeDelay(u32::from_be_bytes(d))
            }
        };
        Ok(Some((cmd, len + 1)))
    }
}

/// Body length of a known non-NULL command id.
fn body_length(id: u8) -> Option<usize> {
    match id {
        NEXT_NODE_HOP_CMD => Some(NEXT_NODE_HOP_LENGTH - 1),
        RECIPIENT_CMD => Some(RECIPIENT_LENGTH - 1),
        SURB_REPLY_CMD => Some(SURB_REPLY_LENGTH - 1),
        NODE_DELAY_CMD => Some(NODE_DELAY_LENGTH - 1),
        _ => None,
    }
}

/// Bit of a command id in a "seen" mask.
fn id_bit(id: u8) -> u8 {
    match id {
        NEXT_NODE_HOP_CMD => 1,
        RECIPIENT_CMD => 2,
        SURB_REPLY_CMD => 4,
        _ => 8,
    }
}

/// Encodes `cmds` in order into `block`, zero-filling the rest.
///
/// Rejects duplicate command types and lists that do not fit.
pub fn encode_block(cmds: &[RoutingCommand], block: &mut [u8]) -> Result<(), SphinxError> {
    let mut seen = 0u8;
    let mut off = 0;
    for cmd in cmds {
        let bit = id_bit(cmd.id());
        if seen & bit != 0 {
            return Err(SphinxError::DuplicateCommand(cmd.id()));
        }
        seen |= bit;
        off += cmd.encode_into(&mut block[off..])?;
    }
    block[off..].fill(0);
    Ok(())
}

/// Parses a per-hop routing block (normally 82 bytes) into its commands.
///
/// Rules (§2.4): a NULL id must be followed by zero bytes only; a single
/// trailing byte must be NULL; a command's body must fit; unknown ids and
/// duplicate command types are errors.
pub fn parse_block(block: &[u8]) -> Result<Vec<RoutingCommand>, SphinxError> {
    let mut cmds = Vec::with_capacity(3);
    let mut seen = 0u8;
    let mut rest = block;
    while !rest.is_empty() {
        if rest.len() == 1 && rest[0] != NULL_CMD {
            return Err(SphinxError::TruncatedCommand(rest[0]));
        }
        match RoutingCommand::decode_one(rest)? {
            None => {
                if rest[1..].iter().any(|&b| b != 0) {
                    return Err(SphinxError::NonZeroPadding);
                }
                break;
            }
            Some((cmd, used)) => {
                let bit = id_bit(cmd.id());
                if seen & bit != 0 {
                    return Err(SphinxError::DuplicateCommand(cmd.id()));
                }
                seen |= bit;
                cmds.push(cmd);
                rest = &rest[used..];
            }
        }
    }
    Ok(cmds)
}

/// Checks the commands a caller gives for one hop of header creation.
///
/// NextNodeHop is not allowed (header creation inserts it); a non-terminal
/// hop's own commands must leave room for it.
pub(crate) fn check_hop_commands(
    cmds: &[RoutingCommand],
    terminal: bool,
) -> Result<(), SphinxError> {
    let mut len = 0;
    for cmd in cmds {
        if matches!(cmd, RoutingCommand::NextNodeHop { .. }) {
            return Err(SphinxError::NextNodeHopInInput);
        }
        len += cmd.encoded_len();
    }
    let room = if terminal {
        PER_HOP_ROUTING_INFO_LENGTH
    } else {
        PER_HOP_ROUTING_INFO_LENGTH - NEXT_NODE_HOP_LENGTH
    };
    if len > room {
        return Err(SphinxError::CommandsTooLong);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_delay_encoding() {
        assert_eq!(
            RoutingCommand::NodeDelay(1234).to_bytes(),
            hex::decode("80000004d2").unwrap()
        );
    }

    #[test]
    fn parse_rules() {
        // Empty block and an all-zero block are valid empty lists.
        assert_eq!(parse_block(&[]).unwrap(), vec![]);
        assert_eq!(parse_block(&[0u8; 82]).unwrap(), vec![]);
        // A single trailing non-zero byte is an error.
        let mut b = [0u8; 6];
        b[..5].copy_from_slice(&RoutingCommand::NodeDelay(7).to_bytes());
        b[5] = 0x80;
        assert!(matches!(
            parse_block(&b),
            Err(SphinxError::TruncatedCommand(0x80))
        ));
        b[5] = 0;
        assert_eq!(parse_block(&b).unwrap(), vec![RoutingCommand::NodeDelay(7)]);
        // Garbage after NULL.
        let mut b = [0u8; 82];
        b[40] = 1;
        assert!(matches!(parse_block(&b), Err(SphinxError::NonZeroPadding)));
        // Unknown id.
        let b = [0x04u8, 0, 0];
        assert!(matches!(
            parse_block(&b),
            Err(SphinxError::UnknownCommand(4))
        ));
        // Truncated body.
        let b = [0x02u8; 10];
        assert!(matches!(
            parse_block(&b),
            Err(SphinxError::TruncatedCommand(2))
        ));
        // Duplicates.
        let mut b = Vec::new();
        b.extend(RoutingCommand::NodeDelay(1).to_bytes());
        b.extend(RoutingCommand::NodeDelay(2).to_bytes());
        assert!(matches!(
            parse_block(&b),
            Err(SphinxError::DuplicateCommand(0x80))
        ));
    }

    #[test]
    fn full_block_without_terminator() {
        let cmds = vec![
            RoutingCommand::Recipient([7; 64]),
            RoutingCommand::SurbReply([9; 16]),
        ];
        let mut block = [0xffu8; 82];
        encode_block(&cmds, &mut block).unwrap();
        assert_eq!(parse_block(&block).unwrap(), cmds);
        let too_many = vec![
            RoutingCommand::Recipient([7; 64]),
            RoutingCommand::SurbReply([9; 16]),
            RoutingCommand::NodeDelay(1),
        ];
        assert!(matches!(
            encode_block(&too_many, &mut block),
            Err(SphinxError::CommandsTooLong)
        ));
    }

    #[test]
    fn hop_command_checks() {
        let nnh = RoutingCommand::NextNodeHop {
            id: [0; 32],
            mac: [0; 16],
        };
        assert!(matches!(
            check_hop_commands(&[nnh], true),
            Err(SphinxError::NextNodeHopInInput)
        ));
        let rcpt = RoutingCommand::Recipient([1; 64]);
        assert!(check_hop_commands(std::slice::from_ref(&rcpt), true).is_ok());
        assert!(matches!(
            check_hop_commands(&[rcpt], false),
            Err(SphinxError::CommandsTooLong)
        ));
    }
}
