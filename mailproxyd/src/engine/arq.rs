//! ACKs: the SURB records kept for outstanding blocks (written before the
//! packet leaves), and what an arriving SURB reply does to the queue.

use katzenpost::kaetzchen::{classify_surb_payload, SurbPayload};
use katzenpost::sphinx::SurbKeys;

use sha2::{Digest, Sha256};

use super::discovery::QUERY_ENTRY;
use super::send::ciphertext_key;
use super::{reports, EngineError};
use crate::store::{KvTable, QueueEntry, Store};

/// What the engine remembers about one SURB it sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SurbRecord {
    /// The queue entry.
    pub entry: u64,
    /// The block index in the entry.
    pub block: u32,
    /// Expected arrival of the ACK (Unix seconds).
    pub eta: u64,
    /// The SURB decryption keys.
    pub keys: Vec<u8>,
}

impl SurbRecord {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(20 + self.keys.len());
        v.extend_from_slice(&self.entry.to_be_bytes());
        v.extend_from_slice(&self.block.to_be_bytes());
        v.extend_from_slice(&self.eta.to_be_bytes());
        v.extend_from_slice(&self.keys);
        v
    }

    pub(super) fn decode(v: &[u8]) -> Option<SurbRecord> {
        if v.len() < 20 {
            return None;
        }
        Some(SurbRecord {
            entry: u64::from_be_bytes(v[0..8].try_into().ok()?),
            block: u32::from_be_bytes(v[8..12].try_into().ok()?),
            eta: u64::from_be_bytes(v[12..20].try_into().ok()?),
            keys: v[20..].to_vec(),
        })
    }
}

/// What an arriving SURB reply was.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum AckOutcome {
    /// No record: a decoy's reply, or a record already swept.
    Unknown,
    /// The reply did not decrypt or classify.
    Invalid,
    /// A block acknowledged.
    Acked(AckProgress),
    /// A Kaetzchen reply to a key query: the response (trailing NULs removed).
    KaetzchenReply(Vec<u8>),
}

/// Where an entry stands after one of its blocks was acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AckProgress {
    /// The queue entry.
    pub entry: u64,
    /// Blocks acknowledged so far.
    pub acked: u32,
    /// Blocks in all.
    pub total: u32,
    /// This acknowledgement finished the entry (it left the queue).
    pub complete: bool,
}

/// Handles a MessageAck: marks the block acked durably, then forgets the SURB.
pub(super) fn handle_ack(
    store: &Store,
    surb_id: &[u8; 16],
    payload: &[u8],
) -> Result<AckOutcome, EngineError> {
    let Some(raw) = store.kv_get(KvTable::Surb, surb_id)? else {
        return Ok(AckOutcome::Unknown);
    };
    let Some(rec) = SurbRecord::decode(&raw) else {
        store.kv_remove(KvTable::Surb, surb_id)?;
        return Ok(AckOutcome::Invalid);
    };
    let plain = SurbKeys::from_bytes(&rec.keys)
        .ok()
        .and_then(|k| k.decrypt(payload).ok());
    let outcome = match plain.as_deref().map(classify_surb_payload) {
        Some(Ok(SurbPayload::KaetzchenReply(r))) if rec.entry == QUERY_ENTRY => {
            AckOutcome::KaetzchenReply(r.to_vec())
        }
        Some(Ok(SurbPayload::Ack)) if rec.entry != QUERY_ENTRY => {
            match mark_acked(store, rec.entry, rec.block as usize)? {
                Some(p) => AckOutcome::Acked(p),
                None => AckOutcome::Unknown,
            }
        }
        _ => AckOutcome::Invalid,
    };
    store.kv_remove(KvTable::Surb, surb_id)?;
    Ok(outcome)
}

/// Marks block `idx` of entry `id` acked; removes the entry when every block
/// is. `None` if there is no such entry or block, or it was acked already.
pub(super) fn mark_acked(
    store: &Store,
    id: u64,
    idx: usize,
) -> Result<Option<AckProgress>, EngineError> {
    let Some(mut e) = store.queue_get(id)? else {
        return Ok(None);
    };
    let Some(b) = e.blocks.get_mut(idx) else {
        return Ok(None);
    };
    if b.acked {
        return Ok(None);
    }
    b.acked = true;
    let acked = e.blocks.iter().filter(|b| b.acked).count() as u32;
    let total = e.blocks.len() as u32;
    let complete = acked == total;
    if complete {
        finish(store, &e)?;
    } else {
        store.queue_update(&e)?;
    }
    Ok(Some(AckProgress {
        entry: id,
        acked,
        total,
        complete,
    }))
}

/// Cancels queue entry `id`: its SURB records, stored ciphertexts and the
/// entry go (the message blob too, unless another entry shares it). No
/// report. Returns false if there is no such entry.
pub(super) fn cancel(store: &Store, id: u64) -> Result<bool, EngineError> {
    let Some(e) = store.queue_get(id)? else {
        return Ok(false);
    };
    for (k, v) in store.kv_list(KvTable::Surb)? {
        if SurbRecord::decode(&v).is_some_and(|r| r.entry == id) {
            store.kv_remove(KvTable::Surb, &k)?;
        }
    }
    finish(store, &e)?;
    Ok(true)
}

/// Removes a finished (or bounced) entry and its stored ciphertexts.
pub(super) fn finish(store: &Store, e: &QueueEntry) -> Result<(), EngineError> {
    // One transaction: never an entry without its ciphertexts, nor
    // ciphertexts left behind by an entry that is gone.
    let keys: Vec<Vec<u8>> = (0..e.blocks.len())
        .map(|i| ciphertext_key(e.id, i))
        .collect();
    store.queue_remove_with(e.id, KvTable::Meta, &keys)?;
    Ok(())
}

fn bounce_marker(id: u64) -> Vec<u8> {
    let mut k = b"engine/bounce/".to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// Bounces entry `e`: a report into the account's own inbox, then the entry
/// goes. A marker with the report's hash, written first, keeps a crash in
/// between from producing a second report.
pub(super) fn bounce(
    store: &Store,
    account: &str,
    e: &QueueEntry,
    now: u64,
    why: &str,
) -> Result<(), EngineError> {
    let marker = bounce_marker(e.id);
    if let Some(hash) = store.kv_get(KvTable::Meta, &marker)? {
        for i in store.inbox_list()? {
            if Sha256::digest(store.read_message(i.message.blob)?).as_slice() == hash.as_slice() {
                finish(store, e)?;
                store.kv_remove(KvTable::Meta, &marker)?;
                return Ok(());
            }
        }
    }
    let original = store.read_message(e.message.blob)?;
    let report = reports::bounce(account, &e.recipient, &original, now, why);
    store.kv_put(KvTable::Meta, &marker, &Sha256::digest(&report))?;
    store.deliver(&report, now)?;
    finish(store, e)?;
    store.kv_remove(KvTable::Meta, &marker)?;
    Ok(())
}

/// Drops SURB records nothing needs any more: a key query's record once
/// that query is no longer outstanding (`live_queries` holds the SURB ids of
/// the outstanding ones); a block's record once its entry or block is done,
/// or once its ACK is overdue by more than `2 x slack` past the expected
/// arrival (by then the block was re-sent with a new SURB, so at most about
/// two records per block exist however long an entry lives).
pub(super) fn sweep_surbs(
    store: &Store,
    now: u64,
    slack: std::time::Duration,
    live_queries: &std::collections::HashSet<[u8; 16]>,
) -> Result<usize, EngineError> {
    let mut removed = 0;
    let grace = slack.as_secs().saturating_mul(2);
    for (k, v) in store.kv_list(KvTable::Surb)? {
        let stale = match SurbRecord::decode(&v) {
            None => true,
            Some(r) if r.entry == QUERY_ENTRY => {
                !<[u8; 16]>::try_from(k.as_slice()).is_ok_and(|id| live_queries.contains(&id))
            }
            Some(r) if r.eta.saturating_add(grace) < now => true,
            Some(r) => match store.queue_get(r.entry)? {
                None => true,
                Some(e) => e.blocks.get(r.block as usize).is_none_or(|b| b.acked),
            },
        };
        if stale {
            store.kv_remove(KvTable::Surb, &k)?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::{KeySource, NewQueueEntry, StorageKey};

    fn store_with_entry(dir: &std::path::Path) -> (Store, QueueEntry) {
        let store = Store::open(dir, &KeySource::Raw(StorageKey::from_bytes([3; 32]))).unwrap();
        let e = enqueue_one(&store);
        (store, e)
    }

    /// Gives `e` two unsent blocks with their stored ciphertexts, as
    /// preparing it for sending does.
    fn prepare_two_blocks(store: &Store, e: &mut QueueEntry) {
        e.blocks = vec![Default::default(); 2];
        store.queue_update(e).unwrap();
        for i in 0..2 {
            store
                .kv_put(KvTable::Meta, &ciphertext_key(e.id, i), b"ct")
                .unwrap();
        }
    }

    /// Queues one small message to bob@p2.
    fn enqueue_one(store: &Store) -> QueueEntry {
        store
            .enqueue(
                "alice",
                b"Subject: x\r\n\r\nbody\r\n",
                &[NewQueueEntry {
                    recipient: "bob@p2".into(),
                    created: 1,
                    bounce_at: 2,
                    unreliable: false,
                }],
            )
            .unwrap()
            .remove(0)
    }

    #[test]
    fn a_bounce_reports_once_even_after_a_crash_mid_way() {
        let dir = tempfile::tempdir().unwrap();
        let (store, e) = store_with_entry(dir.path());
        bounce(&store, "alice@p1", &e, 10, "timed out").unwrap();
        assert_eq!(store.inbox_len().unwrap(), 1);
        assert_eq!(store.queue_len().unwrap(), 0);
        assert!(store
            .kv_get(KvTable::Meta, &bounce_marker(e.id))
            .unwrap()
            .is_none());

        // Crash after the report was delivered, before the entry went.
        let dir = tempfile::tempdir().unwrap();
        let (store, e) = store_with_entry(dir.path());
        let report = b"a report";
        store
            .kv_put(KvTable::Meta, &bounce_marker(e.id), &Sha256::digest(report))
            .unwrap();
        store.deliver(report, 5).unwrap();
        bounce(&store, "alice@p1", &e, 10, "timed out").unwrap();
        assert_eq!(store.inbox_len().unwrap(), 1, "no second report");
        assert_eq!(store.queue_len().unwrap(), 0);
    }

    /// Runs `f` until it succeeds, waiting for the store to recover after
    /// each failure (as the engine retries a step at its next turn).
    fn until_ok<T>(store: &Store, mut f: impl FnMut() -> Result<T, EngineError>) -> (T, usize) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        for errors in 0..10 {
            match f() {
                Ok(v) => return (v, errors),
                Err(_) => rt
                    .block_on(async {
                        let limit = std::time::Duration::from_secs(30);
                        tokio::time::timeout(limit, store.wait_healthy()).await
                    })
                    .expect("the store recovers by itself"),
            }
        }
        panic!("no progress after 10 failures");
    }

    /// Every fault at every write of a bounce, and of the ACKs that complete
    /// an entry: one report, the entry gone with its ciphertexts, nothing
    /// twice.
    #[test]
    fn bounces_and_acks_under_every_store_fault() {
        use crate::store::{Fault, Faults, Op};
        let open = |dir: &std::path::Path, faults: &Faults| {
            let store = Store::open_with_faults(
                dir,
                &KeySource::Raw(StorageKey::from_bytes([3; 32])),
                faults.clone(),
            )
            .unwrap();
            let mut e = enqueue_one(&store);
            prepare_two_blocks(&store, &mut e);
            (store, e)
        };
        let mut failures = 0;
        for op in [Op::Write, Op::SyncData] {
            for fault in Fault::ALL {
                for n in 1..=24 {
                    let case = format!("{op:?} {fault:?} #{n}");
                    // A bounce.
                    let dir = tempfile::tempdir().unwrap();
                    let faults = Faults::new();
                    let (store, e) = open(dir.path(), &faults);
                    faults.fail_nth(op, n, fault);
                    let ((), errors) =
                        until_ok(&store, || bounce(&store, "alice@p1", &e, 10, "timed out"));
                    failures += errors;
                    assert_eq!(store.inbox_len().unwrap(), 1, "{case}: one report");
                    assert_eq!(store.queue_len().unwrap(), 0, "{case}");
                    assert!(
                        store.kv_list(KvTable::Meta).unwrap().iter().all(|(k, _)| {
                            !k.starts_with(b"engine/") && k.as_slice() != ciphertext_key(e.id, 0)
                        }),
                        "{case}: markers or ciphertexts left"
                    );
                    // The ACKs of both blocks.
                    let dir = tempfile::tempdir().unwrap();
                    let faults = Faults::new();
                    let (store, e) = open(dir.path(), &faults);
                    faults.fail_nth(op, n, fault);
                    let mut progress = Vec::new();
                    for i in 0..2 {
                        let (p, errors) = until_ok(&store, || mark_acked(&store, e.id, i));
                        failures += errors;
                        progress.extend(p);
                    }
                    assert!(
                        progress.len() == 2 && progress[1].complete,
                        "{case}: each block acked once: {progress:?}"
                    );
                    assert_eq!(store.queue_len().unwrap(), 0, "{case}");
                    assert!(
                        store
                            .kv_get(KvTable::Meta, &ciphertext_key(e.id, 1))
                            .unwrap()
                            .is_none(),
                        "{case}: ciphertexts left"
                    );
                }
            }
        }
        assert!(failures > 0, "the faults were never met");
    }

    #[test]
    fn acks_complete_entries_and_unknown_surbs_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut e) = store_with_entry(dir.path());
        e.blocks = vec![Default::default(); 2];
        store.queue_update(&e).unwrap();
        assert_eq!(
            handle_ack(&store, &[1; 16], &[0; 10]).unwrap(),
            AckOutcome::Unknown
        );
        assert_eq!(
            mark_acked(&store, e.id, 0).unwrap(),
            Some(AckProgress {
                entry: e.id,
                acked: 1,
                total: 2,
                complete: false
            })
        );
        assert_eq!(mark_acked(&store, e.id, 0).unwrap(), None, "idempotent");
        assert_eq!(mark_acked(&store, e.id, 9).unwrap(), None, "out of range");
        assert!(mark_acked(&store, e.id, 1).unwrap().unwrap().complete);
        assert_eq!(store.queue_len().unwrap(), 0);
        // A record for the removed entry is stale.
        let rec = SurbRecord {
            entry: e.id,
            block: 0,
            eta: 0,
            keys: vec![0; 64],
        };
        store
            .kv_put(KvTable::Surb, &[2; 16], &rec.encode())
            .unwrap();
        let none = std::collections::HashSet::new();
        let slack = std::time::Duration::from_secs(10);
        assert_eq!(sweep_surbs(&store, 1, slack, &none).unwrap(), 1);
        assert!(store.kv_list(KvTable::Surb).unwrap().is_empty());
    }

    #[test]
    fn cancel_removes_the_entry_its_surbs_and_ciphertexts_only() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open(dir.path(), &KeySource::Raw(StorageKey::from_bytes([3; 32]))).unwrap();
        let to = |r: &str| NewQueueEntry {
            recipient: r.into(),
            created: 1,
            bounce_at: 2,
            unreliable: false,
        };
        // One submission to two recipients: two entries sharing one blob.
        let mut entries = store
            .enqueue(
                "alice",
                b"Subject: x\r\n\r\nbody\r\n",
                &[to("bob@p2"), to("carol@p3")],
            )
            .unwrap();
        let other = entries.pop().unwrap();
        let mut e = entries.pop().unwrap();
        assert_eq!(e.message.blob, other.message.blob);
        prepare_two_blocks(&store, &mut e);
        for (sid, entry) in [([1u8; 16], e.id), ([2u8; 16], e.id), ([3u8; 16], other.id)] {
            let rec = SurbRecord {
                entry,
                block: 0,
                eta: 0,
                keys: vec![0; 8],
            };
            store.kv_put(KvTable::Surb, &sid, &rec.encode()).unwrap();
        }
        assert!(cancel(&store, e.id).unwrap());
        assert!(store.queue_get(e.id).unwrap().is_none());
        let surbs = store.kv_list(KvTable::Surb).unwrap();
        assert_eq!(surbs.len(), 1);
        assert_eq!(surbs[0].0, [3u8; 16].to_vec());
        for i in 0..2 {
            assert!(store
                .kv_get(KvTable::Meta, &ciphertext_key(e.id, i))
                .unwrap()
                .is_none());
        }
        // The other recipient's entry still has its message.
        assert!(store.queue_get(other.id).unwrap().is_some());
        assert!(store.read_message(other.message.blob).is_ok());
        assert!(!cancel(&store, e.id).unwrap(), "already gone");
        assert!(cancel(&store, other.id).unwrap());
        assert!(
            store.read_message(other.message.blob).is_err(),
            "blob released with its last entry"
        );
        assert!(store.kv_list(KvTable::Surb).unwrap().is_empty());
    }

    #[test]
    fn surb_records_expire_and_key_query_records_live_while_their_query_does() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut e) = store_with_entry(dir.path());
        e.blocks = vec![Default::default(); 1];
        store.queue_update(&e).unwrap();
        let put = |sid: [u8; 16], entry: u64, eta: u64| {
            let rec = SurbRecord {
                entry,
                block: 0,
                eta,
                keys: vec![0; 8],
            };
            store.kv_put(KvTable::Surb, &sid, &rec.encode()).unwrap();
        };
        put([1; 16], e.id, 1000); // fresh: ETA 1000, now 1015, grace 20
        put([2; 16], e.id, 900); // overdue by more than 2 x slack
        put([3; 16], QUERY_ENTRY, 0); // a live key query (old ETA is fine)
        put([4; 16], QUERY_ENTRY, 1000); // a query no longer outstanding
        let live = std::collections::HashSet::from([[3u8; 16]]);
        let slack = std::time::Duration::from_secs(10);
        assert_eq!(sweep_surbs(&store, 1015, slack, &live).unwrap(), 2);
        let mut left: Vec<Vec<u8>> = store
            .kv_list(KvTable::Surb)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        left.sort();
        assert_eq!(left, vec![vec![1u8; 16], vec![3u8; 16]]);
        assert_eq!(sweep_surbs(&store, 1021, slack, &live).unwrap(), 1);
    }

    #[test]
    fn surb_records_round_trip_and_reject_short_input() {
        let r = SurbRecord {
            entry: 7,
            block: 3,
            eta: 1234,
            keys: vec![9; 40],
        };
        assert_eq!(SurbRecord::decode(&r.encode()), Some(r));
        assert_eq!(SurbRecord::decode(&[0; 19]), None);
    }
}
