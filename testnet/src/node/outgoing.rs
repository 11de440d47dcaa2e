//! Node-to-node links: one task per next hop, dialling it with the node's
//! link key and identity, and sending the packets queued for it. A failed
//! link is re-dialled; packets in flight on it are lost (the senders
//! retransmit), as on the real network.

use std::sync::Arc;
use std::time::Duration;

use katzenpost::wire::commands::Command;
use katzenpost::wire::handshake::{ExpectPeer, LocalIdentity};
use tokio::sync::mpsc::Receiver;

use super::Node;
use crate::link::{dial, session_config};

pub(super) async fn link_task(node: Arc<Node>, next: [u8; 32], rx: Receiver<Vec<u8>>) {
    let mut stop = node.shutdown.clone();
    tokio::select! {
        _ = stop.wait_for(|s| *s) => {}
        _ = run_link(node.clone(), next, rx) => {}
    }
}

async fn run_link(node: Arc<Node>, next: [u8; 32], mut rx: Receiver<Vec<u8>>) {
    let mut backoff = Duration::from_millis(100);
    while !node.stopping() {
        let Some(desc) = node.descriptor_of(&next) else {
            // Unknown next hop: drop what is queued for it and stop.
            tracing::debug!(node = %node.config.name, "next hop not in any document");
            return;
        };
        let Some(addr) = desc.addresses.get("tcp4").and_then(|a| a.first()).cloned() else {
            return;
        };
        let Ok(identity) = LocalIdentity::new(node.config.link_private, node.id().to_vec()) else {
            return;
        };
        let config = session_config(identity, Arc::new(ExpectPeer::from_descriptor(&desc)));
        let mut session = match dial(&addr, &config).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(node = %node.config.name, peer = %desc.name, error = %e, "link dial failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        loop {
            let Some(packet) = rx.recv().await else {
                return;
            };
            if let Err(e) = session.send(&Command::SendPacket(packet).encode()).await {
                tracing::debug!(node = %node.config.name, peer = %desc.name, error = %e, "link send failed");
                break;
            }
        }
    }
}
