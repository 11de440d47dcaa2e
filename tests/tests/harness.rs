//! The harness itself: children die with a panicking test, and a daemon
//! SIGKILLed comes back on the same DataDir with the same keys.

use std::path::Path;
use std::sync::mpsc;

use mailproxy_e2e::World;

#[test]
fn daemons_are_killed_when_a_test_panics() {
    let (tx, rx) = mpsc::channel();
    let test = std::thread::spawn(move || {
        let world = World::simple(&["alice@provider1"]);
        tx.send(world.daemons[0].pid().expect("running"))
            .expect("send");
        panic!("deliberate panic: the world must clean up");
    });
    assert!(test.join().is_err(), "the thread panicked");
    let pid = rx.recv().expect("the daemon started");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "mailproxyd {pid} outlived the panicking test"
    );
}

#[test]
fn a_sigkilled_daemon_restarts_on_its_data_dir() {
    let mut world = World::simple(&["alice@provider1", "bob@provider2"]);
    let before = world.daemons[0].ctl(&["accounts"]);
    assert!(before.0, "accounts: {}", before.1);
    let pid = world.daemons[0].pid().expect("running");
    world.daemons[0].kill9();
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    world.daemons[0].start();
    assert_ne!(world.daemons[0].pid(), Some(pid));
    let after = world.daemons[0].ctl(&["accounts"]);
    assert!(after.0, "accounts: {}", after.1);
    assert_eq!(
        before.1, after.1,
        "same accounts and keys after the restart"
    );
    assert!(before.1.to_string().contains("alice@provider1"));
}
