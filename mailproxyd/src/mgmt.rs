//! The management socket server (protocol: the `mailproxy-proto` crate).
//!
//! A Unix socket, mode 0600, in a directory no one else may enter. A stale
//! socket file (nothing listening) is replaced; a live one makes start-up fail.
//! Each client is served by its own task; bad lines get an error reply and
//! affect no one else, and too many in a row close the connection. Clients
//! share a bounded set of [`crate::slots`]: one that has not sent a valid
//! request yet is closed after a short while, or sooner when a newcomer
//! needs its slot. The socket file is removed when the server stops.
//!
//! Protocol 2 requests (`STATUS`, `QUEUE`, `INBOX`, `CANCEL`) go to the
//! daemon's [`Control`]; `EVENTS` turns the connection into a stream of the
//! event bus and the [`LogBus`] (see [`stream`]). A subscriber that reads too
//! slowly only ever blocks its own task: the buses drop its oldest lines and
//! it gets `LAGGED n`. `PASSWORD` goes to the [`DaemonDirectory`], which
//! holds the accounts' logins.

mod stream;

use std::borrow::Cow;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use mailproxy_proto::reply::{format_body, format_recipient_line};
use mailproxy_proto::{
    parse_frame, AccountInfo, ParseError, Request, Status, StatusCode, PROTOCOL_VERSION,
};
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;

use crate::connection::{Closed, Connection, Goodbyes};
use crate::control::{Control, ControlError};
use crate::daemon::Shutdown;
use crate::directory::DaemonDirectory;
use crate::logging::LogBus;
use crate::recipients::{RecipientError, Recipients};
use crate::slots::{Slot, SlotPolicy, Slots};

/// Limits of the management server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MgmtSettings {
    /// Clients served at once. When all slots are taken, the longest-idle
    /// client without a valid request yet is closed for the newcomer; if
    /// there is none, the newcomer is told so and disconnected.
    pub max_clients: usize,
    /// Time a new client gets to send its first valid request.
    pub first_command_timeout: Duration,
    /// Bad lines in a row tolerated; the next one is answered, followed by a
    /// final error, and the connection is closed.
    pub max_bad_lines: u32,
}

impl Default for MgmtSettings {
    fn default() -> Self {
        MgmtSettings {
            max_clients: 64,
            first_command_timeout: Duration::from_secs(30),
            max_bad_lines: 10,
        }
    }
}

/// How long connections get to finish after shutdown.
const CLIENT_DRAIN: Duration = Duration::from_secs(3);

/// Errors starting or running the management server.
#[derive(Debug, thiserror::Error)]
pub enum MgmtError {
    /// Another process is listening on the socket.
    #[error("management socket '{0}' is in use by a running process (another mailproxyd?)")]
    Live(PathBuf),
    /// Something that is not a socket is at the path.
    #[error("management socket path '{0}' exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// Binding, permissions or the directory failed.
    #[error("management socket '{path}': {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What the management server needs from the daemon.
#[derive(Clone)]
pub struct MgmtContext {
    /// The recipient table.
    pub recipients: Recipients,
    /// The accounts with their public keys, sorted by id.
    pub accounts: Vec<AccountInfo>,
    /// Triggered by `SHUTDOWN`; ends every connection when triggered.
    pub shutdown: Shutdown,
    /// Status, queues, inboxes, cancelling, events.
    pub control: Arc<dyn Control>,
    /// Log lines for `EVENTS` subscribers.
    pub logs: LogBus,
    /// The accounts' logins, for `PASSWORD`.
    pub directory: Arc<DaemonDirectory>,
}

impl std::fmt::Debug for MgmtContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MgmtContext")
            .field("accounts", &self.accounts.len())
            .field("shutdown", &self.shutdown)
            .finish_non_exhaustive()
    }
}

/// Binds the socket at `path`, replacing a stale socket file and refusing a
/// live one. The parent directory is created (0700) if missing and must not
/// be accessible to group or others.
pub fn bind(path: &Path) -> Result<UnixListener, MgmtError> {
    let io = |source| MgmtError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        crate::keys::ensure_private_dir(parent).map_err(io)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(MgmtError::Live(path.to_owned())),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    tracing::warn!(path = %path.display(), "replacing stale management socket");
                    std::fs::remove_file(path).map_err(io)?;
                }
                Err(e) => return Err(io(e)),
            }
        }
        Ok(_) => return Err(MgmtError::NotASocket(path.to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    listener.set_nonblocking(true).map_err(io)?;
    UnixListener::from_std(listener).map_err(io)
}

/// Serves clients with the default [`MgmtSettings`] until `ctx.shutdown` is
/// triggered, then removes the socket file and waits for the connections to
/// end.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    ctx: MgmtContext,
) -> Result<(), MgmtError> {
    serve_with(listener, path, ctx, MgmtSettings::default()).await
}

/// [`serve`] with explicit limits.
pub async fn serve_with(
    listener: UnixListener,
    path: PathBuf,
    ctx: MgmtContext,
    settings: MgmtSettings,
) -> Result<(), MgmtError> {
    tracing::info!(path = %path.display(), "management interface listening");
    let slots = Slots::new(SlotPolicy {
        name: "management",
        capacity: settings.max_clients,
        first_command_timeout: settings.first_command_timeout,
        // Only a valid request protects a client.
        recent_activity: Duration::ZERO,
    });
    let mut clients = JoinSet::new();
    loop {
        tokio::select! {
            _ = ctx.shutdown.wait() => break,
            Some(_) = clients.join_next(), if !clients.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((mut stream, _)) => match slots.register() {
                    Some(slot) => {
                        clients.spawn(handle_client(stream, ctx.clone(), slot, settings.max_bad_lines));
                    }
                    None => {
                        tracing::warn!("management: too many clients, refusing one");
                        let busy = Status::with_detail(StatusCode::FAILED, "too many management clients");
                        let _ = stream.write_all(busy.to_string().as_bytes()).await;
                    }
                },
                Err(e) => {
                    // E.g. out of file descriptors: not fatal, back off briefly.
                    tracing::warn!(error = %e, "management: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    drop(listener);
    if let Err(e) = std::fs::remove_file(&path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove management socket");
        }
    }
    // Connections end on the shutdown flag; one stuck writing to a client
    // that does not read is aborted after a grace period.
    let drained = tokio::time::timeout(CLIENT_DRAIN, async {
        while clients.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("management: aborting clients that did not finish");
        clients.shutdown().await;
    }
    tracing::info!("management interface stopped");
    Ok(())
}

enum Next {
    Continue,
    Close,
}

/// What the management socket says when it ends a connection: a failure
/// status when a client is evicted or sent no request in time, nothing when
/// the daemon stops; there is no idle limit.
static GOODBYES: LazyLock<Goodbyes> = LazyLock::new(|| {
    let line = |detail: &str| Cow::Owned(failed(detail).trim_end().to_owned());
    Goodbyes {
        evicted: line("too many management clients, closing this idle one"),
        first_command_timeout: line("no request in time, closing connection"),
        idle_timeout: line("idle, closing connection"),
        shutting_down: None,
    }
});

/// Bytes read at most at a time.
const READ_SIZE: usize = 1024;

/// Serves one client. `slot` is held until the connection ends (also while
/// it streams events); a valid request proves it.
async fn handle_client(stream: UnixStream, ctx: MgmtContext, slot: Slot, max_bad_lines: u32) {
    let mut conn = Connection::new(stream, ctx.shutdown.receiver(), &GOODBYES, READ_SIZE, 256);
    conn.slot = slot;
    conn.out
        .extend_from_slice(Status::standard(StatusCode::READY).to_string().as_bytes());
    if conn.flush().await.is_err() {
        return;
    }
    let mut discarding = false;
    // Bad lines since the last valid request.
    let mut bad = 0u32;
    loop {
        // Answer every complete line already buffered.
        loop {
            let buf = &mut conn.buf;
            if discarding {
                match buf.iter().position(|&b| b == b'\n') {
                    Some(lf) => {
                        buf.drain(..=lf);
                        discarding = false;
                        continue;
                    }
                    None => {
                        buf.clear();
                        break;
                    }
                }
            }
            let (used, parsed) = parse_frame(buf);
            if parsed.is_ok() {
                conn.slot.prove();
                bad = 0;
            }
            let reply = match parsed {
                Err(ParseError::Incomplete) => break,
                Err(ParseError::LineTooLong) => {
                    discarding = true;
                    Some(error_status(&ParseError::LineTooLong))
                }
                Err(e) => {
                    conn.buf.drain(..used);
                    e.status_code().map(|_| error_status(&e))
                }
                Ok(Request::Events { level }) => {
                    conn.buf.drain(..used);
                    // The slot stays taken while the client streams events.
                    let (stream, pending, _slot) = conn.into_parts();
                    stream::run(stream, pending, level, &ctx).await;
                    return;
                }
                Ok(request) => {
                    conn.buf.drain(..used);
                    let (out, next) = dispatch(request, &ctx).await;
                    conn.out.extend_from_slice(out.as_bytes());
                    if conn.flush().await.is_err() {
                        return;
                    }
                    if let Next::Close = next {
                        conn.shutdown().await;
                        return;
                    }
                    None
                }
            };
            if let Some(status) = reply {
                let mut out = status.to_string();
                bad += 1;
                if bad > max_bad_lines {
                    tracing::debug!(bad, "management: too many bad lines, closing a client");
                    out.push_str(&failed("too many bad lines, closing connection"));
                }
                conn.out.extend_from_slice(out.as_bytes());
                if conn.flush().await.is_err() || bad > max_bad_lines {
                    conn.shutdown().await;
                    return;
                }
            }
        }
        match conn.read_more(None, true).await {
            Ok(()) => {}
            Err(Closed::Done) => {
                conn.shutdown().await;
                return;
            }
            Err(Closed::Gone) => return,
        }
    }
}

fn error_status(e: &ParseError) -> Status {
    let code = e.status_code().unwrap_or(StatusCode::BAD_ARGUMENTS);
    match e {
        ParseError::UnknownCommand => Status::standard(code),
        other => Status::with_detail(code, other),
    }
}

fn failed(detail: impl std::fmt::Display) -> String {
    Status::with_detail(StatusCode::FAILED, detail).to_string()
}

fn ok() -> String {
    Status::standard(StatusCode::OK).to_string()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RecipientError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(e) => Err(format!("internal error: {e}")),
    }
}

/// `PASSWORD`: the account's generated password, after a reset if asked.
/// The reply holds the password; the log says only what was done.
async fn password(ctx: &MgmtContext, account: String, reset: bool) -> String {
    let dir = ctx.directory.clone();
    let result = tokio::task::spawn_blocking(move || {
        if reset {
            dir.reset_password(&account)
        } else {
            dir.password(&account)
        }
    })
    .await;
    match result {
        Ok(Ok((id, password))) => {
            if reset {
                tracing::warn!(account = %id, "management: password reset; the old one no longer works");
            } else {
                tracing::info!(account = %id, "management: password shown");
            }
            Status::ok_with(password.as_str()).to_string()
        }
        Ok(Err(e)) => failed(e),
        Err(e) => failed(format!("internal error: {e}")),
    }
}

async fn dispatch(request: Request, ctx: &MgmtContext) -> (String, Next) {
    let reply = match request {
        Request::GetRecipient { address } => match ctx.recipients.get(&address) {
            Ok(Some(key)) => Status::ok_with(mailproxy_proto::encode_key(&key)).to_string(),
            Ok(None) => failed(format!("no recipient '{address}'")),
            Err(e) => failed(e),
        },
        Request::SetRecipient { address, key } => {
            let recipients = ctx.recipients.clone();
            match blocking(move || recipients.set(&address, &key)).await {
                Ok(address) => {
                    tracing::info!(%address, "management: recipient set");
                    ok()
                }
                Err(e) => failed(e),
            }
        }
        Request::RemoveRecipient { address } => {
            let recipients = ctx.recipients.clone();
            match blocking(move || recipients.remove(&address)).await {
                Ok(address) => {
                    tracing::info!(%address, "management: recipient removed");
                    ok()
                }
                Err(e) => failed(e),
            }
        }
        Request::ListRecipients => format_body(
            ctx.recipients
                .list()
                .iter()
                .map(|(addr, key)| format_recipient_line(addr, key)),
        ),
        Request::Accounts => format_body(ctx.accounts.iter().map(AccountInfo::to_line)),
        Request::Version => Status::ok_with(format!(
            "mailproxyd {} protocol {PROTOCOL_VERSION}",
            env!("CARGO_PKG_VERSION")
        ))
        .to_string(),
        Request::Rescan => {
            let recipients = ctx.recipients.clone();
            match blocking(move || recipients.rescan()).await {
                Ok(report) => Status::ok_with(report.to_string()).to_string(),
                Err(e) => failed(e),
            }
        }
        Request::QueryRecipient { .. } => {
            failed("key discovery over the network is not available in this version")
        }
        Request::Shutdown => {
            tracing::info!("management: shutdown requested");
            ctx.shutdown.trigger();
            return (ok(), Next::Close);
        }
        Request::Quit => return (ok(), Next::Close),
        Request::Status => format_body(ctx.control.status().await.iter().map(|s| s.to_line())),
        Request::Queue => match ctx.control.queue().await {
            Ok(items) => format_body(items.iter().map(|i| i.to_line())),
            Err(e) => failed(e),
        },
        Request::Inbox => match ctx.control.inbox().await {
            Ok(items) => format_body(items.iter().map(|i| i.to_line())),
            Err(e) => failed(e),
        },
        Request::Cancel { account, id } => match ctx.control.cancel(&account, id).await {
            Ok(true) => {
                tracing::info!(%account, id, "management: queue entry cancelled");
                ok()
            }
            Ok(false) => failed(format!("no queue entry {id} in account '{account}'")),
            Err(e @ ControlError::NoAccount(_)) => failed(e),
            Err(e) => {
                tracing::warn!(%account, id, error = %e, "management: cancel failed");
                failed(e)
            }
        },
        Request::Password { account, reset } => password(ctx, account, reset).await,
        // Handled in `handle_client` (the connection becomes a stream).
        Request::Events { .. } => Status::standard(StatusCode::UNRECOGNISED).to_string(),
        // Requests added to the protocol later than this server.
        _ => Status::standard(StatusCode::UNRECOGNISED).to_string(),
    };
    (reply, Next::Continue)
}
