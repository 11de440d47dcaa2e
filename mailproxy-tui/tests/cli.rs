//! Command-line errors are reported before the terminal is touched.

use std::process::Command;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mailproxy-tui"))
        .args(args)
        .env_remove("MAILPROXYD_SOCKET")
        .env_remove("MAILPROXYD_CONFIG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn missing_config_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nope.toml");
    let (ok, stdout, stderr) = run(&["--config", config.to_str().unwrap()]);
    assert!(!ok);
    assert!(stdout.is_empty(), "no terminal setup: {stdout:?}");
    assert!(stderr.contains("cannot read config file"), "{stderr}");
    assert!(
        stderr.contains("use --socket PATH or --config FILE"),
        "{stderr}"
    );
}

#[test]
fn config_without_socket_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[Logging]\nLevel = \"DEBUG\"\n").unwrap();
    let (ok, _, stderr) = run(&["--config", config.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("no [Proxy] DataDir"), "{stderr}");
}

#[test]
fn bad_arguments() {
    let (ok, _, stderr) = run(&["--socket", "/x", "--level", "loud"]);
    assert!(!ok);
    assert!(stderr.contains("unknown level 'loud'"), "{stderr}");
    let (ok, _, stderr) = run(&["--socket", "/x", "--config", "/y"]);
    assert!(!ok);
    assert!(stderr.contains("cannot be used with"), "{stderr}");
    let (ok, stdout, _) = run(&["--help"]);
    assert!(ok);
    assert!(stdout.contains("--socket") && stdout.contains("[Management] Path"));
}
