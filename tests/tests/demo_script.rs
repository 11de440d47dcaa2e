//! `scripts/demo` checks that its listener ports are free before it builds
//! or starts anything, and says which one is taken.

use std::net::TcpListener;
use std::process::Command;

/// Runs scripts/demo into a fresh directory under a private HOME; returns
/// (exit code, stderr, whether the demo directory was created).
fn demo() -> (Option<i32>, String, bool) {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("demo");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/demo");
    let out = Command::new(script)
        .arg(&dir)
        .env("HOME", home.path())
        .env_remove("XDG_STATE_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        dir.exists(),
    )
}

#[test]
fn a_second_demo_says_which_port_is_taken_and_starts_nothing() {
    for port in [2525, 2524] {
        // Held by this test (or already by someone else: taken either way).
        let _held = TcpListener::bind(("127.0.0.1", port));
        let (code, stderr, created) = demo();
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("127.0.0.1:{port} is already in use")),
            "{stderr}"
        );
        assert!(!created, "nothing started");
        assert!(!stderr.contains("Compiling"), "it stops before building");
    }
}
