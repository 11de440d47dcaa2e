//! Fair connection slots on the real SMTP and POP3 servers (port 0):
//! connections that never log in cannot lock out a real client.
//!
//! The flood tests print how long the normal client took to be served;
//! rerun with `cargo test -p mailproxyd --test slots_tests -- --nocapture`.

mod clients_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use clients_support::{AccountSpec, Client, Harness};
use mailproxyd::pop3::Pop3Settings;
use mailproxyd::smtp::SmtpSettings;

/// Idle connections opened against a listener of 100 slots (the default).
const IDLE: usize = 500;
const SLOTS: usize = 100;

const ACCOUNTS: &[AccountSpec] = &[("bob@p", None, false), ("carol@p", Some("pw"), false)];

/// Raises the soft open-files limit to the hard limit when it is below
/// `need` (each test client holds two descriptors), and checks it suffices.
fn ensure_fds(need: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read or write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < need {
            lim.rlim_cur = lim.rlim_max;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
    }
    assert!(
        lim.rlim_cur >= need,
        "RLIMIT_NOFILE {} is below the {need} this test needs",
        lim.rlim_cur
    );
}

/// Opens `n` connections that say nothing, each one only after the server
/// answered the previous one (so the server has taken each one in before the
/// next arrives). Returns them with their first line.
fn idle_flood(addr: SocketAddr, n: usize) -> Vec<(Client, String)> {
    (0..n)
        .map(|_| {
            let mut c = Client::connect(addr);
            let first = c.line();
            (c, first)
        })
        .collect()
}

/// Connects and checks that the server greets rather than refuses.
fn greeted(addr: SocketAddr, greeting: &str) -> Client {
    let mut c = Client::connect(addr);
    let first = c.line();
    assert!(first.starts_with(greeting), "not served: {first:?}");
    c
}

fn auth_plain(user: &str, pass: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"));
    format!("AUTH PLAIN {token}\r\n")
}

/// Checks the flood's outcome: every connection was greeted with `greeting`,
/// and the oldest `evicted` ones were told `goodbye` and closed.
fn assert_evicted(flood: &mut [(Client, String)], greeting: &str, evicted: usize, goodbye: &str) {
    for (i, (c, first)) in flood.iter_mut().enumerate() {
        assert!(
            first.starts_with(greeting),
            "idle connection {i} was not served: {first:?}"
        );
        if i < evicted {
            let bye = c.line();
            assert!(bye.starts_with(goodbye), "connection {i}: {bye:?}");
            assert!(c.is_closed(), "connection {i} left open after {bye:?}");
        }
    }
}

#[test]
fn smtp_idle_flood_does_not_lock_out_a_client() {
    ensure_fds(4 * IDLE as u64 + 256);
    let h = Harness::start(ACCOUNTS, SmtpSettings::default());
    let mut flood = idle_flood(h.smtp, IDLE);

    let start = Instant::now();
    let mut c = greeted(h.smtp, "220 ");
    c.send(b"EHLO client.example\r\n");
    assert_eq!(c.code(), 250);
    c.send(auth_plain("carol@p", "pw").as_bytes());
    assert_eq!(c.code(), 235);
    c.send(b"MAIL FROM:<carol@p>\r\nRCPT TO:<bob@p>\r\nDATA\r\n");
    for want in [250, 250, 354] {
        assert_eq!(c.code(), want);
    }
    c.send(b"Subject: through the flood\r\n\r\nhello\r\n.\r\n");
    let queued = c.reply();
    let elapsed = start.elapsed();
    assert!(queued[0].starts_with("250 2.0.0"), "{queued:?}");
    eprintln!(
        "SMTP: a full transaction (connect to 250) took {:.1} ms with {IDLE} idle connections open",
        elapsed.as_secs_f64() * 1e3
    );
    assert_eq!(h.store("carol@p").queue_len().unwrap(), 1);

    // The oldest idle connections made room, the newcomer's included; the
    // rest still hold their slots.
    assert_evicted(&mut flood, "220 ", IDLE - SLOTS + 1, "421 4.7.0");
    let (last, _) = flood.last_mut().unwrap();
    last.send(b"NOOP\r\n");
    assert_eq!(last.code(), 250);
}

#[test]
fn pop3_idle_flood_does_not_lock_out_a_client() {
    ensure_fds(4 * IDLE as u64 + 256);
    let h = Harness::start_with(
        ACCOUNTS,
        SmtpSettings::default(),
        Pop3Settings::default(),
        &[],
    );
    let mut flood = idle_flood(h.pop3, IDLE);

    let start = Instant::now();
    let mut c = greeted(h.pop3, "+OK");
    c.send(b"USER carol@p\r\nPASS pw\r\nSTAT\r\n");
    assert!(c.line().starts_with("+OK"));
    let login = c.line();
    assert!(login.starts_with("+OK Maildrop"), "{login:?}");
    let stat = c.line();
    let elapsed = start.elapsed();
    assert_eq!(stat, "+OK 0 0\r\n");
    eprintln!(
        "POP3: login and STAT took {:.1} ms with {IDLE} idle connections open",
        elapsed.as_secs_f64() * 1e3
    );

    assert_evicted(&mut flood, "+OK", IDLE - SLOTS + 1, "-ERR [SYS/TEMP]");
    let (last, _) = flood.last_mut().unwrap();
    last.send(b"CAPA\r\n");
    assert!(last.line().starts_with("+OK"));
}

#[test]
fn smtp_authenticated_idle_session_is_not_evicted() {
    let h = Harness::start(
        ACCOUNTS,
        SmtpSettings {
            max_sessions: 3,
            ..SmtpSettings::default()
        },
    );
    let login = |c: &mut Client| {
        c.send(auth_plain("carol@p", "pw").as_bytes());
        assert_eq!(c.code(), 235);
    };
    // The oldest session, authenticated and then idle.
    let mut proven = greeted(h.smtp, "220 ");
    login(&mut proven);
    let mut a = greeted(h.smtp, "220 ");
    let mut b = greeted(h.smtp, "220 ");

    // Full: the newcomer is served, and the oldest unproven session goes.
    let mut n = greeted(h.smtp, "220 ");
    let bye = a.reply();
    assert!(bye[0].starts_with("421 4.7.0"), "{bye:?}");
    assert!(a.is_closed());
    proven.send(b"NOOP\r\n");
    assert_eq!(proven.code(), 250);

    // Every slot proven: nothing may be evicted, the newcomer is refused.
    login(&mut b);
    login(&mut n);
    let mut late = Client::connect(h.smtp);
    let refused = late.reply();
    assert!(refused[0].starts_with("421 4.3.2"), "{refused:?}");
    assert!(late.is_closed());
    for c in [&mut proven, &mut b, &mut n] {
        c.send(b"NOOP\r\n");
        assert_eq!(c.code(), 250);
    }
}

#[test]
fn pop3_logged_in_idle_session_is_not_evicted() {
    let h = Harness::start_with(
        ACCOUNTS,
        SmtpSettings::default(),
        Pop3Settings {
            max_sessions: 3,
            ..Pop3Settings::default()
        },
        &[],
    );
    let ok = |c: &mut Client| assert!(c.line().starts_with("+OK"));
    let mut proven = greeted(h.pop3, "+OK");
    proven.send(b"USER carol@p\r\nPASS pw\r\n");
    ok(&mut proven);
    ok(&mut proven);
    let mut talker = greeted(h.pop3, "+OK");
    let mut quiet = greeted(h.pop3, "+OK");
    // A command without a login makes the talker the most recently active,
    // but does not protect it.
    talker.send(b"CAPA\r\n");
    ok(&mut talker);
    talker.multiline();

    let _n1 = greeted(h.pop3, "+OK");
    assert!(quiet.line().starts_with("-ERR [SYS/TEMP]"));
    assert!(quiet.is_closed());
    let _n2 = greeted(h.pop3, "+OK");
    assert!(talker.line().starts_with("-ERR [SYS/TEMP]"));
    assert!(talker.is_closed());

    proven.send(b"STAT\r\n");
    assert_eq!(proven.line(), "+OK 0 0\r\n");
}

#[test]
fn silent_connections_get_a_short_first_command_deadline() {
    let h = Harness::start_with(
        ACCOUNTS,
        SmtpSettings {
            first_command_timeout: Duration::from_secs(1),
            ..SmtpSettings::default()
        },
        Pop3Settings {
            first_command_timeout: Duration::from_secs(1),
            ..Pop3Settings::default()
        },
        &[],
    );
    let mut smtp_talker = greeted(h.smtp, "220 ");
    smtp_talker.send(b"EHLO x\r\n");
    assert_eq!(smtp_talker.code(), 250);
    let mut pop3_talker = greeted(h.pop3, "+OK");
    pop3_talker.send(b"CAPA\r\n");
    assert!(pop3_talker.line().starts_with("+OK"));
    pop3_talker.multiline();

    let mut smtp_quiet = greeted(h.smtp, "220 ");
    let bye = smtp_quiet.reply();
    assert!(bye[0].starts_with("421 4.4.2"), "{bye:?}");
    assert!(smtp_quiet.is_closed());
    let mut pop3_quiet = greeted(h.pop3, "+OK");
    assert!(pop3_quiet.line().starts_with("-ERR Idle timeout"));
    assert!(pop3_quiet.is_closed());

    // The talkers are past their own first-command deadlines and still served.
    smtp_talker.send(b"NOOP\r\n");
    assert_eq!(smtp_talker.code(), 250);
    pop3_talker.send(b"CAPA\r\n");
    assert!(pop3_talker.line().starts_with("+OK"));
}
