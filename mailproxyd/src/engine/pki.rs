//! PKI documents: verification (the nonvoting authority's key, or the voting
//! peers' threshold), fetching from the authority (a voting set: a random
//! peer first, then the next ones), the per-epoch cache, and the last good
//! signed document kept in the store (KvTable::Meta) so a restart does not
//! need the authority.

use std::collections::BTreeMap;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use katzenpost::epoch::EpochClock;
use katzenpost::pki::document::Document;
use katzenpost::pki::voting::VotingPeers;
use katzenpost::wire::commands::{consensus_status, Command};
use katzenpost::wire::handshake::ExpectPeer;
use rand::Rng;

use super::connection::{authority_request, expect_nonvoting};
use super::upstream::Upstream;
use super::{EngineError, Pki, VotingPeer};
use crate::store::{unix_now, KvTable, Store};

const SAVED_KEY: &[u8] = b"engine/pki/document";
/// When the saved document was obtained: epoch ‖ Unix seconds.
const SAVED_OBTAINED_KEY: &[u8] = b"engine/pki/obtained";

/// How documents are verified.
enum Verifier {
    /// Signed by this nonvoting authority key.
    Nonvoting(VerifyingKey),
    /// Signed by at least `len/2 + 1` of these voting peers, and by no one else.
    Voting(VotingPeers),
}

impl Verifier {
    fn new(pki: &Pki) -> Result<Self, EngineError> {
        match pki {
            Pki::Nonvoting(a) => VerifyingKey::from_bytes(&a.public_key)
                .map(Verifier::Nonvoting)
                .map_err(|_| EngineError::Pki("authority key is not a valid Ed25519 key".into())),
            Pki::Voting(peers) => VotingPeers::new(peers.iter().map(|p| p.identity_key))
                .map(Verifier::Voting)
                .map_err(|e| EngineError::Pki(e.to_string())),
        }
    }

    /// Verifies a signed document for `epoch` at `now_unix`. A refused
    /// voting consensus is logged with the check that failed.
    fn verify(&self, signed: &[u8], epoch: u64, now_unix: u64) -> Result<Document, EngineError> {
        match self {
            Verifier::Nonvoting(key) => {
                Document::verify_and_parse_for_epoch(signed, key, epoch, now_unix)
                    .map_err(|e| EngineError::Pki(format!("document for epoch {epoch}: {e}")))
            }
            Verifier::Voting(peers) => match peers.verify(signed, epoch, now_unix) {
                Ok(v) => {
                    if !v.bad_signatures.is_empty() {
                        tracing::warn!(
                            epoch,
                            bad = v.bad_signatures.len(),
                            signers = v.signers.len(),
                            "voting consensus accepted with bad signatures from some peers"
                        );
                    }
                    Ok(v.document)
                }
                Err(e) => {
                    tracing::warn!(epoch, check = e.check(), error = %e, "voting consensus refused");
                    Err(EngineError::Pki(format!(
                        "voting consensus for epoch {epoch} refused: {e}"
                    )))
                }
            },
        }
    }
}

/// Verified documents by epoch.
pub(super) struct Documents {
    verifier: Verifier,
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
    pub(super) fn new(pki: &Pki, period: Duration) -> Result<Self, EngineError> {
        Ok(Documents {
            verifier: Verifier::new(pki)?,
            clock: EpochClock::new(period),
            docs: BTreeMap::new(),
            obtained: BTreeMap::new(),
        })
    }

    /// Holds `doc` as if it were fetched and verified (unit tests).
    #[cfg(test)]
    pub(super) fn insert(&mut self, doc: Document) {
        self.docs.insert(doc.epoch, doc);
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
    /// the last good one, durably, before it is used).
    pub(super) async fn accept(
        &mut self,
        store: &Store,
        epoch: u64,
        signed: &[u8],
    ) -> Result<&Document, EngineError> {
        let doc = self.verifier.verify(signed, epoch, unix_now())?;
        let now = unix_now();
        if self.newest().is_none_or(|d| d.epoch <= epoch) {
            let mut v = epoch.to_be_bytes().to_vec();
            v.extend_from_slice(signed);
            let mut t = epoch.to_be_bytes().to_vec();
            t.extend_from_slice(&now.to_be_bytes());
            let store = store.clone();
            super::blocking(move || {
                let puts: [(KvTable, &[u8], &[u8]); 2] = [
                    (KvTable::Meta, SAVED_KEY, &v),
                    (KvTable::Meta, SAVED_OBTAINED_KEY, &t),
                ];
                Ok(store.kv_batch(&puts, &[])?)
            })
            .await?;
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
    pub(super) async fn load_saved(&mut self, store: &Store) -> Result<bool, EngineError> {
        let store = store.clone();
        let (saved, obtained) = super::blocking(move || {
            Ok((
                store.kv_get(KvTable::Meta, SAVED_KEY)?,
                store.kv_get(KvTable::Meta, SAVED_OBTAINED_KEY)?,
            ))
        })
        .await?;
        let Some(v) = saved else {
            return Ok(false);
        };
        if v.len() < 8 {
            return Ok(false);
        }
        let epoch = u64::from_be_bytes(v[..8].try_into().unwrap_or_default());
        match self.verifier.verify(&v[8..], epoch, unix_now()) {
            Ok(doc) => {
                self.docs.insert(epoch, doc);
                if let Some(t) = obtained.filter(|t| t.len() == 16 && t[..8] == epoch.to_be_bytes())
                {
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
    pub(super) async fn consensus_reply(
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
                self.accept(store, epoch, &payload).await?.clone(),
            )),
            Command::Consensus { .. } => Ok(Fetched::NotFound),
            other => Err(EngineError::Protocol(format!(
                "expected Consensus, got {other:?}"
            ))),
        }
    }

    /// Fetches the document for `epoch` from the authority directly: the
    /// nonvoting authority, or a random voting peer and, on failure, the
    /// next ones in turn. Streams are isolated per nonvoting authority (its
    /// key) and for voting.
    pub(super) async fn fetch_from_authority(
        &mut self,
        store: &Store,
        upstream: &Upstream,
        pki: &Pki,
        epoch: u64,
        timeout: Duration,
    ) -> Result<Fetched, EngineError> {
        match pki {
            Pki::Nonvoting(authority) => {
                let expect = expect_nonvoting(authority)?;
                let cmd = Command::GetConsensus { epoch };
                let tag = format!("nonvoting:{}", hex::encode(authority.public_key));
                let reply =
                    authority_request(upstream, &tag, &authority.address, expect, &cmd, timeout)
                        .await?;
                self.consensus_reply(store, epoch, reply).await
            }
            Pki::Voting(peers) => {
                let first = rand::thread_rng().gen_range(0..peers.len().max(1));
                self.fetch_from_peers(store, upstream, peers, first, epoch, timeout)
                    .await
            }
        }
    }

    /// Asks the voting peers in turn, starting at `first`, until one serves
    /// a document that verifies. NotFound if no peer had one but some peer
    /// answered NotFound; otherwise the last failure.
    async fn fetch_from_peers(
        &mut self,
        store: &Store,
        upstream: &Upstream,
        peers: &[VotingPeer],
        first: usize,
        epoch: u64,
        timeout: Duration,
    ) -> Result<Fetched, EngineError> {
        let cmd = Command::GetConsensus { epoch };
        let mut not_found = false;
        let mut last_error = None;
        for i in 0..peers.len() {
            let peer = &peers[(first + i) % peers.len()];
            for addr in &peer.addresses {
                let expect = ExpectPeer::new(peer.identity_key, peer.link_key);
                let outcome = match authority_request(
                    upstream, "voting", addr, expect, &cmd, timeout,
                )
                .await
                {
                    Ok(reply) => self.consensus_reply(store, epoch, reply).await,
                    Err(e) => Err(e),
                };
                match outcome {
                    Ok(Fetched::Document(d)) => return Ok(Fetched::Document(d)),
                    Ok(Fetched::NotFound) => {
                        tracing::debug!(epoch, peer = %addr, "voting peer has no document yet");
                        not_found = true;
                        break;
                    }
                    Err(e) => {
                        tracing::info!(epoch, peer = %addr, error = %e, "voting peer failed; trying the next");
                        last_error = Some(e);
                    }
                }
            }
        }
        if not_found {
            return Ok(Fetched::NotFound);
        }
        Err(last_error.unwrap_or_else(|| EngineError::Pki("no voting peer to ask".into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/katzenpost-2019/");
    const VOTING_EPOCH: u64 = 2_502_817;
    /// One minute into epoch 2502817 (2-minute epochs from 2017-06-01 UTC).
    const VOTING_NOW: u64 = 1_496_275_200 + VOTING_EPOCH * 120 + 60;

    fn vector(name: &str) -> Vec<u8> {
        let path = format!("{VECTORS}{name}");
        std::fs::read(&path).unwrap_or_else(|e| panic!("missing test vector file {path}: {e}"))
    }

    fn voting_peers() -> Vec<VotingPeer> {
        let json: serde_json::Value = serde_json::from_slice(&vector("voting_peers.json")).unwrap();
        json["authorities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let key = |f: &str| -> [u8; 32] {
                    hex::decode(a[f].as_str().unwrap())
                        .unwrap()
                        .try_into()
                        .unwrap()
                };
                VotingPeer {
                    identity_key: key("identity_public_key_hex"),
                    link_key: key("link_public_key_hex"),
                    addresses: vec![a["address"].as_str().unwrap().to_owned()],
                }
            })
            .collect()
    }

    #[test]
    fn voting_accounts_verify_with_the_peer_threshold() {
        let bytes = vector("voting_consensus_epoch2502817.cbor");
        let v = Verifier::new(&Pki::Voting(voting_peers())).unwrap();
        let doc = v.verify(&bytes, VOTING_EPOCH, VOTING_NOW).unwrap();
        assert_eq!(doc.epoch, VOTING_EPOCH);
        assert!(doc.provider_by_name("vprov2").is_some());
        let e = v
            .verify(&bytes, VOTING_EPOCH + 1, VOTING_NOW)
            .unwrap_err()
            .to_string();
        assert!(e.contains("epoch check failed"), "{e}");
        // Two configured peers: the third authority's signature is unknown.
        let two = Verifier::new(&Pki::Voting(voting_peers()[..2].to_vec())).unwrap();
        let e = two
            .verify(&bytes, VOTING_EPOCH, VOTING_NOW)
            .unwrap_err()
            .to_string();
        assert!(e.contains("signer check failed"), "{e}");
        // A corrupted signature leaves 2 of 3: accepted.
        let mut cert = katzenpost::pki::cert::Certificate::from_bytes(&bytes).unwrap();
        cert.signatures[0].payload[0] ^= 1;
        assert!(v.verify(&cert.to_bytes(), VOTING_EPOCH, VOTING_NOW).is_ok());
        cert.signatures[1].payload[0] ^= 1;
        let e = v
            .verify(&cert.to_bytes(), VOTING_EPOCH, VOTING_NOW)
            .unwrap_err()
            .to_string();
        assert!(e.contains("threshold check failed"), "{e}");
        assert!(Verifier::new(&Pki::Voting(vec![])).is_err());
        let dup = vec![voting_peers()[0].clone(), voting_peers()[0].clone()];
        assert!(Verifier::new(&Pki::Voting(dup)).is_err());
    }
}
