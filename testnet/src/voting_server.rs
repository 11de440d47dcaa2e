//! The voting committee on the network: every second, the peers that are
//! up (not refusing connections) run one [`crate::voting::step`] together,
//! which exchanges their descriptors and, when a document is due, has each
//! of them compute, sign and publish it. The peers themselves serve
//! uploads and documents as [`Authority`] servers.

use std::future::Future;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use crate::authority::AuthorityState;
use crate::authority_server::Authority;
use crate::unix_now;
use crate::voting::{step, Participant};

/// The voting peers of one network.
pub struct Committee {
    peers: Vec<Arc<Authority>>,
}

impl Committee {
    /// A committee of these peers (every configured peer, up or not).
    pub fn new(peers: Vec<Arc<Authority>>) -> Self {
        Self { peers }
    }

    /// One step at `now_unix` among the peers that are up; the epochs for
    /// which a document was published.
    pub fn step(&self, now_unix: u64) -> Vec<u64> {
        let up: Vec<&Arc<Authority>> = self.peers.iter().filter(|p| !p.is_down()).collect();
        // Always locked in configured order; a connection handler holds one
        // lock at a time, so this cannot deadlock.
        let mut guards: Vec<MutexGuard<'_, AuthorityState>> = up
            .iter()
            .map(|p| p.state.lock().expect("authority lock"))
            .collect();
        let mut participants: Vec<Participant<'_>> = guards
            .iter_mut()
            .zip(&up)
            .map(|(state, p)| Participant { key: &p.key, state })
            .collect();
        step(&mut participants, self.peers.len(), now_unix)
    }

    /// Runs a step every second until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    for epoch in self.step(unix_now()) {
                        tracing::info!(epoch, "voting authorities: published a multi-signed document");
                    }
                }
            }
        }
    }
}
