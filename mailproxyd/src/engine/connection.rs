//! Link sessions: to the account's provider (authenticated with the account's
//! link key, provider checked against its PKI descriptor and the optional
//! pin) and one-shot anonymous sessions to an authority (nonvoting, or one
//! voting peer with its own link key). Every one is dialed by [`Upstream`]
//! (directly, or through the `[UpstreamProxy]`).

use std::sync::Arc;
use std::time::Duration;

use katzenpost::pki::document::MixDescriptor;
use katzenpost::wire::commands::Command;
use katzenpost::wire::handshake::{ExpectPeer, LocalIdentity};
use katzenpost::wire::session::{Session, SessionConfig};

use super::upstream::{BoxStream, Upstream};
use super::{AuthorityConfig, EngineError};

/// A link session to the provider.
pub(super) type Link = Session<BoxStream>;

/// Dials `addr` (isolated as `tag` under tor+socks5) and runs the handshake.
async fn dial(
    upstream: &Upstream,
    addr: &str,
    tag: &str,
    config: &SessionConfig,
    timeout: Duration,
) -> Result<Link, EngineError> {
    let stream = upstream.connect(addr, tag, timeout).await?;
    Ok(Session::initiate(stream, config).await?)
}

/// Connects to the provider described by `desc` as `user` with
/// `link_private`; `account` (`user@provider`) isolates the stream.
pub(super) async fn connect_provider(
    upstream: &Upstream,
    account: &str,
    desc: &MixDescriptor,
    user: &str,
    link_private: [u8; 32],
    pin: Option<[u8; 32]>,
    timeout: Duration,
) -> Result<Link, EngineError> {
    let addr = upstream.descriptor_address(desc).ok_or_else(|| {
        EngineError::Pki(format!(
            "provider {} has no address in a preferred transport",
            desc.name
        ))
    })?;
    let identity = LocalIdentity::new(link_private, user.to_ascii_lowercase().into_bytes())
        .map_err(|e| EngineError::Protocol(format!("link identity: {e}")))?;
    let mut config = SessionConfig::new(
        identity,
        Arc::new(ExpectPeer::from_descriptor(desc).with_pin(pin)),
    );
    config.handshake_timeout = timeout;
    config.io_timeout = timeout;
    dial(
        upstream,
        &addr,
        &format!("account:{account}"),
        &config,
        timeout,
    )
    .await
}

/// Sends one command.
pub(super) async fn send(link: &mut Link, cmd: &Command) -> Result<(), EngineError> {
    Ok(link.send(&cmd.encode()).await?)
}

/// Receives one command, within `timeout`.
pub(super) async fn recv(link: &mut Link, timeout: Duration) -> Result<Command, EngineError> {
    let bytes = tokio::time::timeout(timeout, link.recv())
        .await
        .map_err(|_| EngineError::Timeout("reply"))??;
    Ok(Command::decode(&bytes)?)
}

/// One request on a fresh anonymous session (fresh ephemeral key, empty
/// additional data) to an authority at `addr` that must prove `expect`;
/// `tag` isolates the stream.
pub(super) async fn authority_request(
    upstream: &Upstream,
    tag: &str,
    addr: &str,
    expect: ExpectPeer,
    cmd: &Command,
    timeout: Duration,
) -> Result<Command, EngineError> {
    let identity = LocalIdentity::ephemeral(&mut rand::rngs::OsRng, Vec::new())
        .map_err(|e| EngineError::Protocol(format!("ephemeral identity: {e}")))?;
    let mut config = SessionConfig::new(identity, Arc::new(expect));
    config.handshake_timeout = timeout;
    config.io_timeout = timeout;
    let mut link = dial(upstream, addr, tag, &config, timeout).await?;
    send(&mut link, cmd).await?;
    let reply = recv(&mut link, timeout).await?;
    let _ = link.close().await;
    Ok(reply)
}

/// The peer a nonvoting authority must prove: AD = its key, static key =
/// the key's Montgomery form.
pub(super) fn expect_nonvoting(authority: &AuthorityConfig) -> Result<ExpectPeer, EngineError> {
    ExpectPeer::authority(&authority.public_key)
        .map_err(|_| EngineError::Pki("authority key is not a valid Ed25519 key".into()))
}
