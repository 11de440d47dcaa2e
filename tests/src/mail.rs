//! Mail: building test messages, the stock clients (swaks, curl, Python
//! poplib) and small native SMTP/POP3 clients for polling and benchmarks.
//! Every client logs in: the daemons require each account's password.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;

/// An account's SMTP and POP3 login: its id (also the envelope sender) and
/// its generated password (from `mailproxyd -g`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub user: String,
    pub password: String,
}

impl Login {
    /// `user:password`, as curl's `--user` takes it.
    fn curl_user(&self) -> String {
        format!("{}:{}", self.user, self.password)
    }
}

/// A CRLF message with the usual headers (a Message-ID, so the daemon adds
/// only `Received:`) and `body` (lines separated by CRLF).
pub fn message(from: &str, to: &[&str], subject: &str, body: &str) -> Vec<u8> {
    let id = format!(
        "<{}.{}@e2e.test>",
        subject.replace(' ', "-"),
        std::process::id()
    );
    let mut m = format!(
        "From: <{from}>\r\nTo: {}\r\nSubject: {subject}\r\nMessage-ID: {id}\r\nDate: Tue, 24 Nov 2026 12:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
        to.iter().map(|t| format!("<{t}>")).collect::<Vec<_>>().join(", ")
    );
    for line in body.lines() {
        m.push_str(line);
        m.push_str("\r\n");
    }
    m.into_bytes()
}

/// A deterministic body of about `len` bytes: 76-character lines of
/// pseudo-random base64 text, with a leading-dot line to exercise
/// dot-stuffing.
pub fn big_body(len: usize, seed: u64) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut raw = Vec::with_capacity(len * 3 / 4 + 64);
    while raw.len() < len * 3 / 4 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        raw.extend_from_slice(&x.to_le_bytes());
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
    let mut out = String::from(".a line starting with a dot\n");
    for chunk in b64.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).expect("ascii"));
        out.push('\n');
    }
    out
}

/// Splits what we add on delivery off a delivered message: the leading
/// `X-Katzenpost-Sender:` (its base64 key decoded) and `Received:` fields.
/// Returns the sender key and the rest, which should equal what was sent.
pub fn strip_added(delivered: &[u8]) -> (Option<Vec<u8>>, &[u8]) {
    let mut rest = delivered;
    let mut sender = None;
    loop {
        let lower: Vec<u8> = rest
            .iter()
            .take(20)
            .map(|b| b.to_ascii_lowercase())
            .collect();
        let is_sender = lower.starts_with(b"x-katzenpost-sender:");
        let is_received = lower.starts_with(b"received:");
        if !is_sender && !is_received {
            return (sender, rest);
        }
        // The field runs to the first CRLF not followed by whitespace.
        let mut end = 0;
        loop {
            let Some(i) = rest[end..].windows(2).position(|w| w == b"\r\n") else {
                return (sender, rest);
            };
            end += i + 2;
            if !matches!(rest.get(end), Some(b' ' | b'\t')) {
                break;
            }
        }
        if is_sender {
            let value = std::str::from_utf8(&rest[20..end]).unwrap_or("").trim();
            sender = base64::engine::general_purpose::STANDARD.decode(value).ok();
        }
        rest = &rest[end..];
    }
}

/// Sends `msg` as `from` with swaks (AUTH PLAIN, DATA from a file); returns
/// swaks's transcript.
///
/// swaks always sends CRLF before the terminating dot, even when the data
/// already ends with CRLF (checked with swaks 20201014 against a capturing
/// server); the file therefore holds `msg` without its final CRLF, so the
/// server receives exactly `msg`.
pub fn swaks_send(smtp: SocketAddr, from: &Login, to: &[&str], msg: &[u8], tmp: &Path) -> String {
    let file = tmp.join(format!("swaks-{}.eml", rand_suffix()));
    std::fs::write(&file, msg.strip_suffix(b"\r\n").unwrap_or(msg)).expect("writing the message");
    let out = Command::new("swaks")
        .args([
            "--server",
            &smtp.ip().to_string(),
            "--port",
            &smtp.port().to_string(),
        ])
        .args(swaks_auth(from))
        .args(["--from", &from.user, "--to", &to.join(",")])
        .arg("--data")
        .arg(format!("@{}", file.display()))
        .args(["--suppress-data", "--timeout", "120"])
        .output()
        .expect("swaks is installed (scripts/install-test-deps)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "swaks failed ({}):\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// swaks's options to log in as `login` with AUTH PLAIN.
fn swaks_auth(login: &Login) -> [&str; 6] {
    [
        "--auth",
        "PLAIN",
        "--auth-user",
        &login.user,
        "--auth-password",
        &login.password,
    ]
}

/// Runs swaks (logged in as `from`) up to RCPT and returns its transcript
/// (to check a reply code).
pub fn swaks_rcpt_only(smtp: SocketAddr, from: &Login, to: &str) -> String {
    let out = Command::new("swaks")
        .args([
            "--server",
            &smtp.ip().to_string(),
            "--port",
            &smtp.port().to_string(),
        ])
        .args(swaks_auth(from))
        .args(["--from", &from.user, "--to", to, "--quit-after", "RCPT"])
        .output()
        .expect("swaks is installed (scripts/install-test-deps)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sends `msg` as `from` with `curl smtp://` (`--user`, one `--mail-rcpt`
/// per recipient).
pub fn curl_send(smtp: SocketAddr, from: &Login, to: &[&str], msg: &[u8], tmp: &Path) {
    let file = tmp.join(format!("curl-{}.eml", rand_suffix()));
    std::fs::write(&file, msg).expect("writing the message");
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "120",
        "--url",
        &format!("smtp://{smtp}"),
    ])
    .args(["--user", &from.curl_user(), "--mail-from", &from.user]);
    for t in to {
        cmd.args(["--mail-rcpt", t]);
    }
    let out = cmd
        .arg("--upload-file")
        .arg(&file)
        .output()
        .expect("curl is installed");
    assert!(
        out.status.success(),
        "curl smtp failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Retrieves message `n` of `user`'s maildrop with `curl pop3://`.
pub fn curl_retr(pop3: SocketAddr, user: &Login, n: usize) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "120", &format!("pop3://{pop3}/{n}")])
        .args(["--user", &user.curl_user()])
        .output()
        .expect("curl is installed");
    assert!(
        out.status.success(),
        "curl pop3 RETR {n} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Retrieves every message of `user`'s maildrop with Python's poplib
/// (USER/PASS, STAT, RETR each); the messages as poplib returns them,
/// lines joined with CRLF plus a final CRLF.
pub fn poplib_retr_all(pop3: SocketAddr, user: &Login) -> Vec<Vec<u8>> {
    let script = r#"
import base64, json, poplib, sys
p = poplib.POP3(sys.argv[1], int(sys.argv[2]), timeout=60)
p.user(sys.argv[3]); p.pass_(sys.argv[4])
count, _ = p.stat()
out = []
for i in range(1, count + 1):
    _, lines, _ = p.retr(i)
    out.append(base64.b64encode(b''.join(l + b'\r\n' for l in lines)).decode())
p.quit()
print(json.dumps(out))
"#;
    let out = Command::new("python3")
        .args([
            "-c",
            script,
            &pop3.ip().to_string(),
            &pop3.port().to_string(),
            &user.user,
            &user.password,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("python3 is installed");
    assert!(
        out.status.success(),
        "poplib failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Vec<String> = serde_json::from_slice(&out.stdout).expect("poplib output is JSON");
    list.iter()
        .map(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .expect("base64")
        })
        .collect()
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Error of the native clients.
pub type IoResult<T> = std::io::Result<T>;

fn proto_err(what: String) -> std::io::Error {
    std::io::Error::other(what)
}

/// A minimal POP3 client (USER/PASS), for polling and checks.
pub struct Pop3 {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Pop3 {
    /// Connects and logs in as `user` (USER/PASS).
    pub fn login(addr: SocketAddr, user: &Login) -> IoResult<Pop3> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut p = Pop3 {
            r: BufReader::new(s.try_clone()?),
            w: s,
        };
        p.reply()?;
        p.cmd(&format!("USER {}", user.user))?;
        p.cmd(&format!("PASS {}", user.password))?;
        Ok(p)
    }

    fn reply(&mut self) -> IoResult<String> {
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(proto_err("POP3 connection closed".into()));
        }
        if !line.starts_with("+OK") {
            return Err(proto_err(format!("POP3: {}", line.trim_end())));
        }
        Ok(line)
    }

    fn cmd(&mut self, c: &str) -> IoResult<String> {
        self.w.write_all(format!("{c}\r\n").as_bytes())?;
        self.reply()
    }

    fn multiline(&mut self) -> IoResult<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let mut line = Vec::new();
            if self.r.read_until(b'\n', &mut line)? == 0 {
                return Err(proto_err("POP3 connection closed in a listing".into()));
            }
            if line == b".\r\n" {
                return Ok(out);
            }
            let start = usize::from(line.starts_with(b".."));
            out.extend_from_slice(&line[start..]);
        }
    }

    /// Number of messages.
    pub fn count(&mut self) -> IoResult<usize> {
        let line = self.cmd("STAT")?;
        line.split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| proto_err(format!("STAT: {line}")))
    }

    /// Message `n` (1-based), dot-unstuffed.
    pub fn retr(&mut self, n: usize) -> IoResult<Vec<u8>> {
        self.cmd(&format!("RETR {n}"))?;
        self.multiline()
    }

    /// Every message.
    pub fn retr_all(&mut self) -> IoResult<Vec<Vec<u8>>> {
        let n = self.count()?;
        (1..=n).map(|i| self.retr(i)).collect()
    }

    /// QUIT (commits deletions).
    pub fn quit(mut self) -> IoResult<()> {
        self.cmd("QUIT").map(|_| ())
    }
}

/// Messages in `user`'s maildrop now (0 when POP3 is unreachable).
pub fn pop3_count(addr: SocketAddr, user: &Login) -> usize {
    Pop3::login(addr, user)
        .and_then(|mut p| {
            let n = p.count()?;
            let _ = p.quit();
            Ok(n)
        })
        .unwrap_or(0)
}

/// Every message in `user`'s maildrop (native client).
pub fn pop3_all(addr: SocketAddr, user: &Login) -> Vec<Vec<u8>> {
    let mut p = Pop3::login(addr, user).expect("POP3 login");
    let all = p.retr_all().expect("POP3 RETR");
    let _ = p.quit();
    all
}

/// A minimal SMTP client for benchmarks and bulk queueing: one connection,
/// any number of transactions.
pub struct Smtp {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Smtp {
    /// Connects, says EHLO and logs in as `login` (AUTH PLAIN).
    pub fn connect(addr: SocketAddr, login: &Login) -> IoResult<Smtp> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        let mut c = Smtp {
            r: BufReader::new(s.try_clone()?),
            w: s,
        };
        c.reply(220)?;
        c.cmd("EHLO e2e.test", 250)?;
        let plain = base64::engine::general_purpose::STANDARD
            .encode(format!("\0{}\0{}", login.user, login.password));
        c.cmd(&format!("AUTH PLAIN {plain}"), 235)?;
        Ok(c)
    }

    fn reply(&mut self, want: u16) -> IoResult<String> {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line)? == 0 {
                return Err(proto_err("SMTP connection closed".into()));
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
        if !all.starts_with(&want.to_string()) {
            return Err(proto_err(format!(
                "SMTP: wanted {want}, got {}",
                all.trim_end()
            )));
        }
        Ok(all)
    }

    fn cmd(&mut self, c: &str, want: u16) -> IoResult<String> {
        self.w.write_all(format!("{c}\r\n").as_bytes())?;
        self.reply(want)
    }

    /// One transaction; returns when the final 250 has been read.
    pub fn send(&mut self, from: &str, to: &[&str], msg: &[u8]) -> IoResult<()> {
        self.cmd(&format!("MAIL FROM:<{from}>"), 250)?;
        for t in to {
            self.cmd(&format!("RCPT TO:<{t}>"), 250)?;
        }
        self.cmd("DATA", 354)?;
        let mut data = Vec::with_capacity(msg.len() + 64);
        for line in msg.split_inclusive(|&b| b == b'\n') {
            if line.starts_with(b".") {
                data.push(b'.');
            }
            data.extend_from_slice(line);
        }
        if !data.ends_with(b"\r\n") {
            data.extend_from_slice(b"\r\n");
        }
        data.extend_from_slice(b".\r\n");
        self.w.write_all(&data)?;
        self.reply(250).map(|_| ())
    }

    /// QUIT.
    pub fn quit(mut self) -> IoResult<()> {
        self.cmd("QUIT", 221).map(|_| ())
    }
}
