//! Link sessions as the testnet's servers use them: dialling a node or the
//! authority, and typed command send/receive on top of the raw session.

use std::sync::Arc;
use std::time::Duration;

use katzenpost::wire::commands::Command;
use katzenpost::wire::handshake::{LocalIdentity, PeerAuthenticator};
use katzenpost::wire::session::{LinkError, Session, SessionConfig};
use tokio::net::TcpStream;

/// A link failure, or a command that did not decode.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("bad command: {0}")]
    Command(#[from] katzenpost::wire::commands::CommandError),
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("timed out connecting to {0}")]
    ConnectTimeout(String),
    #[error("unexpected reply")]
    Unexpected,
    #[error("handshake setup: {0}")]
    Handshake(#[from] katzenpost::wire::handshake::HandshakeError),
}

/// Time limits the testnet uses (shorter than the real servers').
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A session configuration with the testnet's time limits.
pub fn session_config(identity: LocalIdentity, auth: Arc<dyn PeerAuthenticator>) -> SessionConfig {
    let mut c = SessionConfig::new(identity, auth);
    c.handshake_timeout = HANDSHAKE_TIMEOUT;
    c.io_timeout = HANDSHAKE_TIMEOUT;
    c
}

/// Dials `addr` and runs the handshake as initiator.
pub async fn dial(addr: &str, config: &SessionConfig) -> Result<Session<TcpStream>, NetError> {
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| NetError::ConnectTimeout(addr.to_string()))?
        .map_err(|source| NetError::Connect {
            addr: addr.to_string(),
            source,
        })?;
    let _ = stream.set_nodelay(true);
    Ok(Session::initiate(stream, config).await?)
}

/// Sends one typed command.
pub async fn send(session: &mut Session<TcpStream>, cmd: &Command) -> Result<(), NetError> {
    Ok(session.send(&cmd.encode()).await?)
}

/// Receives one typed command.
pub async fn recv(session: &mut Session<TcpStream>) -> Result<Command, NetError> {
    let bytes = session.recv().await?;
    Ok(Command::decode(&bytes)?)
}

/// One request, one reply (the authority serves one command per connection).
pub async fn request(
    addr: &str,
    config: &SessionConfig,
    cmd: &Command,
) -> Result<Command, NetError> {
    let mut s = dial(addr, config).await?;
    send(&mut s, cmd).await?;
    let reply = recv(&mut s).await?;
    let _ = s.close().await;
    Ok(reply)
}
