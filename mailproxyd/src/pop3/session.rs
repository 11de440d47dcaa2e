//! One POP3 connection: owns the socket, its buffer and the session state.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::parser::{self, Command, ParseError, MAX_AUTH_LINE};
use super::stuff::{Stuffer, TopFilter};
use super::{MaildropGuard, MaildropLocks, Pop3Settings};
use crate::login::Logins;
use crate::slots::{Cancelled, Slot};
use crate::smtp::auth;
use crate::store::{Directory, InboxEntry, Store};

enum Closed {
    Gone,
    Done,
}

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
    sock: TcpStream,
    buf: Vec<u8>,
    out: Vec<u8>,
    dir: Arc<dyn Directory>,
    settings: Arc<Pop3Settings>,
    locks: MaildropLocks,
    stop: watch::Receiver<bool>,
    user: Option<String>,
    logins: Logins,
    drop: Option<Maildrop>,
    bad: u32,
    slot: Slot,
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
            sock,
            buf: Vec::with_capacity(1024),
            out: Vec::with_capacity(64 * 1024),
            logins: Logins::new(dir.clone(), "POP3"),
            dir,
            settings,
            locks,
            stop,
            user: None,
            drop: None,
            bad: 0,
            slot: Slot::default(),
        }
    }

    /// Holds `slot` (see [`crate::slots`]) for the session's lifetime.
    pub fn with_slot(mut self, slot: Slot) -> Self {
        self.slot = slot;
        self
    }

    /// Turns the client away because too many sessions are open.
    pub async fn refuse_busy(mut self) {
        self.reply("-ERR [SYS/TEMP] Too many connections, try again later");
        let _ = self.flush().await;
    }

    fn reply(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    async fn flush(&mut self) -> Result<(), Closed> {
        if self.out.is_empty() {
            return Ok(());
        }
        let r = self.sock.write_all(&self.out).await;
        self.out.clear();
        r.map_err(|_| Closed::Gone)
    }

    async fn read_more(&mut self) -> Result<(), Closed> {
        self.flush().await?;
        self.buf.reserve(4096);
        let mut stop = self.stop.clone();
        let read = tokio::time::timeout(
            self.settings.idle_timeout,
            self.sock.read_buf(&mut self.buf),
        );
        let mut cancelled = None;
        let res = tokio::select! {
            r = read => Some(r),
            _ = stop.wait_for(|s| *s) => None,
            c = self.slot.cancelled() => {
                cancelled = Some(c);
                None
            }
        };
        if let Some(c) = cancelled {
            self.reply(match c {
                Cancelled::Evicted => "-ERR [SYS/TEMP] Too many connections, closing this idle one",
                Cancelled::FirstCommandTimeout => "-ERR Idle timeout, closing connection",
            });
            let _ = self.flush().await;
            return Err(Closed::Done);
        }
        match res {
            None => {
                self.reply("-ERR [SYS/TEMP] Server shutting down");
                let _ = self.flush().await;
                Err(Closed::Done)
            }
            Some(Err(_)) => {
                self.reply("-ERR Idle timeout, closing connection");
                let _ = self.flush().await;
                Err(Closed::Done)
            }
            Some(Ok(Ok(0))) | Some(Ok(Err(_))) => Err(Closed::Gone),
            Some(Ok(Ok(_))) => Ok(()),
        }
    }

    /// Runs the session to its end. A dropped connection deletes nothing.
    pub async fn run(mut self) {
        // No <timestamp>: we do not implement APOP.
        self.reply("+OK POP3 server ready");
        let _ = self.session().await;
        let _ = self.sock.shutdown().await;
    }

    async fn session(&mut self) -> Result<(), Closed> {
        // A client trying TLS here (Thunderbird's probe) gets one line and
        // the connection closed, so that it moves on at once.
        while self.buf.is_empty() {
            self.read_more().await?;
        }
        if crate::linebuf::is_tls_handshake(&self.buf) {
            tracing::debug!("POP3: a TLS handshake on the plain-text port; closing");
            self.reply("-ERR This port speaks plain POP3, not TLS; closing connection");
            self.flush().await?;
            return Err(Closed::Done);
        }
        loop {
            match parser::parse(&self.buf) {
                Ok((cmd, n)) => {
                    self.buf.drain(..n);
                    self.slot.touch();
                    self.command(cmd).await?;
                }
                Err(ParseError::Incomplete) => self.read_more().await?,
                Err(ParseError::LineTooLong) => {
                    self.reply("-ERR Line too long");
                    self.bad += 1;
                    loop {
                        match self.buf.iter().position(|&b| b == b'\n') {
                            Some(p) => {
                                self.buf.drain(..=p);
                                break;
                            }
                            None => {
                                self.buf.clear();
                                self.read_more().await?;
                            }
                        }
                    }
                }
                Err(ParseError::Syntax { consumed, reason }) => {
                    self.buf.drain(..consumed);
                    self.reply(&format!("-ERR {reason}"));
                    self.bad += 1;
                }
            }
            if self.bad > self.settings.max_bad_commands {
                self.reply("-ERR Too many errors, closing connection");
                self.flush().await?;
                return Err(Closed::Done);
            }
        }
    }

    async fn command(&mut self, cmd: Command) -> Result<(), Closed> {
        match cmd {
            Command::Capa => self.reply(CAPA),
            Command::Quit => {
                if let Some(md) = self.drop.take() {
                    let ids: Vec<u64> = md
                        .messages
                        .iter()
                        .zip(&md.deleted)
                        .filter(|(_, d)| **d)
                        .map(|(m, _)| m.id)
                        .collect();
                    let n = ids.len();
                    let store = md.store.clone();
                    let res = tokio::task::spawn_blocking(move || store.inbox_delete(&ids)).await;
                    match res {
                        Ok(Ok(())) => {
                            tracing::info!(account = %md.account, deleted = n, "POP3 QUIT: {n} message(s) deleted");
                            self.reply(&format!("+OK Bye ({n} message(s) deleted)"))
                        }
                        Ok(Err(e)) => {
                            tracing::error!(error = %e, "POP3 delete failed");
                            self.reply("-ERR [SYS/TEMP] Some deleted messages not removed");
                        }
                        Err(_) => self.reply("-ERR [SYS/TEMP] Some deleted messages not removed"),
                    }
                    drop(md);
                } else {
                    self.reply("+OK Bye");
                }
                self.flush().await?;
                return Err(Closed::Done);
            }
            Command::Noop if self.drop.is_some() => self.reply("+OK"),
            Command::User(u) if self.drop.is_none() => {
                self.user = Some(u);
                self.reply("+OK Send PASS");
            }
            Command::Pass(p) if self.drop.is_none() => match self.user.take() {
                None => {
                    self.bad += 1;
                    self.reply("-ERR USER first");
                }
                Some(u) => self.login(u, zeroize::Zeroizing::new(p.into_bytes())).await,
            },
            Command::Auth { mechanism, initial } if self.drop.is_none() => {
                self.auth(mechanism, initial).await?
            }
            cmd if self.drop.is_some() => self.transaction(cmd).await?,
            _ => {
                self.bad += 1;
                self.reply("-ERR Command not valid in this state");
            }
        }
        Ok(())
    }

    async fn auth(
        &mut self,
        mechanism: Option<String>,
        initial: Option<String>,
    ) -> Result<(), Closed> {
        match mechanism.as_deref() {
            None => self.reply("+OK\r\nPLAIN\r\n."),
            Some("PLAIN") => {
                let resp = match initial {
                    Some(r) => r,
                    None => {
                        self.reply("+ ");
                        loop {
                            match parser::line(&self.buf, MAX_AUTH_LINE) {
                                Ok((l, n)) => {
                                    let s = String::from_utf8_lossy(l).into_owned();
                                    self.buf.drain(..n);
                                    break s;
                                }
                                Err(ParseError::Incomplete) => self.read_more().await?,
                                Err(_) => {
                                    self.reply("-ERR [AUTH] Response too long");
                                    return Err(Closed::Done);
                                }
                            }
                        }
                    }
                };
                match auth::decode_plain(&resp) {
                    Ok(c) => self.login(c.authcid, c.password).await,
                    Err(auth::SaslError::Cancelled) => self.reply("-ERR Authentication cancelled"),
                    Err(_) => {
                        self.bad += 1;
                        self.reply("-ERR [AUTH] Malformed authentication response");
                    }
                }
            }
            Some(_) => {
                self.bad += 1;
                self.reply("-ERR Unsupported mechanism");
            }
        }
        Ok(())
    }

    async fn login(&mut self, user: String, password: zeroize::Zeroizing<Vec<u8>>) {
        let Some(account) = self.logins.attempt(&user, password).await else {
            self.bad += 1;
            self.reply("-ERR [AUTH] Invalid user name or password");
            return;
        };
        let id = account.id;
        let Some(guard) = self.locks.try_lock(&id) else {
            self.reply("-ERR [IN-USE] Maildrop is already in use by another session");
            return;
        };
        let Some(store) = self.dir.store(&id) else {
            self.reply("-ERR [SYS/TEMP] Maildrop unavailable");
            return;
        };
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.inbox_list()).await {
            Ok(Ok(messages)) => {
                let total: u64 = messages.iter().map(|m| m.message.len).sum();
                tracing::info!(account = %id, messages = messages.len(), "POP3 login");
                self.reply(&format!(
                    "+OK Maildrop has {} message(s) ({total} octets)",
                    messages.len()
                ));
                self.slot.prove();
                self.drop = Some(Maildrop {
                    account: id,
                    store,
                    deleted: vec![false; messages.len()],
                    messages,
                    _guard: guard,
                });
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "POP3: reading the maildrop failed");
                self.reply("-ERR [SYS/PERM] Maildrop cannot be read");
            }
            Err(_) => self.reply("-ERR [SYS/TEMP] Maildrop unavailable"),
        }
    }

    /// Index of live message number `n` (1-based).
    fn lookup(&self, n: u32) -> Option<usize> {
        let md = self.drop.as_ref()?;
        let i = (n as usize).checked_sub(1)?;
        (i < md.messages.len() && !md.deleted[i]).then_some(i)
    }

    async fn transaction(&mut self, cmd: Command) -> Result<(), Closed> {
        match cmd {
            Command::Stat => {
                let md = self.drop.as_ref().expect("in transaction state");
                let (n, size) = md
                    .messages
                    .iter()
                    .zip(&md.deleted)
                    .filter(|(_, d)| !**d)
                    .fold((0, 0u64), |(n, s), (m, _)| (n + 1, s + m.message.len));
                self.reply(&format!("+OK {n} {size}"));
            }
            Command::List(Some(n)) | Command::Uidl(Some(n)) if self.lookup(n).is_none() => {
                self.reply("-ERR [SYS/PERM] No such message");
            }
            Command::List(Some(n)) => {
                let i = self.lookup(n).expect("checked");
                let len = self.drop.as_ref().expect("state").messages[i].message.len;
                self.reply(&format!("+OK {n} {len}"));
            }
            Command::Uidl(Some(n)) => {
                let i = self.lookup(n).expect("checked");
                let u = self.drop.as_ref().expect("state").messages[i].uidl.clone();
                self.reply(&format!("+OK {n} {u}"));
            }
            Command::List(None) | Command::Uidl(None) => {
                let uidl = matches!(cmd, Command::Uidl(_));
                let md = self.drop.as_ref().expect("in transaction state");
                let mut s = String::from("+OK\r\n");
                for (i, (m, d)) in md.messages.iter().zip(&md.deleted).enumerate() {
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
                self.reply(&s);
            }
            Command::Retr(n) => self.send(n, None).await?,
            Command::Top(n, lines) => self.send(n, Some(lines)).await?,
            Command::Dele(n) => match self.lookup(n) {
                Some(i) => {
                    let md = self.drop.as_mut().expect("state");
                    md.deleted[i] = true;
                    tracing::info!(account = %md.account, message = n, "POP3 DELE {n} (removed at QUIT)");
                    self.reply(&format!("+OK Message {n} deleted"));
                }
                None => self.reply("-ERR [SYS/PERM] No such message"),
            },
            Command::Rset => {
                let md = self.drop.as_mut().expect("in transaction state");
                md.deleted.iter_mut().for_each(|d| *d = false);
                self.reply("+OK");
            }
            Command::Noop => self.reply("+OK"),
            _ => {
                self.bad += 1;
                self.reply("-ERR Unknown command");
            }
        }
        Ok(())
    }

    /// RETR (lines = None) or TOP. Each chunk is authenticated before any of
    /// it is sent; a failure after the first chunk closes the connection
    /// without the terminating line so the client never takes a partial
    /// message for a whole one.
    async fn send(&mut self, n: u32, lines: Option<u32>) -> Result<(), Closed> {
        let Some(i) = self.lookup(n) else {
            self.reply("-ERR [SYS/PERM] No such message");
            return Ok(());
        };
        let md = self.drop.as_ref().expect("state");
        let mref = md.messages[i].message;
        let store = md.store.clone();
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
                        self.reply("-ERR [SYS/PERM] Message cannot be read (damaged store)");
                        return Ok(());
                    }
                    self.out.clear();
                    return Err(Closed::Gone);
                }
                Err(_) => return Err(Closed::Gone),
            };
            if idx == 0 {
                self.reply(&format!("+OK {} octets", mref.len));
            }
            let part = match top.as_mut() {
                Some(t) => t.take(&chunk),
                None => &chunk[..],
            };
            stuffer.push(part, &mut self.out);
            if top.as_ref().is_some_and(|t| t.done()) {
                break;
            }
            if self.out.len() >= 64 * 1024 {
                self.flush().await?;
            }
        }
        stuffer.finish(&mut self.out);
        Ok(())
    }
}
