//! POP3 retrieval (RFC 1939, RFC 2449 CAPA/RESP-CODES, RFC 5034 SASL).
//!
//! - [`parser`]: sans-I/O command parser;
//! - [`stuff`]: streaming dot-stuffer and the TOP filter;
//! - [`session`]: one connection;
//! - this module: settings, maildrop locks and the accept loop.
//!
//! Login is the account id `user@provider`, case-insensitive. When the
//! account has a password hash configured, USER/PASS and AUTH PLAIN check
//! it; without one, any password is accepted (as in the original
//! mailproxy), so anyone who can reach the port can read the mail: keep it
//! on loopback or configure a password.

pub mod parser;
pub mod session;
pub mod stuff;

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::slots::{SlotPolicy, Slots};
use crate::store::Directory;

/// Settings of the POP3 server.
#[derive(Debug, Clone)]
pub struct Pop3Settings {
    /// Idle time before the session is closed (RFC 1939: at least 10 minutes).
    pub idle_timeout: Duration,
    /// Bad commands tolerated before the connection is closed (10, as for
    /// SMTP). A connection that opens with a TLS handshake is closed at once.
    pub max_bad_commands: u32,
    /// Concurrent sessions. When all are taken, the longest-idle session
    /// that has not logged in is closed for the newcomer; if there is none,
    /// the newcomer gets `-ERR [SYS/TEMP]`.
    pub max_sessions: usize,
    /// Time a new connection gets to send its first valid command.
    pub first_command_timeout: Duration,
}

impl Default for Pop3Settings {
    fn default() -> Self {
        Pop3Settings {
            idle_timeout: Duration::from_secs(600),
            max_bad_commands: 10,
            max_sessions: 100,
            first_command_timeout: Duration::from_secs(30),
        }
    }
}

/// Maildrops currently locked by a session (RFC 1939 exclusive access).
#[derive(Debug, Default, Clone)]
pub struct MaildropLocks {
    held: Arc<Mutex<HashSet<String>>>,
}

/// Holds a maildrop lock; released on drop.
#[derive(Debug)]
pub struct MaildropGuard {
    locks: MaildropLocks,
    account: String,
}

impl MaildropLocks {
    /// Locks `account`'s maildrop, or None if another session holds it.
    pub fn try_lock(&self, account: &str) -> Option<MaildropGuard> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.insert(account.to_owned()) {
            Some(MaildropGuard {
                locks: self.clone(),
                account: account.to_owned(),
            })
        } else {
            None
        }
    }
}

impl Drop for MaildropGuard {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock().unwrap_or_else(|e| e.into_inner());
        held.remove(&self.account);
    }
}

/// Serves POP3 on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    dir: Arc<dyn Directory>,
    settings: Pop3Settings,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Slots::new(SlotPolicy {
        name: "POP3",
        capacity: settings.max_sessions,
        first_command_timeout: settings.first_command_timeout,
        // Only a login protects a session.
        recent_activity: Duration::ZERO,
    });
    let settings = Arc::new(settings);
    let locks = MaildropLocks::default();
    crate::accept::serve_sessions(listener, slots, shutdown, |sock, slot, stop| {
        let s = session::Session::new(sock, dir.clone(), settings.clone(), locks.clone(), stop);
        async move {
            match slot {
                Some(slot) => s.with_slot(slot).run().await,
                None => s.refuse_busy().await,
            }
        }
    })
    .await;
}
