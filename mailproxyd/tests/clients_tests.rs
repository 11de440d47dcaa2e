//! Stock mail clients against the in-process servers (commands from
//! ../shared/docs/mail-clients.md). A missing client fails the test.
//! Queued mail is looped into the local recipient's inbox by the test-only
//! harness in place of the network engine.
//!
//! Every account has a password, as the daemon requires by default, and
//! every client logs in with its own authentication options. The passwords
//! have the generated form (base32 groups joined by dashes).

mod clients_support;

use std::process::{Command, Output, Stdio};

use clients_support::Harness;
use mailproxyd::smtp::SmtpSettings;

const ALICE_PW: &str = "h3k9-7xqm-2wda-v8ne-0rtb-c5jz-p6fy";
const BOB_PW: &str = "m4ts-9qk2-x7vb-e3nh-a8wd-1zpc-r5gj";
const CAROL_PW: &str = "q0w9-e8r7-t6y5-u4i3-o2p1-a0s9-d8f7";

fn harness() -> Harness {
    Harness::start(
        &[
            ("alice@p", Some(ALICE_PW), false),
            ("bob@p", Some(BOB_PW), false),
            ("carol@p", Some(CAROL_PW), false),
        ],
        SmtpSettings::default(),
    )
}

/// Runs a client that must fail; returns its stdout and stderr.
fn refused(cmd: &mut Command) -> String {
    let out = cmd.output().expect("the client is installed");
    assert!(!out.status.success(), "{cmd:?} succeeded");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a client; panics (fails) if it is not installed or exits non-zero.
fn run(cmd: &mut Command, stdin: Option<&[u8]>) -> Output {
    let prog = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("mail client `{prog}` is not installed (see scripts/install-test-deps)")
        }
        Err(e) => panic!("cannot run {prog}: {e}"),
    };
    if let Some(input) = stdin {
        use std::io::Write;
        let mut si = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = si.write_all(&input);
        });
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{prog} failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The single message in bob's inbox after looping the queue.
fn bob_receives(h: &Harness) -> Vec<u8> {
    assert_eq!(h.loop_queues(), 1, "exactly one queued message");
    let bob = h.store("bob@p");
    let l = bob.inbox_list().unwrap();
    assert_eq!(l.len(), 1);
    bob.read_message(l[0].message.blob).unwrap()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn lf(b: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(b)
        .replace("\r\n", "\n")
        .into_bytes()
}

// ---------------------------------------------------------------- SMTP

fn swaks(port: &str, from: &str, auth: &[&str], extra: &[&str]) -> Command {
    let mut c = Command::new("swaks");
    c.args(["--server", "127.0.0.1", "--port", port, "--from", from])
        .args(["--to", "bob@p"])
        .args(auth)
        .args(extra);
    c
}

#[test]
fn swaks_sends_with_auth_and_is_refused_without() {
    let h = harness();
    let port = h.smtp.port().to_string();
    let alice = [
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice@p",
        "--auth-password",
        ALICE_PW,
    ];
    run(
        &mut swaks(
            &port,
            "alice@p",
            &alice,
            &[
                "--header",
                "Subject: t",
                "--body",
                "hello from swaks",
                "--hide-all",
            ],
        ),
        None,
    );
    assert!(contains(&bob_receives(&h), b"hello from swaks"));
    // AUTH LOGIN, the user name in another case.
    run(
        &mut swaks(
            &port,
            "carol@p",
            &[
                "--auth",
                "LOGIN",
                "--auth-user",
                "Carol@P",
                "--auth-password",
                CAROL_PW,
            ],
            &["--body", "authenticated swaks", "--hide-all"],
        ),
        None,
    );
    assert_eq!(h.loop_queues(), 1);
    // Without AUTH: 530 at MAIL.
    let out = refused(&mut swaks(&port, "alice@p", &[], &["--body", "x"]));
    assert!(out.contains("<** 530 5.7.0"), "{out}");
    // Logged in as alice, sending as carol: 553 at MAIL.
    let out = refused(&mut swaks(&port, "carol@p", &alice, &["--body", "x"]));
    assert!(out.contains("<** 553 5.7.1"), "{out}");
    // A wrong password, and another account's name with alice's password.
    for user in ["alice@p", "BOB@p", "carol@P"] {
        let out = refused(&mut swaks(
            &port,
            "alice@p",
            &["--auth", "PLAIN", "--auth-user", user, "--auth-password"],
            &[
                if user == "alice@p" { "wrong" } else { ALICE_PW },
                "--body",
                "x",
            ],
        ));
        assert!(out.contains("<** 535 5.7.8"), "{user}: {out}");
    }
    // Partial transaction.
    run(
        &mut swaks(
            &port,
            "alice@p",
            &alice,
            &["--quit-after", "RCPT", "--hide-all"],
        ),
        None,
    );
    assert_eq!(h.store("alice@p").queue_len().unwrap(), 0);
    assert_eq!(h.store("carol@p").queue_len().unwrap(), 0);
}

#[test]
fn msmtp_sends_and_reads_capabilities() {
    let h = harness();
    let port = format!("--port={}", h.smtp.port());
    let info = run(
        Command::new("msmtp").args(["--serverinfo", "--host=127.0.0.1", &port, "--tls=off"]),
        None,
    );
    let info = String::from_utf8_lossy(&info.stdout);
    for cap in ["SIZE 26214400", "PIPELINING", "PLAIN", "LOGIN"] {
        assert!(info.contains(cap), "msmtp sees no {cap}: {info}");
    }
    run(
        Command::new("msmtp").args([
            "--host=127.0.0.1",
            &port,
            "--tls=off",
            "--auth=plain",
            "--user=alice@p",
            &format!("--passwordeval=echo {ALICE_PW}"),
            "--from=alice@p",
            "bob@p",
        ]),
        Some(b"Subject: t\n\nmsmtp body\n"),
    );
    assert!(contains(&bob_receives(&h), b"msmtp body\r\n"));
    run(
        Command::new("msmtp").args([
            "--host=127.0.0.1",
            &port,
            "--tls=off",
            "--auth=login",
            "--user=carol@p",
            &format!("--passwordeval=echo {CAROL_PW}"),
            "--from=carol@p",
            "bob@p",
        ]),
        Some(b"Subject: t\n\nmsmtp auth body\n"),
    );
    assert_eq!(h.loop_queues(), 1);
    // Without credentials msmtp sends MAIL unauthenticated: refused.
    let out = refused(Command::new("msmtp").args([
        "--host=127.0.0.1",
        &port,
        "--tls=off",
        "--auth=off",
        "--from=alice@p",
        "bob@p",
    ]));
    assert!(out.contains("530"), "{out}");
}

#[test]
fn curl_sends_with_sasl_ir_and_continuation() {
    let h = harness();
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("msg.eml");
    std::fs::write(
        &f,
        b"Subject: curl\r\n\r\n.starts with a dot\r\ncurl body\r\n",
    )
    .unwrap();
    let url = format!("smtp://127.0.0.1:{}", h.smtp.port());
    let file = f.to_str().unwrap();
    run(
        Command::new("curl").args([
            "-sS",
            "--url",
            &url,
            "--mail-from",
            "alice@p",
            "--mail-rcpt",
            "bob@p",
            "--user",
            &format!("alice@p:{ALICE_PW}"),
            "--upload-file",
            file,
        ]),
        None,
    );
    let m = bob_receives(&h);
    assert!(m.ends_with(b"Subject: curl\r\n\r\n.starts with a dot\r\ncurl body\r\n"));
    for extra in [
        &[][..],
        &["--sasl-ir"][..],
        &["--login-options", "AUTH=PLAIN"][..],
    ] {
        run(
            Command::new("curl")
                .args([
                    "-sS",
                    "--url",
                    &url,
                    "--mail-from",
                    "carol@p",
                    "--mail-rcpt",
                    "bob@p",
                ])
                .args([
                    "--user",
                    &format!("carol@p:{CAROL_PW}"),
                    "--upload-file",
                    file,
                ])
                .args(extra),
            None,
        );
    }
    let carol = h.store("carol@p");
    assert_eq!(carol.queue_len().unwrap(), 3);
    // Without --user curl is refused at MAIL (exit 55: sending failed).
    let out = Command::new("curl")
        .args(["-sS", "--url", &url, "--mail-from", "alice@p"])
        .args(["--mail-rcpt", "bob@p", "--upload-file", file])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(h.store("alice@p").queue_len().unwrap(), 0);
}

#[test]
fn python_smtplib_sends_lowercase_commands_with_size() {
    let h = harness();
    let script = format!(
        r#"
import smtplib
from email.message import EmailMessage
m = EmailMessage(); m['Subject'] = 'py'; m['From'] = 'carol@p'; m['To'] = 'bob@p'
m.set_content('python body')
s = smtplib.SMTP('127.0.0.1', {port}, timeout=10)
s.login('carol@p', '{carol}')
s.send_message(m)
s.quit()
s = smtplib.SMTP('127.0.0.1', {port}, timeout=10)
try:
    s.login('bob@p', '{carol}')
    raise SystemExit('bob logged in with carol\'s password')
except smtplib.SMTPAuthenticationError as e:
    assert e.smtp_code == 535
try:
    s.sendmail('alice@p', ['bob@p'], b'Subject: x\r\n\r\nx\r\n')
    raise SystemExit('MAIL without AUTH accepted')
except smtplib.SMTPSenderRefused as e:
    assert e.smtp_code == 530
s.login('alice@p', '{alice}')
try:
    s.sendmail('alice@p', ['nobody@nowhere'], b'Subject: x\r\n\r\nx\r\n')
    raise SystemExit('unknown recipient accepted')
except smtplib.SMTPRecipientsRefused as e:
    assert e.recipients['nobody@nowhere'][0] == 550
s.quit()
"#,
        port = h.smtp.port(),
        alice = ALICE_PW,
        carol = CAROL_PW,
    );
    run(Command::new("python3").args(["-c", &script]), None);
    assert!(contains(&bob_receives(&h), b"python body"));
}

#[test]
fn s_nail_sends_with_auth_plain_and_login() {
    let h = harness();
    let home = tempfile::tempdir().unwrap();
    let p = h.smtp.port();
    run(
        Command::new("s-nail")
            .env("HOME", home.path())
            .args([
                "-:/",
                "-S",
                "v15-compat",
                "-S",
                &format!("mta=smtp://alice%40p:{ALICE_PW}@127.0.0.1:{p}"),
                "-S",
                "smtp-auth=login",
            ])
            .args(["-r", "alice@p", "-s", "t", "bob@p"]),
        Some(b"s-nail body\n"),
    );
    assert!(contains(&bob_receives(&h), b"s-nail body"));
    run(
        Command::new("s-nail")
            .env("HOME", home.path())
            .args([
                "-:/",
                "-S",
                "v15-compat",
                "-S",
                &format!("mta=smtp://carol%40p:{CAROL_PW}@127.0.0.1:{p}"),
                "-S",
                "smtp-auth=plain",
            ])
            .args(["-r", "carol@p", "-s", "t", "bob@p"]),
        Some(b"s-nail auth body\n"),
    );
    assert_eq!(h.loop_queues(), 1);
    assert!(!home.path().join("dead.letter").exists());
}

#[test]
fn sendemail_sends_with_auth_login() {
    let h = harness();
    let server = format!("127.0.0.1:{}", h.smtp.port());
    run(
        Command::new("sendemail").args([
            "-q",
            "-f",
            "alice@p",
            "-t",
            "bob@p",
            "-u",
            "t",
            "-m",
            "sendemail body",
            "-s",
            &server,
            "-xu",
            "alice@p",
            "-xp",
            ALICE_PW,
            "-o",
            "tls=no",
        ]),
        None,
    );
    assert!(contains(&bob_receives(&h), b"sendemail body"));
    run(
        Command::new("sendemail").args([
            "-q",
            "-f",
            "carol@p",
            "-t",
            "bob@p",
            "-u",
            "t",
            "-m",
            "login body",
            "-s",
            &server,
            "-xu",
            "carol@p",
            "-xp",
            CAROL_PW,
            "-o",
            "tls=no",
        ]),
        None,
    );
    assert_eq!(h.loop_queues(), 1);
}

// ---------------------------------------------------------------- POP3

fn with_two_messages() -> (Harness, Vec<Vec<u8>>) {
    let h = harness();
    let bob = h.store("bob@p");
    let msgs = vec![
        b"Subject: first\r\nMessage-ID: <1@x>\r\n\r\nfirst body\r\n.dotted\r\n".to_vec(),
        b"Subject: second\r\nMessage-ID: <2@x>\r\n\r\nsecond body \xc3\xa9\r\n".to_vec(),
    ];
    for m in &msgs {
        bob.deliver(m, 1).unwrap();
    }
    (h, msgs)
}

#[test]
fn curl_retrieves_lists_and_runs_commands() {
    let (h, msgs) = with_two_messages();
    let base = format!("pop3://127.0.0.1:{}", h.pop3.port());
    let bob = format!("bob@p:{BOB_PW}");
    let list = run(
        Command::new("curl").args([
            "-sS",
            &format!("{base}/"),
            "--user",
            &format!("Bob@P:{BOB_PW}"),
        ]),
        None,
    );
    assert_eq!(
        String::from_utf8_lossy(&list.stdout),
        format!("1 {}\r\n2 {}\r\n", msgs[0].len(), msgs[1].len())
    );
    for (i, m) in msgs.iter().enumerate() {
        let out = run(
            Command::new("curl").args(["-sS", &format!("{base}/{}", i + 1), "--user", &bob]),
            None,
        );
        assert_eq!(&out.stdout, m);
    }
    let top = run(
        Command::new("curl").args(["-sS", &format!("{base}/"), "--user", &bob, "-X", "TOP 1 0"]),
        None,
    );
    assert_eq!(top.stdout, b"Subject: first\r\nMessage-ID: <1@x>\r\n\r\n");
    let uidl = run(
        Command::new("curl").args(["-sS", &format!("{base}/"), "--user", &bob, "-X", "UIDL"]),
        None,
    );
    assert_eq!(String::from_utf8_lossy(&uidl.stdout).lines().count(), 2);
    run(
        Command::new("curl").args([
            "-sS",
            &format!("{base}/"),
            "--user",
            &bob,
            "-X",
            "DELE 1",
            "-I",
        ]),
        None,
    );
    assert_eq!(h.store("bob@p").inbox_len().unwrap(), 1);
    // A wrong password, and another account's name (in any case) with
    // carol's password: curl exits 67 (login denied).
    for user in ["carol@p:wrong".to_owned(), format!("BOB@p:{CAROL_PW}")] {
        let bad = Command::new("curl")
            .args(["-sS", &format!("{base}/"), "--user", &user])
            .output()
            .unwrap();
        assert_eq!(bad.status.code(), Some(67), "{user}");
    }
    run(
        Command::new("curl").args([
            "-sS",
            &format!("{base}/"),
            "--user",
            &format!("carol@p:{CAROL_PW}"),
        ]),
        None,
    );
}

#[test]
fn python_poplib_retrieves_exact_bytes() {
    let (h, msgs) = with_two_messages();
    let script = format!(
        r#"
import poplib, sys
p = poplib.POP3('127.0.0.1', {port}, timeout=10)
caps = p.capa()
assert 'TOP' in caps and 'UIDL' in caps and 'SASL' in caps, caps
p.user('bob@p'); p.pass_('{pw}')
n, size = p.stat()
assert n == 2, n
out = sys.stdout.buffer
for i in (1, 2):
    resp, lines, octets = p.retr(i)
    out.write(b'\r\n'.join(lines) + b'\r\n')
    out.write(b'\0')
p.quit()
"#,
        port = h.pop3.port(),
        pw = BOB_PW,
    );
    let out = run(Command::new("python3").args(["-c", &script]), None);
    let parts: Vec<&[u8]> = out.stdout.split(|&b| b == 0).collect();
    assert_eq!(parts[0], msgs[0]);
    assert_eq!(parts[1], msgs[1]);
}

#[test]
fn mpop_fetches_and_reads_capabilities() {
    let (h, _) = with_two_messages();
    let t = tempfile::tempdir().unwrap();
    let port = format!("--port={}", h.pop3.port());
    let info = run(
        Command::new("mpop").args(["--serverinfo", "--host=127.0.0.1", &port, "--tls=off"]),
        None,
    );
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains("TOP") && info.contains("UIDL") && info.contains("PLAIN"),
        "{info}"
    );
    assert!(
        info.contains("USER PLAIN") && !info.contains("APOP"),
        "no APOP offered: {info}"
    );
    let mbox = t.path().join("out.mbox");
    for auth in ["--auth=user", "--auth=plain"] {
        run(
            Command::new("mpop").args([
                "--host=127.0.0.1",
                &port,
                "--tls=off",
                auth,
                "--user=bob@p",
                &format!("--passwordeval=echo {BOB_PW}"),
                "--keep=on",
                "--only-new=off",
                &format!("--delivery=mbox,{}", mbox.display()),
                &format!("--uidls-file={}", t.path().join("uidls").display()),
            ]),
            None,
        );
    }
    let got = std::fs::read(&mbox).unwrap();
    assert_eq!(got.windows(10).filter(|w| w == b"first body").count(), 2);
    assert!(contains(&got, "second body é".as_bytes()));
    assert_eq!(
        h.store("bob@p").inbox_len().unwrap(),
        2,
        "--keep=on deletes nothing"
    );
}

#[test]
fn fetchmail_fetches_despite_last() {
    let (h, _) = with_two_messages();
    let t = tempfile::tempdir().unwrap();
    let mbox = t.path().join("out.mbox");
    let rc = t.path().join("fmrc");
    std::fs::write(
        &rc,
        format!(
            "poll 127.0.0.1 service {} protocol pop3 auth password user \"bob@p\" password \"{BOB_PW}\" sslproto '' mda 'cat >> {}' keep\n",
            h.pop3.port(),
            mbox.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rc, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let rcs = rc.to_str().unwrap().to_owned();
    let ids = t.path().join("fm.ids");
    run(
        Command::new("fetchmail").env("HOME", t.path()).args([
            "-f",
            &rcs,
            "-N",
            "--nosyslog",
            "-v",
            "--idfile",
            ids.to_str().unwrap(),
        ]),
        None,
    );
    let got = lf(&std::fs::read(&mbox).unwrap());
    assert!(contains(&got, b"first body\n.dotted\n"));
    assert!(contains(&got, "second body é\n".as_bytes()));
    assert_eq!(h.store("bob@p").inbox_len().unwrap(), 2);
}

#[test]
fn getmail6_fetches_into_a_maildir() {
    let (h, _) = with_two_messages();
    let t = tempfile::tempdir().unwrap();
    let root = unsafe { libc::geteuid() } == 0;
    let gm = t.path().join("gm");
    let md = t.path().join("md");
    for d in [gm.clone(), md.join("new"), md.join("cur"), md.join("tmp")] {
        std::fs::create_dir_all(d).unwrap();
    }
    let user_line = if root { "user=nobody\n" } else { "" };
    if root {
        std::fs::set_permissions(
            t.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        run(
            Command::new("chown").args(["-R", "nobody", md.to_str().unwrap()]),
            None,
        );
    }
    std::fs::write(
        gm.join("getmailrc"),
        format!(
            "[retriever]\ntype=SimplePOP3Retriever\nserver=127.0.0.1\nport={}\nusername=bob@p\npassword={BOB_PW}\n\n\
             [destination]\ntype=Maildir\npath={}/\n{user_line}\n[options]\nread_all=true\ndelete=false\n",
            h.pop3.port(),
            md.display()
        ),
    )
    .unwrap();
    run(
        Command::new("getmail").args([
            &format!("--getmaildir={}", gm.display()),
            "--rcfile=getmailrc",
        ]),
        None,
    );
    let mut all = Vec::new();
    for e in std::fs::read_dir(md.join("new")).unwrap() {
        all.extend(lf(&std::fs::read(e.unwrap().path()).unwrap()));
    }
    assert!(
        contains(&all, b"first body\n.dotted\n"),
        "{}",
        String::from_utf8_lossy(&all)
    );
    assert!(contains(&all, "second body é".as_bytes()));
}

#[test]
fn s_nail_reads_and_exit_drops_the_connection_without_deleting() {
    let (h, _) = with_two_messages();
    let t = tempfile::tempdir().unwrap();
    let mbox = t.path().join("out.mbox");
    run(
        Command::new("s-nail")
            .env("HOME", t.path())
            .args(["-:/", "-#", "-S", "v15-compat", "-S", "pop3-no-apop"])
            .args(["-Y", &format!("copy * {}", mbox.display()), "-Y", "exit"])
            .args([
                "-f",
                &format!("pop3://bob%40p:{BOB_PW}@127.0.0.1:{}", h.pop3.port()),
            ]),
        None,
    );
    let got = lf(&std::fs::read(&mbox).unwrap());
    assert!(contains(&got, b"first body"));
    assert!(contains(&got, "second body é".as_bytes()));
    // The maildrop lock is released once the server has finished the
    // dropped session; then it has deleted all it was ever going to.
    let _c = clients_support::pop3_login_once_released(h.pop3, "bob@p", BOB_PW);
    assert_eq!(
        h.store("bob@p").inbox_len().unwrap(),
        2,
        "exit deletes nothing"
    );
}

// ------------------------------------------------------- byte identity

fn mime_with_attachment(binary_len: usize, seed: u32) -> Vec<u8> {
    use base64::Engine;
    let mut x = seed;
    let data: Vec<u8> = (0..binary_len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
    let mut m = b"From: alice@p\r\nTo: bob@p\r\nSubject: attachment\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"BOUNDARY\"\r\n\r\n--BOUNDARY\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
Gr\xc3\xbc\xc3\x9fe, \xe2\x82\xac 100\r\n.leading dot\r\n\r\n--BOUNDARY\r\n\
Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"data.bin\"\r\n\r\n"
        .to_vec();
    for line in b64.as_bytes().chunks(76) {
        m.extend_from_slice(line);
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b"--BOUNDARY--\r\n");
    m
}

fn submit_and_retrieve_identically(msg: &[u8], with_python: bool) {
    let h = harness();
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("msg.eml");
    std::fs::write(&f, msg).unwrap();
    run(
        Command::new("curl").args([
            "-sS",
            "--url",
            &format!("smtp://127.0.0.1:{}", h.smtp.port()),
            "--mail-from",
            "alice@p",
            "--mail-rcpt",
            "bob@p",
            "--user",
            &format!("alice@p:{ALICE_PW}"),
            "--upload-file",
            f.to_str().unwrap(),
        ]),
        None,
    );
    assert_eq!(h.loop_queues(), 1);
    let out = run(
        Command::new("curl").args([
            "-sS",
            &format!("pop3://127.0.0.1:{}/1", h.pop3.port()),
            "--user",
            &format!("bob@p:{BOB_PW}"),
        ]),
        None,
    );
    let got = out.stdout;
    assert!(got.len() > msg.len());
    assert!(
        got.ends_with(msg),
        "retrieved bytes end with the submitted bytes"
    );
    let prefix = String::from_utf8(got[..got.len() - msg.len()].to_vec()).unwrap();
    assert!(prefix.starts_with("Received: from localhost"), "{prefix}");
    assert_eq!(
        prefix.matches("\r\n").count(),
        4,
        "Received (3 lines) + Message-ID: {prefix}"
    );
    if with_python {
        let script = format!(
            "import poplib,sys\np=poplib.POP3('127.0.0.1',{},timeout=60)\np.user('bob@p');p.pass_('{BOB_PW}')\n\
             r,l,o=p.retr(1)\nsys.stdout.buffer.write(b'\\r\\n'.join(l)+b'\\r\\n')\np.quit()\n",
            h.pop3.port()
        );
        let py = run(Command::new("python3").args(["-c", &script]), None);
        assert_eq!(py.stdout, got, "poplib sees the same bytes");
    }
}

#[test]
fn identical_bytes_plain_text() {
    submit_and_retrieve_identically(
        b"From: alice@p\r\nSubject: plain\r\n\r\nHello.\r\n.\r\n..\r\nBye\r\n",
        true,
    );
}

#[test]
fn identical_bytes_8bit() {
    submit_and_retrieve_identically(
        b"From: alice@p\r\nSubject: 8bit\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: 8bit\r\n\r\n\xe9t\xe9 \xfc\xdf \xff\xfe raw latin-1, not UTF-8\r\n",
        true,
    );
}

#[test]
fn identical_bytes_binary_attachment() {
    submit_and_retrieve_identically(&mime_with_attachment(300_000, 7), true);
}

#[test]
fn identical_bytes_20_mib() {
    let m = mime_with_attachment(15 << 20, 11);
    assert!(m.len() > 20 << 20);
    submit_and_retrieve_identically(&m, true);
}
