//! Local access control against the real binary: every account gets a
//! generated password (`-g` prints it, `PASSWORD` shows and resets it), POP3
//! and SMTP require it, a configured `PasswordHash` wins, and
//! `Authentication = "none"` is the only way out, warned about at every
//! start. Passwords never reach the log (at DEBUG, everything) or the disk
//! in plaintext.

mod clients_support;
mod lifecycle_support;

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;

use base64::Engine as _;
use clients_support::{assert_absent, Client};
use lifecycle_support::{password, wait_until, Daemon, Setup};

const ALICE: &str = "alice@provider-0";
const BOB: &str = "bob@provider-1";

/// A daemon with alice and bob, SMTP and POP3 on free ports, `proxy` lines
/// added to `[Proxy]` and `account` lines to alice's `[[Account]]`.
struct Mail {
    setup: Setup,
    smtp: SocketAddr,
    pop3: SocketAddr,
}

impl Mail {
    fn new(proxy: &str, account: &str) -> Mail {
        let smtp = testnet::ports::reserve().unwrap();
        let pop3 = testnet::ports::reserve().unwrap();
        let setup = Setup::with_extra(&format!(
            "[[Account]]\nUser = \"bob\"\nProvider = \"provider-1\"\nAuthority = \"Test\"\n\
             [Recipients]\n\"{BOB}\" = \"{}\"\n",
            "42".repeat(32)
        ));
        let text = fs::read_to_string(&setup.config)
            .unwrap()
            .replace(
                "NoLaunchListeners = true\n",
                &format!("SMTPAddress = \"{smtp}\"\nPOP3Address = \"{pop3}\"\nIMAPAddress = \"127.0.0.1:0\"\n{proxy}"),
            )
            .replace(
                "Provider = \"provider-0\"\nAuthority = \"Test\"\n",
                &format!("Provider = \"provider-0\"\nAuthority = \"Test\"\n{account}"),
            );
        fs::write(&setup.config, text).unwrap();
        Mail { setup, smtp, pop3 }
    }

    /// `mailproxyd -g`: its output and each account's password line.
    fn generate(&self) -> (String, Vec<(String, String)>) {
        let text = lifecycle_support::generate(&self.setup.config);
        let mut passwords = Vec::new();
        let mut account = None;
        for line in text.lines() {
            if let Some(a) = line.strip_prefix("account ") {
                account = Some(a.to_owned());
            } else if line.trim_start().starts_with("password (") {
                let value = line.split_once("):").unwrap().1.trim().to_owned();
                passwords.push((account.clone().unwrap(), value));
            }
        }
        (text, passwords)
    }

    /// The file of the account's generated password hash.
    fn hash_file(&self, account: &str) -> std::path::PathBuf {
        self.setup.data_dir.join(account).join("password.argon2id")
    }

    fn start(&self) -> Daemon {
        let daemon = self.setup.start();
        let smtp = self.smtp;
        wait_until("the SMTP listener", || {
            std::net::TcpStream::connect(smtp).is_ok()
        });
        daemon
    }

    fn stop(&self, mut daemon: Daemon) {
        daemon.signal(libc::SIGTERM);
        assert!(daemon.wait().success(), "{}", daemon.stderr());
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A POP3 login with USER/PASS on a fresh connection: its reply.
fn pop3_user_pass(addr: SocketAddr, user: &str, pass: &str) -> String {
    let mut c = Client::connect(addr);
    c.line();
    c.send(format!("USER {user}\r\nPASS {pass}\r\n").as_bytes());
    assert!(c.line().starts_with("+OK"));
    let reply = c.line();
    c.send(b"QUIT\r\n");
    // The maildrop is free once QUIT is answered: the next login may use it.
    c.line();
    reply
}

/// A POP3 login with AUTH PLAIN on a fresh connection: its reply.
fn pop3_auth_plain(addr: SocketAddr, user: &str, pass: &str) -> String {
    let mut c = Client::connect(addr);
    c.line();
    c.send(
        format!(
            "AUTH PLAIN {}\r\nQUIT\r\n",
            b64(&format!("\0{user}\0{pass}"))
        )
        .as_bytes(),
    );
    let reply = c.line();
    c.line(); // QUIT's answer: the maildrop is free again
    reply
}

/// An SMTP session on a fresh connection after EHLO.
fn smtp(addr: SocketAddr) -> Client {
    let mut c = Client::connect(addr);
    assert_eq!(c.code(), 220);
    c.send(b"EHLO test\r\n");
    assert_eq!(c.code(), 250);
    c
}

/// The reply to `AUTH PLAIN` for `user`/`pass` on `c`.
fn smtp_auth(c: &mut Client, user: &str, pass: &str) -> String {
    c.send(format!("AUTH PLAIN {}\r\n", b64(&format!("\0{user}\0{pass}"))).as_bytes());
    c.reply().remove(0)
}

fn mail_from(c: &mut Client, from: &str) -> String {
    c.send(format!("MAIL FROM:<{from}>\r\n").as_bytes());
    c.reply().remove(0)
}

#[test]
fn generated_passwords_guard_pop3_and_smtp_and_never_reach_logs_or_disk() {
    let mail = Mail::new("", "");
    let (text, generated) = mail.generate();
    assert_eq!(generated.len(), 2, "{text}");
    assert_eq!(generated[0].0, ALICE);
    assert_eq!(generated[1].0, BOB);
    let alice = generated[0].1.clone();
    let bob = generated[1].1.clone();
    assert_ne!(alice, bob);
    // Easy to type: base32 groups, at least 128 bits.
    let symbols: String = alice.chars().filter(|&c| c != '-').collect();
    assert!(symbols.len() * 5 >= 128, "{alice}");
    assert!(
        symbols
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()),
        "{alice}"
    );
    // -g again shows the same passwords; the hash file is private.
    assert_eq!(mail.generate().1, generated);
    let hash_file = mail.hash_file(ALICE);
    let hash = fs::read_to_string(&hash_file).unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert_eq!(
        fs::metadata(&hash_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let daemon = mail.start();
    assert_eq!(password(&mail.setup.socket, ALICE, false), alice);
    assert_eq!(password(&mail.setup.socket, "Bob@Provider-1", false), bob);

    // POP3: refused with a wrong password or another account's name in any
    // case; the account id in any case with its password works.
    for (user, pass) in [
        (ALICE, "wrong-password"),
        (ALICE, "x"),
        (BOB, alice.as_str()),
        ("BOB@provider-1", alice.as_str()),
        ("Bob@Provider-1", alice.as_str()),
        ("nobody@provider-0", alice.as_str()),
    ] {
        let r = pop3_user_pass(mail.pop3, user, pass);
        assert!(r.starts_with("-ERR [AUTH]"), "USER {user} PASS {pass}: {r}");
        let r = pop3_auth_plain(mail.pop3, user, pass);
        assert!(r.starts_with("-ERR [AUTH]"), "AUTH PLAIN {user}: {r}");
    }
    assert!(pop3_user_pass(mail.pop3, "Alice@Provider-0", &alice).starts_with("+OK"));
    assert!(pop3_auth_plain(mail.pop3, ALICE, &alice).starts_with("+OK"));
    assert!(pop3_user_pass(mail.pop3, BOB, &bob).starts_with("+OK"));

    // SMTP: MAIL without AUTH is refused, so are bad logins; logged in, the
    // sender must be the login.
    let mut c = smtp(mail.smtp);
    assert!(mail_from(&mut c, ALICE).starts_with("530 5.7.0"));
    assert!(smtp_auth(&mut c, ALICE, "wrong-password").starts_with("535 5.7.8"));
    let mut other = smtp(mail.smtp);
    assert!(smtp_auth(&mut other, "BOB@PROVIDER-1", &alice).starts_with("535 5.7.8"));
    assert!(mail_from(&mut other, BOB).starts_with("530 5.7.0"));
    assert!(smtp_auth(&mut c, "ALICE@provider-0", &alice).starts_with("235 2.7.0"));
    assert!(mail_from(&mut c, BOB).starts_with("553 5.7.1"));
    assert!(mail_from(&mut c, "Alice@Provider-0").starts_with("250"));
    c.send(format!("RCPT TO:<{BOB}>\r\nDATA\r\n").as_bytes());
    assert_eq!(c.code(), 250);
    assert_eq!(c.code(), 354);
    c.send(b"Subject: hi\r\n\r\nhello\r\n.\r\nQUIT\r\n");
    assert_eq!(c.code(), 250);
    assert_eq!(c.code(), 221);
    mail.stop(daemon);

    // The log (DEBUG: every level) has the failures, never a password, in
    // plaintext or in the base64 of the SASL exchanges.
    let log = mail.setup.log();
    assert!(log.contains("login failed"), "{log}");
    for secret in [alice.as_str(), bob.as_str(), "wrong-password"] {
        assert!(!log.contains(secret), "{secret} in the log");
        for user in [ALICE, BOB, "BOB@PROVIDER-1"] {
            assert!(!log.contains(&b64(&format!("\0{user}\0{secret}"))));
        }
    }
    // Nor is it anywhere on disk in plaintext.
    for secret in [&alice, &bob] {
        assert_absent(&mail.setup.data_dir, secret.as_bytes());
    }
}

#[test]
fn a_reset_makes_the_old_password_fail_at_once_and_the_new_one_work() {
    let mail = Mail::new("", "");
    let daemon = mail.start();
    let old = password(&mail.setup.socket, ALICE, false);
    assert!(pop3_user_pass(mail.pop3, ALICE, &old).starts_with("+OK"));
    let new = password(&mail.setup.socket, ALICE, true);
    assert_ne!(new, old);
    assert_eq!(password(&mail.setup.socket, ALICE, false), new);
    assert!(pop3_user_pass(mail.pop3, ALICE, &old).starts_with("-ERR [AUTH]"));
    assert!(smtp_auth(&mut smtp(mail.smtp), ALICE, &old).starts_with("535"));
    assert!(pop3_auth_plain(mail.pop3, ALICE, &new).starts_with("+OK"));
    assert!(smtp_auth(&mut smtp(mail.smtp), ALICE, &new).starts_with("235"));
    // Bob's is untouched.
    let bob = password(&mail.setup.socket, BOB, false);
    assert!(pop3_user_pass(mail.pop3, BOB, &bob).starts_with("+OK"));
    mail.stop(daemon);
    // The new password survives a restart, and -g shows it.
    let generated = mail.generate().1;
    assert_eq!(generated[0], (ALICE.to_owned(), new.clone()));
    let daemon = mail.start();
    assert!(pop3_user_pass(mail.pop3, ALICE, &new).starts_with("+OK"));
    assert!(pop3_user_pass(mail.pop3, ALICE, &old).starts_with("-ERR [AUTH]"));
    mail.stop(daemon);
    assert!(!mail.setup.log().contains(&new));
    assert!(!mail.setup.log().contains(&old));
}

#[test]
fn a_configured_password_hash_wins_over_the_generated_one() {
    let hash = mailproxyd::auth::hash_password("chosen by alice").unwrap();
    let mail = Mail::new("", &format!("PasswordHash = \"{hash}\"\n"));
    let (text, generated) = mail.generate();
    assert!(text.contains("(the one hashed in PasswordHash)"), "{text}");
    // Only bob got a generated password.
    assert_eq!(generated.iter().filter(|(a, _)| a == BOB).count(), 1);
    assert!(!mail.hash_file(ALICE).exists());
    let daemon = mail.start();
    assert!(pop3_user_pass(mail.pop3, ALICE, "chosen by alice").starts_with("+OK"));
    assert!(pop3_user_pass(mail.pop3, ALICE, "x").starts_with("-ERR [AUTH]"));
    let mut c = smtp(mail.smtp);
    assert!(mail_from(&mut c, ALICE).starts_with("530 5.7.0"));
    assert!(smtp_auth(&mut c, ALICE, "chosen by alice").starts_with("235"));
    // PASSWORD cannot show or reset it.
    let mut ctl = lifecycle_support::mgmt_line(&mail.setup.socket, &format!("PASSWORD {ALICE}"));
    assert!(
        ctl.starts_with("554 ") && ctl.contains("PasswordHash"),
        "{ctl}"
    );
    ctl = lifecycle_support::mgmt_line(&mail.setup.socket, &format!("PASSWORD {ALICE} RESET"));
    assert!(ctl.starts_with("554 "), "{ctl}");
    ctl = lifecycle_support::mgmt_line(&mail.setup.socket, "PASSWORD nobody@provider-0");
    assert!(
        ctl.starts_with("554 ") && ctl.contains("no account"),
        "{ctl}"
    );
    mail.stop(daemon);
}

#[test]
fn authentication_none_is_the_explicit_opt_out_warned_at_every_start() {
    let mail = Mail::new("Authentication = \"none\"\n", "");
    let (text, generated) = mail.generate();
    // -g says no password is needed, and makes none.
    assert_eq!(generated.len(), 2, "{text}");
    assert!(
        generated.iter().all(|(_, p)| p.starts_with("(none")),
        "{text}"
    );
    for start in 0..2 {
        let daemon = mail.start();
        assert!(pop3_user_pass(mail.pop3, ALICE, "anything").starts_with("+OK"));
        let mut c = smtp(mail.smtp);
        assert!(mail_from(&mut c, ALICE).starts_with("250"), "start {start}");
        let ctl = lifecycle_support::mgmt_line(&mail.setup.socket, &format!("PASSWORD {ALICE}"));
        assert!(ctl.starts_with("554 "), "{ctl}");
        mail.stop(daemon);
        let warnings = mail
            .setup
            .log()
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("Authentication = \"none\""))
            .count();
        assert_eq!(warnings, start + 1, "{}", mail.setup.log());
    }
    assert!(!mail.hash_file(ALICE).exists());
}
