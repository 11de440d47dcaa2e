//! PKI documents: verification with the authority key, the per-epoch cache,
//! and the last good signed document kept in the store (KvTable::Meta) so a
//! restart does not need the authority.

use std::collections::BTreeMap;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use katzenpost::epoch::EpochClock;
use katzenpost::pki::document::Document;
use katzenpost::wire::commands::{consensus_status, Command};

use super::connection::authority_request;
use super::{AuthorityConfig, EngineError};
use crate::store::{unix_now, KvTable, Store};

const SAVED_KEY: &[u8] = b"engine/pki/document";
/// When the saved document was obtained: epoch ‖ Unix seconds.
const SAVED_OBTAINED_KEY: &[u8] = b"engine/pki/obtained";

/// Verified documents by epoch.
pub(super) struct Documents {
    authority: VerifyingKey,
    pub(super) clock: EpochClock,
    docs: BTreeMap<u64, Document>,
    /// Unix seconds each held document was obtained (if known).
    obtained: BTreeMap<u64, u64>,
}

/// What a GetConsensus answer meant.
pub(super) enum Fetched {
    /// A verified document.
    Document(Document),
    /// Not (yet) published.
    NotFound,
}

impl Documents {
    pub(super) fn new(authority: &AuthorityConfig, period: Duration) -> Result<Self, EngineError> {
        let authority = VerifyingKey::from_bytes(&authority.public_key)
            .map_err(|_| EngineError::Pki("authority key is not a valid Ed25519 key".into()))?;
        Ok(Documents {
            authority,
            clock: EpochClock::new(period),
            docs: BTreeMap::new(),
            obtained: BTreeMap::new(),
        })
    }

    /// The current epoch.
    pub(super) fn epoch(&self) -> u64 {
        self.clock.now().epoch
    }

    /// The document for the current epoch.
    pub(super) fn current(&self) -> Option<&Document> {
        self.docs.get(&self.epoch())
    }

    /// The newest document held (for finding the provider before the
    /// current epoch's document is known).
    pub(super) fn newest(&self) -> Option<&Document> {
        self.docs.values().next_back()
    }

    /// Unix seconds at which the newest document held was obtained.
    pub(super) fn newest_obtained(&self) -> Option<u64> {
        let epoch = self.newest()?.epoch;
        self.obtained.get(&epoch).copied()
    }

    /// Whether the document for `epoch` is held.
    pub(super) fn has(&self, epoch: u64) -> bool {
        self.docs.contains_key(&epoch)
    }

    /// True when the next epoch's document should be fetched now (the last
    /// quarter of the current epoch) and is not held.
    pub(super) fn wants_next(&self) -> Option<u64> {
        let t = self.clock.now();
        let next = t.epoch + 1;
        (t.till < self.clock.period() / 4 && !self.has(next)).then_some(next)
    }

    /// Verifies a signed document for `epoch` and keeps it (and saves it as
    /// the last good one).
    pub(super) fn accept(
        &mut self,
        store: &Store,
        epoch: u64,
        signed: &[u8],
    ) -> Result<&Document, EngineError> {
        let doc = Document::verify_and_parse_for_epoch(signed, &self.authority, epoch, unix_now())
            .map_err(|e| EngineError::Pki(format!("document for epoch {epoch}: {e}")))?;
        let now = unix_now();
        if self.newest().is_none_or(|d| d.epoch <= epoch) {
            let mut v = epoch.to_be_bytes().to_vec();
            v.extend_from_slice(signed);
            store.kv_put(KvTable::Meta, SAVED_KEY, &v)?;
            let mut t = epoch.to_be_bytes().to_vec();
            t.extend_from_slice(&now.to_be_bytes());
            store.kv_put(KvTable::Meta, SAVED_OBTAINED_KEY, &t)?;
        }
        self.docs.insert(epoch, doc);
        self.obtained.insert(epoch, now);
        // Keep the previous, current and future epochs only.
        let keep_from = self.epoch().saturating_sub(1);
        self.docs.retain(|e, _| *e >= keep_from);
        self.obtained.retain(|e, _| *e >= keep_from);
        Ok(&self.docs[&epoch])
    }

    /// Loads the last good document from the store, if it still verifies.
    pub(super) fn load_saved(&mut self, store: &Store) -> Result<bool, EngineError> {
        let Some(v) = store.kv_get(KvTable::Meta, SAVED_KEY)? else {
            return Ok(false);
        };
        if v.len() < 8 {
            return Ok(false);
        }
        let epoch = u64::from_be_bytes(v[..8].try_into().unwrap_or_default());
        match Document::verify_and_parse_for_epoch(&v[8..], &self.authority, epoch, unix_now()) {
            Ok(doc) => {
                self.docs.insert(epoch, doc);
                let t = store.kv_get(KvTable::Meta, SAVED_OBTAINED_KEY)?;
                if let Some(t) = t.filter(|t| t.len() == 16 && t[..8] == epoch.to_be_bytes()) {
                    let at = u64::from_be_bytes(t[8..].try_into().unwrap_or_default());
                    self.obtained.insert(epoch, at);
                }
                Ok(true)
            }
            Err(e) => {
                tracing::info!(epoch, error = %e, "saved PKI document no longer usable");
                Ok(false)
            }
        }
    }

    /// Interprets a Consensus reply.
    pub(super) fn consensus_reply(
        &mut self,
        store: &Store,
        epoch: u64,
        reply: Command,
    ) -> Result<Fetched, EngineError> {
        match reply {
            Command::Consensus {
                error_code: consensus_status::OK,
                payload,
            } => Ok(Fetched::Document(
                self.accept(store, epoch, &payload)?.clone(),
            )),
            Command::Consensus { .. } => Ok(Fetched::NotFound),
            other => Err(EngineError::Protocol(format!(
                "expected Consensus, got {other:?}"
            ))),
        }
    }

    /// Fetches the document for `epoch` from the authority directly.
    pub(super) async fn fetch_from_authority(
        &mut self,
        store: &Store,
        authority: &AuthorityConfig,
        epoch: u64,
        timeout: Duration,
    ) -> Result<Fetched, EngineError> {
        let reply = authority_request(authority, &Command::GetConsensus { epoch }, timeout).await?;
        super::worker::blocking(|| self.consensus_reply(store, epoch, reply))
    }
}
