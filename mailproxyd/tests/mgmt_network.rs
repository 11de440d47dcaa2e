//! The management socket of a real daemon connected to an in-process
//! testnet: STATUS shows the link up with a PKI document, and EVENTS
//! streams the engine's events (connection, queued) as mail is submitted.

mod lifecycle_support;

use std::fs;
use std::process::Command;
use std::time::Duration;

use lifecycle_support::{wait_until, TIMEOUT};
use mailproxy_proto::{Client, ConnState, EventKind, Level, StreamLine};
use mailproxyd::keys::{read_pem_file, PUBLIC_PEM};
use testnet::config::Params;
use testnet::network::{Network, Shape};

/// Kills the daemon if the test fails before stopping it.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

async fn start_network(dir: &std::path::Path) -> Network {
    // The daemon's engine assumes the profile's epoch length.
    let mut params = Params::demo();
    params.epoch_period_secs = katzenpost::epoch::DEFAULT_PERIOD.as_secs();
    let shape = Shape {
        params,
        ..Shape::default()
    };
    Network::launch(dir, &shape, false, Duration::from_secs(60))
        .await
        .unwrap()
}

/// Writes a daemon config for alice@provider1 on `net` into `tmp`; returns
/// it with the data dir, socket, SMTP and POP3 ports.
fn write_config(
    tmp: &std::path::Path,
    net: &Network,
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
    u16,
) {
    let data_dir = tmp.join("data");
    let socket = data_dir.join("management_sock");
    let smtp = testnet::ports::reserve().unwrap().port();
    let pop3 = testnet::ports::reserve().unwrap().port();
    let config = tmp.join("mailproxyd.toml");
    fs::write(
        &config,
        format!(
            "[Proxy]\nDataDir = \"{}\"\nSMTPAddress = \"127.0.0.1:{smtp}\"\nPOP3Address = \"127.0.0.1:{pop3}\"\nIMAPAddress = \"127.0.0.1:0\"\n\
             [Logging]\nFile = \"mailproxyd.log\"\nLevel = \"INFO\"\n\
             [NonvotingAuthority.testnet]\nAddress = \"{}\"\nPublicKey = \"{}\"\n\
             [[Account]]\nUser = \"alice\"\nProvider = \"provider1\"\nAuthority = \"testnet\"\n\
             [Debug]\nPollingInterval = 1\n\
             [Management]\nEnable = true\n",
            data_dir.display(),
            net.spec.authority.address,
            net.spec.authority.identity_public,
        ),
    )
    .unwrap();
    (config, data_dir, socket, smtp)
}

/// Starts the daemon on `config` and waits for its management socket.
fn spawn_daemon(
    config: &std::path::Path,
    socket: &std::path::Path,
    stderr: &std::path::Path,
) -> Killed {
    let child = Command::new(env!("CARGO_BIN_EXE_mailproxyd"))
        .arg("-f")
        .arg(config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(stderr).unwrap())
        .spawn()
        .unwrap();
    let mut daemon = Killed(child);
    wait_until("the management socket", || {
        assert!(daemon.0.try_wait().unwrap().is_none(), "mailproxyd exited");
        std::os::unix::net::UnixStream::connect(socket).is_ok()
    });
    daemon
}

/// SIGTERMs the daemon; it must exit 0.
async fn stop_daemon(mut daemon: Killed, stderr: &std::path::Path) {
    // SAFETY: signalling our own child.
    assert_eq!(
        unsafe { libc::kill(daemon.0.id() as i32, libc::SIGTERM) },
        0
    );
    let exit = tokio::task::spawn_blocking(move || {
        let mut status = None;
        wait_until("mailproxyd to exit", || {
            status = daemon.0.try_wait().unwrap();
            status.is_some()
        });
        status.unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        exit.code(),
        Some(0),
        "{}",
        fs::read_to_string(stderr).unwrap_or_default()
    );
}

/// An account whose keys the provider does not know: the status, the log
/// and so the TUI say what that most likely means.
#[tokio::test(flavor = "multi_thread")]
async fn an_unregistered_account_is_told_to_register() {
    let netdir = tempfile::tempdir().unwrap();
    let net = start_network(netdir.path()).await;
    let tmp = tempfile::Builder::new().prefix("mpu").tempdir().unwrap();
    let (config, data_dir, socket, _) = write_config(tmp.path(), &net);
    let stderr = tmp.path().join("stderr");
    let daemon = spawn_daemon(&config, &socket, &stderr);
    let mut c = Client::connect(&socket).await.unwrap();
    let deadline = std::time::Instant::now() + TIMEOUT;
    let s = loop {
        let s = c.status().await.unwrap().remove(0);
        if s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("did not accept"))
        {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "no link error: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let error = s.last_error.unwrap();
    assert!(
        error.contains(
            "most likely the provider does not know this account's link key: register the account"
        ),
        "{error}"
    );
    assert_ne!(s.connection, ConnState::Up);
    let log = fs::read_to_string(data_dir.join("mailproxyd.log")).unwrap();
    assert!(log.contains("register the account"), "{log}");
    stop_daemon(daemon, &stderr).await;
    drop(net);
}

#[tokio::test(flavor = "multi_thread")]
async fn mgmt_status_and_events_of_a_connected_daemon() {
    let netdir = tempfile::tempdir().unwrap();
    let net = start_network(netdir.path()).await;

    let tmp = tempfile::Builder::new().prefix("mpn").tempdir().unwrap();
    let (config, data_dir, socket, smtp) = write_config(tmp.path(), &net);

    // Keys first (-g), registered at the provider, then the daemon.
    lifecycle_support::generate(&config);
    let account_dir = data_dir.join("alice@provider1");
    let link = read_pem_file(&account_dir.join("link.public.pem"), PUBLIC_PEM).unwrap();
    let identity = read_pem_file(&account_dir.join("identity.public.pem"), PUBLIC_PEM).unwrap();
    net.node("provider1")
        .unwrap()
        .provider
        .as_ref()
        .unwrap()
        .add_user("alice", link, Some(identity))
        .unwrap();

    let stderr = tmp.path().join("stderr");
    let daemon = spawn_daemon(&config, &socket, &stderr);
    wait_until("the SMTP listener", || {
        std::net::TcpStream::connect(("127.0.0.1", smtp)).is_ok()
    });

    // STATUS: the link comes up, with a verified document.
    let mut c = Client::connect(&socket).await.unwrap();
    let deadline = std::time::Instant::now() + TIMEOUT;
    let s = loop {
        let s = c.status().await.unwrap().remove(0);
        if s.connection == ConnState::Up && s.epoch.is_some() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "link not up: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(s.account, "alice@provider1");
    assert!(s.document_age.is_some(), "{s:?}");
    assert!(
        s.last_error.is_none() || s.connection == ConnState::Up,
        "{s:?}"
    );

    // EVENTS: submitting mail (to herself) shows up as a queued event.
    let mut events = Client::connect(&socket)
        .await
        .unwrap()
        .subscribe(Level::Info)
        .await
        .unwrap();
    c.set_recipient("alice@provider1", &identity).await.unwrap();
    let pw = c.password("alice@provider1", false).await.unwrap();
    let out = Command::new("swaks")
        .args(["--server", "127.0.0.1", "--port", &smtp.to_string()])
        .args(["--auth-user", "alice@provider1", "--auth-password", &pw])
        .args(["--from", "alice@provider1", "--to", "alice@provider1"])
        .args(["--header", "Subject: to myself", "--body", "PRIVATE-BODY"])
        .output()
        .expect("swaks is installed (scripts/install-test-deps)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Its Queued event comes first, before anything was sent of it.
    let queued = tokio::time::timeout(TIMEOUT, async {
        let mut seen_log = false;
        loop {
            match events.next().await.unwrap().expect("stream open") {
                StreamLine::Log(l) => {
                    assert!(!l.message.contains("PRIVATE-BODY"));
                    seen_log |= l.level <= Level::Info;
                }
                StreamLine::Event(e) => match e.kind {
                    EventKind::Queued { id, to, size } => {
                        assert_eq!(e.account, "alice@provider1");
                        return (id, to, size, seen_log);
                    }
                    EventKind::Sent { id, .. } => panic!("sent #{id} before it was queued"),
                    _ => {}
                },
                StreamLine::Lagged { .. } => {}
            }
        }
    })
    .await
    .expect("a queued event");
    assert_eq!(queued.1, "alice@provider1");
    assert!(queued.2 > 0);
    assert!(queued.3, "a LOG line at info came before the event");
    let queue = c.queue().await.unwrap();
    assert!(
        queue.is_empty() || queue.iter().any(|q| q.id == queued.0),
        "{queue:?}"
    );

    // Once it went round (acknowledged and delivered to herself), the
    // counters survive a restart.
    let deadline = std::time::Instant::now() + TIMEOUT * 3;
    let before = loop {
        let s = c.status().await.unwrap().remove(0);
        if s.acknowledged >= 1 && s.delivered >= 1 {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "no round trip: {s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    drop((c, events));
    stop_daemon(daemon, &stderr).await;
    let daemon = spawn_daemon(&config, &socket, &stderr);
    let mut c = Client::connect(&socket).await.unwrap();
    let after = c.status().await.unwrap().remove(0);
    assert!(
        after.acknowledged >= before.acknowledged,
        "{before:?}\n{after:?}"
    );
    assert!(after.delivered >= before.delivered, "{before:?}\n{after:?}");
    assert!(
        after.packets_sent >= before.packets_sent,
        "{before:?}\n{after:?}"
    );
    assert_eq!(after.inbox, before.inbox);
    drop(c);
    stop_daemon(daemon, &stderr).await;
    drop(net);
}
