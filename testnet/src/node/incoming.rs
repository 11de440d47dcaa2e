//! Accepting link sessions: nodes of the network (by identity and link key
//! from the documents) and, at a provider, registered users (by user name
//! and link key). Node sessions carry SendPacket; client sessions also
//! RetrieveMessage and GetConsensus.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use katzenpost::wire::commands::{consensus_status, Command};
use katzenpost::wire::handshake::{AuthError, LocalIdentity, PeerCredentials};
use katzenpost::wire::session::Session;
use tokio::net::{TcpListener, TcpStream};

use super::Node;
use crate::link::session_config;
use crate::process::Ingress;
use crate::ratelimit::TokenBucket;
use crate::spool::{Retrieved, SpoolEntry};
use crate::users::normalize_user;

/// Accepts sessions until the task is aborted; the sessions live in a
/// `JoinSet`, so stopping the node ends them too.
pub(super) async fn accept_loop(node: Arc<Node>, listener: TcpListener) {
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, from)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let node = node.clone();
                sessions.spawn(async move {
                    if let Err(e) = serve(node.clone(), stream, from.ip()).await {
                        tracing::debug!(node = %node.config.name, error = %e, "session ended");
                    }
                });
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
}

fn known_node(node: &Node, peer: &PeerCredentials) -> Option<bool> {
    let id = <[u8; 32]>::try_from(peer.additional_data.as_slice()).ok()?;
    let d = node.descriptor_of(&id)?;
    Some(d.link_key == peer.static_key)
}

async fn serve(
    node: Arc<Node>,
    stream: TcpStream,
    from: IpAddr,
) -> Result<(), crate::link::NetError> {
    let me = node.clone();
    let auth = move |peer: &PeerCredentials| -> Result<(), AuthError> {
        match known_node(&me, peer) {
            Some(true) => return Ok(()),
            Some(false) => return Err(AuthError::WrongLinkKey),
            None => {}
        }
        let Some(p) = &me.provider else {
            return Err(AuthError::UnknownPeer);
        };
        let name = std::str::from_utf8(&peer.additional_data)
            .map_err(|_| AuthError::MalformedAdditionalData)?;
        if p.users
            .lock()
            .expect("lock")
            .authenticates(name, &peer.static_key)
        {
            Ok(())
        } else {
            Err(AuthError::UnknownPeer)
        }
    };
    let identity = LocalIdentity::new(node.config.link_private, node.id().to_vec())?;
    let config = session_config(identity, Arc::new(auth));
    let session = Session::accept(stream, &config).await?;
    let peer = session.peer().clone();
    if known_node(&node, &peer) == Some(true) {
        node_session(node, session).await
    } else {
        client_session(node, session, peer, from).await
    }
}

async fn node_session(
    node: Arc<Node>,
    mut session: Session<TcpStream>,
) -> Result<(), crate::link::NetError> {
    loop {
        match crate::link::recv(&mut session).await? {
            Command::SendPacket(packet) => node.handle_packet(packet, Ingress::Node),
            Command::NoOp => {}
            _ => return Err(crate::link::NetError::Unexpected),
        }
    }
}

struct SessionGuard<'a>(&'a super::provider::ProviderState, String);
impl Drop for SessionGuard<'_> {
    fn drop(&mut self) {
        self.0.sessions.lock().expect("lock").remove(&self.1);
    }
}

async fn client_session(
    node: Arc<Node>,
    mut session: Session<TcpStream>,
    peer: PeerCredentials,
    from: IpAddr,
) -> Result<(), crate::link::NetError> {
    let Some(p) = &node.provider else {
        return Ok(());
    };
    let raw = String::from_utf8_lossy(&peer.additional_data).into_owned();
    let Ok(user) = normalize_user(&raw) else {
        return Ok(());
    };
    p.record_client_peer(&user, from);
    if !p.sessions.lock().expect("lock").insert(user.clone()) {
        tracing::info!(node = %node.config.name, "a session with these credentials already exists");
        let _ = session.close().await;
        return Ok(());
    }
    let _guard = SessionGuard(p, user.clone());
    let params = &node.config.params;
    let rate = |p: &super::provider::ProviderState| match p.send_rate.load(Ordering::Relaxed) {
        0 => params.document.send_rate_per_minute,
        n => n,
    };
    let burst = match p.send_burst.load(Ordering::Relaxed) {
        0 => params.send_burst,
        n => n.min(u32::MAX as u64) as u32,
    };
    let mut bucket = if node.config.rate_limit {
        TokenBucket::new(rate(p), burst, Instant::now())
    } else {
        TokenBucket::unlimited(Instant::now())
    };
    let mut retrieval = crate::spool::Retrieval::default();
    loop {
        let cmd = crate::link::recv(&mut session).await?;
        // Re-check the credentials on every command (the real provider does every 30 s).
        if !p
            .users
            .lock()
            .expect("lock")
            .authenticates(&user, &peer.static_key)
        {
            let _ = session.close().await;
            return Ok(());
        }
        let reply = match cmd {
            Command::SendPacket(packet) => {
                if node.config.rate_limit {
                    bucket.set_rate(rate(p), Instant::now());
                }
                if bucket.try_take(Instant::now()) {
                    node.handle_packet(packet, Ingress::Client);
                } else {
                    node.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                }
                None
            }
            Command::RetrieveMessage { sequence } => {
                let r = p.with_spool(&user, |s| retrieval.retrieve(sequence, s));
                match r {
                    Ok(Ok(Retrieved::Empty { sequence })) => {
                        Some(Command::MessageEmpty { sequence })
                    }
                    Ok(Ok(Retrieved::Entry {
                        sequence,
                        entry,
                        queue_hint,
                    })) => Some(match entry {
                        SpoolEntry::Message(payload) => Command::Message {
                            queue_size_hint: queue_hint,
                            sequence,
                            payload,
                        },
                        SpoolEntry::SurbReply { surb_id, payload } => Command::MessageAck {
                            queue_size_hint: queue_hint,
                            sequence,
                            surb_id,
                            payload,
                        },
                    }),
                    Ok(Err(e)) => {
                        tracing::info!(node = %node.config.name, error = %e, "client protocol error");
                        return Err(crate::link::NetError::Unexpected);
                    }
                    Err(e) => {
                        tracing::warn!(node = %node.config.name, error = %e, "spool failure");
                        return Err(crate::link::NetError::Unexpected);
                    }
                }
            }
            Command::GetConsensus { epoch } => Some(match node.signed_document(epoch) {
                Some(payload) => Command::Consensus {
                    error_code: consensus_status::OK,
                    payload,
                },
                None => Command::Consensus {
                    error_code: consensus_status::NOT_FOUND,
                    payload: Vec::new(),
                },
            }),
            Command::NoOp => None,
            _ => return Err(crate::link::NetError::Unexpected),
        };
        if let Some(reply) = reply {
            tokio::time::timeout(
                Duration::from_secs(30),
                crate::link::send(&mut session, &reply),
            )
            .await
            .map_err(|_| crate::link::NetError::Unexpected)??;
        }
    }
}
