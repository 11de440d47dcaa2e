//! Blocks: the plaintext unit of an end-to-end message (§6.1).
//!
//! ```text
//! Block (50,546) = message_id (16) ‖ total_blocks u16be ‖ block_id u16be ‖ block_length u32be
//!                  ‖ payload[block_length] ‖ zero padding
//! ```

use serde::{Deserialize, Serialize};

use crate::geometry::{BLOCK_HEADER_LENGTH, BLOCK_LENGTH, BLOCK_PAYLOAD_LENGTH};

/// Length of a message id.
pub const MESSAGE_ID_LENGTH: usize = 16;
/// A message id: 16 random bytes, fresh per message and per recipient.
pub type MessageId = [u8; MESSAGE_ID_LENGTH];
/// The most blocks one message may have (`total_blocks` is a u16).
pub const MAX_TOTAL_BLOCKS: usize = u16::MAX as usize;
/// The longest message that fits in [`MAX_TOTAL_BLOCKS`] blocks.
pub const MAX_MESSAGE_LENGTH: usize = MAX_TOTAL_BLOCKS * BLOCK_PAYLOAD_LENGTH;

const OFF_TOTAL: usize = MESSAGE_ID_LENGTH;
const OFF_ID: usize = OFF_TOTAL + 2;
const OFF_LEN: usize = OFF_ID + 2;
const _: () = assert!(OFF_LEN + 4 == BLOCK_HEADER_LENGTH);

/// Errors building or parsing a block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// The message needs more than 65,535 blocks.
    #[error("message of {len} bytes needs more than {MAX_TOTAL_BLOCKS} blocks")]
    MessageTooLarge { len: usize },
    /// A block plaintext must be exactly 50,546 bytes.
    #[error("block plaintext is {len} bytes, expected {BLOCK_LENGTH}")]
    BadLength { len: usize },
    /// `block_id` must be less than `total_blocks`.
    #[error("block id {block_id} is not below total {total_blocks}")]
    BlockIdOutOfRange { block_id: u16, total_blocks: u16 },
    /// `block_length` exceeds the 50,522 bytes a block can carry.
    #[error("block payload length {len} exceeds {BLOCK_PAYLOAD_LENGTH}")]
    PayloadTooLong { len: usize },
    /// The bytes after the payload are not all zero.
    #[error("block padding is not all zero")]
    NonZeroPadding,
}

/// One block of a message, decoded.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// The message this block belongs to.
    pub message_id: MessageId,
    /// How many blocks the message has (at least 1).
    pub total_blocks: u16,
    /// This block's index, from 0.
    pub block_id: u16,
    /// This block's share of the message (at most 50,522 bytes).
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

impl std::fmt::Debug for Block {
    // Never print message contents (they may end up in logs).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("message_id", &hex::encode(self.message_id))
            .field("total_blocks", &self.total_blocks)
            .field("block_id", &self.block_id)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

impl Block {
    /// Checks the header fields: `block_id < total_blocks` and the payload fits.
    pub fn validate(&self) -> Result<(), BlockError> {
        self.as_block_ref().validate()
    }

    /// Writes the 50,546-byte plaintext encoding into `out` (zero padding included).
    pub fn encode_into(&self, out: &mut [u8; BLOCK_LENGTH]) -> Result<(), BlockError> {
        self.as_block_ref().encode_into(out)
    }

    /// This block with its payload borrowed.
    pub fn as_block_ref(&self) -> BlockRef<'_> {
        BlockRef {
            message_id: self.message_id,
            total_blocks: self.total_blocks,
            block_id: self.block_id,
            payload: &self.payload,
        }
    }

    /// The 50,546-byte plaintext encoding.
    pub fn encode(&self) -> Result<Vec<u8>, BlockError> {
        let mut out = Box::new([0u8; BLOCK_LENGTH]);
        self.encode_into(&mut out)?;
        Ok(out.to_vec())
    }

    /// Parses a block plaintext with every receiver check of §6.1: length exactly
    /// 50,546, `block_id < total_blocks`, `block_length ≤ 50,522`, zero padding.
    ///
    /// The padding is checked even when `block_length` is 0 (Go skips it there);
    /// a Go sender always zero-pads, so no block it makes is rejected.
    pub fn decode(bytes: &[u8]) -> Result<Block, BlockError> {
        if bytes.len() != BLOCK_LENGTH {
            return Err(BlockError::BadLength { len: bytes.len() });
        }
        let mut message_id = [0u8; MESSAGE_ID_LENGTH];
        message_id.copy_from_slice(&bytes[..OFF_TOTAL]);
        let total_blocks = u16::from_be_bytes([bytes[OFF_TOTAL], bytes[OFF_TOTAL + 1]]);
        let block_id = u16::from_be_bytes([bytes[OFF_ID], bytes[OFF_ID + 1]]);
        let len = u32::from_be_bytes([
            bytes[OFF_LEN],
            bytes[OFF_LEN + 1],
            bytes[OFF_LEN + 2],
            bytes[OFF_LEN + 3],
        ]);
        if block_id >= total_blocks {
            return Err(BlockError::BlockIdOutOfRange {
                block_id,
                total_blocks,
            });
        }
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > BLOCK_PAYLOAD_LENGTH {
            return Err(BlockError::PayloadTooLong { len });
        }
        let end = BLOCK_HEADER_LENGTH + len;
        if bytes[end..].iter().any(|&b| b != 0) {
            return Err(BlockError::NonZeroPadding);
        }
        Ok(Block {
            message_id,
            total_blocks,
            block_id,
            payload: bytes[BLOCK_HEADER_LENGTH..end].to_vec(),
        })
    }
}

/// How many blocks a message of `len` bytes needs (an empty message needs one).
pub fn block_count(len: usize) -> Result<u16, BlockError> {
    let n = len.div_ceil(BLOCK_PAYLOAD_LENGTH).max(1);
    u16::try_from(n).map_err(|_| BlockError::MessageTooLarge { len })
}

/// One block of a message with its payload borrowed from the message:
/// what [`fragments`] yields, encodable without copying the payload twice.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BlockRef<'a> {
    /// The message this block belongs to.
    pub message_id: MessageId,
    /// How many blocks the message has (at least 1).
    pub total_blocks: u16,
    /// This block's index, from 0.
    pub block_id: u16,
    /// This block's share of the message (at most 50,522 bytes).
    pub payload: &'a [u8],
}

impl std::fmt::Debug for BlockRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockRef")
            .field("message_id", &hex::encode(self.message_id))
            .field("total_blocks", &self.total_blocks)
            .field("block_id", &self.block_id)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

impl BlockRef<'_> {
    /// Checks the header fields: `block_id < total_blocks` and the payload fits.
    pub fn validate(&self) -> Result<(), BlockError> {
        if self.block_id >= self.total_blocks {
            return Err(BlockError::BlockIdOutOfRange {
                block_id: self.block_id,
                total_blocks: self.total_blocks,
            });
        }
        if self.payload.len() > BLOCK_PAYLOAD_LENGTH {
            return Err(BlockError::PayloadTooLong {
                len: self.payload.len(),
            });
        }
        Ok(())
    }

    /// Writes the 50,546-byte plaintext encoding into `out` (zero padding included).
    pub fn encode_into(&self, out: &mut [u8; BLOCK_LENGTH]) -> Result<(), BlockError> {
        self.validate()?;
        out[..OFF_TOTAL].copy_from_slice(&self.message_id);
        out[OFF_TOTAL..OFF_ID].copy_from_slice(&self.total_blocks.to_be_bytes());
        out[OFF_ID..OFF_LEN].copy_from_slice(&self.block_id.to_be_bytes());
        // payload.len() <= BLOCK_PAYLOAD_LENGTH, so it fits in a u32.
        out[OFF_LEN..BLOCK_HEADER_LENGTH]
            .copy_from_slice(&(self.payload.len() as u32).to_be_bytes());
        let end = BLOCK_HEADER_LENGTH + self.payload.len();
        out[BLOCK_HEADER_LENGTH..end].copy_from_slice(self.payload);
        out[end..].fill(0);
        Ok(())
    }

    /// An owned copy.
    pub fn to_block(&self) -> Block {
        Block {
            message_id: self.message_id,
            total_blocks: self.total_blocks,
            block_id: self.block_id,
            payload: self.payload.to_vec(),
        }
    }
}

/// Cuts `message` into blocks lazily, borrowing the payloads: every block but
/// the last is full, an empty message is a single empty block, more than
/// 65,535 blocks is an error.
pub fn fragments(
    message_id: MessageId,
    message: &[u8],
) -> Result<impl ExactSizeIterator<Item = BlockRef<'_>> + '_, BlockError> {
    let total_blocks = block_count(message.len())?;
    Ok((0..total_blocks).map(move |block_id| {
        let start = usize::from(block_id) * BLOCK_PAYLOAD_LENGTH;
        let end = (start + BLOCK_PAYLOAD_LENGTH).min(message.len());
        BlockRef {
            message_id,
            total_blocks,
            block_id,
            payload: &message[start..end],
        }
    }))
}

/// [`fragments`], collected into owned blocks.
pub fn fragment(message_id: MessageId, message: &[u8]) -> Result<Vec<Block>, BlockError> {
    Ok(fragments(message_id, message)?
        .map(|b| b.to_block())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout() {
        let b = Block {
            message_id: [7; 16],
            total_blocks: 0x0102,
            block_id: 0x0001,
            payload: vec![0xaa; 3],
        };
        let e = b.encode().unwrap();
        assert_eq!(e.len(), BLOCK_LENGTH);
        assert_eq!(&e[..16], &[7; 16]);
        assert_eq!(&e[16..24], &[0x01, 0x02, 0x00, 0x01, 0, 0, 0, 3]);
        assert_eq!(&e[24..27], &[0xaa; 3]);
        assert!(e[27..].iter().all(|&x| x == 0));
        assert_eq!(Block::decode(&e).unwrap(), b);
    }

    #[test]
    fn encode_rejects_bad_fields() {
        let b = Block {
            message_id: [0; 16],
            total_blocks: 1,
            block_id: 1,
            payload: vec![],
        };
        assert!(matches!(
            b.encode(),
            Err(BlockError::BlockIdOutOfRange { .. })
        ));
        let b = Block {
            message_id: [0; 16],
            total_blocks: 1,
            block_id: 0,
            payload: vec![0; BLOCK_PAYLOAD_LENGTH + 1],
        };
        assert!(matches!(b.encode(), Err(BlockError::PayloadTooLong { .. })));
    }

    #[test]
    fn block_counts() {
        assert_eq!(block_count(0).unwrap(), 1);
        assert_eq!(block_count(1).unwrap(), 1);
        assert_eq!(block_count(BLOCK_PAYLOAD_LENGTH).unwrap(), 1);
        assert_eq!(block_count(BLOCK_PAYLOAD_LENGTH + 1).unwrap(), 2);
        assert_eq!(block_count(MAX_MESSAGE_LENGTH).unwrap(), u16::MAX);
        assert_eq!(
            block_count(MAX_MESSAGE_LENGTH + 1),
            Err(BlockError::MessageTooLarge {
                len: MAX_MESSAGE_LENGTH + 1
            })
        );
    }
}
