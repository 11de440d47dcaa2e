//! Replay detection (§2.6): a mix remembers the replay tag of every packet it
//! unwrapped with a given mix key, and drops a packet whose tag it has seen.
//! Filters live as long as their key: dropping an epoch's key drops its filter.

use std::collections::{BTreeMap, HashSet};

/// A replay tag: SHA-512/256 of the packet's group element.
pub type ReplayTag = [u8; 32];

/// Replay filters, one per mix-key epoch.
#[derive(Debug, Default)]
pub struct ReplayFilters {
    by_epoch: BTreeMap<u64, HashSet<ReplayTag>>,
}

impl ReplayFilters {
    /// Records `tag` for the key of `epoch`. Returns `false` if it was seen
    /// before (a replay), `true` if it is new.
    pub fn check_and_insert(&mut self, epoch: u64, tag: ReplayTag) -> bool {
        self.by_epoch.entry(epoch).or_default().insert(tag)
    }

    /// Forgets the filters of every epoch before `epoch` (their keys are gone).
    pub fn prune_before(&mut self, epoch: u64) {
        self.by_epoch = self.by_epoch.split_off(&epoch);
    }

    /// Number of tags remembered for `epoch`.
    pub fn len(&self, epoch: u64) -> usize {
        self.by_epoch.get(&epoch).map_or(0, HashSet::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_sighting_is_a_replay_per_key() {
        let mut f = ReplayFilters::default();
        assert!(f.check_and_insert(7, [1; 32]));
        assert!(!f.check_and_insert(7, [1; 32]));
        // The same tag under another epoch's key is a different packet.
        assert!(f.check_and_insert(8, [1; 32]));
        assert_eq!(f.len(7), 1);
    }

    #[test]
    fn pruning_forgets_old_epochs_only() {
        let mut f = ReplayFilters::default();
        f.check_and_insert(5, [2; 32]);
        f.check_and_insert(6, [3; 32]);
        f.prune_before(6);
        assert_eq!(f.len(5), 0);
        assert_eq!(f.len(6), 1);
        assert!(!f.check_and_insert(6, [3; 32]));
    }
}
