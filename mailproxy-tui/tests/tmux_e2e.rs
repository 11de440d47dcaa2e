//! End to end: the real mailproxy-tui binary under tmux against a real
//! mailproxyd (no network: its authority is unreachable). Adds a recipient
//! by typing, checks the daemon has it, survives a daemon restart, quits.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Upper bound for every wait (a loaded CI machine).
const TIMEOUT: Duration = Duration::from_secs(60);

const AUTHORITY_KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

/// The mailproxyd binary next to this test's target directory.
fn mailproxyd_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/tmux_e2e-<hash> -> target/<profile>/mailproxyd
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("mailproxyd");
    assert!(
        bin.exists(),
        "{} is missing: run cargo build -p mailproxyd first",
        bin.display()
    );
    bin
}

/// A tmux server of our own (`tmux -L`), killed on drop.
struct Tmux {
    socket_name: String,
}

impl Tmux {
    fn new() -> Tmux {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Tmux {
            socket_name: format!("mptui-{}-{nanos}", std::process::id()),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new("tmux")
            .args(["-L", &self.socket_name, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux is not installed (scripts/install-test-deps installs it)");
        assert!(
            out.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn send(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "tui"];
        args.extend(keys);
        self.run(&args);
    }

    fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-t", "tui", "-l", text]);
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "tui"]).stdout).into_owned()
    }

    /// Waits until the screen satisfies `cond`; panics with the screen.
    fn wait_for(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if cond(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "timed out waiting for {what}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket_name, "kill-server"])
            .stderr(Stdio::null())
            .status();
    }
}

/// A running daemon, killed on drop.
struct Daemon(Child);

impl Daemon {
    fn start(config: &Path, socket: &Path, stderr: &Path) -> Daemon {
        let child = Command::new(mailproxyd_binary())
            .arg("-f")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(stderr).unwrap())
            .spawn()
            .unwrap();
        let mut daemon = Daemon(child);
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            if let Some(status) = daemon.0.try_wait().unwrap() {
                panic!(
                    "mailproxyd exited early ({status}): {}",
                    fs::read_to_string(stderr).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "mailproxyd did not open its socket"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    /// SIGTERM, then waits for the exit.
    fn stop(mut self) {
        let status = Command::new("kill")
            .arg(self.0.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let start = Instant::now();
        while self.0.try_wait().unwrap().is_none() {
            assert!(start.elapsed() < TIMEOUT, "mailproxyd did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn daemon_key(socket: &Path, address: &str) -> Result<[u8; 32], mailproxy_proto::ClientError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = mailproxy_proto::Client::connect(socket).await?;
        client.get_recipient(address).await
    })
}

#[test]
fn add_recipient_in_the_tui_against_a_real_daemon() {
    let tmp = tempfile::Builder::new().prefix("mptui").tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    for d in [data_dir.clone(), data_dir.join("recipients")] {
        fs::create_dir_all(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
    }
    let socket = data_dir.join("management_sock");
    let config = tmp.path().join("mailproxyd.toml");
    fs::write(
        &config,
        format!(
            "[Proxy]\nDataDir = \"{}\"\nNoLaunchListeners = true\n\
             [Logging]\nFile = \"mailproxyd.log\"\nLevel = \"DEBUG\"\n\
             [NonvotingAuthority.Test]\nAddress = \"127.0.0.1:62472\"\nPublicKey = \"{AUTHORITY_KEY}\"\n\
             [[Account]]\nUser = \"Alice\"\nProvider = \"provider-0\"\nAuthority = \"Test\"\n\
             [Management]\nEnable = true\n",
            data_dir.display()
        ),
    )
    .unwrap();
    let stderr = tmp.path().join("mailproxyd.stderr");
    let daemon = Daemon::start(&config, &socket, &stderr);

    let tmux = Tmux::new();
    // Found through --config, as a user would; the shell line reports the
    // exit status so a crash is visible on the screen.
    let command = format!(
        "'{}' --config '{}'; echo TUI-EXITED $?; sleep 60",
        env!("CARGO_BIN_EXE_mailproxy-tui"),
        config.display()
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "tui",
        "-x",
        "120",
        "-y",
        "40",
        &command,
    ]);
    let screen = tmux.wait_for("the dashboard with the account", |s| {
        s.contains("1 Accounts") && s.contains("alice@provider-0")
    });
    assert!(screen.contains("mailproxyd"), "{screen}");
    // Until the daemon serves protocol 2, it says so instead of failing.
    tmux.wait_for("account status or the older-daemon note", |s| {
        s.contains("daemon does not support STATUS (old version?)")
            || ["up", "connecting", "down"].iter().any(|w| {
                s.lines()
                    .any(|l| l.contains("alice@provider-0") && l.contains(w))
            })
    });

    // Add a recipient: the key is validated as it is typed.
    let key: [u8; 32] = std::array::from_fn(|i| i as u8 + 1);
    let hex_key: String = key.iter().map(|b| format!("{b:02x}")).collect();
    tmux.send(&["a"]);
    tmux.wait_for("the editor", |s| s.contains("Add recipient"));
    tmux.type_text("bob@provider-1");
    tmux.send(&["Tab"]);
    tmux.type_text(&hex_key[..10]);
    tmux.wait_for("the live validation", |s| {
        s.contains("invalid key: key is 5 bytes, expected 32")
    });
    tmux.type_text(&hex_key[10..]);
    tmux.wait_for("the key accepted", |s| s.contains("key ok (32 bytes)"));
    tmux.send(&["Enter"]);
    tmux.wait_for("the recipient in the list", |s| {
        !s.contains("Add recipient")
            && s.lines()
                .any(|l| l.contains("bob@provider-1") && l.contains("AQIDBAUGBwg"))
    });
    assert_eq!(daemon_key(&socket, "bob@provider-1").unwrap(), key);

    // The daemon stops: the banner says so; it comes back: reconnected.
    daemon.stop();
    tmux.wait_for("the disconnected banner", |s| {
        s.contains("daemon not running / connection lost -- retrying")
    });
    let _daemon = Daemon::start(&config, &socket, &stderr);
    tmux.wait_for("reconnection", |s| {
        !s.contains("connection lost") && s.contains("bob@provider-1")
    });

    // Remove it again through the confirm dialog.
    tmux.send(&["2", "d"]);
    tmux.wait_for("the confirm dialog", |s| {
        s.contains("Remove recipient bob@provider-1")
    });
    tmux.send(&["y"]);
    tmux.wait_for("the recipient gone", |s| {
        s.contains("no recipients -- press a to add one")
    });
    assert!(daemon_key(&socket, "bob@provider-1").is_err());

    // Resizing to 80x24 lays the dashboard out again.
    tmux.run(&["resize-window", "-t", "tui", "-x", "80", "-y", "24"]);
    tmux.wait_for("the 80x24 layout", |s| {
        s.lines().count() == 24
            && s.lines().all(|l| l.chars().count() <= 80)
            && s.lines()
                .any(|l| l.chars().count() == 80 && l.contains("2 Recipients"))
            && s.contains("5 Log")
    });

    // q quits cleanly and leaves the alternate screen.
    tmux.send(&["q"]);
    let screen = tmux.wait_for("the exit", |s| s.contains("TUI-EXITED"));
    assert!(screen.contains("TUI-EXITED 0"), "{screen}");
    assert!(
        !screen.contains("Accounts") && !screen.contains('│'),
        "terminal restored:\n{screen}"
    );
}

#[test]
fn no_daemon_banner_and_sigterm_restores_the_terminal() {
    let tmp = tempfile::Builder::new().prefix("mptui").tempdir().unwrap();
    let socket = tmp.path().join("no_daemon_sock");
    let tmux = Tmux::new();
    let command = format!(
        "'{}' --socket '{}'; echo TUI-EXITED $?; sleep 60",
        env!("CARGO_BIN_EXE_mailproxy-tui"),
        socket.display()
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "tui",
        "-x",
        "80",
        "-y",
        "24",
        &command,
    ]);
    let screen = tmux.wait_for("the banner", |s| {
        s.contains("daemon not running / connection lost -- retrying")
    });
    assert!(screen.contains("no management socket at"), "{screen}");
    // The shell started by tmux has one child: the dashboard.
    let shell = String::from_utf8(
        tmux.run(&["display-message", "-p", "-t", "tui", "#{pane_pid}"])
            .stdout,
    )
    .unwrap();
    let shell = shell.trim();
    let children = fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap();
    let tui: Vec<&str> = children.split_whitespace().collect();
    assert_eq!(tui.len(), 1, "children of the pane's shell: {children:?}");
    let status = Command::new("kill").arg(tui[0]).status().unwrap();
    assert!(status.success());
    let screen = tmux.wait_for("the exit", |s| s.contains("TUI-EXITED"));
    assert!(screen.contains("TUI-EXITED 0"), "{screen}");
    assert!(
        !screen.contains("daemon not running") && !screen.contains('│'),
        "terminal restored:\n{screen}"
    );
}
