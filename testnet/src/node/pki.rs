//! A node's PKI duties: keep mix keys for the coming epochs, upload its
//! descriptor for the current and next epoch until each authority (or
//! voting peer) accepts it, and fetch the documents for both, accepting one
//! signed by `len/2 + 1` of the authorities (one of one when nonvoting).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use katzenpost::pki::voting::VotingPeers;
use katzenpost::wire::commands::{consensus_status, descriptor_status, Command};
use katzenpost::wire::handshake::{ed25519_secret_to_x25519, ExpectPeer, LocalIdentity};
use katzenpost::wire::session::SessionConfig;

use super::Node;
use crate::descriptor::{signed_descriptor, NodeFacts};
use crate::link::{request, session_config};
use crate::unix_now;

pub(super) async fn pki_loop(node: Arc<Node>) {
    // (authority index, epoch) pairs whose upload was accepted.
    let mut posted: BTreeSet<(usize, u64)> = BTreeSet::new();
    loop {
        tick(&node, &mut posted).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn tick(node: &Arc<Node>, posted: &mut BTreeSet<(usize, u64)>) {
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
        for (i, (addr, config)) in configs.iter().enumerate() {
            if !posted.contains(&(i, e)) && post(node, addr, config, e).await {
                posted.insert((i, e));
            }
        }
        if node.documents.lock().expect("lock").contains_key(&e) {
            continue;
        }
        for (addr, config) in &configs {
            let Ok(Command::Consensus {
                error_code: consensus_status::OK,
                payload,
            }) = request(addr, config, &Command::GetConsensus { epoch: e }).await
            else {
                continue;
            };
            match verifier.verify(&payload, e, unix_now()) {
                Ok(v) => {
                    node.documents
                        .lock()
                        .expect("lock")
                        .insert(e, (v.document, payload));
                    break;
                }
                Err(err) => {
                    tracing::warn!(node = %node.config.name, epoch = e, authority = %addr, check = err.check(), error = %err, "bad document from the authority")
                }
            }
        }
    }
}

/// Uploads the node's descriptor for epoch `e` to one authority; true once
/// it holds it.
async fn post(node: &Arc<Node>, addr: &str, config: &SessionConfig, e: u64) -> bool {
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
    let desc = signed_descriptor(
        facts,
        &node.config.identity,
        keys,
        unix_now(),
        node.config.params.epoch_period_secs,
    );
    let Ok(desc) = desc else { return false };
    let cmd = Command::PostDescriptor {
        epoch: e,
        payload: desc.signed,
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
