//! The network engine: one per account. It connects to the account's
//! provider, keeps the PKI document fresh, sends queued mail as Sphinx packets
//! with SURB-ACKs and retransmission, and retrieves, reassembles and delivers
//! incoming mail into the account's [`Store`].
//!
//! Start one with [`Engine::start`]; stop it with [`Engine::stop`]. All state
//! that must survive a restart lives in the store, so an engine may be stopped
//! (or killed) at any point and started again on the same store.

mod arq;
mod clock;
mod connection;
mod discovery;
mod error;
mod pki;
mod receive;
mod reports;
mod send;
mod status;
mod upstream;
mod worker;

use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use error::EngineError;
pub use receive::PartialLimits;
pub use status::{ConnState, EngineStatus};
pub use upstream::{BoxStream, Stream, Upstream};

use crate::events::EventBus;
use crate::store::Store;

/// Looks up a recipient's end-to-end identity public key by address
/// (`user@provider`, lower case). `None`: unknown (the entry waits).
pub type RecipientKeys = Arc<dyn Fn(&str) -> Option<[u8; 32]> + Send + Sync>;

/// Stores a recipient key found by key discovery, exactly as `SET_RECIPIENT`
/// does (address `user@provider`, lower case). Called from a blocking context.
pub type StoreRecipientKey = Arc<dyn Fn(&str, &[u8; 32]) -> Result<(), String> + Send + Sync>;

/// Where a nonvoting PKI authority is and the key its documents are signed with.
#[derive(Debug, Clone)]
pub struct AuthorityConfig {
    /// `host:port` of the authority.
    pub address: String,
    /// The authority's Ed25519 public key.
    pub public_key: [u8; 32],
}

/// One peer of a set of voting authorities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VotingPeer {
    /// Its Ed25519 identity key: signs documents, and is the handshake AD.
    pub identity_key: [u8; 32],
    /// Its X25519 link key (the handshake's static key).
    pub link_key: [u8; 32],
    /// `host:port` addresses, tried in order.
    pub addresses: Vec<String>,
}

/// The account's PKI: one nonvoting authority, or a set of voting peers of
/// which `len/2 + 1` must sign a document.
#[derive(Debug, Clone)]
pub enum Pki {
    /// A nonvoting authority.
    Nonvoting(AuthorityConfig),
    /// Voting authority peers (at least one, identity keys distinct).
    Voting(Vec<VotingPeer>),
}

impl From<AuthorityConfig> for Pki {
    fn from(a: AuthorityConfig) -> Pki {
        Pki::Nonvoting(a)
    }
}

impl Pki {
    /// Where the documents come from, for logs (no keys).
    pub fn describe(&self) -> String {
        match self {
            Pki::Nonvoting(a) => a.address.clone(),
            Pki::Voting(peers) => format!(
                "voting authorities {}",
                peers
                    .iter()
                    .map(|p| p.addresses.first().map_or("?", String::as_str))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// Timings, all injectable so tests run fast.
#[derive(Debug, Clone)]
pub struct Timings {
    /// How often to poll the provider when its spool seemed empty.
    pub polling_interval: Duration,
    /// Added to a block's expected round trip before it is re-sent; the
    /// actual delay is randomised by +-25%.
    pub retransmit_slack: Duration,
    /// Shortest and longest wait between reconnection attempts.
    pub reconnect_min: Duration,
    /// See `reconnect_min`.
    pub reconnect_max: Duration,
    /// Handshake and I/O time limit on links.
    pub link_timeout: Duration,
    /// Length of an epoch (the network's EpochPeriod).
    pub epoch_period: Duration,
    /// Incomplete incoming messages older than this are dropped with a
    /// report (`None`: until they cannot complete any more, see
    /// [`Timings::partial_limit`]).
    pub receive_timeout: Option<Duration>,
    /// Wait before asking again for a PKI document that was not available.
    pub pki_retry: Duration,
    /// How often queue deadlines (bounces) are checked.
    pub housekeeping_interval: Duration,
    /// Within this window after an "undecryptable block" report, further
    /// undecryptable blocks do not produce new reports.
    pub report_coalesce: Duration,
    /// Key discovery gives up this long after it started (UrgentQueueLifetime).
    pub urgent_queue_lifetime: Duration,
    /// How long a sender keeps retransmitting (BounceQueueLifetime); bounds
    /// how long delivered-message (dedup) records are kept.
    pub bounce_queue_lifetime: Duration,
}

impl Timings {
    /// How long a "delivered" (dedup) record is kept: max(ReceiveTimeout,
    /// 2 x BounceQueueLifetime). A sender stops retransmitting at its bounce
    /// deadline, at most BounceQueueLifetime after submission and so after
    /// our delivery; every copy of a block therefore reaches our provider's
    /// spool within BounceQueueLifetime (plus mix delays of minutes) after
    /// we delivered, and is retrieved at our next drain. Keeping the record
    /// for a second BounceQueueLifetime covers us being offline that long
    /// with copies waiting. (Partial messages are dropped after
    /// ReceiveTimeout, so their late blocks never need a longer memory.)
    pub fn dedup_ttl(&self) -> Duration {
        let twice = self.bounce_queue_lifetime.saturating_mul(2);
        self.receive_timeout.map_or(twice, |r| r.max(twice))
    }

    /// How long an incomplete incoming message is kept: ReceiveTimeout, or
    /// without one 2 x BounceQueueLifetime, after which no missing block can
    /// still arrive (the sender stopped retransmitting; same reasoning as
    /// [`Timings::dedup_ttl`]). So the partial-message table is bounded in
    /// time even with ReceiveTimeout unset (the original kept them forever).
    pub fn partial_limit(&self) -> Duration {
        self.receive_timeout
            .unwrap_or(self.bounce_queue_lifetime.saturating_mul(2))
    }
}

impl Timings {
    /// The configured `[Debug]` knobs, the engine's own defaults for the rest.
    pub fn from_config(debug: &crate::config::DebugConfig) -> Timings {
        Timings {
            polling_interval: debug.polling_interval,
            retransmit_slack: debug.retransmit_slack,
            reconnect_min: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(60),
            link_timeout: Duration::from_secs(60),
            epoch_period: debug.epoch_period,
            receive_timeout: debug.receive_timeout,
            pki_retry: Duration::from_secs(30),
            housekeeping_interval: Duration::from_secs(1),
            report_coalesce: Duration::from_secs(3600),
            urgent_queue_lifetime: debug.urgent_queue_lifetime,
            bounce_queue_lifetime: debug.bounce_queue_lifetime,
        }
    }
}

/// The daemon's: the `[Debug]` knobs' defaults are the config's (one place).
impl Default for Timings {
    fn default() -> Self {
        Timings::from_config(&crate::config::DebugConfig::default())
    }
}

/// Everything one account's engine needs.
#[derive(Clone)]
pub struct EngineConfig {
    /// The account's user name at its provider (lower-cased for the wire).
    pub user: String,
    /// The provider's name (as in the PKI document).
    pub provider: String,
    /// The account's X25519 link private key.
    pub link_private: [u8; 32],
    /// The account's X25519 end-to-end identity private key.
    pub identity_private: [u8; 32],
    /// The PKI authority (nonvoting) or authorities (voting).
    pub authority: Pki,
    /// How every connection is made (directly or through the
    /// `[UpstreamProxy]`), and which descriptor transports are dialed.
    pub upstream: Arc<Upstream>,
    /// Expected provider identity key (overrides nothing: must also match the PKI).
    pub provider_key_pin: Option<[u8; 32]>,
    /// Send loop decoys on idle Poisson ticks.
    pub send_decoy_traffic: bool,
    /// Largest incoming message accepted, in blocks.
    pub max_incoming_blocks: u16,
    /// Bounds on incomplete incoming messages, per sender and in total.
    pub partial_limits: PartialLimits,
    /// Recipient key lookup.
    pub recipient_keys: RecipientKeys,
    /// Ask the recipient's provider's keyserver for unknown recipient keys
    /// (the account's `InsecureKeyDiscovery`).
    pub key_discovery: bool,
    /// Where discovered keys go.
    pub store_key: StoreRecipientKey,
    /// Timings.
    pub timings: Timings,
    /// Where the engine reports what happens (never message contents).
    pub events: EventBus,
}

impl std::fmt::Debug for EngineConfig {
    // Never print keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("user", &self.user)
            .field("provider", &self.provider)
            .field("authority", &self.authority.describe())
            .field("upstream", &self.upstream)
            .field("send_decoy_traffic", &self.send_decoy_traffic)
            .field("key_discovery", &self.key_discovery)
            .field("timings", &self.timings)
            .finish_non_exhaustive()
    }
}

impl EngineConfig {
    /// The account address `user@provider`, lower case.
    pub fn address(&self) -> String {
        format!("{}@{}", self.user, self.provider).to_ascii_lowercase()
    }
}

/// The receive path driven directly, without a network: for the
/// partial-flood benchmark (`benches/partial_flood.rs`) and its regression
/// test. Not part of the daemon's API.
#[doc(hidden)]
pub mod bench {
    use std::time::Duration;

    use super::receive;
    use super::{EngineError, PartialLimits};
    use crate::store::Store;

    /// What happened to one payload (the engine's own outcome, without its
    /// delivery details).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Outcome {
        /// Stored; its message is incomplete.
        Stored,
        /// It completed a message, now in the inbox.
        Delivered,
        /// Already held or already delivered.
        Duplicate,
        /// A report was put in the inbox.
        Reported,
        /// Unreadable and already reported, or refused at a limit.
        Dropped,
    }

    /// The engine's incoming reassembly state for one account.
    pub struct Incoming(receive::Incoming);

    impl Incoming {
        /// As the engine loads it at start.
        pub fn load(
            store: &Store,
            max_blocks: u16,
            coalesce: Duration,
            limits: PartialLimits,
            account: &str,
        ) -> Result<Self, EngineError> {
            receive::Incoming::load(store, max_blocks, coalesce, limits, account).map(Incoming)
        }

        /// Handles one retrieved user payload, as the engine does.
        pub fn accept(
            &mut self,
            store: &Store,
            identity_private: &[u8; 32],
            payload: &[u8],
            account: &str,
        ) -> Result<Outcome, EngineError> {
            use receive::Received;
            Ok(
                match self.0.accept(store, identity_private, payload, account)? {
                    Received::Stored => Outcome::Stored,
                    Received::Delivered(_) => Outcome::Delivered,
                    Received::Duplicate => Outcome::Duplicate,
                    Received::Reported => Outcome::Reported,
                    Received::Dropped => Outcome::Dropped,
                },
            )
        }

        /// How many partial messages the in-memory index holds, and their
        /// stored bytes.
        pub fn partial_usage(&self) -> (usize, u64) {
            self.0.partial_usage()
        }
    }
}

/// The send schedule driven directly, without a network: for the
/// scheduling benchmark (`benches/engine_schedule.rs`). Not part of the
/// daemon's API.
#[doc(hidden)]
pub mod schedule_bench {
    use std::sync::{Arc, Mutex};

    use super::worker::{Core, State};
    use super::{AuthorityConfig, EngineConfig, EngineError, PartialLimits, Timings, Upstream};
    use crate::events::EventBus;
    use crate::store::{unix_now, KvTable, NewQueueEntry, Store};

    /// Queues `n` entries to `recipient` (one shared message), each already
    /// prepared as one unsent block with a stored ciphertext, in a few
    /// large commits.
    pub fn fill_queue(store: &Store, n: usize, recipient: &str) -> Result<(), EngineError> {
        let far = unix_now() + 365 * 24 * 3600;
        let new: Vec<NewQueueEntry> = (0..n)
            .map(|_| NewQueueEntry {
                recipient: recipient.into(),
                created: unix_now(),
                bounce_at: far,
                unreliable: false,
            })
            .collect();
        let mut entries = store.enqueue("bench", b"Subject: x\r\n\r\nx\r\n", &new)?;
        for chunk in entries.chunks_mut(5_000) {
            for e in chunk.iter_mut() {
                e.blocks = vec![Default::default()];
                let mut state = vec![1u8];
                state.extend_from_slice(&[0; 16]);
                e.engine = state;
            }
            store.queue_update_many(chunk)?;
            let keys: Vec<Vec<u8>> = chunk
                .iter()
                .map(|e| super::send::ciphertext_key(e.id, 0))
                .collect();
            let puts: Vec<(KvTable, &[u8], &[u8])> = keys
                .iter()
                .map(|k| (KvTable::Meta, k.as_slice(), b"ciphertext".as_slice()))
                .collect();
            store.kv_batch(&puts, &[])?;
        }
        Ok(())
    }

    /// One account's send schedule, loaded from its store as the engine
    /// loads it.
    pub struct SendQueue {
        core: Arc<Core>,
        state: Mutex<State>,
    }

    impl SendQueue {
        /// Loads the schedule; every recipient's key is `recipient_key`,
        /// and an entry's ciphertexts are stored in commits of about
        /// `prepare_batch` bytes (0: one per block, as before batching).
        pub fn load(
            store: Store,
            recipient_key: [u8; 32],
            prepare_batch: Option<usize>,
        ) -> Result<SendQueue, EngineError> {
            let cfg = EngineConfig {
                user: "bench".into(),
                provider: "p".into(),
                link_private: [1; 32],
                identity_private: [2; 32],
                authority: AuthorityConfig {
                    address: String::new(),
                    public_key: [0; 32],
                }
                .into(),
                upstream: Arc::new(Upstream::direct()),
                provider_key_pin: None,
                send_decoy_traffic: false,
                max_incoming_blocks: 1,
                partial_limits: PartialLimits::default(),
                recipient_keys: Arc::new(move |_| Some(recipient_key)),
                key_discovery: false,
                store_key: Arc::new(|_, _| Ok(())),
                timings: Timings::default(),
                events: EventBus::new(1),
            };
            let mut core = Core::new(store, cfg, Arc::default());
            if let Some(b) = prepare_batch {
                core.prepare_batch = b;
            }
            let mut state = State::default();
            core.rebuild_schedule(&mut state)?;
            Ok(SendQueue {
                core: Arc::new(core),
                state: Mutex::new(state),
            })
        }

        /// Entries in the schedule.
        pub fn len(&self) -> usize {
            self.state.lock().map(|s| s.schedule.len()).unwrap_or(0)
        }

        /// Whether the schedule is empty.
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }

        /// A send tick's scheduling work: the next due block (preparing its
        /// entry if need be) and its ciphertext, read from the store.
        /// Returns the entry and block, if one was due.
        pub fn pick(&self) -> Result<Option<(u64, usize)>, EngineError> {
            let mut st = self.state.lock().map_err(|_| EngineError::Stopped)?;
            Ok(match self.core.next_due(&mut st)? {
                super::worker::Pick::Block(e, idx, _) => Some((e.id, idx)),
                _ => None,
            })
        }

        /// One housekeeping pass over the queue.
        pub fn housekeeping(&self) -> Result<(), EngineError> {
            let mut st = self.state.lock().map_err(|_| EngineError::Stopped)?;
            self.core.scan_queue(&mut st)
        }
    }
}

/// Runs store work (which may wait for a durable commit) in a blocking
/// task and waits for it, leaving the runtime's threads free.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, EngineError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(EngineError::Stopped),
    }
}

/// A request to the worker, answered at a point where it holds no queue
/// entry in flight.
pub(crate) enum Control {
    /// Cancel a queue entry.
    Cancel {
        id: u64,
        reply: tokio::sync::oneshot::Sender<Result<bool, EngineError>>,
    },
}

/// A running engine for one account.
pub struct Engine {
    stop: tokio::sync::watch::Sender<bool>,
    wake: Arc<tokio::sync::Notify>,
    status: Arc<Mutex<EngineStatus>>,
    control: tokio::sync::mpsc::Sender<Control>,
    /// For a cancel after the worker ended; released by [`Engine::stop`].
    store: Mutex<Option<Store>>,
    events: EventBus,
    account: String,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Engine {
    /// Starts the engine on the current tokio runtime (any flavour: store
    /// work runs in blocking tasks).
    pub fn start(store: Store, config: EngineConfig) -> Engine {
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let wake = Arc::new(tokio::sync::Notify::new());
        let status = Arc::new(Mutex::new(EngineStatus::default()));
        let (control, control_rx) = tokio::sync::mpsc::channel(16);
        let events = config.events.clone();
        let account = config.address();
        let worker = worker::Worker::new(
            store.clone(),
            config,
            status.clone(),
            wake.clone(),
            stop_rx,
            control_rx,
        );
        let task = tokio::spawn(worker.run());
        Engine {
            stop,
            wake,
            status,
            control,
            store: Mutex::new(Some(store)),
            events,
            account,
            task: Mutex::new(Some(task)),
        }
    }

    /// Tells the engine that the queue changed (a new submission): it looks
    /// at the queue at its next Poisson tick without waiting for housekeeping.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// A snapshot of the engine's status.
    pub fn status(&self) -> EngineStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Cancels queue entry `id`: the entry, its SURB records and stored
    /// ciphertexts go, and its message unless another entry shares it. No
    /// bounce. `Ok(false)` if there is no such entry; `Err(Stopped)` after
    /// [`Engine::stop`]. The worker does it
    /// between its own steps, so a cancel never races a send or an ACK;
    /// blocks already sent may still arrive at the recipient.
    pub async fn cancel(&self, id: u64) -> Result<bool, EngineError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if self
            .control
            .send(Control::Cancel { id, reply })
            .await
            .is_ok()
        {
            if let Ok(r) = answer.await {
                return r;
            }
        }
        // The worker has ended: nothing can race a direct removal.
        let store = self
            .store
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .ok_or(EngineError::Stopped)?;
        let removed = tokio::task::spawn_blocking(move || arq::cancel(&store, id))
            .await
            .map_err(|_| EngineError::Stopped)??;
        if removed {
            self.events
                .emit(&self.account, mailproxy_proto::EventKind::Cancelled { id });
        }
        Ok(removed)
    }

    /// Stops the engine and waits until it has released the store.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
        if let Ok(mut s) = self.store.lock() {
            s.take();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_and_partial_limits_follow_the_lifetimes() {
        let mut t = Timings {
            receive_timeout: None,
            bounce_queue_lifetime: Duration::from_secs(100),
            ..Timings::default()
        };
        assert_eq!(t.dedup_ttl(), Duration::from_secs(200));
        assert_eq!(t.partial_limit(), Duration::from_secs(200));
        t.receive_timeout = Some(Duration::from_secs(50));
        assert_eq!(t.dedup_ttl(), Duration::from_secs(200));
        assert_eq!(t.partial_limit(), Duration::from_secs(50));
        t.receive_timeout = Some(Duration::from_secs(500));
        assert_eq!(t.dedup_ttl(), Duration::from_secs(500));
        // The daemon's defaults: 5 days of retransmission, 10 days of memory,
        // and partial messages kept until they cannot complete (no
        // ReceiveTimeout, as the original's default of 0).
        let d = Timings::default();
        assert_eq!(d.dedup_ttl(), Duration::from_secs(10 * 24 * 3600));
        assert_eq!(d.receive_timeout, None);
        assert_eq!(d.partial_limit(), Duration::from_secs(10 * 24 * 3600));
        assert_eq!(d.epoch_period, katzenpost::epoch::DEFAULT_PERIOD);
    }

    #[test]
    fn configured_knobs_reach_the_engine() {
        let debug = crate::config::DebugConfig {
            receive_timeout: Some(Duration::from_secs(60)),
            polling_interval: Duration::from_secs(7),
            bounce_queue_lifetime: Duration::from_secs(99),
            ..Default::default()
        };
        let t = Timings::from_config(&debug);
        assert_eq!(t.receive_timeout, Some(Duration::from_secs(60)));
        assert_eq!(t.polling_interval, Duration::from_secs(7));
        assert_eq!(t.bounce_queue_lifetime, Duration::from_secs(99));
        assert_eq!(t.partial_limit(), Duration::from_secs(60));
    }
}
