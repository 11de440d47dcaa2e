//! A real full filesystem under a running daemon (a small tmpfs the test
//! mounts; CI runs as root): mail for bob arrives while his DataDir is full.
//! The daemon says so (STATUS store=full), refuses SMTP with 452 4.3.1,
//! leaves the blocks at the provider, and once space is freed delivers every
//! message exactly once, without a restart.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mailproxy_e2e::mail::{self, strip_added};
use mailproxy_e2e::{wait_for, DaemonSpec, World};

const ALICE: &str = "alice@provider1";
const BOB: &str = "bob@provider2";

/// Bound for a batch to cross the network (the machine is loaded).
const DELIVERY: Duration = Duration::from_secs(300);

/// A tmpfs mounted for the test; unmounted on drop, also after a panic.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(at)
            .status()
            .expect("running mount")
            .success();
        assert!(
            ok,
            "mounting a tmpfs at {} failed: this test needs root (CI runs as root)",
            at.display()
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes a file until the filesystem is full; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = fs::File::create(&path).expect("filler");
    let chunk = vec![0x5au8; 64 * 1024];
    loop {
        if let Err(e) = f.write_all(&chunk).and_then(|_| f.sync_data()) {
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "filling: {e}");
            break;
        }
    }
    // Smaller pieces too, so not even a page is left.
    loop {
        if f.write_all(&[0u8; 512])
            .and_then(|_| f.sync_data())
            .is_err()
        {
            return path;
        }
    }
}

/// bob's STATUS line as JSON.
fn bob_status(world: &World) -> serde_json::Value {
    let (ok, v) = world.daemon_of(BOB).ctl(&["status"]);
    assert!(ok, "mailproxyctl status failed: {v}");
    v.as_array()
        .and_then(|a| a.iter().find(|s| s["account"] == BOB).cloned())
        .unwrap_or_else(|| panic!("no status for {BOB}: {v}"))
}

#[test]
fn mail_arriving_on_a_full_disk_is_delivered_once_after_space_returns() {
    let mut world = World::builder()
        .daemon(DaemonSpec::new(&[ALICE]))
        .daemon(DaemonSpec::new(&[BOB]).stopped())
        .build();
    // Put bob's DataDir (keys, store, log) on a 24 MiB tmpfs.
    let bob_i = world.daemon_index(BOB);
    let data = world.daemons[bob_i].data_dir.clone();
    let saved = data.with_extension("before-tmpfs");
    fs::rename(&data, &saved).expect("moving DataDir aside");
    fs::create_dir(&data).expect("DataDir mount point");
    let _tmpfs = Tmpfs::mount(&data, "24m");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", saved.display()))
        .arg(&data)
        .status()
        .expect("cp")
        .success();
    assert!(copied, "copying DataDir onto the tmpfs");
    world.daemons[bob_i].start();
    let pid = world.daemons[bob_i].pid();
    wait_for(
        "bob's provider link",
        DELIVERY,
        Duration::from_millis(250),
        || (bob_status(&world)["connection"] == "up").then_some(()),
    );

    let filler = fill(&data);

    // Two-block messages: more than the store's free pages can take.
    let mut sent = BTreeMap::new();
    for i in 0..8 {
        let subject = format!("full disk {i}");
        let body = mail::big_body(60_000, i as u64);
        sent.insert(
            subject.clone(),
            mail::message(ALICE, &[BOB], &subject, &body),
        );
    }
    let mut smtp = mail::Smtp::connect(world.daemon_of(ALICE).smtp, &world.login(ALICE))
        .expect("SMTP to alice");
    for m in sent.values() {
        smtp.send(ALICE, &[BOB], m).expect("alice queues");
    }
    smtp.quit().expect("QUIT");

    // bob's store fills up: STATUS says so, with the operating system's error.
    let status = wait_for(
        "bob's STATUS to show store=full",
        DELIVERY,
        Duration::from_millis(200),
        || {
            let s = bob_status(&world);
            (s["store"] == "full").then_some(s)
        },
    );
    let error = status["store_error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(error.contains("No space left on device"), "{status}");

    // While full: the blocks wait at the provider, SMTP answers 452 4.3.1.
    assert!(
        world.net.spool_len("provider2", "bob") > 0,
        "the provider must keep the blocks bob could not store"
    );
    let mut bob_smtp =
        mail::Smtp::connect(world.daemon_of(BOB).smtp, &world.login(BOB)).expect("SMTP to bob");
    let refused = bob_smtp
        .send(
            BOB,
            &[ALICE],
            &mail::message(BOB, &[ALICE], "while full", "x"),
        )
        .expect_err("a submission on a full disk must be refused");
    assert!(
        refused.to_string().contains("452 4.3.1"),
        "wanted 452 4.3.1, got: {refused}"
    );
    let _ = bob_smtp.quit();

    // Free the space: the daemon carries on by itself.
    fs::remove_file(&filler).expect("removing the filler");
    let freed = Instant::now();
    wait_for(
        "bob's store to recover",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || (bob_status(&world)["store"] == "ok").then_some(()),
    );
    let recovered = freed.elapsed();
    let pop3 = world.daemon_of(BOB).pop3;
    let bob = world.login(BOB);
    wait_for(
        "every message in bob's POP3",
        DELIVERY,
        Duration::from_millis(250),
        || (mail::pop3_count(pop3, &bob) >= sent.len()).then_some(()),
    );
    let delivered_after = freed.elapsed();
    // Exactly once, byte for byte, from alice.
    let alice = world.identity(ALICE);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for m in mail::pop3_all(pop3, &bob) {
        let (key, rest) = strip_added(&m);
        assert_eq!(key.as_deref(), Some(&alice[..]), "sender key");
        let subject = sent
            .iter()
            .find(|(_, s)| s[..] == *rest)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| panic!("bob got a message that was not sent, or altered"));
        *seen.entry(subject).or_default() += 1;
    }
    assert_eq!(seen.len(), sent.len(), "every message arrived: {seen:?}");
    assert!(
        seen.values().all(|&n| n == 1),
        "each exactly once: {seen:?}"
    );
    assert_eq!(world.daemons[bob_i].pid(), pid, "no restart");
    assert_eq!(world.daemons[bob_i].starts, 1, "no restart");
    println!(
        "disk full: store ok {:.2} s after space returned, all {} messages in POP3 after {:.2} s",
        recovered.as_secs_f64(),
        sent.len(),
        delivered_after.as_secs_f64()
    );
}
