//! A node's PKI duties: keep mix keys for the coming epochs, upload its
//! descriptor for the current and next epoch until the authority accepts
//! it, and fetch the documents for both.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use katzenpost::pki::document::Document;
use katzenpost::wire::commands::{consensus_status, descriptor_status, Command};
use katzenpost::wire::handshake::{ed25519_secret_to_x25519, ExpectPeer, LocalIdentity};

use super::Node;
use crate::descriptor::{signed_descriptor, NodeFacts};
use crate::link::{request, session_config};
use crate::unix_now;

pub(super) async fn pki_loop(node: Arc<Node>) {
    let mut posted: BTreeSet<u64> = BTreeSet::new();
    loop {
        tick(&node, &mut posted).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn tick(node: &Arc<Node>, posted: &mut BTreeSet<u64>) {
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
    posted.retain(|e| *e + 1 >= epoch);

    let Ok(authority) = ExpectPeer::authority(&node.config.authority_key) else {
        return;
    };
    let id_x25519 = ed25519_secret_to_x25519(&node.config.identity.to_bytes());
    let Ok(identity) = LocalIdentity::new(*id_x25519, node.id().to_vec()) else {
        return;
    };
    let config = session_config(identity, Arc::new(authority));
    let addr = node.config.authority_address.to_string();
    for e in [epoch, epoch + 1] {
        if !posted.contains(&e) {
            let keys = node.keys.lock().expect("lock").public_keys(e);
            let facts = NodeFacts {
                name: &node.config.name,
                role: node.config.role,
                link_public: katzenpost::sphinx::public_key(&node.config.link_private),
                address: node.config.address,
            };
            let desc = signed_descriptor(
                facts,
                &node.config.identity,
                keys,
                unix_now(),
                node.config.params.epoch_period_secs,
            );
            let Ok(desc) = desc else { continue };
            match request(
                &addr,
                &config,
                &Command::PostDescriptor {
                    epoch: e,
                    payload: desc.signed,
                },
            )
            .await
            {
                Ok(Command::PostDescriptorStatus {
                    error_code: descriptor_status::OK,
                }) => {
                    posted.insert(e);
                }
                Ok(Command::PostDescriptorStatus {
                    error_code: descriptor_status::CONFLICT,
                }) => {
                    // The authority holds another of our descriptors (e.g. from before a restart).
                    posted.insert(e);
                }
                Ok(other) => {
                    tracing::warn!(node = %node.config.name, epoch = e, ?other, "descriptor refused")
                }
                Err(err) => {
                    tracing::debug!(node = %node.config.name, error = %err, "authority unreachable")
                }
            }
        }
        if node.documents.lock().expect("lock").contains_key(&e) {
            continue;
        }
        if let Ok(Command::Consensus {
            error_code: consensus_status::OK,
            payload,
        }) = request(&addr, &config, &Command::GetConsensus { epoch: e }).await
        {
            let key = ed25519_dalek::VerifyingKey::from_bytes(&node.config.authority_key);
            match key.map(|k| Document::verify_and_parse(&payload, &k, unix_now())) {
                Ok(Ok(doc)) if doc.epoch == e => {
                    node.documents
                        .lock()
                        .expect("lock")
                        .insert(e, (doc, payload));
                }
                _ => {
                    tracing::warn!(node = %node.config.name, epoch = e, "bad document from the authority")
                }
            }
        }
    }
}
