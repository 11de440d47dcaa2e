//! Consensus documents of a set of voting authorities (authority v0.0.8
//! `voting/`), as a client verifies them: no I/O, the clock injected.
//!
//! A voting consensus is the same certificate (§5.2) over the same document
//! JSON as a nonvoting one, but it carries one signature per authority that
//! took part, sorted by signer identity. The 2019 client accepts it when at
//! least `len(peers)/2 + 1` of its configured peers signed it validly. This
//! module applies that rule, and is stricter than the original in two ways:
//! a signature by a key that is not a configured peer refuses the document,
//! and so does a document for another epoch than the one asked for.

use std::collections::BTreeSet;

use ed25519_dalek::VerifyingKey;

use super::cert::{signature_verifies, CertError, Certificate};
use super::document::{Document, DocumentError, RawDocument};

/// The configured authorities whose signatures count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VotingPeers {
    identities: Vec<VerifyingKey>,
}

/// Why a voting consensus was refused. Each variant names the failed check.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VotingError {
    /// No peers are configured.
    #[error("voting peers: none configured")]
    NoPeers,
    /// A configured identity is not a valid Ed25519 public key.
    #[error("voting peers: identity {0} is not a valid Ed25519 public key")]
    PeerKey(String),
    /// The same identity is configured twice.
    #[error("voting peers: identity {0} is listed twice")]
    DuplicatePeer(String),
    /// The certificate envelope is malformed, expired or of a bad version.
    #[error("certificate check failed: {0}")]
    Cert(#[from] CertError),
    /// A signature by a key that is not a configured peer.
    #[error("signer check failed: signature by unknown key {0}")]
    UnknownSigner(String),
    /// Fewer valid peer signatures than the threshold.
    #[error(
        "threshold check failed: {valid} valid and {invalid} invalid signature(s) from {peers} peer(s), {needed} valid needed"
    )]
    Threshold {
        /// Peers whose signature verified.
        valid: usize,
        /// Peers whose signature did not verify (only a peer's first
        /// signature counts).
        invalid: usize,
        /// Signatures needed: `peers / 2 + 1`.
        needed: usize,
        /// Configured peers.
        peers: usize,
    },
    /// The document is for another epoch than the one asked for.
    #[error("epoch check failed: document is for epoch {got}, asked for {want}")]
    WrongEpoch {
        /// The epoch asked for.
        want: u64,
        /// The document's epoch.
        got: u64,
    },
    /// The document inside does not parse or is not well formed (§5.4).
    #[error("document check failed: {0}")]
    Document(#[from] DocumentError),
}

impl VotingError {
    /// A short name of the failed check, for log fields.
    pub fn check(&self) -> &'static str {
        match self {
            VotingError::NoPeers | VotingError::PeerKey(_) | VotingError::DuplicatePeer(_) => {
                "peers"
            }
            VotingError::Cert(_) => "certificate",
            VotingError::UnknownSigner(_) => "signer",
            VotingError::Threshold { .. } => "threshold",
            VotingError::WrongEpoch { .. } => "epoch",
            VotingError::Document(_) => "document",
        }
    }
}

/// A consensus that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedConsensus {
    /// The parsed, validated document.
    pub document: Document,
    /// The peers whose signature verified, in configured order.
    pub signers: Vec<[u8; 32]>,
    /// Configured peers whose (first) signature did not verify.
    pub bad_signatures: Vec<[u8; 32]>,
}

impl VotingPeers {
    /// The peers with these Ed25519 identity keys (each once, at least one).
    pub fn new(identities: impl IntoIterator<Item = [u8; 32]>) -> Result<Self, VotingError> {
        let mut seen = BTreeSet::new();
        let mut keys = Vec::new();
        for id in identities {
            if !seen.insert(id) {
                return Err(VotingError::DuplicatePeer(hex::encode(id)));
            }
            keys.push(
                VerifyingKey::from_bytes(&id).map_err(|_| VotingError::PeerKey(hex::encode(id)))?,
            );
        }
        if keys.is_empty() {
            return Err(VotingError::NoPeers);
        }
        Ok(VotingPeers { identities: keys })
    }

    /// How many peers are configured.
    pub fn len(&self) -> usize {
        self.identities.len()
    }

    /// Never true: construction needs a peer.
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    /// Valid peer signatures a document needs: `len / 2 + 1` (the 2019 rule).
    pub fn threshold(&self) -> usize {
        self.identities.len() / 2 + 1
    }

    fn find(&self, identity: &[u8]) -> Option<&VerifyingKey> {
        self.identities.iter().find(|k| k.as_bytes() == identity)
    }

    /// Verifies a signed consensus for `epoch` at `now_unix`: certificate
    /// version and expiry, every signer a configured peer, at least
    /// [`VotingPeers::threshold`] distinct peers with a valid signature, the
    /// document well formed (§5.4, descriptor self-signatures included) and
    /// for `epoch`.
    pub fn verify(
        &self,
        bytes: &[u8],
        epoch: u64,
        now_unix: u64,
    ) -> Result<VerifiedConsensus, VotingError> {
        let cert = Certificate::from_bytes(bytes)?;
        cert.check_envelope(now_unix)?;
        let message = cert.signed_message();
        let mut good = BTreeSet::new();
        let mut bad = BTreeSet::new();
        for sig in &cert.signatures {
            let key = self
                .find(&sig.identity)
                .ok_or_else(|| VotingError::UnknownSigner(hex::encode(&sig.identity)))?;
            let id = key.to_bytes();
            // One verification per peer, however many copies are sent.
            if good.contains(&id) || bad.contains(&id) {
                continue;
            }
            if signature_verifies(key, &message, &sig.payload) {
                good.insert(id);
            } else {
                bad.insert(id);
            }
        }
        if good.len() < self.threshold() {
            return Err(VotingError::Threshold {
                valid: good.len(),
                invalid: bad.len(),
                needed: self.threshold(),
                peers: self.len(),
            });
        }
        let raw = RawDocument::from_json(&cert.certified)?;
        if raw.epoch != epoch {
            return Err(VotingError::WrongEpoch {
                want: epoch,
                got: raw.epoch,
            });
        }
        let document = Document::from_raw(&raw, now_unix)?;
        let in_order = |set: &BTreeSet<[u8; 32]>| -> Vec<[u8; 32]> {
            self.identities
                .iter()
                .map(VerifyingKey::to_bytes)
                .filter(|k| set.contains(k))
                .collect()
        };
        Ok(VerifiedConsensus {
            document,
            signers: in_order(&good),
            bad_signatures: in_order(&bad),
        })
    }
}

/// Adds the signature of `key` to a signed document (what each voting
/// authority does to the agreed document): the certificate re-encoded
/// canonically with the signatures sorted by identity.
pub fn cosign(bytes: &[u8], key: &ed25519_dalek::SigningKey) -> Result<Vec<u8>, CertError> {
    let mut cert = Certificate::from_bytes(bytes)?;
    cert.add_signature(key);
    Ok(cert.to_bytes())
}
