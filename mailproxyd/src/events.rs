//! The daemon's event bus: engines (and anything else) emit
//! [`mailproxy_proto::Event`]s; management clients subscribed with `EVENTS`
//! receive them. Emitting never blocks and never fails: with no subscriber
//! the event is dropped, and a subscriber that reads too slowly loses the
//! oldest events (it is told how many, as `LAGGED`).

use mailproxy_proto::{Event, EventKind};
use tokio::sync::broadcast;

/// A cheap, cloneable handle for emitting and subscribing.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl EventBus {
    /// A bus that buffers up to `capacity` events per slow subscriber.
    pub fn new(capacity: usize) -> EventBus {
        let (tx, _) = broadcast::channel(capacity.max(1));
        EventBus { tx }
    }

    /// Emits an event for `account`, stamped with the current time.
    pub fn emit(&self, account: &str, kind: EventKind) {
        let time_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        // An error only means nobody is listening.
        let _ = self.tx.send(Event {
            time_ms,
            account: account.to_owned(),
            kind,
        });
    }

    /// A new subscription: events emitted from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new(1024)
    }
}

/// Announces an account's store failing (with the OS error) and recovering,
/// until `stop` resolves or the store is gone.
pub async fn follow_store_health(
    events: EventBus,
    account: String,
    mut health: tokio::sync::watch::Receiver<crate::store::Health>,
    stop: impl std::future::Future<Output = ()>,
) {
    use crate::store::Health;
    tokio::pin!(stop);
    let mut failing = false;
    loop {
        let now = health.borrow_and_update().clone();
        match now {
            Health::Failing { error, full, .. } if !failing => {
                failing = true;
                events.emit(&account, EventKind::StoreFailing { error, full });
            }
            Health::Ok if failing => {
                failing = false;
                events.emit(&account, EventKind::StoreRecovered);
            }
            _ => {}
        }
        tokio::select! {
            r = health.changed() => if r.is_err() { return },
            _ = &mut stop => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_get_events_emitted_after_they_subscribe() {
        let bus = EventBus::new(4);
        bus.emit("a@p", EventKind::ConnectionUp); // nobody listens: dropped, no error
        let mut rx = bus.subscribe();
        bus.clone().emit("a@p", EventKind::Acknowledged { id: 7 });
        let e = rx.recv().await.unwrap();
        assert_eq!(e.account, "a@p");
        assert_eq!(e.kind, EventKind::Acknowledged { id: 7 });
        assert!(e.time_ms > 1_600_000_000_000);
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_how_much_it_lost() {
        let bus = EventBus::new(2);
        let mut rx = bus.subscribe();
        for id in 0..5 {
            bus.emit("a@p", EventKind::Cancelled { id });
        }
        match rx.recv().await {
            Err(broadcast::error::RecvError::Lagged(n)) => assert_eq!(n, 3),
            other => panic!("expected a lag, got {other:?}"),
        }
        assert_eq!(
            rx.recv().await.unwrap().kind,
            EventKind::Cancelled { id: 3 }
        );
    }
}
