//! Keeps the Sent mailbox's delivery keywords live: subscribes to the
//! engines' events and records each settled queue entry on its Sent copy
//! (`$Queued` -> `$Delivered` / `$Bounced`, durably, see
//! [`Store::sent_settle`]). At start, and after missing events (a lagging
//! subscription), Sent copies whose queue entries are gone are reconciled
//! ([`Store::sent_reconcile`]). IMAP sessions see the change through the
//! store's change notification (IDLE included).
//!
//! [`Store::sent_settle`]: crate::store::Store::sent_settle
//! [`Store::sent_reconcile`]: crate::store::Store::sent_reconcile

use std::future::Future;
use std::sync::Arc;

use mailproxy_proto::{Event, EventKind};
use tokio::sync::broadcast;

use crate::store::{Directory, Settled};

async fn reconcile(dir: &Arc<dyn Directory>, accounts: &[String]) {
    for a in accounts {
        let Some(store) = dir.store(a) else { continue };
        match tokio::task::spawn_blocking(move || store.sent_reconcile()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(account = %a, error = %e, "Sent mailbox: reconcile failed")
            }
            Err(_) => {}
        }
    }
}

/// What an event says about a queue entry.
pub fn settlement(kind: &EventKind) -> Option<(u64, Settled)> {
    match kind {
        EventKind::Acknowledged { id } => Some((*id, Settled::Delivered)),
        EventKind::Bounced { id, .. } => Some((*id, Settled::Bounced)),
        EventKind::Cancelled { id } => Some((*id, Settled::Cancelled)),
        _ => None,
    }
}

/// Follows `events` (subscribed before the engines start) until `stop`.
pub async fn follow(
    mut events: broadcast::Receiver<Event>,
    dir: Arc<dyn Directory>,
    accounts: Vec<String>,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    reconcile(&dir, &accounts).await;
    loop {
        let ev = tokio::select! {
            _ = &mut stop => return,
            r = events.recv() => r,
        };
        match ev {
            Ok(ev) => {
                let Some((id, how)) = settlement(&ev.kind) else {
                    continue;
                };
                let Some(store) = dir.store(&ev.account) else {
                    continue;
                };
                match tokio::task::spawn_blocking(move || store.sent_settle(id, how)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(account = %ev.account, entry = id, error = %e, "Sent mailbox: keyword update failed")
                    }
                    Err(_) => {}
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "Sent mailbox: missed engine events; reconciling"
                );
                reconcile(&dir, &accounts).await;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
