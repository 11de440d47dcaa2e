//! A node's PKI duties: keep mix keys for the coming epochs, upload its
//! descriptor for the current and next epoch until each authority (or
//! voting peer) accepts it, and fetch the documents for both, accepting one
//! signed by `len/2 + 1` of the authorities (one of one when nonvoting).
//!
//! Every peer gets the same bytes for an epoch's descriptor, as the real
//! voting client posts them, and so does every retry, also after a restart:
//! the certificate's expiration follows from the epoch, not from the time of
//! signing, and Ed25519 signatures are deterministic. A node that signed
//! with the time left the peers holding different descriptors of it (a
//! second one is a conflict, so each keeps its own), and peers that hold
//! different descriptors compute different documents, so that a committee
//! could miss its threshold for good.
//!
//! Fetches are paced by [`FetchSchedule`]: an epoch whose document the
//! authorities said is `Gone` is not asked for again for about a minute (as
//! the 2019 server's PKI worker rechecks), one that is `NotFound` (not yet)
//! or unreachable is asked again after a doubling delay up to an eighth of
//! that (a network starting up publishes its first document within seconds),
//! and one already held is not asked for at all. Every fetch is a whole link
//! handshake: asking every tick cost 240 handshakes a minute from two nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use katzenpost::pki::voting::VotingPeers;
use katzenpost::wire::commands::{consensus_status, descriptor_status, Command};
use katzenpost::wire::handshake::{ed25519_secret_to_x25519, ExpectPeer, LocalIdentity};
use katzenpost::wire::session::SessionConfig;

use super::Node;
use crate::descriptor::{epoch_descriptor, NodeFacts};
use crate::link::{request, session_config};
use crate::unix_now;

/// How often the node's PKI duties run (key rotation, uploads, due fetches).
const TICK: Duration = Duration::from_millis(500);

/// When to ask again for each epoch's document after a failed fetch.
#[derive(Debug)]
pub(crate) struct FetchSchedule {
    /// Hold after `Gone`, and the longest delay after other failures.
    recheck: Duration,
    /// epoch -> (not before, delay that got us there).
    failed: BTreeMap<u64, (Instant, Duration)>,
}

impl FetchSchedule {
    /// About once a minute, as the 2019 server; a tenth of the epoch on test
    /// networks with short epochs, so that a node never spends a whole
    /// epoch without the document.
    pub(crate) fn new(epoch_period: Duration) -> FetchSchedule {
        FetchSchedule {
            recheck: Duration::from_secs(60).min(epoch_period / 10).max(TICK),
            failed: BTreeMap::new(),
        }
    }

    /// Whether epoch `e` may be asked for at `now`.
    pub(crate) fn due(&self, e: u64, now: Instant) -> bool {
        self.failed.get(&e).is_none_or(|(at, _)| now >= *at)
    }

    /// The authorities answered `Gone` ("never"): hold the full recheck.
    pub(crate) fn gone(&mut self, e: u64, now: Instant) {
        self.failed.insert(e, (now + self.recheck, self.recheck));
    }

    /// `NotFound` ("not yet"), unreachable, or a bad document: back off,
    /// from one tick doubling up to an eighth of the recheck interval.
    pub(crate) fn not_yet(&mut self, e: u64, now: Instant) {
        let cap = (self.recheck / 8).max(TICK);
        let delay = match self.failed.get(&e) {
            Some((_, d)) => (*d * 2).min(cap),
            None => TICK,
        };
        self.failed.insert(e, (now + delay, delay));
    }

    /// The document is held: forget the failures.
    pub(crate) fn fetched(&mut self, e: u64) {
        self.failed.remove(&e);
    }

    /// Drops epochs before `e`.
    pub(crate) fn prune_before(&mut self, e: u64) {
        self.failed.retain(|k, _| *k >= e);
    }
}

pub(super) async fn pki_loop(node: Arc<Node>) {
    // (authority index, epoch) pairs whose upload was accepted.
    let mut posted: BTreeSet<(usize, u64)> = BTreeSet::new();
    let mut schedule = FetchSchedule::new(node.clock.period());
    loop {
        tick(&node, &mut posted, &mut schedule).await;
        tokio::time::sleep(TICK).await;
    }
}

async fn tick(node: &Arc<Node>, posted: &mut BTreeSet<(usize, u64)>, schedule: &mut FetchSchedule) {
    let now = node.clock.now();
    let epoch = now.epoch;
    {
        let mut keys = node.keys.lock().expect("lock");
        if let Err(e) = keys.ensure(&mut rand::rngs::OsRng, epoch) {
            tracing::warn!(node = %node.config.name, error = %e, "mix key rotation failed");
        }
    }
    node.replay
        .lock()
        .expect("lock")
        .prune_before(epoch.saturating_sub(1));
    node.documents
        .lock()
        .expect("lock")
        .retain(|e, _| *e + 1 >= epoch);
    posted.retain(|(_, e)| *e + 1 >= epoch);
    schedule.prune_before(epoch);

    let id_x25519 = ed25519_secret_to_x25519(&node.config.identity.to_bytes());
    let Ok(identity) = LocalIdentity::new(*id_x25519, node.id().to_vec()) else {
        return;
    };
    let authorities = &node.config.authorities;
    let Ok(verifier) = VotingPeers::new(authorities.iter().map(|a| a.identity_key)) else {
        return;
    };
    let configs: Vec<(String, SessionConfig)> = authorities
        .iter()
        .map(|a| {
            let expect = ExpectPeer::new(a.identity_key, a.link_key);
            (
                a.address.to_string(),
                session_config(identity.clone(), Arc::new(expect)),
            )
        })
        .collect();
    for e in [epoch, epoch + 1] {
        if (0..configs.len()).any(|i| !posted.contains(&(i, e))) {
            if let Some(signed) = sign(node, e) {
                for (i, (addr, config)) in configs.iter().enumerate() {
                    if !posted.contains(&(i, e)) && post(node, addr, config, e, &signed).await {
                        posted.insert((i, e));
                    }
                }
            }
        }
        if node.documents.lock().expect("lock").contains_key(&e) || !schedule.due(e, Instant::now())
        {
            continue;
        }
        // Gone only when every authority said so.
        let mut all_gone = true;
        let mut got = false;
        for (addr, config) in &configs {
            let payload = match request(addr, config, &Command::GetConsensus { epoch: e }).await {
                Ok(Command::Consensus {
                    error_code: consensus_status::OK,
                    payload,
                }) => payload,
                Ok(Command::Consensus {
                    error_code: consensus_status::GONE,
                    ..
                }) => continue,
                _ => {
                    all_gone = false;
                    continue;
                }
            };
            all_gone = false;
            match verifier.verify(&payload, e, unix_now()) {
                Ok(v) => {
                    node.documents
                        .lock()
                        .expect("lock")
                        .insert(e, (v.document, payload));
                    got = true;
                    break;
                }
                Err(err) => {
                    tracing::warn!(node = %node.config.name, epoch = e, authority = %addr, check = err.check(), error = %err, "bad document from the authority")
                }
            }
        }
        let now = Instant::now();
        match (got, all_gone) {
            (true, _) => schedule.fetched(e),
            (false, true) => schedule.gone(e, now),
            (false, false) => schedule.not_yet(e, now),
        }
    }
}

/// The node's descriptor for epoch `e` ([`epoch_descriptor`]: the same
/// bytes whenever it is signed with the same keys); `None`, with a warning,
/// if it could not be made.
fn sign(node: &Node, e: u64) -> Option<Vec<u8>> {
    let keys = node.keys.lock().expect("lock").public_keys(e);
    let facts = NodeFacts {
        name: &node.config.name,
        role: node.config.role,
        link_public: katzenpost::sphinx::public_key(&node.config.link_private),
        address: node.config.address,
        extra_transport: node
            .config
            .params
            .provider_extra_transport
            .as_ref()
            .map(|(t, a)| (t.as_str(), a.as_str())),
    };
    match epoch_descriptor(facts, &node.config.identity, keys, &node.clock, e) {
        Ok(d) => Some(d.signed),
        Err(err) => {
            tracing::warn!(node = %node.config.name, epoch = e, error = %err, "could not make the descriptor");
            None
        }
    }
}

/// Uploads `signed`, the node's descriptor for epoch `e`, to one authority;
/// true once it holds it.
async fn post(node: &Node, addr: &str, config: &SessionConfig, e: u64, signed: &[u8]) -> bool {
    let cmd = Command::PostDescriptor {
        epoch: e,
        payload: signed.to_vec(),
    };
    match request(addr, config, &cmd).await {
        // CONFLICT: the authority holds another of our descriptors (e.g.
        // from before a restart).
        Ok(Command::PostDescriptorStatus {
            error_code: descriptor_status::OK | descriptor_status::CONFLICT,
        }) => true,
        Ok(other) => {
            tracing::warn!(node = %node.config.name, epoch = e, ?other, "descriptor refused");
            false
        }
        Err(err) => {
            tracing::debug!(node = %node.config.name, error = %err, "authority unreachable");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gone_holds_a_minute_not_yet_backs_off_and_a_document_clears() {
        let t0 = Instant::now();
        let mut s = FetchSchedule::new(Duration::from_secs(3 * 3600));
        assert!(s.due(7, t0) && s.due(8, t0));
        s.gone(8, t0);
        assert!(!s.due(8, t0 + Duration::from_secs(59)));
        assert!(s.due(8, t0 + Duration::from_secs(60)));
        assert!(s.due(7, t0), "other epochs are not held");
        // Not yet: one tick, then doubling, capped at 7.5 s.
        let mut at = t0;
        let mut waits = Vec::new();
        for _ in 0..10 {
            s.not_yet(7, at);
            let next = (1..=600)
                .map(|n| at + TICK * n)
                .find(|t| s.due(7, *t))
                .unwrap();
            waits.push((next - at).as_millis());
            at = next;
        }
        assert_eq!(
            waits,
            [500, 1000, 2000, 4000, 7500, 7500, 7500, 7500, 7500, 7500]
        );
        s.fetched(7);
        assert!(s.due(7, at));
        s.prune_before(9);
        assert!(s.due(8, t0), "pruned");
    }

    #[test]
    fn short_test_epochs_recheck_within_a_tenth_of_the_epoch() {
        let t0 = Instant::now();
        let mut s = FetchSchedule::new(Duration::from_secs(60));
        s.gone(3, t0);
        assert!(!s.due(3, t0 + Duration::from_millis(5_900)));
        assert!(s.due(3, t0 + Duration::from_secs(6)));
    }
}
