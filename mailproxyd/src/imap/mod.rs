//! IMAP4rev1 (RFC 3501) with IDLE, UIDPLUS, MOVE, NAMESPACE, ID, ENABLE,
//! LITERAL+, SPECIAL-USE and CHILDREN, over the account stores.
//!
//! - imap-codec parses every command (its `Fragmentizer` frames lines and
//!   literals with a bound on a command's size) and serialises every
//!   response; no IMAP grammar is written here;
//! - [`mime`]: BODYSTRUCTURE, ENVELOPE and section ranges from mail-parser,
//!   computed once per message and cached;
//! - [`cache`]: parsed structures and decrypted bodies, bounded, in memory only;
//! - [`search`]: SEARCH keys;
//! - [`session`]: one connection;
//! - this module: settings and the accept loop.
//!
//! Mailboxes live in the store (see `store::mailbox`): INBOX is the POP3
//! maildrop, Sent gets a copy of every submission with delivery keywords,
//! Trash and user mailboxes hold copies. Login is as for POP3 (the account
//! id and its password; [`crate::login`]).

pub mod cache;
pub mod mime;
pub mod search;
pub mod sent;
pub mod session;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::slots::{SlotPolicy, Slots};
use crate::store::Directory;

/// Settings of the IMAP server.
#[derive(Debug, Clone)]
pub struct ImapSettings {
    /// Idle time before a session is closed (RFC 3501: at least 30 minutes);
    /// IDLE counts as idle too (clients re-issue it every 29 minutes).
    pub idle_timeout: Duration,
    /// Bad commands tolerated before the connection is closed.
    pub max_bad_commands: u32,
    /// Concurrent sessions (see [`crate::slots`]).
    pub max_sessions: usize,
    /// Time a new connection gets to send its first valid command.
    pub first_command_timeout: Duration,
    /// Largest command (an APPEND literal included), in bytes.
    pub max_command: u32,
    /// Sessions logged in now, per account (for `mailproxyctl status`).
    pub sessions: ImapSessions,
    /// Parsed structures and decrypted bodies, shared by the sessions.
    pub caches: Arc<cache::Caches>,
    /// How long an account's decrypted bodies stay in memory after its last
    /// IMAP session ended.
    pub cache_grace: Duration,
}

impl Default for ImapSettings {
    fn default() -> Self {
        ImapSettings {
            idle_timeout: Duration::from_secs(31 * 60),
            max_bad_commands: 10,
            max_sessions: 100,
            first_command_timeout: Duration::from_secs(30),
            max_command: 64 << 20,
            sessions: ImapSessions::default(),
            caches: Arc::default(),
            cache_grace: Duration::from_secs(300),
        }
    }
}

/// IMAP sessions logged in now, per account.
#[derive(Debug, Clone, Default)]
pub struct ImapSessions {
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

/// One logged-in session, counted while it lives.
#[derive(Debug)]
pub struct SessionCount {
    sessions: ImapSessions,
    account: String,
}

impl ImapSessions {
    /// Sessions of `account` now.
    pub fn count(&self, account: &str) -> u64 {
        self.lock().get(account).copied().unwrap_or(0) as u64
    }

    /// Counts a session of `account` until the guard is dropped.
    pub fn enter(&self, account: &str) -> SessionCount {
        *self.lock().entry(account.to_owned()).or_insert(0) += 1;
        SessionCount {
            sessions: self.clone(),
            account: account.to_owned(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for SessionCount {
    fn drop(&mut self) {
        let mut counts = self.sessions.lock();
        if let Some(n) = counts.get_mut(&self.account) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.account);
            }
        }
    }
}

/// Serves IMAP on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    dir: Arc<dyn Directory>,
    settings: ImapSettings,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Slots::new(SlotPolicy {
        name: "IMAP",
        capacity: settings.max_sessions,
        first_command_timeout: settings.first_command_timeout,
        recent_activity: Duration::ZERO,
    });
    let settings = Arc::new(settings);
    let sweeper = tokio::spawn(sweep(settings.clone()));
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
    sweeper.abort();
}

/// Drops the decrypted bodies of accounts idle for the grace period,
/// checking a few times per period (at least every 30 s).
async fn sweep(settings: Arc<ImapSettings>) {
    let every =
        (settings.cache_grace / 4).clamp(Duration::from_millis(10), Duration::from_secs(30));
    loop {
        tokio::time::sleep(every).await;
        let sessions = &settings.sessions;
        settings
            .caches
            .sweep(settings.cache_grace, |a| sessions.count(a) > 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_counted_per_account_while_their_guards_live() {
        let s = ImapSessions::default();
        let a1 = s.enter("a@p");
        let a2 = s.clone().enter("a@p");
        let b = s.enter("b@p");
        assert_eq!((s.count("a@p"), s.count("b@p"), s.count("c@p")), (2, 1, 0));
        drop(a1);
        drop(b);
        assert_eq!((s.count("a@p"), s.count("b@p")), (1, 0));
        drop(a2);
        assert_eq!(s.count("a@p"), 0);
    }
}
