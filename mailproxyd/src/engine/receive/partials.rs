//! The index of partial incoming messages: which blocks of which message are
//! stored (in `KvTable::Partial`), how much each sender and the whole account
//! hold, and the limits on both.
//!
//! Pure bookkeeping, no store: the caller commits a change first and then
//! tells the index, so the index always follows the disk. Only the index is
//! in memory (a few dozen bytes per message plus two per block); the blocks
//! themselves stay on disk until their message completes.

use std::collections::{BTreeSet, HashMap};

use katzenpost::block::ReassemblyKey;
use katzenpost::geometry::BLOCK_LENGTH;

/// Bytes one stored block takes (its first-seen time and its encoding; every
/// block encoding has the same length).
pub(crate) const STORED_BLOCK_BYTES: u64 = 8 + BLOCK_LENGTH as u64;

/// Bounds on partial messages, per sender and for the whole account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartialLimits {
    /// Most partial messages held.
    pub messages: usize,
    /// Most bytes of stored blocks held.
    pub bytes: u64,
    /// Most partial messages held from one sender.
    pub messages_per_sender: usize,
    /// Most bytes of stored blocks held from one sender.
    pub bytes_per_sender: u64,
}

impl Default for PartialLimits {
    fn default() -> Self {
        PartialLimits {
            messages: 1000,
            bytes: 256 << 20,
            messages_per_sender: 16,
            bytes_per_sender: 64 << 20,
        }
    }
}

/// One partial message: when its first block arrived, its block count and
/// which blocks are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub first_seen: u64,
    /// Arrival order among messages first seen in the same second (so ties
    /// are not broken by the sender's key, which the sender chooses).
    seq: u64,
    pub total: u16,
    pub have: BTreeSet<u16>,
}

impl Entry {
    pub fn is_complete(&self) -> bool {
        self.have.len() == usize::from(self.total)
    }

    fn bytes(&self) -> u64 {
        self.have.len() as u64 * STORED_BLOCK_BYTES
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Usage {
    messages: usize,
    bytes: u64,
}

/// The partial messages held, with their per-sender and total usage.
#[derive(Debug)]
pub(super) struct Partials {
    limits: PartialLimits,
    entries: HashMap<ReassemblyKey, Entry>,
    /// Oldest first: (first seen, arrival number, message).
    by_age: BTreeSet<(u64, u64, ReassemblyKey)>,
    /// The next arrival number.
    next_seq: u64,
    senders: HashMap<[u8; 32], Usage>,
    total: Usage,
}

impl Partials {
    pub fn new(limits: PartialLimits) -> Self {
        Partials {
            limits,
            entries: HashMap::new(),
            by_age: BTreeSet::new(),
            senders: HashMap::new(),
            total: Usage::default(),
            next_seq: 0,
        }
    }

    pub fn get(&self, key: &ReassemblyKey) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// How many partial messages are held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes of stored blocks held.
    pub fn bytes(&self) -> u64 {
        self.total.bytes
    }

    /// Records block `block_id` of `key` as stored (after its commit). A new
    /// message is created with `total` blocks, first seen at `first_seen`.
    pub fn insert(&mut self, key: ReassemblyKey, block_id: u16, total: u16, first_seen: u64) {
        let entry = self.entries.entry(key).or_insert_with(|| {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.by_age.insert((first_seen, seq, key));
            let s = self.senders.entry(key.sender).or_default();
            s.messages += 1;
            self.total.messages += 1;
            Entry {
                first_seen,
                seq,
                total,
                have: BTreeSet::new(),
            }
        });
        if entry.have.insert(block_id) {
            self.senders.entry(key.sender).or_default().bytes += STORED_BLOCK_BYTES;
            self.total.bytes += STORED_BLOCK_BYTES;
        }
    }

    /// Forgets a message (after its blocks were removed from the store).
    pub fn remove(&mut self, key: &ReassemblyKey) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.by_age.remove(&(entry.first_seen, entry.seq, *key));
        let bytes = entry.bytes();
        if let Some(s) = self.senders.get_mut(&key.sender) {
            s.messages -= 1;
            s.bytes -= bytes;
            if s.messages == 0 {
                self.senders.remove(&key.sender);
            }
        }
        self.total.messages -= 1;
        self.total.bytes -= bytes;
        Some(entry)
    }

    /// The messages to drop so that one more block of `key` fits within the
    /// limits: the sender's oldest first while the sender is over its limits,
    /// then the oldest of anyone while the account is. `key` itself is in
    /// the list only when it cannot fit even alone (its block must then be
    /// refused, and what is held of it dropped).
    pub fn victims(&self, key: &ReassemblyKey) -> Vec<ReassemblyKey> {
        let l = &self.limits;
        let new = usize::from(!self.entries.contains_key(key));
        let mut sender = self.senders.get(&key.sender).copied().unwrap_or_default();
        let mut total = self.total;
        let mut out: Vec<ReassemblyKey> = Vec::new();
        let take = |out: &mut Vec<ReassemblyKey>,
                    sender: &mut Usage,
                    total: &mut Usage,
                    same_sender: bool|
         -> bool {
            let victim = self.by_age.iter().map(|(_, _, k)| k).find(|k| {
                *k != key && (!same_sender || k.sender == key.sender) && !out.contains(k)
            });
            let Some(v) = victim else {
                out.push(*key);
                return false;
            };
            let bytes = self.entries[v].bytes();
            if v.sender == key.sender {
                sender.messages -= 1;
                sender.bytes -= bytes;
            }
            total.messages -= 1;
            total.bytes -= bytes;
            out.push(*v);
            true
        };
        while sender.messages + new > l.messages_per_sender
            || sender.bytes + STORED_BLOCK_BYTES > l.bytes_per_sender
        {
            if !take(&mut out, &mut sender, &mut total, true) {
                return out;
            }
        }
        while total.messages + new > l.messages || total.bytes + STORED_BLOCK_BYTES > l.bytes {
            if !take(&mut out, &mut sender, &mut total, false) {
                return out;
            }
        }
        out
    }

    /// Messages whose first block arrived at or before `cutoff`.
    pub fn first_seen_by(&self, cutoff: u64) -> Vec<ReassemblyKey> {
        self.by_age
            .iter()
            .take_while(|(t, _, _)| *t <= cutoff)
            .map(|(_, _, k)| *k)
            .collect()
    }

    /// Messages with every block stored (a delivery that failed, to retry).
    pub fn complete(&self) -> Vec<ReassemblyKey> {
        self.entries
            .iter()
            .filter(|(_, e)| e.is_complete())
            .map(|(k, _)| *k)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sender: u8, id: u8) -> ReassemblyKey {
        ReassemblyKey {
            sender: [sender; 32],
            message_id: [id; 16],
        }
    }

    fn limits(messages: usize, per_sender: usize) -> PartialLimits {
        PartialLimits {
            messages,
            bytes: u64::MAX,
            messages_per_sender: per_sender,
            bytes_per_sender: u64::MAX,
        }
    }

    #[test]
    fn usage_follows_inserts_and_removals() {
        let mut p = Partials::new(PartialLimits::default());
        p.insert(key(1, 1), 0, 3, 10);
        p.insert(key(1, 1), 0, 3, 10);
        p.insert(key(1, 1), 2, 3, 10);
        p.insert(key(2, 1), 0, 2, 11);
        assert_eq!(p.len(), 2);
        assert_eq!(p.bytes(), 3 * STORED_BLOCK_BYTES);
        assert_eq!(p.get(&key(1, 1)).unwrap().have.len(), 2);
        let e = p.remove(&key(1, 1)).unwrap();
        assert_eq!(e.total, 3);
        assert_eq!(p.len(), 1);
        assert_eq!(p.bytes(), STORED_BLOCK_BYTES);
        assert!(p.remove(&key(1, 1)).is_none());
        assert!(
            !p.senders.contains_key(&[1; 32]),
            "empty senders are forgotten"
        );
    }

    #[test]
    fn the_senders_oldest_go_first_then_anyones_oldest() {
        let mut p = Partials::new(limits(3, 2));
        p.insert(key(1, 1), 0, 2, 10);
        p.insert(key(2, 1), 0, 2, 11);
        p.insert(key(1, 2), 0, 2, 12);
        // Sender 1 is at its limit: a third message of sender 1 drops its oldest.
        assert_eq!(p.victims(&key(1, 3)), vec![key(1, 1)]);
        // A block of a message already held needs no room (counts are per message).
        assert!(p.victims(&key(1, 2)).is_empty());
        // The account is full: a new sender's message drops the oldest of anyone.
        assert_eq!(p.victims(&key(3, 1)), vec![key(1, 1)]);
    }

    #[test]
    fn a_message_that_cannot_fit_alone_is_its_own_victim() {
        let mut p = Partials::new(PartialLimits {
            messages: 10,
            bytes: u64::MAX,
            messages_per_sender: 10,
            bytes_per_sender: 2 * STORED_BLOCK_BYTES,
        });
        p.insert(key(1, 1), 0, 5, 10);
        p.insert(key(1, 1), 1, 5, 10);
        assert_eq!(p.victims(&key(1, 1)), vec![key(1, 1)]);
        // Another sender is not affected by sender 1's byte limit.
        assert!(p.victims(&key(2, 1)).is_empty());
    }

    #[test]
    fn byte_limits_count_blocks() {
        let mut p = Partials::new(PartialLimits {
            messages: 10,
            bytes: 3 * STORED_BLOCK_BYTES,
            messages_per_sender: 10,
            bytes_per_sender: u64::MAX,
        });
        p.insert(key(1, 1), 0, 5, 10);
        p.insert(key(2, 1), 0, 5, 11);
        p.insert(key(2, 1), 1, 5, 11);
        assert_eq!(p.victims(&key(2, 1)), vec![key(1, 1)]);
        assert_eq!(p.victims(&key(3, 1)), vec![key(1, 1)]);
    }

    #[test]
    fn ties_in_one_second_go_by_arrival_not_by_sender_key() {
        let mut p = Partials::new(limits(2, 2));
        // The honest message arrives first, the flooder's key sorts higher.
        p.insert(key(0xff, 1), 0, 2, 10);
        p.insert(key(0x01, 1), 0, 2, 10);
        assert_eq!(p.victims(&key(0x02, 1)), vec![key(0xff, 1)]);
        let mut p = Partials::new(limits(2, 2));
        p.insert(key(0x01, 1), 0, 2, 10);
        p.insert(key(0xff, 1), 0, 2, 10);
        assert_eq!(p.victims(&key(0x02, 1)), vec![key(0x01, 1)]);
    }

    #[test]
    fn age_and_completeness_queries() {
        let mut p = Partials::new(PartialLimits::default());
        p.insert(key(1, 1), 0, 1, 10);
        p.insert(key(2, 1), 0, 2, 20);
        assert_eq!(p.first_seen_by(15), vec![key(1, 1)]);
        assert_eq!(p.first_seen_by(9), vec![]);
        assert_eq!(p.complete(), vec![key(1, 1)]);
    }
}
