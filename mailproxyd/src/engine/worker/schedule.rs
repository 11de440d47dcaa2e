//! Which queue entry gets the next send slot: an in-memory index of due
//! times (rebuilt from the store at start, kept current by the worker), so
//! a send tick or a housekeeping pass costs the same with ten queued entries
//! or a hundred thousand. Slots go round-robin over the entries with a
//! block due, so a small message never waits behind every block of a large
//! one. The index only orders work: the store stays the truth, and an entry
//! found stale (gone, or not due after all) is simply placed again.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::store::QueueEntry;

use super::super::send;

/// Where an entry stands in the index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    /// A block is due (or the entry still needs preparing).
    Ready,
    /// Its next block is due at this Unix second.
    Timer(u64),
    /// Unprepared, waiting for this recipient's key.
    Waiting(String),
    /// Nothing to send (every block acknowledged).
    Idle,
}

/// The index.
#[derive(Debug, Default)]
pub(in crate::engine) struct Schedule {
    slot: HashMap<u64, Slot>,
    /// Entries with a block due, by id.
    ready: BTreeSet<u64>,
    /// (due time, id) of entries whose next block is due later.
    timers: BTreeSet<(u64, u64)>,
    /// Bounce deadlines: (time, id).
    deadlines: BTreeSet<(u64, u64)>,
    deadline_of: HashMap<u64, u64>,
    /// Unprepared entries by the recipient whose key they wait for.
    waiting: BTreeMap<String, BTreeSet<u64>>,
    /// The entry served last (round-robin goes on after it).
    cursor: u64,
}

/// The Unix second at which `e`'s next block is due, if any (`Some(0)`: now).
fn next_due_at(e: &QueueEntry) -> Option<u64> {
    e.blocks
        .iter()
        .filter(|b| !b.acked)
        .map(|b| if b.attempts == 0 { 0 } else { b.retransmit_at })
        .min()
}

impl Schedule {
    /// Number of entries indexed.
    pub(in crate::engine) fn len(&self) -> usize {
        self.slot.len()
    }

    /// Whether `id` is indexed.
    pub(in crate::engine) fn contains(&self, id: u64) -> bool {
        self.slot.contains_key(&id)
    }

    /// Indexes (or re-indexes) `e` as it is now stored. `key_known` tells
    /// whether an unprepared entry's recipient key is available.
    pub(in crate::engine) fn place(&mut self, e: &QueueEntry, now: u64, key_known: bool) {
        self.unslot(e.id);
        if let Some(t) = self.deadline_of.remove(&e.id) {
            self.deadlines.remove(&(t, e.id));
        }
        if e.bounce_at != 0 {
            self.deadlines.insert((e.bounce_at, e.id));
            self.deadline_of.insert(e.id, e.bounce_at);
        }
        let slot = if !send::is_prepared(e) {
            if key_known {
                Slot::Ready
            } else {
                Slot::Waiting(e.recipient.to_ascii_lowercase())
            }
        } else {
            match next_due_at(e) {
                None => Slot::Idle,
                Some(t) if t <= now => Slot::Ready,
                Some(t) => Slot::Timer(t),
            }
        };
        match &slot {
            Slot::Ready => {
                self.ready.insert(e.id);
            }
            Slot::Timer(t) => {
                self.timers.insert((*t, e.id));
            }
            Slot::Waiting(r) => {
                self.waiting.entry(r.clone()).or_default().insert(e.id);
            }
            Slot::Idle => {}
        }
        self.slot.insert(e.id, slot);
    }

    /// Takes `id` out of its send slot (not its deadline).
    fn unslot(&mut self, id: u64) {
        match self.slot.remove(&id) {
            Some(Slot::Ready) => {
                self.ready.remove(&id);
            }
            Some(Slot::Timer(t)) => {
                self.timers.remove(&(t, id));
            }
            Some(Slot::Waiting(r)) => {
                if let Some(ids) = self.waiting.get_mut(&r) {
                    ids.remove(&id);
                    if ids.is_empty() {
                        self.waiting.remove(&r);
                    }
                }
            }
            Some(Slot::Idle) | None => {}
        }
    }

    /// Forgets `id` (it left the queue).
    pub(in crate::engine) fn remove(&mut self, id: u64) {
        self.unslot(id);
        if let Some(t) = self.deadline_of.remove(&id) {
            self.deadlines.remove(&(t, id));
        }
    }

    /// The entry that gets the next send slot at `now`: the first ready
    /// entry after the one served last (round-robin), entries whose
    /// retransmission time came first made ready. It stays ready until it
    /// is placed again.
    pub(in crate::engine) fn next(&mut self, now: u64) -> Option<u64> {
        while let Some(&(t, id)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            self.ready.insert(id);
            self.slot.insert(id, Slot::Ready);
        }
        let id = self
            .ready
            .range(self.cursor.saturating_add(1)..)
            .next()
            .or_else(|| self.ready.first())
            .copied()?;
        self.cursor = id;
        Some(id)
    }

    /// Recipients whose keys unprepared entries wait for.
    pub(in crate::engine) fn waiting_recipients(&self) -> impl Iterator<Item = &str> {
        self.waiting.keys().map(String::as_str)
    }

    /// The entries waiting for `recipient`'s key.
    pub(in crate::engine) fn waiting_for(&self, recipient: &str) -> Vec<u64> {
        self.waiting
            .get(recipient)
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Makes the entries waiting for `recipient`'s key ready (it is known now).
    pub(in crate::engine) fn key_arrived(&mut self, recipient: &str) {
        for id in self.waiting.remove(recipient).unwrap_or_default() {
            self.ready.insert(id);
            self.slot.insert(id, Slot::Ready);
        }
    }

    /// Entries past their bounce deadline at `now`, earliest first.
    pub(in crate::engine) fn expired(&self, now: u64) -> Vec<u64> {
        self.deadlines
            .range(..=(now, u64::MAX))
            .map(|&(_, id)| id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{BlockState, MessageRef};

    fn entry(id: u64, blocks: usize, bounce_at: u64) -> QueueEntry {
        QueueEntry {
            id,
            sender: "a".into(),
            recipient: "Bob@P".into(),
            message: MessageRef {
                blob: 1,
                len: 0,
                chunks: 0,
            },
            created: 0,
            bounce_at,
            unreliable: false,
            blocks: vec![BlockState::default(); blocks],
            engine: if blocks > 0 { vec![1; 17] } else { vec![] },
        }
    }

    /// Marks block `i` sent at `now`, due again at `at`, and places it.
    fn sent(s: &mut Schedule, e: &mut QueueEntry, i: usize, now: u64, at: u64) {
        e.blocks[i].attempts += 1;
        e.blocks[i].retransmit_at = at;
        s.place(e, now, true);
    }

    #[test]
    fn slots_go_round_robin_over_ready_entries() {
        let mut s = Schedule::default();
        let mut big = entry(1, 100, 0);
        let mut small = entry(2, 1, 0);
        s.place(&big, 10, true);
        s.place(&small, 10, true);
        let mut served = Vec::new();
        for n in 0..4 {
            let id = s.next(10).unwrap();
            served.push(id);
            let e = if id == 1 { &mut big } else { &mut small };
            let i = e.blocks.iter().position(|b| b.attempts == 0).unwrap();
            sent(&mut s, e, i, 10, 1000 + n);
        }
        // The small message gets the second slot, then the big one has them all.
        assert_eq!(served, [1, 2, 1, 1]);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn retransmissions_become_ready_at_their_time() {
        let mut s = Schedule::default();
        let mut e = entry(7, 1, 0);
        s.place(&e, 10, true);
        assert_eq!(s.next(10), Some(7));
        sent(&mut s, &mut e, 0, 10, 50);
        assert_eq!(s.next(49), None);
        assert_eq!(s.next(50), Some(7));
        e.blocks[0].acked = true;
        s.place(&e, 50, true);
        assert_eq!(s.next(1000), None, "acknowledged: nothing due");
        s.remove(7);
        assert!(!s.contains(7));
    }

    #[test]
    fn unprepared_entries_wait_for_their_key_and_deadlines_expire() {
        let mut s = Schedule::default();
        let e = entry(3, 0, 100);
        s.place(&e, 10, false);
        assert_eq!(s.next(10), None);
        assert_eq!(s.waiting_recipients().collect::<Vec<_>>(), ["bob@p"]);
        assert_eq!(s.waiting_for("bob@p"), [3]);
        assert!(s.expired(99).is_empty());
        assert_eq!(s.expired(100), [3]);
        s.key_arrived("bob@p");
        assert_eq!(s.next(10), Some(3));
        assert_eq!(s.waiting_recipients().count(), 0);
        s.remove(3);
        assert!(s.expired(100).is_empty());
        assert_eq!(s.next(10), None);
    }
}
