//! The nonvoting authority on the network: one command per connection
//! (GetConsensus from anyone, PostDescriptor from whitelisted nodes), and a
//! periodic document generation tick.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use katzenpost::wire::commands::Command;
use katzenpost::wire::handshake::{ed25519_secret_to_x25519, AuthorityPolicy, LocalIdentity};
use katzenpost::wire::session::Session;
use rand::rngs::OsRng;
use tokio::net::{TcpListener, TcpStream};

use crate::authority::AuthorityState;
use crate::link::session_config;
use crate::unix_now;

/// A running authority's shared state.
pub struct Authority {
    state: Mutex<AuthorityState>,
    key: SigningKey,
    nodes: HashSet<[u8; 32]>,
    /// Fault injection: refuse every connection while set.
    pub refuse: AtomicBool,
}

impl Authority {
    /// Wraps the authority logic for serving.
    pub fn new(key: SigningKey, state: AuthorityState, nodes: HashSet<[u8; 32]>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(state),
            key,
            nodes,
            refuse: AtomicBool::new(false),
        })
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let ticker = {
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
        };
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
        ticker.abort();
    }

    async fn handle(&self, stream: TcpStream) -> Result<(), crate::link::NetError> {
        let identity = LocalIdentity::new(
            *ed25519_secret_to_x25519(&self.key.to_bytes()),
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
                let (error_code, payload) = self
                    .state
                    .lock()
                    .expect("authority lock")
                    .get_consensus(epoch, now);
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
                st.generate_due(&mut OsRng, now);
                Command::PostDescriptorStatus { error_code }
            }
            _ => return Ok(()),
        };
        crate::link::send(&mut session, &reply).await?;
        let _ = session.close().await;
        Ok(())
    }
}
