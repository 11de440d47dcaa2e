//! Receiving: decrypting retrieved blocks, persisting each one (KvTable::Partial)
//! before the provider is told to drop it, reassembling by (sender key,
//! message id), deduplicating completed messages under the same key
//! (KvTable::Dedup) and delivering to the inbox.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use katzenpost::block::{open_block, AddOutcome, Block, PartialMessage, ReassemblyKey};
use sha2::{Digest, Sha256};

use super::reports;
use super::EngineError;
use crate::store::{unix_now, KvTable, Store};

const PARTIAL_KEY_LEN: usize = ReassemblyKey::LENGTH + 2;
/// Length of a dedup value marking a delivery in progress.
const PENDING_LEN: usize = 8 + 32;

/// What happened to one retrieved block.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Received {
    /// Stored; its message is incomplete.
    Stored,
    /// It completed a message, now in the inbox.
    Delivered(Delivery),
    /// Already held or already delivered.
    Duplicate,
    /// A report was put in the inbox.
    Reported,
    /// Unreadable, and already reported.
    Dropped,
}

/// A message put in the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Delivery {
    /// Its inbox id.
    pub inbox_id: u64,
    /// Its size in bytes (as delivered, with our header fields).
    pub size: u64,
    /// The sender's identity key.
    pub sender: [u8; 32],
}

/// Incoming reassembly state, mirrored in the store.
pub(super) struct Incoming {
    partial: HashMap<ReassemblyKey, PartialMessage>,
    delivered: HashSet<ReassemblyKey>,
    max_blocks: u16,
    /// Undecryptable blocks within this window of the last such report are
    /// recorded without a new report (a multi-block message makes one).
    coalesce: Duration,
    last_undecryptable: Option<Instant>,
}

fn partial_key(k: &ReassemblyKey, block_id: u16) -> Vec<u8> {
    let mut v = k.to_bytes().to_vec();
    v.extend_from_slice(&block_id.to_be_bytes());
    v
}

fn report_key(prefix: &[u8], id: &[u8]) -> Vec<u8> {
    let mut v = prefix.to_vec();
    v.extend_from_slice(id);
    v
}

impl Incoming {
    /// Loads partial messages and dedup records from the store and delivers
    /// any message whose blocks were all stored before a crash.
    pub(super) fn load(
        store: &Store,
        max_blocks: u16,
        coalesce: Duration,
        account: &str,
    ) -> Result<Self, EngineError> {
        let mut me = Incoming {
            partial: HashMap::new(),
            delivered: HashSet::new(),
            max_blocks,
            coalesce,
            last_undecryptable: None,
        };
        // Dedup values: `time` once delivered; `time ‖ SHA-256 of the
        // delivered bytes` while a delivery is in progress (see `complete`).
        let mut pending = Vec::new();
        for (k, v) in store.kv_list(KvTable::Dedup)? {
            if let Ok(b) = <[u8; ReassemblyKey::LENGTH]>::try_from(k.as_slice()) {
                let key = ReassemblyKey::from_bytes(&b);
                match v.len() {
                    PENDING_LEN => pending.push((key, v[8..].to_vec())),
                    _ => {
                        me.delivered.insert(key);
                    }
                }
            }
        }
        for (k, v) in store.kv_list(KvTable::Partial)? {
            let parsed = (k.len() == PARTIAL_KEY_LEN && v.len() > 8)
                .then(|| {
                    let rk: [u8; ReassemblyKey::LENGTH] =
                        k[..ReassemblyKey::LENGTH].try_into().ok()?;
                    let first_seen = u64::from_be_bytes(v[..8].try_into().ok()?);
                    Some((
                        ReassemblyKey::from_bytes(&rk),
                        first_seen,
                        Block::decode(&v[8..]).ok()?,
                    ))
                })
                .flatten();
            let Some((rk, first_seen, block)) = parsed else {
                store.kv_remove(KvTable::Partial, &k)?;
                continue;
            };
            if me.delivered.contains(&rk) {
                store.kv_remove(KvTable::Partial, &k)?;
                continue;
            }
            match me.partial.get_mut(&rk) {
                Some(p) => {
                    let _ = p.add(block);
                }
                None => {
                    if let Ok(p) = PartialMessage::new(block, first_seen) {
                        me.partial.insert(rk, p);
                    }
                }
            }
        }
        if !pending.is_empty() {
            me.resolve_pending(store, &pending)?;
        }
        let complete: Vec<ReassemblyKey> = me
            .partial
            .iter()
            .filter(|(_, p)| p.is_complete())
            .map(|(k, _)| *k)
            .collect();
        for k in complete {
            me.complete(store, k, account)?;
        }
        Ok(me)
    }

    /// Handles one retrieved user payload. Returns only after everything it
    /// implies is durable.
    pub(super) fn accept(
        &mut self,
        store: &Store,
        identity_private: &[u8; 32],
        payload: &[u8],
        account: &str,
    ) -> Result<Received, EngineError> {
        let (plain, sender) = match open_block(identity_private, payload) {
            Ok(x) => x,
            Err(_) => {
                // Retransmissions carry identical ciphertexts: one report per ciphertext.
                let id = Sha256::digest(payload);
                let key = report_key(b"undecryptable/", &id);
                if self
                    .last_undecryptable
                    .is_some_and(|t| t.elapsed() < self.coalesce)
                {
                    store.kv_put(KvTable::Meta, &key, &unix_now().to_be_bytes())?;
                    return Ok(Received::Dropped);
                }
                self.last_undecryptable = Some(Instant::now());
                return self.report_once(store, &key, account, "it could not be decrypted", None);
            }
        };
        let block = match Block::decode(&plain) {
            Ok(b) if b.total_blocks <= self.max_blocks => b,
            Ok(_) => {
                let id = [&sender[..], &plain[..16]].concat();
                return self.report_once(
                    store,
                    &report_key(b"toolarge/", &id),
                    account,
                    "it is larger than allowed",
                    Some(&sender),
                );
            }
            Err(_) => {
                let id = [&sender[..], &plain[..16.min(plain.len())]].concat();
                return self.report_once(
                    store,
                    &report_key(b"malformed/", &id),
                    account,
                    "it is malformed",
                    Some(&sender),
                );
            }
        };
        let key = ReassemblyKey {
            sender,
            message_id: block.message_id,
        };
        if self.delivered.contains(&key) {
            return Ok(Received::Duplicate);
        }
        if self
            .partial
            .get(&key)
            .is_some_and(|p| p.contains(block.block_id))
        {
            return Ok(Received::Duplicate);
        }
        let now = unix_now();
        let first_seen = self.partial.get(&key).map_or(now, |p| p.first_seen());
        let encoded = block
            .encode()
            .map_err(|e| EngineError::Protocol(format!("block: {e}")))?;
        let mut v = first_seen.to_be_bytes().to_vec();
        v.extend_from_slice(&encoded);
        let block_id = block.block_id;
        let outcome = match self.partial.get_mut(&key) {
            Some(p) => p.add(block),
            None => PartialMessage::new(block, now).map(|p| {
                let s = if p.is_complete() {
                    AddOutcome::Complete
                } else {
                    AddOutcome::Stored {
                        have: 1,
                        total: p.total_blocks(),
                    }
                };
                self.partial.insert(key, p);
                s
            }),
        };
        match outcome {
            Err(_) => {
                let id = [&sender[..], &key.message_id[..]].concat();
                self.report_once(
                    store,
                    &report_key(b"inconsistent/", &id),
                    account,
                    "its blocks are inconsistent",
                    Some(&sender),
                )
            }
            Ok(AddOutcome::Duplicate) => Ok(Received::Duplicate),
            Ok(AddOutcome::Stored { .. }) => {
                store.kv_put(KvTable::Partial, &partial_key(&key, block_id), &v)?;
                Ok(Received::Stored)
            }
            Ok(AddOutcome::Complete) => {
                store.kv_put(KvTable::Partial, &partial_key(&key, block_id), &v)?;
                match self.complete(store, key, account)? {
                    Some(d) => Ok(Received::Delivered(d)),
                    None => Ok(Received::Duplicate),
                }
            }
        }
    }

    /// Drops incomplete messages whose first block arrived more than `limit`
    /// ago, with one report each. Returns how many were dropped.
    pub(super) fn sweep(
        &mut self,
        store: &Store,
        limit: Duration,
        account: &str,
    ) -> Result<usize, EngineError> {
        let now = unix_now();
        let old: Vec<ReassemblyKey> = self
            .partial
            .iter()
            .filter(|(_, p)| now.saturating_sub(p.first_seen()) >= limit.as_secs())
            .map(|(k, _)| *k)
            .collect();
        for k in &old {
            let Some(p) = self.partial.remove(k) else {
                continue;
            };
            let what = format!(
                "only {} of its {} blocks arrived in time",
                p.have(),
                p.total_blocks()
            );
            let id = [&k.sender[..], &k.message_id[..]].concat();
            self.report_once(
                store,
                &report_key(b"timeout/", &id),
                account,
                &what,
                Some(&k.sender),
            )?;
            for i in 0..p.total_blocks() {
                store.kv_remove(KvTable::Partial, &partial_key(k, i))?;
            }
        }
        Ok(old.len())
    }

    /// Delivers a complete message, records it as delivered, drops its blocks.
    fn complete(
        &mut self,
        store: &Store,
        key: ReassemblyKey,
        _account: &str,
    ) -> Result<Option<Delivery>, EngineError> {
        let Some(p) = self.partial.remove(&key) else {
            return Ok(None);
        };
        let total = p.total_blocks();
        let message = p
            .assemble()
            .map_err(|e| EngineError::Protocol(format!("reassembly: {e}")))?;
        let now = unix_now();
        let bytes = reports::with_sender_header(&message, &key.sender);
        // Crash safety without a multi-record transaction: mark the delivery
        // pending (with the bytes' hash), deliver, then mark it done. A crash
        // in between is resolved on load by looking for the hash in the inbox.
        let mut pending = now.to_be_bytes().to_vec();
        pending.extend_from_slice(&Sha256::digest(&bytes));
        store.kv_put(KvTable::Dedup, &key.to_bytes(), &pending)?;
        let entry = store.deliver(&bytes, now)?;
        self.mark_delivered(store, key, total)?;
        tracing::info!(blocks = total, "incoming message delivered");
        Ok(Some(Delivery {
            inbox_id: entry.id,
            size: bytes.len() as u64,
            sender: key.sender,
        }))
    }

    /// Records `key` as delivered and drops its stored blocks.
    fn mark_delivered(
        &mut self,
        store: &Store,
        key: ReassemblyKey,
        total: u16,
    ) -> Result<(), EngineError> {
        store.kv_put(KvTable::Dedup, &key.to_bytes(), &unix_now().to_be_bytes())?;
        self.delivered.insert(key);
        for i in 0..total {
            store.kv_remove(KvTable::Partial, &partial_key(&key, i))?;
        }
        Ok(())
    }

    /// Deliveries interrupted by a crash: done if the inbox holds the bytes,
    /// otherwise left to be delivered again from the stored blocks.
    fn resolve_pending(
        &mut self,
        store: &Store,
        pending: &[(ReassemblyKey, Vec<u8>)],
    ) -> Result<(), EngineError> {
        let mut in_inbox = HashSet::new();
        for e in store.inbox_list()? {
            let m = store.read_message(e.message.blob)?;
            in_inbox.insert(Sha256::digest(&m).to_vec());
        }
        for (key, hash) in pending {
            if in_inbox.contains(hash) {
                let total = self.partial.remove(key).map_or(0, |p| p.total_blocks());
                self.mark_delivered(store, *key, total)?;
            } else {
                store.kv_remove(KvTable::Dedup, &key.to_bytes())?;
            }
        }
        Ok(())
    }

    fn report_once(
        &mut self,
        store: &Store,
        key: &[u8],
        account: &str,
        what: &str,
        sender: Option<&[u8; 32]>,
    ) -> Result<Received, EngineError> {
        if store.kv_get(KvTable::Meta, key)?.is_some() {
            return Ok(Received::Dropped);
        }
        let now = unix_now();
        store.deliver(&reports::unreadable(account, what, sender, now), now)?;
        store.kv_put(KvTable::Meta, key, &now.to_be_bytes())?;
        tracing::warn!(reason = what, "incoming block dropped, report delivered");
        Ok(Received::Reported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{KeySource, StorageKey};
    use katzenpost::block::{encrypt_block, fragment, seal_block};
    use katzenpost::geometry::{BLOCK_LENGTH, BLOCK_PAYLOAD_LENGTH};

    const BOB: [u8; 32] = [0xb0; 32];
    const ALICE: [u8; 32] = [0xa1; 32];
    const ACCOUNT: &str = "bob@provider2";

    fn open(dir: &std::path::Path) -> Store {
        Store::open(dir, &KeySource::Raw(StorageKey::from_bytes([5; 32]))).unwrap()
    }

    fn load(store: &Store) -> Incoming {
        Incoming::load(store, 1000, Duration::from_secs(60), ACCOUNT).unwrap()
    }

    fn ciphertexts(msg: &[u8], id: u8) -> Vec<Vec<u8>> {
        let bob_pub = katzenpost::sphinx::public_key(&BOB);
        fragment([id; 16], msg)
            .unwrap()
            .iter()
            .map(|b| encrypt_block(&ALICE, &bob_pub, b).unwrap())
            .collect()
    }

    fn inbox(store: &Store) -> Vec<Vec<u8>> {
        store
            .inbox_list()
            .unwrap()
            .iter()
            .map(|e| store.read_message(e.message.blob).unwrap())
            .collect()
    }

    #[test]
    fn blocks_reassemble_in_any_order_and_duplicates_are_dropped_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let msg = vec![b'x'; 2 * BLOCK_PAYLOAD_LENGTH + 10];
        let cts = ciphertexts(&msg, 1);
        assert_eq!(cts.len(), 3);
        {
            let store = open(dir.path());
            let mut inc = load(&store);
            assert_eq!(
                inc.accept(&store, &BOB, &cts[2], ACCOUNT).unwrap(),
                Received::Stored
            );
            assert_eq!(
                inc.accept(&store, &BOB, &cts[2], ACCOUNT).unwrap(),
                Received::Duplicate
            );
            assert_eq!(
                inc.accept(&store, &BOB, &cts[0], ACCOUNT).unwrap(),
                Received::Stored
            );
        }
        // Restart with two blocks stored: the third completes the message.
        let store = open(dir.path());
        let mut inc = load(&store);
        assert_eq!(store.kv_list(KvTable::Partial).unwrap().len(), 2);
        let r = inc.accept(&store, &BOB, &cts[1], ACCOUNT).unwrap();
        let Received::Delivered(d) = r else {
            panic!("expected a delivery, got {r:?}");
        };
        let alice_pub = katzenpost::sphinx::public_key(&ALICE);
        assert_eq!(d.sender, alice_pub);
        assert_eq!(store.inbox_list().unwrap()[0].id, d.inbox_id);
        assert_eq!(
            inbox(&store),
            vec![reports::with_sender_header(&msg, &alice_pub)]
        );
        assert_eq!(d.size, inbox(&store)[0].len() as u64);
        assert!(store.kv_list(KvTable::Partial).unwrap().is_empty());
        drop(inc);
        drop(store);
        // After another restart a retransmitted block is still recognised.
        let store = open(dir.path());
        let mut inc = load(&store);
        assert_eq!(
            inc.accept(&store, &BOB, &cts[0], ACCOUNT).unwrap(),
            Received::Duplicate
        );
        assert_eq!(store.inbox_len().unwrap(), 1);
    }

    #[test]
    fn a_message_completed_before_a_crash_is_delivered_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let cts = ciphertexts(b"Subject: s\r\n\r\nhi", 2);
        // Simulate "stored but not yet delivered": write the partial record directly.
        let (plain, sender) = open_block(&BOB, &cts[0]).unwrap();
        let block = Block::decode(&plain).unwrap();
        let key = ReassemblyKey {
            sender,
            message_id: block.message_id,
        };
        let mut v = 7u64.to_be_bytes().to_vec();
        v.extend_from_slice(&plain);
        store
            .kv_put(KvTable::Partial, &partial_key(&key, 0), &v)
            .unwrap();
        let _inc = load(&store);
        assert_eq!(store.inbox_len().unwrap(), 1);
        assert!(store.kv_list(KvTable::Partial).unwrap().is_empty());
    }

    /// Writes the state a crash leaves between "delivery pending" and "done".
    fn crashed_mid_delivery(store: &Store, delivered: bool) -> Vec<u8> {
        let cts = ciphertexts(b"Subject: s\r\n\r\ncrash", 5);
        let (plain, sender) = open_block(&BOB, &cts[0]).unwrap();
        let block = Block::decode(&plain).unwrap();
        let key = ReassemblyKey {
            sender,
            message_id: block.message_id,
        };
        let mut v = 7u64.to_be_bytes().to_vec();
        v.extend_from_slice(&plain);
        store
            .kv_put(KvTable::Partial, &partial_key(&key, 0), &v)
            .unwrap();
        let bytes = reports::with_sender_header(&block.payload, &sender);
        let mut pending = 7u64.to_be_bytes().to_vec();
        pending.extend_from_slice(&Sha256::digest(&bytes));
        store
            .kv_put(KvTable::Dedup, &key.to_bytes(), &pending)
            .unwrap();
        if delivered {
            store.deliver(&bytes, 7).unwrap();
        }
        bytes
    }

    #[test]
    fn a_crash_after_delivery_does_not_deliver_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let bytes = crashed_mid_delivery(&store, true);
        let mut inc = load(&store);
        assert_eq!(inbox(&store), vec![bytes]);
        assert!(store.kv_list(KvTable::Partial).unwrap().is_empty());
        let dedup = store.kv_list(KvTable::Dedup).unwrap();
        assert_eq!(dedup.len(), 1);
        assert_eq!(dedup[0].1.len(), 8, "marked done");
        let cts = ciphertexts(b"Subject: s\r\n\r\ncrash", 5);
        // A fresh encryption of the same message id from the same sender.
        assert_eq!(
            inc.accept(&store, &BOB, &cts[0], ACCOUNT).unwrap(),
            Received::Duplicate
        );
    }

    #[test]
    fn a_crash_before_delivery_delivers_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let bytes = crashed_mid_delivery(&store, false);
        let _inc = load(&store);
        assert_eq!(inbox(&store), vec![bytes]);
        assert!(store.kv_list(KvTable::Partial).unwrap().is_empty());
        assert_eq!(store.kv_list(KvTable::Dedup).unwrap()[0].1.len(), 8);
    }

    #[test]
    fn unreadable_blocks_give_one_report_each_message() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut inc = load(&store);
        let garbage = vec![0x42u8; katzenpost::geometry::USER_FORWARD_PAYLOAD_LENGTH];
        assert_eq!(
            inc.accept(&store, &BOB, &garbage, ACCOUNT).unwrap(),
            Received::Reported
        );
        assert_eq!(
            inc.accept(&store, &BOB, &garbage, ACCOUNT).unwrap(),
            Received::Dropped
        );
        // Another undecryptable block within the window: coalesced.
        let other = vec![0x43u8; katzenpost::geometry::USER_FORWARD_PAYLOAD_LENGTH];
        assert_eq!(
            inc.accept(&store, &BOB, &other, ACCOUNT).unwrap(),
            Received::Dropped
        );
        assert_eq!(store.inbox_len().unwrap(), 1);

        // Decrypts, but the block is malformed (block id >= total): one report
        // per (sender, message id), even for several blocks.
        let bob_pub = katzenpost::sphinx::public_key(&BOB);
        let mut plain = vec![0u8; BLOCK_LENGTH];
        plain[..16].copy_from_slice(&[9; 16]);
        plain[16..18].copy_from_slice(&1u16.to_be_bytes());
        plain[18..20].copy_from_slice(&5u16.to_be_bytes());
        let bad1 = seal_block(&ALICE, &bob_pub, &plain).unwrap();
        plain[18..20].copy_from_slice(&6u16.to_be_bytes());
        let bad2 = seal_block(&ALICE, &bob_pub, &plain).unwrap();
        assert_eq!(
            inc.accept(&store, &BOB, &bad1, ACCOUNT).unwrap(),
            Received::Reported
        );
        assert_eq!(
            inc.accept(&store, &BOB, &bad2, ACCOUNT).unwrap(),
            Received::Dropped
        );
        let reports = inbox(&store);
        assert_eq!(reports.len(), 2);
        let text = String::from_utf8(reports[1].clone()).unwrap();
        assert!(text.contains("malformed"), "{text}");
    }

    #[test]
    fn stale_partial_messages_are_dropped_with_a_report() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut inc = load(&store);
        let cts = ciphertexts(&vec![1u8; 2 * BLOCK_PAYLOAD_LENGTH], 4);
        assert_eq!(
            inc.accept(&store, &BOB, &cts[0], ACCOUNT).unwrap(),
            Received::Stored
        );
        assert_eq!(
            inc.sweep(&store, Duration::from_secs(3600), ACCOUNT)
                .unwrap(),
            0
        );
        assert_eq!(inc.sweep(&store, Duration::ZERO, ACCOUNT).unwrap(), 1);
        assert!(store.kv_list(KvTable::Partial).unwrap().is_empty());
        let reports = inbox(&store);
        assert_eq!(reports.len(), 1);
        assert!(String::from_utf8_lossy(&reports[0]).contains("only 1 of its 2 blocks"));
    }

    #[test]
    fn oversized_messages_are_refused_with_a_report() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut inc = Incoming::load(&store, 2, Duration::from_secs(60), ACCOUNT).unwrap();
        let cts = ciphertexts(&vec![1u8; 3 * BLOCK_PAYLOAD_LENGTH], 3);
        assert_eq!(
            inc.accept(&store, &BOB, &cts[0], ACCOUNT).unwrap(),
            Received::Reported
        );
        assert_eq!(
            inc.accept(&store, &BOB, &cts[1], ACCOUNT).unwrap(),
            Received::Dropped
        );
        assert!(store.kv_list(KvTable::Partial).unwrap().is_empty());
    }
}
