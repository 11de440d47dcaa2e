//! One client connection of the SMTP, POP3 and management servers
//! (mini-redis style):
//! the socket, its input and output buffers, the server's shutdown signal
//! and the connection's [`Slot`]. Sessions parse commands out of
//! [`Connection::buf`], queue replies with [`Connection::reply`], and call
//! [`Connection::read_more`] when they need input: it sends what is queued,
//! then reads with a time limit, and when the connection has to end (idle,
//! evicted, server stopping) says the protocol's goodbye and reports
//! [`Closed`].

use std::borrow::Cow;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::slots::{Cancelled, Slot};

/// Why a session ends early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The peer went away or the socket failed.
    Gone,
    /// The last reply was sent; close now.
    Done,
}

/// A protocol's last words (one line each, without CRLF) when the server
/// ends a connection.
#[derive(Debug)]
pub struct Goodbyes {
    /// Evicted to make room for a newcomer.
    pub evicted: Cow<'static, str>,
    /// No valid first command in time.
    pub first_command_timeout: Cow<'static, str>,
    /// No input within the read's time limit.
    pub idle_timeout: Cow<'static, str>,
    /// The server is stopping (`None`: close without a word).
    pub shutting_down: Option<Cow<'static, str>>,
}

/// A client connection: socket, buffers, shutdown signal and slot.
pub struct Connection<S> {
    sock: S,
    /// Input not parsed yet.
    pub buf: Vec<u8>,
    /// Replies not sent yet.
    pub out: Vec<u8>,
    stop: watch::Receiver<bool>,
    /// The connection's slot among the listener's (see [`crate::slots`]).
    pub slot: Slot,
    goodbyes: &'static Goodbyes,
    /// Room reserved in `buf` before each read.
    read_size: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// A connection on `sock` that ends when `stop` turns true, reading
    /// `read_size` bytes at most at a time, with `out_capacity` bytes of
    /// reply buffer to start with.
    pub fn new(
        sock: S,
        stop: watch::Receiver<bool>,
        goodbyes: &'static Goodbyes,
        read_size: usize,
        out_capacity: usize,
    ) -> Self {
        Connection {
            sock,
            buf: Vec::with_capacity(read_size.min(4096)),
            out: Vec::with_capacity(out_capacity),
            stop,
            slot: Slot::default(),
            goodbyes,
            read_size,
        }
    }

    /// Queues one reply line (CRLF appended).
    pub fn reply(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// Sends the queued replies.
    pub async fn flush(&mut self) -> Result<(), Closed> {
        if self.out.is_empty() {
            return Ok(());
        }
        let r = self.sock.write_all(&self.out).await;
        self.out.clear();
        r.map_err(|_| Closed::Gone)
    }

    /// Sends the queued replies, then reads more input into [`Self::buf`]
    /// within `timeout` (`None`: no limit). Ends the connection (with the
    /// protocol's goodbye) on timeout, eviction, a missed first-command
    /// deadline or, when `stoppable`, the server stopping; reports the peer
    /// gone at EOF.
    pub async fn read_more(
        &mut self,
        timeout: Option<Duration>,
        stoppable: bool,
    ) -> Result<(), Closed> {
        self.flush().await?;
        self.buf.reserve(self.read_size);
        let mut stop = self.stop.clone();
        let (sock, buf) = (&mut self.sock, &mut self.buf);
        let read = async move {
            match timeout {
                Some(t) => tokio::time::timeout(t, sock.read_buf(buf)).await,
                None => Ok(sock.read_buf(buf).await),
            }
        };
        let mut cancelled = None;
        let res = tokio::select! {
            r = read => Some(r),
            _ = stop.wait_for(|s| *s), if stoppable => None,
            c = self.slot.cancelled() => {
                cancelled = Some(c);
                None
            }
        };
        let goodbyes = self.goodbyes;
        let goodbye = match (cancelled, res) {
            (Some(Cancelled::Evicted), _) => Some(&goodbyes.evicted),
            (Some(Cancelled::FirstCommandTimeout), _) => Some(&goodbyes.first_command_timeout),
            (None, None) => goodbyes.shutting_down.as_ref(),
            (None, Some(Err(_elapsed))) => Some(&goodbyes.idle_timeout),
            (None, Some(Ok(Ok(0)) | Ok(Err(_)))) => return Err(Closed::Gone),
            (None, Some(Ok(Ok(_)))) => return Ok(()),
        };
        if let Some(line) = goodbye {
            self.reply(line);
            let _ = self.flush().await;
        }
        Err(Closed::Done)
    }

    /// The socket, the input not parsed yet and the slot, for a session that
    /// changes protocol (the management socket's `EVENTS` stream); the
    /// caller holds the slot until that session ends. Queued replies must
    /// have been flushed.
    pub fn into_parts(self) -> (S, Vec<u8>, Slot) {
        (self.sock, self.buf, self.slot)
    }

    /// Shuts the socket's write side down (the session is over).
    pub async fn shutdown(&mut self) {
        let _ = self.sock.shutdown().await;
    }
}
