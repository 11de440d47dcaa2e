//! The workspace's binaries the tests run as child processes.
//!
//! Tests of another package cannot use `CARGO_BIN_EXE_mailproxyd`; the
//! binaries are found beside the test executable (`target/<profile>/`).
//! `cargo test --workspace` builds them before any test runs. When one is
//! missing or older than the sources it is built from (e.g. after
//! `cargo test -p mailproxy-e2e` alone), the harness runs
//! `$CARGO build -p mailproxyd -p mailproxyctl` once (cargo does not hold its
//! build lock while tests run, so this does not deadlock).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

/// The binaries the harness needs.
const BINARIES: [&str; 2] = ["mailproxyd", "mailproxyctl"];
/// Workspace members whose sources go into those binaries.
const SOURCES: [&str; 4] = ["mailproxyd", "mailproxyctl", "proto", "katzenpost"];

/// `target/<profile>`: the directory of the running test executable, or its
/// parent for `deps/` and `examples/`.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe has a parent").to_path_buf();
    if matches!(
        dir.file_name().and_then(|n| n.to_str()),
        Some("deps" | "examples")
    ) {
        dir.pop();
    }
    dir
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

fn newest_mtime(path: &Path, newest: &mut SystemTime) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.is_dir() {
        if let Ok(rd) = std::fs::read_dir(path) {
            for e in rd.flatten() {
                newest_mtime(&e.path(), newest);
            }
        }
    } else if let Ok(m) = meta.modified() {
        if m > *newest {
            *newest = m;
        }
    }
}

fn stale(bin: &Path, sources_newest: SystemTime) -> bool {
    match std::fs::metadata(bin).and_then(|m| m.modified()) {
        Ok(m) => m < sources_newest,
        Err(_) => true,
    }
}

fn build_command(profile_dir: &Path) -> Vec<String> {
    let mut args = vec!["build".to_string()];
    for b in BINARIES {
        args.push("-p".into());
        args.push(b.into());
    }
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => args.push("--release".into()),
        Some(other) => {
            args.push("--profile".into());
            args.push(other.into());
        }
    }
    args
}

fn ensure_built() -> Result<(), String> {
    let dir = target_dir();
    let root = workspace_root();
    let mut newest = SystemTime::UNIX_EPOCH;
    for s in SOURCES {
        newest_mtime(&root.join(s).join("src"), &mut newest);
        newest_mtime(&root.join(s).join("Cargo.toml"), &mut newest);
    }
    if !BINARIES.iter().any(|b| stale(&dir.join(b), newest)) {
        return Ok(());
    }
    let args = build_command(&dir);
    let hint = format!("cargo {} (in {})", args.join(" "), root.display());
    let Ok(cargo) = std::env::var("CARGO") else {
        return Err(format!(
            "{} is missing or older than its sources, and CARGO is not set to build it: run `{hint}` first",
            dir.join("mailproxyd").display()
        ));
    };
    eprintln!("mailproxy-e2e: building the binaries: {hint}");
    let status = Command::new(cargo)
        .args(&args)
        .current_dir(&root)
        .status()
        .map_err(|e| format!("running `{hint}`: {e}"))?;
    if !status.success() {
        return Err(format!("`{hint}` failed: {status}"));
    }
    for b in BINARIES {
        if !dir.join(b).exists() {
            return Err(format!(
                "`{hint}` did not produce {}",
                dir.join(b).display()
            ));
        }
    }
    Ok(())
}

/// The path of workspace binary `name` (one of mailproxyd, mailproxyctl),
/// built first if needed. Panics naming the build command when it cannot be.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(e) = BUILT.get_or_init(ensure_built) {
        panic!("{e}");
    }
    target_dir().join(name)
}
