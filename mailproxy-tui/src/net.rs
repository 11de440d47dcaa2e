//! The runtime side: talks to the daemon and turns what it says into
//! [`Msg`]s; executes [`Command`]s. Reconnects with backoff when the daemon
//! goes away. Never panics.
//!
//! Two connections: one for requests (a snapshot on connect and every
//! [`NetConfig::poll`], plus the user's commands) and one `EVENTS`
//! subscription whose lines arrive as [`Msg::Stream`].

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use mailproxy_proto::{Client, ClientError, Level, StatusCode};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;

use crate::event::{Fetched, Msg, Snapshot};
use crate::update::Command;

/// Unreadable event lines in a row after which the stream counts as broken.
const MAX_BAD_LINES: u32 = 20;

/// Runtime settings.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The management socket.
    pub socket: PathBuf,
    /// Log level of the event subscription.
    pub level: Level,
    /// Time between snapshots.
    pub poll: Duration,
    /// First reconnection delay (doubles up to `backoff_max`).
    pub backoff_min: Duration,
    /// Longest reconnection delay.
    pub backoff_max: Duration,
    /// Longest wait for one answer before the connection counts as lost.
    pub timeout: Duration,
}

impl NetConfig {
    /// Defaults for `socket`: poll every 3 s, reconnect after 1-10 s.
    pub fn new(socket: PathBuf, level: Level) -> NetConfig {
        NetConfig {
            socket,
            level,
            poll: Duration::from_secs(3),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Starts the runtime task. Commands sent on the returned channel are
/// executed (except [`Command::Quit`], which is the caller's); every result
/// is sent to `msgs`. The task ends when either channel closes.
pub fn spawn(
    config: NetConfig,
    msgs: UnboundedSender<Msg>,
) -> (UnboundedSender<Command>, JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = tokio::spawn(run(config, msgs, rx));
    (tx, handle)
}

/// Why a session ended.
enum End {
    /// The UI is gone: stop.
    Stop,
    /// The daemon went away (with the error).
    Lost(String),
}

async fn run(
    mut config: NetConfig,
    msgs: UnboundedSender<Msg>,
    mut commands: UnboundedReceiver<Command>,
) {
    let mut backoff = config.backoff_min;
    loop {
        let error = match with_timeout(config.timeout, Client::connect(&config.socket)).await {
            Ok(client) => {
                backoff = config.backoff_min;
                match session(&mut config, client, &msgs, &mut commands).await {
                    End::Stop => return,
                    End::Lost(error) => error,
                }
            }
            Err(e) => describe(&e),
        };
        if msgs
            .send(Msg::Disconnected {
                error,
                retry_in: backoff,
            })
            .is_err()
        {
            return;
        }
        // Wait, answering commands meanwhile (Refresh retries at once).
        let sleep = tokio::time::sleep(backoff);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                command = commands.recv() => match command {
                    None => return,
                    Some(Command::Refresh) => break,
                    Some(Command::Subscribe(level)) => config.level = level,
                    Some(Command::Quit) => {}
                    Some(command) => {
                        let msg = Msg::CommandResult {
                            description: command_description(&command),
                            result: Err("not connected to the daemon".into()),
                        };
                        if msgs.send(msg).is_err() {
                            return;
                        }
                    }
                },
            }
        }
        backoff = (backoff * 2).min(config.backoff_max);
    }
}

/// A user-facing description of a connection error.
fn describe(e: &ClientError) -> String {
    match e {
        ClientError::NotRunning { path, .. } => {
            format!(
                "mailproxyd is not running (no management socket at {})",
                path.display()
            )
        }
        other => other.to_string(),
    }
}

async fn with_timeout<T>(
    limit: Duration,
    work: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
        Err(ClientError::Protocol(
            "the daemon did not answer in time".into(),
        ))
    })
}

/// The connection to the daemon is in use until it fails with an error
/// other than a server answer.
fn is_lost(e: &ClientError) -> bool {
    !matches!(e, ClientError::Server(_))
}

async fn session(
    config: &mut NetConfig,
    mut client: Client,
    msgs: &UnboundedSender<Msg>,
    commands: &mut UnboundedReceiver<Command>,
) -> End {
    let version = match with_timeout(config.timeout, client.version()).await {
        Ok(v) => v,
        Err(e) if is_lost(&e) => return End::Lost(describe(&e)),
        Err(e) => format!("daemon ({e})"),
    };
    if msgs.send(Msg::Connected { version }).is_err() {
        return End::Stop;
    }
    let (lost_tx, mut lost_rx) = mpsc::unbounded_channel::<String>();
    let mut stream = spawn_stream(config, msgs.clone(), lost_tx.clone());
    let mut poll = tokio::time::interval(config.poll);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = loop {
        tokio::select! {
            _ = poll.tick() => {
                match snapshot(config.timeout, &mut client).await {
                    Ok(s) => if msgs.send(Msg::Snapshot(Box::new(s))).is_err() { break End::Stop },
                    Err(e) => break End::Lost(e),
                }
            }
            lost = lost_rx.recv() => {
                break End::Lost(lost.unwrap_or_else(|| "event stream ended".into()));
            }
            command = commands.recv() => {
                let Some(command) = command else { break End::Stop };
                match command {
                    Command::Quit => {}
                    Command::Refresh => poll.reset_immediately(),
                    Command::Subscribe(level) => {
                        config.level = level;
                        stream.abort();
                        stream = spawn_stream(config, msgs.clone(), lost_tx.clone());
                    }
                    command => {
                        let description = command_description(&command);
                        let result = with_timeout(config.timeout, execute(&mut client, &command)).await;
                        let lost = result.as_ref().err().filter(|e| is_lost(e)).map(describe);
                        let msg = Msg::CommandResult { description, result: result.map_err(|e| describe(&e)) };
                        if msgs.send(msg).is_err() {
                            break End::Stop;
                        }
                        if let Some(e) = lost {
                            break End::Lost(e);
                        }
                        poll.reset_immediately();
                    }
                }
            }
        }
    };
    stream.abort();
    end
}

/// What a command does, for the result message.
fn command_description(command: &Command) -> String {
    match command {
        Command::SetRecipient { address, .. } => format!("recipient {address} set"),
        Command::RemoveRecipient { address } => format!("recipient {address} removed"),
        Command::Cancel { account, id } => format!("message #{id} of {account} cancelled"),
        Command::Refresh => "refresh".into(),
        Command::Subscribe(level) => format!("log level {level}"),
        Command::Quit => "quit".into(),
    }
}

async fn execute(client: &mut Client, command: &Command) -> Result<(), ClientError> {
    match command {
        Command::SetRecipient { address, key } => client.set_recipient(address, key).await,
        Command::RemoveRecipient { address } => client.remove_recipient(address).await,
        Command::Cancel { account, id } => client.cancel(account, *id).await,
        Command::Refresh | Command::Subscribe(_) | Command::Quit => Ok(()),
    }
}

/// One snapshot; `Err` when the connection is lost.
async fn snapshot(limit: Duration, client: &mut Client) -> Result<Snapshot, String> {
    Ok(Snapshot {
        accounts: fetched(with_timeout(limit, client.accounts()).await)?,
        status: fetched(with_timeout(limit, client.status()).await)?,
        queue: fetched(with_timeout(limit, client.queue()).await)?,
        inbox: fetched(with_timeout(limit, client.inbox()).await)?,
        recipients: fetched(with_timeout(limit, client.list_recipients()).await)?,
    })
}

/// Sorts a reply into data, an unsupported command, a refusal, or a lost connection.
fn fetched<T>(result: Result<T, ClientError>) -> Result<Fetched<T>, String> {
    match result {
        Ok(v) => Ok(Fetched::Ok(v)),
        Err(ClientError::Server(status)) if status.code == StatusCode::UNRECOGNISED => {
            Ok(Fetched::Unsupported)
        }
        Err(ClientError::Server(status)) => Ok(Fetched::Failed(status.text)),
        Err(e) => Err(describe(&e)),
    }
}

/// The `EVENTS` subscription on its own connection. Reports a lost stream
/// on `lost`; a daemon without `EVENTS` gets one [`Msg::StreamUnavailable`]
/// and the task ends quietly (snapshots still update the panes).
fn spawn_stream(
    config: &NetConfig,
    msgs: UnboundedSender<Msg>,
    lost: UnboundedSender<String>,
) -> JoinHandle<()> {
    let socket = config.socket.clone();
    let level = config.level;
    let limit = config.timeout;
    tokio::spawn(async move {
        let subscribed = async {
            let client = Client::connect(&socket).await?;
            client.subscribe(level).await
        };
        let mut stream = match with_timeout(limit, subscribed).await {
            Ok(s) => s,
            Err(ClientError::Server(status)) => {
                let _ = msgs.send(Msg::StreamUnavailable {
                    unsupported: status.code == StatusCode::UNRECOGNISED,
                    error: if status.code == StatusCode::UNRECOGNISED {
                        "daemon does not support EVENTS (old version?)".into()
                    } else {
                        status.text
                    },
                });
                return;
            }
            Err(e) => {
                let _ = lost.send(describe(&e));
                return;
            }
        };
        let mut bad_lines = 0;
        loop {
            match stream.next().await {
                Ok(Some(line)) => {
                    bad_lines = 0;
                    if msgs.send(Msg::Stream(line)).is_err() {
                        return;
                    }
                }
                Ok(None) => {
                    let _ = lost.send("the daemon closed the event stream".into());
                    return;
                }
                Err(ClientError::Protocol(e)) => {
                    // A line this version cannot parse (e.g. from a newer
                    // daemon) is skipped; a stream of nothing else is broken.
                    bad_lines += 1;
                    if bad_lines >= MAX_BAD_LINES {
                        let _ = lost.send(format!("event stream: {e}"));
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    let _ = lost.send(describe(&e));
                    return;
                }
            }
        }
    })
}
