//! Every bad-config fixture is rejected with its expected one-line error,
//! both by the library and by the `mailproxyd` binary (non-zero exit).
//!
//! Each fixture's first line is `# expect: <text the error must contain>`.

use std::path::{Path, PathBuf};
use std::process::Command;

use mailproxyd::config::Config;

fn fixtures() -> Vec<(PathBuf, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad-config");
    let mut out: Vec<(PathBuf, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fixture dir {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let expect = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("# expect: "))
                .unwrap_or_else(|| panic!("{}: first line must be '# expect: ...'", p.display()))
                .to_owned();
            (p, expect)
        })
        .collect();
    out.sort();
    assert!(
        out.len() >= 30,
        "expected the full fixture set, found {}",
        out.len()
    );
    out
}

#[test]
fn library_rejects_each_fixture_with_one_line() {
    for (path, expect) in fixtures() {
        let err = match Config::load(&path) {
            Ok(_) => panic!("{} was accepted", path.display()),
            Err(e) => e.to_string(),
        };
        assert!(
            !err.contains('\n'),
            "{}: multi-line error {err:?}",
            path.display()
        );
        assert!(err.starts_with("config: "), "{}: {err}", path.display());
        assert!(
            err.contains(&expect),
            "{}: error {err:?} lacks {expect:?}",
            path.display()
        );
    }
}

/// `mailproxyd --check-config -f <path>`.
fn check_config(path: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mailproxyd"))
        .arg("--check-config")
        .arg("-f")
        .arg(path)
        .output()
        .unwrap()
}

#[test]
fn binary_exits_non_zero_with_the_error_on_one_line() {
    for (path, expect) in fixtures() {
        let out = check_config(&path);
        assert_eq!(out.status.code(), Some(2), "{}", path.display());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{}: {stderr:?}", path.display());
        assert!(
            stderr.contains(&expect),
            "{}: {stderr:?} lacks {expect:?}",
            path.display()
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn sample_config_is_valid() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("mailproxyd.sample.toml");
    let config = Config::load(&sample).unwrap_or_else(|e| panic!("{}: {e}", sample.display()));
    assert_eq!(config.accounts.len(), 1);
    assert!(config.management.enable);
}

/// The 2019 Go mailproxy's config for a voting network passes as it is.
#[test]
fn binary_accepts_the_go_voting_config() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/katzenpost-2019/voting_mailproxy.toml");
    assert!(path.exists(), "missing test vector file {}", path.display());
    let out = check_config(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("is valid"),
        "{out:?}"
    );
}

#[test]
fn missing_file_is_a_clear_error() {
    let err = Config::load(Path::new("/nonexistent/mailproxyd.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/mailproxyd.toml"), "{err}");
}
