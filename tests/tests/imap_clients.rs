//! IMAP with real clients, reading mail sent through the testnet: Python's
//! imaplib (waiting in IDLE for the messages to arrive, and on the sender's
//! side for Sent to show `$Delivered`) and curl `imap://`; the bytes are
//! compared with what was sent and with what POP3 serves.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use mailproxy_e2e::mail::{self, strip_added, Login};
use mailproxy_e2e::World;

const ALICE: &str = "alice@provider1";
const BOB: &str = "bob@provider2";

/// Bound for messages to cross the network (the machine is loaded).
const DELIVERY: Duration = Duration::from_secs(240);

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

/// Starts the imaplib script; its output is read by [`imaplib_result`].
fn imaplib(
    imap: SocketAddr,
    login: &Login,
    mailbox: &str,
    want: usize,
    keyword: &str,
) -> std::process::Child {
    Command::new("python3")
        .args(["-c", IMAPLIB])
        .arg(imap.ip().to_string())
        .arg(imap.port().to_string())
        .args([&login.user, &login.password, mailbox])
        .arg(want.to_string())
        .arg(keyword)
        .arg(DELIVERY.as_secs().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is installed")
}

/// The (flags, message) pairs the imaplib script printed.
fn imaplib_result(child: std::process::Child) -> Vec<(String, Vec<u8>)> {
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
fn curl_fetch(imap: SocketAddr, login: &Login, mailbox: &str, index: usize) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60"])
        .arg(format!("imap://{imap}/{mailbox};MAILINDEX={index}"))
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

/// Fetches `user`'s INBOX over IMAP with fetchmail (keeping the messages);
/// returns what its MDA received, messages concatenated.
fn fetchmail_imap(imap: SocketAddr, login: &Login, dir: &std::path::Path) -> Vec<u8> {
    use std::os::unix::fs::PermissionsExt;
    let out = dir.join("fetchmail.out");
    let rc = dir.join("fetchmailrc");
    std::fs::write(
        &rc,
        format!(
            "poll {} service {} protocol imap auth password user \"{}\" password \"{}\" sslproto '' mda 'cat >> {}' keep no stripcr invisible\n",
            imap.ip(),
            imap.port(),
            login.user,
            login.password,
            out.display()
        ),
    )
    .expect("fetchmailrc");
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let r = Command::new("fetchmail")
        .arg("-f")
        .arg(&rc)
        .args(["-N", "--nosyslog", "-v", "--idfile"])
        .arg(dir.join("fetchmail.ids"))
        .output()
        .expect("fetchmail is installed (scripts/install-test-deps)");
    assert!(
        r.status.success(),
        "fetchmail over IMAP failed ({}): {}{}",
        r.status,
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
    std::fs::read(&out).expect("fetchmail delivered")
}

/// Fetches `user`'s INBOX over IMAP with getmail6 into a Maildir; returns
/// the messages found there.
fn getmail_imap(imap: SocketAddr, login: &Login, dir: &std::path::Path) -> Vec<Vec<u8>> {
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

/// `m` with CRLF line ends made LF (Maildir files are LF).
fn lf(m: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.len());
    for (i, &b) in m.iter().enumerate() {
        if !(b == b'\r' && m.get(i + 1) == Some(&b'\n')) {
            out.push(b);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn imaplib_in_idle_and_curl_read_mail_from_the_testnet_and_sent_shows_delivery() {
    let world = World::simple(&[ALICE, BOB]);
    let (alice, bob) = (world.daemon_of(ALICE), world.daemon_of(BOB));
    let scratch = world.scratch();
    // Bob's client is idling before anything is sent.
    let waiting = imaplib(bob.imap, &world.login(BOB), "INBOX", 2, "-");
    let m1 = mail::message(ALICE, &[BOB], "imap one", "hello bob, over IMAP\n.\nend");
    let m2 = mail::message(ALICE, &[BOB], "imap two", &mail::big_body(60_000, 7));
    mail::swaks_send(alice.smtp, &world.login(ALICE), &[BOB], &m1, &scratch);
    mail::curl_send(alice.smtp, &world.login(ALICE), &[BOB], &m2, &scratch);
    let got = imaplib_result(waiting);
    assert_eq!(got.len(), 2, "both messages reached the idling client");
    let mut bodies: Vec<Vec<u8>> = got.iter().map(|(_, m)| m.clone()).collect();
    // Network order may differ from sending order.
    bodies.sort_by_key(|m| m.len());
    for (got, sent) in bodies.iter().zip([&m1, &m2]) {
        let (key, rest) = strip_added(got);
        assert_eq!(
            key.as_deref(),
            Some(&world.identity(ALICE)[..]),
            "sender key"
        );
        assert!(rest == &sent[..], "IMAP bytes differ from the sent message");
    }
    // curl reads the same bytes, and so does POP3 (INBOX is the maildrop).
    let pop = mail::pop3_all(bob.pop3, &world.login(BOB));
    for (i, (_, m)) in got.iter().enumerate() {
        assert_eq!(&curl_fetch(bob.imap, &world.login(BOB), "INBOX", i + 1), m);
        assert_eq!(
            &pop[i],
            m,
            "POP3 message {} is IMAP message {}",
            i + 1,
            i + 1
        );
    }
    // Alice's Sent: both copies, delivered once bob's provider acknowledged.
    let sent = imaplib_result(imaplib(
        alice.imap,
        &world.login(ALICE),
        "Sent",
        2,
        "$Delivered",
    ));
    assert_eq!(sent.len(), 2);
    for (flags, m) in &sent {
        assert!(
            flags.contains("$Delivered") && !flags.contains("$Queued"),
            "{flags}"
        );
        assert!(
            m.ends_with(&m1) || m.ends_with(&m2),
            "the Sent copy is the submitted message (after our Received header)"
        );
    }
    assert_eq!(
        curl_fetch(alice.imap, &world.login(ALICE), "Sent", 1),
        sent[0].1
    );
    // fetchmail over IMAP gets both, byte for byte.
    let fm = fetchmail_imap(bob.imap, &world.login(BOB), &scratch);
    for (_, m) in &got {
        assert!(contains(&fm, m), "fetchmail's copy holds the IMAP bytes");
    }
    // getmail6 over IMAP into a Maildir (LF line ends there).
    let gm = getmail_imap(bob.imap, &world.login(BOB), &scratch);
    assert_eq!(gm.len(), 2, "getmail delivered both");
    for (g, m) in gm.iter().zip(&bodies) {
        assert!(contains(&lf(g), &lf(m)), "getmail's copy is the message");
    }
}
