//! The daemon's log output as a user sees it when it is not a terminal: no
//! ANSI colour codes, and at the most verbose level (`TRACE`) the daemon's
//! own records but none of the dependencies' (mio, tokio...) below INFO.

#[path = "lifecycle_support/mod.rs"]
mod support;

use std::fs;
use std::process::{Command, Stdio};

use support::{mgmt_line, wait_until, Setup};

#[test]
fn log_output_has_no_colours_off_a_terminal_and_no_dependency_chatter() {
    let setup = Setup::new();
    // Log to standard output (a file here, so not a terminal), at TRACE.
    let text = fs::read_to_string(&setup.config)
        .unwrap()
        .replace("File = \"mailproxyd.log\"\n", "")
        .replace("Level = \"DEBUG\"", "Level = \"TRACE\"");
    fs::write(&setup.config, text).unwrap();
    let out_path = setup.tmp.path().join("stdout");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailproxyd"))
        .arg("-f")
        .arg(&setup.config)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the management socket", || {
        assert!(child.try_wait().unwrap().is_none(), "mailproxyd exited");
        std::os::unix::net::UnixStream::connect(&setup.socket).is_ok()
    });
    // Some socket I/O for mio to (not) talk about.
    assert!(mgmt_line(&setup.socket, "VERSION").starts_with("250 "));
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    assert!(child.wait().unwrap().success());
    let log = fs::read_to_string(&out_path).unwrap();
    assert!(log.contains("mailproxyd stopped"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("DEBUG") && l.contains("mailproxyd")),
        "the daemon's own DEBUG lines are there:\n{log}"
    );
    assert!(!log.contains('\x1b'), "no ANSI escapes:\n{log}");
    for line in log.lines() {
        let verbose = line.contains(" DEBUG ") || line.contains(" TRACE ");
        let own = line.split_whitespace().any(|w| {
            ["mailproxyd", "katzenpost", "mailproxy_proto"]
                .iter()
                .any(|t| w.starts_with(t))
        });
        assert!(own || !verbose, "a dependency's DEBUG/TRACE line: {line}");
    }
}
