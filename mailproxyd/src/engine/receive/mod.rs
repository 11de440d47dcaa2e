//! Receiving: decrypting retrieved blocks, persisting each one (KvTable::Partial)
//! before the provider is told to drop it, reassembling by (sender key,
//! message id), deduplicating completed messages under the same key
//! (KvTable::Dedup) and delivering to the inbox.
//!
//! Durable before visible: every change is committed to the store first and
//! only then recorded in memory, so a failed write leaves memory as the disk
//! is and the block is fetched again (the caller does not advance the
//! provider's retrieval sequence after an error). The blocks of partial
//! messages stay on disk; memory holds only their index ([`partials`]),
//! bounded per sender and in total.

mod partials;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use katzenpost::block::{assemble, open_block, Block, ReassemblyKey};
use sha2::{Digest, Sha256};

pub use partials::PartialLimits;
use partials::Partials;

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
    /// Unreadable and already reported, or refused at a limit.
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

/// Incoming reassembly state; memory mirrors the store and never leads it.
pub(super) struct Incoming {
    partials: Partials,
    /// Delivered messages and when (Unix seconds); expired by `expire_dedup`.
    delivered: HashMap<ReassemblyKey, u64>,
    max_blocks: u16,
    /// Within this window of the last such report, undecryptable blocks and
    /// partial messages dropped at a limit make no new report.
    coalesce: Duration,
    last_undecryptable: Option<Instant>,
    /// Partial messages dropped at a limit and not reported yet.
    dropped_unreported: u64,
    last_drop_report: Option<Instant>,
    /// Reports put in the inbox since [`Incoming::take_reports`].
    reports: usize,
}

fn partial_key(k: &ReassemblyKey, block_id: u16) -> Vec<u8> {
    let mut v = k.to_bytes().to_vec();
    v.extend_from_slice(&block_id.to_be_bytes());
    v
}

/// A stored partial record: (message, block id, first seen, block).
fn parse_partial(k: &[u8], v: &[u8]) -> Option<(ReassemblyKey, u16, u64, Block)> {
    if k.len() != PARTIAL_KEY_LEN || v.len() <= 8 {
        return None;
    }
    let rk: [u8; ReassemblyKey::LENGTH] = k[..ReassemblyKey::LENGTH].try_into().ok()?;
    let block_id = u16::from_be_bytes(k[ReassemblyKey::LENGTH..].try_into().ok()?);
    let first_seen = u64::from_be_bytes(v[..8].try_into().ok()?);
    let block = Block::decode(&v[8..]).ok()?;
    let key = ReassemblyKey::from_bytes(&rk);
    (block.block_id == block_id && block.message_id == key.message_id)
        .then_some((key, block_id, first_seen, block))
}

/// The inbox by SHA-256 of each message: (id, size). To find a delivery
/// that a crash or a failed write left unrecorded.
fn in_inbox(store: &Store) -> Result<HashMap<Vec<u8>, (u64, u64)>, EngineError> {
    let mut out = HashMap::new();
    for e in store.inbox_list()? {
        let m = store.read_message(e.message.blob)?;
        out.insert(Sha256::digest(&m).to_vec(), (e.id, m.len() as u64));
    }
    Ok(out)
}

fn report_key(prefix: &[u8], id: &[u8]) -> Vec<u8> {
    let mut v = prefix.to_vec();
    v.extend_from_slice(id);
    v
}

impl Incoming {
    /// Loads the partial-message index and dedup records from the store and
    /// delivers any message whose blocks were all stored before a crash.
    pub(super) fn load(
        store: &Store,
        max_blocks: u16,
        coalesce: Duration,
        limits: PartialLimits,
        account: &str,
    ) -> Result<Self, EngineError> {
        let mut me = Incoming {
            partials: Partials::new(limits),
            delivered: HashMap::new(),
            max_blocks,
            coalesce,
            last_undecryptable: None,
            dropped_unreported: 0,
            last_drop_report: None,
            reports: 0,
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
                        let at = v
                            .get(..8)
                            .and_then(|t| t.try_into().ok())
                            .map_or(0, u64::from_be_bytes);
                        me.delivered.insert(key, at);
                    }
                }
            }
        }
        // One record at a time: the blocks are never all in memory.
        let mut stale = Vec::new();
        store.kv_for_each(KvTable::Partial, |k, v| {
            match parse_partial(&k, &v) {
                Some((rk, _, _, _)) if me.delivered.contains_key(&rk) => stale.push(k),
                Some((rk, _, _, b))
                    if me
                        .partials
                        .get(&rk)
                        .is_some_and(|e| e.total != b.total_blocks) =>
                {
                    stale.push(k)
                }
                Some((rk, id, first_seen, b)) => {
                    me.partials.insert(rk, id, b.total_blocks, first_seen)
                }
                None => stale.push(k),
            }
            Ok(())
        })?;
        store.kv_remove_many(KvTable::Partial, &stale)?;
        if !pending.is_empty() {
            me.resolve_pending(store, &pending)?;
        }
        me.retry_deliveries(store, account)?;
        Ok(me)
    }

    /// Reports put in the inbox since the last call (for events).
    pub(super) fn take_reports(&mut self) -> usize {
        std::mem::take(&mut self.reports)
    }

    /// How many partial messages are held, and their stored bytes.
    pub(super) fn partial_usage(&self) -> (usize, u64) {
        (self.partials.len(), self.partials.bytes())
    }

    /// Handles one retrieved user payload. Returns only after everything it
    /// implies is durable; after an error nothing of it is in memory that is
    /// not on disk, and the same payload may be handed in again.
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
                    store.kv_put(KvTable::Reports, &key, &unix_now().to_be_bytes())?;
                    return Ok(Received::Dropped);
                }
                let r =
                    self.report_once(store, &key, account, "it could not be decrypted", None)?;
                self.last_undecryptable = Some(Instant::now());
                return Ok(r);
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
        if self.delivered.contains_key(&key) {
            return Ok(Received::Duplicate);
        }
        if let Some(e) = self.partials.get(&key) {
            if e.total != block.total_blocks {
                let id = [&sender[..], &key.message_id[..]].concat();
                return self.report_once(
                    store,
                    &report_key(b"inconsistent/", &id),
                    account,
                    "its blocks are inconsistent",
                    Some(&sender),
                );
            }
            if e.have.contains(&block.block_id) {
                // Held already. If it completed its message but the delivery
                // failed, deliver now.
                if e.is_complete() {
                    return self.deliver(store, key, account);
                }
                return Ok(Received::Duplicate);
            }
        }
        // Make room within the limits: drop the oldest partial messages.
        let victims = self.partials.victims(&key);
        let refused = victims.contains(&key);
        for v in &victims {
            self.drop_partial(store, v)?;
            self.dropped_unreported += 1;
        }
        if refused {
            self.flush_drop_report(store, account)?;
            return Ok(Received::Dropped);
        }
        let now = unix_now();
        let first_seen = self.partials.get(&key).map_or(now, |e| e.first_seen);
        let encoded = block
            .encode()
            .map_err(|e| EngineError::Protocol(format!("block: {e}")))?;
        let mut v = first_seen.to_be_bytes().to_vec();
        v.extend_from_slice(&encoded);
        store.kv_put(KvTable::Partial, &partial_key(&key, block.block_id), &v)?;
        self.partials
            .insert(key, block.block_id, block.total_blocks, first_seen);
        if !victims.is_empty() {
            self.flush_drop_report(store, account)?;
        }
        if self.partials.get(&key).is_some_and(|e| e.is_complete()) {
            return self.deliver(store, key, account);
        }
        Ok(Received::Stored)
    }

    /// [`Incoming::complete`] as what happened to the block that completed
    /// the message.
    fn deliver(
        &mut self,
        store: &Store,
        key: ReassemblyKey,
        account: &str,
    ) -> Result<Received, EngineError> {
        Ok(match self.complete(store, key, account)? {
            Some(d) => Received::Delivered(d),
            None => Received::Duplicate,
        })
    }

    /// Drops incomplete messages whose first block arrived more than `limit`
    /// ago, with one report each; reports partial messages dropped at a limit
    /// once the coalescing window allows; retries deliveries that failed.
    /// Returns how many messages timed out.
    pub(super) fn sweep(
        &mut self,
        store: &Store,
        limit: Duration,
        account: &str,
    ) -> Result<usize, EngineError> {
        let old = self
            .partials
            .first_seen_by(unix_now().saturating_sub(limit.as_secs()));
        let mut timed_out = 0;
        for k in &old {
            let Some(e) = self.partials.get(k) else {
                continue;
            };
            if e.is_complete() {
                continue;
            }
            timed_out += 1;
            let what = format!(
                "only {} of its {} blocks arrived in time",
                e.have.len(),
                e.total
            );
            let id = [&k.sender[..], &k.message_id[..]].concat();
            self.report_once(
                store,
                &report_key(b"timeout/", &id),
                account,
                &what,
                Some(&k.sender),
            )?;
            self.drop_partial(store, k)?;
        }
        self.flush_drop_report(store, account)?;
        self.retry_deliveries(store, account)?;
        Ok(timed_out)
    }

    /// Forgets "delivered" records older than `ttl` (see
    /// [`super::Timings::dedup_ttl`] for why that is safe). Returns how many.
    pub(super) fn expire_dedup(
        &mut self,
        store: &Store,
        ttl: Duration,
    ) -> Result<usize, EngineError> {
        let now = unix_now();
        let old: Vec<ReassemblyKey> = self
            .delivered
            .iter()
            .filter(|(_, &at)| now.saturating_sub(at) >= ttl.as_secs())
            .map(|(k, _)| *k)
            .collect();
        for k in &old {
            store.kv_remove(KvTable::Dedup, &k.to_bytes())?;
            self.delivered.remove(k);
        }
        Ok(old.len())
    }

    /// Forgets "already reported" markers older than `ttl` (the same bound
    /// as delivered-message records: a retransmission of a reported message
    /// cannot arrive later). Without this, anyone who knows the address
    /// could grow the store without bound with distinct garbage blocks.
    pub(super) fn expire_reports(store: &Store, ttl: Duration) -> Result<usize, EngineError> {
        let now = unix_now();
        let mut old = Vec::new();
        store.kv_for_each(KvTable::Reports, |k, v| {
            let at = v
                .get(..8)
                .and_then(|t| t.try_into().ok())
                .map_or(0, u64::from_be_bytes);
            if now.saturating_sub(at) >= ttl.as_secs() {
                old.push(k);
            }
            Ok(())
        })?;
        Ok(store.kv_remove_many(KvTable::Reports, &old)?)
    }

    /// Removes a partial message's blocks from the store, then from the index.
    fn drop_partial(&mut self, store: &Store, key: &ReassemblyKey) -> Result<(), EngineError> {
        let Some(e) = self.partials.get(key) else {
            return Ok(());
        };
        let keys: Vec<Vec<u8>> = e.have.iter().map(|&i| partial_key(key, i)).collect();
        store.kv_remove_many(KvTable::Partial, &keys)?;
        self.partials.remove(key);
        Ok(())
    }

    /// Delivers every complete message still held (its delivery failed).
    fn retry_deliveries(&mut self, store: &Store, account: &str) -> Result<(), EngineError> {
        for k in self.partials.complete() {
            self.complete(store, k, account)?;
        }
        Ok(())
    }

    /// One report for the partial messages dropped at a limit since the last
    /// one, unless one was made within the coalescing window.
    fn flush_drop_report(&mut self, store: &Store, account: &str) -> Result<(), EngineError> {
        if self.dropped_unreported == 0
            || self
                .last_drop_report
                .is_some_and(|t| t.elapsed() < self.coalesce)
        {
            return Ok(());
        }
        let n = self.dropped_unreported;
        let now = unix_now();
        store.deliver(&reports::partials_dropped(account, n, now), now)?;
        self.dropped_unreported = 0;
        self.last_drop_report = Some(Instant::now());
        self.reports += 1;
        tracing::warn!(
            account,
            dropped = n,
            "incomplete incoming messages dropped at the limits, report delivered"
        );
        Ok(())
    }

    /// Delivers a complete message, records it as delivered, drops its
    /// blocks. `None` if it was delivered already or could not be assembled
    /// (then it is dropped with a report).
    fn complete(
        &mut self,
        store: &Store,
        key: ReassemblyKey,
        account: &str,
    ) -> Result<Option<Delivery>, EngineError> {
        let Some(e) = self.partials.get(&key) else {
            return Ok(None);
        };
        if self.delivered.contains_key(&key) {
            // Delivered, but dropping the blocks failed: drop them now.
            self.drop_partial(store, &key)?;
            return Ok(None);
        }
        // An earlier attempt may have delivered and then failed to record
        // it: its pending mark names the bytes it delivered.
        if let Some(v) = store.kv_get(KvTable::Dedup, &key.to_bytes())? {
            if v.len() == PENDING_LEN {
                if let Some(&(inbox_id, size)) = in_inbox(store)?.get(&v[8..]) {
                    self.mark_delivered(store, key)?;
                    return Ok(Some(Delivery {
                        inbox_id,
                        size,
                        sender: key.sender,
                    }));
                }
            }
        }
        let ids: Vec<u16> = e.have.iter().copied().collect();
        let mut blocks = Vec::with_capacity(ids.len());
        for &i in &ids {
            let stored = store.kv_get(KvTable::Partial, &partial_key(&key, i))?;
            if let Some((_, _, _, b)) =
                stored.and_then(|v| parse_partial(&partial_key(&key, i), &v))
            {
                blocks.push(b);
            }
        }
        let message = match assemble(&blocks) {
            Ok(m) => m,
            Err(err) => {
                tracing::warn!(error = %err, "stored blocks do not assemble");
                let id = [&key.sender[..], &key.message_id[..]].concat();
                self.report_once(
                    store,
                    &report_key(b"inconsistent/", &id),
                    account,
                    "its blocks are inconsistent",
                    Some(&key.sender),
                )?;
                self.drop_partial(store, &key)?;
                return Ok(None);
            }
        };
        drop(blocks);
        let now = unix_now();
        let bytes = reports::with_delivery_headers(&message, &key.sender, account, now);
        // Crash safety without a multi-record transaction: mark the delivery
        // pending (with the bytes' hash), deliver, then mark it done. A crash
        // in between is resolved on load by looking for the hash in the inbox.
        let mut pending = now.to_be_bytes().to_vec();
        pending.extend_from_slice(&Sha256::digest(&bytes));
        store.kv_put(KvTable::Dedup, &key.to_bytes(), &pending)?;
        let entry = store.deliver(&bytes, now)?;
        self.mark_delivered(store, key)?;
        tracing::info!(blocks = ids.len(), "incoming message delivered");
        Ok(Some(Delivery {
            inbox_id: entry.id,
            size: bytes.len() as u64,
            sender: key.sender,
        }))
    }

    /// Records `key` as delivered and drops its stored blocks, in one commit.
    fn mark_delivered(&mut self, store: &Store, key: ReassemblyKey) -> Result<(), EngineError> {
        let now = unix_now();
        let blocks: Vec<(KvTable, Vec<u8>)> = self
            .partials
            .get(&key)
            .map(|e| {
                e.have
                    .iter()
                    .map(|&i| (KvTable::Partial, partial_key(&key, i)))
                    .collect()
            })
            .unwrap_or_default();
        store.kv_batch(
            &[(KvTable::Dedup, &key.to_bytes(), &now.to_be_bytes())],
            &blocks,
        )?;
        self.delivered.insert(key, now);
        self.partials.remove(&key);
        Ok(())
    }

    /// Deliveries interrupted by a crash: done if the inbox holds the bytes,
    /// otherwise left to be delivered again from the stored blocks.
    fn resolve_pending(
        &mut self,
        store: &Store,
        pending: &[(ReassemblyKey, Vec<u8>)],
    ) -> Result<(), EngineError> {
        let in_inbox = in_inbox(store)?;
        for (key, hash) in pending {
            if in_inbox.contains_key(hash) {
                self.mark_delivered(store, *key)?;
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
        if store.kv_get(KvTable::Reports, key)?.is_some() {
            return Ok(Received::Dropped);
        }
        let now = unix_now();
        store.deliver(&reports::unreadable(account, what, sender, now), now)?;
        self.reports += 1;
        // A failure here only means the same block may be reported again.
        store.kv_put(KvTable::Reports, key, &now.to_be_bytes())?;
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
        Incoming::load(
            store,
            1000,
            Duration::from_secs(60),
            PartialLimits::default(),
            ACCOUNT,
        )
        .unwrap()
    }

    fn ciphertexts(msg: &[u8], id: u8) -> Vec<Vec<u8>> {
        ciphertexts_from(&ALICE, msg, id)
    }

    fn ciphertexts_from(sender: &[u8; 32], msg: &[u8], id: u8) -> Vec<Vec<u8>> {
        let bob_pub = katzenpost::sphinx::public_key(&BOB);
        fragment([id; 16], msg)
            .unwrap()
            .iter()
            .map(|b| encrypt_block(sender, &bob_pub, b).unwrap())
            .collect()
    }

    fn load_with(store: &Store, limits: PartialLimits) -> Incoming {
        Incoming::load(store, 1000, Duration::from_secs(3600), limits, ACCOUNT).unwrap()
    }

    fn subjects(store: &Store) -> Vec<String> {
        inbox(store)
            .iter()
            .filter_map(|m| {
                String::from_utf8_lossy(m)
                    .lines()
                    .find_map(|l| l.strip_prefix("Subject: ").map(str::to_owned))
            })
            .collect()
    }

    const TWO_BLOCKS: usize = BLOCK_PAYLOAD_LENGTH + 1;

    #[test]
    fn a_flood_from_one_sender_drops_its_oldest_with_one_report() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let limits = PartialLimits {
            messages: 100,
            bytes: u64::MAX,
            messages_per_sender: 3,
            bytes_per_sender: u64::MAX,
        };
        let mut inc = load_with(&store, limits);
        // An honest sender's incomplete message is not touched by another's flood.
        let honest = ciphertexts_from(&[0x77; 32], &vec![b'h'; TWO_BLOCKS], 200);
        assert_eq!(
            inc.accept(&store, &BOB, &honest[0], ACCOUNT).unwrap(),
            Received::Stored
        );
        let flood: Vec<Vec<Vec<u8>>> = (0..10)
            .map(|i| ciphertexts(&vec![b'f'; TWO_BLOCKS], i))
            .collect();
        for f in &flood {
            assert_eq!(
                inc.accept(&store, &BOB, &f[0], ACCOUNT).unwrap(),
                Received::Stored
            );
        }
        assert_eq!(
            inc.partial_usage().0,
            4,
            "3 of the flood and the honest one"
        );
        assert_eq!(store.kv_list(KvTable::Partial).unwrap().len(), 4);
        // One report, however many were dropped (coalesced for an hour).
        assert_eq!(subjects(&store), vec![reports::PARTIALS_DROPPED_SUBJECT]);
        assert!(String::from_utf8_lossy(&inbox(&store)[0]).contains("1 incomplete"));
        assert_eq!(inc.take_reports(), 1);
        // The newest of the flood and the honest message complete normally.
        for c in [&flood[9][1], &honest[1]] {
            assert!(matches!(
                inc.accept(&store, &BOB, c, ACCOUNT).unwrap(),
                Received::Delivered(_)
            ));
        }
        // A dropped message's late block starts it again (a new partial), it
        // is not mistaken for delivered.
        assert_eq!(
            inc.accept(&store, &BOB, &flood[0][1], ACCOUNT).unwrap(),
            Received::Stored
        );
        // After a restart the index is rebuilt from disk, within the bounds.
        drop(inc);
        let inc = load_with(&store, limits);
        assert_eq!(
            inc.partial_usage().0,
            store.kv_list(KvTable::Partial).unwrap().len()
        );
        assert!(inc.partial_usage().0 <= 3);
    }

    #[test]
    fn random_senders_cannot_grow_the_store_past_the_total_bound() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let limits = PartialLimits {
            messages: 5,
            bytes: 4 * partials::STORED_BLOCK_BYTES,
            messages_per_sender: 5,
            bytes_per_sender: u64::MAX,
        };
        let mut inc = load_with(&store, limits);
        for i in 0..20u8 {
            let ct = ciphertexts_from(&[i + 1; 32], &vec![b'r'; TWO_BLOCKS], i);
            assert_eq!(
                inc.accept(&store, &BOB, &ct[0], ACCOUNT).unwrap(),
                Received::Stored
            );
            let (n, bytes) = inc.partial_usage();
            assert!(n <= 4 && bytes <= limits.bytes, "{n} {bytes}");
            assert_eq!(store.kv_list(KvTable::Partial).unwrap().len(), n);
        }
        assert_eq!(subjects(&store), vec![reports::PARTIALS_DROPPED_SUBJECT]);
        assert!(String::from_utf8_lossy(&inbox(&store)[0]).contains("1 incomplete"));
        // Reports beyond the first wait for the coalescing window; a sweep
        // after it reports the rest in one.
        let mut inc = Incoming {
            coalesce: Duration::ZERO,
            ..inc
        };
        inc.sweep(&store, Duration::from_secs(3600), ACCOUNT)
            .unwrap();
        let texts: Vec<String> = inbox(&store)
            .iter()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect();
        assert_eq!(texts.len(), 2);
        assert!(texts[1].contains("15 incomplete"), "{}", texts[1]);
    }

    #[test]
    fn a_message_larger_than_the_sender_bound_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let limits = PartialLimits {
            messages: 10,
            bytes: u64::MAX,
            messages_per_sender: 10,
            bytes_per_sender: 2 * partials::STORED_BLOCK_BYTES,
        };
        let mut inc = load_with(&store, limits);
        let cts = ciphertexts(&vec![b'x'; 3 * BLOCK_PAYLOAD_LENGTH], 1);
        for c in &cts[..2] {
            assert_eq!(
                inc.accept(&store, &BOB, c, ACCOUNT).unwrap(),
                Received::Stored
            );
        }
        assert_eq!(
            inc.accept(&store, &BOB, &cts[2], ACCOUNT).unwrap(),
            Received::Dropped
        );
        assert!(store.kv_list(KvTable::Partial).unwrap().is_empty());
        assert_eq!(subjects(&store), vec![reports::PARTIALS_DROPPED_SUBJECT]);
    }

    /// The delivered bytes after our `Received:` field (which must be first).
    fn strip_received(m: &[u8]) -> Vec<u8> {
        let want = "Received: from mixnetwork.invalid (mixnetwork.invalid [127.0.0.2]) by katzenpost.localhost (Katzenpost mailproxy) with ESMTP id ";
        assert!(
            m.starts_with(want.as_bytes()),
            "{}",
            String::from_utf8_lossy(m)
        );
        let line = m.iter().position(|&b| b == b'\n').unwrap();
        assert!(String::from_utf8_lossy(&m[..line]).contains(&format!("for <{ACCOUNT}>; ")));
        m[line + 1..].to_vec()
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
            inbox(&store)
                .iter()
                .map(|m| strip_received(m))
                .collect::<Vec<_>>(),
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

    /// Waits (bounded) until the store writes again after an injected fault.
    fn wait_healthy(store: &Store) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), store.wait_healthy()).await
        })
        .expect("the store recovers by itself");
    }

    /// Receives `cts` in order as the provider hands them over: a block whose
    /// handling failed is handed over again (the retrieval sequence did not
    /// move). Returns how many deliveries were reported and how many errors.
    fn receive_all(store: &Store, inc: &mut Incoming, cts: &[Vec<u8>]) -> (usize, usize) {
        let (mut delivered, mut errors, mut i) = (0, 0, 0);
        while i < cts.len() {
            match inc.accept(store, &BOB, &cts[i], ACCOUNT) {
                Ok(Received::Delivered(_)) => {
                    delivered += 1;
                    i += 1;
                }
                Ok(_) => i += 1,
                Err(e) => {
                    errors += 1;
                    assert!(errors < 10, "no progress: {e}");
                    wait_healthy(store);
                }
            }
        }
        (delivered, errors)
    }

    /// Every fault (ENOSPC, EIO) at every write, sync and set_len of
    /// receiving a three-block message: it is delivered exactly once, byte
    /// for byte, nothing is left behind, and later copies are duplicates,
    /// also after a restart.
    #[test]
    fn every_store_fault_while_receiving_loses_and_duplicates_nothing() {
        use crate::store::{Fault, Faults, Op};
        let key = || KeySource::Raw(StorageKey::from_bytes([5; 32]));
        let msg = vec![b'm'; 2 * BLOCK_PAYLOAD_LENGTH + 10];
        let cts = ciphertexts(&msg, 9);
        let alice_pub = katzenpost::sphinx::public_key(&ALICE);
        let want = reports::with_sender_header(&msg, &alice_pub);
        // How many calls of each kind a clean reception makes.
        let used = {
            let dir = tempfile::tempdir().unwrap();
            let faults = Faults::new();
            let store = Store::open_with_faults(dir.path(), &key(), faults.clone()).unwrap();
            let mut inc = load(&store);
            let before = Op::ALL.map(|op| faults.calls(op));
            assert_eq!(receive_all(&store, &mut inc, &cts), (1, 0));
            let mut used = Op::ALL.map(|op| faults.calls(op));
            for (u, b) in used.iter_mut().zip(before) {
                *u -= b;
            }
            used
        };
        assert!(used[0] > 0 && used[1] > 0, "{used:?}");
        let mut cases = 0;
        let mut failed = 0;
        for (op, calls) in Op::ALL.into_iter().zip(used) {
            for fault in Fault::ALL {
                for n in 1..=calls + 1 {
                    cases += 1;
                    let dir = tempfile::tempdir().unwrap();
                    let faults = Faults::new();
                    let store =
                        Store::open_with_faults(dir.path(), &key(), faults.clone()).unwrap();
                    let mut inc = load(&store);
                    faults.fail_nth(op, n, fault);
                    let (delivered, errors) = receive_all(&store, &mut inc, &cts);
                    failed += usize::from(errors > 0);
                    let case = format!("{op:?} {fault:?} #{n}");
                    if op == Op::Write && n <= calls {
                        // A page that was not written fails its commit.
                        assert!(errors > 0, "{case}: the fault was not met");
                    }
                    assert_eq!(delivered, 1, "{case}: one delivery");
                    for c in &cts {
                        assert_eq!(
                            inc.accept(&store, &BOB, c, ACCOUNT).unwrap(),
                            Received::Duplicate,
                            "{case}"
                        );
                    }
                    let check = |store: &Store| {
                        let got: Vec<Vec<u8>> =
                            inbox(store).iter().map(|m| strip_received(m)).collect();
                        let sizes: Vec<usize> = got.iter().map(Vec::len).collect();
                        assert!(
                            got == vec![want.clone()],
                            "{case}: inbox holds {sizes:?}, want one of {}",
                            want.len()
                        );
                        assert!(
                            store.kv_list(KvTable::Partial).unwrap().is_empty(),
                            "{case}: blocks left behind"
                        );
                    };
                    check(&store);
                    drop(inc);
                    drop(store);
                    let store = open(dir.path());
                    let mut inc = load(&store);
                    check(&store);
                    assert_eq!(
                        inc.accept(&store, &BOB, &cts[1], ACCOUNT).unwrap(),
                        Received::Duplicate,
                        "{case}: after a restart"
                    );
                }
            }
        }
        println!("{failed} of {cases} fault cases failed a write and recovered");
    }

    #[test]
    fn a_message_completed_before_a_crash_is_delivered_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        // "Stored but not yet delivered": the partial record alone.
        store_block_directly(&store, b"Subject: s\r\n\r\nhi", 2);
        let _inc = load(&store);
        assert_eq!(store.inbox_len().unwrap(), 1);
        assert!(store.kv_list(KvTable::Partial).unwrap().is_empty());
    }

    /// Writes the partial record of a one-block message `msg` (id `id`)
    /// directly, as a crash after storing it leaves it.
    fn store_block_directly(store: &Store, msg: &[u8], id: u8) -> (ReassemblyKey, Block) {
        let cts = ciphertexts(msg, id);
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
        (key, block)
    }

    /// Writes the state a crash leaves between "delivery pending" and "done".
    fn crashed_mid_delivery(store: &Store, delivered: bool) -> Vec<u8> {
        let (key, block) = store_block_directly(store, b"Subject: s\r\n\r\ncrash", 5);
        let sender = key.sender;
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
    fn dedup_records_expire_after_their_ttl_and_fresh_ones_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let (old_msg, new_msg) = (
            b"Subject: a\r\n\r\nold".to_vec(),
            b"Subject: b\r\n\r\nnew".to_vec(),
        );
        let (old_ct, new_ct) = (ciphertexts(&old_msg, 1), ciphertexts(&new_msg, 2));
        let mut inc = load(&store);
        for ct in [&old_ct[0], &new_ct[0]] {
            assert!(matches!(
                inc.accept(&store, &BOB, ct, ACCOUNT).unwrap(),
                Received::Delivered(_)
            ));
        }
        // Age the first record by 11 days, as a restart would find it.
        let dedup = store.kv_list(KvTable::Dedup).unwrap();
        assert_eq!(dedup.len(), 2);
        let (old_key, new_key) = {
            let alice = katzenpost::sphinx::public_key(&ALICE);
            let k = |id: u8| ReassemblyKey {
                sender: alice,
                message_id: [id; 16],
            };
            (k(1), k(2))
        };
        let aged = unix_now() - 11 * 24 * 3600;
        store
            .kv_put(KvTable::Dedup, &old_key.to_bytes(), &aged.to_be_bytes())
            .unwrap();
        drop(inc);
        let mut inc = load(&store);
        let ttl = Duration::from_secs(10 * 24 * 3600);
        assert_eq!(inc.expire_dedup(&store, ttl).unwrap(), 1);
        let left = store.kv_list(KvTable::Dedup).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(
            left[0].0,
            new_key.to_bytes().to_vec(),
            "the fresh record is kept"
        );
        assert_eq!(inc.expire_dedup(&store, ttl).unwrap(), 0);
        // The fresh one still catches a retransmission.
        assert_eq!(
            inc.accept(&store, &BOB, &new_ct[0], ACCOUNT).unwrap(),
            Received::Duplicate
        );
        assert_eq!(store.inbox_len().unwrap(), 2);
    }

    #[test]
    fn report_markers_expire_and_fresh_ones_still_suppress_reports() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        // Coalescing off, so every distinct bad ciphertext reports once.
        let mut inc = Incoming::load(
            &store,
            1000,
            Duration::ZERO,
            PartialLimits::default(),
            ACCOUNT,
        )
        .unwrap();
        let (old, fresh) = (vec![1u8; BLOCK_LENGTH], vec![2u8; BLOCK_LENGTH]);
        for bad in [&old, &fresh] {
            assert_eq!(
                inc.accept(&store, &BOB, bad, ACCOUNT).unwrap(),
                Received::Reported
            );
        }
        let markers = store.kv_list(KvTable::Reports).unwrap();
        assert_eq!(markers.len(), 2);
        let old_key = report_key(b"undecryptable/", &Sha256::digest(&old));
        let aged = unix_now() - 11 * 24 * 3600;
        store
            .kv_put(KvTable::Reports, &old_key, &aged.to_be_bytes())
            .unwrap();
        let ttl = Duration::from_secs(10 * 24 * 3600);
        assert_eq!(Incoming::expire_reports(&store, ttl).unwrap(), 1);
        let left = store.kv_list(KvTable::Reports).unwrap();
        assert_eq!(left.len(), 1);
        assert_ne!(left[0].0, old_key);
        // The fresh marker still stops a second report for the same bytes.
        assert_eq!(
            inc.accept(&store, &BOB, &fresh, ACCOUNT).unwrap(),
            Received::Dropped
        );
        assert_eq!(store.inbox_len().unwrap(), 2);
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
        assert_eq!(
            inbox(&store)
                .iter()
                .map(|m| strip_received(m))
                .collect::<Vec<_>>(),
            vec![bytes]
        );
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
        let mut inc = Incoming::load(
            &store,
            2,
            Duration::from_secs(60),
            PartialLimits::default(),
            ACCOUNT,
        )
        .unwrap();
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
