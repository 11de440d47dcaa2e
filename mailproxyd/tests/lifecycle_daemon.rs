//! The real `mailproxyd` binary: keys, recipients over the socket, SIGHUP,
//! clean shutdown, the DataDir lock, stale/live sockets, fatal errors.

#[path = "lifecycle_support/mod.rs"]
mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use mailproxy_proto::{encode_key, Client, ClientError, StatusCode};
use mailproxyd::keys::{read_pem_file, PRIVATE_PEM, PUBLIC_PEM};
use support::{wait_until_async, write_recipient, Setup};

#[tokio::test]
async fn lifecycle_keys_created_once_and_reloaded() {
    let setup = Setup::new();
    let account_dir = setup.data_dir.join("alice@provider-0");
    let mut daemon = setup.start();

    for name in [
        "link.private.pem",
        "link.public.pem",
        "identity.private.pem",
        "identity.public.pem",
    ] {
        let mode = fs::metadata(account_dir.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
    assert_eq!(
        fs::metadata(&setup.data_dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let log_mode = fs::metadata(setup.data_dir.join("mailproxyd.log"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(log_mode & 0o777, 0o600, "log file mode");
    let link_private = fs::read(account_dir.join("link.private.pem")).unwrap();
    let identity_private = fs::read(account_dir.join("identity.private.pem")).unwrap();
    assert!(
        String::from_utf8_lossy(&link_private).starts_with("-----BEGIN X25519 PRIVATE KEY-----")
    );
    read_pem_file(&account_dir.join("link.private.pem"), PRIVATE_PEM).unwrap();

    let mut client = Client::connect(&setup.socket).await.unwrap();
    let accounts = client.accounts().await.unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].account, "alice@provider-0");
    assert_eq!(
        accounts[0].link_key,
        read_pem_file(&account_dir.join("link.public.pem"), PUBLIC_PEM).unwrap()
    );
    assert_eq!(
        accounts[0].identity_key,
        read_pem_file(&account_dir.join("identity.public.pem"), PUBLIC_PEM).unwrap()
    );
    drop(client);

    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait().success());

    // Second start: the same keys, files untouched.
    let mut daemon = setup.start();
    let mut client = Client::connect(&setup.socket).await.unwrap();
    assert_eq!(client.accounts().await.unwrap(), accounts);
    assert_eq!(
        fs::read(account_dir.join("link.private.pem")).unwrap(),
        link_private
    );
    assert_eq!(
        fs::read(account_dir.join("identity.private.pem")).unwrap(),
        identity_private
    );
    drop(client);
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait().success());
}

#[test]
fn lifecycle_generate_prints_registration_and_exits() {
    let setup = Setup::new();
    // Log to the default (standard output) to check -g keeps stdout clean.
    let text = fs::read_to_string(&setup.config)
        .unwrap()
        .replace("File = \"mailproxyd.log\"\n", "");
    fs::write(&setup.config, text).unwrap();
    let stdout = support::generate(&setup.config);
    let dir = setup.data_dir.join("alice@provider-0");
    let link = read_pem_file(&dir.join("link.public.pem"), PUBLIC_PEM).unwrap();
    let identity = read_pem_file(&dir.join("identity.public.pem"), PUBLIC_PEM).unwrap();
    assert!(
        stdout.contains(&format!("ADD_USER alice {}", hex::encode(link))),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "SET_USER_IDENTITY alice {}",
            hex::encode(identity)
        )),
        "{stdout}"
    );
    // Only the registration text is on stdout (logs go elsewhere).
    assert!(
        stdout
            .lines()
            .all(|l| !l.contains("INFO") && !l.contains("WARN")),
        "{stdout}"
    );
    assert!(stdout.starts_with("account alice@provider-0\n"), "{stdout}");
    // -g does not leave a daemon or socket behind.
    assert!(!setup.socket.exists());
}

#[tokio::test]
async fn lifecycle_recipient_commands_over_the_socket() {
    let setup = Setup::new();
    let mut daemon = setup.start();
    let mut client = Client::connect(&setup.socket).await.unwrap();
    assert_eq!(
        client.greeting().text,
        "Katzenpost Mailproxy Management Interface Service ready"
    );

    let (kb, kc, ka) = ([0xbb; 32], [0xcc; 32], [0xaa; 32]);
    client.set_recipient("Bob@Provider-1", &kb).await.unwrap();
    client.set_recipient("carol@provider-1", &kc).await.unwrap();
    client.set_recipient("alice@provider-1", &ka).await.unwrap();
    assert_eq!(client.get_recipient("bob@provider-1").await.unwrap(), kb);
    // Persisted as a normalised PEM file, 0600.
    let bob_file = setup.recipient_dir().join("bob@provider-1.pem");
    assert_eq!(read_pem_file(&bob_file, PUBLIC_PEM).unwrap(), kb);
    assert_eq!(
        fs::metadata(&bob_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let list = client.list_recipients().await.unwrap();
    let names: Vec<&str> = list.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        names,
        ["alice@provider-1", "bob@provider-1", "carol@provider-1"]
    );
    assert_eq!(list[1].1, kb);

    client.remove_recipient("BOB@provider-1").await.unwrap();
    assert!(!bob_file.exists());
    match client.get_recipient("bob@provider-1").await {
        Err(ClientError::Server(s)) => assert_eq!(s.code, StatusCode::FAILED),
        other => panic!("expected 554, got {other:?}"),
    }
    match client.remove_recipient("bob@provider-1").await {
        Err(ClientError::Server(s)) => assert_eq!(s.code, StatusCode::FAILED),
        other => panic!("expected 554, got {other:?}"),
    }
    assert_eq!(client.list_recipients().await.unwrap().len(), 2);

    // Raw wire: tolerant splitting, hex keys, original status texts.
    client
        .send_raw(
            format!(
                "set_recipient   dave@provider-1 \t{}\r\n",
                hex::encode([0xdd; 32])
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let status = client.read_status().await.unwrap();
    assert_eq!(status.to_string(), "250 Requested action ok, completed\r\n");
    client
        .send_raw(b"GET_RECIPIENT dave@provider-1\n")
        .await
        .unwrap();
    assert_eq!(
        client.read_status().await.unwrap().text,
        encode_key(&[0xdd; 32])
    );
    client
        .send_raw(b"SET_RECIPIENT x@y notakey\n")
        .await
        .unwrap();
    assert_eq!(
        client.read_status().await.unwrap().code,
        StatusCode::BAD_ARGUMENTS
    );
    client.send_raw(b"GET_RECIPIENT\n").await.unwrap();
    assert_eq!(
        client.read_status().await.unwrap().code,
        StatusCode::BAD_ARGUMENTS
    );
    client
        .send_raw(b"SET_RECIPIENT nobody AAAA\n")
        .await
        .unwrap();
    assert_eq!(
        client.read_status().await.unwrap().code,
        StatusCode::BAD_ARGUMENTS
    );
    let version = client.version().await.unwrap();
    assert!(version.starts_with("mailproxyd "), "{version}");
    client.quit().await.unwrap();

    // Recipients set over the socket survive a restart.
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait().success());
    let _daemon = setup.start();
    let mut client = Client::connect(&setup.socket).await.unwrap();
    assert_eq!(client.get_recipient("carol@provider-1").await.unwrap(), kc);
    assert_eq!(client.list_recipients().await.unwrap().len(), 3);
}

#[tokio::test]
async fn lifecycle_sighup_adds_changes_removes_and_survives_bad_files() {
    let setup = Setup::with_extra(&format!(
        "[Recipients]\n\"cfg@provider-1\" = \"{}\"\n",
        hex::encode([0x11; 32])
    ));
    setup.make_dirs();
    let dir = setup.recipient_dir();
    write_recipient(&dir, "a@provider-1.pem", &[1; 32]);
    write_recipient(&dir, "b@provider-1.pem", &[2; 32]);
    let daemon = setup.start();
    let mut client = Client::connect(&setup.socket).await.unwrap();
    let names =
        |list: &[(String, [u8; 32])]| list.iter().map(|(a, _)| a.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&client.list_recipients().await.unwrap()),
        ["a@provider-1", "b@provider-1", "cfg@provider-1"]
    );

    write_recipient(&dir, "c@provider-1.pem", &[3; 32]); // added
    write_recipient(&dir, "a@provider-1.pem", &[9; 32]); // changed
    fs::remove_file(dir.join("b@provider-1.pem")).unwrap(); // removed
    fs::write(dir.join("broken@provider-1.pem"), "this is not a key\n").unwrap(); // bad
    fs::write(dir.join("README.txt"), "notes\n").unwrap(); // bad: not .pem
    write_recipient(&dir, "z@provider-1.pem", &[4; 32]); // sorts after the bad ones
    daemon.signal(libc::SIGHUP);

    let expected = vec![
        ("a@provider-1".to_owned(), [9; 32]),
        ("c@provider-1".to_owned(), [3; 32]),
        ("cfg@provider-1".to_owned(), [0x11; 32]),
        ("z@provider-1".to_owned(), [4; 32]),
    ];
    let socket = setup.socket.clone();
    wait_until_async("the rescan to apply", || {
        let socket = socket.clone();
        let expected = expected.clone();
        async move {
            let mut c = Client::connect(&socket).await.unwrap();
            c.list_recipients().await.unwrap() == expected
        }
    })
    .await;
    // The bad files are logged by name; the daemon is still serving.
    let log = setup.log();
    assert!(
        log.contains("broken@provider-1.pem"),
        "log lacks the bad file:\n{log}"
    );
    assert!(log.contains("README.txt"), "log lacks the bad file:\n{log}");
    assert_eq!(client.get_recipient("a@provider-1").await.unwrap(), [9; 32]);

    // RESCAN over the socket does the same as HUP.
    fs::remove_file(dir.join("z@provider-1.pem")).unwrap();
    let summary = client.rescan().await.unwrap();
    assert_eq!(summary, "0 added, 0 changed, 1 removed, 2 bad");
}

#[tokio::test]
async fn lifecycle_clean_shutdown_on_term_and_int() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let setup = Setup::new();
        let mut daemon = setup.start();
        // A connected client must not keep the daemon from stopping.
        let _idle = Client::connect(&setup.socket).await.unwrap();
        daemon.signal(sig);
        let status = daemon.wait();
        assert_eq!(status.code(), Some(0), "signal {sig}: {}", daemon.stderr());
        assert!(
            !setup.socket.exists(),
            "socket left behind after signal {sig}"
        );
        assert!(setup.log().contains("mailproxyd stopped"));
        // The lock is released: a new instance starts.
        let mut again = setup.start();
        again.signal(libc::SIGTERM);
        assert!(again.wait().success());
    }
}

#[tokio::test]
async fn lifecycle_the_daemon_cannot_dump_core() {
    // Its memory holds decrypted mail: no core file may put it on disk.
    let setup = Setup::new();
    let mut daemon = setup.start();
    let limits = fs::read_to_string(format!("/proc/{}/limits", daemon.pid())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("core limit line");
    assert_eq!(
        core.split_whitespace().skip(4).take(2).collect::<Vec<_>>(),
        ["0", "0"],
        "{core}"
    );
    assert!(
        !daemon.stderr().contains("core dumps"),
        "{}",
        daemon.stderr()
    );
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait().success());
}

#[tokio::test]
async fn lifecycle_shutdown_command() {
    let setup = Setup::new();
    let mut daemon = setup.start();
    let mut client = Client::connect(&setup.socket).await.unwrap();
    client.shutdown().await.unwrap();
    assert_eq!(daemon.wait().code(), Some(0), "{}", daemon.stderr());
    assert!(!setup.socket.exists(), "socket left behind");
    assert!(setup.log().contains("mailproxyd stopped"));
}

#[tokio::test]
async fn lifecycle_second_instance_is_refused() {
    let setup = Setup::new();
    let first = setup.start();
    let mut second = setup.spawn();
    let status = second.wait();
    assert_eq!(status.code(), Some(1));
    let err = second.stderr();
    assert!(
        err.contains("already running") && err.contains(&format!("pid {}", first.pid())),
        "{err}"
    );
    // The first instance is unaffected.
    let mut client = Client::connect(&setup.socket).await.unwrap();
    assert!(client.version().await.is_ok());
}

#[tokio::test]
async fn lifecycle_stale_socket_is_replaced_live_socket_refused() {
    let setup = Setup::new();
    setup.make_dirs();
    // A socket file with nobody listening, as a crash leaves it.
    drop(std::os::unix::net::UnixListener::bind(&setup.socket).unwrap());
    assert!(setup.socket.exists());
    let _daemon = setup.start();
    let mut client = Client::connect(&setup.socket).await.unwrap();
    assert!(client.version().await.is_ok());

    // Another daemon (own DataDir) pointed at the same, live socket fails loudly.
    let other = Setup::with_extra("");
    let text = fs::read_to_string(&other.config).unwrap().replace(
        "[Management]\nEnable = true\n",
        &format!(
            "[Management]\nEnable = true\nPath = \"{}\"\n",
            setup.socket.display()
        ),
    );
    fs::write(&other.config, text).unwrap();
    let mut second = other.spawn();
    assert_eq!(second.wait().code(), Some(1));
    assert!(second.stderr().contains("in use"), "{}", second.stderr());
    assert!(client.version().await.is_ok());
}

#[test]
fn lifecycle_fatal_errors_exit_non_zero() {
    // DataDir with loose permissions.
    let setup = Setup::new();
    fs::create_dir(&setup.data_dir).unwrap();
    fs::set_permissions(&setup.data_dir, fs::Permissions::from_mode(0o755)).unwrap();
    let mut d = setup.spawn();
    assert_eq!(d.wait().code(), Some(1));
    assert!(d.stderr().contains("chmod 700"), "{}", d.stderr());

    // A corrupt private key names the file and does not panic.
    let setup = Setup::new();
    let mut d = setup.start();
    d.signal(libc::SIGTERM);
    assert!(d.wait().success());
    let key = setup.data_dir.join("alice@provider-0/identity.private.pem");
    fs::write(
        &key,
        "-----BEGIN X25519 PRIVATE KEY-----\nAAAA\n-----END X25519 PRIVATE KEY-----\n",
    )
    .unwrap();
    let mut d = setup.spawn();
    assert_eq!(d.wait().code(), Some(1));
    let err = d.stderr();
    assert!(
        err.contains("identity.private.pem") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn lifecycle_hash_password() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailproxyd"))
        .arg("--hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let phc = String::from_utf8(out.stdout).unwrap();
    assert!(mailproxyd::auth::verify_password(phc.trim(), "s3cret"));
    assert!(!mailproxyd::auth::verify_password(phc.trim(), "s3cret\n"));
}
