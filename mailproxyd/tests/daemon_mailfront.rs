//! The real daemon with its SMTP and POP3 listeners: a stock client submits
//! to it, the message is queued durably and encrypted (no plaintext under
//! DataDir), and POP3 logins work with the account id.

mod lifecycle_support;

use std::fs;
use std::path::Path;
use std::process::Command;

use lifecycle_support::{password, wait_until, Setup};
use mailproxyd::store::{KeySource, Store};

fn free_port() -> u16 {
    testnet::ports::reserve().unwrap().port()
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn swaks_submits_to_the_daemon_and_curl_logs_in() {
    let (smtp, pop3) = (free_port(), free_port());
    let setup = Setup::with_extra(&format!(
        "[Recipients]\n\"bob@provider-1\" = \"{}\"\n",
        "42".repeat(32)
    ));
    // Turn the listeners on, on free ports.
    let text = fs::read_to_string(&setup.config).unwrap().replace(
        "NoLaunchListeners = true\n",
        &format!("SMTPAddress = \"127.0.0.1:{smtp}\"\nPOP3Address = \"127.0.0.1:{pop3}\"\nIMAPAddress = \"127.0.0.1:0\"\n"),
    );
    fs::write(&setup.config, text).unwrap();
    let mut daemon = setup.start();
    wait_until("the SMTP listener", || {
        std::net::TcpStream::connect(("127.0.0.1", smtp)).is_ok()
    });

    let pw = password(&setup.socket, "alice@provider-0", false);
    let auth = [
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice@provider-0",
        "--auth-password",
        &pw,
    ];
    let marker = "MARKER-d41d8cd98f00b204e9800998ecf8427e";
    let out = Command::new("swaks")
        .args(["--server", "127.0.0.1", "--port", &smtp.to_string()])
        .args(["--from", "alice@provider-0", "--to", "bob@provider-1"])
        .args(auth)
        .args(["--header", "Subject: daemon test", "--body", marker])
        .output()
        .expect("swaks is installed (scripts/install-test-deps)");
    assert!(
        out.status.success(),
        "swaks failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // An unknown recipient is refused with 550.
    let out = Command::new("swaks")
        .args(["--server", "127.0.0.1", "--port", &smtp.to_string()])
        .args([
            "--from",
            "alice@provider-0",
            "--to",
            "nobody@provider-1",
            "--quit-after",
            "RCPT",
        ])
        .args(auth)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("<** 550"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // POP3: the account id logs in (any case), the maildrop is empty.
    let out = Command::new("curl")
        .args([
            "-sS",
            &format!("pop3://127.0.0.1:{pop3}/"),
            "--user",
            &format!("Alice@Provider-0:{pw}"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.iter().all(|b| b.is_ascii_whitespace()),
        "inbox should be empty: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );

    daemon.signal(libc::SIGTERM);
    let status = daemon.wait();
    assert!(status.success(), "daemon exit: {status}");

    // The message is in alice's queue, for bob, and no file holds the marker.
    let store = Store::open(
        &setup.data_dir.join("alice@provider-0"),
        &KeySource::KeyFile,
    )
    .unwrap();
    let ids = store.queue_ids().unwrap();
    assert_eq!(ids.len(), 1);
    let entry = store.queue_get(ids[0]).unwrap().unwrap();
    assert_eq!(entry.recipient, "bob@provider-1");
    let msg = store.read_message(entry.message.blob).unwrap();
    assert!(String::from_utf8_lossy(&msg).contains(marker));
    drop(store);
    let mut files = Vec::new();
    files_under(&setup.data_dir, &mut files);
    for f in files {
        let bytes = fs::read(&f).unwrap_or_default();
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
            "{} holds the message in plaintext",
            f.display()
        );
    }
}
