//! Errors of Sphinx packet creation and processing.

use thiserror::Error;

/// Everything that can go wrong creating or processing Sphinx packets.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SphinxError {
    /// A path must have 1 to 5 hops.
    #[error("path has {0} hops, expected 1 to 5")]
    BadPathLength(usize),
    /// The caller passed a NextNodeHop command (header creation adds it).
    #[error("NextNodeHop given as a path command")]
    NextNodeHopInInput,
    /// A hop's commands do not fit its 82-byte routing block.
    #[error("routing commands do not fit in the per-hop block")]
    CommandsTooLong,
    /// A routing command id that is not defined.
    #[error("unknown routing command id {0:#04x}")]
    UnknownCommand(u8),
    /// A routing command whose body runs past the block.
    #[error("truncated routing command id {0:#04x}")]
    TruncatedCommand(u8),
    /// Non-zero bytes after the NULL terminator.
    #[error("non-zero bytes after the NULL routing command")]
    NonZeroPadding,
    /// A command type occurs twice in one hop's block.
    #[error("duplicate routing command id {0:#04x}")]
    DuplicateCommand(u8),
    /// The packet is shorter than a header.
    #[error("packet of {0} bytes is shorter than a Sphinx header")]
    PacketTooShort(usize),
    /// The header's version bytes are not `00 00`.
    #[error("unsupported Sphinx header version")]
    BadVersion,
    /// The header MAC does not match.
    #[error("Sphinx header MAC mismatch")]
    BadMac,
    /// A terminal payload is shorter than its 16-byte tag.
    #[error("terminal payload of {0} bytes is shorter than the tag")]
    PayloadTooShort(usize),
    /// A terminal payload's zero tag is not zero.
    #[error("payload tag is not zero")]
    BadPayloadTag,
    /// A reply longer than the forward body.
    #[error("reply of {0} bytes is longer than the 51,200-byte body")]
    PayloadTooLong(usize),
    /// A SURB is not exactly 556 bytes.
    #[error("SURB of {0} bytes, expected 556")]
    BadSurbLength(usize),
    /// A SURB decryption token of a bad length.
    #[error("SURB decryption token of {0} bytes, expected 128 to 384 in 64-byte steps")]
    BadSurbKeysLength(usize),
}
