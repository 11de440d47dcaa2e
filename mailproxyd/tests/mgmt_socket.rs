//! The management socket against hostile and concurrent clients (the real
//! binary; in-process where a test needs limits other than the defaults).

#[path = "lifecycle_support/mod.rs"]
mod support;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};

use mailproxy_proto::{Client, StatusCode, MAX_LINE};
use support::Setup;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

#[tokio::test]
async fn mgmt_socket_is_private() {
    let setup = Setup::new();
    let _daemon = setup.start();
    let meta = std::fs::symlink_metadata(&setup.socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let dir = std::fs::metadata(setup.socket.parent().unwrap()).unwrap();
    assert_eq!(dir.permissions().mode() & 0o777, 0o700);
}

async fn expect(
    lines: &mut tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    code: u16,
) {
    let line = lines.next_line().await.unwrap().expect("reply");
    assert!(
        line.starts_with(&format!("{code} ")),
        "expected {code}, got {line:?}"
    );
}

#[tokio::test]
async fn mgmt_socket_refuses_garbage_without_affecting_others() {
    let setup = Setup::new();
    let _daemon = setup.start();

    let mut good = Client::connect(&setup.socket).await.unwrap();
    good.set_recipient("bob@provider-1", &[7; 32])
        .await
        .unwrap();

    let stream = UnixStream::connect(&setup.socket).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let greeting = lines.next_line().await.unwrap().unwrap();
    assert!(greeting.starts_with("220 "));

    // Binary garbage with a newline: not UTF-8.
    write.write_all(b"\xff\xfe\x00\x01garbage\n").await.unwrap();
    expect(&mut lines, 501).await;
    // Control characters.
    write
        .write_all(b"GET_RECIPIENT bob\x07@provider-1\n")
        .await
        .unwrap();
    expect(&mut lines, 501).await;
    // Unknown command.
    write.write_all(b"FROBNICATE now\r\n").await.unwrap();
    expect(&mut lines, 500).await;
    // A line far over the limit, sent in pieces, then a valid command on the same stream.
    let long = vec![b'A'; MAX_LINE * 8];
    write.write_all(&long).await.unwrap();
    write.write_all(b"AAAA\nVERSION\n").await.unwrap();
    expect(&mut lines, 501).await;
    expect(&mut lines, 250).await;

    // Meanwhile another client works normally, and the garbage changed nothing.
    assert_eq!(good.get_recipient("bob@provider-1").await.unwrap(), [7; 32]);
    assert_eq!(good.list_recipients().await.unwrap().len(), 1);

    // The garbage client can still use the protocol too.
    write
        .write_all(b"GET_RECIPIENT bob@provider-1\n")
        .await
        .unwrap();
    expect(&mut lines, 250).await;
    write.write_all(b"QUIT\n").await.unwrap();
    expect(&mut lines, 250).await;
    assert!(
        lines.next_line().await.unwrap().is_none(),
        "server closes after QUIT"
    );
}

#[tokio::test]
async fn mgmt_many_clients_at_once() {
    let setup = Setup::new();
    let _daemon = setup.start();
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let socket = setup.socket.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(&socket).await.unwrap();
            let addr = format!("user{i}@provider-1");
            c.set_recipient(&addr, &[i; 32]).await.unwrap();
            assert_eq!(c.get_recipient(&addr).await.unwrap(), [i; 32]);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut c = Client::connect(&setup.socket).await.unwrap();
    let list = c.list_recipients().await.unwrap();
    assert_eq!(list.len(), 16);
    let mut sorted = list.clone();
    sorted.sort();
    assert_eq!(list, sorted);
    // Unknown command gives the original's text.
    c.send_raw(b"HELP\n").await.unwrap();
    let status = c.read_status().await.unwrap();
    assert_eq!(status.code, StatusCode::UNRECOGNISED);
    assert_eq!(status.text, "Syntax error, command unrecognised");
}

#[tokio::test]
async fn mgmt_client_that_never_reads_does_not_block_shutdown() {
    let setup = Setup::new();
    let mut daemon = setup.start();
    let mut stuck = UnixStream::connect(&setup.socket).await.unwrap();
    // Many requests whose replies are never read: the server ends up blocked
    // writing to this client.
    let flood = b"VERSION\n".repeat(50_000);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), stuck.write_all(&flood)).await;
    // Other clients are still served.
    let mut other = Client::connect(&setup.socket).await.unwrap();
    assert!(other.version().await.is_ok());
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait().code(), Some(0), "{}", daemon.stderr());
    assert!(!setup.socket.exists());
    drop(stuck);
}

/// A raw client: its first line (the greeting) has been read.
type Raw = BufReader<UnixStream>;

async fn raw_connect(socket: &std::path::Path) -> Raw {
    let mut c = BufReader::new(UnixStream::connect(socket).await.unwrap());
    let greeting = raw_line(&mut c).await.expect("greeting");
    assert!(greeting.starts_with("220 "), "{greeting:?}");
    c
}

/// The next line, or None at EOF.
async fn raw_line(c: &mut Raw) -> Option<String> {
    let mut l = String::new();
    let n = c.read_line(&mut l).await.unwrap();
    (n > 0).then_some(l)
}

/// The default management slots (`MgmtSettings::default().max_clients`).
const MGMT_SLOTS: usize = 64;

#[tokio::test]
async fn mgmt_idle_flood_does_not_lock_out_clients() {
    const IDLE: usize = 500;
    let setup = Setup::new();
    let _daemon = setup.start();
    // Each is greeted before the next connects, so the daemon has taken it in.
    let mut flood = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        flood.push(raw_connect(&setup.socket).await);
    }

    let start = std::time::Instant::now();
    let mut c = Client::connect(&setup.socket).await.unwrap();
    let version = c.version().await.unwrap();
    let elapsed = start.elapsed();
    assert!(version.starts_with("mailproxyd "), "{version}");
    eprintln!(
        "management: connect and VERSION took {:.1} ms with {IDLE} idle connections open",
        elapsed.as_secs_f64() * 1e3
    );
    assert_eq!(c.accounts().await.unwrap().len(), 1);

    // The oldest idle connections were told why and closed (the start-up
    // probe of `Setup::start` may have held one slot); the newest still work.
    for (i, idle) in flood.iter_mut().enumerate().take(IDLE - MGMT_SLOTS) {
        let bye = raw_line(idle).await.expect("a goodbye");
        assert!(
            bye.starts_with("554 ") && bye.contains("too many management clients"),
            "connection {i}: {bye:?}"
        );
        assert_eq!(raw_line(idle).await, None, "connection {i} left open");
    }
    let last = flood.last_mut().unwrap();
    last.get_mut().write_all(b"VERSION\n").await.unwrap();
    assert!(raw_line(last).await.unwrap().starts_with("250 "));
}

#[tokio::test]
async fn mgmt_proven_clients_and_subscribers_are_never_evicted() {
    let setup = Setup::new();
    let _daemon = setup.start();
    let mut subscriber = raw_connect(&setup.socket).await;
    subscriber
        .get_mut()
        .write_all(b"EVENTS off\n")
        .await
        .unwrap();
    assert!(raw_line(&mut subscriber).await.unwrap().starts_with("250 "));
    let mut proven = Client::connect(&setup.socket).await.unwrap();
    proven.version().await.unwrap();
    // Four times the slots in idle newcomers, each evicting an older one.
    let mut flood = Vec::new();
    for _ in 0..4 * MGMT_SLOTS {
        flood.push(raw_connect(&setup.socket).await);
    }
    assert!(proven.version().await.is_ok());

    // With every slot proven, a newcomer is refused and no one is evicted.
    // (Each of these takes a free slot or evicts what is left of the flood.)
    drop(flood);
    let mut held = Vec::new();
    for _ in 0..MGMT_SLOTS - 2 {
        let mut c = raw_connect(&setup.socket).await;
        c.get_mut().write_all(b"VERSION\n").await.unwrap();
        assert!(raw_line(&mut c).await.unwrap().starts_with("250 "));
        held.push(c);
    }
    let mut late = BufReader::new(UnixStream::connect(&setup.socket).await.unwrap());
    let refused = raw_line(&mut late).await.unwrap();
    assert!(
        refused.starts_with("554 ") && refused.contains("too many management clients"),
        "{refused:?}"
    );
    assert_eq!(raw_line(&mut late).await, None);
    assert!(proven.version().await.is_ok());
    subscriber.get_mut().write_all(b"QUIT\n").await.unwrap();
    while let Some(line) = raw_line(&mut subscriber).await {
        assert!(
            line.starts_with("EVENT ") || line.starts_with("LAGGED "),
            "only events until the stream ends: {line:?}"
        );
    }
}

#[tokio::test]
async fn mgmt_closes_after_too_many_bad_lines() {
    let setup = Setup::new();
    let _daemon = setup.start();

    // Bad lines in a row are what counts: valid requests in between reset it.
    let mut c = raw_connect(&setup.socket).await;
    for _ in 0..3 {
        c.get_mut()
            .write_all(&b"FROBNICATE\n".repeat(10))
            .await
            .unwrap();
        for _ in 0..10 {
            assert!(raw_line(&mut c).await.unwrap().starts_with("500 "));
        }
        c.get_mut().write_all(b"VERSION\n").await.unwrap();
        assert!(raw_line(&mut c).await.unwrap().starts_with("250 "));
    }

    // 290 KB of random bytes: a bounded number of replies, then EOF.
    let mut garbage = vec![0u8; 290 * 1024];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in &mut garbage {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> 32) as u8;
    }
    let (read, mut write) = UnixStream::connect(&setup.socket)
        .await
        .unwrap()
        .into_split();
    // The daemon stops reading part-way: the write may fail, that is the point.
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&garbage).await;
        write
    });
    let mut lines = BufReader::new(read).lines();
    let mut replies = Vec::new();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => replies.push(line),
            Ok(None) => break,
            // The daemon closed with our unread garbage in its buffer.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("{e}"),
        }
        assert!(replies.len() <= 13, "no end in sight: {replies:?}");
    }
    assert!(replies[0].starts_with("220 "), "{replies:?}");
    // The greeting, 11 bad lines answered (10 tolerated), the final error.
    assert_eq!(replies.len(), 13, "{replies:?}");
    assert!(
        replies[1..12]
            .iter()
            .all(|l| l.starts_with("500 ") || l.starts_with("501 ")),
        "{replies:?}"
    );
    assert!(
        replies[12].starts_with("554 ") && replies[12].contains("too many bad lines"),
        "{replies:?}"
    );
    drop(writer.await.unwrap());

    // Endless bytes without a line feed count as one bad line: the
    // connection is not closed for it, and memory stays bounded.
    let mut c = raw_connect(&setup.socket).await;
    c.get_mut()
        .write_all(&vec![b'A'; MAX_LINE * 64])
        .await
        .unwrap();
    c.get_mut().write_all(b"\nVERSION\n").await.unwrap();
    assert!(raw_line(&mut c).await.unwrap().starts_with("501 "));
    assert!(raw_line(&mut c).await.unwrap().starts_with("250 "));
}

#[tokio::test]
async fn mgmt_silent_client_is_closed_after_its_first_request_deadline() {
    use mailproxyd::mgmt::{self, MgmtContext, MgmtSettings};
    // The server in-process, for a short deadline.
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("sock").join("management_sock");
    let recipients = mailproxyd::recipients::Recipients::new(
        tmp.path().join("recipients"),
        Default::default(),
        false,
    );
    let events = mailproxyd::events::EventBus::default();
    // No accounts: the management socket alone.
    let config = mailproxyd::config::Config::parse(&format!(
        "[Proxy]\nDataDir = \"{}\"\nNoLaunchListeners = true\n",
        tmp.path().join("data").display()
    ))
    .unwrap();
    let directory =
        mailproxyd::directory::DaemonDirectory::open(&config, recipients.clone()).unwrap();
    let ctx = MgmtContext {
        directory,
        recipients: recipients.clone(),
        accounts: Vec::new(),
        shutdown: mailproxyd::daemon::Shutdown::new(),
        control: std::sync::Arc::new(mailproxyd::control::DaemonControl::new(
            Vec::new(),
            recipients,
            events,
        )),
        logs: mailproxyd::logging::LogBus::default(),
    };
    let shutdown = ctx.shutdown.clone();
    let listener = mgmt::bind(&socket).unwrap();
    let settings = MgmtSettings {
        first_command_timeout: std::time::Duration::from_secs(1),
        ..MgmtSettings::default()
    };
    let server = tokio::spawn(mgmt::serve_with(listener, socket.clone(), ctx, settings));

    let mut talker = Client::connect(&socket).await.unwrap();
    assert!(talker.version().await.is_ok());
    let mut quiet = raw_connect(&socket).await;
    let bye = raw_line(&mut quiet).await.unwrap();
    assert!(
        bye.starts_with("554 ") && bye.contains("no request in time"),
        "{bye:?}"
    );
    assert_eq!(raw_line(&mut quiet).await, None);
    // The talker is past its own deadline: a valid request lifted it.
    assert!(talker.version().await.is_ok());

    shutdown.trigger();
    server.await.unwrap().unwrap();
    assert!(!socket.exists());
}
