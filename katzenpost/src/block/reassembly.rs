//! Reassembly and duplicate suppression (§6.3).
//!
//! Fragments and completed messages are keyed the same way, by
//! [`ReassemblyKey`] = (sender static key, message id), so a late retransmitted
//! block of a delivered message is recognised as a duplicate instead of
//! starting a new partial message (original mailproxy defect #7).
//!
//! Three levels, for whichever way the daemon stores its state:
//! - [`assemble`]: a pure function from stored pieces to the message;
//! - [`PartialMessage`]: one message being reassembled (serde-serialisable);
//! - [`Reassembler`]: all partial messages plus the completed-message records
//!   (serde-serialisable), with time-based sweeping.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::fragment::{Block, BlockError, MessageId};
use crate::geometry::BLOCK_PAYLOAD_LENGTH;

/// Errors while reassembling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReassemblyError {
    /// The block itself is malformed.
    #[error("invalid block: {0}")]
    Block(#[from] BlockError),
    /// The block's `total_blocks` disagrees with earlier blocks of the same message.
    #[error("inconsistent total: message has {expected} blocks, block says {got}")]
    InconsistentTotal { expected: u16, got: u16 },
    /// Pieces of different messages were handed to [`assemble`].
    #[error("blocks belong to different messages")]
    MixedMessages,
    /// Not every block is present.
    #[error("message incomplete: {have} of {total} blocks")]
    Incomplete { have: usize, total: u16 },
    /// The message has more blocks than this receiver accepts.
    #[error("message of {total} blocks exceeds the limit of {max}")]
    TooManyBlocks { total: u16, max: u16 },
    /// Deserialised state violates the invariants.
    #[error("corrupt reassembly state: {0}")]
    CorruptState(&'static str),
}

/// The key under which fragments and completed messages are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReassemblyKey {
    /// The sender's static (identity) public key from the Noise handshake.
    pub sender: [u8; 32],
    /// The message id from the block header.
    pub message_id: MessageId,
}

impl ReassemblyKey {
    /// Length of [`ReassemblyKey::to_bytes`].
    pub const LENGTH: usize = 48;

    /// `sender ‖ message_id`: a fixed-size store key.
    pub fn to_bytes(&self) -> [u8; Self::LENGTH] {
        let mut out = [0u8; Self::LENGTH];
        out[..32].copy_from_slice(&self.sender);
        out[32..].copy_from_slice(&self.message_id);
        out
    }

    /// Inverse of [`ReassemblyKey::to_bytes`].
    pub fn from_bytes(bytes: &[u8; Self::LENGTH]) -> Self {
        let mut sender = [0u8; 32];
        let mut message_id = [0u8; 16];
        sender.copy_from_slice(&bytes[..32]);
        message_id.copy_from_slice(&bytes[32..]);
        ReassemblyKey { sender, message_id }
    }
}

/// Assembles a message from its blocks, in any order: all blocks must share one
/// message id and total, every block id `0..total` must be present; a repeated
/// block id keeps the first occurrence.
pub fn assemble<'a, I>(blocks: I) -> Result<Vec<u8>, ReassemblyError>
where
    I: IntoIterator<Item = &'a Block>,
{
    let mut iter = blocks.into_iter();
    let Some(first) = iter.next() else {
        return Err(ReassemblyError::Incomplete { have: 0, total: 0 });
    };
    first.validate()?;
    let mut by_id: BTreeMap<u16, &[u8]> = BTreeMap::new();
    by_id.insert(first.block_id, &first.payload);
    for b in iter {
        b.validate()?;
        if b.message_id != first.message_id {
            return Err(ReassemblyError::MixedMessages);
        }
        if b.total_blocks != first.total_blocks {
            return Err(ReassemblyError::InconsistentTotal {
                expected: first.total_blocks,
                got: b.total_blocks,
            });
        }
        by_id.entry(b.block_id).or_insert(&b.payload);
    }
    if by_id.len() != usize::from(first.total_blocks) {
        return Err(ReassemblyError::Incomplete {
            have: by_id.len(),
            total: first.total_blocks,
        });
    }
    Ok(concat(by_id.values().copied()))
}

fn concat<'a>(parts: impl Iterator<Item = &'a [u8]> + Clone) -> Vec<u8> {
    let len = parts.clone().map(<[u8]>::len).sum();
    let mut out = Vec::with_capacity(len);
    parts.for_each(|p| out.extend_from_slice(p));
    out
}

/// What adding a block to a [`PartialMessage`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    /// Stored; `have` of `total` blocks are now present.
    Stored { have: usize, total: u16 },
    /// Stored, and the message is now complete.
    Complete,
    /// A block with this id was already present: dropped.
    Duplicate,
}

/// One message being reassembled: its total and the payloads received so far.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PartialMessageRepr", into = "PartialMessageRepr")]
pub struct PartialMessage {
    total_blocks: u16,
    first_seen: u64,
    payloads: BTreeMap<u16, Vec<u8>>,
}

#[derive(Serialize, Deserialize)]
struct PartialMessageRepr {
    total_blocks: u16,
    first_seen: u64,
    payloads: BTreeMap<u16, ByteBuf>,
}

impl TryFrom<PartialMessageRepr> for PartialMessage {
    type Error = ReassemblyError;
    fn try_from(r: PartialMessageRepr) -> Result<Self, Self::Error> {
        if r.total_blocks == 0 {
            return Err(ReassemblyError::CorruptState("total_blocks is 0"));
        }
        if r.payloads.is_empty() {
            return Err(ReassemblyError::CorruptState("no payloads"));
        }
        if r.payloads.keys().any(|&id| id >= r.total_blocks) {
            return Err(ReassemblyError::CorruptState("block id out of range"));
        }
        if r.payloads.values().any(|p| p.len() > BLOCK_PAYLOAD_LENGTH) {
            return Err(ReassemblyError::CorruptState("payload too long"));
        }
        Ok(PartialMessage {
            total_blocks: r.total_blocks,
            first_seen: r.first_seen,
            payloads: r
                .payloads
                .into_iter()
                .map(|(k, v)| (k, v.into_vec()))
                .collect(),
        })
    }
}

impl From<PartialMessage> for PartialMessageRepr {
    fn from(p: PartialMessage) -> Self {
        PartialMessageRepr {
            total_blocks: p.total_blocks,
            first_seen: p.first_seen,
            payloads: p
                .payloads
                .into_iter()
                .map(|(k, v)| (k, ByteBuf::from(v)))
                .collect(),
        }
    }
}

impl std::fmt::Debug for PartialMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartialMessage")
            .field("total_blocks", &self.total_blocks)
            .field("first_seen", &self.first_seen)
            .field("have", &self.payloads.len())
            .finish()
    }
}

impl PartialMessage {
    /// Starts a message from its first block, seen at `now` (Unix seconds).
    pub fn new(block: Block, now: u64) -> Result<Self, ReassemblyError> {
        block.validate()?;
        let mut payloads = BTreeMap::new();
        let total_blocks = block.total_blocks;
        payloads.insert(block.block_id, block.payload);
        Ok(PartialMessage {
            total_blocks,
            first_seen: now,
            payloads,
        })
    }

    /// The message's block count.
    pub fn total_blocks(&self) -> u16 {
        self.total_blocks
    }

    /// When the first block arrived (Unix seconds).
    pub fn first_seen(&self) -> u64 {
        self.first_seen
    }

    /// How many distinct blocks are present.
    pub fn have(&self) -> usize {
        self.payloads.len()
    }

    /// Whether block `block_id` is present.
    pub fn contains(&self, block_id: u16) -> bool {
        self.payloads.contains_key(&block_id)
    }

    /// Whether every block is present.
    pub fn is_complete(&self) -> bool {
        self.payloads.len() == usize::from(self.total_blocks)
    }

    /// Adds a block of this message. An inconsistent total is an error (the block
    /// is not stored); a block id already present is a [`AddOutcome::Duplicate`].
    pub fn add(&mut self, block: Block) -> Result<AddOutcome, ReassemblyError> {
        block.validate()?;
        if block.total_blocks != self.total_blocks {
            return Err(ReassemblyError::InconsistentTotal {
                expected: self.total_blocks,
                got: block.total_blocks,
            });
        }
        if self.payloads.contains_key(&block.block_id) {
            return Ok(AddOutcome::Duplicate);
        }
        self.payloads.insert(block.block_id, block.payload);
        Ok(self.status())
    }

    fn status(&self) -> AddOutcome {
        if self.is_complete() {
            AddOutcome::Complete
        } else {
            AddOutcome::Stored {
                have: self.payloads.len(),
                total: self.total_blocks,
            }
        }
    }

    /// The whole message, if every block is present.
    pub fn assemble(&self) -> Result<Vec<u8>, ReassemblyError> {
        if !self.is_complete() {
            return Err(ReassemblyError::Incomplete {
                have: self.payloads.len(),
                total: self.total_blocks,
            });
        }
        Ok(concat(self.payloads.values().map(Vec::as_slice)))
    }
}

/// What [`Reassembler::accept`] did with a block.
#[derive(Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Stored; the message is still incomplete.
    Stored { have: usize, total: u16 },
    /// This block completed the message: here it is, whole.
    Complete(Vec<u8>),
    /// A block already held for a message still being reassembled: dropped.
    Duplicate,
    /// A block of a message already delivered: dropped.
    AlreadyDelivered,
}

impl std::fmt::Debug for Accepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Accepted::Stored { have, total } => {
                write!(f, "Stored {{ have: {have}, total: {total} }}")
            }
            Accepted::Complete(m) => write!(f, "Complete({} bytes)", m.len()),
            Accepted::Duplicate => f.write_str("Duplicate"),
            Accepted::AlreadyDelivered => f.write_str("AlreadyDelivered"),
        }
    }
}

/// Reassembly state for one account: partial messages and completed-message
/// records, both keyed by (sender key, message id).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reassembler {
    /// Largest `total_blocks` accepted (`None`: up to 65,535).
    max_total_blocks: Option<u16>,
    partial: BTreeMap<ReassemblyKey, PartialMessage>,
    /// Completed messages and when they completed (Unix seconds).
    completed: BTreeMap<ReassemblyKey, u64>,
}

impl Reassembler {
    /// An empty reassembler accepting messages of any legal size.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty reassembler that rejects messages of more than `max_total_blocks` blocks
    /// (bounds the memory one sender can make us hold).
    pub fn with_max_total_blocks(max_total_blocks: u16) -> Self {
        Reassembler {
            max_total_blocks: Some(max_total_blocks),
            ..Self::default()
        }
    }

    /// Feeds one decrypted block from `sender`, received at `now` (Unix seconds).
    pub fn accept(
        &mut self,
        sender: [u8; 32],
        block: Block,
        now: u64,
    ) -> Result<Accepted, ReassemblyError> {
        block.validate()?;
        if let Some(max) = self.max_total_blocks {
            if block.total_blocks > max {
                return Err(ReassemblyError::TooManyBlocks {
                    total: block.total_blocks,
                    max,
                });
            }
        }
        let key = ReassemblyKey {
            sender,
            message_id: block.message_id,
        };
        if self.completed.contains_key(&key) {
            return Ok(Accepted::AlreadyDelivered);
        }
        let outcome = match self.partial.get_mut(&key) {
            Some(p) => p.add(block)?,
            None => {
                let p = PartialMessage::new(block, now)?;
                let status = p.status();
                self.partial.insert(key, p);
                status
            }
        };
        Ok(match outcome {
            AddOutcome::Stored { have, total } => Accepted::Stored { have, total },
            AddOutcome::Duplicate => Accepted::Duplicate,
            AddOutcome::Complete => {
                let p = self
                    .partial
                    .remove(&key)
                    .ok_or(ReassemblyError::CorruptState("vanished"))?;
                self.completed.insert(key, now);
                Accepted::Complete(p.assemble()?)
            }
        })
    }

    /// The partial message under `key`, if any.
    pub fn partial(&self, key: &ReassemblyKey) -> Option<&PartialMessage> {
        self.partial.get(key)
    }

    /// Number of messages being reassembled.
    pub fn partial_count(&self) -> usize {
        self.partial.len()
    }

    /// Whether the message under `key` was completed (and its record not yet swept).
    pub fn is_completed(&self, key: &ReassemblyKey) -> bool {
        self.completed.contains_key(key)
    }

    /// Number of completed-message records.
    pub fn completed_count(&self) -> usize {
        self.completed.len()
    }

    /// Drops partial messages whose first block is older than `partial_timeout`
    /// (if set) and completed records older than `completed_ttl` (mailproxy used
    /// 5 days). Returns the keys of the partial messages dropped.
    pub fn sweep(
        &mut self,
        now: u64,
        partial_timeout: Option<Duration>,
        completed_ttl: Duration,
    ) -> Vec<ReassemblyKey> {
        let mut dropped = Vec::new();
        if let Some(t) = partial_timeout {
            let t = t.as_secs();
            self.partial.retain(|k, p| {
                let keep = now.saturating_sub(p.first_seen) < t;
                if !keep {
                    dropped.push(*k);
                }
                keep
            });
        }
        let ttl = completed_ttl.as_secs();
        self.completed.retain(|_, at| now.saturating_sub(*at) < ttl);
        dropped
    }
}
