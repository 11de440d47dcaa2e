//! The whole daemon in-process against an in-process testnet: key discovery
//! through the daemon's own hooks (the key lands in RecipientDir as a PEM
//! file, as SET_RECIPIENT would write it), with `[Debug] EpochPeriod` set to
//! the test network's short epoch; once with a nonvoting authority, once
//! with `[VotingAuthority]` peers of which one is down, once with both
//! accounts behind a real SOCKS5 `[UpstreamProxy]` (microsocks).

mod socks_support;

use std::time::Duration;

use base64::Engine as _;
use mailproxyd::config::Config;
use mailproxyd::daemon;
use testnet::config::Params;
use testnet::network::{Network, Shape};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const PERIOD: u64 = 600;

async fn start_network(dir: &std::path::Path, voting: usize) -> Network {
    let mut params = Params::demo();
    params.epoch_period_secs = PERIOD;
    params.document.mu = 1.0 / 5.0;
    params.document.mu_max_delay = 20;
    params.document.lambda_p = 1.0 / 20.0;
    params.document.lambda_p_max_delay = 100;
    let shape = Shape {
        params,
        voting_authorities: voting,
        ..Shape::default()
    };
    Network::launch(dir, &shape, false, Duration::from_secs(30))
        .await
        .unwrap()
}

/// A line-oriented client for SMTP and POP3.
struct Lines {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Lines {
    async fn connect(addr: std::net::SocketAddr) -> Lines {
        let s = TcpStream::connect(addr).await.unwrap();
        let (r, w) = s.into_split();
        Lines {
            r: BufReader::new(r),
            w,
        }
    }

    async fn line(&mut self) -> String {
        let mut l = String::new();
        tokio::time::timeout(Duration::from_secs(10), self.r.read_line(&mut l))
            .await
            .expect("a reply in time")
            .unwrap();
        l
    }

    /// An SMTP reply (all its lines); asserts its code.
    async fn smtp(&mut self, send: Option<&str>, code: &str) -> String {
        if let Some(s) = send {
            self.w.write_all(s.as_bytes()).await.unwrap();
        }
        let mut all = String::new();
        loop {
            let l = self.line().await;
            all.push_str(&l);
            if l.len() < 4 || l.as_bytes()[3] == b' ' {
                break;
            }
        }
        assert!(all.starts_with(code), "{send:?} -> {all}");
        all
    }

    /// A POP3 single-line reply; asserts +OK.
    async fn pop(&mut self, send: &str) -> String {
        self.w.write_all(send.as_bytes()).await.unwrap();
        let l = self.line().await;
        assert!(l.starts_with("+OK"), "{send:?} -> {l}");
        l
    }

    /// A POP3 multi-line body after +OK, dot-unstuffed.
    async fn body(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let l = self.line().await;
            if l == ".\r\n" {
                return out;
            }
            out.extend_from_slice(l.strip_prefix('.').unwrap_or(&l).as_bytes());
        }
    }
}

/// Both accounts' password, configured as a `PasswordHash`.
const PASSWORD: &str = "engine-daemon-pw";
/// A daemon running in this process.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), daemon::DaemonError>>,
}

impl Running {
    fn start(prepared: daemon::Prepared) -> Running {
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(daemon::run_prepared(prepared, async move {
            let _ = stop_rx.await;
        }));
        Running { stop, task }
    }

    /// Stops it; it must stop cleanly within 20 s.
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the daemon stops")
            .unwrap()
            .unwrap();
    }
}

/// Waits until a daemon's listener at `addr` is up.
async fn wait_listening(addr: std::net::SocketAddr) {
    let mut deadline = 50;
    while TcpStream::connect(addr).await.is_err() {
        deadline -= 1;
        assert!(deadline > 0, "{addr} did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Submits `msg` from alice@provider1 (logged in with `password`) to
/// bob@provider2 once the SMTP listener is up.
async fn submit(smtp: std::net::SocketAddr, msg: &str, password: &str) {
    wait_listening(smtp).await;
    let mut c = Lines::connect(smtp).await;
    c.smtp(None, "220").await;
    c.smtp(Some("EHLO test\r\n"), "250").await;
    let plain =
        base64::engine::general_purpose::STANDARD.encode(format!("\0alice@provider1\0{password}"));
    c.smtp(Some(&format!("AUTH PLAIN {plain}\r\n")), "235")
        .await;
    c.smtp(Some("MAIL FROM:<alice@provider1>\r\n"), "250").await;
    c.smtp(Some("RCPT TO:<bob@provider2>\r\n"), "250").await;
    c.smtp(Some("DATA\r\n"), "354").await;
    c.smtp(Some(&format!("{msg}.\r\n")), "250").await;
    c.smtp(Some("QUIT\r\n"), "221").await;
}

async fn maildrop(pop3: std::net::SocketAddr, user: &str, password: &str) -> Vec<Vec<u8>> {
    let mut c = Lines::connect(pop3).await;
    let greeting = c.line().await;
    assert!(greeting.starts_with("+OK"), "{greeting}");
    c.pop(&format!("USER {user}\r\n")).await;
    c.pop(&format!("PASS {password}\r\n")).await;
    let stat = c.pop("STAT\r\n").await;
    let n: usize = stat.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut out = Vec::new();
    for i in 1..=n {
        c.pop(&format!("RETR {i}\r\n")).await;
        out.push(c.body().await);
    }
    c.pop("QUIT\r\n").await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_discovers_a_key_stores_it_as_pem_and_delivers() {
    discover_and_deliver(0, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_delivers_through_a_socks5_upstream_proxy_only() {
    discover_and_deliver(0, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_delivers_over_voting_authorities_with_one_peer_down() {
    discover_and_deliver(3, false).await;
}

/// Alice mails bob, whose key she discovers, over a network with `voting`
/// voting authority peers (0: a nonvoting authority; otherwise the first
/// peer is down throughout); with `proxied`, every connection goes through
/// microsocks, and the providers must see their users only from its
/// outgoing address.
async fn discover_and_deliver(voting: usize, proxied: bool) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let netdir = tempfile::tempdir().unwrap();
    let net = start_network(netdir.path(), voting).await;
    if voting > 0 {
        net.authorities[0]
            .refuse
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let data = tempfile::tempdir().unwrap();
    let (smtp, pop3) = (
        testnet::ports::reserve().unwrap(),
        testnet::ports::reserve().unwrap(),
    );
    // The block `testnet info` prints; accounts name it as the Go configs did.
    let block = testnet::config::authority_block(&net.spec, "testnet");
    let proxy = socks_support::free_port();
    let (_socks, upstream) = if proxied {
        (
            Some(socks_support::microsocks(proxy).await),
            format!("[UpstreamProxy]\nType = \"socks5\"\nAddress = \"{proxy}\"\n"),
        )
    } else {
        (None, String::new())
    };
    let field = if voting > 0 {
        "VotingAuthority"
    } else {
        "Authority"
    };
    let hash = mailproxyd::auth::hash_password(PASSWORD).unwrap();
    let text = format!(
        "[Proxy]\nSMTPAddress = \"{smtp}\"\nPOP3Address = \"{pop3}\"\nIMAPAddress = \"127.0.0.1:0\"\nDataDir = \"{}\"\n\
         {block}\
         [[Account]]\nUser = \"alice\"\nProvider = \"provider1\"\n{field} = \"testnet\"\nInsecureKeyDiscovery = true\nPasswordHash = \"{hash}\"\n\
         [[Account]]\nUser = \"bob\"\nProvider = \"provider2\"\n{field} = \"testnet\"\nPasswordHash = \"{hash}\"\n\
         [Debug]\nPollingInterval = 1\nRetransmitSlack = 30\nEpochPeriod = {PERIOD}\n{upstream}",
        data.path().join("d").display(),
    );
    let config = Config::parse(&text).unwrap();
    assert_eq!(config.voting_authorities.len(), usize::from(voting > 0));
    assert_eq!(config.debug.epoch_period, Duration::from_secs(PERIOD));
    let recipient_dir = config.proxy.recipient_dir.clone();
    let prepared = tokio::task::spawn_blocking(move || daemon::prepare(config))
        .await
        .unwrap()
        .unwrap();
    // Register both at their providers; bob's provider knows his identity
    // key, alice's daemon does not.
    let mut bob_identity = [0u8; 32];
    for a in &prepared.accounts {
        let info = a.info();
        let provider = net
            .node(&a.config.provider)
            .unwrap()
            .provider
            .as_ref()
            .unwrap();
        provider
            .add_user(&a.config.user, info.link_key, Some(info.identity_key))
            .unwrap();
        if a.config.user == "bob" {
            bob_identity = info.identity_key;
        }
    }
    assert!(prepared.recipients.get("bob@provider2").unwrap().is_none());
    let d = Running::start(prepared);

    // Submit alice -> bob with no key known: accepted (discovery).
    let msg = "From: alice@provider1\r\nTo: bob@provider2\r\nSubject: found you\r\n\r\nhello bob, via key discovery\r\n";
    submit(smtp, msg, PASSWORD).await;

    // The key arrives as a PEM file, the mail at bob's maildrop.
    let pem = recipient_dir.join("bob@provider2.pem");
    let mut tries = 0;
    let bob_mail = loop {
        let m = maildrop(pop3, "bob@provider2", PASSWORD).await;
        if !m.is_empty() {
            break m;
        }
        tries += 1;
        assert!(
            tries < 120,
            "no delivery to bob (PEM written: {})",
            pem.exists()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(pem.exists(), "{} written", pem.display());
    // A fresh scan of RecipientDir (as after a restart) finds bob's real key.
    let rescanned =
        mailproxyd::recipients::Recipients::new(recipient_dir.clone(), Default::default(), false);
    rescanned.rescan().unwrap();
    assert_eq!(
        rescanned.get("bob@provider2").unwrap(),
        Some(bob_identity),
        "{}",
        std::fs::read_to_string(&pem).unwrap()
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(bob_identity);
    assert_eq!(bob_mail.len(), 1);
    let got = &bob_mail[0];
    let alice_sender = String::from_utf8_lossy(got);
    assert!(
        alice_sender.starts_with("Received: from mixnetwork.invalid"),
        "{alice_sender}"
    );
    assert!(got.ends_with(msg.as_bytes()), "{alice_sender}");
    // Alice has the Key Discovery notice naming bob's key.
    let alice_mail = maildrop(pop3, "alice@provider1", PASSWORD).await;
    assert_eq!(alice_mail.len(), 1);
    let notice = String::from_utf8_lossy(&alice_mail[0]);
    assert!(notice.contains("Subject: Key Discovery"), "{notice}");
    assert!(notice.contains(&b64), "{notice}");
    assert!(!notice.contains("hello bob"), "no message contents");
    if proxied {
        socks_support::assert_only_proxied(&net, &[("provider1", "alice"), ("provider2", "bob")]);
    }

    d.stop().await;
    net.shutdown().await;
}

/// Accounts created by the `mailproxyd -r` binary (HTTPS, trusting the
/// testnet's CA) against the providers' registration endpoints exchange
/// mail with the configs it wrote and the passwords it printed, with no
/// other step (only the listener ports are moved, so that two daemons share
/// this process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_registered_with_mailproxyd_r_exchange_mail() {
    let netdir = tempfile::tempdir().unwrap();
    let mut params = Params::demo();
    // The written config has the default EpochPeriod, as the demo's network.
    params.epoch_period_secs = 10_800;
    let shape = Shape {
        params,
        registration: true,
        ..Shape::default()
    };
    let net = Network::launch(netdir.path(), &shape, false, Duration::from_secs(30))
        .await
        .unwrap();
    let dirs = tempfile::tempdir().unwrap();
    let mut daemons = Vec::new();
    let mut listeners = Vec::new();
    let mut passwords = Vec::new();
    for (user, provider) in [("alice", "provider1"), ("bob", "provider2")] {
        let node = net.spec.node(provider).unwrap();
        let dir = dirs.path().join(user);
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mailproxyd"))
            .args(["-r", "-registrationCA"])
            .arg(netdir.path().join(testnet::registration::CA_FILE))
            .args(["-account", user, "-provider", provider])
            .args(["-providerKey", &node.identity_public])
            .args(["-authority", &net.spec.authority.address.to_string()])
            .args(["-authorityKey", &net.spec.authority.identity_public])
            .args(["-registrationAddr", &node.registration.unwrap().to_string()])
            .arg("-dataDir")
            .arg(&dir)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let config_path = dir.join("mailproxy.toml");
        assert!(
            stdout.contains(&format!("config:   {}\n", config_path.display())),
            "{stdout}"
        );
        let password = stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("password: "))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("-r printed no password: {stdout}"))
            .to_owned();
        assert_eq!(password.len(), 34, "{password}");
        passwords.push(password);
        let mut config = Config::load(&config_path).unwrap();
        let (smtp, pop3) = (
            testnet::ports::reserve().unwrap(),
            testnet::ports::reserve().unwrap(),
        );
        config.proxy.smtp_address = smtp;
        config.proxy.pop3_address = pop3;
        // Two daemons: the default IMAP port can serve only one.
        config.proxy.imap_address = testnet::ports::reserve().unwrap();
        let prepared = tokio::task::spawn_blocking(move || daemon::prepare(config))
            .await
            .unwrap()
            .unwrap();
        daemons.push(Running::start(prepared));
        listeners.push((smtp, pop3));
    }
    let msg = "From: alice@provider1\r\nTo: bob@provider2\r\nSubject: registered\r\n\r\nhello bob, from a registered account\r\n";
    submit(listeners[0].0, msg, &passwords[0]).await;
    wait_listening(listeners[1].1).await;
    let mut tries = 0;
    let bob_mail = loop {
        let m = maildrop(listeners[1].1, "bob@provider2", &passwords[1]).await;
        if !m.is_empty() {
            break m;
        }
        tries += 1;
        assert!(tries < 360, "no delivery to bob");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(bob_mail.len(), 1);
    assert!(bob_mail[0].ends_with(msg.as_bytes()));
    for d in daemons {
        d.stop().await;
    }
    net.shutdown().await;
}
