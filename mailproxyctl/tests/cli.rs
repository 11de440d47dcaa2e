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
        let data_dir = tmp.path().join("data");
        let text = format!(
            "[Proxy]\nDataDir = \"{}\"\nNoLaunchListeners = true\n[Logging]\nDisable = true\n\
             [NonvotingAuthority.Test]\nAddress = \"127.0.0.1:1\"\nPublicKey = \"{AUTHORITY_KEY}\"\n\
             [[Account]]\nUser = \"alice\"\nProvider = \"provider-0\"\n[Management]\nEnable = true\n",
            data_dir.display()
        );
        let config_file = tmp.path().join("mailproxyd.toml");
        std::fs::write(&config_file, &text).unwrap();
        let config = Config::parse(&text).unwrap();
        let socket = config.management.path.clone();
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
        "--json",
        "--socket",
        "--config",
        "Exit codes",
    ] {
        assert!(help.contains(word), "--help lacks {word}");
    }
}
