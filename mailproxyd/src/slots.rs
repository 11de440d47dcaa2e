//! Fair connection slots, shared by the SMTP, POP3 and management listeners.
//!
//! A listener holds a bounded number of connections. A connection that has
//! not proved itself (not logged in; for the management socket, no valid
//! request yet) must not lock out a real client: when the listener is full,
//! the longest-idle unproven connection is evicted for the newcomer, and only
//! when nothing is evictable is the newcomer turned away. Unproven
//! connections also get a short deadline for their first valid command.
//!
//! The listener [`Slots::register`]s each accepted connection and hands the
//! [`Slot`] to its session, which [`Slot::touch`]es it on every valid
//! command, [`Slot::prove`]s it after a successful login, and selects on
//! [`Slot::cancelled`] while it waits for input: when that resolves, the
//! session says its protocol's goodbye and closes. Dropping the slot frees
//! it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// How a listener shares its slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotPolicy {
    /// Listener name for the logs.
    pub name: &'static str,
    /// Connections held at once.
    pub capacity: usize,
    /// Time an unproven connection gets, from its arrival, to send its first
    /// valid command.
    pub first_command_timeout: Duration,
    /// An unproven connection whose last valid command is more recent than
    /// this is not evicted (SMTP without AUTH, where activity is the only
    /// proof); zero where only [`Slot::prove`] protects.
    pub recent_activity: Duration,
}

/// Why [`Slot::cancelled`] resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// Evicted to make room for a newcomer.
    Evicted,
    /// No valid command within [`SlotPolicy::first_command_timeout`].
    FirstCommandTimeout,
}

/// The slots of one listener.
#[derive(Debug, Clone)]
pub struct Slots {
    registry: Arc<Mutex<Registry>>,
}

#[derive(Debug)]
struct Registry {
    policy: SlotPolicy,
    next_id: u64,
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    arrived: Instant,
    last_active: Instant,
    /// Sent at least one valid command.
    active: bool,
    proven: bool,
    /// Dropped on eviction, which wakes the session's [`Slot::cancelled`].
    _alive: watch::Sender<()>,
}

impl Entry {
    fn evictable(&self, now: Instant, recent: Duration) -> bool {
        !self.proven && (!self.active || now.duration_since(self.last_active) >= recent)
    }
}

impl Slots {
    /// Slots for a listener with `policy`.
    pub fn new(policy: SlotPolicy) -> Slots {
        Slots {
            registry: Arc::new(Mutex::new(Registry {
                policy,
                next_id: 0,
                entries: Vec::with_capacity(policy.capacity.min(1024)),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection: a free one, or the one of the
    /// longest-idle evictable connection, which is told to go. `None` when
    /// every slot is held by a connection that may not be evicted.
    pub fn register(&self) -> Option<Slot> {
        let now = Instant::now();
        let mut reg = self.lock();
        if reg.entries.len() >= reg.policy.capacity {
            let recent = reg.policy.recent_activity;
            let victim = reg
                .entries
                .iter()
                .enumerate()
                .filter(|(_, e)| e.evictable(now, recent))
                .min_by_key(|(_, e)| e.last_active)
                .map(|(i, _)| i)?;
            let evicted = reg.entries.swap_remove(victim);
            tracing::debug!(
                listener = reg.policy.name,
                idle_ms = now.duration_since(evicted.last_active).as_millis() as u64,
                "slots full: evicting the longest-idle unproven connection"
            );
        }
        let id = reg.next_id;
        reg.next_id += 1;
        let (alive, gone) = watch::channel(());
        reg.entries.push(Entry {
            id,
            arrived: now,
            last_active: now,
            active: false,
            proven: false,
            _alive: alive,
        });
        Some(Slot {
            held: Some(Held {
                slots: self.clone(),
                id,
                gone,
            }),
        })
    }

    /// Connections holding a slot.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no connection holds a slot.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut Entry)) {
        if let Some(e) = self.lock().entries.iter_mut().find(|e| e.id == id) {
            f(e);
        }
    }
}

/// One connection's slot; freed on drop. [`Slot::default`] is a slot outside
/// any registry: never cancelled.
#[derive(Debug, Default)]
pub struct Slot {
    held: Option<Held>,
}

#[derive(Debug)]
struct Held {
    slots: Slots,
    id: u64,
    gone: watch::Receiver<()>,
}

impl Slot {
    /// Records a valid command.
    pub fn touch(&self) {
        if let Some(h) = &self.held {
            let now = Instant::now();
            h.slots.update(h.id, |e| {
                e.active = true;
                e.last_active = now;
            });
        }
    }

    /// Marks the connection proven (logged in, or a live subscriber): it is
    /// never evicted from now on.
    pub fn prove(&self) {
        if let Some(h) = &self.held {
            let now = Instant::now();
            h.slots.update(h.id, |e| {
                e.active = true;
                e.proven = true;
                e.last_active = now;
            });
        }
    }

    /// Resolves when the connection must go: evicted for a newcomer, or
    /// still without a valid command when its first-command deadline passes.
    /// Never resolves for a proven connection that was not evicted. Cancel
    /// safe: select on it in every read.
    pub async fn cancelled(&self) -> Cancelled {
        let Some(h) = &self.held else {
            return std::future::pending().await;
        };
        let deadline = {
            let reg = h.slots.lock();
            let timeout = reg.policy.first_command_timeout;
            match reg.entries.iter().find(|e| e.id == h.id) {
                None => return Cancelled::Evicted,
                Some(e) if e.active || e.proven => None,
                Some(e) => Some(e.arrived + timeout),
            }
        };
        let mut gone = h.gone.clone();
        tokio::select! {
            // No value is ever sent: this ends when the entry is dropped.
            _ = gone.changed() => Cancelled::Evicted,
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => Cancelled::FirstCommandTimeout,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(h) = &self.held {
            h.slots.lock().entries.retain(|e| e.id != h.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

    fn policy(capacity: usize, recent_secs: u64) -> SlotPolicy {
        SlotPolicy {
            name: "test",
            capacity,
            first_command_timeout: Duration::from_secs(30),
            recent_activity: Duration::from_secs(recent_secs),
        }
    }

    /// Whether `fut` is ready without waiting.
    fn ready<F: Future>(fut: F) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut fut = std::pin::pin!(fut);
        match fut.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        }
    }

    async fn advance(secs: u64) {
        tokio::time::advance(Duration::from_secs(secs)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn full_listener_evicts_the_longest_idle_unproven() {
        let slots = Slots::new(policy(3, 0));
        let a = slots.register().unwrap();
        advance(1).await;
        let b = slots.register().unwrap();
        advance(1).await;
        let c = slots.register().unwrap();
        advance(1).await;
        // a is the oldest but has just sent a command: b is now the longest idle.
        a.touch();
        let d = slots.register().expect("an unproven connection makes room");
        assert_eq!(slots.len(), 3);
        assert_eq!(ready(b.cancelled()), Some(Cancelled::Evicted));
        // Evicted stays evicted, however often it is asked.
        assert_eq!(b.cancelled().await, Cancelled::Evicted);
        assert_eq!(ready(a.cancelled()), None);
        assert_eq!(ready(c.cancelled()), None);
        assert_eq!(ready(d.cancelled()), None);
        // Touching or proving an evicted slot changes nothing and frees nothing.
        b.prove();
        drop(b);
        assert_eq!(slots.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn proven_connections_are_never_evicted() {
        let slots = Slots::new(policy(2, 0));
        let old = slots.register().unwrap();
        old.prove();
        advance(100).await;
        let idle = slots.register().unwrap();
        advance(1).await;
        // old is idle far longer, but proven: the unproven one goes.
        let newcomer = slots.register().unwrap();
        assert_eq!(ready(idle.cancelled()), Some(Cancelled::Evicted));
        newcomer.prove();
        // Nothing evictable left: the next one is refused, nobody is evicted.
        assert!(slots.register().is_none());
        assert_eq!(ready(old.cancelled()), None);
        assert_eq!(ready(newcomer.cancelled()), None);
        // A slot freed by a session that ended is taken without eviction.
        drop(newcomer);
        assert_eq!(slots.len(), 1);
        let next = slots.register().unwrap();
        assert_eq!(ready(old.cancelled()), None);
        assert_eq!(ready(next.cancelled()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn recent_activity_protects_only_for_its_window() {
        let slots = Slots::new(policy(2, 30));
        let talker = slots.register().unwrap();
        talker.touch();
        advance(10).await;
        let silent = slots.register().unwrap();
        advance(5).await;
        // The talker is idle longer, but spoke within 30 s: the silent one goes.
        let n1 = slots.register().unwrap();
        assert_eq!(ready(silent.cancelled()), Some(Cancelled::Evicted));
        n1.touch();
        assert!(
            slots.register().is_none(),
            "both spoke recently: no one may be evicted"
        );
        advance(20).await;
        // Now the talker's last command is 35 s old (n1's only 20 s).
        let n2 = slots.register().unwrap();
        assert_eq!(ready(talker.cancelled()), Some(Cancelled::Evicted));
        assert_eq!(ready(n1.cancelled()), None);
        drop(n2);
    }

    #[tokio::test(start_paused = true)]
    async fn first_command_deadline_runs_from_arrival() {
        let slots = Slots::new(policy(4, 0));
        let quiet = slots.register().unwrap();
        let talker = slots.register().unwrap();
        let proven = slots.register().unwrap();
        proven.prove();
        advance(29).await;
        talker.touch();
        assert_eq!(ready(quiet.cancelled()), None);
        let start = Instant::now();
        assert_eq!(quiet.cancelled().await, Cancelled::FirstCommandTimeout);
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        // Sessions past their first command have no deadline from the slot.
        advance(3600).await;
        assert_eq!(ready(talker.cancelled()), None);
        assert_eq!(ready(proven.cancelled()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn eviction_wakes_a_waiting_session() {
        let slots = Slots::new(policy(1, 0));
        let idle = slots.register().unwrap();
        let waiter = tokio::spawn(async move { idle.cancelled().await });
        tokio::task::yield_now().await;
        let _newcomer = slots.register().unwrap();
        assert_eq!(waiter.await.unwrap(), Cancelled::Evicted);
    }

    #[tokio::test]
    async fn detached_slot_and_zero_capacity() {
        let detached = Slot::default();
        detached.touch();
        detached.prove();
        assert_eq!(ready(detached.cancelled()), None);
        let none = Slots::new(policy(0, 0));
        assert!(none.register().is_none());
        assert!(none.is_empty());
    }
}
