//! One IMAP connection: owns the socket, imap-codec's fragmentizer (the
//! input buffer, bounded by [`ImapSettings::max_command`]) and the session
//! state. Responses are built as imap-types values and serialised by
//! imap-codec.
//!
//! Store writes are durable before the response that shows them: flags in
//! a FETCH reply after STORE, EXPUNGE after the removal commit, COPYUID and
//! APPENDUID after theirs. Untagged EXPUNGE is never sent during FETCH,
//! STORE, SEARCH, COPY or MOVE by sequence number (RFC 3501 7.4.1): the
//! view is brought up to date before the other commands and while IDLE.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::Arc;

use imap_codec::encode::{Encoder, Fragment};
use imap_codec::fragmentizer::{FragmentInfo, Fragmentizer, LiteralAnnouncement};
use imap_codec::imap_types::auth::{AuthMechanism, AuthenticateData};
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::{
    Atom, Charset, IString, Literal, LiteralMode, NString, Tag, Vec1,
};
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::namespace::Namespace;
use imap_codec::imap_types::extensions::uidplus::{UidElement, UidSet};
use imap_codec::imap_types::fetch::{
    Macro, MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName,
};
use imap_codec::imap_types::flag::{
    Flag, FlagFetch, FlagNameAttribute, FlagPerm, StoreResponse, StoreType,
};
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::response::{
    Capability, Code, CommandContinuationRequest, Data, Response, Status, StatusKind,
};
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::SequenceSet;
use imap_codec::imap_types::status::{StatusDataItem, StatusDataItemName};
use imap_codec::imap_types::IntoStatic;
use imap_codec::{AuthenticateDataCodec, CommandCodec, IdleDoneCodec, ResponseCodec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::cache::{Body, Caches};
use super::search::{self, Candidate};
use super::ImapSettings;
use crate::login::Logins;
use crate::slots::{Cancelled, Slot};
use crate::smtp::auth;
use crate::store::{unix_now, Directory, MailMsg, MailboxInfo, Special, Store, StoreError};

enum Closed {
    Gone,
    Done,
}

enum Mode {
    Command,
    Authenticate(Tag<'static>),
    Idle(Tag<'static>),
}

struct Account {
    id: String,
    store: Store,
    _count: super::SessionCount,
}

struct Selected {
    info: MailboxInfo,
    read_only: bool,
    msgs: Vec<MailMsg>,
    /// The store's fingerprint of each message as last read (see
    /// [`Store::mailbox_fingerprints`]): a refresh re-reads only the
    /// messages whose fingerprint changed.
    fps: HashMap<u64, [u8; 16]>,
    changes: watch::Receiver<u64>,
}

/// A mailbox as STATUS and SELECT read it.
struct OpenMailbox {
    info: MailboxInfo,
    msgs: Vec<MailMsg>,
    uid_next: u64,
    /// Filled for SELECT/EXAMINE only.
    fps: HashMap<u64, [u8; 16]>,
}

/// Messages read per blocking task (and output flushed) during FETCH.
const FETCH_BATCH: usize = 64;
/// Subscriptions record in the store's meta table.
const SUBSCRIPTIONS: &[u8] = b"imap/subscriptions";

/// An IMAP session on one connection.
pub struct Session {
    sock: TcpStream,
    frag: Fragmentizer,
    rbuf: Vec<u8>,
    out: Vec<u8>,
    dir: Arc<dyn Directory>,
    settings: Arc<ImapSettings>,
    stop: watch::Receiver<bool>,
    logins: Logins,
    account: Option<Account>,
    selected: Option<Selected>,
    mode: Mode,
    bad: u32,
    read_any: bool,
    slot: Slot,
}

fn capabilities(logged_in: bool) -> Vec1<Capability<'static>> {
    let mut caps = vec![Capability::Imap4Rev1];
    if !logged_in {
        caps.push(Capability::Auth(AuthMechanism::Plain));
        caps.push(Capability::SaslIr);
    }
    caps.extend([
        Capability::Idle,
        Capability::UidPlus,
        Capability::Move,
        Capability::Namespace,
        Capability::Id,
        Capability::Enable,
        Capability::LiteralPlus,
        Capability::Unselect,
    ]);
    for other in ["SPECIAL-USE", "CHILDREN"] {
        caps.push(Capability::from(Atom::try_from(other).expect("atom")));
    }
    Vec1::try_from(caps).expect("non-empty")
}

fn uid32(u: u64) -> u32 {
    u32::try_from(u).unwrap_or(u32::MAX)
}

fn nz(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN)
}

fn to_flags(v: &[String]) -> Vec<Flag<'static>> {
    v.iter()
        .filter_map(|s| Flag::try_from(s.as_str()).ok().map(IntoStatic::into_static))
        .collect()
}

fn to_fetch_flags(v: &[String]) -> Vec<FlagFetch<'static>> {
    to_flags(v).into_iter().map(FlagFetch::from).collect()
}

fn has_flag(v: &[String], f: &str) -> bool {
    v.iter().any(|x| x.eq_ignore_ascii_case(f))
}

fn mailbox_name(m: &Mailbox<'_>) -> String {
    match m {
        Mailbox::Inbox => "INBOX".into(),
        Mailbox::Other(o) => String::from_utf8_lossy(o.as_ref())
            .trim_end_matches('/')
            .to_owned(),
    }
}

fn to_mailbox(name: &str) -> Mailbox<'static> {
    Mailbox::try_from(name.to_owned()).unwrap_or(Mailbox::Inbox)
}

fn literal<'a>(b: impl Into<std::borrow::Cow<'a, [u8]>>) -> NString<'a> {
    NString(Some(IString::Literal(Literal::unvalidated(b))))
}

fn uid_set(uids: impl IntoIterator<Item = u64>) -> Option<UidSet> {
    let v: Vec<UidElement> = uids
        .into_iter()
        .map(|u| UidElement::Single(nz(uid32(u))))
        .collect();
    Vec1::try_from(v).ok().map(UidSet)
}

/// IMAP LIST wildcard match: `*` matches anything, `%` anything but `/`.
fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|i| wildcard(rest, &name[i..])),
        Some((b'%', rest)) => {
            (0..=name.len()).any(|i| !name[..i].contains(&b'/') && wildcard(rest, &name[i..]))
        }
        Some((c, rest)) => name.first() == Some(c) && wildcard(rest, &name[1..]),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or(Err(StoreError::Closed))
}

/// Acknowledges the bytes just read at once instead of after the kernel's
/// delayed-ACK timer (up to 40 ms), which Linux re-arms after each read.
/// A client that sends a synchronising literal and its closing CRLF in two
/// writes (Python imaplib's APPEND) holds the CRLF back under Nagle until
/// that ACK: without this, every such APPEND took about 44 ms.
fn quick_ack(sock: &tokio::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a c_int option of the right size.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

async fn changed(c: Option<&mut watch::Receiver<u64>>) {
    match c {
        Some(c) => {
            if c.changed().await.is_err() {
                std::future::pending::<()>().await
            }
        }
        None => std::future::pending::<()>().await,
    }
}

impl Session {
    /// A session for an accepted connection.
    pub fn new(
        sock: TcpStream,
        dir: Arc<dyn Directory>,
        settings: Arc<ImapSettings>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Session {
            sock,
            frag: Fragmentizer::new(settings.max_command),
            rbuf: vec![0; 16 * 1024],
            out: Vec::with_capacity(64 * 1024),
            logins: Logins::new(dir.clone(), "IMAP"),
            dir,
            settings,
            stop,
            account: None,
            selected: None,
            mode: Mode::Command,
            bad: 0,
            read_any: false,
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
        self.bye("Too many connections, try again later");
        let _ = self.flush().await;
    }

    fn respond(&mut self, r: &Response<'_>) {
        self.out.extend(ResponseCodec::new().encode(r).dump());
    }

    fn data(&mut self, d: Data<'_>) {
        self.respond(&Response::Data(d));
    }

    fn bye(&mut self, text: &str) {
        if let Ok(s) = Status::bye(None, text) {
            self.respond(&Response::Status(s));
        }
    }

    fn status(
        &mut self,
        tag: Option<Tag<'_>>,
        kind: StatusKind,
        code: Option<Code<'_>>,
        text: &str,
    ) {
        let s = match kind {
            StatusKind::Ok => Status::ok(tag, code, text),
            StatusKind::No => Status::no(tag, code, text),
            StatusKind::Bad => Status::bad(tag, code, text),
        };
        if let Ok(s) = s {
            self.respond(&Response::Status(s));
        }
    }

    fn ok(&mut self, tag: Tag<'_>, code: Option<Code<'_>>, text: &str) {
        self.status(Some(tag), StatusKind::Ok, code, text);
    }

    fn no(&mut self, tag: Tag<'_>, code: Option<Code<'_>>, text: &str) {
        self.status(Some(tag), StatusKind::No, code, text);
    }

    fn bad_command(&mut self, tag: Option<Tag<'_>>, text: &str) {
        self.bad += 1;
        self.status(tag, StatusKind::Bad, None, text);
    }

    fn store_failed(&mut self, tag: Tag<'_>, e: &StoreError) {
        tracing::warn!(error = %e, "IMAP: store operation failed");
        self.no(tag, None, "Store unavailable, try again later");
    }

    async fn flush(&mut self) -> Result<(), Closed> {
        if self.out.is_empty() {
            return Ok(());
        }
        let r = self.sock.write_all(&self.out).await;
        self.out.clear();
        r.map_err(|_| Closed::Gone)
    }

    /// Reads more input into the fragmentizer; while IDLE, also reports
    /// mailbox changes as they are committed.
    async fn read_more(&mut self) -> Result<(), Closed> {
        loop {
            self.flush().await?;
            let idle = matches!(self.mode, Mode::Idle(_));
            let changes = match (&mut self.selected, idle) {
                (Some(s), true) => Some(&mut s.changes),
                _ => None,
            };
            let mut stop = self.stop.clone();
            let read =
                tokio::time::timeout(self.settings.idle_timeout, self.sock.read(&mut self.rbuf));
            let mut cancelled = None;
            let mut woke = false;
            let res = tokio::select! {
                r = read => Some(r),
                _ = stop.wait_for(|s| *s) => None,
                c = self.slot.cancelled() => {
                    cancelled = Some(c);
                    None
                }
                _ = changed(changes) => {
                    woke = true;
                    None
                }
            };
            if woke {
                // changed() marked the version seen: reload unconditionally.
                self.refresh().await;
                continue;
            }
            if let Some(c) = cancelled {
                self.bye(match c {
                    Cancelled::Evicted => "Too many connections, closing this idle one",
                    Cancelled::FirstCommandTimeout => "Idle timeout, closing connection",
                });
                let _ = self.flush().await;
                return Err(Closed::Done);
            }
            return match res {
                None => {
                    self.bye("Server shutting down");
                    let _ = self.flush().await;
                    Err(Closed::Done)
                }
                Some(Err(_)) => {
                    self.bye("Autologout: idle for too long");
                    let _ = self.flush().await;
                    Err(Closed::Done)
                }
                Some(Ok(Ok(0))) | Some(Ok(Err(_))) => Err(Closed::Gone),
                Some(Ok(Ok(n))) => {
                    if !self.read_any && self.rbuf[0] == 0x16 {
                        self.bye("This is plain IMAP on a local port, not TLS");
                        let _ = self.flush().await;
                        return Err(Closed::Done);
                    }
                    self.read_any = true;
                    self.frag.enqueue_bytes(&self.rbuf[..n]);
                    quick_ack(&self.sock);
                    Ok(())
                }
            };
        }
    }

    /// Runs the session to its end.
    pub async fn run(mut self) {
        let caps = capabilities(false);
        self.status(
            None,
            StatusKind::Ok,
            Some(Code::Capability(caps)),
            "mailproxyd IMAP4rev1 ready",
        );
        let _ = self.session().await;
        let _ = self.sock.shutdown().await;
        // The account's last session: its decrypted bodies leave memory
        // after the grace period (see `cache`).
        if let Some(a) = self.account.take() {
            let id = a.id.clone();
            drop(a);
            if self.settings.sessions.count(&id) == 0 {
                self.settings.caches.account_idle(&id);
            }
        }
    }

    async fn session(&mut self) -> Result<(), Closed> {
        loop {
            let Some(info) = self.frag.progress() else {
                self.read_more().await?;
                continue;
            };
            if let FragmentInfo::Line {
                announcement: Some(LiteralAnnouncement { mode, length }),
                ..
            } = info
            {
                if length > self.settings.max_command {
                    if mode == LiteralMode::Sync {
                        let tag = self.frag.decode_tag().map(IntoStatic::into_static);
                        self.frag.skip_message();
                        self.bad_command(tag, "Literal too large");
                    }
                    // A non-synchronising one is read and dropped: decoding fails.
                } else if mode == LiteralMode::Sync {
                    if let Ok(c) = CommandContinuationRequest::basic(None, "Ready for literal data")
                    {
                        self.respond(&Response::CommandContinuationRequest(c));
                    }
                    self.flush().await?;
                }
                continue;
            }
            if !self.frag.is_message_complete() {
                continue;
            }
            self.message().await?;
            if self.bad >= self.settings.max_bad_commands {
                self.bye("Too many bad commands, closing connection");
                self.flush().await?;
                return Err(Closed::Done);
            }
        }
    }

    /// Handles one complete message of the fragmentizer.
    async fn message(&mut self) -> Result<(), Closed> {
        match std::mem::replace(&mut self.mode, Mode::Command) {
            Mode::Command => {
                let decoded = self
                    .frag
                    .decode_message(&CommandCodec::default())
                    .map(IntoStatic::into_static)
                    .map_err(|_| ());
                match decoded {
                    Ok(cmd) => {
                        self.slot.touch();
                        self.command(cmd).await?;
                    }
                    Err(()) => {
                        let tag = self.frag.decode_tag().map(IntoStatic::into_static);
                        let too_long = self.frag.is_max_message_size_exceeded();
                        self.bad_command(
                            tag,
                            if too_long {
                                "Command too long"
                            } else {
                                "Syntax error"
                            },
                        );
                    }
                }
            }
            Mode::Authenticate(tag) => {
                let data = self
                    .frag
                    .decode_message(&AuthenticateDataCodec::default())
                    .map(IntoStatic::into_static)
                    .map_err(|_| ());
                match data {
                    Ok(AuthenticateData::Continue(d)) => {
                        let raw = zeroize::Zeroizing::new(d.declassify().to_vec());
                        self.plain(tag, &raw).await;
                    }
                    Ok(AuthenticateData::Cancel) => {
                        self.bad_command(Some(tag), "Authentication cancelled")
                    }
                    Err(()) => self.bad_command(Some(tag), "Malformed authentication response"),
                }
            }
            Mode::Idle(tag) => match self.frag.decode_message(&IdleDoneCodec::default()) {
                Ok(_) => {
                    self.sync(true).await;
                    self.ok(tag, None, "IDLE terminated");
                }
                Err(_) => self.bad_command(Some(tag), "Expected DONE"),
            },
        }
        Ok(())
    }

    async fn command(&mut self, cmd: Command<'static>) -> Result<(), Closed> {
        let Command { tag, body } = cmd;
        match body {
            CommandBody::Capability => {
                let caps = capabilities(self.account.is_some());
                self.data(Data::Capability(caps));
                self.ok(tag, None, "CAPABILITY completed");
            }
            CommandBody::Noop | CommandBody::Check => {
                self.sync(true).await;
                self.ok(tag, None, "NOOP completed");
            }
            CommandBody::Logout => {
                self.bye("Logging out");
                self.ok(tag, None, "LOGOUT completed");
                self.flush().await?;
                return Err(Closed::Done);
            }
            CommandBody::Id { .. } => {
                let params = vec![(
                    IString::try_from("name").expect("quoted"),
                    NString(Some(IString::try_from("mailproxyd").expect("quoted"))),
                )];
                self.data(Data::Id {
                    parameters: Some(params),
                });
                self.ok(tag, None, "ID completed");
            }
            CommandBody::Login { username, password } if self.account.is_none() => {
                let user = String::from_utf8_lossy(username.as_ref()).into_owned();
                let pw = zeroize::Zeroizing::new(password.declassify().as_ref().to_vec());
                self.login(tag, user, pw).await;
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } if self.account.is_none() => {
                if mechanism != AuthMechanism::Plain {
                    self.bad += 1;
                    self.no(tag, None, "Only AUTHENTICATE PLAIN is offered");
                } else if let Some(ir) = initial_response {
                    let raw = zeroize::Zeroizing::new(ir.declassify().to_vec());
                    self.plain(tag, &raw).await;
                } else {
                    self.respond(&Response::CommandContinuationRequest(
                        CommandContinuationRequest::base64(Vec::new()),
                    ));
                    self.mode = Mode::Authenticate(tag);
                }
            }
            CommandBody::Login { .. } | CommandBody::Authenticate { .. } => {
                self.bad_command(Some(tag), "Already logged in");
            }
            body if self.account.is_none() => {
                let _ = body;
                self.bad += 1;
                self.no(tag, None, "Log in first");
            }
            body => self.authenticated(tag, body).await?,
        }
        Ok(())
    }

    async fn plain(&mut self, tag: Tag<'static>, raw: &[u8]) {
        match auth::decode_plain_bytes(raw) {
            Ok(c) => self.login(tag, c.authcid, c.password).await,
            Err(_) => self.bad_command(Some(tag), "Malformed PLAIN response"),
        }
    }

    async fn login(
        &mut self,
        tag: Tag<'static>,
        user: String,
        password: zeroize::Zeroizing<Vec<u8>>,
    ) {
        let Some(account) = self.logins.attempt(&user, password).await else {
            self.bad += 1;
            let code = Code::Other(imap_codec::imap_types::response::CodeOther::unvalidated(
                &b"AUTHENTICATIONFAILED"[..],
            ));
            self.no(tag, Some(code), "Invalid user name or password");
            return;
        };
        let Some(store) = self.dir.store(&account.id) else {
            self.no(tag, None, "Mailbox unavailable");
            return;
        };
        self.account = Some(Account {
            _count: self.settings.sessions.enter(&account.id),
            id: account.id,
            store,
        });
        self.slot.prove();
        let caps = capabilities(true);
        self.ok(tag, Some(Code::Capability(caps)), "Logged in");
    }

    fn store(&self) -> Store {
        self.account.as_ref().expect("logged in").store.clone()
    }

    async fn authenticated(
        &mut self,
        tag: Tag<'static>,
        body: CommandBody<'static>,
    ) -> Result<(), Closed> {
        match body {
            CommandBody::Namespace => {
                let personal = vec![Namespace {
                    prefix: IString::try_from("").expect("quoted"),
                    delimiter: imap_codec::imap_types::core::QuotedChar::try_from('/').ok(),
                    extensions: Vec::new(),
                }];
                self.data(Data::Namespace {
                    personal,
                    other: Vec::new(),
                    shared: Vec::new(),
                });
                self.ok(tag, None, "NAMESPACE completed");
            }
            CommandBody::Enable { .. } => {
                // Nothing this server offers needs enabling.
                self.data(Data::Enabled {
                    capabilities: Vec::new(),
                });
                self.ok(tag, None, "ENABLE completed");
            }
            CommandBody::Select { mailbox, .. } => self.select(tag, &mailbox, false).await,
            CommandBody::Examine { mailbox, .. } => self.select(tag, &mailbox, true).await,
            CommandBody::Create { mailbox } => {
                let name = mailbox_name(&mailbox);
                let store = self.store();
                match blocking(move || store.mailbox_create(&name)).await {
                    Ok(Some(_)) => self.done(tag, "CREATE completed").await,
                    Ok(None) => self.no(tag, None, "Mailbox exists"),
                    Err(e) => self.store_failed(tag, &e),
                }
            }
            CommandBody::Delete { mailbox } => {
                let name = mailbox_name(&mailbox);
                let store = self.store();
                let r = blocking(move || match store.mailbox_find(&name)? {
                    Some(b) if b.special == Special::None => {
                        store.mailbox_delete(b.id).map(|_| true)
                    }
                    _ => Ok(false),
                })
                .await;
                match r {
                    Ok(true) => self.done(tag, "DELETE completed").await,
                    Ok(false) => self.no(
                        tag,
                        None,
                        "No such user mailbox (INBOX, Sent and Trash stay)",
                    ),
                    Err(e) => self.store_failed(tag, &e),
                }
            }
            CommandBody::Rename { from, to } => {
                let (from, to) = (mailbox_name(&from), mailbox_name(&to));
                let store = self.store();
                match blocking(move || store.mailbox_rename(&from, &to)).await {
                    Ok(true) => self.done(tag, "RENAME completed").await,
                    Ok(false) => self.no(
                        tag,
                        None,
                        "Cannot rename: no such user mailbox, or the new name exists",
                    ),
                    Err(e) => self.store_failed(tag, &e),
                }
            }
            CommandBody::Subscribe { mailbox } => {
                self.subscribe(tag, mailbox_name(&mailbox), true).await
            }
            CommandBody::Unsubscribe { mailbox } => {
                self.subscribe(tag, mailbox_name(&mailbox), false).await
            }
            CommandBody::List {
                reference,
                mailbox_wildcard,
            } => self.list(tag, &reference, &mailbox_wildcard, false).await,
            CommandBody::Lsub {
                reference,
                mailbox_wildcard,
            } => self.list(tag, &reference, &mailbox_wildcard, true).await,
            CommandBody::Status {
                mailbox,
                item_names,
            } => self.status_cmd(tag, &mailbox, &item_names).await,
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            } => {
                let name = mailbox_name(&mailbox);
                let bytes = match message {
                    imap_codec::imap_types::extensions::binary::LiteralOrLiteral8::Literal(l) => {
                        l.into_inner()
                    }
                    imap_codec::imap_types::extensions::binary::LiteralOrLiteral8::Literal8(l) => {
                        l.data
                    }
                }
                .into_owned();
                let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
                let internal = date
                    .map(|d| d.as_ref().timestamp().max(0) as u64)
                    .unwrap_or_else(unix_now);
                let store = self.store();
                let r = blocking(move || match store.mailbox_find(&name)? {
                    Some(b) => store
                        .mailbox_append(b.id, &bytes, flags, internal)
                        .map(|uid| Some((b.uidvalidity, uid))),
                    None => Ok(None),
                })
                .await;
                match r {
                    Ok(Some((v, uid))) => {
                        self.sync(true).await;
                        let code = Code::AppendUid {
                            uid_validity: nz(v),
                            uid: nz(uid32(uid)),
                        };
                        self.ok(tag, Some(code), "APPEND completed");
                    }
                    Ok(None) => self.no(tag, Some(Code::TryCreate), "No such mailbox"),
                    Err(e) => self.store_failed(tag, &e),
                }
            }
            CommandBody::Idle => {
                self.sync(true).await;
                if let Ok(c) = CommandContinuationRequest::basic(None, "idling") {
                    self.respond(&Response::CommandContinuationRequest(c));
                }
                self.mode = Mode::Idle(tag);
            }
            body if self.selected.is_none() => {
                let _ = body;
                self.bad += 1;
                self.no(tag, None, "Select a mailbox first");
            }
            body => self.selected_cmd(tag, body).await?,
        }
        Ok(())
    }

    /// Brings the view up to date, then answers OK.
    async fn done(&mut self, tag: Tag<'static>, text: &str) {
        self.sync(true).await;
        self.ok(tag, None, text);
    }

    async fn subscriptions(&self) -> Result<Vec<String>, StoreError> {
        let store = self.store();
        blocking(move || {
            Ok(
                match store.kv_get(crate::store::KvTable::Meta, SUBSCRIPTIONS)? {
                    Some(v) => String::from_utf8_lossy(&v)
                        .split('\n')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    None => vec!["INBOX".into(), "Sent".into(), "Trash".into()],
                },
            )
        })
        .await
    }

    async fn subscribe(&mut self, tag: Tag<'static>, name: String, on: bool) {
        let mut subs = match self.subscriptions().await {
            Ok(s) => s,
            Err(e) => return self.store_failed(tag, &e),
        };
        subs.retain(|s| *s != name);
        if on {
            subs.push(name);
        }
        let store = self.store();
        let v = subs.join("\n");
        match blocking(move || {
            store.kv_put(crate::store::KvTable::Meta, SUBSCRIPTIONS, v.as_bytes())
        })
        .await
        {
            Ok(()) => {
                self.done(
                    tag,
                    if on {
                        "SUBSCRIBE completed"
                    } else {
                        "UNSUBSCRIBE completed"
                    },
                )
                .await
            }
            Err(e) => self.store_failed(tag, &e),
        }
    }

    async fn list(
        &mut self,
        tag: Tag<'static>,
        reference: &Mailbox<'_>,
        pattern: &ListMailbox<'_>,
        lsub: bool,
    ) {
        let reference = match reference {
            Mailbox::Inbox => "INBOX".to_owned(),
            Mailbox::Other(o) => String::from_utf8_lossy(o.as_ref()).into_owned(),
        };
        let pattern = match pattern {
            ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).into_owned(),
            ListMailbox::String(s) => String::from_utf8_lossy(s.as_ref()).into_owned(),
        };
        let delimiter = imap_codec::imap_types::core::QuotedChar::try_from('/').ok();
        if pattern.is_empty() && !lsub {
            self.data(Data::List {
                items: vec![FlagNameAttribute::Noselect],
                delimiter,
                mailbox: to_mailbox(""),
            });
            return self.ok(tag, None, "LIST completed");
        }
        let store = self.store();
        let boxes = match blocking(move || store.mailboxes()).await {
            Ok(b) => b,
            Err(e) => return self.store_failed(tag, &e),
        };
        let subs = if lsub {
            match self.subscriptions().await {
                Ok(s) => Some(s),
                Err(e) => return self.store_failed(tag, &e),
            }
        } else {
            None
        };
        let full = format!("{reference}{pattern}");
        for b in &boxes {
            let matched = wildcard(full.as_bytes(), b.name.as_bytes())
                || (b.id == crate::store::BOX_INBOX
                    && wildcard(full.to_ascii_uppercase().as_bytes(), b"INBOX"));
            if !matched || subs.as_ref().is_some_and(|s| !s.contains(&b.name)) {
                continue;
            }
            let prefix = format!("{}/", b.name);
            let children = boxes.iter().any(|o| o.name.starts_with(&prefix));
            let mut items = Vec::new();
            let mut ext = |s: &str| {
                if let Ok(a) = Atom::try_from(s.to_owned()) {
                    items.push(FlagNameAttribute::from(a));
                }
            };
            ext(if children {
                "HasChildren"
            } else {
                "HasNoChildren"
            });
            match b.special {
                Special::Sent => ext("Sent"),
                Special::Trash => ext("Trash"),
                _ => {}
            }
            let mailbox = to_mailbox(&b.name);
            if lsub {
                self.data(Data::Lsub {
                    items,
                    delimiter,
                    mailbox,
                });
            } else {
                self.data(Data::List {
                    items,
                    delimiter,
                    mailbox,
                });
            }
        }
        self.done(
            tag,
            if lsub {
                "LSUB completed"
            } else {
                "LIST completed"
            },
        )
        .await;
    }

    /// A mailbox's record, its messages and UIDNEXT, read in one go (for
    /// STATUS and SELECT/EXAMINE); answers NO itself when the mailbox does
    /// not exist or the store fails.
    async fn open_mailbox(
        &mut self,
        tag: &Tag<'static>,
        mailbox: &Mailbox<'_>,
        fingerprints: bool,
    ) -> Option<OpenMailbox> {
        let name = mailbox_name(mailbox);
        let store = self.store();
        let r = blocking(move || match store.mailbox_find(&name)? {
            Some(b) => {
                // Fingerprints before messages (see `refresh`).
                let fps = match fingerprints {
                    true => store.mailbox_fingerprints(b.id)?.into_iter().collect(),
                    false => HashMap::new(),
                };
                Ok(Some(OpenMailbox {
                    msgs: store.mailbox_messages(b.id)?,
                    info: b,
                    uid_next: store.uid_next(),
                    fps,
                }))
            }
            None => Ok(None),
        })
        .await;
        match r {
            Ok(Some(v)) => Some(v),
            Ok(None) => {
                self.no(tag.clone(), None, "No such mailbox");
                None
            }
            Err(e) => {
                self.store_failed(tag.clone(), &e);
                None
            }
        }
    }

    async fn status_cmd(
        &mut self,
        tag: Tag<'static>,
        mailbox: &Mailbox<'_>,
        names: &[StatusDataItemName],
    ) {
        let Some(OpenMailbox {
            info: b,
            msgs,
            uid_next: next,
            ..
        }) = self.open_mailbox(&tag, mailbox, false).await
        else {
            return;
        };
        let items: Vec<StatusDataItem> = names
            .iter()
            .filter_map(|n| match n {
                StatusDataItemName::Messages => Some(StatusDataItem::Messages(msgs.len() as u32)),
                StatusDataItemName::Recent => Some(StatusDataItem::Recent(0)),
                StatusDataItemName::UidNext => Some(StatusDataItem::UidNext(nz(uid32(next)))),
                StatusDataItemName::UidValidity => {
                    Some(StatusDataItem::UidValidity(nz(b.uidvalidity)))
                }
                StatusDataItemName::Unseen => Some(StatusDataItem::Unseen(
                    msgs.iter()
                        .filter(|m| !has_flag(&m.flags, "\\Seen"))
                        .count() as u32,
                )),
                StatusDataItemName::Deleted => Some(StatusDataItem::Deleted(
                    msgs.iter()
                        .filter(|m| has_flag(&m.flags, "\\Deleted"))
                        .count() as u32,
                )),
                _ => None,
            })
            .collect();
        self.data(Data::Status {
            mailbox: to_mailbox(&b.name),
            items: items.into(),
        });
        self.done(tag, "STATUS completed").await;
    }

    async fn select(&mut self, tag: Tag<'static>, mailbox: &Mailbox<'_>, read_only: bool) {
        self.selected = None;
        let Some(OpenMailbox {
            info,
            msgs,
            uid_next: next,
            fps,
        }) = self.open_mailbox(&tag, mailbox, true).await
        else {
            return;
        };
        // Watched from now on; a change committed since the read is caught
        // by the first sync, which compares fingerprints.
        let mut changes = self.store().mailbox_changes(info.id);
        changes.mark_changed();
        let mut flags = to_flags(
            &["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"].map(String::from),
        );
        if info.special == Special::Sent {
            flags.extend(to_flags(
                &["$Queued", "$Delivered", "$Bounced"].map(String::from),
            ));
        }
        let mut perm: Vec<FlagPerm> = flags.iter().cloned().map(FlagPerm::from).collect();
        perm.push(FlagPerm::Asterisk);
        self.data(Data::Flags(flags));
        self.status(
            None,
            StatusKind::Ok,
            Some(Code::PermanentFlags(perm)),
            "Flags permitted",
        );
        self.data(Data::Exists(msgs.len() as u32));
        self.data(Data::Recent(0));
        if let Some(i) = msgs.iter().position(|m| !has_flag(&m.flags, "\\Seen")) {
            self.status(
                None,
                StatusKind::Ok,
                Some(Code::Unseen(nz(i as u32 + 1))),
                "First unseen",
            );
        }
        self.status(
            None,
            StatusKind::Ok,
            Some(Code::UidValidity(nz(info.uidvalidity))),
            "UIDs valid",
        );
        self.status(
            None,
            StatusKind::Ok,
            Some(Code::UidNext(nz(uid32(next)))),
            "Predicted next UID",
        );
        let code = if read_only {
            Code::ReadOnly
        } else {
            Code::ReadWrite
        };
        self.selected = Some(Selected {
            info,
            read_only,
            msgs,
            fps,
            changes,
        });
        self.ok(
            tag,
            Some(code),
            if read_only {
                "EXAMINE completed"
            } else {
                "SELECT completed"
            },
        );
    }

    /// Brings the selected mailbox's view up to date with the store:
    /// EXPUNGE for messages gone, FETCH FLAGS for changed flags, EXISTS for
    /// new messages. With `expunges` false nothing is reported (see the
    /// module comment); the change stays pending.
    async fn sync(&mut self, expunges: bool) {
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        if !expunges || !sel.changes.has_changed().unwrap_or(false) {
            return;
        }
        sel.changes.borrow_and_update();
        self.refresh().await;
    }

    /// Brings the selected mailbox's view up to the store and reports the
    /// differences. Reads every message's fingerprint (no decryption), then
    /// only the messages that are new or whose fingerprint changed.
    async fn refresh(&mut self) {
        let Some(sel) = self.selected.as_ref() else {
            return;
        };
        let id = sel.info.id;
        let store = self.store();
        // Fingerprints first: messages read after them are at least as new,
        // so a fingerprint never claims a change we have not read.
        let Ok(fps) = blocking(move || store.mailbox_fingerprints(id)).await else {
            return;
        };
        let sel = self.selected.as_ref().expect("selected");
        let need: Vec<u64> = fps
            .iter()
            .filter(|(uid, fp)| sel.fps.get(uid) != Some(fp))
            .map(|(uid, _)| *uid)
            .collect();
        let store = self.store();
        let Ok(read) = blocking(move || store.mailbox_messages_some(id, &need)).await else {
            return;
        };
        let sel = self.selected.as_mut().expect("selected");
        let mut read: HashMap<u64, MailMsg> = read.into_iter().map(|m| (m.uid, m)).collect();
        // A fingerprint is kept if it was seen before or its message was
        // read now; a message gone between the two reads gets none, so that
        // the next refresh reads it again.
        let new_fps: HashMap<u64, [u8; 16]> = fps
            .iter()
            .map(|&(uid, fp)| {
                let known = sel.fps.get(&uid) == Some(&fp) || read.contains_key(&uid);
                (uid, if known { fp } else { [0; 16] })
            })
            .collect();
        let mut responses = Vec::new();
        let mut gone = Vec::new();
        let mut kept: Vec<MailMsg> = Vec::with_capacity(fps.len());
        for m in sel.msgs.drain(..) {
            if !new_fps.contains_key(&m.uid) {
                // Sequence numbers shift as each EXPUNGE is reported.
                responses.push(Data::Expunge(nz(kept.len() as u32 + 1)));
                gone.push(m.message.blob);
                continue;
            }
            let current = match read.remove(&m.uid) {
                Some(c) => {
                    if c.flags != m.flags {
                        let items = vec![
                            MessageDataItem::Flags(to_fetch_flags(&c.flags)),
                            MessageDataItem::Uid(nz(uid32(c.uid))),
                        ];
                        responses.push(Data::Fetch {
                            seq: nz(kept.len() as u32 + 1),
                            items: Vec1::try_from(items).expect("non-empty"),
                        });
                    }
                    c
                }
                None => m,
            };
            kept.push(current);
        }
        let last = kept.last().map(|m| m.uid).unwrap_or(0);
        let before = kept.len();
        for (uid, _) in &fps {
            if *uid > last {
                if let Some(m) = read.remove(uid) {
                    kept.push(m);
                }
            }
        }
        if kept.len() != before {
            responses.push(Data::Exists(kept.len() as u32));
        }
        sel.msgs = kept;
        sel.fps = new_fps;
        self.forget(&gone);
        for d in responses {
            self.data(d);
        }
    }

    /// Indices of the messages `set` names, by UID or by sequence number.
    fn targets(&self, set: &SequenceSet, uid: bool) -> Vec<usize> {
        let sel = self.selected.as_ref().expect("selected");
        let largest = if uid {
            sel.msgs.last().map(|m| uid32(m.uid)).unwrap_or(0)
        } else {
            sel.msgs.len() as u32
        };
        sel.msgs
            .iter()
            .enumerate()
            .filter(|(i, m)| {
                let n = if uid { uid32(m.uid) } else { *i as u32 + 1 };
                search::contains(set, n, largest)
            })
            .map(|(i, _)| i)
            .collect()
    }

    async fn selected_cmd(
        &mut self,
        tag: Tag<'static>,
        body: CommandBody<'static>,
    ) -> Result<(), Closed> {
        match body {
            CommandBody::Close | CommandBody::Unselect => {
                let close = matches!(body, CommandBody::Close);
                let sel = self.selected.take().expect("selected");
                if close && !sel.read_only {
                    let (gone, blobs): (Vec<u64>, Vec<u64>) = sel
                        .msgs
                        .iter()
                        .filter(|m| has_flag(&m.flags, "\\Deleted"))
                        .map(|m| (m.uid, m.message.blob))
                        .unzip();
                    let store = self.store();
                    let id = sel.info.id;
                    if let Err(e) = blocking(move || store.mailbox_expunge(id, &gone)).await {
                        self.store_failed(tag, &e);
                        return Ok(());
                    }
                    self.forget(&blobs);
                }
                self.ok(
                    tag,
                    None,
                    if close {
                        "CLOSE completed"
                    } else {
                        "UNSELECT completed"
                    },
                );
            }
            CommandBody::Expunge => self.expunge(tag, None).await,
            CommandBody::ExpungeUid { sequence_set } => self.expunge(tag, Some(sequence_set)).await,
            CommandBody::Search {
                charset,
                criteria,
                uid,
            } => self.search(tag, charset, criteria, uid).await,
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                ..
            } => {
                self.fetch(tag, &sequence_set, macro_or_item_names, uid)
                    .await?
            }
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                ..
            } => {
                self.store_flags(tag, &sequence_set, kind, response, &flags, uid)
                    .await
            }
            CommandBody::Copy {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(tag, &sequence_set, &mailbox, uid, false).await,
            CommandBody::Move {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(tag, &sequence_set, &mailbox, uid, true).await,
            _ => self.bad_command(Some(tag), "Command not supported"),
        }
        Ok(())
    }

    async fn expunge(&mut self, tag: Tag<'static>, only: Option<SequenceSet>) {
        if self.selected.as_ref().is_some_and(|s| s.read_only) {
            return self.no(tag, None, "Mailbox is read-only");
        }
        self.sync(true).await;
        let allowed: Option<Vec<usize>> = only.as_ref().map(|s| self.targets(s, true));
        let sel = self.selected.as_ref().expect("selected");
        let gone: Vec<u64> = sel
            .msgs
            .iter()
            .enumerate()
            .filter(|(i, m)| {
                has_flag(&m.flags, "\\Deleted") && allowed.as_ref().is_none_or(|a| a.contains(i))
            })
            .map(|(_, m)| m.uid)
            .collect();
        let (store, id) = (self.store(), sel.info.id);
        let g = gone.clone();
        if let Err(e) = blocking(move || store.mailbox_expunge(id, &g)).await {
            return self.store_failed(tag, &e);
        }
        let blobs = self.remove_from_view(&gone);
        self.forget(&blobs);
        self.ok(tag, None, "EXPUNGE completed");
    }

    /// Drops `uids` from the view, announcing each as EXPUNGE; returns their
    /// blobs.
    fn remove_from_view(&mut self, uids: &[u64]) -> Vec<u64> {
        let uids: HashSet<u64> = uids.iter().copied().collect();
        let sel = self.selected.as_mut().expect("selected");
        let mut seqs = Vec::new();
        let mut blobs = Vec::new();
        let mut kept = Vec::with_capacity(sel.msgs.len());
        for m in sel.msgs.drain(..) {
            if uids.contains(&m.uid) {
                // Sequence numbers shift as each EXPUNGE is reported.
                seqs.push(kept.len() as u32 + 1);
                blobs.push(m.message.blob);
            } else {
                kept.push(m);
            }
        }
        sel.msgs = kept;
        for s in seqs {
            self.data(Data::Expunge(nz(s)));
        }
        blobs
    }

    /// Drops what the caches hold of `blobs`, which left the view.
    fn forget(&self, blobs: &[u64]) {
        if !blobs.is_empty() {
            self.settings.caches.forget(self.account_id(), blobs);
        }
    }

    /// The logged-in account's id.
    fn account_id(&self) -> &str {
        &self.account.as_ref().expect("logged in").id
    }

    async fn search(
        &mut self,
        tag: Tag<'static>,
        charset: Option<Charset<'static>>,
        criteria: Vec1<SearchKey<'static>>,
        uid: bool,
    ) {
        if let Some(c) = &charset {
            let name = match c {
                Charset::Atom(a) => a.as_ref().to_owned(),
                Charset::Quoted(q) => q.inner().to_owned(),
            };
            if !["US-ASCII", "UTF-8"]
                .iter()
                .any(|n| n.eq_ignore_ascii_case(&name))
            {
                let code = Code::BadCharset {
                    allowed: Vec::new(),
                };
                return self.no(tag, Some(code), "Only US-ASCII and UTF-8");
            }
        }
        if uid {
            self.sync(true).await;
        }
        let sel = self.selected.as_ref().expect("selected");
        let msgs = sel.msgs.clone();
        let store = self.store();
        let (cache, account) = (self.settings.caches.clone(), self.account_id().to_owned());
        let key = SearchKey::And(criteria);
        let r = blocking(move || {
            let count = msgs.len() as u32;
            let max_uid = msgs.last().map(|m| uid32(m.uid)).unwrap_or(0);
            let mut hits = Vec::new();
            for (i, m) in msgs.iter().enumerate() {
                let blob = m.message.blob;
                let mut cached: Option<Option<Body>> = None;
                let mut load = || {
                    cached
                        .get_or_insert_with(|| {
                            let read = || store.read_message(blob);
                            cache.bodies.get_or_read_once(&account, blob, read).ok()
                        })
                        .clone()
                };
                let mut c = Candidate {
                    seq: i as u32 + 1,
                    uid: uid32(m.uid),
                    count,
                    max_uid,
                    flags: &m.flags,
                    size: m.message.len,
                    internal: m.internal,
                    raw: &mut load,
                };
                if search::matches(&key, &mut c) {
                    hits.push(if uid { uid32(m.uid) } else { i as u32 + 1 });
                }
            }
            Ok(hits)
        })
        .await;
        match r {
            Ok(hits) => {
                self.data(Data::Search(search::nonzero(hits)));
                self.ok(tag, None, "SEARCH completed");
            }
            Err(e) => self.store_failed(tag, &e),
        }
    }

    async fn store_flags(
        &mut self,
        tag: Tag<'static>,
        set: &SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: &[Flag<'static>],
        uid: bool,
    ) {
        if self.selected.as_ref().is_some_and(|s| s.read_only) {
            return self.no(tag, None, "Mailbox is read-only");
        }
        if uid {
            self.sync(true).await;
        }
        let given: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        let targets = self.targets(set, uid);
        let sel = self.selected.as_ref().expect("selected");
        let mut changes = Vec::new();
        for &i in &targets {
            let old = &sel.msgs[i].flags;
            let new: Vec<String> = match kind {
                StoreType::Replace => given.clone(),
                StoreType::Add => {
                    let mut v = old.clone();
                    for f in &given {
                        if !has_flag(&v, f) {
                            v.push(f.clone());
                        }
                    }
                    v
                }
                StoreType::Remove => old
                    .iter()
                    .filter(|f| !has_flag(&given, f))
                    .cloned()
                    .collect(),
            };
            if new != *old {
                changes.push((i, new));
            }
        }
        let (store, id) = (self.store(), sel.info.id);
        let writes: Vec<(u64, Vec<String>)> = changes
            .iter()
            .map(|(i, f)| (sel.msgs[*i].uid, f.clone()))
            .collect();
        if let Err(e) = blocking(move || store.mailbox_set_flags(id, writes)).await {
            return self.store_failed(tag, &e);
        }
        let sel = self.selected.as_mut().expect("selected");
        for (i, f) in changes {
            sel.msgs[i].flags = f;
        }
        if response == StoreResponse::Answer {
            let mut out = Vec::new();
            for &i in &targets {
                let m = &sel.msgs[i];
                let mut items = vec![MessageDataItem::Flags(to_fetch_flags(&m.flags))];
                if uid {
                    items.push(MessageDataItem::Uid(nz(uid32(m.uid))));
                }
                out.push(Data::Fetch {
                    seq: nz(i as u32 + 1),
                    items: Vec1::try_from(items).expect("non-empty"),
                });
            }
            for d in out {
                self.data(d);
            }
        }
        self.ok(tag, None, "STORE completed");
    }

    async fn copy(
        &mut self,
        tag: Tag<'static>,
        set: &SequenceSet,
        mailbox: &Mailbox<'_>,
        uid: bool,
        remove: bool,
    ) {
        if remove && self.selected.as_ref().is_some_and(|s| s.read_only) {
            return self.no(tag, None, "Mailbox is read-only");
        }
        if uid {
            self.sync(true).await;
        }
        let targets = self.targets(set, uid);
        let sel = self.selected.as_ref().expect("selected");
        let uids: Vec<u64> = targets.iter().map(|&i| sel.msgs[i].uid).collect();
        let (store, from, name) = (self.store(), sel.info.id, mailbox_name(mailbox));
        let r = blocking(move || match store.mailbox_find(&name)? {
            Some(b) => store
                .mailbox_copy(from, &uids, b.id, remove)
                .map(|p| Some((b.uidvalidity, p))),
            None => Ok(None),
        })
        .await;
        let (validity, pairs) = match r {
            Ok(Some(v)) => v,
            Ok(None) => return self.no(tag, Some(Code::TryCreate), "No such mailbox"),
            Err(e) => return self.store_failed(tag, &e),
        };
        let code = match (
            uid_set(pairs.iter().map(|p| p.0)),
            uid_set(pairs.iter().map(|p| p.1)),
        ) {
            (Some(source), Some(destination)) => Some(Code::CopyUid {
                uid_validity: nz(validity),
                source,
                destination,
            }),
            _ => None,
        };
        if remove {
            if let Some(code) = code {
                self.status(None, StatusKind::Ok, Some(code), "Moved");
            }
            let moved: Vec<u64> = pairs.iter().map(|p| p.0).collect();
            self.remove_from_view(&moved);
            self.ok(tag, None, "MOVE completed");
        } else {
            self.ok(tag, code, "COPY completed");
        }
    }

    /// Reads, decrypts and encodes the FETCH responses of messages `batch`
    /// (indexes into the selected mailbox) on a blocking thread.
    fn fetch_batch(
        &self,
        batch: &[usize],
        names: &Arc<[MessageDataItemName<'static>]>,
        account: &str,
        needs_raw: bool,
    ) -> tokio::task::JoinHandle<Result<Vec<u8>, StoreError>> {
        let sel = self.selected.as_ref().expect("selected");
        let msgs: Vec<(usize, MailMsg)> = batch.iter().map(|&i| (i, sel.msgs[i].clone())).collect();
        let (store, cache, names, account) = (
            self.store(),
            self.settings.caches.clone(),
            names.clone(),
            account.to_owned(),
        );
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for (i, m) in msgs {
                let raw = if needs_raw {
                    let blob = m.message.blob;
                    match cache
                        .bodies
                        .get_or_read(&account, blob, || store.read_message(blob))
                    {
                        Ok(r) => Some(r),
                        // Expunged meanwhile by another session: skip it.
                        Err(StoreError::NotFound(_)) => continue,
                        Err(e) => return Err(e),
                    }
                } else {
                    None
                };
                let items =
                    fetch_items(&names, &m, raw.as_deref().map(|b| &b[..]), &cache, &account);
                if let Ok(items) = Vec1::try_from(items) {
                    let d = Response::Data(Data::Fetch {
                        seq: nz(i as u32 + 1),
                        items,
                    });
                    for fragment in ResponseCodec::new().encode(&d) {
                        match fragment {
                            Fragment::Line { data } | Fragment::Literal { data, .. } => {
                                out.extend_from_slice(&data)
                            }
                        }
                    }
                }
            }
            Ok(out)
        })
    }

    async fn fetch(
        &mut self,
        tag: Tag<'static>,
        set: &SequenceSet,
        items: MacroOrMessageDataItemNames<'static>,
        uid: bool,
    ) -> Result<(), Closed> {
        if uid {
            self.sync(true).await;
        }
        let mut names = match items {
            MacroOrMessageDataItemNames::Macro(m) => {
                let mut v = vec![
                    MessageDataItemName::Flags,
                    MessageDataItemName::InternalDate,
                    MessageDataItemName::Rfc822Size,
                ];
                if matches!(m, Macro::All | Macro::Full) {
                    v.push(MessageDataItemName::Envelope);
                }
                if matches!(m, Macro::Full) {
                    v.push(MessageDataItemName::Body);
                }
                v
            }
            MacroOrMessageDataItemNames::MessageDataItemNames(v) => v,
        };
        if uid && !names.contains(&MessageDataItemName::Uid) {
            names.insert(0, MessageDataItemName::Uid);
        }
        let needs_raw = names.iter().any(|n| {
            matches!(
                n,
                MessageDataItemName::BodyExt { .. }
                    | MessageDataItemName::Rfc822
                    | MessageDataItemName::Rfc822Header
                    | MessageDataItemName::Rfc822Text
                    | MessageDataItemName::Body
                    | MessageDataItemName::BodyStructure
                    | MessageDataItemName::Envelope
            )
        });
        let sets_seen = names.iter().any(|n| {
            matches!(
                n,
                MessageDataItemName::BodyExt { peek: false, .. }
                    | MessageDataItemName::Rfc822
                    | MessageDataItemName::Rfc822Text
            )
        });
        let targets = self.targets(set, uid);
        // \Seen is durable before any response shows it.
        let sel = self.selected.as_ref().expect("selected");
        if sets_seen && !sel.read_only {
            let writes: Vec<(usize, Vec<String>)> = targets
                .iter()
                .filter(|&&i| !has_flag(&sel.msgs[i].flags, "\\Seen"))
                .map(|&i| {
                    let mut f = sel.msgs[i].flags.clone();
                    f.push("\\Seen".into());
                    (i, f)
                })
                .collect();
            if !writes.is_empty() {
                let (store, id) = (self.store(), sel.info.id);
                let w: Vec<(u64, Vec<String>)> = writes
                    .iter()
                    .map(|(i, f)| (sel.msgs[*i].uid, f.clone()))
                    .collect();
                if let Err(e) = blocking(move || store.mailbox_set_flags(id, w)).await {
                    self.store_failed(tag, &e);
                    return Ok(());
                }
                let sel = self.selected.as_mut().expect("selected");
                for (i, f) in writes {
                    sel.msgs[i].flags = f;
                }
                if !names.contains(&MessageDataItemName::Flags) {
                    names.push(MessageDataItemName::Flags);
                }
            }
        }
        let account = self.account_id().to_owned();
        let names: Arc<[MessageDataItemName<'static>]> = names.into();
        // Batch k+1 is read, decrypted and encoded while batch k is written.
        let mut batches = targets.chunks(FETCH_BATCH);
        let mut next = batches
            .next()
            .map(|b| self.fetch_batch(b, &names, &account, needs_raw));
        while let Some(task) = next.take() {
            let encoded = task.await.unwrap_or(Err(StoreError::Closed));
            next = batches
                .next()
                .map(|b| self.fetch_batch(b, &names, &account, needs_raw));
            match encoded {
                Ok(bytes) => {
                    if self.out.is_empty() {
                        self.out = bytes;
                    } else {
                        self.out.extend(bytes);
                    }
                    // The last batch goes out with the tagged OK.
                    if next.is_some() {
                        self.flush().await?;
                    }
                }
                Err(e) => {
                    self.store_failed(tag, &e);
                    return Ok(());
                }
            }
        }
        self.ok(tag, None, "FETCH completed");
        Ok(())
    }
}

/// The items `names` ask of `m`, whose bytes are `raw` (if they were
/// needed). Literals borrow from `raw` where they can (the encoder then
/// copies them into the response).
fn fetch_items<'a>(
    names: &[MessageDataItemName<'static>],
    m: &MailMsg,
    raw: Option<&'a [u8]>,
    cache: &Caches,
    account: &str,
) -> Vec<MessageDataItem<'a>> {
    let parsed = || raw.map(|r| cache.mime.get_or_parse(account, m.message.blob, r));
    let mut items = Vec::new();
    for n in names {
        let item = match n {
            MessageDataItemName::Uid => MessageDataItem::Uid(nz(uid32(m.uid))),
            MessageDataItemName::Flags => MessageDataItem::Flags(to_fetch_flags(&m.flags)),
            MessageDataItemName::Rfc822Size => MessageDataItem::Rfc822Size(m.message.len as u32),
            MessageDataItemName::InternalDate => {
                let t = chrono::DateTime::from_timestamp(m.internal as i64, 0)
                    .unwrap_or_default()
                    .fixed_offset();
                MessageDataItem::InternalDate(
                    DateTime::try_from(t).unwrap_or_else(|_| DateTime::unvalidated(t)),
                )
            }
            MessageDataItemName::Envelope => match parsed() {
                Some(p) => MessageDataItem::Envelope(p.envelope.clone()),
                None => continue,
            },
            MessageDataItemName::BodyStructure => match parsed() {
                Some(p) => MessageDataItem::BodyStructure(p.structure.clone()),
                None => continue,
            },
            MessageDataItemName::Body => match parsed() {
                Some(p) => MessageDataItem::Body(p.structure.clone()),
                None => continue,
            },
            MessageDataItemName::Rfc822 => {
                MessageDataItem::Rfc822(literal(raw.unwrap_or_default()))
            }
            MessageDataItemName::Rfc822Header => {
                let r = raw.unwrap_or_default();
                MessageDataItem::Rfc822Header(literal(crate::message::header_section(r)))
            }
            MessageDataItemName::Rfc822Text => {
                let r = raw.unwrap_or_default();
                let h = crate::message::header_section(r).len();
                MessageDataItem::Rfc822Text(literal(&r[h..]))
            }
            MessageDataItemName::BodyExt {
                section, partial, ..
            } => {
                let r = raw.unwrap_or_default();
                let bytes = match section {
                    None => std::borrow::Cow::Borrowed(r),
                    Some(_) => match parsed() {
                        Some(p) => super::mime::section(r, &p.root, section),
                        None => continue,
                    },
                };
                let data = match partial {
                    Some((origin, len)) => {
                        let s = (*origin as usize).min(bytes.len());
                        let e = s.saturating_add(len.get() as usize).min(bytes.len());
                        match bytes {
                            std::borrow::Cow::Borrowed(b) => std::borrow::Cow::Borrowed(&b[s..e]),
                            std::borrow::Cow::Owned(mut b) => {
                                b.truncate(e);
                                b.drain(..s);
                                std::borrow::Cow::Owned(b)
                            }
                        }
                    }
                    None => bytes,
                };
                MessageDataItem::BodyExt {
                    section: section.clone(),
                    origin: partial.map(|(o, _)| o),
                    data: literal(data),
                }
            }
            _ => continue,
        };
        items.push(item);
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_wildcards() {
        assert!(wildcard(b"*", b"a/b"));
        assert!(wildcard(b"%", b"a"));
        assert!(!wildcard(b"%", b"a/b"));
        assert!(wildcard(b"a/%", b"a/b"));
        assert!(wildcard(b"S*", b"Sent"));
        assert!(!wildcard(b"T*", b"Sent"));
    }
}
