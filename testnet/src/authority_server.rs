//! An authority on the network: one command per connection (GetConsensus
//! from anyone, PostDescriptor from whitelisted nodes). A nonvoting
//! authority also runs a periodic document generation tick; a voting peer
//! has its own link key, leaves documents to the committee
//! ([`crate::voting_server`]) and may apply a [`ServeFault`] (tests).

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use katzenpost::wire::commands::consensus_status;
use katzenpost::wire::commands::Command;
use katzenpost::wire::handshake::{ed25519_secret_to_x25519, AuthorityPolicy, LocalIdentity};
use katzenpost::wire::session::Session;
use rand::rngs::OsRng;
use tokio::net::{TcpListener, TcpStream};

use crate::authority::AuthorityState;
use crate::link::session_config;
use crate::unix_now;
use crate::voting::{apply_fault, ServeFault};

/// A running authority's shared state.
pub struct Authority {
    pub(crate) state: Mutex<AuthorityState>,
    pub(crate) key: SigningKey,
    link_private: [u8; 32],
    /// Nonvoting: makes its own documents.
    generates: bool,
    nodes: HashSet<[u8; 32]>,
    /// Fault injection: refuse every connection while set (a voting peer
    /// that refuses also stays out of the committee's rounds).
    pub refuse: AtomicBool,
    /// Fault injection: how the documents served are spoilt, if at all.
    pub fault: Mutex<Option<ServeFault>>,
}

impl Authority {
    /// Wraps the nonvoting authority logic for serving (link key derived
    /// from the identity key).
    pub fn new(key: SigningKey, state: AuthorityState, nodes: HashSet<[u8; 32]>) -> Arc<Self> {
        let link_private = *ed25519_secret_to_x25519(&key.to_bytes());
        Self::build(key, link_private, true, state, nodes)
    }

    /// A voting peer with its own link key.
    pub fn voting_peer(
        key: SigningKey,
        link_private: [u8; 32],
        state: AuthorityState,
        nodes: HashSet<[u8; 32]>,
    ) -> Arc<Self> {
        Self::build(key, link_private, false, state, nodes)
    }

    fn build(
        key: SigningKey,
        link_private: [u8; 32],
        generates: bool,
        state: AuthorityState,
        nodes: HashSet<[u8; 32]>,
    ) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(state),
            key,
            link_private,
            generates,
            nodes,
            refuse: AtomicBool::new(false),
            fault: Mutex::new(None),
        })
    }

    /// Whether the fault injection says this authority is down.
    pub fn is_down(&self) -> bool {
        self.refuse.load(Ordering::Relaxed)
    }

    /// Sets (or clears) the fault applied to served documents.
    pub fn set_fault(&self, fault: Option<ServeFault>) {
        *self.fault.lock().expect("fault lock") = fault;
    }

    /// The signed document for `epoch` this authority holds (unspoilt).
    pub fn document(&self, epoch: u64) -> Option<Vec<u8>> {
        self.state
            .lock()
            .expect("authority lock")
            .signed_document(epoch)
    }

    /// The descriptors this authority accepted for `epoch`, by identity key.
    pub fn descriptors(&self, epoch: u64) -> Vec<katzenpost::pki::document::MixDescriptor> {
        self.state
            .lock()
            .expect("authority lock")
            .descriptors(epoch)
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let ticker = self.generates.then(|| {
            let me = self.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let made = me
                        .state
                        .lock()
                        .expect("authority lock")
                        .generate_due(&mut OsRng, unix_now());
                    for e in made {
                        tracing::info!(epoch = e, "authority: published document");
                    }
                }
            })
        });
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    if self.refuse.load(Ordering::Relaxed) {
                        drop(stream);
                        continue;
                    }
                    let me = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = me.handle(stream).await {
                            tracing::debug!(error = %e, "authority: connection failed");
                        }
                    });
                }
            }
        }
        if let Some(t) = ticker {
            t.abort();
        }
    }

    async fn handle(&self, stream: TcpStream) -> Result<(), crate::link::NetError> {
        let identity = LocalIdentity::new(
            self.link_private,
            self.key.verifying_key().to_bytes().to_vec(),
        )?;
        let config = session_config(
            identity,
            Arc::new(AuthorityPolicy {
                nodes: self.nodes.clone(),
            }),
        );
        let mut session =
            tokio::time::timeout(Duration::from_secs(30), Session::accept(stream, &config))
                .await
                .map_err(|_| crate::link::NetError::Unexpected)??;
        let peer = session.peer().additional_data.clone();
        let cmd = crate::link::recv(&mut session).await?;
        let now = unix_now();
        let reply = match cmd {
            Command::GetConsensus { epoch } => {
                let (error_code, mut payload) = self
                    .state
                    .lock()
                    .expect("authority lock")
                    .get_consensus(epoch, now);
                let fault = *self.fault.lock().expect("fault lock");
                if let (Some(fault), consensus_status::OK) = (fault, error_code) {
                    payload = apply_fault(fault, &payload, &self.key);
                }
                Command::Consensus {
                    error_code,
                    payload,
                }
            }
            Command::PostDescriptor { epoch, payload } => {
                // An anonymous session that posts is disconnected without a reply.
                let Ok(id) = <[u8; 32]>::try_from(peer.as_slice()) else {
                    return Ok(());
                };
                let mut st = self.state.lock().expect("authority lock");
                let error_code = st.post_descriptor(&id, epoch, &payload, now);
                if self.generates {
                    st.generate_due(&mut OsRng, now);
                }
                Command::PostDescriptorStatus { error_code }
            }
            _ => return Ok(()),
        };
        crate::link::send(&mut session, &reply).await?;
        let _ = session.close().await;
        Ok(())
    }
}
