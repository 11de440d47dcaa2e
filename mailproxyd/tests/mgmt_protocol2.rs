//! Management protocol 2 against the real binary: STATUS, QUEUE, CANCEL,
//! INBOX, EVENTS (events, log lines, lag, QUIT), RESCAN and SHUTDOWN. No
//! network: the configured authority is unreachable, so the engine stays
//! connecting/down and submitted mail stays queued.

mod lifecycle_support;

use std::fs;
use std::process::Command;

use lifecycle_support::{password, wait_until, write_recipient, Daemon, Setup, TIMEOUT};
use mailproxy_proto::{
    Client, ConnState, EventKind, EventStream, Level, QueueState, Reply, Request, StatusCode,
    StreamLine,
};
use mailproxyd::store::{KeySource, Store};

const ACCOUNT: &str = "alice@provider-0";
const BOB: &str = "bob@provider-1";

/// A daemon with SMTP on a free port and bob as a known recipient.
struct Mail {
    setup: Setup,
    smtp: u16,
}

impl Mail {
    fn new() -> Mail {
        let smtp = testnet::ports::reserve().unwrap().port();
        let pop3 = testnet::ports::reserve().unwrap().port();
        let setup = Setup::with_extra(&format!(
            "[Recipients]\n\"{BOB}\" = \"{}\"\n",
            "42".repeat(32)
        ));
        let text = fs::read_to_string(&setup.config).unwrap().replace(
            "NoLaunchListeners = true\n",
            &format!("SMTPAddress = \"127.0.0.1:{smtp}\"\nPOP3Address = \"127.0.0.1:{pop3}\"\nIMAPAddress = \"127.0.0.1:0\"\n"),
        );
        fs::write(&setup.config, text).unwrap();
        Mail { setup, smtp }
    }

    fn start(&self) -> Daemon {
        let daemon = self.setup.start();
        let smtp = self.smtp;
        wait_until("the SMTP listener", || {
            std::net::TcpStream::connect(("127.0.0.1", smtp)).is_ok()
        });
        daemon
    }

    /// Submits a message to `to` with swaks, logged in with the account's
    /// password; panics unless accepted.
    fn submit(&self, to: &str, body: &str) {
        let pw = password(&self.setup.socket, ACCOUNT, false);
        let out = Command::new("swaks")
            .args(["--server", "127.0.0.1", "--port", &self.smtp.to_string()])
            .args([
                "--auth",
                "PLAIN",
                "--auth-user",
                ACCOUNT,
                "--auth-password",
                &pw,
            ])
            .args(["--from", ACCOUNT, "--to", to])
            .args(["--header", "Subject: mgmt test", "--body", body])
            .output()
            .expect("swaks is installed (scripts/install-test-deps)");
        assert!(
            out.status.success(),
            "swaks failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// The next stream line matching `pred`, skipping others; panics on timeout
/// or end of stream.
async fn next_matching(
    stream: &mut EventStream,
    what: &str,
    mut pred: impl FnMut(&StreamLine) -> bool,
) -> StreamLine {
    let found = tokio::time::timeout(TIMEOUT, async {
        loop {
            match stream.next().await.expect("stream line") {
                Some(line) if pred(&line) => return line,
                Some(_) => {}
                None => panic!("stream ended while waiting for {what}"),
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn mgmt_status_queue_cancel_and_events() {
    let mail = Mail::new();
    let mut daemon = mail.start();
    let socket = mail.setup.socket.clone();

    // STATUS: every account with a connection state (no network: not up).
    let mut c = Client::connect(&socket).await.unwrap();
    let status = c.status().await.unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].account, ACCOUNT);
    assert_ne!(status[0].connection, ConnState::Up);
    assert_eq!((status[0].queued, status[0].inbox), (0, 0));

    // A subscriber at info sees what follows.
    let mut events = Client::connect(&socket)
        .await
        .unwrap()
        .subscribe(Level::Info)
        .await
        .unwrap();

    let secret = "SECRET-MARKER-4f1c";
    mail.submit(BOB, secret);
    let queue = c.queue().await.unwrap();
    assert_eq!(queue.len(), 1, "{queue:?}");
    let item = &queue[0];
    assert_eq!(
        (item.account.as_str(), item.recipient.as_str()),
        (ACCOUNT, BOB)
    );
    assert!(item.size > secret.len() as u64, "{item:?}");
    assert_eq!(item.state, QueueState::Queued, "key known, nothing sent");
    assert!(item.bounce_in > 0);
    let status = c.status().await.unwrap();
    assert_eq!(status[0].queued + status[0].in_flight, 1);

    // CANCEL removes it; a second CANCEL and unknown accounts get 554.
    c.cancel(ACCOUNT, item.id).await.unwrap();
    assert!(c.queue().await.unwrap().is_empty());
    for (account, id) in [(ACCOUNT, item.id), ("nobody@provider-0", 1)] {
        let err = c.cancel(account, id).await.unwrap_err();
        assert_eq!(
            err.status().map(|s| s.code),
            Some(StatusCode::FAILED),
            "{err}"
        );
    }

    // The subscriber saw the cancellation as an event and as a log line,
    // and nothing of the message.
    let cancelled = next_matching(
        &mut events,
        "the cancelled event",
        |l| matches!(l, StreamLine::Event(e) if e.kind == EventKind::Cancelled { id: item.id }),
    )
    .await;
    let StreamLine::Event(e) = cancelled else {
        unreachable!()
    };
    assert_eq!(e.account, ACCOUNT);
    let log = next_matching(
        &mut events,
        "the cancel log line",
        |l| matches!(l, StreamLine::Log(log) if log.message.contains("queue entry cancelled")),
    )
    .await;
    let StreamLine::Log(log) = log else {
        unreachable!()
    };
    assert_eq!(log.level, Level::Info);
    assert!(log.target.starts_with("mailproxyd"), "{}", log.target);
    assert!(!format!("{log:?}").contains(secret));

    // QUIT ends the stream: the server closes the connection.
    events.quit().await.unwrap();

    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait().code(), Some(0), "{}", daemon.stderr());
    assert!(
        !mail.setup.log().contains(secret),
        "the log holds the message"
    );
}

#[tokio::test]
async fn mgmt_inbox_lists_messages_without_contents() {
    let setup = Setup::new();
    setup.make_dirs();
    // Mail delivered before the daemon starts (as the engine would).
    let sender = mailproxy_proto::encode_key(&[5; 32]);
    let secret = "SECRET-BODY-77aa";
    let dir = setup.data_dir.join(ACCOUNT);
    let msg = format!("X-Katzenpost-Sender: {sender}\r\nSubject: {secret}\r\n\r\n{secret}\r\n");
    // The store blocks on commits: off the runtime.
    let (id_net, id_report) = std::thread::spawn(move || {
        mailproxyd::keys::ensure_private_dir(&dir).unwrap();
        let store = Store::open(&dir, &KeySource::KeyFile).unwrap();
        let a = store.deliver(msg.as_bytes(), 1_790_000_000).unwrap();
        let b = store
            .deliver(b"Subject: report\r\n\r\nundeliverable\r\n", 1_790_000_100)
            .unwrap();
        (a, b)
    })
    .join()
    .unwrap();
    let mut daemon = setup.start();
    let mut c = Client::connect(&setup.socket).await.unwrap();
    let inbox = c.inbox().await.unwrap();
    assert_eq!(inbox.len(), 2, "{inbox:?}");
    assert_eq!((inbox[0].id, inbox[0].arrived), (id_net.id, 1_790_000_000));
    assert_eq!(inbox[0].size, id_net.message.len);
    assert_eq!(inbox[0].sender.as_deref(), Some(sender.as_str()));
    assert_eq!(
        (inbox[1].id, inbox[1].sender.as_deref()),
        (id_report.id, None)
    );
    let status = c.status().await.unwrap();
    assert_eq!(status[0].inbox, 2);
    assert_eq!(
        status[0].inbox_bytes,
        id_net.message.len + id_report.message.len
    );
    // On the wire: nothing of the messages but sizes, times and the key.
    let Reply::Body(lines) = c.call(&Request::Inbox).await.unwrap() else {
        panic!("INBOX answers with a body");
    };
    let wire = lines.join("\n");
    assert_eq!(lines.len(), 2);
    assert!(!wire.contains(secret) && !wire.contains("report"), "{wire}");
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait().success());
}

#[tokio::test]
async fn mgmt_rescan_and_shutdown_with_a_subscriber() {
    let setup = Setup::new();
    setup.make_dirs();
    let mut daemon = setup.start();
    let mut c = Client::connect(&setup.socket).await.unwrap();
    write_recipient(&setup.recipient_dir(), "carol@provider-2.pem", &[8; 32]);
    assert_eq!(
        c.rescan().await.unwrap(),
        "1 added, 0 changed, 0 removed, 0 bad"
    );
    assert_eq!(c.get_recipient("carol@provider-2").await.unwrap(), [8; 32]);

    // SHUTDOWN with a live subscriber: the stream ends, the daemon exits 0.
    let mut events = Client::connect(&setup.socket)
        .await
        .unwrap()
        .subscribe(Level::Debug)
        .await
        .unwrap();
    c.shutdown().await.unwrap();
    let ended = tokio::time::timeout(TIMEOUT, async {
        while let Some(_line) = events.next().await.unwrap() {}
    })
    .await;
    assert!(ended.is_ok(), "the stream did not end at shutdown");
    assert_eq!(daemon.wait().code(), Some(0), "{}", daemon.stderr());
    assert!(!setup.socket.exists());
    assert!(setup.log().contains("mailproxyd stopped"));
}

#[tokio::test(flavor = "multi_thread")]
async fn mgmt_events_level_off_gets_no_log_lines_and_bad_levels_are_refused() {
    let setup = Setup::new();
    let mut daemon = setup.start();
    let mut c = Client::connect(&setup.socket).await.unwrap();
    c.send_raw(b"EVENTS loud\r\n").await.unwrap();
    assert_eq!(
        c.read_status().await.unwrap().code,
        StatusCode::BAD_ARGUMENTS
    );

    let mut off = Client::connect(&setup.socket)
        .await
        .unwrap()
        .subscribe(Level::Off)
        .await
        .unwrap();
    let mut info = Client::connect(&setup.socket)
        .await
        .unwrap()
        .subscribe(Level::Info)
        .await
        .unwrap();
    c.set_recipient("dave@provider-1", &[1; 32]).await.unwrap();
    next_matching(
        &mut info,
        "the recipient log line",
        |l| matches!(l, StreamLine::Log(log) if log.message.contains("recipient set")),
    )
    .await;
    // The events-only subscriber got no log line: the next thing it sees is
    // the end of the stream.
    daemon.signal(libc::SIGTERM);
    let rest = tokio::time::timeout(TIMEOUT, async {
        let mut lines = Vec::new();
        while let Some(line) = off.next().await.unwrap() {
            lines.push(line);
        }
        lines
    })
    .await
    .expect("stream ends at shutdown");
    assert!(
        rest.iter().all(|l| !matches!(l, StreamLine::Log(_))),
        "{rest:?}"
    );
    assert_eq!(daemon.wait().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn mgmt_subscriber_that_never_reads_does_not_stall_the_daemon() {
    let mail = Mail::new();
    let mut daemon = mail.start();
    let socket = mail.setup.socket.clone();
    // Subscribed at trace, then never read (until the end).
    let mut stuck = Client::connect(&socket)
        .await
        .unwrap()
        .subscribe(Level::Trace)
        .await
        .unwrap();
    // Far more log lines than the socket buffer and the bus hold.
    let mut c = Client::connect(&socket).await.unwrap();
    for i in 0..4000u32 {
        c.set_recipient("eve@provider-1", &[(i % 250) as u8 + 1; 32])
            .await
            .unwrap();
    }
    // SMTP submission and the management socket still work.
    let start = std::time::Instant::now();
    mail.submit(BOB, "still flowing");
    assert!(start.elapsed() < TIMEOUT);
    assert_eq!(c.queue().await.unwrap().len(), 1);
    // The stuck subscriber, reading at last, is told it lost lines.
    next_matching(
        &mut stuck,
        "a LAGGED line",
        |l| matches!(l, StreamLine::Lagged { dropped } if *dropped > 0),
    )
    .await;
    daemon.signal(libc::SIGTERM);
    let exit = tokio::task::spawn_blocking(move || daemon.wait())
        .await
        .unwrap();
    assert_eq!(exit.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn mgmt_debug_subscriber_gets_debug_lines_the_log_file_does_not() {
    let setup = Setup::new();
    // The log file at NOTICE (tracing info); a subscriber may ask for more.
    let text = fs::read_to_string(&setup.config)
        .unwrap()
        .replace("Level = \"DEBUG\"", "Level = \"NOTICE\"");
    fs::write(&setup.config, text).unwrap();
    let mut daemon = setup.start();
    let mut debug = Client::connect(&setup.socket)
        .await
        .unwrap()
        .subscribe(Level::Debug)
        .await
        .unwrap();
    // The server logs each new subscriber at debug: this one sees its own.
    let line = next_matching(
        &mut debug,
        "a DEBUG line",
        |l| matches!(l, StreamLine::Log(log) if log.level == Level::Debug),
    )
    .await;
    let StreamLine::Log(line) = line else {
        unreachable!()
    };
    assert!(line.message.contains("event subscriber"), "{line:?}");
    drop(debug);
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait().code(), Some(0));
    let log = setup.log();
    assert!(log.contains("mailproxyd stopped"), "{log}");
    assert!(!log.contains("DEBUG"), "the file stays at NOTICE:\n{log}");
}
