//! SMTP submission (RFC 5321, RFC 4954 AUTH, RFC 1870 SIZE, RFC 6152
//! 8BITMIME, RFC 2920 PIPELINING, RFC 2034 ENHANCEDSTATUSCODES).
//!
//! - [`parser`]: sans-I/O command parser;
//! - [`data`]: streaming dot-unstuffer for DATA;
//! - [`auth`]: SASL PLAIN/LOGIN decoding;
//! - [`session`]: one connection (owns the socket and its buffer);
//! - this module: settings, binding and the accept loop.

pub mod auth;
pub mod data;
pub mod parser;
pub mod session;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::slots::{SlotPolicy, Slots};
use crate::store::Directory;

/// Settings of the SMTP server (the daemon fills them from its config).
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// Host name in the greeting and replies.
    pub hostname: String,
    /// Largest accepted message in bytes (advertised with SIZE).
    pub max_message_size: usize,
    /// Most recipients per message (at least 100).
    pub max_recipients: usize,
    /// Idle time allowed while waiting for a command.
    pub command_timeout: Duration,
    /// Idle time allowed between DATA reads.
    pub data_timeout: Duration,
    /// Bad commands tolerated before the connection is closed.
    pub max_bad_commands: u32,
    /// Concurrent sessions. When all are taken, the longest-idle session
    /// that has not authenticated (nor sent a command within
    /// `first_command_timeout`) is closed with 421 for the newcomer; if
    /// there is none, the newcomer gets 421.
    pub max_sessions: usize,
    /// Time a new connection gets to send its first valid command.
    pub first_command_timeout: Duration,
    /// Seconds until a queued message bounces (BounceQueueLifetime).
    pub bounce_lifetime: u64,
    /// Every sender must log in (`[Proxy] Authentication = "password"`):
    /// then only a login protects a connection from eviction when full.
    pub login_required: bool,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        SmtpSettings {
            hostname: crate::message::HOSTNAME.to_owned(),
            max_message_size: 25 << 20,
            max_recipients: 1000,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(180),
            max_bad_commands: 10,
            max_sessions: 100,
            first_command_timeout: Duration::from_secs(30),
            bounce_lifetime: 432_000,
            login_required: false,
        }
    }
}

/// Errors from binding a listener.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The address is not loopback and non-loopback binds are not allowed.
    #[error("refusing to listen on non-loopback address {0} (set AllowNonLoopback to permit it)")]
    NonLoopback(SocketAddr),
    /// The socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Io {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

/// Binds a listener for SMTP or POP3: loopback only unless
/// `allow_non_loopback`, in which case a warning is logged.
pub async fn bind(addr: SocketAddr, allow_non_loopback: bool) -> Result<TcpListener, BindError> {
    if !addr.ip().is_loopback() {
        if !allow_non_loopback {
            return Err(BindError::NonLoopback(addr));
        }
        tracing::warn!(%addr, "listening on a non-loopback address: anyone who can reach it can try to log in");
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError::Io { addr, source })
}

/// Serves SMTP on `listener` until `shutdown` completes, then tells open
/// sessions to finish (421) and waits for them.
pub async fn serve(
    listener: TcpListener,
    dir: Arc<dyn Directory>,
    settings: SmtpSettings,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Slots::new(SlotPolicy {
        name: "SMTP",
        capacity: settings.max_sessions,
        first_command_timeout: settings.first_command_timeout,
        // Where a login is required only a login proves a client; without
        // one, commands are the only proof a client gives: one that spoke
        // within the first-command window is kept.
        recent_activity: if settings.login_required {
            Duration::ZERO
        } else {
            settings.first_command_timeout
        },
    });
    let settings = Arc::new(settings);
    crate::accept::serve_sessions(listener, slots, shutdown, |sock, slot, stop| {
        let s = session::Session::new(sock, dir.clone(), settings.clone(), stop);
        async move {
            match slot {
                Some(slot) => s.with_slot(slot).run().await,
                None => s.refuse_busy().await,
            }
        }
    })
    .await;
}
