//! Engine errors.

use katzenpost::wire::commands::CommandError;
use katzenpost::wire::session::LinkError;

use crate::store::StoreError;

impl EngineError {
    /// What the error most likely means for the user, when that is not
    /// plain from the error itself.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            EngineError::Link(LinkError::NotAccepted) => Some(
                "most likely the provider does not know this account's link key: register the account (mailproxyd -r, or the keys `mailproxyctl accounts` shows)",
            ),
            _ => None,
        }
    }

    /// The error with its [`hint`](Self::hint), as the log and status show it.
    pub fn explained(&self) -> String {
        match self.hint() {
            Some(hint) => format!("{self} ({hint})"),
            None => self.to_string(),
        }
    }
}

/// Why an engine operation failed. Most are transient: the engine logs them,
/// records them in its status and retries.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The link failed.
    #[error("link: {0}")]
    Link(#[from] LinkError),
    /// A peer sent a command that does not decode.
    #[error("bad command: {0}")]
    Command(#[from] CommandError),
    /// TCP connect failed.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The `[UpstreamProxy]` SOCKS5 server could not be reached.
    #[error("upstream proxy {proxy} is unreachable: {source}")]
    ProxyUnreachable {
        /// The proxy's address.
        proxy: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The upstream proxy did not connect us to the peer.
    #[error("connect to {addr} through upstream proxy {proxy}: {problem}")]
    Proxy {
        /// The peer's address.
        addr: String,
        /// The proxy's address.
        proxy: String,
        /// What the proxy (or the SOCKS exchange) said.
        problem: String,
    },
    /// A network operation timed out.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The PKI document could not be obtained or did not verify.
    #[error("pki: {0}")]
    Pki(String),
    /// Path selection or packet construction failed.
    #[error("packet: {0}")]
    Packet(String),
    /// End-to-end encryption failed.
    #[error("encryption: {0}")]
    Noise(#[from] katzenpost::block::NoiseError),
    /// The peer broke the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The engine was asked to stop.
    #[error("stopped")]
    Stopped,
}
