//! A mix or provider on the network: publishes its descriptor, fetches the
//! documents, accepts link sessions, processes packets (see
//! [`crate::process`]), holds them for their NodeDelay and forwards them
//! over node-to-node links. Providers also serve clients (SendPacket,
//! RetrieveMessage, GetConsensus), keep user spools and a management socket.

mod incoming;
mod outgoing;
mod pki;
pub mod provider;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use katzenpost::epoch::EpochClock;
use katzenpost::pki::document::Document;
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Params, Role};
use crate::mixkeys::MixKeyring;
use crate::process::{process_packet, DropReason, Ingress, NodeRole, Outcome};
use crate::replay::ReplayFilters;

/// Everything a node needs to start.
#[derive(Clone)]
pub struct NodeConfig {
    pub name: String,
    pub role: Role,
    pub identity: SigningKey,
    pub link_private: [u8; 32],
    pub address: SocketAddr,
    /// A provider's HTTP registration listener, if it serves one.
    pub registration: Option<SocketAddr>,
    /// The node's own directory (mix keys, provider spools and users).
    pub dir: PathBuf,
    pub params: Params,
    /// The authority, or every voting authority peer: descriptors go to
    /// each, documents come from the first that serves one signed by
    /// `len/2 + 1` of them.
    pub authorities: Vec<AuthorityEndpoint>,
    /// Apply the provider's per-client rate limiter.
    pub rate_limit: bool,
}

/// Where an authority listens and the keys it proves in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthorityEndpoint {
    pub address: SocketAddr,
    /// Ed25519 identity key (the handshake AD; signs documents).
    pub identity_key: [u8; 32],
    /// X25519 link key (a nonvoting authority's is its identity key's
    /// Montgomery form).
    pub link_key: [u8; 32],
}

/// Counters, for tests and the launcher's status line.
#[derive(Debug, Default)]
pub struct Counters {
    pub received: AtomicU64,
    pub forwarded: AtomicU64,
    pub spooled: AtomicU64,
    pub dropped_invalid: AtomicU64,
    pub dropped_replay: AtomicU64,
    pub dropped_other: AtomicU64,
    pub dropped_fault: AtomicU64,
    pub rate_limited: AtomicU64,
}

/// Shared state of a running node.
pub struct Node {
    pub config: NodeConfig,
    pub clock: EpochClock,
    keys: Mutex<MixKeyring>,
    replay: Mutex<ReplayFilters>,
    /// Verified documents by epoch, with their signed bytes (providers proxy them).
    documents: Mutex<BTreeMap<u64, (Document, Vec<u8>)>>,
    links: Mutex<HashMap<[u8; 32], tokio::sync::mpsc::Sender<Vec<u8>>>>,
    pub counters: Counters,
    /// Fault injection: the fraction (0.0 to 1.0) of received packets to drop.
    drop_fraction: Mutex<f64>,
    pub provider: Option<provider::ProviderState>,
    shutdown: watch::Receiver<bool>,
}

/// A running node: stop it with [`NodeHandle::stop`].
pub struct NodeHandle {
    pub node: Arc<Node>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl NodeHandle {
    /// Stops every task of the node and waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
    }
}

/// Errors starting a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Keys(#[from] crate::mixkeys::MixKeyError),
    #[error(transparent)]
    Provider(#[from] provider::ProviderError),
    #[error("registration endpoint: {0}")]
    Registration(String),
}

impl Node {
    /// Starts a node: binds its address and spawns its tasks.
    pub async fn spawn(config: NodeConfig) -> Result<NodeHandle, NodeError> {
        let listener = tokio::net::TcpListener::bind(config.address)
            .await
            .map_err(|source| NodeError::Listen {
                addr: config.address,
                source,
            })?;
        let clock = EpochClock::new(Duration::from_secs(config.params.epoch_period_secs));
        let mut keys = MixKeyring::open(&config.dir.join("mixkeys"))?;
        keys.ensure(&mut rand::rngs::OsRng, clock.now().epoch)?;
        let provider = match config.role {
            Role::Provider => Some(provider::ProviderState::open(&config.dir)?),
            Role::Mix => None,
        };
        let (stop, shutdown) = watch::channel(false);
        let node = Arc::new(Node {
            clock,
            keys: Mutex::new(keys),
            replay: Mutex::new(ReplayFilters::default()),
            documents: Mutex::new(BTreeMap::new()),
            links: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            drop_fraction: Mutex::new(0.0),
            provider,
            shutdown,
            config,
        });
        let mut tasks = vec![
            tokio::spawn(incoming::accept_loop(node.clone(), listener)),
            tokio::spawn(pki::pki_loop(node.clone())),
        ];
        if node.provider.is_some() {
            tasks.push(tokio::spawn(provider::management_loop(node.clone())));
            if let Some(addr) = node.config.registration {
                // The TLS material is the network's (the parent directory).
                let network_dir = node.config.dir.parent().unwrap_or(&node.config.dir);
                let tls = crate::registration::tls_config(network_dir)
                    .map_err(NodeError::Registration)?;
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| NodeError::Listen { addr, source })?;
                tasks.push(tokio::spawn(crate::registration::serve(
                    node.clone(),
                    listener,
                    tls,
                )));
            }
        }
        Ok(NodeHandle { node, stop, tasks })
    }

    /// The node's Ed25519 identity public key (its Sphinx node id).
    pub fn id(&self) -> [u8; 32] {
        self.config.identity.verifying_key().to_bytes()
    }

    /// Sets the fraction of received packets to drop (fault injection).
    pub fn set_drop_fraction(&self, f: f64) {
        *self.drop_fraction.lock().expect("lock") = f.clamp(0.0, 1.0);
    }

    /// The documents this node holds, by epoch.
    pub fn document(&self, epoch: u64) -> Option<Document> {
        self.documents
            .lock()
            .expect("lock")
            .get(&epoch)
            .map(|(d, _)| d.clone())
    }

    /// The signed bytes of the document for `epoch`, if held.
    pub fn signed_document(&self, epoch: u64) -> Option<Vec<u8>> {
        self.documents
            .lock()
            .expect("lock")
            .get(&epoch)
            .map(|(_, b)| b.clone())
    }

    fn descriptor_of(&self, id: &[u8; 32]) -> Option<katzenpost::pki::document::MixDescriptor> {
        let docs = self.documents.lock().expect("lock");
        docs.values()
            .rev()
            .find_map(|(d, _)| d.node_by_identity(id).cloned())
    }

    /// Handles one packet received from a client or node.
    pub(crate) fn handle_packet(self: &Arc<Self>, packet: Vec<u8>, ingress: Ingress) {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let f = *self.drop_fraction.lock().expect("lock");
        if f > 0.0 && rand::thread_rng().gen_bool(f) {
            self.counters.dropped_fault.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let now = self.clock.now();
        let outcome = {
            let keys = self.keys.lock().expect("lock");
            let mut replay = self.replay.lock().expect("lock");
            let role = match &self.provider {
                Some(p) => NodeRole::Provider(p),
                None => NodeRole::Mix,
            };
            process_packet(
                packet,
                ingress,
                &role,
                &keys,
                &mut replay,
                now,
                self.clock.period(),
            )
        };
        self.apply(outcome);
    }

    fn apply(self: &Arc<Self>, outcome: Outcome) {
        match outcome {
            Outcome::Forward {
                next,
                delay,
                packet,
            } => {
                let me = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if !me.stopping() {
                        me.forward(next, packet).await;
                    }
                });
            }
            Outcome::Spool { user, entry, ack } => {
                let Some(p) = &self.provider else { return };
                match p.spool(&user, &entry) {
                    Ok(()) => {
                        self.counters.spooled.fetch_add(1, Ordering::Relaxed);
                        if let Some(ack) = ack {
                            self.apply(*ack);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(node = %self.config.name, error = %e, "spool write failed")
                    }
                }
            }
            Outcome::Drop(reason) => {
                let c = match reason {
                    DropReason::Invalid(_) => &self.counters.dropped_invalid,
                    DropReason::Replay => &self.counters.dropped_replay,
                    _ => &self.counters.dropped_other,
                };
                c.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(node = %self.config.name, ?reason, "dropped a packet");
            }
        }
    }

    async fn forward(self: &Arc<Self>, next: [u8; 32], packet: Vec<u8>) {
        let tx = {
            let mut links = self.links.lock().expect("lock");
            match links.get(&next) {
                Some(tx) if !tx.is_closed() => tx.clone(),
                _ => {
                    let (tx, rx) = tokio::sync::mpsc::channel(1024);
                    links.insert(next, tx.clone());
                    tokio::spawn(outgoing::link_task(self.clone(), next, rx));
                    tx
                }
            }
        };
        if tx.try_send(packet).is_ok() {
            self.counters.forwarded.fetch_add(1, Ordering::Relaxed);
        } else {
            self.counters.dropped_other.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }
}
