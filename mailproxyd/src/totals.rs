//! `STATUS` counters that survive restarts: messages acknowledged, bounced
//! and delivered, packets sent and retransmissions. The engine counts from
//! its start; each account's store keeps the totals of earlier runs
//! (`kv_meta`), which [`Counted`] adds to what the engine reports. The
//! totals are saved every [`SAVE_EVERY`] and when the daemon stops, so a
//! crash loses at most that much counting (never mail).

use std::sync::Arc;
use std::time::Duration;

use crate::control::{BoxFuture, EngineHandle};
use crate::engine::EngineStatus;
use crate::store::{KvTable, Store, StoreError};

/// The `kv_meta` key of the totals.
const KEY: &[u8] = b"status_totals";
/// How often running totals are saved.
pub const SAVE_EVERY: Duration = Duration::from_secs(60);

/// The counters kept across restarts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Messages completed by acknowledgement.
    pub acknowledged: u64,
    /// Messages bounced.
    pub bounced: u64,
    /// Incoming messages delivered to the inbox.
    pub delivered: u64,
    /// Sphinx packets sent.
    pub packets_sent: u64,
    /// Retransmissions among them.
    pub retransmissions: u64,
}

impl Totals {
    fn fields(&self) -> [u64; 5] {
        [
            self.acknowledged,
            self.bounced,
            self.delivered,
            self.packets_sent,
            self.retransmissions,
        ]
    }

    fn from_fields(f: [u64; 5]) -> Totals {
        Totals {
            acknowledged: f[0],
            bounced: f[1],
            delivered: f[2],
            packets_sent: f[3],
            retransmissions: f[4],
        }
    }

    /// The engine's counters since its start.
    pub fn of(status: &EngineStatus) -> Totals {
        Totals {
            acknowledged: status.messages_acked,
            bounced: status.bounced,
            delivered: status.delivered,
            packets_sent: status.packets_sent,
            retransmissions: status.retransmissions,
        }
    }

    /// `status` with these totals added to its counters.
    pub fn add_to(&self, mut status: EngineStatus) -> EngineStatus {
        status.messages_acked = status.messages_acked.saturating_add(self.acknowledged);
        status.bounced = status.bounced.saturating_add(self.bounced);
        status.delivered = status.delivered.saturating_add(self.delivered);
        status.packets_sent = status.packets_sent.saturating_add(self.packets_sent);
        status.retransmissions = status.retransmissions.saturating_add(self.retransmissions);
        status
    }

    /// The totals saved in `store` (zero when none are, or they are
    /// unreadable: counters are not worth refusing to start over).
    pub fn load(store: &Store) -> Totals {
        match store.kv_get(KvTable::Meta, KEY) {
            Ok(Some(v)) if v.len() == 40 => {
                let mut f = [0u64; 5];
                for (n, chunk) in f.iter_mut().zip(v.chunks_exact(8)) {
                    *n = u64::from_be_bytes(chunk.try_into().unwrap_or_default());
                }
                Totals::from_fields(f)
            }
            Ok(None) => Totals::default(),
            Ok(Some(_)) => {
                tracing::warn!("status totals in the store are malformed; counting from zero");
                Totals::default()
            }
            Err(e) => {
                tracing::warn!(error = %e, "status totals unreadable; counting from zero");
                Totals::default()
            }
        }
    }

    /// Saves these totals in `store`.
    pub fn save(&self, store: &Store) -> Result<(), StoreError> {
        let bytes: Vec<u8> = self.fields().iter().flat_map(|n| n.to_be_bytes()).collect();
        store.kv_put(KvTable::Meta, KEY, &bytes)
    }
}

/// An engine handle whose status counts include the earlier runs' totals.
pub struct Counted {
    inner: Arc<dyn EngineHandle>,
    base: Totals,
    store: Store,
}

impl Counted {
    /// Wraps `inner`, adding the totals saved in `store` (read now:
    /// blocking).
    pub fn new(inner: Arc<dyn EngineHandle>, store: Store) -> Counted {
        Counted {
            base: Totals::load(&store),
            inner,
            store,
        }
    }

    /// Saves the current totals (blocking).
    pub fn save(&self) {
        let totals = Totals::of(&self.status());
        if let Err(e) = totals.save(&self.store) {
            tracing::warn!(error = %e, "saving the status totals failed");
        }
    }
}

impl EngineHandle for Counted {
    fn status(&self) -> EngineStatus {
        self.base.add_to(self.inner.status())
    }

    fn cancel(&self, id: u64) -> BoxFuture<'_, Result<bool, String>> {
        self.inner.cancel(id)
    }
}

/// Saves every account's totals every [`SAVE_EVERY`] until `stopped`
/// completes. The caller saves once more after the engines stopped.
pub async fn keep_saving(
    counted: Vec<Arc<Counted>>,
    stopped: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stopped);
    let mut tick = tokio::time::interval(SAVE_EVERY);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = tick.tick() => save_all(&counted).await,
        }
    }
}

/// Saves every account's totals, off the async threads.
pub async fn save_all(counted: &[Arc<Counted>]) {
    let counted = counted.to_vec();
    let _ = tokio::task::spawn_blocking(move || counted.iter().for_each(|c| c.save())).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(EngineStatus);

    impl EngineHandle for Fixed {
        fn status(&self) -> EngineStatus {
            self.0.clone()
        }
        fn cancel(&self, _id: u64) -> BoxFuture<'_, Result<bool, String>> {
            Box::pin(async { Ok(false) })
        }
    }

    fn engine(n: u64) -> Arc<dyn EngineHandle> {
        Arc::new(Fixed(EngineStatus {
            messages_acked: n,
            bounced: n + 1,
            delivered: n + 2,
            packets_sent: n + 3,
            retransmissions: n + 4,
            ..Default::default()
        }))
    }

    #[test]
    fn totals_survive_a_restart_and_add_up() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path(), &crate::store::KeySource::KeyFile).unwrap();
        assert_eq!(Totals::load(&store), Totals::default());
        // First run: the engine counted 10, 11, 12, 13, 14.
        let first = Counted::new(engine(10), store.clone());
        assert_eq!(first.status().delivered, 12);
        first.save();
        drop(first);
        drop(store);
        // Second run, reopened: its engine counts from zero again.
        let store = Store::open(d.path(), &crate::store::KeySource::KeyFile).unwrap();
        let second = Counted::new(engine(1), store.clone());
        let s = second.status();
        assert_eq!(
            (
                s.messages_acked,
                s.bounced,
                s.delivered,
                s.packets_sent,
                s.retransmissions
            ),
            (11, 13, 15, 17, 19)
        );
        second.save();
        assert_eq!(Totals::load(&store), Totals::of(&s));
        // Malformed: zero, not a failure.
        store.kv_put(KvTable::Meta, KEY, b"short").unwrap();
        assert_eq!(Totals::load(&store), Totals::default());
    }
}
