//! A small async client for the management socket (used by mailproxyctl and the TUI).

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use crate::event::{Level, StreamLine};
use crate::inbox::InboxItem;
use crate::key::KEY_LEN;
use crate::queue::QueueItem;
use crate::reply::{parse_recipient_line, AccountInfo, Body, Status, StatusCode};
use crate::request::{ParseError, Request};
use crate::status::AccountStatus;

/// The protocol error text for a connection the server closed.
const CLOSED: &str = "connection closed by the server";

/// Longest reply line the client accepts.
const MAX_REPLY_LINE: u64 = 64 * 1024;

/// Errors seen by the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket (no file, or a stale one).
    #[error("mailproxyd is not running (no management socket at {path}): {source}")]
    NotRunning {
        /// The socket path tried.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// I/O error on an established connection.
    #[error("management connection: {0}")]
    Io(#[from] io::Error),
    /// The server answered with an error status.
    #[error("{}", .0.text)]
    Server(Status),
    /// The server's answer did not follow the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The request cannot be sent (an argument with blanks or control characters).
    #[error("invalid request: {0}")]
    Request(#[from] ParseError),
}

impl ClientError {
    /// The server's status, when the error is a server answer.
    pub fn status(&self) -> Option<&Status> {
        match self {
            ClientError::Server(status) => Some(status),
            _ => None,
        }
    }
}

/// A reply: a status line or a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A status line.
    Status(Status),
    /// The lines of a dot-terminated body.
    Body(Vec<String>),
}

/// A connection to the management socket.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    greeting: Status,
}

impl Client {
    /// Connects and reads the greeting.
    pub async fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| match source.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    ClientError::NotRunning {
                        path: path.to_owned(),
                        source,
                    }
                }
                _ => ClientError::Io(source),
            })?;
        let (read, writer) = stream.into_split();
        let mut client = Client {
            reader: BufReader::new(read),
            writer,
            greeting: Status::standard(StatusCode::READY),
        };
        let line = client.read_line().await?;
        match Status::parse_line(&line) {
            Some(status) if status.code == StatusCode::READY => client.greeting = status,
            _ => {
                return Err(ClientError::Protocol(format!(
                    "unexpected greeting {line:?}"
                )))
            }
        }
        Ok(client)
    }

    /// The server's greeting.
    pub fn greeting(&self) -> &Status {
        &self.greeting
    }

    async fn read_line(&mut self) -> Result<String, ClientError> {
        let mut buf = Vec::new();
        (&mut self.reader)
            .take(MAX_REPLY_LINE)
            .read_until(b'\n', &mut buf)
            .await?;
        if buf.is_empty() {
            return Err(ClientError::Protocol(CLOSED.into()));
        }
        if buf.last() != Some(&b'\n') {
            return Err(ClientError::Protocol(
                "reply line too long or truncated".into(),
            ));
        }
        String::from_utf8(buf)
            .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
            .map_err(|_| ClientError::Protocol("reply is not UTF-8".into()))
    }

    /// Sends a request line exactly as given (for tests and raw access);
    /// it must end in LF.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.writer.write_all(bytes).await?;
        self.writer.flush().await?;
        Ok(())
    }

    /// Reads one status line.
    pub async fn read_status(&mut self) -> Result<Status, ClientError> {
        let line = self.read_line().await?;
        Status::parse_line(&line)
            .ok_or_else(|| ClientError::Protocol(format!("expected a status line, got {line:?}")))
    }

    /// Sends a request and reads its reply (a body for successful body
    /// commands, else a status line). Error statuses are returned as
    /// `Ok(Reply::Status)`; the typed helpers turn them into errors.
    pub async fn call(&mut self, request: &Request) -> Result<Reply, ClientError> {
        let line = request.to_line()?;
        self.send_raw(line.as_bytes()).await?;
        if !request.has_body() {
            return Ok(Reply::Status(self.read_status().await?));
        }
        let first = self.read_line().await?;
        if let Some(status) = Status::parse_line(&first) {
            return Ok(Reply::Status(status));
        }
        let mut body = Body::default();
        let mut line = first;
        while !body
            .push_line(&line)
            .map_err(|e| ClientError::Protocol(e.to_string()))?
        {
            line = self.read_line().await?;
        }
        Ok(Reply::Body(body.into_lines()))
    }

    async fn call_ok(&mut self, request: &Request) -> Result<Status, ClientError> {
        match self.call(request).await? {
            Reply::Status(status) if status.code.is_success() => Ok(status),
            Reply::Status(status) => Err(ClientError::Server(status)),
            Reply::Body(_) => Err(ClientError::Protocol("unexpected body".into())),
        }
    }

    async fn call_body(&mut self, request: &Request) -> Result<Vec<String>, ClientError> {
        match self.call(request).await? {
            Reply::Body(lines) => Ok(lines),
            Reply::Status(status) if status.code.is_success() => {
                Err(ClientError::Protocol("expected a body".into()))
            }
            Reply::Status(status) => Err(ClientError::Server(status)),
        }
    }

    async fn call_lines<T>(
        &mut self,
        request: &Request,
        parse: impl Fn(&str) -> Result<T, crate::fields::FieldError>,
    ) -> Result<Vec<T>, ClientError> {
        let command = request.command();
        self.call_body(request)
            .await?
            .iter()
            .map(|line| {
                parse(line).map_err(|e| ClientError::Protocol(format!("{command} line: {e}")))
            })
            .collect()
    }

    /// `STATUS`: one entry per account.
    pub async fn status(&mut self) -> Result<Vec<AccountStatus>, ClientError> {
        self.call_lines(&Request::Status, AccountStatus::parse_line)
            .await
    }

    /// `QUEUE`: the outgoing messages.
    pub async fn queue(&mut self) -> Result<Vec<QueueItem>, ClientError> {
        self.call_lines(&Request::Queue, QueueItem::parse_line)
            .await
    }

    /// `INBOX`: the messages in the inboxes (no contents).
    pub async fn inbox(&mut self) -> Result<Vec<InboxItem>, ClientError> {
        self.call_lines(&Request::Inbox, InboxItem::parse_line)
            .await
    }

    /// `CANCEL`: drops an outgoing message.
    pub async fn cancel(&mut self, account: &str, id: u64) -> Result<(), ClientError> {
        self.call_ok(&Request::Cancel {
            account: account.to_owned(),
            id,
        })
        .await
        .map(drop)
    }

    /// `PASSWORD`: the account's generated SMTP/POP3 password; with `reset`,
    /// a new one that replaces the old at once.
    pub async fn password(&mut self, account: &str, reset: bool) -> Result<String, ClientError> {
        let status = self
            .call_ok(&Request::Password {
                account: account.to_owned(),
                reset,
            })
            .await?;
        if status.text.is_empty() || status.text.contains(char::is_whitespace) {
            return Err(ClientError::Protocol(format!(
                "PASSWORD reply is not a password: {:?}",
                status.text
            )));
        }
        Ok(status.text)
    }

    /// `EVENTS`: turns this connection into an event stream at `level`.
    pub async fn subscribe(mut self, level: Level) -> Result<EventStream, ClientError> {
        self.call_ok(&Request::Events { level }).await?;
        Ok(EventStream { client: self })
    }

    /// `GET_RECIPIENT`: the recipient's key.
    pub async fn get_recipient(&mut self, address: &str) -> Result<[u8; KEY_LEN], ClientError> {
        let status = self
            .call_ok(&Request::GetRecipient {
                address: address.to_owned(),
            })
            .await?;
        crate::key::decode_key(&status.text)
            .map_err(|e| ClientError::Protocol(format!("GET_RECIPIENT reply: {e}")))
    }

    /// `SET_RECIPIENT`.
    pub async fn set_recipient(
        &mut self,
        address: &str,
        key: &[u8; KEY_LEN],
    ) -> Result<(), ClientError> {
        self.call_ok(&Request::SetRecipient {
            address: address.to_owned(),
            key: *key,
        })
        .await
        .map(drop)
    }

    /// `REMOVE_RECIPIENT`.
    pub async fn remove_recipient(&mut self, address: &str) -> Result<(), ClientError> {
        self.call_ok(&Request::RemoveRecipient {
            address: address.to_owned(),
        })
        .await
        .map(drop)
    }

    /// `LIST_RECIPIENTS`: `(address, key)` pairs, sorted by address.
    pub async fn list_recipients(&mut self) -> Result<Vec<(String, [u8; KEY_LEN])>, ClientError> {
        self.call_body(&Request::ListRecipients)
            .await?
            .iter()
            .map(|line| parse_recipient_line(line).map_err(ClientError::Protocol))
            .collect()
    }

    /// `ACCOUNTS`: the accounts with their public keys.
    pub async fn accounts(&mut self) -> Result<Vec<AccountInfo>, ClientError> {
        self.call_body(&Request::Accounts)
            .await?
            .iter()
            .map(|line| AccountInfo::parse_line(line).map_err(ClientError::Protocol))
            .collect()
    }

    /// `VERSION`: the text after `250`.
    pub async fn version(&mut self) -> Result<String, ClientError> {
        Ok(self.call_ok(&Request::Version).await?.text)
    }

    /// `RESCAN`: the server's summary.
    pub async fn rescan(&mut self) -> Result<String, ClientError> {
        Ok(self.call_ok(&Request::Rescan).await?.text)
    }

    /// `SHUTDOWN`.
    pub async fn shutdown(&mut self) -> Result<(), ClientError> {
        self.call_ok(&Request::Shutdown).await.map(drop)
    }

    /// `QUIT`, then drops the connection.
    pub async fn quit(mut self) -> Result<(), ClientError> {
        self.call_ok(&Request::Quit).await.map(drop)
    }
}

/// A subscribed connection (after `EVENTS`): yields stream lines as the
/// daemon sends them.
#[derive(Debug)]
pub struct EventStream {
    client: Client,
}

impl EventStream {
    /// The next line; `Ok(None)` when the daemon closed the connection (it
    /// stopped). Cancel-safe only between lines: drop the stream to stop.
    pub async fn next(&mut self) -> Result<Option<StreamLine>, ClientError> {
        match self.client.read_line().await {
            Ok(line) => StreamLine::parse_line(&line)
                .map(Some)
                .map_err(|e| ClientError::Protocol(e.to_string())),
            Err(ClientError::Protocol(msg)) if msg == CLOSED => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Ends the subscription politely (`QUIT`).
    pub async fn quit(mut self) -> Result<(), ClientError> {
        self.client.send_raw(b"QUIT\r\n").await
    }
}
