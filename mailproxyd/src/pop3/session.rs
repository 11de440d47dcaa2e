//! One POP3 connection: its [`Connection`] and the session state,
//! AUTHORIZATION or TRANSACTION (RFC 1939).

use std::borrow::Cow;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::watch;

use super::parser::{self, Command, ParseError, MAX_AUTH_LINE};
use super::stuff::{Stuffer, TopFilter};
use super::{MaildropGuard, MaildropLocks, Pop3Settings};
use crate::connection::{Closed, Connection, Goodbyes};
use crate::login::Logins;
use crate::slots::Slot;
use crate::smtp::auth;
use crate::store::{Directory, InboxEntry, Store};

/// What POP3 says when the server ends a connection.
static GOODBYES: Goodbyes = Goodbyes {
    evicted: Cow::Borrowed("-ERR [SYS/TEMP] Too many connections, closing this idle one"),
    first_command_timeout: Cow::Borrowed("-ERR Idle timeout, closing connection"),
    idle_timeout: Cow::Borrowed("-ERR Idle timeout, closing connection"),
    shutting_down: Some(Cow::Borrowed("-ERR [SYS/TEMP] Server shutting down")),
};

/// Bytes read at most at a time.
const READ_SIZE: usize = 4096;

/// Where the session is.
enum State {
    /// AUTHORIZATION: not logged in; the name given by USER, waiting for
    /// its PASS.
    Authorization { user: Option<String> },
    /// TRANSACTION: logged in, the maildrop locked.
    Transaction(Maildrop),
}

/// A logged-in session's maildrop: the messages as they were at login and
/// which of them are marked deleted.
struct Maildrop {
    /// The account (for the log).
    account: String,
    store: Store,
    messages: Vec<InboxEntry>,
    deleted: Vec<bool>,
    _guard: MaildropGuard,
}

/// A POP3 session on one connection.
pub struct Session {
    conn: Connection<TcpStream>,
    dir: Arc<dyn Directory>,
    settings: Arc<Pop3Settings>,
    locks: MaildropLocks,
    logins: Logins,
    state: State,
    bad: u32,
}

const CAPA: &str = "+OK Capability list follows\r\nUSER\r\nUIDL\r\nTOP\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nSASL PLAIN\r\nIMPLEMENTATION mailproxyd\r\n.";

impl Session {
    /// A session for an accepted connection.
    pub fn new(
        sock: TcpStream,
        dir: Arc<dyn Directory>,
        settings: Arc<Pop3Settings>,
        locks: MaildropLocks,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Session {
            conn: Connection::new(sock, stop, &GOODBYES, READ_SIZE, 64 * 1024),
            logins: Logins::new(dir.clone(), "POP3"),
            dir,
            settings,
            locks,
            state: State::Authorization { user: None },
            bad: 0,
        }
    }

    /// Holds `slot` (see [`crate::slots`]) for the session's lifetime.
    pub fn with_slot(mut self, slot: Slot) -> Self {
        self.conn.slot = slot;
        self
    }

    /// Turns the client away because too many sessions are open.
    pub async fn refuse_busy(mut self) {
        self.conn
            .reply("-ERR [SYS/TEMP] Too many connections, try again later");
        let _ = self.conn.flush().await;
    }

    async fn read_more(&mut self) -> Result<(), Closed> {
        self.conn
            .read_more(Some(self.settings.idle_timeout), true)
            .await
    }

    /// Runs the session to its end. A dropped connection deletes nothing.
    pub async fn run(mut self) {
        // No <timestamp>: we do not implement APOP.
        self.conn.reply("+OK POP3 server ready");
        let _ = self.session().await;
        self.conn.shutdown().await;
    }

    async fn session(&mut self) -> Result<(), Closed> {
        // A client trying TLS here (Thunderbird's probe) gets one line and
        // the connection closed, so that it moves on at once.
        while self.conn.buf.is_empty() {
            self.read_more().await?;
        }
        if crate::linebuf::is_tls_handshake(&self.conn.buf) {
            tracing::debug!("POP3: a TLS handshake on the plain-text port; closing");
            self.conn
                .reply("-ERR This port speaks plain POP3, not TLS; closing connection");
            self.conn.flush().await?;
            return Err(Closed::Done);
        }
        loop {
            match parser::parse(&self.conn.buf) {
                Ok((cmd, n)) => {
                    self.conn.buf.drain(..n);
                    self.conn.slot.touch();
                    self.command(cmd).await?;
                }
                Err(ParseError::Incomplete) => self.read_more().await?,
                Err(ParseError::LineTooLong) => {
                    self.conn.reply("-ERR Line too long");
                    self.bad += 1;
                    loop {
                        match self.conn.buf.iter().position(|&b| b == b'\n') {
                            Some(p) => {
                                self.conn.buf.drain(..=p);
                                break;
                            }
                            None => {
                                self.conn.buf.clear();
                                self.read_more().await?;
                            }
                        }
                    }
                }
                Err(ParseError::Syntax { consumed, reason }) => {
                    self.conn.buf.drain(..consumed);
                    self.conn.reply(&format!("-ERR {reason}"));
                    self.bad += 1;
                }
            }
            if self.bad > self.settings.max_bad_commands {
                self.conn.reply("-ERR Too many errors, closing connection");
                self.conn.flush().await?;
                return Err(Closed::Done);
            }
        }
    }

    async fn command(&mut self, cmd: Command) -> Result<(), Closed> {
        match cmd {
            Command::Capa => self.conn.reply(CAPA),
            Command::Quit => {
                let state = std::mem::replace(&mut self.state, State::Authorization { user: None });
                match state {
                    State::Transaction(md) => md.quit(&mut self.conn).await,
                    State::Authorization { .. } => self.conn.reply("+OK Bye"),
                }
                self.conn.flush().await?;
                return Err(Closed::Done);
            }
            cmd => match &mut self.state {
                State::Transaction(md) => md.command(&mut self.conn, cmd, &mut self.bad).await?,
                State::Authorization { user } => match cmd {
                    Command::User(u) => {
                        *user = Some(u);
                        self.conn.reply("+OK Send PASS");
                    }
                    Command::Pass(p) => match user.take() {
                        None => {
                            self.bad += 1;
                            self.conn.reply("-ERR USER first");
                        }
                        Some(u) => self.login(u, zeroize::Zeroizing::new(p.into_bytes())).await,
                    },
                    Command::Auth { mechanism, initial } => self.auth(mechanism, initial).await?,
                    _ => {
                        self.bad += 1;
                        self.conn.reply("-ERR Command not valid in this state");
                    }
                },
            },
        }
        Ok(())
    }

    async fn auth(
        &mut self,
        mechanism: Option<String>,
        initial: Option<String>,
    ) -> Result<(), Closed> {
        match mechanism.as_deref() {
            None => self.conn.reply("+OK\r\nPLAIN\r\n."),
            Some("PLAIN") => {
                let resp = match initial {
                    Some(r) => r,
                    None => {
                        self.conn.reply("+ ");
                        loop {
                            match parser::line(&self.conn.buf, MAX_AUTH_LINE) {
                                Ok((l, n)) => {
                                    let s = String::from_utf8_lossy(l).into_owned();
                                    self.conn.buf.drain(..n);
                                    break s;
                                }
                                Err(ParseError::Incomplete) => self.read_more().await?,
                                Err(_) => {
                                    self.conn.reply("-ERR [AUTH] Response too long");
                                    return Err(Closed::Done);
                                }
                            }
                        }
                    }
                };
                match auth::decode_plain(&resp) {
                    Ok(c) => self.login(c.authcid, c.password).await,
                    Err(auth::SaslError::Cancelled) => {
                        self.conn.reply("-ERR Authentication cancelled")
                    }
                    Err(_) => {
                        self.bad += 1;
                        self.conn
                            .reply("-ERR [AUTH] Malformed authentication response");
                    }
                }
            }
            Some(_) => {
                self.bad += 1;
                self.conn.reply("-ERR Unsupported mechanism");
            }
        }
        Ok(())
    }

    async fn login(&mut self, user: String, password: zeroize::Zeroizing<Vec<u8>>) {
        let Some(account) = self.logins.attempt(&user, password).await else {
            self.bad += 1;
            self.conn.reply("-ERR [AUTH] Invalid user name or password");
            return;
        };
        let id = account.id;
        let Some(guard) = self.locks.try_lock(&id) else {
            self.conn
                .reply("-ERR [IN-USE] Maildrop is already in use by another session");
            return;
        };
        let Some(store) = self.dir.store(&id) else {
            self.conn.reply("-ERR [SYS/TEMP] Maildrop unavailable");
            return;
        };
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.inbox_list()).await {
            Ok(Ok(messages)) => {
                let total: u64 = messages.iter().map(|m| m.message.len).sum();
                tracing::info!(account = %id, messages = messages.len(), "POP3 login");
                self.conn.reply(&format!(
                    "+OK Maildrop has {} message(s) ({total} octets)",
                    messages.len()
                ));
                self.conn.slot.prove();
                self.state = State::Transaction(Maildrop {
                    account: id,
                    store,
                    deleted: vec![false; messages.len()],
                    messages,
                    _guard: guard,
                });
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "POP3: reading the maildrop failed");
                self.conn.reply("-ERR [SYS/PERM] Maildrop cannot be read");
            }
            Err(_) => self.conn.reply("-ERR [SYS/TEMP] Maildrop unavailable"),
        }
    }
}

impl Maildrop {
    /// Index of live message number `n` (1-based).
    fn lookup(&self, n: u32) -> Option<usize> {
        let i = (n as usize).checked_sub(1)?;
        (i < self.messages.len() && !self.deleted[i]).then_some(i)
    }

    /// A TRANSACTION-state command (QUIT aside); `bad` counts the unknown.
    async fn command(
        &mut self,
        conn: &mut Connection<TcpStream>,
        cmd: Command,
        bad: &mut u32,
    ) -> Result<(), Closed> {
        match cmd {
            Command::Stat => {
                let (n, size) = self
                    .messages
                    .iter()
                    .zip(&self.deleted)
                    .filter(|(_, d)| !**d)
                    .fold((0, 0u64), |(n, s), (m, _)| (n + 1, s + m.message.len));
                conn.reply(&format!("+OK {n} {size}"));
            }
            Command::List(Some(n)) | Command::Uidl(Some(n)) => {
                let uidl = matches!(cmd, Command::Uidl(_));
                match self.lookup(n) {
                    None => conn.reply("-ERR [SYS/PERM] No such message"),
                    Some(i) if uidl => conn.reply(&format!("+OK {n} {}", self.messages[i].uidl)),
                    Some(i) => conn.reply(&format!("+OK {n} {}", self.messages[i].message.len)),
                }
            }
            Command::List(None) | Command::Uidl(None) => {
                let uidl = matches!(cmd, Command::Uidl(_));
                let mut s = String::from("+OK\r\n");
                for (i, (m, d)) in self.messages.iter().zip(&self.deleted).enumerate() {
                    if !*d {
                        use std::fmt::Write;
                        if uidl {
                            let _ = write!(s, "{} {}\r\n", i + 1, m.uidl);
                        } else {
                            let _ = write!(s, "{} {}\r\n", i + 1, m.message.len);
                        }
                    }
                }
                s.push('.');
                conn.reply(&s);
            }
            Command::Retr(n) => self.send(conn, n, None).await?,
            Command::Top(n, lines) => self.send(conn, n, Some(lines)).await?,
            Command::Dele(n) => match self.lookup(n) {
                Some(i) => {
                    self.deleted[i] = true;
                    tracing::info!(account = %self.account, message = n, "POP3 DELE {n} (removed at QUIT)");
                    conn.reply(&format!("+OK Message {n} deleted"));
                }
                None => conn.reply("-ERR [SYS/PERM] No such message"),
            },
            Command::Rset => {
                self.deleted.iter_mut().for_each(|d| *d = false);
                conn.reply("+OK");
            }
            Command::Noop => conn.reply("+OK"),
            _ => {
                *bad += 1;
                conn.reply("-ERR Unknown command");
            }
        }
        Ok(())
    }

    /// QUIT in TRANSACTION state (UPDATE): the marked messages are deleted
    /// in one durable commit before the answer; the lock goes with `self`.
    async fn quit(self, conn: &mut Connection<TcpStream>) {
        let ids: Vec<u64> = self
            .messages
            .iter()
            .zip(&self.deleted)
            .filter(|(_, d)| **d)
            .map(|(m, _)| m.id)
            .collect();
        let n = ids.len();
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.inbox_delete(&ids)).await {
            Ok(Ok(())) => {
                tracing::info!(account = %self.account, deleted = n, "POP3 QUIT: {n} message(s) deleted");
                conn.reply(&format!("+OK Bye ({n} message(s) deleted)"))
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "POP3 delete failed");
                conn.reply("-ERR [SYS/TEMP] Some deleted messages not removed");
            }
            Err(_) => conn.reply("-ERR [SYS/TEMP] Some deleted messages not removed"),
        }
    }

    /// RETR (lines = None) or TOP. Each chunk is authenticated before any of
    /// it is sent; a failure after the first chunk closes the connection
    /// without the terminating line so the client never takes a partial
    /// message for a whole one.
    async fn send(
        &self,
        conn: &mut Connection<TcpStream>,
        n: u32,
        lines: Option<u32>,
    ) -> Result<(), Closed> {
        let Some(i) = self.lookup(n) else {
            conn.reply("-ERR [SYS/PERM] No such message");
            return Ok(());
        };
        let mref = self.messages[i].message;
        let store = self.store.clone();
        let mut stuffer = Stuffer::new();
        let mut top = lines.map(TopFilter::new);
        for idx in 0..mref.chunks.max(1) {
            let chunk = if mref.chunks == 0 {
                Ok(Ok(Vec::new()))
            } else if mref.chunks == 1 {
                // One chunk (<= 128 KiB) from redb's page cache costs tens of
                // microseconds: cheaper inline than two thread hand-offs.
                Ok(store.read_chunk(&mref, idx))
            } else {
                let s = store.clone();
                tokio::task::spawn_blocking(move || s.read_chunk(&mref, idx)).await
            };
            let chunk = match chunk {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "POP3: a stored message failed to read");
                    if idx == 0 {
                        conn.reply("-ERR [SYS/PERM] Message cannot be read (damaged store)");
                        return Ok(());
                    }
                    conn.out.clear();
                    return Err(Closed::Gone);
                }
                Err(_) => return Err(Closed::Gone),
            };
            if idx == 0 {
                conn.reply(&format!("+OK {} octets", mref.len));
            }
            let part = match top.as_mut() {
                Some(t) => t.take(&chunk),
                None => &chunk[..],
            };
            stuffer.push(part, &mut conn.out);
            if top.as_ref().is_some_and(|t| t.done()) {
                break;
            }
            if conn.out.len() >= 64 * 1024 {
                conn.flush().await?;
            }
        }
        stuffer.finish(&mut conn.out);
        Ok(())
    }
}
