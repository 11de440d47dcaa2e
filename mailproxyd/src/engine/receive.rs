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

/// What happened to one retrieved block.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Received {
    /// Stored; its message is incomplete.
    Stored,
    /// It completed a message, now in the inbox.
    Delivered,
    /// Already held or already delivered.
    Duplicate,
    /// A report was put in the inbox.
    Reported,
    /// Unreadable, and already reported.
    Dropped,
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
        for (k, _) in store.kv_list(KvTable::Dedup)? {
            if let Ok(b) = <[u8; ReassemblyKey::LENGTH]>::try_from(k.as_slice()) {
                me.delivered.insert(ReassemblyKey::from_bytes(&b));
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
                self.complete(store, key, account)?;
                Ok(Received::Delivered)
            }
        }
    }

    /// Delivers a complete message, records it as delivered, drops its blocks.
    fn complete(
        &mut self,
        store: &Store,
        key: ReassemblyKey,
        _account: &str,
    ) -> Result<(), EngineError> {
        let Some(p) = self.partial.remove(&key) else {
            return Ok(());
        };
        let total = p.total_blocks();
        let message = p
            .assemble()
            .map_err(|e| EngineError::Protocol(format!("reassembly: {e}")))?;
        let now = unix_now();
        store.deliver(&reports::with_sender_header(&message, &key.sender), now)?;
        store.kv_put(KvTable::Dedup, &key.to_bytes(), &now.to_be_bytes())?;
        self.delivered.insert(key);
        for i in 0..total {
            store.kv_remove(KvTable::Partial, &partial_key(&key, i))?;
        }
        tracing::info!(blocks = total, "incoming message delivered");
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
