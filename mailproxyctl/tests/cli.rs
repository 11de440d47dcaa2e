//! The mailproxyctl binary against a real daemon (the mailproxyd library,
//! serving a real Unix socket in this process).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use mailproxyd::config::Config;

const AUTHORITY_KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

fn ctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailproxyctl"))
        .args(args)
        .env_remove("MAILPROXYD_SOCKET")
        .env_remove("MAILPROXYD_CONFIG")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim_end().to_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
    socket: PathBuf,
    config_file: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Running {
    fn start() -> Running {
        let tmp = tempfile::Builder::new().prefix("ctl").tempdir().unwrap();
        Running::start_in(tmp, "NoLaunchListeners = true\n", "")
    }

    /// Starts the daemon in `tmp` with `proxy` lines in [Proxy] and `extra`
    /// sections appended.
    fn start_in(tmp: tempfile::TempDir, proxy: &str, extra: &str) -> Running {
        let data_dir = tmp.path().join("data");
        let text = format!(
            "[Proxy]\nDataDir = \"{}\"\n{proxy}[Logging]\nDisable = true\n\
             [NonvotingAuthority.Test]\nAddress = \"127.0.0.1:1\"\nPublicKey = \"{AUTHORITY_KEY}\"\n\
             [[Account]]\nUser = \"alice\"\nProvider = \"provider-0\"\n[Management]\nEnable = true\n{extra}",
            data_dir.display()
        );
        let config_file = tmp.path().join("mailproxyd.toml");
        std::fs::write(&config_file, &text).unwrap();
        let config = Config::parse(&text).unwrap();
        let socket = config.management.path.clone();
        // Logging is disabled in the config: this installs only the log bus
        // that `logs` reads.
        mailproxyd::logging::init(&config.logging).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(mailproxyd::daemon::run(config, async {
                let _ = rx.await;
            }))
            .map_err(|e| e.to_string())
        });
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(!thread.is_finished(), "daemon stopped early");
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "daemon did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Running {
            stop: Some(tx),
            thread: Some(thread),
            socket,
            config_file,
            _tmp: tmp,
        }
    }

    fn socket(&self) -> &str {
        self.socket.to_str().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let result = t.join().unwrap();
            if !std::thread::panicking() {
                assert_eq!(result, Ok(()));
                assert!(!self.socket.exists(), "socket removed on shutdown");
            }
        }
    }
}

#[test]
fn recipient_commands_via_mailproxyctl() {
    let d = Running::start();
    let s = d.socket();
    let key_hex = hex::encode([0x42u8; 32]);
    let key_b64 = mailproxy_proto::encode_key(&[0x42; 32]);

    let o = ctl(&["--socket", s, "set-recipient", "Bob@Provider-1", &key_hex]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");

    let o = ctl(&["--socket", s, "get-recipient", "bob@provider-1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), key_b64);

    let o = ctl(&["--socket", s, "set-recipient", "amy@provider-1", &key_b64]);
    assert!(o.status.success(), "{}", stderr(&o));

    let o = ctl(&["--socket", s, "list-recipients"]);
    assert_eq!(
        stdout(&o),
        format!("amy@provider-1 {key_b64}\nbob@provider-1 {key_b64}")
    );

    let o = ctl(&["--socket", s, "--json", "list-recipients"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v[1]["address"], "bob@provider-1");
    assert_eq!(v[1]["key"], key_b64);

    let o = ctl(&["--socket", s, "remove-recipient", "bob@provider-1"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // Errors carry the server's message and exit 1.
    let o = ctl(&["--socket", s, "get-recipient", "bob@provider-1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no recipient 'bob@provider-1'"),
        "{}",
        stderr(&o)
    );
    let o = ctl(&[
        "--socket",
        s,
        "--json",
        "remove-recipient",
        "bob@provider-1",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["code"], 554);

    // A bad key is refused before contacting the daemon.
    let o = ctl(&["--socket", s, "set-recipient", "x@provider-1", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("invalid key"));
}

#[test]
fn accounts_version_and_config_lookup() {
    let d = Running::start();
    let config = d.config_file.to_str().unwrap();
    let o = ctl(&["--config", config, "--json", "accounts"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v[0]["account"], "alice@provider-0");
    let link = v[0]["link_key"].as_str().unwrap();
    let link_bytes = mailproxy_proto::decode_key(link).unwrap();
    let on_disk = mailproxyd::keys::read_pem_file(
        &Path::new(config)
            .parent()
            .unwrap()
            .join("data/alice@provider-0/link.public.pem"),
        mailproxyd::keys::PUBLIC_PEM,
    )
    .unwrap();
    assert_eq!(link_bytes, on_disk);

    let o = ctl(&["--config", config, "accounts"]);
    assert!(
        stdout(&o).contains(&format!("ADD_USER alice {}", hex::encode(on_disk))),
        "{}",
        stdout(&o)
    );

    let o = ctl(&["--socket", d.socket(), "version"]);
    assert!(stdout(&o).starts_with("mailproxyd "), "{}", stdout(&o));

    let o = ctl(&["--socket", d.socket(), "rescan"]);
    assert_eq!(stdout(&o), "0 added, 0 changed, 0 removed, 0 bad");
}

/// Runs mailproxyctl with its stdout a pipe whose reader has exited.
fn ctl_into_closed_pipe(args: &[&str]) -> Output {
    let mut reader = Command::new("true")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let write_end = reader.stdin.take().unwrap();
    assert!(reader.wait().unwrap().success());
    Command::new(env!("CARGO_BIN_EXE_mailproxyctl"))
        .args(args)
        .env_remove("MAILPROXYD_SOCKET")
        .env_remove("MAILPROXYD_CONFIG")
        .stdout(write_end)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap()
}

/// As the README has it after `scripts/demo`: plain `mailproxyctl status`
/// from a directory without `katzenpost.toml` finds the daemon through
/// `~/.config/mailproxy/mailproxyd.toml` (the demo's symlink to its config);
/// a `./katzenpost.toml` goes first; with neither, the error names
/// `katzenpost.toml`.
#[test]
fn plain_commands_find_the_config_the_demo_points_at() {
    let d = Running::start();
    let home = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let plain = |args: &[&str], xdg: Option<&Path>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailproxyctl"));
        cmd.args(args)
            .current_dir(cwd.path())
            .env_remove("MAILPROXYD_SOCKET")
            .env_remove("MAILPROXYD_CONFIG")
            .env_remove("XDG_CONFIG_HOME")
            .env("HOME", home.path());
        if let Some(x) = xdg {
            cmd.env("XDG_CONFIG_HOME", x);
        }
        cmd.output().unwrap()
    };
    let o = plain(&["status"], None);
    assert_eq!(o.status.code(), Some(4));
    assert!(
        stderr(&o).contains("cannot read config file 'katzenpost.toml'"),
        "{}",
        stderr(&o)
    );
    // The pointer as scripts/demo writes it: ~/.config/mailproxy/mailproxyd.toml.
    let pointer_dir = home.path().join(".config/mailproxy");
    std::fs::create_dir_all(&pointer_dir).unwrap();
    std::os::unix::fs::symlink(&d.config_file, pointer_dir.join("mailproxyd.toml")).unwrap();
    let o = plain(&["status"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("alice@provider-0"), "{}", stdout(&o));
    let o = plain(&["password", "alice@provider-0"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).len(), 34, "{}", stdout(&o));
    // $XDG_CONFIG_HOME replaces ~/.config.
    let elsewhere = tempfile::tempdir().unwrap();
    let o = plain(&["status"], Some(elsewhere.path()));
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let o = plain(&["status"], Some(&home.path().join(".config")));
    assert!(o.status.success(), "{}", stderr(&o));
    // A katzenpost.toml in the working directory goes first.
    std::fs::write(
        cwd.path().join("katzenpost.toml"),
        "[Proxy]\nDataDir = \"/nonexistent/d\"\n[Management]\nEnable = true\n",
    )
    .unwrap();
    let o = plain(&["status"], None);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("/nonexistent/d/management_sock"));
}

#[test]
fn daemon_not_running_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("none_sock");
    let o = ctl(&["--socket", sock.to_str().unwrap(), "list-recipients"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains("mailproxyd is not running"),
        "{}",
        stderr(&o)
    );

    // A stale socket file (nobody listening) is "not running" too.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let o = ctl(&["--socket", sock.to_str().unwrap(), "accounts"]);
    assert_eq!(o.status.code(), Some(3));

    let o = ctl(&["--config", "/nonexistent/mailproxyd.toml", "accounts"]);
    assert_eq!(o.status.code(), Some(4));
    assert!(stderr(&o).contains("/nonexistent/mailproxyd.toml"));
}

#[test]
fn completions_and_help() {
    let o = ctl(&["completions", "bash"]);
    assert!(o.status.success());
    let script = stdout(&o);
    assert!(script.contains("mailproxyctl") && script.contains("set-recipient"));
    let o = ctl(&["--help"]);
    let help = stdout(&o);
    for word in [
        "get-recipient",
        "set-recipient",
        "remove-recipient",
        "list-recipients",
        "accounts",
        "status",
        "queue",
        "cancel",
        "inbox",
        "logs",
        "--follow",
        "shutdown",
        "--json",
        "--socket",
        "--config",
        "Exit codes",
    ] {
        assert!(help.contains(word), "--help lacks {word}");
    }
}

/// Submits a message from alice to `to` over SMTP with swaks.
/// Sends as alice with swaks, logged in with `password`.
#[test]
fn password_shows_and_resets_the_generated_password() {
    let d = Running::start();
    let s = d.socket();
    let o = ctl(&["--socket", s, "password", "Alice@Provider-0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let old = stdout(&o);
    assert_eq!(old.split('-').count(), 7, "{old}");
    // The same again, and in JSON.
    let o = ctl(&["--socket", s, "--json", "password", "alice@provider-0"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["password"], old.as_str());
    assert_eq!(v["account"], "alice@provider-0");
    // --reset: a new one, which is what the daemon shows from now on.
    let o = ctl(&["--socket", s, "password", "--reset", "alice@provider-0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let new = stdout(&o);
    assert_ne!(new, old);
    assert!(
        stderr(&o).contains("old one no longer works"),
        "{}",
        stderr(&o)
    );
    let o = ctl(&["--socket", s, "password", "alice@provider-0"]);
    assert_eq!(stdout(&o), new);
    // An unknown account: the daemon refuses (exit 1).
    let o = ctl(&["--socket", s, "password", "nobody@provider-0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no account"), "{}", stderr(&o));
}

fn submit(port: u16, to: &str, password: &str) {
    let out = Command::new("swaks")
        .args(["--server", "127.0.0.1", "--port", &port.to_string()])
        .args(["--auth", "PLAIN", "--auth-user", "alice@provider-0"])
        .args(["--auth-password", password])
        .args(["--from", "alice@provider-0", "--to", to])
        .args(["--header", "Subject: ctl test", "--body", "hello"])
        .output()
        .expect("swaks is installed (scripts/install-test-deps)");
    assert!(
        out.status.success(),
        "swaks: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Reads a child's output lines on a thread.
fn lines_of(r: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_line(
    rx: &std::sync::mpsc::Receiver<String>,
    what: &str,
    pred: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if pred(&line) => return line,
            Ok(_) => {}
            Err(e) => panic!("no {what}: {e}"),
        }
    }
}

#[test]
fn status_queue_cancel_inbox_logs_and_shutdown() {
    let tmp = tempfile::Builder::new().prefix("ctl").tempdir().unwrap();
    // A message in alice's inbox before the daemon starts.
    let sender = mailproxy_proto::encode_key(&[6; 32]);
    let account_dir = tmp.path().join("data/alice@provider-0");
    mailproxyd::keys::ensure_private_dir(&tmp.path().join("data")).unwrap();
    mailproxyd::keys::ensure_private_dir(&account_dir).unwrap();
    {
        let store =
            mailproxyd::store::Store::open(&account_dir, &mailproxyd::store::KeySource::KeyFile)
                .unwrap();
        let msg = format!("X-Katzenpost-Sender: {sender}\r\nSubject: private\r\n\r\nprivate\r\n");
        store.deliver(msg.as_bytes(), 1_795_000_000).unwrap();
    }
    let smtp = testnet::ports::reserve().unwrap().port();
    let pop3 = testnet::ports::reserve().unwrap().port();
    let d = Running::start_in(
        tmp,
        &format!("SMTPAddress = \"127.0.0.1:{smtp}\"\nPOP3Address = \"127.0.0.1:{pop3}\"\nIMAPAddress = \"127.0.0.1:0\"\n"),
        &format!(
            "[Recipients]\n\"bob@provider-1\" = \"{}\"\n",
            "42".repeat(32)
        ),
    );
    let s = d.socket();

    // status: a table, and JSON with the account and its connection.
    let o = ctl(&["--socket", s, "status"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("ACCOUNT "), "{out}");
    assert!(out.contains("alice@provider-0"), "{out}");
    let o = ctl(&["--socket", s, "--json", "status"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v[0]["account"], "alice@provider-0");
    assert!(
        ["connecting", "down"].contains(&v[0]["connection"].as_str().unwrap()),
        "{v}"
    );
    assert_eq!(v[0]["inbox"], 1);

    // logs: without --follow or --for it explains itself.
    let o = ctl(&["--socket", s, "logs"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--follow"), "{}", stderr(&o));
    // One vocabulary of levels: the config's (and the original's) `notice`
    // is `info` here too; an unknown word is a usage error.
    let o = ctl(&["--socket", s, "logs", "--level", "NOTICE", "--for", "0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("at INFO"), "{}", stderr(&o));
    let o = ctl(&["--socket", s, "logs", "--level", "loud", "--for", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // A follower in JSON, started before anything happens.
    let mut follower = Command::new(env!("CARGO_BIN_EXE_mailproxyctl"))
        .args([
            "--socket", s, "--json", "logs", "--follow", "--level", "info",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let follow_out = lines_of(follower.stdout.take().unwrap());
    let follow_err = lines_of(follower.stderr.take().unwrap());
    wait_line(&follow_err, "subscription notice", |l| {
        l.contains("streaming")
    });

    // queue: the submitted message with its recipient.
    let o = ctl(&["--socket", s, "password", "alice@provider-0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    submit(smtp, "bob@provider-1", &stdout(&o));
    let o = ctl(&["--socket", s, "queue"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("bob@provider-1") && out.contains("queued"),
        "{out}"
    );
    // Into a pipe nobody reads any more (`| head -1` gone): rc 0, no panic.
    for args in [
        &["--socket", s, "queue"][..],
        &["--socket", s, "--json", "queue"],
    ] {
        let o = ctl_into_closed_pipe(args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(stderr(&o), "", "quiet");
    }
    // The README's form, through a shell.
    let o = Command::new("bash")
        .args([
            "-c",
            r#""$0" --socket "$1" queue | head -1; exit "${PIPESTATUS[0]}""#,
            env!("CARGO_BIN_EXE_mailproxyctl"),
            s,
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 1);
    let o = ctl(&["--socket", s, "--json", "queue"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v[0]["recipient"], "bob@provider-1");
    assert!(v[0]["size"].as_u64().unwrap() > 5);
    let id = v[0]["id"].as_u64().unwrap().to_string();

    // cancel: removed; again, the daemon refuses (exit 1, code 554).
    let o = ctl(&["--socket", s, "cancel", "alice@provider-0", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    let o = ctl(&["--socket", s, "--json", "cancel", "alice@provider-0", &id]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["code"], 554);
    assert!(stderr(&o).contains("no queue entry"), "{}", stderr(&o));
    let o = ctl(&["--socket", s, "queue"]);
    assert_eq!(stdout(&o), "the send queue is empty");
    assert_eq!(ctl(&["--socket", s, "--json", "queue"]).stdout, b"[]\n");

    // The follower printed the cancellation event and the log line as JSON.
    let event = wait_line(&follow_out, "the cancelled event", |l| {
        l.contains("\"cancelled\"")
    });
    let v: serde_json::Value = serde_json::from_str(&event).unwrap();
    assert_eq!(
        (v["type"].as_str(), v["account"].as_str()),
        (Some("event"), Some("alice@provider-0"))
    );
    assert_eq!(v["id"].to_string(), id);
    let log = wait_line(&follow_out, "the cancel log line", |l| {
        l.contains("queue entry cancelled")
    });
    let v: serde_json::Value = serde_json::from_str(&log).unwrap();
    assert_eq!(
        (v["type"].as_str(), v["level"].as_str()),
        (Some("log"), Some("info"))
    );
    // Ctrl-C ends it cleanly.
    let killed = Command::new("kill")
        .args(["-INT", &follower.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(follower.wait().unwrap().code(), Some(0));

    // logs --for: human lines, ends by itself.
    let o = ctl(&["--socket", s, "logs", "--level", "off", "--for", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // inbox: the sender key, never the contents.
    let o = ctl(&["--socket", s, "inbox"]);
    let out = stdout(&o);
    assert!(
        out.contains(&sender) && out.contains("2026-11-18 11:06:40"),
        "{out}"
    );
    assert!(!out.contains("private"), "{out}");
    let o = ctl(&["--socket", s, "--json", "inbox"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (v[0]["sender"].as_str(), v[0]["arrived"].as_u64()),
        (Some(sender.as_str()), Some(1_795_000_000))
    );

    // shutdown: the daemon stops (Running's drop checks it exited cleanly).
    let o = ctl(&["--socket", s, "shutdown"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "mailproxyd is shutting down");
    let start = Instant::now();
    while d.socket.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "daemon did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = ctl(&["--socket", s, "status"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
}
