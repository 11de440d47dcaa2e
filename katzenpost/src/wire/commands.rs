//! Wire commands (§4.8): the plaintexts carried in link frames.
//!
//! Every command is `id u8 ‖ reserved u8 (0) ‖ length u32be ‖ body ‖ padding`
//! where the padding (any length) must be all zero. [`Command::decode`]
//! enforces every parsing rule of core v0.0.7; [`Command::encode`] emits the
//! canonical form (no padding).

use crate::geometry::{
    FORWARD_PAYLOAD_LENGTH, PAYLOAD_TAG_LENGTH, SURB_ID_LENGTH, USER_FORWARD_PAYLOAD_LENGTH,
    WIRE_COMMAND_HEADER_LENGTH, WIRE_MESSAGE_BODY_LENGTH,
};

/// Command ids (§4.8 table).
pub mod id {
    /// NoOp.
    pub const NO_OP: u8 = 0;
    /// Disconnect.
    pub const DISCONNECT: u8 = 1;
    /// SendPacket.
    pub const SEND_PACKET: u8 = 2;
    /// RetrieveMessage.
    pub const RETRIEVE_MESSAGE: u8 = 16;
    /// Message / MessageACK / MessageEmpty.
    pub const MESSAGE: u8 = 17;
    /// GetConsensus.
    pub const GET_CONSENSUS: u8 = 18;
    /// Consensus.
    pub const CONSENSUS: u8 = 19;
    /// PostDescriptor.
    pub const POST_DESCRIPTOR: u8 = 20;
    /// PostDescriptorStatus.
    pub const POST_DESCRIPTOR_STATUS: u8 = 21;
}

/// `Consensus` error codes.
pub mod consensus_status {
    /// The document follows.
    pub const OK: u8 = 0;
    /// Not (yet) available; try later.
    pub const NOT_FOUND: u8 = 1;
    /// Will never be available.
    pub const GONE: u8 = 2;
}

/// `PostDescriptorStatus` error codes.
pub mod descriptor_status {
    /// Accepted.
    pub const OK: u8 = 0;
    /// Did not verify or is not well formed.
    pub const INVALID: u8 = 1;
    /// A different descriptor (or a document) already exists for the epoch.
    pub const CONFLICT: u8 = 2;
    /// Not whitelisted, or not the session's identity.
    pub const FORBIDDEN: u8 = 3;
}

/// Message type byte: user block.
const MESSAGE_TYPE_MESSAGE: u8 = 0;
/// Message type byte: SURB-ACK.
const MESSAGE_TYPE_ACK: u8 = 1;
/// Message type byte: empty spool.
const MESSAGE_TYPE_EMPTY: u8 = 2;
/// type u8 ‖ hint u8 ‖ seq u32be.
const MESSAGE_BASE_LENGTH: usize = 6;
/// The SURB reply payload carried by a MessageACK: tag + forward payload.
pub const MESSAGE_ACK_PAYLOAD_LENGTH: usize = PAYLOAD_TAG_LENGTH + FORWARD_PAYLOAD_LENGTH;
/// The user payload carried by a Message (type 0).
pub const MESSAGE_PAYLOAD_LENGTH: usize = USER_FORWARD_PAYLOAD_LENGTH;
/// Zero bytes after a Message (type 0) payload.
const MESSAGE_ZERO_TAIL: usize =
    WIRE_MESSAGE_BODY_LENGTH - MESSAGE_BASE_LENGTH - MESSAGE_PAYLOAD_LENGTH;

const _: () = assert!(MESSAGE_ZERO_TAIL == 590);
const _: () = assert!(
    MESSAGE_BASE_LENGTH + SURB_ID_LENGTH + MESSAGE_ACK_PAYLOAD_LENGTH == WIRE_MESSAGE_BODY_LENGTH
);

/// A wire command (core v0.0.7; voting-authority commands are not part of this profile).
#[derive(Clone, PartialEq, Eq)]
pub enum Command {
    /// Keep-alive; the responder's first frame.
    NoOp,
    /// The peer closes the session.
    Disconnect,
    /// One Sphinx packet (any length is accepted by the codec).
    SendPacket(Vec<u8>),
    /// Client → provider: fetch the spool head.
    RetrieveMessage {
        /// The client's retrieval sequence number.
        sequence: u32,
    },
    /// Provider → client: a user block (payload of [`MESSAGE_PAYLOAD_LENGTH`] bytes).
    Message {
        /// 1 if more entries follow, else 0 (v0.0.7 semantics).
        queue_size_hint: u8,
        /// The sequence of the RetrieveMessage this answers.
        sequence: u32,
        /// The user forward payload.
        payload: Vec<u8>,
    },
    /// Provider → client: a SURB reply (payload of [`MESSAGE_ACK_PAYLOAD_LENGTH`] bytes).
    MessageAck {
        /// 1 if more entries follow, else 0.
        queue_size_hint: u8,
        /// The sequence of the RetrieveMessage this answers.
        sequence: u32,
        /// The SURB id the reply arrived with.
        surb_id: [u8; SURB_ID_LENGTH],
        /// The SURB reply payload (tag included).
        payload: Vec<u8>,
    },
    /// Provider → client: the spool is empty.
    MessageEmpty {
        /// The sequence of the RetrieveMessage this answers.
        sequence: u32,
    },
    /// Ask for the consensus document of an epoch.
    GetConsensus {
        /// The epoch asked for.
        epoch: u64,
    },
    /// Reply to GetConsensus.
    Consensus {
        /// See [`consensus_status`].
        error_code: u8,
        /// The signed document (may be empty).
        payload: Vec<u8>,
    },
    /// Node → authority: upload a signed descriptor.
    PostDescriptor {
        /// The epoch the descriptor is for.
        epoch: u64,
        /// The signed descriptor.
        payload: Vec<u8>,
    },
    /// Authority → node: the upload's result.
    PostDescriptorStatus {
        /// See [`descriptor_status`].
        error_code: u8,
    },
}

impl std::fmt::Debug for Command {
    // Payload contents are never printed (they may end up in logs).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::NoOp => f.write_str("NoOp"),
            Command::Disconnect => f.write_str("Disconnect"),
            Command::SendPacket(p) => write!(f, "SendPacket({} bytes)", p.len()),
            Command::RetrieveMessage { sequence } => {
                write!(f, "RetrieveMessage {{ sequence: {sequence} }}")
            }
            Command::Message {
                queue_size_hint,
                sequence,
                payload,
            } => write!(
                f,
                "Message {{ queue_size_hint: {queue_size_hint}, sequence: {sequence}, payload: {} bytes }}",
                payload.len()
            ),
            Command::MessageAck {
                queue_size_hint,
                sequence,
                payload,
                ..
            } => write!(
                f,
                "MessageAck {{ queue_size_hint: {queue_size_hint}, sequence: {sequence}, payload: {} bytes }}",
                payload.len()
            ),
            Command::MessageEmpty { sequence } => {
                write!(f, "MessageEmpty {{ sequence: {sequence} }}")
            }
            Command::GetConsensus { epoch } => write!(f, "GetConsensus {{ epoch: {epoch} }}"),
            Command::Consensus {
                error_code,
                payload,
            } => write!(
                f,
                "Consensus {{ error_code: {error_code}, payload: {} bytes }}",
                payload.len()
            ),
            Command::PostDescriptor { epoch, payload } => write!(
                f,
                "PostDescriptor {{ epoch: {epoch}, payload: {} bytes }}",
                payload.len()
            ),
            Command::PostDescriptorStatus { error_code } => {
                write!(f, "PostDescriptorStatus {{ error_code: {error_code} }}")
            }
        }
    }
}

/// Why a command plaintext was rejected (or could not be encoded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Fewer than the 6 header bytes.
    #[error("command shorter than its 6-byte header ({0} bytes)")]
    Truncated(usize),
    /// The reserved header byte is not 0.
    #[error("reserved header byte is {0:#04x}, must be 0")]
    ReservedByte(u8),
    /// The declared length exceeds the bytes that follow the header.
    #[error("declared body length {declared} exceeds the {available} bytes available")]
    LengthOverrun {
        /// The header's length field.
        declared: u32,
        /// Bytes after the header.
        available: usize,
    },
    /// Padding after the body contains a non-zero byte.
    #[error("non-zero padding after the command body")]
    NonZeroPadding,
    /// A command id this profile does not know.
    #[error("unknown command id {0}")]
    UnknownCommand(u8),
    /// The body length is not what the command requires.
    #[error("command {command}: invalid body length {length}")]
    BodyLength {
        /// Command name.
        command: &'static str,
        /// Body length found.
        length: usize,
    },
    /// A Message with a type byte other than 0, 1, 2.
    #[error("unknown Message type {0}")]
    MessageType(u8),
    /// Bytes that must be zero inside a Message body are not.
    #[error("Message type {0}: non-zero bytes where zeros are required")]
    MessageNonZero(u8),
    /// Encoding only: a payload does not fit its fixed slot.
    #[error("command {command}: payload of {length} bytes, expected {expected}")]
    PayloadLength {
        /// Command name.
        command: &'static str,
        /// Payload length given.
        length: usize,
        /// Length required.
        expected: usize,
    },
}

impl Command {
    /// The command id byte.
    pub fn id(&self) -> u8 {
        match self {
            Command::NoOp => id::NO_OP,
            Command::Disconnect => id::DISCONNECT,
            Command::SendPacket(_) => id::SEND_PACKET,
            Command::RetrieveMessage { .. } => id::RETRIEVE_MESSAGE,
            Command::Message { .. } | Command::MessageAck { .. } | Command::MessageEmpty { .. } => {
                id::MESSAGE
            }
            Command::GetConsensus { .. } => id::GET_CONSENSUS,
            Command::Consensus { .. } => id::CONSENSUS,
            Command::PostDescriptor { .. } => id::POST_DESCRIPTOR,
            Command::PostDescriptorStatus { .. } => id::POST_DESCRIPTOR_STATUS,
        }
    }

    /// Length of the canonical encoding (header included).
    pub fn encoded_len(&self) -> usize {
        WIRE_COMMAND_HEADER_LENGTH
            + match self {
                Command::NoOp | Command::Disconnect => 0,
                Command::SendPacket(p) => p.len(),
                Command::RetrieveMessage { .. } => 4,
                Command::Message { .. }
                | Command::MessageAck { .. }
                | Command::MessageEmpty { .. } => WIRE_MESSAGE_BODY_LENGTH,
                Command::GetConsensus { .. } => 8,
                Command::Consensus { payload, .. } => 1 + payload.len(),
                Command::PostDescriptor { payload, .. } => 8 + payload.len(),
                Command::PostDescriptorStatus { .. } => 1,
            }
    }

    /// Checks that fixed-size payloads have their exact size and that the body
    /// fits the u32 length field.
    pub fn validate(&self) -> Result<(), CommandError> {
        match self {
            Command::Message { payload, .. } if payload.len() != MESSAGE_PAYLOAD_LENGTH => {
                Err(CommandError::PayloadLength {
                    command: "Message",
                    length: payload.len(),
                    expected: MESSAGE_PAYLOAD_LENGTH,
                })
            }
            Command::MessageAck { payload, .. } if payload.len() != MESSAGE_ACK_PAYLOAD_LENGTH => {
                Err(CommandError::PayloadLength {
                    command: "MessageAck",
                    length: payload.len(),
                    expected: MESSAGE_ACK_PAYLOAD_LENGTH,
                })
            }
            _ if self.encoded_len() - WIRE_COMMAND_HEADER_LENGTH > u32::MAX as usize => {
                Err(CommandError::PayloadLength {
                    command: "any",
                    length: self.encoded_len() - WIRE_COMMAND_HEADER_LENGTH,
                    expected: u32::MAX as usize,
                })
            }
            _ => Ok(()),
        }
    }

    /// Canonical encoding after [`Command::validate`]: errors instead of
    /// fitting a wrongly sized payload.
    pub fn try_encode(&self) -> Result<Vec<u8>, CommandError> {
        self.validate()?;
        Ok(self.encode())
    }

    /// Canonical encoding (no padding). Message and MessageAck payloads are
    /// zero-filled or cut to their fixed slot; use [`Command::try_encode`] to
    /// reject such payloads instead.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Appends the canonical encoding to `out` (see [`Command::encode`]).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[self.id(), 0, 0, 0, 0, 0]);
        match self {
            Command::NoOp | Command::Disconnect => {}
            Command::SendPacket(p) => out.extend_from_slice(p),
            Command::RetrieveMessage { sequence } => out.extend_from_slice(&sequence.to_be_bytes()),
            Command::Message {
                queue_size_hint,
                sequence,
                payload,
            } => {
                out.push(MESSAGE_TYPE_MESSAGE);
                out.push(*queue_size_hint);
                out.extend_from_slice(&sequence.to_be_bytes());
                push_fixed(out, payload, MESSAGE_PAYLOAD_LENGTH);
                out.resize(out.len() + MESSAGE_ZERO_TAIL, 0);
            }
            Command::MessageAck {
                queue_size_hint,
                sequence,
                surb_id,
                payload,
            } => {
                out.push(MESSAGE_TYPE_ACK);
                out.push(*queue_size_hint);
                out.extend_from_slice(&sequence.to_be_bytes());
                out.extend_from_slice(surb_id);
                push_fixed(out, payload, MESSAGE_ACK_PAYLOAD_LENGTH);
            }
            Command::MessageEmpty { sequence } => {
                out.push(MESSAGE_TYPE_EMPTY);
                out.push(0);
                out.extend_from_slice(&sequence.to_be_bytes());
                out.resize(
                    out.len() + WIRE_MESSAGE_BODY_LENGTH - MESSAGE_BASE_LENGTH,
                    0,
                );
            }
            Command::GetConsensus { epoch } => out.extend_from_slice(&epoch.to_be_bytes()),
            Command::Consensus {
                error_code,
                payload,
            } => {
                out.push(*error_code);
                out.extend_from_slice(payload);
            }
            Command::PostDescriptor { epoch, payload } => {
                out.extend_from_slice(&epoch.to_be_bytes());
                out.extend_from_slice(payload);
            }
            Command::PostDescriptorStatus { error_code } => out.push(*error_code),
        }
        // A body beyond u32::MAX cannot be described: cut it (validate() reports it).
        let max_end = start + WIRE_COMMAND_HEADER_LENGTH + u32::MAX as usize;
        if out.len() > max_end {
            out.truncate(max_end);
        }
        let body_len = (out.len() - start - WIRE_COMMAND_HEADER_LENGTH) as u32;
        out[start + 2..start + 6].copy_from_slice(&body_len.to_be_bytes());
    }

    /// Parses one command plaintext, enforcing every rule of §4.8.
    pub fn decode(bytes: &[u8]) -> Result<Command, CommandError> {
        if bytes.len() < WIRE_COMMAND_HEADER_LENGTH {
            return Err(CommandError::Truncated(bytes.len()));
        }
        let cmd_id = bytes[0];
        if bytes[1] != 0 {
            return Err(CommandError::ReservedByte(bytes[1]));
        }
        let declared = u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
        let rest = &bytes[WIRE_COMMAND_HEADER_LENGTH..];
        let len = declared as usize;
        if len > rest.len() {
            return Err(CommandError::LengthOverrun {
                declared,
                available: rest.len(),
            });
        }
        let (body, padding) = rest.split_at(len);
        if !all_zero(padding) {
            return Err(CommandError::NonZeroPadding);
        }
        let fixed = |command: &'static str, want: usize| -> Result<(), CommandError> {
            if body.len() == want {
                Ok(())
            } else {
                Err(CommandError::BodyLength {
                    command,
                    length: body.len(),
                })
            }
        };
        match cmd_id {
            id::NO_OP => fixed("NoOp", 0).map(|_| Command::NoOp),
            id::DISCONNECT => fixed("Disconnect", 0).map(|_| Command::Disconnect),
            id::SEND_PACKET => Ok(Command::SendPacket(body.to_vec())),
            id::RETRIEVE_MESSAGE => {
                fixed("RetrieveMessage", 4)?;
                Ok(Command::RetrieveMessage {
                    sequence: be_u32(body),
                })
            }
            id::MESSAGE => decode_message(body),
            id::GET_CONSENSUS => {
                fixed("GetConsensus", 8)?;
                Ok(Command::GetConsensus {
                    epoch: be_u64(body),
                })
            }
            id::CONSENSUS => {
                if body.is_empty() {
                    return Err(CommandError::BodyLength {
                        command: "Consensus",
                        length: 0,
                    });
                }
                Ok(Command::Consensus {
                    error_code: body[0],
                    payload: body[1..].to_vec(),
                })
            }
            id::POST_DESCRIPTOR => {
                if body.len() < 8 {
                    return Err(CommandError::BodyLength {
                        command: "PostDescriptor",
                        length: body.len(),
                    });
                }
                Ok(Command::PostDescriptor {
                    epoch: be_u64(&body[..8]),
                    payload: body[8..].to_vec(),
                })
            }
            id::POST_DESCRIPTOR_STATUS => {
                fixed("PostDescriptorStatus", 1)?;
                Ok(Command::PostDescriptorStatus {
                    error_code: body[0],
                })
            }
            other => Err(CommandError::UnknownCommand(other)),
        }
    }
}

fn decode_message(body: &[u8]) -> Result<Command, CommandError> {
    if body.len() != WIRE_MESSAGE_BODY_LENGTH {
        return Err(CommandError::BodyLength {
            command: "Message",
            length: body.len(),
        });
    }
    let msg_type = body[0];
    let queue_size_hint = body[1];
    let sequence = be_u32(&body[2..6]);
    let rest = &body[MESSAGE_BASE_LENGTH..];
    match msg_type {
        MESSAGE_TYPE_MESSAGE => {
            let (payload, tail) = rest.split_at(MESSAGE_PAYLOAD_LENGTH);
            if !all_zero(tail) {
                return Err(CommandError::MessageNonZero(msg_type));
            }
            Ok(Command::Message {
                queue_size_hint,
                sequence,
                payload: payload.to_vec(),
            })
        }
        MESSAGE_TYPE_ACK => {
            let (id, payload) = rest.split_at(SURB_ID_LENGTH);
            let mut surb_id = [0u8; SURB_ID_LENGTH];
            surb_id.copy_from_slice(id);
            Ok(Command::MessageAck {
                queue_size_hint,
                sequence,
                surb_id,
                payload: payload.to_vec(),
            })
        }
        MESSAGE_TYPE_EMPTY => {
            if !all_zero(rest) {
                return Err(CommandError::MessageNonZero(msg_type));
            }
            Ok(Command::MessageEmpty { sequence })
        }
        other => Err(CommandError::MessageType(other)),
    }
}

fn push_fixed(out: &mut Vec<u8>, payload: &[u8], len: usize) {
    let n = payload.len().min(len);
    out.extend_from_slice(&payload[..n]);
    out.resize(out.len() + (len - n), 0);
}

fn all_zero(b: &[u8]) -> bool {
    b.iter().fold(0u8, |acc, &x| acc | x) == 0
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}
