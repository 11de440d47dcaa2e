//! A provider's HTTP registration endpoint, spoken to with raw HTTP/1.1:
//! a registration is stored as ADD_USER + SET_USER_IDENTITY would; a taken
//! name, a bad key, a malformed form, another method or path get a clear
//! error; the endpoint is off unless the network asks for it, and
//! `testnet info` prints where it is.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use testnet::network::{Network, Shape};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends one request; returns the status code and the body.
async fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {out:?}"));
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn form(user: &str, link: [u8; 32], identity: [u8; 32]) -> String {
    let b64 = |k: [u8; 32]| {
        form_urlencoded::byte_serialize(
            base64::engine::general_purpose::STANDARD
                .encode(k)
                .as_bytes(),
        )
        .collect::<String>()
    };
    format!(
        "version=0&command=register_link_and_identity_key&user={user}&link_key={}&identity_key={}",
        b64(link),
        b64(identity)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_over_http_registers_and_refuses_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let shape = Shape {
        registration: true,
        ..Shape::default()
    };
    let net = Network::launch(dir.path(), &shape, false, Duration::from_secs(30))
        .await
        .unwrap();
    let spec = net.spec.node("provider1").unwrap().clone();
    let addr = spec.registration.expect("a registration endpoint");
    let mix = net.spec.nodes.iter().find(|n| n.name == "mix1").unwrap();
    assert_eq!(mix.registration, None, "only providers register users");
    let provider = net.node("provider1").unwrap().provider.as_ref().unwrap();
    // `testnet info` tells where to register.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_testnet"))
        .args(["info", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&out.stdout);
    assert!(
        info.contains(&format!(
            "# provider1 registers accounts at http(s)://{addr}/registration\n"
        )),
        "{info}"
    );
    let ca = dir.path().join(testnet::registration::CA_FILE);
    assert!(
        std::fs::read_to_string(&ca)
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"),
        "{}",
        ca.display()
    );
    assert!(
        info.contains(&format!("its CA certificate: {}\n", ca.display())),
        "{info}"
    );
    // Into a pipe whose reader is gone (`testnet info | head -1`): rc 0.
    let mut reader = std::process::Command::new("true")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let closed = reader.stdin.take().unwrap();
    assert!(reader.wait().unwrap().success());
    let piped = std::process::Command::new(env!("CARGO_BIN_EXE_testnet"))
        .args(["info", "--dir"])
        .arg(dir.path())
        .stdout(closed)
        .output()
        .unwrap();
    assert!(
        piped.status.success(),
        "{}",
        String::from_utf8_lossy(&piped.stderr)
    );
    // And the whole `mailproxyd -r` command for a new account there.
    assert!(
        info.contains(&format!(
            "#   mailproxyd -r -account USER -provider provider1 -providerKey {} -authority {} -authorityKey {} -registrationAddr {addr} -registrationCA {} -dataDir DATADIR\n",
            spec.identity_public,
            net.spec.authority.address,
            net.spec.authority.identity_public,
            ca.display()
        )),
        "{info}"
    );

    let (status, body) = request(
        addr,
        "POST",
        "/registration",
        &form("Alice", [1; 32], [2; 32]),
    )
    .await;
    assert_eq!((status, body.trim()), (200, "OK"));
    let user = provider.user("alice").expect("alice is registered");
    assert_eq!(user.link_key, [1; 32]);
    assert_eq!(user.identity_key, Some([2; 32]));

    let (status, body) = request(
        addr,
        "POST",
        "/registration",
        &form("alice", [3; 32], [4; 32]),
    )
    .await;
    assert_eq!(status, 409);
    assert!(body.contains("the user name 'alice' is taken"), "{body}");
    assert_eq!(
        provider.user("alice").unwrap().link_key,
        [1; 32],
        "unchanged"
    );

    let bad_key = form("bob", [1; 32], [2; 32]).replace("link_key=", "link_key=AA");
    let (status, body) = request(addr, "POST", "/registration", &bad_key).await;
    assert_eq!(status, 400);
    assert!(
        body.contains("link_key is not a base64 32-byte key"),
        "{body}"
    );
    let (status, body) = request(addr, "POST", "/registration", "version=0&user=bob").await;
    assert_eq!(status, 400);
    assert!(body.contains("'command' is missing"), "{body}");
    let (status, body) = request(
        addr,
        "POST",
        "/registration",
        &form("bad%20name", [1; 32], [2; 32]),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(provider.user("bob").is_none());
    let huge = "x".repeat(10_000);
    let (status, _) = request(addr, "POST", "/registration", &huge).await;
    assert_eq!(status, 413);
    let (status, _) = request(addr, "GET", "/registration", "").await;
    assert_eq!(status, 405);
    let (status, _) = request(addr, "POST", "/other", &form("carol", [1; 32], [2; 32])).await;
    assert_eq!(status, 404);
    assert!(provider.user("carol").is_none());
    net.shutdown().await;
}

#[test]
fn registration_is_off_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let spec = testnet::network::init(dir.path(), &Shape::default()).unwrap();
    assert!(spec.nodes.iter().all(|n| n.registration.is_none()));
}
