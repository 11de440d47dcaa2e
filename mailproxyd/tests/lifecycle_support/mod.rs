//! Helpers for tests that run the real `mailproxyd` binary in a temp dir.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Upper bound for every wait; generous for a loaded CI machine.
pub const TIMEOUT: Duration = Duration::from_secs(60);

pub const AUTHORITY_KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

/// Polls `cond` until it holds or [`TIMEOUT`] passes.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Async version of [`wait_until`] for conditions that need the socket.
pub async fn wait_until_async<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A temp dir with a config for one account and management enabled.
pub struct Setup {
    pub tmp: tempfile::TempDir,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub socket: PathBuf,
}

impl Setup {
    pub fn new() -> Setup {
        Setup::with_extra("")
    }

    /// `extra` is appended to the config (more sections).
    pub fn with_extra(extra: &str) -> Setup {
        let tmp = tempfile::Builder::new().prefix("mp").tempdir().unwrap();
        let data_dir = tmp.path().join("data");
        let socket = data_dir.join("management_sock");
        let config = tmp.path().join("mailproxyd.toml");
        let text = format!(
            "[Proxy]\nDataDir = \"{}\"\nNoLaunchListeners = true\n\
             [Logging]\nFile = \"mailproxyd.log\"\nLevel = \"DEBUG\"\n\
             [NonvotingAuthority.Test]\nAddress = \"127.0.0.1:62472\"\nPublicKey = \"{AUTHORITY_KEY}\"\n\
             [[Account]]\nUser = \"Alice\"\nProvider = \"provider-0\"\nAuthority = \"Test\"\n\
             [Management]\nEnable = true\n{extra}",
            data_dir.display()
        );
        fs::write(&config, text).unwrap();
        Setup {
            tmp,
            config,
            data_dir,
            socket,
        }
    }

    pub fn recipient_dir(&self) -> PathBuf {
        self.data_dir.join("recipients")
    }

    /// Creates DataDir and RecipientDir (0700) before the daemon does.
    pub fn make_dirs(&self) {
        for d in [&self.data_dir, &self.recipient_dir()] {
            fs::create_dir_all(d).unwrap();
            fs::set_permissions(d, fs::Permissions::from_mode(0o700)).unwrap();
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.data_dir.join("mailproxyd.log")).unwrap_or_default()
    }

    /// Starts the daemon (does not wait for the socket).
    pub fn spawn(&self) -> Daemon {
        let stderr = self.tmp.path().join(format!("stderr-{}", rand_suffix()));
        let child = Command::new(env!("CARGO_BIN_EXE_mailproxyd"))
            .arg("-f")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Daemon {
            child: Some(child),
            stderr,
        }
    }

    /// Starts the daemon and waits until its socket accepts connections.
    pub fn start(&self) -> Daemon {
        let mut daemon = self.spawn();
        let socket = self.socket.clone();
        wait_until("the management socket", || {
            if let Some(status) = daemon.try_status() {
                panic!("mailproxyd exited early ({status}): {}", daemon.stderr());
            }
            std::os::unix::net::UnixStream::connect(&socket).is_ok()
        });
        daemon
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A running daemon; killed on drop if still running.
pub struct Daemon {
    child: Option<Child>,
    stderr: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child process.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().unwrap().try_wait().unwrap()
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait(&mut self) -> ExitStatus {
        let mut status = None;
        wait_until("mailproxyd to exit", || {
            status = self.try_status();
            status.is_some()
        });
        status.unwrap()
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Runs `mailproxyd -g -f config` (keys and passwords); panics unless it
/// succeeds; returns its standard output.
pub fn generate(config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mailproxyd"))
        .args(["-g", "-f"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Sends one request line to the running daemon's management socket and
/// returns the reply line (without its CRLF).
pub fn mgmt_line(socket: &Path, request: &str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut lines = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    assert!(line.starts_with("220 "), "{line}");
    (&stream)
        .write_all(format!("{request}\r\nQUIT\r\n").as_bytes())
        .unwrap();
    line.clear();
    lines.read_line(&mut line).unwrap();
    line.trim_end().to_owned()
}

/// The generated SMTP/POP3 password of `account`, asked of the running
/// daemon over its management socket (`PASSWORD`, `RESET` with `reset`).
pub fn password(socket: &Path, account: &str, reset: bool) -> String {
    let reset = if reset { " RESET" } else { "" };
    let line = mgmt_line(socket, &format!("PASSWORD {account}{reset}"));
    let status = mailproxy_proto::Status::parse_line(&line).expect("a status line");
    assert_eq!(status.code.0, 250, "PASSWORD {account}: {line}");
    status.text
}

/// Writes a recipient PEM file as an operator would.
pub fn write_recipient(dir: &Path, name: &str, key: &[u8; 32]) {
    let pem = mailproxyd::keys::encode_pem(mailproxyd::keys::PUBLIC_PEM, key);
    fs::write(dir.join(name), pem).unwrap();
}
