//! A real SOCKS5 server for the `[UpstreamProxy]` tests, and what the
//! testnet's providers saw.
// Each test crate that includes this module uses a part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use testnet::network::Network;

/// The address microsocks's outgoing connections leave from.
pub const OUTGOING: &str = "127.0.0.2";

/// A helper process started by a test, killed (by its own pid) when dropped.
pub struct Helper(std::process::Child);

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `program` with `args`; the test fails if it is not installed.
fn spawn(program: &str, args: &[String]) -> Helper {
    std::process::Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .map(Helper)
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): run scripts/install-test-deps as root")
        })
}

/// Starts socat listening on `path`, relaying each connection to `to` (a
/// SOCKS5 server reached with `Network = "unix"`), and waits until the
/// socket exists.
pub async fn unix_relay(path: &std::path::Path, to: SocketAddr) -> Helper {
    let relay = spawn(
        "socat",
        &[
            format!("UNIX-LISTEN:{},fork", path.display()),
            format!("TCP:{to}"),
        ],
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "socat did not listen on {}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    relay
}

/// A loopback port free at the moment.
pub fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Starts Debian's microsocks (installed by scripts/install-test-deps) on
/// `addr` with its outgoing connections bound to [`OUTGOING`], and waits
/// until it accepts connections. The test fails if it is not installed.
pub async fn microsocks(addr: SocketAddr) -> Helper {
    let socks = spawn(
        "microsocks",
        &[
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            addr.port().to_string(),
            "-b".into(),
            OUTGOING.into(),
        ],
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "microsocks did not listen on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    socks
}

/// The client addresses `provider` saw, by user.
pub fn client_peers(net: &Network, provider: &str) -> BTreeMap<String, BTreeSet<IpAddr>> {
    net.node(provider)
        .unwrap()
        .provider
        .as_ref()
        .unwrap()
        .client_peers()
}

/// Asserts that each `(provider, user)` saw only its user, and only from
/// the proxy's outgoing address.
pub fn assert_only_proxied(net: &Network, users: &[(&str, &str)]) {
    let via_proxy: BTreeSet<IpAddr> = [OUTGOING.parse().unwrap()].into();
    for (provider, user) in users {
        assert_eq!(
            client_peers(net, provider),
            BTreeMap::from([(user.to_string(), via_proxy.clone())]),
            "{provider} saw a client from outside the proxy"
        );
    }
}
