//! The stock IMAP clients, driven as the tests use them (see
//! ../shared/docs/mail-clients.md §8): Python imaplib (with IDLE), curl
//! `imap://`, fetchmail in IDLE, getmail6, mutt under tmux, mbsync (isync)
//! and offlineimap3. Each returns the message bytes the client wrote, so a
//! test can compare them with what was sent.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::mail::Login;

/// How long one client run may take (the machine is loaded).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// imaplib: logs in, selects `mailbox`, waits in IDLE until it holds
/// `want` messages (and, with `keyword`, until every message has it), then
/// prints a JSON list of [flags, base64 BODY.PEEK[]].
const IMAPLIB: &str = r#"
import base64, imaplib, json, re, sys, time
host, port, user, pw, mailbox, want, keyword, timeout = sys.argv[1:9]
want, timeout = int(want), float(timeout)
deadline = time.time() + timeout
M = imaplib.IMAP4(host, int(port), timeout=timeout)
M.login(user, pw)
typ, data = M.select(mailbox)
assert typ == 'OK', data
n = int(data[0])

def flags_ok():
    if keyword == '-':
        return True
    typ, data = M.fetch('1:*', '(FLAGS)')
    return all(keyword.encode() in d for d in data if isinstance(d, bytes))

def idle_once():
    global n
    tag = M._new_tag().decode()
    M.send(('%s IDLE\r\n' % tag).encode())
    line = M.readline()
    assert line.startswith(b'+'), line
    while True:
        M.sock.settimeout(max(1.0, deadline - time.time()))
        line = M.readline()
        assert line, 'closed in IDLE'
        m = re.match(rb'\* (\d+) EXISTS', line)
        if m:
            n = int(m.group(1))
        if m or b'FETCH' in line:
            break
    M.send(b'DONE\r\n')
    while True:
        line = M.readline()
        # A change reported before IDLE's completion counts too.
        m = re.match(rb'\* (\d+) EXISTS', line)
        if m:
            n = int(m.group(1))
        if line.startswith(tag.encode()):
            assert b' OK ' in line, line
            return

while n < want or (n > 0 and not flags_ok()):
    assert time.time() < deadline, 'timed out: %d of %d messages' % (n, want)
    idle_once()
out = []
typ, data = M.fetch('1:%d' % n, '(FLAGS BODY.PEEK[])')
for d in data:
    if isinstance(d, tuple):
        flags = re.search(rb'FLAGS \(([^)]*)\)', d[0]).group(1).decode()
        out.append([flags, base64.b64encode(d[1]).decode()])
M.logout()
print(json.dumps(out))
"#;

/// Starts the imaplib script (giving up after `timeout`); its output is
/// read by [`imaplib_result`].
pub fn imaplib(
    imap: SocketAddr,
    login: &Login,
    mailbox: &str,
    want: usize,
    keyword: &str,
    timeout: Duration,
) -> Child {
    Command::new("python3")
        .args(["-c", IMAPLIB])
        .arg(imap.ip().to_string())
        .arg(imap.port().to_string())
        .args([&login.user, &login.password, mailbox])
        .arg(want.to_string())
        .arg(keyword)
        .arg(timeout.as_secs().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is installed")
}

/// The (flags, message) pairs the imaplib script printed.
pub fn imaplib_result(child: Child) -> Vec<(String, Vec<u8>)> {
    let out = child.wait_with_output().expect("imaplib ran");
    assert!(
        out.status.success(),
        "imaplib failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<(String, String)> = serde_json::from_slice(&out.stdout).expect("imaplib's JSON");
    v.into_iter()
        .map(|(f, b)| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b)
                .expect("base64");
            (f, bytes)
        })
        .collect()
}

/// Message `index` of `mailbox` with `curl imap://`.
pub fn curl_fetch(imap: SocketAddr, login: &Login, mailbox: &str, index: usize) -> Vec<u8> {
    curl(imap, login, &format!("{mailbox};MAILINDEX={index}"), None)
}

/// The untagged responses to `command` run in `mailbox` (selected) with
/// `curl imap:// -X`.
pub fn curl_command(imap: SocketAddr, login: &Login, mailbox: &str, command: &str) -> String {
    String::from_utf8_lossy(&curl(imap, login, mailbox, Some(command))).into_owned()
}

fn curl(imap: SocketAddr, login: &Login, path: &str, command: Option<&str>) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60"])
        .arg(format!("imap://{imap}/{path}"))
        .args(command.map(|c| ["-X", c]).into_iter().flatten())
        .arg("--user")
        .arg(format!("{}:{}", login.user, login.password))
        .output()
        .expect("curl is installed");
    assert!(
        out.status.success(),
        "curl imap failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// fetchmail polling an INBOX over IMAP with its `idle` option: it stays
/// logged in, in IDLE, and fetches (keeping them) the messages announced
/// there; its MDA appends each message to a file. Killed on drop.
pub struct FetchmailIdle {
    child: Child,
    out: PathBuf,
    log: PathBuf,
}

impl FetchmailIdle {
    /// Starts fetchmail in the foreground, its files in `dir`.
    pub fn start(imap: SocketAddr, login: &Login, dir: &Path) -> FetchmailIdle {
        use std::os::unix::fs::PermissionsExt;
        let (out, log, rc) = (
            dir.join("fetchmail.out"),
            dir.join("fetchmail.log"),
            dir.join("fetchmailrc"),
        );
        // `invisible` is a global option: no Received header of its own,
        // so the MDA gets the server's bytes.
        std::fs::write(
            &rc,
            format!(
                "set invisible\npoll {} service {} protocol imap auth password user \"{}\" password \"{}\" sslproto '' mda 'cat >> {}' keep no stripcr idle\n",
                imap.ip(),
                imap.port(),
                login.user,
                login.password,
                out.display()
            ),
        )
        .expect("fetchmailrc");
        std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let child = Command::new("fetchmail")
            .arg("-f")
            .arg(&rc)
            .args(["-N", "--nosyslog", "-v", "--idfile"])
            .arg(dir.join("fetchmail.ids"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("fetchmail log"))
            .stderr(Stdio::from(
                std::fs::File::options()
                    .append(true)
                    .open(&log)
                    .expect("fetchmail log"),
            ))
            .spawn()
            .expect("fetchmail is installed (scripts/install-test-deps)");
        FetchmailIdle { child, out, log }
    }

    /// fetchmail's verbose log (the IMAP dialogue).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until fetchmail is in IDLE (the server's continuation logged
    /// after its IDLE command); panics with its log if it exits or
    /// `timeout` passes first.
    pub fn wait_idling(&mut self, timeout: Duration) {
        let start = Instant::now();
        loop {
            let log = self.log();
            let mut lines = log.lines();
            if lines
                .by_ref()
                .any(|l| l.starts_with("fetchmail: IMAP> ") && l.ends_with(" IDLE"))
                && lines.any(|l| l.starts_with("fetchmail: IMAP< +"))
            {
                return;
            }
            let exited = self.child.try_wait().expect("fetchmail status");
            assert!(
                exited.is_none() && start.elapsed() < timeout,
                "fetchmail is not idling (exited: {exited:?}); log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the MDA has received exactly `want` (the messages
    /// concatenated); panics with fetchmail's log if it exits or `timeout`
    /// passes first.
    pub fn wait_for_mail(&mut self, want: &[u8], timeout: Duration) {
        let start = Instant::now();
        loop {
            let got = std::fs::read(&self.out).unwrap_or_default();
            if got == want {
                return;
            }
            let exited = self.child.try_wait().expect("fetchmail status");
            assert!(
                exited.is_none() && got.len() <= want.len() && start.elapsed() < timeout,
                "fetchmail's MDA has {} of {} bytes (exited: {exited:?}); log:\n{}",
                got.len(),
                want.len(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for FetchmailIdle {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fetches `login`'s INBOX over IMAP with getmail6 into a Maildir; returns
/// the messages found there, shortest first.
pub fn getmail(imap: SocketAddr, login: &Login, dir: &Path) -> Vec<Vec<u8>> {
    let (gm, md) = (dir.join("gm"), dir.join("md"));
    for d in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(md.join(d)).expect("maildir");
    }
    std::fs::create_dir_all(&gm).expect("getmail dir");
    // As root, getmail delivers only as an unprivileged user.
    let chown = Command::new("chown")
        .args(["-R", "nobody"])
        .arg(&md)
        .status()
        .expect("chown");
    assert!(chown.success());
    std::fs::write(
        gm.join("getmailrc"),
        format!(
            "[retriever]\ntype = SimpleIMAPRetriever\nserver = {}\nport = {}\nusername = {}\npassword = {}\nmailboxes = (\"INBOX\",)\n\n[destination]\ntype = Maildir\npath = {}/\nuser = nobody\n\n[options]\nread_all = true\ndelete = false\ndelivered_to = false\nreceived = false\n",
            imap.ip(),
            imap.port(),
            login.user,
            login.password,
            md.display()
        ),
    )
    .expect("getmailrc");
    let r = Command::new("getmail")
        .arg(format!("--getmaildir={}", gm.display()))
        .arg("--rcfile=getmailrc")
        .output()
        .expect("getmail is installed (scripts/install-test-deps)");
    assert!(
        r.status.success(),
        "getmail over IMAP failed ({}): {}{}",
        r.status,
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(md.join("new"))
        .expect("maildir new")
        .map(|e| std::fs::read(e.expect("entry").path()).expect("message"))
        .collect();
    out.sort_by_key(|m| m.len());
    out
}

/// A tmux server of our own (`tmux -L`) running one command; killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Runs `script` (a shell script) in a detached 120x30 session whose
    /// pane stays (dead) after it exits, for [`Tmux::screen`].
    fn start(script: &Path, dir: &Path) -> Tmux {
        let conf = dir.join("tmux.conf");
        std::fs::write(&conf, "set -g remain-on-exit on\n").expect("tmux.conf");
        static N: AtomicU64 = AtomicU64::new(0);
        let tmux = Tmux {
            socket: format!(
                "mp-e2e-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ),
        };
        let ok = Command::new("tmux")
            .args(["-L", &tmux.socket, "-f"])
            .arg(&conf)
            .args(["new-session", "-d", "-s", "m", "-x", "120", "-y", "30"])
            .arg(format!("sh {}", script.display()))
            .status()
            .expect("tmux is installed (scripts/install-test-deps)");
        assert!(ok.success(), "tmux new-session failed");
        tmux
    }

    /// What the pane shows.
    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", "m"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stderr(Stdio::null())
            .status();
    }
}

/// Opens `login`'s INBOX with mutt (over IMAP, under tmux) and has it pipe
/// messages 1..=`count` (mailbox order) each to a file, driven by `push`
/// commands; returns what mutt piped (LF line ends: mutt's local copies).
pub fn mutt_pipe(imap: SocketAddr, login: &Login, count: usize, dir: &Path) -> Vec<Vec<u8>> {
    let dir = dir.join("mutt");
    std::fs::create_dir_all(&dir).expect("mutt dir");
    let (rc, done) = (dir.join("muttrc"), dir.join("done"));
    let out = |i: usize| dir.join(format!("message-{i}"));
    std::fs::write(
        &rc,
        format!(
            "set folder=\"imap://{imap}/\"\nset spoolfile=\"+INBOX\"\nset imap_user=\"{}\"\nset imap_pass=\"{}\"\n\
             set ssl_starttls=no\nset ssl_force_tls=no\nset sort=mailbox-order\nset wait_key=no\nset pipe_decode=no\n\
             set move=no\nset record=\"\"\nset postponed=\"\"\nset mbox=\"{}/mbox\"\nset tmpdir=\"{}\"\n",
            login.user,
            login.password,
            dir.display(),
            dir.display()
        ),
    )
    .expect("muttrc");
    let mut keys = String::from("<first-entry>");
    for i in 1..=count {
        keys.push_str(&format!(
            "<pipe-message>cat > {}<enter><next-entry>",
            out(i).display()
        ));
    }
    keys.push_str(&format!(
        "<shell-escape>touch {}<enter><quit>",
        done.display()
    ));
    let script = dir.join("mutt.sh");
    std::fs::write(
        &script,
        format!("exec mutt -n -F {} -e 'push \"{keys}\"'\n", rc.display()),
    )
    .expect("mutt.sh");
    let tmux = Tmux::start(&script, &dir);
    let start = Instant::now();
    while !done.exists() {
        assert!(
            start.elapsed() < CLIENT_TIMEOUT,
            "mutt did not pipe the messages; screen:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (1..=count)
        .map(|i| std::fs::read(out(i)).expect("mutt piped the message"))
        .collect()
}

/// The messages of a Maildir folder (`new` and `cur`), in UID order as the
/// `,U=<uid>` in the file names (mbsync, offlineimap) gives it.
fn maildir_by_uid(folder: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<(u64, PathBuf)> = ["new", "cur"]
        .iter()
        .filter_map(|d| std::fs::read_dir(folder.join(d)).ok())
        .flatten()
        .map(|e| {
            let path = e.expect("maildir entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let uid = name
                .split_once(",U=")
                .and_then(|(_, rest)| {
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    digits.parse().ok()
                })
                .unwrap_or_else(|| panic!("no UID in the Maildir file name {name}"));
            (uid, path)
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|(_, p)| std::fs::read(p).expect("maildir message"))
        .collect()
}

fn run(what: &str, cmd: &mut Command) {
    let r = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what} is installed (scripts/install-test-deps): {e}"));
    assert!(
        r.status.success(),
        "{what} failed ({}): {}{}",
        r.status,
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
}

/// mbsync (isync) syncing an account's INBOX with a Maildir folder.
pub struct Mbsync {
    rc: PathBuf,
    folder: PathBuf,
}

impl Mbsync {
    /// Configures a channel `inbox` (both ways, `Sync All`) in `dir`.
    pub fn new(imap: SocketAddr, login: &Login, dir: &Path) -> Mbsync {
        let dir = dir.join("mbsync");
        let md = dir.join("md");
        std::fs::create_dir_all(&md).expect("mbsync dir");
        let rc = dir.join("mbsyncrc");
        std::fs::write(
            &rc,
            format!(
                "IMAPAccount a\nHost {}\nPort {}\nUser \"{}\"\nPass \"{}\"\nSSLType None\nAuthMechs LOGIN\n\n\
                 IMAPStore remote\nAccount a\n\n\
                 MaildirStore local\nPath {md}/\nInbox {md}/INBOX\nSubFolders Verbatim\n\n\
                 Channel inbox\nFar :remote:\nNear :local:\nPatterns INBOX\nCreate Near\nSync All\nSyncState *\n",
                imap.ip(),
                imap.port(),
                login.user,
                login.password,
                md = md.display()
            ),
        )
        .expect("mbsyncrc");
        Mbsync {
            rc,
            folder: md.join("INBOX"),
        }
    }

    /// Runs one sync; `ops` override the configured operations (`--pull`
    /// for the server's changes only).
    pub fn sync(&self, ops: &[&str]) {
        run(
            "mbsync",
            Command::new("mbsync")
                .arg("-c")
                .arg(&self.rc)
                .arg("-q")
                .args(ops)
                .arg("inbox"),
        );
    }

    /// The Maildir folder INBOX is synced with.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// The folder's messages in UID order, [`without_tuid`].
    pub fn pulled(&self) -> Vec<Vec<u8>> {
        maildir_by_uid(&self.folder)
            .iter()
            .map(|m| without_tuid(m))
            .collect()
    }
}

/// `m` without the `X-TUID:` header field (its own tracking id) mbsync
/// inserts into each message it copies, either way; panics if it is not
/// there. For LF and CRLF messages.
pub fn without_tuid(m: &[u8]) -> Vec<u8> {
    let head = m
        .windows(2)
        .position(|w| w == b"\n\n" || w == b"\n\r")
        .unwrap_or(m.len());
    let at = m[..head]
        .windows(8)
        .position(|w| w == b"\nX-TUID:")
        .expect("mbsync's X-TUID field")
        + 1;
    let end = at + m[at..].iter().position(|&b| b == b'\n').expect("LF") + 1;
    [&m[..at], &m[end..]].concat()
}

/// Syncs `login`'s INBOX (read-only) into a Maildir with offlineimap3;
/// returns the Maildir's messages in UID order.
pub fn offlineimap(imap: SocketAddr, login: &Login, dir: &Path) -> Vec<Vec<u8>> {
    let dir = dir.join("offlineimap");
    let md = dir.join("md");
    std::fs::create_dir_all(&md).expect("offlineimap dir");
    let rc = dir.join("offlineimaprc");
    std::fs::write(
        &rc,
        format!(
            "[general]\naccounts = a\nmetadata = {}\n\n\
             [Account a]\nlocalrepository = local\nremoterepository = remote\n\n\
             [Repository local]\ntype = Maildir\nlocalfolders = {}\n\n\
             [Repository remote]\ntype = IMAP\nremotehost = {}\nremoteport = {}\nremoteuser = {}\nremotepass = {}\n\
             ssl = no\nstarttls = no\nreadonly = True\nfolderfilter = lambda f: f == 'INBOX'\n",
            dir.join("metadata").display(),
            md.display(),
            imap.ip(),
            imap.port(),
            login.user,
            login.password,
        ),
    )
    .expect("offlineimaprc");
    run(
        "offlineimap",
        Command::new("offlineimap")
            .arg("-c")
            .arg(&rc)
            .args(["-o", "-u", "quiet"]),
    );
    maildir_by_uid(&md.join("INBOX"))
}

/// `m` with CRLF line ends made LF (Maildir files and mutt's copies are LF).
pub fn lf(m: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.len());
    for (i, &b) in m.iter().enumerate() {
        if !(b == b'\r' && m.get(i + 1) == Some(&b'\n')) {
            out.push(b);
        }
    }
    out
}
