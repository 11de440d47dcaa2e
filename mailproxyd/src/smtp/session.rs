//! One SMTP connection: its [`Connection`] (socket, buffers, shutdown,
//! slot) and the session state; the command grammar lives in
//! [`super::parser`] and DATA decoding in [`super::data`].

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;

use super::auth::{self, Credentials};
use super::data::Unstuffer;
use super::parser::{self, Command, ParseError, MAX_AUTH_LINE};
use super::SmtpSettings;
use crate::connection::{Closed, Connection, Goodbyes};
use crate::login::Logins;
use crate::slots::Slot;
use crate::store::{unix_now, AccountInfo, Directory, NewQueueEntry};

struct Transaction {
    account: AccountInfo,
    recipients: Vec<String>,
}

/// What SMTP says when the server ends a connection.
static GOODBYES: Goodbyes = Goodbyes {
    evicted: Cow::Borrowed("421 4.7.0 Too many connections, closing this idle one"),
    first_command_timeout: Cow::Borrowed("421 4.4.2 Timeout, closing connection"),
    idle_timeout: Cow::Borrowed("421 4.4.2 Timeout, closing connection"),
    shutting_down: Some(Cow::Borrowed("421 4.3.2 Service shutting down")),
};

/// Bytes read at most at a time.
const READ_SIZE: usize = 64 * 1024;

/// An SMTP session on one connection.
pub struct Session {
    conn: Connection<TcpStream>,
    dir: Arc<dyn Directory>,
    settings: Arc<SmtpSettings>,
    esmtp: bool,
    authenticated: Option<String>,
    logins: Logins,
    txn: Option<Transaction>,
    bad: u32,
}

impl Session {
    /// A session for an accepted connection.
    pub fn new(
        sock: TcpStream,
        dir: Arc<dyn Directory>,
        settings: Arc<SmtpSettings>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Session {
            conn: Connection::new(sock, stop, &GOODBYES, READ_SIZE, 1024),
            logins: Logins::new(dir.clone(), "SMTP"),
            dir,
            settings,
            esmtp: false,
            authenticated: None,
            txn: None,
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
        self.reply("421 4.3.2 Too many connections, try again later");
        let _ = self.flush().await;
    }

    fn reply(&mut self, line: &str) {
        self.conn.reply(line);
    }

    async fn flush(&mut self) -> Result<(), Closed> {
        self.conn.flush().await
    }

    /// Reads more input (see [`Connection::read_more`]).
    async fn read_more(&mut self, timeout: Duration, stoppable: bool) -> Result<(), Closed> {
        self.conn.read_more(Some(timeout), stoppable).await
    }

    /// Runs the session to its end.
    pub async fn run(mut self) {
        let greeting = format!("220 {} ESMTP mailproxyd", self.settings.hostname);
        self.reply(&greeting);
        let _ = self.session().await;
        self.conn.shutdown().await;
    }

    async fn session(&mut self) -> Result<(), Closed> {
        loop {
            match parser::parse(&self.conn.buf) {
                Ok((cmd, n)) => {
                    self.conn.buf.drain(..n);
                    if !matches!(cmd, Command::Unknown(_) | Command::StartTls) {
                        self.conn.slot.touch();
                    }
                    self.command(cmd).await?;
                }
                Err(ParseError::Incomplete) => {
                    let t = self.settings.command_timeout;
                    self.read_more(t, true).await?;
                }
                Err(ParseError::LineTooLong) => {
                    self.reply("500 5.5.2 Line too long");
                    self.bad += 1;
                    loop {
                        let (n, found) = parser::skip_line(&self.conn.buf);
                        self.conn.buf.drain(..n);
                        if found {
                            break;
                        }
                        let t = self.settings.command_timeout;
                        self.read_more(t, true).await?;
                    }
                }
                Err(ParseError::Syntax { consumed, reason }) => {
                    self.conn.buf.drain(..consumed);
                    self.reply(&format!("501 {reason}"));
                    self.bad += 1;
                }
            }
            if self.bad > self.settings.max_bad_commands {
                self.reply("421 4.7.0 Too many errors, closing connection");
                self.flush().await?;
                return Err(Closed::Done);
            }
        }
    }

    async fn command(&mut self, cmd: Command) -> Result<(), Closed> {
        match cmd {
            Command::Helo(_) => {
                self.esmtp = false;
                self.txn = None;
                let r = format!("250 {}", self.settings.hostname);
                self.reply(&r);
            }
            Command::Ehlo(_) => {
                self.esmtp = true;
                self.txn = None;
                let r = format!(
                    "250-{}\r\n250-SIZE {}\r\n250-8BITMIME\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250 AUTH PLAIN LOGIN",
                    self.settings.hostname, self.settings.max_message_size
                );
                self.reply(&r);
            }
            Command::Auth { mechanism, initial } => self.auth(&mechanism, initial).await?,
            Command::Mail { from, params } => self.mail(&from, &params),
            Command::Rcpt { to, params } => self.rcpt(&to, &params),
            Command::Data => self.data().await?,
            Command::Rset => {
                self.txn = None;
                self.reply("250 2.0.0 OK");
            }
            Command::Noop => self.reply("250 2.0.0 OK"),
            Command::Quit => {
                self.reply("221 2.0.0 Bye");
                self.flush().await?;
                return Err(Closed::Done);
            }
            Command::Vrfy => self
                .reply("252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery"),
            Command::Expn => self.reply("502 5.5.1 EXPN not supported"),
            Command::Help => self.reply("214 2.0.0 See RFC 5321"),
            Command::StartTls => {
                self.bad += 1;
                self.reply("502 5.5.1 STARTTLS not supported");
            }
            Command::Unknown(_) => {
                self.bad += 1;
                self.reply("500 5.5.2 Command unrecognized");
            }
        }
        Ok(())
    }

    async fn read_line(&mut self) -> Result<Option<String>, Closed> {
        loop {
            match parser::line(&self.conn.buf, MAX_AUTH_LINE) {
                Ok((l, n)) => {
                    let s = String::from_utf8_lossy(l).into_owned();
                    self.conn.buf.drain(..n);
                    return Ok(Some(s));
                }
                Err(ParseError::Incomplete) => {
                    let t = self.settings.command_timeout;
                    self.read_more(t, false).await?;
                }
                Err(_) => {
                    let (n, _) = parser::skip_line(&self.conn.buf);
                    self.conn.buf.drain(..n);
                    return Ok(None);
                }
            }
        }
    }

    async fn auth(&mut self, mechanism: &str, initial: Option<String>) -> Result<(), Closed> {
        if self.authenticated.is_some() {
            self.reply("503 5.5.1 Already authenticated");
            return Ok(());
        }
        if self.txn.is_some() {
            self.reply("503 5.5.1 AUTH not permitted during a mail transaction");
            return Ok(());
        }
        let creds: Result<Credentials, auth::SaslError> = match mechanism {
            "PLAIN" => {
                let resp = match initial {
                    Some(r) => r,
                    None => {
                        self.reply("334 ");
                        match self.read_line().await? {
                            Some(l) => l,
                            None => {
                                self.reply("500 5.5.6 Authentication exchange line too long");
                                self.bad += 1;
                                return Ok(());
                            }
                        }
                    }
                };
                auth::decode_plain(&resp)
            }
            "LOGIN" => {
                let user = match initial {
                    Some(r) => Some(r),
                    None => {
                        self.reply(&format!("334 {}", auth::encode_challenge(b"Username:")));
                        self.read_line().await?
                    }
                };
                let pass = if user.is_some() {
                    self.reply(&format!("334 {}", auth::encode_challenge(b"Password:")));
                    self.read_line().await?
                } else {
                    None
                };
                match (user, pass) {
                    (Some(u), Some(p)) => (|| {
                        let u = auth::decode_response(&u)?;
                        let p = auth::decode_response(&p)?;
                        let authcid = String::from_utf8(u.to_vec())
                            .map_err(|_| auth::SaslError::Malformed)?;
                        Ok(Credentials {
                            authcid,
                            password: p,
                        })
                    })(),
                    _ => Err(auth::SaslError::Malformed),
                }
            }
            _ => {
                self.reply("504 5.5.4 Unrecognized authentication mechanism");
                self.bad += 1;
                return Ok(());
            }
        };
        let creds = match creds {
            Ok(c) => c,
            Err(auth::SaslError::Cancelled) => {
                self.reply("501 5.0.0 Authentication cancelled");
                return Ok(());
            }
            Err(_) => {
                self.reply("501 5.5.2 Malformed authentication response");
                self.bad += 1;
                return Ok(());
            }
        };
        match self.logins.attempt(&creds.authcid, creds.password).await {
            Some(account) => {
                tracing::info!(account = %account.id, "SMTP AUTH succeeded");
                self.authenticated = Some(account.id);
                self.conn.slot.prove();
                self.reply("235 2.7.0 Authentication successful");
            }
            None => {
                self.bad += 1;
                self.reply("535 5.7.8 Authentication credentials invalid");
            }
        }
        Ok(())
    }

    fn mail(&mut self, from: &str, params: &[(String, Option<String>)]) {
        if self.txn.is_some() {
            self.reply("503 5.5.1 Nested MAIL command");
            return;
        }
        if from.is_empty() {
            self.reply(
                "550 5.7.1 The null sender is not accepted; use one of this proxy's accounts",
            );
            return;
        }
        if parser::normalize_address(from).is_none() {
            self.reply("553 5.1.7 Bad sender address syntax");
            return;
        }
        // The sender must be the account logged in (ids compared as
        // normalised, so in any case the account ids allow).
        let sender = self
            .dir
            .normalize(from)
            .and_then(|id| self.dir.account(&id));
        let account = match (&self.authenticated, sender) {
            (Some(login), Some(a)) if a.id == *login => a,
            (Some(_), _) => {
                self.reply("553 5.7.1 Sender address not owned by the authenticated user");
                return;
            }
            (None, Some(a)) if !a.password_required => a,
            (None, Some(_)) => {
                self.reply("530 5.7.0 Authentication required");
                return;
            }
            (None, None) => {
                self.reply("550 5.7.1 Sender is not an account of this proxy");
                return;
            }
        };
        for (k, v) in params {
            match (k.as_str(), v.as_deref()) {
                ("SIZE", Some(v)) => match v.parse::<u64>() {
                    Ok(n) if n > self.settings.max_message_size as u64 => {
                        self.reply("552 5.3.4 Message size exceeds fixed maximum message size");
                        return;
                    }
                    Ok(_) => {}
                    Err(_) => {
                        self.reply("501 5.5.4 Bad SIZE parameter");
                        return;
                    }
                },
                ("BODY", Some(v))
                    if v.eq_ignore_ascii_case("7BIT") || v.eq_ignore_ascii_case("8BITMIME") => {}
                ("BODY", _) => {
                    self.reply("501 5.5.4 Unsupported BODY type");
                    return;
                }
                // RFC 4954 §5: accepted and ignored.
                ("AUTH", Some(_)) => {}
                _ => {
                    self.reply("555 5.5.4 Unsupported MAIL parameter");
                    return;
                }
            }
        }
        self.txn = Some(Transaction {
            account,
            recipients: Vec::new(),
        });
        self.reply("250 2.1.0 Sender OK");
    }

    fn rcpt(&mut self, to: &str, params: &[(String, Option<String>)]) {
        let max = self.settings.max_recipients;
        let Some(txn) = self.txn.as_mut() else {
            self.reply("503 5.5.1 Need MAIL before RCPT");
            return;
        };
        if !params.is_empty() {
            self.reply("555 5.5.4 Unsupported RCPT parameter");
            return;
        }
        let Some(addr) = parser::normalize_address(to) else {
            self.reply("553 5.1.3 Bad recipient address syntax (expected user@provider)");
            return;
        };
        if txn.recipients.contains(&addr) {
            self.reply("250 2.1.5 Recipient OK (duplicate)");
            return;
        }
        if txn.recipients.len() >= max {
            self.reply("452 4.5.3 Too many recipients");
            return;
        }
        if self.dir.recipient_known(&addr) || txn.account.insecure_key_discovery {
            txn.recipients.push(addr);
            self.reply("250 2.1.5 Recipient OK");
        } else {
            self.reply("550 5.1.1 No key is known for this recipient (import it, or enable InsecureKeyDiscovery)");
        }
    }

    async fn data(&mut self) -> Result<(), Closed> {
        match &self.txn {
            None => {
                self.reply("503 5.5.1 Need MAIL before DATA");
                return Ok(());
            }
            Some(t) if t.recipients.is_empty() => {
                self.reply("503 5.5.1 No valid recipients");
                return Ok(());
            }
            Some(_) => {}
        }
        self.reply("354 End data with <CR><LF>.<CR><LF>");
        self.flush().await?;
        let max = self.settings.max_message_size;
        let mut dec = Unstuffer::new();
        let mut msg = Vec::new();
        let mut scratch = Vec::new();
        let mut overflow = false;
        loop {
            let (n, done) = if overflow {
                scratch.clear();
                dec.feed(&self.conn.buf, &mut scratch)
            } else {
                dec.feed(&self.conn.buf, &mut msg)
            };
            self.conn.buf.drain(..n);
            if !overflow && msg.len() > max {
                overflow = true;
                msg = Vec::new();
            }
            if done {
                break;
            }
            let t = self.settings.data_timeout;
            self.read_more(t, false).await?;
        }
        let txn = self.txn.take().expect("checked above");
        if overflow {
            self.reply("552 5.3.4 Message size exceeds fixed maximum message size");
            return Ok(());
        }
        let unreliable = match crate::message::header_value(&msg, "X-Katzenpost-Unreliable") {
            None => false,
            Some(v) if v.eq_ignore_ascii_case(b"true") => true,
            Some(v) if v.eq_ignore_ascii_case(b"false") => false,
            Some(_) => {
                self.reply("554 5.6.0 X-Katzenpost-Unreliable must be true or false");
                return Ok(());
            }
        };
        let Some(store) = self.dir.store(&txn.account.id) else {
            self.reply("451 4.3.0 Store unavailable, try again later");
            return Ok(());
        };
        let now = unix_now();
        let mut full =
            crate::message::prepended_headers(&msg, now, self.esmtp, self.authenticated.is_some());
        full.extend_from_slice(&msg);
        drop(msg);
        let entries: Vec<NewQueueEntry> = txn
            .recipients
            .iter()
            .map(|r| NewQueueEntry {
                recipient: r.clone(),
                created: now,
                bounce_at: now + self.settings.bounce_lifetime,
                unreliable,
            })
            .collect();
        let size = full.len();
        let sender = txn.account.id.clone();
        let prepare = move || {
            // The IMAP Sent copy is filed in the same commit.
            let (e, rx) = store.enqueue_async_with_sent(&sender, &full, &entries, now);
            (e.len(), rx)
        };
        // Sealing a small message takes microseconds: do it inline; large
        // ones go to the blocking pool. Either way the reply waits for the
        // durable group commit below.
        let prepared = if size <= 64 * 1024 {
            Ok(prepare())
        } else {
            tokio::task::spawn_blocking(prepare).await
        };
        let result = match prepared {
            Ok((n, rx)) => rx.await.map(|r| r.map(|_| n)),
            Err(_) => {
                self.reply("451 4.3.0 Local error, message not queued");
                return Ok(());
            }
        };
        match result {
            Ok(Ok(n)) => {
                tracing::info!(account = %txn.account.id, recipients = n, size, "message queued");
                self.dir.queued(&txn.account.id);
                self.reply(&format!("250 2.0.0 OK: queued for {n} recipient(s)"));
            }
            Ok(Err(e)) if e.is_storage_full() => {
                // RFC 3463 4.3.1: the client keeps the message and retries.
                tracing::warn!(error = %e, "message not queued: the disk is full");
                self.reply("452 4.3.1 Insufficient system storage, message not queued");
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "queueing a message failed");
                self.reply("451 4.3.0 Local error, message not queued");
            }
            Err(_) => {
                self.reply("451 4.3.0 Local error, message not queued");
            }
        }
        Ok(())
    }
}
