//! The management socket against hostile and concurrent clients (real binary).

#[path = "lifecycle_support/mod.rs"]
mod support;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};

use mailproxy_proto::{Client, StatusCode, MAX_LINE};
use support::Setup;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

#[tokio::test]
async fn mgmt_socket_is_private() {
    let setup = Setup::new();
    let _daemon = setup.start();
    let meta = std::fs::symlink_metadata(&setup.socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let dir = std::fs::metadata(setup.socket.parent().unwrap()).unwrap();
    assert_eq!(dir.permissions().mode() & 0o777, 0o700);
}

async fn expect(
    lines: &mut tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    code: u16,
) {
    let line = lines.next_line().await.unwrap().expect("reply");
    assert!(
        line.starts_with(&format!("{code} ")),
        "expected {code}, got {line:?}"
    );
}

#[tokio::test]
async fn mgmt_socket_refuses_garbage_without_affecting_others() {
    let setup = Setup::new();
    let _daemon = setup.start();

    let mut good = Client::connect(&setup.socket).await.unwrap();
    good.set_recipient("bob@provider-1", &[7; 32])
        .await
        .unwrap();

    let stream = UnixStream::connect(&setup.socket).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let greeting = lines.next_line().await.unwrap().unwrap();
    assert!(greeting.starts_with("220 "));

    // Binary garbage with a newline: not UTF-8.
    write.write_all(b"\xff\xfe\x00\x01garbage\n").await.unwrap();
    expect(&mut lines, 501).await;
    // Control characters.
    write
        .write_all(b"GET_RECIPIENT bob\x07@provider-1\n")
        .await
        .unwrap();
    expect(&mut lines, 501).await;
    // Unknown command.
    write.write_all(b"FROBNICATE now\r\n").await.unwrap();
    expect(&mut lines, 500).await;
    // A line far over the limit, sent in pieces, then a valid command on the same stream.
    let long = vec![b'A'; MAX_LINE * 8];
    write.write_all(&long).await.unwrap();
    write.write_all(b"AAAA\nVERSION\n").await.unwrap();
    expect(&mut lines, 501).await;
    expect(&mut lines, 250).await;

    // Meanwhile another client works normally, and the garbage changed nothing.
    assert_eq!(good.get_recipient("bob@provider-1").await.unwrap(), [7; 32]);
    assert_eq!(good.list_recipients().await.unwrap().len(), 1);

    // The garbage client can still use the protocol too.
    write
        .write_all(b"GET_RECIPIENT bob@provider-1\n")
        .await
        .unwrap();
    expect(&mut lines, 250).await;
    write.write_all(b"QUIT\n").await.unwrap();
    expect(&mut lines, 250).await;
    assert!(
        lines.next_line().await.unwrap().is_none(),
        "server closes after QUIT"
    );
}

#[tokio::test]
async fn mgmt_many_clients_at_once() {
    let setup = Setup::new();
    let _daemon = setup.start();
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let socket = setup.socket.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(&socket).await.unwrap();
            let addr = format!("user{i}@provider-1");
            c.set_recipient(&addr, &[i; 32]).await.unwrap();
            assert_eq!(c.get_recipient(&addr).await.unwrap(), [i; 32]);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut c = Client::connect(&setup.socket).await.unwrap();
    let list = c.list_recipients().await.unwrap();
    assert_eq!(list.len(), 16);
    let mut sorted = list.clone();
    sorted.sort();
    assert_eq!(list, sorted);
    // Unknown command gives the original's text.
    c.send_raw(b"HELP\n").await.unwrap();
    let status = c.read_status().await.unwrap();
    assert_eq!(status.code, StatusCode::UNRECOGNISED);
    assert_eq!(status.text, "Syntax error, command unrecognised");
}

#[tokio::test]
async fn mgmt_client_that_never_reads_does_not_block_shutdown() {
    let setup = Setup::new();
    let mut daemon = setup.start();
    let mut stuck = UnixStream::connect(&setup.socket).await.unwrap();
    // Many requests whose replies are never read: the server ends up blocked
    // writing to this client.
    let flood = b"VERSION\n".repeat(50_000);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), stuck.write_all(&flood)).await;
    // Other clients are still served.
    let mut other = Client::connect(&setup.socket).await.unwrap();
    assert!(other.version().await.is_ok());
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait().code(), Some(0), "{}", daemon.stderr());
    assert!(!setup.socket.exists());
    drop(stuck);
}
