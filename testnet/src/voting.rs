//! Voting authorities without I/O: how a committee of peers agrees on one
//! document per epoch, each peer signing it.
//!
//! Each peer accepts descriptor uploads like the nonvoting authority
//! ([`AuthorityState`]). When a document is due, the peers taking part
//! exchange their descriptors, each computes the document from the union
//! with the same deterministic rules ([`consensus_document`]), and each signs
//! its own result. The peers whose results are byte-identical pool their
//! signatures; if at least `len(peers)/2 + 1` of all configured peers agree,
//! every one of them publishes the multi-signed document (the 2019 format:
//! one certificate, signatures sorted by identity). This is not the 2019
//! vote/reveal protocol: the shared random value is derived from the epoch.
//!
//! [`ServeFault`]s let tests make one peer serve a bad document.

use std::collections::BTreeMap;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use katzenpost::epoch::EpochClock;
use katzenpost::pki::cert::Certificate;
use katzenpost::pki::document::{sign_document, Document, MixDescriptor, RawDocument};
use katzenpost::pki::voting::cosign;

use crate::authority::{document, AuthorityState};
use crate::config::Params;
use crate::descriptor::cert_expiration;

/// One voting peer taking part in a round: its signing key and state.
pub struct Participant<'a> {
    pub key: &'a SigningKey,
    pub state: &'a mut AuthorityState,
}

/// Signatures a document needs among `peers` configured peers (the 2019 rule).
pub fn threshold(peers: usize) -> usize {
    peers / 2 + 1
}

/// The document for `epoch` from `descriptors`: providers by name, mixes
/// ordered by identity key and dealt into the layers in turn (so a mix
/// keeps its layer while the set of mixes stays the same). `None` if a
/// layer or the providers would be empty. Every peer computes the same
/// document from the same descriptors.
pub fn consensus_document(
    params: &Params,
    epoch: u64,
    mut descriptors: Vec<MixDescriptor>,
) -> Option<Document> {
    descriptors.sort_by_key(|d| d.identity_key);
    let (mut providers, mixes): (Vec<_>, Vec<_>) =
        descriptors.into_iter().partition(|d| d.layer == 255);
    providers.sort_by(|a, b| a.name.cmp(&b.name));
    let n = params.layers;
    let mut topology: Vec<Vec<MixDescriptor>> = vec![Vec::new(); n];
    for (i, m) in mixes.into_iter().enumerate() {
        topology[i % n].push(m);
    }
    if providers.is_empty() || topology.iter().any(Vec::is_empty) {
        return None;
    }
    let mut srv = Vec::with_capacity(32);
    for _ in 0..4 {
        srv.extend_from_slice(&epoch.to_be_bytes());
    }
    Some(document(params, epoch, topology, providers, srv))
}

/// The certificate expiration every peer uses for `epoch`'s document:
/// 3 periods + 10 minutes after the epoch starts (the same for all peers,
/// whenever they sign).
pub fn consensus_expiration(clock: &EpochClock, epoch: u64) -> i64 {
    let start = clock.start_of(epoch).as_secs();
    cert_expiration(start, clock.period().as_secs())
}

/// Shares every descriptor any participant holds for `epoch` with all of
/// them (each is checked again by the receiving peer).
pub fn exchange_descriptors(peers: &mut [Participant<'_>], epoch: u64, now_unix: u64) {
    let mut union: BTreeMap<[u8; 32], MixDescriptor> = BTreeMap::new();
    for p in peers.iter() {
        for d in p.state.descriptors(epoch) {
            union.entry(d.identity_key).or_insert(d);
        }
    }
    for p in peers.iter_mut() {
        for d in union.values() {
            p.state
                .post_descriptor(&d.identity_key, epoch, &d.signed, now_unix);
        }
    }
}

/// One round for `epoch` among the participating peers out of `configured`
/// peers: each computes and signs the document; the largest group of
/// identical documents, if it reaches the threshold, is published by each
/// of its peers with all their signatures. Returns the published bytes.
pub fn tabulate(
    peers: &mut [Participant<'_>],
    configured: usize,
    epoch: u64,
    now_unix: u64,
) -> Option<Vec<u8>> {
    exchange_descriptors(peers, epoch, now_unix);
    // Certified bytes -> (indices of the peers that computed them, the signed document).
    let mut groups: BTreeMap<Vec<u8>, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for (i, p) in peers.iter().enumerate() {
        let clock = p.state.clock();
        let Some(doc) = consensus_document(p.state.params(), epoch, p.state.descriptors(epoch))
        else {
            continue;
        };
        let signed = match sign_document(&doc, p.key, consensus_expiration(&clock, epoch)) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(epoch, error = %e, "voting peer could not sign the document");
                continue;
            }
        };
        let Ok(cert) = Certificate::from_bytes(&signed) else {
            continue;
        };
        let entry = groups
            .entry(cert.certified)
            .or_insert_with(|| (Vec::new(), signed.clone()));
        if !entry.0.is_empty() {
            match cosign(&entry.1, p.key) {
                Ok(b) => entry.1 = b,
                Err(_) => continue,
            }
        }
        entry.0.push(i);
    }
    let (members, signed) = groups.into_values().max_by_key(|(m, _)| m.len())?;
    if members.len() < threshold(configured) {
        tracing::info!(
            epoch,
            agreeing = members.len(),
            configured,
            "voting peers short of the threshold: no document"
        );
        return None;
    }
    for &i in &members {
        peers[i].state.publish(epoch, signed.clone(), now_unix);
    }
    Some(signed)
}

/// Hands the document a peer missed (it was down at tabulation) to it:
/// the first participant holding `epoch`'s document gives it to the others.
pub fn catch_up(peers: &mut [Participant<'_>], epoch: u64, now_unix: u64) {
    let Some(held) = peers.iter().find_map(|p| p.state.signed_document(epoch)) else {
        return;
    };
    for p in peers.iter_mut() {
        if !p.state.has_document(epoch) {
            p.state.publish(epoch, held.clone(), now_unix);
        }
    }
}

/// One committee step at `now_unix`: for the current and next epoch, catch
/// up peers that missed a published document, and tabulate documents that
/// are due. Returns the epochs for which a document was published.
pub fn step(peers: &mut [Participant<'_>], configured: usize, now_unix: u64) -> Vec<u64> {
    let Some(clock) = peers.first().map(|p| p.state.clock()) else {
        return Vec::new();
    };
    let now = clock.at(Duration::from_secs(now_unix)).epoch;
    let mut made = Vec::new();
    for epoch in [now, now + 1] {
        catch_up(peers, epoch, now_unix);
        if peers.iter().any(|p| p.state.has_document(epoch)) {
            continue;
        }
        exchange_descriptors(peers, epoch, now_unix);
        let due = peers.iter().any(|p| p.state.due(now_unix).contains(&epoch));
        if due && tabulate(peers, configured, epoch, now_unix).is_some() {
            made.push(epoch);
        }
    }
    made
}

/// A fault one peer applies to the documents it serves (for tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeFault {
    /// Serve the document with the peer's own signature only.
    OwnSignatureOnly,
    /// Change the document, sign it again alone, and keep the other peers'
    /// (now invalid) signatures: a forgery.
    Forged,
    /// Add a signature by a key that is not a peer.
    ExtraSigner,
}

/// The document `signed` as a peer with `key` serves it under `fault`.
pub fn apply_fault(fault: ServeFault, signed: &[u8], key: &SigningKey) -> Vec<u8> {
    let Ok(mut cert) = Certificate::from_bytes(signed) else {
        return signed.to_vec();
    };
    let own = key.verifying_key().to_bytes();
    match fault {
        ServeFault::OwnSignatureOnly => {
            cert.signatures.retain(|s| s.identity == own);
            cert.to_bytes()
        }
        ServeFault::Forged => {
            if let Ok(mut raw) = RawDocument::from_json(&cert.certified) {
                raw.params.send_rate_per_minute += 1;
                if let Ok(json) = raw.to_json() {
                    cert.certified = json;
                }
            }
            cert.add_signature(key);
            cert.to_bytes()
        }
        ServeFault::ExtraSigner => {
            let stranger = SigningKey::generate(&mut rand::rngs::OsRng);
            cosign(signed, &stranger).unwrap_or_else(|_| signed.to_vec())
        }
    }
}
