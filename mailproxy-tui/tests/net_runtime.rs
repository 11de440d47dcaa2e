//! The runtime (net.rs) against a fake management server on a Unix socket.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{alice_status, queue_item};
use mailproxy_proto::reply::format_body;
use mailproxy_proto::{
    AccountInfo, Event, EventKind, Level, Request, Status, StatusCode, StreamLine, GREETING,
};
use mailproxy_tui::event::{Fetched, Msg};
use mailproxy_tui::net::{self, NetConfig};
use mailproxy_tui::update::Command;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::{JoinHandle, JoinSet};

const WAIT: Duration = Duration::from_secs(10);

/// What the fake daemon saw.
#[derive(Default, Debug)]
struct Seen {
    set_recipients: Vec<(String, [u8; 32])>,
    subscriptions: Vec<Level>,
}

/// A fake mailproxyd management socket; `protocol2: false` answers 500 to
/// STATUS, QUEUE, INBOX and EVENTS like an older daemon.
struct Fake {
    task: JoinHandle<()>,
}

impl Fake {
    fn start(path: &Path, protocol2: bool, seen: Arc<Mutex<Seen>>) -> Fake {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).unwrap();
        let task = tokio::spawn(async move {
            // Dropping the JoinSet (when this task is aborted) aborts every
            // connection: the daemon is gone.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                connections.spawn(serve(stream, protocol2, seen.clone()));
            }
        });
        Fake { task }
    }

    fn stop(self, path: &Path) {
        self.task.abort();
        let _ = std::fs::remove_file(path);
    }
}

async fn serve(stream: UnixStream, protocol2: bool, seen: Arc<Mutex<Seen>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let greeting = Status {
        code: StatusCode::READY,
        text: GREETING.into(),
    };
    if write
        .write_all(greeting.to_string().as_bytes())
        .await
        .is_err()
    {
        return;
    }
    let ok = Status::standard(StatusCode::OK).to_string();
    let unknown = Status::standard(StatusCode::UNRECOGNISED).to_string();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(request) = mailproxy_proto::parse(format!("{line}\n").as_bytes()) else {
            let _ = write.write_all(b"501 bad\r\n").await;
            continue;
        };
        let reply = match request {
            Request::Version => Status::ok_with("fake 0.1 protocol 2").to_string(),
            Request::Accounts => format_body([AccountInfo {
                account: "alice@provider1".into(),
                link_key: [1; 32],
                identity_key: [2; 32],
            }
            .to_line()]),
            Request::ListRecipients => format_body(
                seen.lock()
                    .unwrap()
                    .set_recipients
                    .iter()
                    .map(|(a, k)| mailproxy_proto::reply::format_recipient_line(a, k)),
            ),
            Request::SetRecipient { address, key } => {
                seen.lock().unwrap().set_recipients.push((address, key));
                ok.clone()
            }
            Request::Status if protocol2 => format_body([alice_status().to_line()]),
            Request::Queue if protocol2 => {
                format_body([queue_item("alice@provider1", 7, "bob@provider2").to_line()])
            }
            Request::Inbox if protocol2 => format_body(Vec::<String>::new()),
            Request::Cancel { .. } if protocol2 => {
                Status::with_detail(StatusCode::FAILED, "no such message").to_string()
            }
            Request::Events { level } if protocol2 => {
                seen.lock().unwrap().subscriptions.push(level);
                let event = StreamLine::Event(Event {
                    time_ms: 1,
                    account: "alice@provider1".into(),
                    kind: EventKind::Acknowledged { id: 7 },
                });
                format!("{ok}{}\r\n", event.to_line())
            }
            Request::Quit => {
                let _ = write.write_all(ok.as_bytes()).await;
                return;
            }
            _ => unknown.clone(),
        };
        if write.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn config(socket: PathBuf) -> NetConfig {
    NetConfig {
        poll: Duration::from_millis(200),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        timeout: Duration::from_secs(5),
        ..NetConfig::new(socket, Level::Info)
    }
}

/// The next message `pick` accepts (others are skipped), or a panic after [`WAIT`].
async fn expect<T>(
    rx: &mut UnboundedReceiver<Msg>,
    what: &str,
    mut pick: impl FnMut(&Msg) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let msg = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .unwrap_or_else(|| panic!("runtime ended while waiting for {what}"));
        if let Some(v) = pick(&msg) {
            return v;
        }
    }
}

/// Messages until `done` holds for the ones gathered (order between the two
/// connections is not fixed), or a panic after [`WAIT`].
async fn gather(
    rx: &mut UnboundedReceiver<Msg>,
    what: &str,
    done: impl Fn(&[Msg]) -> bool,
) -> Vec<Msg> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut msgs = Vec::new();
    while !done(&msgs) {
        let msg = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}; got {msgs:?}"))
            .unwrap_or_else(|| panic!("runtime ended while waiting for {what}"));
        msgs.push(msg);
    }
    msgs
}

fn has(msgs: &[Msg], pick: impl Fn(&Msg) -> bool) -> bool {
    msgs.iter().any(pick)
}

#[tokio::test]
async fn snapshots_events_commands_and_reconnection() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("management_sock");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let fake = Fake::start(&socket, true, seen.clone());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (commands, task) = net::spawn(config(socket.clone()), tx);

    let msgs = gather(&mut rx, "Connected, a snapshot and an event", |msgs| {
        has(msgs, |m| matches!(m, Msg::Connected { .. }))
            && has(msgs, |m| matches!(m, Msg::Snapshot(_)))
            && has(msgs, |m| matches!(m, Msg::Stream(_)))
    })
    .await;
    assert!(
        matches!(&msgs[0], Msg::Connected { version } if version == "fake 0.1 protocol 2"),
        "{:?}",
        msgs[0]
    );
    let snap = msgs
        .iter()
        .find_map(|m| match m {
            Msg::Snapshot(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(snap.status, Fetched::Ok(vec![alice_status()]));
    assert_eq!(
        snap.queue,
        Fetched::Ok(vec![queue_item("alice@provider1", 7, "bob@provider2")])
    );
    assert_eq!(snap.inbox, Fetched::Ok(vec![]));
    let Fetched::Ok(accounts) = &snap.accounts else {
        panic!("{:?}", snap.accounts)
    };
    assert_eq!(accounts[0].account, "alice@provider1");
    let line = msgs
        .iter()
        .find_map(|m| match m {
            Msg::Stream(line) => Some(line.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        matches!(&line, StreamLine::Event(e) if e.kind == EventKind::Acknowledged { id: 7 }),
        "{line:?}"
    );

    // Commands are executed and answered; a refused one carries the reason.
    commands
        .send(Command::SetRecipient {
            address: "bob@provider2".into(),
            key: [3; 32],
        })
        .unwrap();
    let result = expect(&mut rx, "the SET_RECIPIENT result", |m| match m {
        Msg::CommandResult { result, .. } => Some(result.clone()),
        _ => None,
    })
    .await;
    assert_eq!(result, Ok(()));
    assert_eq!(
        seen.lock().unwrap().set_recipients,
        vec![("bob@provider2".to_string(), [3; 32])]
    );
    // The next snapshot has it (a mutation triggers one at once).
    expect(&mut rx, "a snapshot with the recipient", |m| match m {
        Msg::Snapshot(s) => {
            (s.recipients == Fetched::Ok(vec![("bob@provider2".into(), [3; 32])])).then_some(())
        }
        _ => None,
    })
    .await;
    commands
        .send(Command::Cancel {
            account: "alice@provider1".into(),
            id: 99,
        })
        .unwrap();
    let result = expect(&mut rx, "the CANCEL result", |m| match m {
        Msg::CommandResult { result, .. } => Some(result.clone()),
        _ => None,
    })
    .await;
    assert!(result.unwrap_err().contains("no such message"));

    // Re-subscribing at another level opens a new subscription.
    commands.send(Command::Subscribe(Level::Debug)).unwrap();
    expect(&mut rx, "an event after resubscribing", |m| {
        matches!(m, Msg::Stream(_)).then_some(())
    })
    .await;
    assert_eq!(
        seen.lock().unwrap().subscriptions,
        vec![Level::Info, Level::Debug]
    );

    // The daemon goes away: Disconnected, and commands are refused meanwhile.
    fake.stop(&socket);
    let error = expect(&mut rx, "Disconnected", |m| match m {
        Msg::Disconnected { error, .. } => Some(error.clone()),
        _ => None,
    })
    .await;
    assert!(!error.is_empty());
    let error = expect(&mut rx, "Disconnected while down", |m| match m {
        Msg::Disconnected { error, .. } => Some(error.clone()),
        _ => None,
    })
    .await;
    assert!(error.contains("not running"), "{error}");
    commands
        .send(Command::RemoveRecipient {
            address: "bob@provider2".into(),
        })
        .unwrap();
    let result = expect(&mut rx, "a refusal while disconnected", |m| match m {
        Msg::CommandResult { result, .. } => Some(result.clone()),
        _ => None,
    })
    .await;
    assert_eq!(result, Err("not connected to the daemon".to_string()));

    // It comes back: Connected again, with snapshots, by itself.
    let _fake = Fake::start(&socket, true, seen.clone());
    expect(&mut rx, "Connected again", |m| {
        matches!(m, Msg::Connected { .. }).then_some(())
    })
    .await;
    expect(&mut rx, "a snapshot after reconnecting", |m| {
        matches!(m, Msg::Snapshot(_)).then_some(())
    })
    .await;
    assert!(!task.is_finished());
    drop(commands);
    drop(rx);
    tokio::time::timeout(WAIT, task)
        .await
        .expect("the runtime stops when the UI is gone")
        .unwrap();
}

#[tokio::test]
async fn older_daemon_is_reported_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("sock");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let _fake = Fake::start(&socket, false, seen.clone());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (_commands, _task) = net::spawn(config(socket), tx);
    let msgs = gather(&mut rx, "a snapshot and StreamUnavailable", |msgs| {
        has(msgs, |m| matches!(m, Msg::Snapshot(_)))
            && has(msgs, |m| matches!(m, Msg::StreamUnavailable { .. }))
    })
    .await;
    let snap = msgs
        .iter()
        .find_map(|m| match m {
            Msg::Snapshot(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(snap.status, Fetched::Unsupported);
    assert_eq!(snap.queue, Fetched::Unsupported);
    assert_eq!(snap.inbox, Fetched::Unsupported);
    assert!(matches!(snap.accounts, Fetched::Ok(ref a) if a.len() == 1));
    let (unsupported, error) = msgs
        .iter()
        .find_map(|m| match m {
            Msg::StreamUnavailable { unsupported, error } => Some((*unsupported, error.clone())),
            _ => None,
        })
        .unwrap();
    assert!(unsupported);
    assert_eq!(error, "daemon does not support EVENTS (old version?)");
    // It keeps polling (several snapshots), never disconnects or
    // re-subscribes in a loop.
    for _ in 0..3 {
        let msg = expect(&mut rx, "more snapshots", |m| match m {
            Msg::Snapshot(_) => Some(None),
            Msg::Disconnected { .. } | Msg::StreamUnavailable { .. } | Msg::Connected { .. } => {
                Some(Some(format!("{m:?}")))
            }
            _ => None,
        })
        .await;
        assert_eq!(msg, None, "unexpected message");
    }
}

#[tokio::test]
async fn not_running_backs_off() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (_commands, _task) = net::spawn(config(dir.path().join("nothing")), tx);
    let mut delays = Vec::new();
    for _ in 0..4 {
        let (error, retry_in) = expect(&mut rx, "Disconnected", |m| match m {
            Msg::Disconnected { error, retry_in } => Some((error.clone(), *retry_in)),
            _ => None,
        })
        .await;
        assert!(error.contains("mailproxyd is not running"), "{error}");
        delays.push(retry_in.as_millis());
    }
    assert_eq!(delays, [50, 100, 200, 200]);
}
