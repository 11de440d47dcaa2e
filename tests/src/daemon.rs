//! One real `mailproxyd` child process: its config file, DataDir, listeners
//! on free ports, key and password generation (`-g`), start, SIGKILL, restart.

use std::fmt::Write as _;
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bins;
use crate::mail::Login;

/// How long a daemon may take to open its listeners (loaded machine).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// `[Debug]` knobs and other per-daemon settings, in seconds.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub polling_interval: u64,
    pub retransmit_slack: u64,
    pub bounce_queue_lifetime: Option<u64>,
    pub urgent_queue_lifetime: Option<u64>,
    pub send_decoy_traffic: bool,
    /// `[Logging] Level`.
    pub log_level: &'static str,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            polling_interval: 1,
            retransmit_slack: 3,
            bounce_queue_lifetime: None,
            urgent_queue_lifetime: None,
            send_decoy_traffic: false,
            log_level: "DEBUG",
        }
    }
}

/// One account of a daemon, its public keys and its SMTP/POP3 password
/// (from `mailproxyd -g`).
#[derive(Debug, Clone)]
pub struct AccountKeys {
    /// `user@provider`.
    pub id: String,
    pub user: String,
    pub provider: String,
    /// InsecureKeyDiscovery for this account.
    pub key_discovery: bool,
    pub link: [u8; 32],
    pub identity: [u8; 32],
    /// The generated SMTP/POP3 password.
    pub password: String,
}

/// A mailproxyd child process and its files.
pub struct Daemon {
    /// Directory holding the config and DataDir.
    pub dir: PathBuf,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub smtp: SocketAddr,
    pub pop3: SocketAddr,
    pub imap: SocketAddr,
    /// The management socket.
    pub socket: PathBuf,
    pub accounts: Vec<AccountKeys>,
    options: DaemonOptions,
    authority: (String, String),
    child: Option<Child>,
    /// How many times the daemon was started.
    pub starts: u32,
}

fn free_addr() -> SocketAddr {
    testnet::ports::reserve().expect("a free port")
}

fn parse_hex_key(s: &str) -> [u8; 32] {
    hex::decode(s)
        .ok()
        .and_then(|v| v.try_into().ok())
        .unwrap_or_else(|| panic!("not a hex key: {s:?}"))
}

impl Daemon {
    /// Prepares a daemon in `dir` for `accounts` (`(user, provider, key
    /// discovery)`), generating their keys with `mailproxyd -g`. Not started.
    pub fn new(
        dir: &Path,
        accounts: &[(&str, &str, bool)],
        options: DaemonOptions,
        authority: (String, String),
    ) -> Daemon {
        fs::create_dir_all(dir).expect("daemon dir");
        let mut d = Daemon {
            dir: dir.to_path_buf(),
            config: dir.join("mailproxyd.toml"),
            data_dir: dir.join("data"),
            smtp: free_addr(),
            pop3: free_addr(),
            imap: free_addr(),
            socket: dir.join("data").join("management_sock"),
            accounts: accounts
                .iter()
                .map(|(u, p, kd)| AccountKeys {
                    id: format!("{u}@{p}"),
                    user: u.to_string(),
                    provider: p.to_string(),
                    key_discovery: *kd,
                    link: [0; 32],
                    identity: [0; 32],
                    password: String::new(),
                })
                .collect(),
            options,
            authority,
            child: None,
            starts: 0,
        };
        d.write_config(&[]);
        d.generate_keys();
        d
    }

    /// Writes the config with `recipients` (`(address, identity key)`).
    pub fn write_config(&self, recipients: &[(String, [u8; 32])]) {
        let o = &self.options;
        let mut s = String::new();
        let _ = write!(
            s,
            "[Proxy]\nSMTPAddress = \"{}\"\nPOP3Address = \"{}\"\nIMAPAddress = \"{}\"\nDataDir = \"{}\"\n\n\
             [Logging]\nFile = \"mailproxyd.log\"\nLevel = \"{}\"\n\n\
             [NonvotingAuthority.testnet]\nAddress = \"{}\"\nPublicKey = \"{}\"\n\n",
            self.smtp,
            self.pop3,
            self.imap,
            self.data_dir.display(),
            o.log_level,
            self.authority.0,
            self.authority.1
        );
        for a in &self.accounts {
            let _ = write!(
                s,
                "[[Account]]\nUser = \"{}\"\nProvider = \"{}\"\nAuthority = \"testnet\"\nInsecureKeyDiscovery = {}\n\n",
                a.user, a.provider, a.key_discovery
            );
        }
        let _ = write!(
            s,
            "[Management]\nEnable = true\n\n[Debug]\nPollingInterval = {}\nRetransmitSlack = {}\nSendDecoyTraffic = {}\n",
            o.polling_interval, o.retransmit_slack, o.send_decoy_traffic
        );
        if let Some(b) = o.bounce_queue_lifetime {
            let _ = writeln!(s, "BounceQueueLifetime = {b}");
        }
        if let Some(u) = o.urgent_queue_lifetime {
            let _ = writeln!(s, "UrgentQueueLifetime = {u}");
        }
        if !recipients.is_empty() {
            s.push_str("\n[Recipients]\n");
            for (addr, key) in recipients {
                let _ = writeln!(s, "\"{addr}\" = \"{}\"", hex::encode(key));
            }
        }
        fs::write(&self.config, s).expect("writing the daemon config");
    }

    /// Runs `mailproxyd -g` and records every account's public keys and
    /// password.
    fn generate_keys(&mut self) {
        let out = Command::new(bins::binary("mailproxyd"))
            .arg("-f")
            .arg(&self.config)
            .arg("-g")
            .output()
            .expect("running mailproxyd -g");
        assert!(
            out.status.success(),
            "mailproxyd -g failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        for a in &mut self.accounts {
            let mut link = None;
            let mut identity = None;
            let mut password = None;
            let mut current = String::new();
            for line in text.lines() {
                if let Some(id) = line.strip_prefix("account ") {
                    current = id.to_owned();
                }
                let w: Vec<&str> = line.split_whitespace().collect();
                match w.as_slice() {
                    ["password", .., pw] if current == a.id => password = Some(pw.to_string()),
                    ["ADD_USER", u, k] if u.eq_ignore_ascii_case(&a.user) => {
                        link = Some(parse_hex_key(k))
                    }
                    ["SET_USER_IDENTITY", u, k] if u.eq_ignore_ascii_case(&a.user) => {
                        identity = Some(parse_hex_key(k))
                    }
                    _ => {}
                }
            }
            a.link = link.unwrap_or_else(|| panic!("no ADD_USER for {} in:\n{text}", a.id));
            a.identity =
                identity.unwrap_or_else(|| panic!("no SET_USER_IDENTITY for {} in:\n{text}", a.id));
            a.password = password.unwrap_or_else(|| panic!("no password for {} in:\n{text}", a.id));
        }
    }

    /// Starts the daemon and waits until its SMTP and POP3 listeners accept.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        let log = fs::File::create(self.dir.join(format!("stderr.{}.log", self.starts)))
            .expect("stderr log");
        let child = Command::new(bins::binary("mailproxyd"))
            .arg("-f")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawning mailproxyd");
        self.child = Some(child);
        self.starts += 1;
        let start = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "mailproxyd exited at start ({status}):\n{}",
                    self.log_tail(40)
                );
            }
            if TcpStream::connect(self.smtp).is_ok()
                && TcpStream::connect(self.pop3).is_ok()
                && TcpStream::connect(self.imap).is_ok()
            {
                return;
            }
            assert!(
                start.elapsed() < START_TIMEOUT,
                "mailproxyd did not open its listeners within {START_TIMEOUT:?}:\n{}",
                self.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The running daemon's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the daemon runs.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (SIGKILL after 30 s); returns whether it exited
    /// cleanly with status 0.
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// The account `id`'s keys.
    pub fn account(&self, id: &str) -> &AccountKeys {
        self.accounts
            .iter()
            .find(|a| a.id == id)
            .unwrap_or_else(|| panic!("no account {id} in this daemon"))
    }

    /// The SMTP and POP3 login of account `id`.
    pub fn login(&self, id: &str) -> Login {
        Login {
            user: id.to_owned(),
            password: self.account(id).password.clone(),
        }
    }

    /// The last `n` lines of the daemon's log file and stderr.
    pub fn log_tail(&self, n: usize) -> String {
        let mut out = String::new();
        let mut paths = vec![self.data_dir.join("mailproxyd.log")];
        if self.starts > 0 {
            paths.push(self.dir.join(format!("stderr.{}.log", self.starts - 1)));
        }
        for p in paths {
            let text = fs::read_to_string(&p).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let _ = writeln!(out, "--- {} (last {n} lines)", p.display());
            for l in &lines[lines.len().saturating_sub(n)..] {
                let _ = writeln!(out, "{l}");
            }
        }
        out
    }

    /// Runs `mailproxyctl --json` against this daemon's socket.
    pub fn ctl(&self, args: &[&str]) -> (bool, serde_json::Value) {
        let out = Command::new(bins::binary("mailproxyctl"))
            .arg("--socket")
            .arg(&self.socket)
            .arg("--json")
            .args(args)
            .output()
            .expect("running mailproxyctl");
        let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        (out.status.success(), v)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}
