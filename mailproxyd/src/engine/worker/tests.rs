//! The worker against a fake provider link, in paused time: sending,
//! retransmission, fairness, bounces and a draining fetch, each in
//! milliseconds and without a network.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use katzenpost::block::{encrypt_block, fragment};
use katzenpost::pki::document::{Document, MixDescriptor, Parameters};
use katzenpost::wire::commands::Command;
use mailproxy_proto::EventKind;
use rand::RngCore;
use tokio::sync::{broadcast, mpsc, watch, Notify};

use super::link::ProviderLink;
use super::session::SessionState;
use super::Worker;
use crate::engine::pki::Documents;
use crate::engine::{
    AuthorityConfig, EngineConfig, EngineError, EngineStatus, PartialLimits, Timings, Upstream,
};
use crate::events::EventBus;
use crate::store::{KeySource, NewQueueEntry, StorageKey, Store};

fn random32() -> [u8; 32] {
    let mut k = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut k);
    k
}

fn x25519_public(private: &[u8; 32]) -> [u8; 32] {
    x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*private)).to_bytes()
}

/// A node with mix keys for the epochs around `epoch`.
fn node(name: &str, layer: u8, epoch: u64) -> MixDescriptor {
    MixDescriptor {
        name: name.into(),
        identity_key: random32(),
        link_key: random32(),
        mix_keys: (epoch.saturating_sub(1)..epoch + 4)
            .map(|e| (e, x25519_public(&random32())))
            .collect(),
        addresses: BTreeMap::new(),
        kaetzchen: BTreeMap::new(),
        layer,
        load_weight: 0,
        signed: Vec::new(),
    }
}

/// A two-layer network with providers p1 (ours) and p2, for `epoch`.
fn document(epoch: u64) -> Document {
    Document {
        epoch,
        params: Parameters {
            mu: 1.0 / 100.0,
            mu_max_delay: 500,
            lambda_p: 1.0 / 200.0,
            lambda_p_max_delay: 1000,
            ..Parameters::default()
        },
        topology: vec![vec![node("m1", 0, epoch)], vec![node("m2", 1, epoch)]],
        providers: vec![node("p1", 255, epoch), node("p2", 255, epoch)],
        ..Document::default()
    }
}

/// What the fake provider saw and answers.
#[derive(Default)]
struct Provider {
    /// Spool entries handed out in order to RetrieveMessage.
    spool: VecDeque<Vec<u8>>,
    /// The sequence number the spool's first entry was handed out under.
    handed: Option<u32>,
}

/// A link whose commands go to the test; RetrieveMessage is answered from
/// the spool.
struct FakeLink {
    sent: mpsc::UnboundedSender<Command>,
    provider: Arc<Mutex<Provider>>,
    /// The reply to the last command, if it wants one.
    reply: Option<Command>,
}

impl ProviderLink for FakeLink {
    async fn send(&mut self, cmd: &Command) -> Result<(), EngineError> {
        if let Command::RetrieveMessage { sequence } = cmd {
            let mut p = self.provider.lock().unwrap();
            let sequence = *sequence;
            // The RetrieveMessage after an entry acknowledges it.
            if p.handed.is_some_and(|s| s.wrapping_add(1) == sequence) {
                p.spool.pop_front();
            }
            let reply = match p.spool.front() {
                Some(payload) => Command::Message {
                    queue_size_hint: (p.spool.len() - 1) as u8,
                    sequence,
                    payload: payload.clone(),
                },
                None => Command::MessageEmpty { sequence },
            };
            p.handed = matches!(reply, Command::Message { .. }).then_some(sequence);
            self.reply = Some(reply);
        }
        let _ = self.sent.send(cmd.clone());
        Ok(())
    }

    async fn recv(&mut self, _timeout: Duration) -> Result<Command, EngineError> {
        self.reply
            .take()
            .ok_or_else(|| EngineError::Protocol("no reply expected".into()))
    }
}

struct Harness {
    store: Store,
    status: Arc<Mutex<EngineStatus>>,
    events: broadcast::Receiver<mailproxy_proto::Event>,
    sent: mpsc::UnboundedReceiver<Command>,
    provider: Arc<Mutex<Provider>>,
    bob_private: [u8; 32],
    alice_public: [u8; 32],
    _stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

const SLACK: Duration = Duration::from_secs(60);

fn timings() -> Timings {
    Timings {
        retransmit_slack: SLACK,
        polling_interval: Duration::from_secs(10),
        ..Timings::default()
    }
}

/// A store for alice@p1 with `queue` (recipient, message, bounce_at)
/// queued, and a worker running one session over a fake link. bob@p2's key
/// is known unless `bob_known` is false.
async fn start(queue: &[(&str, Vec<u8>, u64)], bob_known: bool) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &KeySource::Raw(StorageKey::from_bytes([5; 32]))).unwrap();
    for (to, msg, bounce_at) in queue {
        let e = NewQueueEntry {
            recipient: (*to).into(),
            created: 1,
            bounce_at: *bounce_at,
            unreliable: false,
        };
        store.enqueue("alice", msg, &[e]).unwrap();
    }
    let (identity_private, bob_private) = (random32(), random32());
    let bob_public = x25519_public(&bob_private);
    let events = EventBus::new(4096);
    let authority = AuthorityConfig {
        address: "127.0.0.1:9".into(),
        public_key: ed25519_dalek::SigningKey::from_bytes(&random32())
            .verifying_key()
            .to_bytes(),
    };
    let cfg = EngineConfig {
        user: "alice".into(),
        provider: "p1".into(),
        link_private: random32(),
        identity_private,
        authority: authority.into(),
        upstream: Arc::new(Upstream::direct()),
        provider_key_pin: None,
        send_decoy_traffic: false,
        max_incoming_blocks: 64,
        partial_limits: PartialLimits::default(),
        recipient_keys: Arc::new(move |r| (bob_known && r == "bob@p2").then_some(bob_public)),
        key_discovery: false,
        store_key: Arc::new(|_, _| Ok(())),
        timings: timings(),
        events: events.clone(),
    };
    let mut docs = Documents::new(&cfg.authority, cfg.timings.epoch_period).unwrap();
    let epoch = docs.epoch();
    docs.insert(document(epoch));
    docs.insert(document(epoch + 1));
    let status = Arc::new(Mutex::new(EngineStatus::default()));
    let (stop, stop_rx) = watch::channel(false);
    let (_control, control_rx) = mpsc::channel(1);
    let subscription = events.subscribe();
    let mut worker = Worker::new(
        store.clone(),
        cfg,
        status.clone(),
        Arc::new(Notify::new()),
        stop_rx,
        control_rx,
    );
    let (sent_tx, sent) = mpsc::unbounded_channel();
    let provider = Arc::new(Mutex::new(Provider::default()));
    let link = FakeLink {
        sent: sent_tx,
        provider: provider.clone(),
        reply: None,
    };
    tokio::spawn(async move {
        let _control = _control;
        worker.core.run(|c, st| c.load(st)).await.unwrap();
        let mut sess = SessionState::new(link);
        let r = worker.session_loop(&mut sess, &mut docs).await;
        assert!(matches!(r, Err(EngineError::Stopped)), "{r:?}");
    });
    Harness {
        store,
        status,
        events: subscription,
        sent,
        provider,
        bob_private,
        alice_public: x25519_public(&identity_private),
        _stop: stop,
        _dir: dir,
    }
}

impl Harness {
    /// The next packet the worker sends (other commands skipped).
    async fn next_packet(&mut self) {
        loop {
            match self.sent.recv().await.expect("the worker ended") {
                Command::SendPacket(_) => return,
                _ => continue,
            }
        }
    }

    /// Waits for the first event `f` picks.
    async fn event<T>(&mut self, mut f: impl FnMut(&EventKind) -> Option<T>) -> T {
        loop {
            let e = self.events.recv().await.expect("events");
            if let Some(v) = f(&e.kind) {
                return v;
            }
        }
    }

    fn status(&self) -> EngineStatus {
        self.status.lock().unwrap().clone()
    }
}

fn message(bytes: usize) -> Vec<u8> {
    let mut m = b"Subject: test\r\n\r\n".to_vec();
    m.resize(bytes, b'x');
    m
}

#[tokio::test(start_paused = true)]
async fn an_unacknowledged_block_is_sent_again_after_its_slack() {
    let mut h = start(&[("bob@p2", message(500), 0)], true).await;
    h.next_packet().await;
    let first = tokio::time::Instant::now();
    assert_eq!(h.status().retransmissions, 0);
    h.next_packet().await;
    let waited = first.elapsed();
    // ETA plus RetransmitSlack randomised by +-25%, in whole seconds.
    assert!(
        waited >= SLACK.mul_f64(0.75) - Duration::from_secs(1),
        "{waited:?}"
    );
    assert!(
        waited <= SLACK.mul_f64(1.25) + Duration::from_secs(5),
        "{waited:?}"
    );
    assert_eq!(h.status().retransmissions, 1);
    assert_eq!(h.status().packets_sent, 2);
}

#[tokio::test(start_paused = true)]
async fn an_entry_bounces_at_its_deadline() {
    let deadline = crate::engine::clock::unix_now() + 30;
    // No key for carol: the entry waits, then bounces.
    let mut h = start(&[("carol@p2", message(300), deadline)], true).await;
    let id = h
        .event(|k| match k {
            EventKind::Queued { id, .. } => Some(*id),
            _ => None,
        })
        .await;
    let (bounced, to) = h
        .event(|k| match k {
            EventKind::Bounced { id, to, .. } => Some((*id, to.clone())),
            _ => None,
        })
        .await;
    assert_eq!((bounced, to.as_str()), (id, "carol@p2"));
    assert!(crate::engine::clock::unix_now() >= deadline);
    assert_eq!(h.store.queue_len().unwrap(), 0);
    assert_eq!(h.store.inbox_len().unwrap(), 1, "the bounce report");
    assert_eq!(h.status().bounced, 1);
    assert_eq!(h.status().packets_sent, 0);
}

#[tokio::test(start_paused = true)]
async fn a_fetch_drains_the_spool_in_one_go() {
    let mut h = start(&[], true).await;
    // A message of three blocks from bob, waiting at the provider.
    let blocks = fragment([7; 16], &message(120_000)).unwrap();
    assert!(blocks.len() >= 3, "{} blocks", blocks.len());
    {
        let mut p = h.provider.lock().unwrap();
        for b in &blocks {
            p.spool
                .push_back(encrypt_block(&h.bob_private, &h.alice_public, b).unwrap());
        }
    }
    let start = tokio::time::Instant::now();
    let delivered = h
        .event(|k| match k {
            EventKind::Delivered { size, .. } => Some(*size),
            _ => None,
        })
        .await;
    assert!(delivered >= 120_000, "{delivered} bytes delivered");
    // One drain, not one block per polling interval.
    assert!(start.elapsed() < timings().polling_interval);
    let mut seqs = Vec::new();
    while let Ok(c) = h.sent.try_recv() {
        if let Command::RetrieveMessage { sequence } = c {
            seqs.push(sequence);
        }
    }
    assert_eq!(
        &seqs[..blocks.len()],
        (0..blocks.len() as u32).collect::<Vec<_>>()
    );
    assert_eq!(h.store.inbox_len().unwrap(), 1);
    assert_eq!(h.status().delivered, 1);
}

#[tokio::test(start_paused = true)]
async fn a_small_message_is_not_held_behind_a_large_one() {
    let big = message(20 << 20);
    let mut h = start(&[("bob@p2", big, 0), ("bob@p2", message(441), 0)], true).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(
            h.event(|k| match k {
                EventKind::Queued { id, .. } => Some(*id),
                _ => None,
            })
            .await,
        );
    }
    let (big_id, small_id) = (ids[0], ids[1]);
    // Wait until the small message has gone out entirely.
    loop {
        let sent = h
            .event(|k| match k {
                EventKind::Sent { id, .. } => Some(*id),
                _ => None,
            })
            .await;
        if sent == small_id {
            break;
        }
        assert_ne!(sent, big_id, "the large message went out first");
    }
    // Its block had the second slot (the first went to the large one).
    let slots = h.status().packets_sent;
    assert!(slots <= 2, "the small message waited {slots} slots");
}
