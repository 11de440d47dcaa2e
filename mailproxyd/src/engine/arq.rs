//! ACKs: the SURB records kept for outstanding blocks (written before the
//! packet leaves), and what an arriving SURB reply does to the queue.

use katzenpost::kaetzchen::{classify_surb_payload, SurbPayload};
use katzenpost::sphinx::SurbKeys;

use sha2::{Digest, Sha256};

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
    /// A block acknowledged; `complete` if that finished its entry.
    Acked { complete: bool },
    /// A Kaetzchen reply (not used by this engine yet).
    KaetzchenReply,
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
        Some(Ok(SurbPayload::Ack)) => {
            let complete = mark_acked(store, rec.entry, rec.block as usize)?;
            AckOutcome::Acked { complete }
        }
        Some(Ok(SurbPayload::KaetzchenReply(_))) => AckOutcome::KaetzchenReply,
        _ => AckOutcome::Invalid,
    };
    store.kv_remove(KvTable::Surb, surb_id)?;
    Ok(outcome)
}

/// Marks block `idx` of entry `id` acked; removes the entry when every block
/// is. Returns true if the entry completed now.
pub(super) fn mark_acked(store: &Store, id: u64, idx: usize) -> Result<bool, EngineError> {
    let Some(mut e) = store.queue_get(id)? else {
        return Ok(false);
    };
    let Some(b) = e.blocks.get_mut(idx) else {
        return Ok(false);
    };
    if b.acked {
        return Ok(false);
    }
    b.acked = true;
    if e.blocks.iter().all(|b| b.acked) {
        finish(store, &e)?;
        return Ok(true);
    }
    store.queue_update(&e)?;
    Ok(false)
}

/// Removes a finished (or bounced) entry and its stored ciphertexts.
pub(super) fn finish(store: &Store, e: &QueueEntry) -> Result<(), EngineError> {
    store.queue_remove(e.id)?;
    for i in 0..e.blocks.len() {
        store.kv_remove(KvTable::Meta, &ciphertext_key(e.id, i))?;
    }
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
    let report = reports::bounce(
        account,
        &e.recipient,
        &original,
        now,
        "not acknowledged before the queue lifetime ran out",
    );
    store.kv_put(KvTable::Meta, &marker, &Sha256::digest(&report))?;
    store.deliver(&report, now)?;
    finish(store, e)?;
    store.kv_remove(KvTable::Meta, &marker)?;
    Ok(())
}

/// Drops SURB records whose entry or block no longer needs them.
pub(super) fn sweep_surbs(store: &Store) -> Result<usize, EngineError> {
    let mut removed = 0;
    for (k, v) in store.kv_list(KvTable::Surb)? {
        let stale = match SurbRecord::decode(&v) {
            None => true,
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
        let e = store
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
            .remove(0);
        (store, e)
    }

    #[test]
    fn a_bounce_reports_once_even_after_a_crash_mid_way() {
        let dir = tempfile::tempdir().unwrap();
        let (store, e) = store_with_entry(dir.path());
        bounce(&store, "alice@p1", &e, 10).unwrap();
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
        bounce(&store, "alice@p1", &e, 10).unwrap();
        assert_eq!(store.inbox_len().unwrap(), 1, "no second report");
        assert_eq!(store.queue_len().unwrap(), 0);
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
        assert!(!mark_acked(&store, e.id, 0).unwrap());
        assert!(!mark_acked(&store, e.id, 0).unwrap(), "idempotent");
        assert!(!mark_acked(&store, e.id, 9).unwrap(), "out of range");
        assert!(mark_acked(&store, e.id, 1).unwrap());
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
        assert_eq!(sweep_surbs(&store).unwrap(), 1);
        assert!(store.kv_list(KvTable::Surb).unwrap().is_empty());
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
