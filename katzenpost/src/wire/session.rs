//! The async link session over any tokio stream (TCP, in-memory duplex):
//! handshake with timeouts, the responder's initial NoOp, framed commands,
//! and Disconnect handling (§4.1–§4.7).
//!
//! Commands are carried as raw plaintexts (`id ‖ reserved ‖ u32be length ‖
//! body`). A typed layer is `send(&cmd.encode())` / `Command::decode(&recv()?)`.
//!
//! [`Session::recv`] is cancel-safe (partial frames stay buffered), so it can
//! sit in a `tokio::select!`. [`Session::send`] is not: a cancelled send
//! leaves the session unusable and the next call reports it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand_core::{CryptoRng, RngCore};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use super::framing::{self, FrameDecoder, FrameError, FrameSender, DISCONNECT, NOOP};
use super::handshake::{
    Established, HandshakeError, Initiator, LocalIdentity, PeerAuthenticator, PeerCredentials,
    Responder, HASH_LEN, MSG1_LEN, MSG2_LEN, MSG3_LEN,
};

/// Default for every timeout: one minute, as minclient.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Read-buffer growth per read, so small frames need few system calls.
const READ_CHUNK: usize = 64 * 1024;

/// A link session failure.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The handshake failed (wrong prologue, bad MAC, rejected peer, ...).
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// A frame failed to decode or encode.
    #[error("framing: {0}")]
    Frame(#[from] FrameError),
    /// The responder's first command was not a NoOp.
    #[error("responder's first command was not a NoOp")]
    ExpectedNoOp,
    /// The peer sent Disconnect; the connection has been closed.
    #[error("peer sent Disconnect")]
    PeerDisconnected,
    /// The peer closed the connection between frames.
    #[error("connection closed by peer")]
    Closed,
    /// The connection ended in the middle of a handshake message or frame.
    #[error("connection closed in the middle of a {0}")]
    Truncated(&'static str),
    /// The responder completed the handshake, then closed the connection
    /// instead of sending its first NoOp: it did not accept our credentials
    /// (a 2019 provider does this when it does not know the link key).
    #[error("the peer closed the connection after the handshake, before its NoOp: it did not accept our link key")]
    NotAccepted,
    /// A time limit passed.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// An I/O error.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// An earlier error (or a cancelled send) made the session unusable.
    #[error("session is no longer usable after an earlier error")]
    Unusable,
}

impl LinkError {
    /// True for an orderly end: Disconnect received, or end of stream between frames.
    pub fn is_clean_close(&self) -> bool {
        matches!(self, LinkError::PeerDisconnected | LinkError::Closed)
    }
}

/// How a session authenticates itself and its peer, and its time limits.
#[derive(Clone)]
pub struct SessionConfig {
    /// Our static key and additional data.
    pub identity: LocalIdentity,
    /// The policy that accepts or rejects the peer.
    pub authenticator: Arc<dyn PeerAuthenticator>,
    /// Limit for the whole handshake, including the responder's NoOp.
    pub handshake_timeout: Duration,
    /// Limit for every read once a frame has begun, and for every write.
    pub io_timeout: Duration,
    /// Limit for waiting for the next frame to begin (`None`: wait forever;
    /// idle links are normal, e.g. between polls).
    pub idle_timeout: Option<Duration>,
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionConfig")
            .field("identity", &self.identity)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("io_timeout", &self.io_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl SessionConfig {
    /// A configuration with the default timeouts (60 s handshake and I/O, no idle limit).
    pub fn new(identity: LocalIdentity, authenticator: Arc<dyn PeerAuthenticator>) -> Self {
        SessionConfig {
            identity,
            authenticator,
            handshake_timeout: DEFAULT_TIMEOUT,
            io_timeout: DEFAULT_TIMEOUT,
            idle_timeout: None,
        }
    }
}

/// Which end of the handshake this side was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Dialled the connection.
    Initiator,
    /// Accepted it.
    Responder,
}

/// What the handshake established about the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// Our role.
    pub role: Role,
    /// The authenticated peer.
    pub peer: PeerCredentials,
    /// Initiator only: local time at message 2 minus the responder's clock, in
    /// seconds (positive: our clock is ahead).
    pub clock_skew: Option<i64>,
    /// The final handshake hash.
    pub handshake_hash: [u8; HASH_LEN],
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn map_eof(e: std::io::Error, what: &'static str) -> LinkError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        LinkError::Truncated(what)
    } else {
        LinkError::Io(e)
    }
}

async fn write_all<W: AsyncWrite + Unpin>(w: &mut W, data: &[u8]) -> Result<(), LinkError> {
    w.write_all(data).await?;
    w.flush().await?;
    Ok(())
}

/// The receiving half of a session.
pub struct SessionReader<R> {
    inner: R,
    decoder: FrameDecoder,
    io_timeout: Duration,
    idle_timeout: Option<Duration>,
    failed: bool,
}

/// The sending half of a session.
pub struct SessionWriter<W> {
    inner: W,
    sender: FrameSender,
    out: Vec<u8>,
    io_timeout: Duration,
    /// Set while a write is in flight; still set later means it was cancelled.
    busy: bool,
    failed: bool,
}

impl<R: AsyncRead + Unpin> SessionReader<R> {
    /// Receives the next command plaintext. A Disconnect from the peer gives
    /// [`LinkError::PeerDisconnected`]; end of stream between frames gives
    /// [`LinkError::Closed`]. Cancel-safe.
    pub async fn recv(&mut self) -> Result<Vec<u8>, LinkError> {
        if self.failed {
            return Err(LinkError::Unusable);
        }
        match self.recv_inner().await {
            Ok(cmd) if framing::is_disconnect(&cmd) => {
                self.failed = true;
                Err(LinkError::PeerDisconnected)
            }
            Ok(cmd) => Ok(cmd),
            // An idle timeout with nothing buffered leaves the stream consistent.
            Err(LinkError::Timeout(what)) if !self.decoder.is_mid_frame() => {
                Err(LinkError::Timeout(what))
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    async fn recv_inner(&mut self) -> Result<Vec<u8>, LinkError> {
        loop {
            if let Some(cmd) = self.decoder.decode()? {
                return Ok(cmd);
            }
            let mid = self.decoder.is_mid_frame();
            let want = self.decoder.wanted().max(READ_CHUNK);
            let buf = self.decoder.input_buffer();
            buf.reserve(want);
            let read = self.inner.read_buf(buf);
            let n = match (mid, self.idle_timeout) {
                (true, _) => tokio::time::timeout(self.io_timeout, read)
                    .await
                    .map_err(|_| LinkError::Timeout("reading a frame"))??,
                (false, Some(t)) => tokio::time::timeout(t, read)
                    .await
                    .map_err(|_| LinkError::Timeout("waiting for a command"))??,
                (false, None) => read.await?,
            };
            if n == 0 {
                return Err(if self.decoder.is_mid_frame() {
                    LinkError::Truncated("frame")
                } else {
                    LinkError::Closed
                });
            }
        }
    }
}

impl<W: AsyncWrite + Unpin> SessionWriter<W> {
    /// Sends one command plaintext (at most 1,048,560 bytes). A too-large
    /// command is refused without harming the session.
    pub async fn send(&mut self, command: &[u8]) -> Result<(), LinkError> {
        if self.failed || self.busy {
            self.failed = true;
            return Err(LinkError::Unusable);
        }
        if command.len() > framing::MAX_COMMAND_LEN {
            return Err(FrameError::CommandTooLarge(command.len()).into());
        }
        self.out.clear();
        if let Err(e) = self.sender.seal_into(command, &mut self.out) {
            self.failed = true;
            return Err(e.into());
        }
        self.busy = true;
        let r = tokio::time::timeout(self.io_timeout, write_all(&mut self.inner, &self.out)).await;
        self.busy = false;
        // Large buffers are not kept around between sends.
        if self.out.capacity() > 2 * READ_CHUNK {
            self.out = Vec::new();
        }
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.failed = true;
                Err(e)
            }
            Err(_) => {
                self.failed = true;
                Err(LinkError::Timeout("writing a frame"))
            }
        }
    }

    /// Sends Disconnect and shuts the stream down.
    pub async fn close(mut self) -> Result<(), LinkError> {
        self.send(&DISCONNECT).await?;
        tokio::time::timeout(self.io_timeout, self.inner.shutdown())
            .await
            .map_err(|_| LinkError::Timeout("closing"))??;
        Ok(())
    }
}

/// An established link session on one stream.
pub struct Session<S> {
    reader: SessionReader<ReadHalf<S>>,
    writer: SessionWriter<WriteHalf<S>>,
    info: SessionInfo,
}

impl<S> std::fmt::Debug for Session<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Dials: runs the handshake as initiator with OS randomness and waits for
    /// the responder's NoOp.
    pub async fn initiate(stream: S, config: &SessionConfig) -> Result<Self, LinkError> {
        Self::initiate_with_rng(stream, config, &mut rand_core::OsRng).await
    }

    /// As [`Session::initiate`] with the given randomness.
    pub async fn initiate_with_rng<R: RngCore + CryptoRng>(
        mut stream: S,
        config: &SessionConfig,
        rng: &mut R,
    ) -> Result<Self, LinkError> {
        let hs = async {
            let (init, msg1) = Initiator::start(&config.identity, rng);
            write_all(&mut stream, &msg1).await?;
            let mut msg2 = vec![0u8; MSG2_LEN];
            stream
                .read_exact(&mut msg2)
                .await
                .map_err(|e| map_eof(e, "handshake message 2"))?;
            let (msg3, est) =
                init.read_message2(&msg2, unix_now(), config.authenticator.as_ref())?;
            write_all(&mut stream, &msg3).await?;
            let mut session = Self::from_established(stream, est, Role::Initiator, config);
            let first = session.reader.recv_inner().await.map_err(|e| match e {
                LinkError::Closed => LinkError::NotAccepted,
                e => e,
            })?;
            if !framing::is_noop(&first) {
                return Err(LinkError::ExpectedNoOp);
            }
            Ok::<_, LinkError>(session)
        };
        let session = tokio::time::timeout(config.handshake_timeout, hs)
            .await
            .map_err(|_| LinkError::Timeout("during the handshake"))??;
        tracing::debug!(clock_skew = ?session.info.clock_skew, "link handshake complete (initiator)");
        Ok(session)
    }

    /// Accepts: runs the handshake as responder with OS randomness and sends
    /// the initial NoOp.
    pub async fn accept(stream: S, config: &SessionConfig) -> Result<Self, LinkError> {
        Self::accept_with_rng(stream, config, &mut rand_core::OsRng).await
    }

    /// As [`Session::accept`] with the given randomness.
    pub async fn accept_with_rng<R: RngCore + CryptoRng>(
        mut stream: S,
        config: &SessionConfig,
        rng: &mut R,
    ) -> Result<Self, LinkError> {
        let hs = async {
            let mut msg1 = vec![0u8; MSG1_LEN];
            // The version byte first, so other protocol versions fail at once.
            stream
                .read_exact(&mut msg1[..1])
                .await
                .map_err(|e| map_eof(e, "handshake message 1"))?;
            Responder::check_prologue(msg1[0])?;
            stream
                .read_exact(&mut msg1[1..])
                .await
                .map_err(|e| map_eof(e, "handshake message 1"))?;
            let (resp, msg2) = Responder::read_message1(&config.identity, &msg1, unix_now(), rng)?;
            write_all(&mut stream, &msg2).await?;
            let mut msg3 = vec![0u8; MSG3_LEN];
            stream
                .read_exact(&mut msg3)
                .await
                .map_err(|e| map_eof(e, "handshake message 3"))?;
            let est = resp.read_message3(&msg3, config.authenticator.as_ref())?;
            let mut session = Self::from_established(stream, est, Role::Responder, config);
            session.writer.send(&NOOP).await?;
            Ok::<_, LinkError>(session)
        };
        let session = tokio::time::timeout(config.handshake_timeout, hs)
            .await
            .map_err(|_| LinkError::Timeout("during the handshake"))??;
        tracing::debug!("link handshake complete (responder)");
        Ok(session)
    }

    fn from_established(stream: S, est: Established, role: Role, config: &SessionConfig) -> Self {
        let Established {
            send,
            recv,
            peer,
            clock_skew,
            handshake_hash,
            ..
        } = est;
        let (r, w) = tokio::io::split(stream);
        Session {
            reader: SessionReader {
                inner: r,
                decoder: FrameDecoder::new(recv),
                io_timeout: config.io_timeout,
                idle_timeout: config.idle_timeout,
                failed: false,
            },
            writer: SessionWriter {
                inner: w,
                sender: FrameSender::new(send),
                out: Vec::new(),
                io_timeout: config.io_timeout,
                busy: false,
                failed: false,
            },
            info: SessionInfo {
                role,
                peer,
                clock_skew,
                handshake_hash,
            },
        }
    }
}

impl<S: AsyncRead + AsyncWrite> Session<S> {
    /// What the handshake established (peer credentials, clock skew).
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// The authenticated peer.
    pub fn peer(&self) -> &PeerCredentials {
        &self.info.peer
    }

    /// Initiator only: local clock minus the responder's clock, in seconds.
    pub fn clock_skew(&self) -> Option<i64> {
        self.info.clock_skew
    }

    /// Splits into halves that can be used from different tasks.
    pub fn into_split(
        self,
    ) -> (
        SessionReader<ReadHalf<S>>,
        SessionWriter<WriteHalf<S>>,
        SessionInfo,
    ) {
        (self.reader, self.writer, self.info)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Sends one command plaintext. See [`SessionWriter::send`].
    pub async fn send(&mut self, command: &[u8]) -> Result<(), LinkError> {
        self.writer.send(command).await
    }

    /// Receives one command plaintext. See [`SessionReader::recv`].
    pub async fn recv(&mut self) -> Result<Vec<u8>, LinkError> {
        self.reader.recv().await
    }

    /// Sends Disconnect and shuts the stream down.
    pub async fn close(self) -> Result<(), LinkError> {
        self.writer.close().await
    }
}
