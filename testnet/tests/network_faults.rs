//! Fault injection and provider features on a running network: packet loss
//! at a mix, a provider stopped and restarted with its spool intact, the
//! authority refusing connections, the rate limiter, the management socket.

use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use katzenpost::block::ForwardBody;
use katzenpost::path::{select_paths, PathRequest};
use katzenpost::sphinx;
use katzenpost::wire::commands::Command;
use katzenpost::wire::handshake::{ExpectPeer, LocalIdentity};
use rand::rngs::OsRng;
use rand::RngCore;
use testnet::config::Params;
use testnet::link::{dial, recv, send, session_config};
use testnet::network::{Network, Shape};

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

async fn start(rate_limit: bool, mixes_per_layer: usize) -> (tempfile::TempDir, Network) {
    let dir = tempfile::tempdir().unwrap();
    let mut params = Params::demo();
    params.document.mu = 1.0 / 2.0;
    params.document.mu_max_delay = 10;
    params.document.send_rate_per_minute = 60;
    params.send_burst = 3;
    let shape = Shape {
        params,
        mixes_per_layer,
        ..Shape::default()
    };
    let net = Network::launch(dir.path(), &shape, rate_limit, Duration::from_secs(30))
        .await
        .unwrap();
    (dir, net)
}

fn register(net: &Network, provider: &str, user: &str) -> [u8; 32] {
    let mut link = [0u8; 32];
    OsRng.fill_bytes(&mut link);
    net.node(provider)
        .unwrap()
        .provider
        .as_ref()
        .unwrap()
        .add_user(user, sphinx::public_key(&link), None)
        .unwrap();
    link
}

async fn client(
    net: &Network,
    user: &str,
    link: [u8; 32],
) -> katzenpost::wire::session::Session<tokio::net::TcpStream> {
    let p1 = net.node("provider1").unwrap();
    let doc = p1.document(p1.clock.now().epoch).unwrap();
    let desc = doc.provider_by_name("provider1").unwrap().clone();
    let config = session_config(
        LocalIdentity::new(link, user.as_bytes().to_vec()).unwrap(),
        Arc::new(ExpectPeer::from_descriptor(&desc)),
    );
    dial(&desc.addresses["tcp4"][0], &config).await.unwrap()
}

/// An unreliable (no SURB) block for bob at provider2.
fn packet(net: &Network, tag: u8) -> Vec<u8> {
    let p1 = net.node("provider1").unwrap();
    let doc = p1.document(p1.clock.now().epoch).unwrap();
    let req = PathRequest {
        src_provider: "provider1",
        dst_provider: "provider2",
        recipient: b"bob",
        surb: None,
    };
    let paths = select_paths(&doc, &p1.clock, &req, &mut OsRng, now).unwrap();
    let body = ForwardBody {
        surb: None,
        user_payload: &[tag; 100],
    }
    .encode()
    .unwrap();
    sphinx::create_packet(&mut OsRng, &paths.forward, &body).unwrap()
}

async fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_at_a_mix_and_a_provider_restart() {
    let (_dir, mut net) = start(false, 1).await;
    let alice = register(&net, "provider1", "alice");
    register(&net, "provider2", "bob");
    let mut s = client(&net, "alice", alice).await;
    // Every packet crosses mix2 (one mix per layer): drop half there.
    net.node("mix2").unwrap().set_drop_fraction(0.5);
    for i in 0..40 {
        send(&mut s, &Command::SendPacket(packet(&net, i)))
            .await
            .unwrap();
    }
    let mix2 = net.node("mix2").unwrap().clone();
    wait_for("40 packets at mix2", 20, || {
        mix2.counters.received.load(Ordering::Relaxed) >= 40
    })
    .await;
    let dropped = mix2.counters.dropped_fault.load(Ordering::Relaxed);
    assert!(
        (5..=35).contains(&dropped),
        "dropped {dropped} of 40 at 50%"
    );
    let p2 = net.node("provider2").unwrap().provider.as_ref().unwrap();
    wait_for("survivors spooled", 20, || {
        p2.spool_len("bob").unwrap() as u64 == 40 - dropped
    })
    .await;
    let spooled = p2.spool_len("bob").unwrap();

    // Stop provider2: its spool survives on disk and it serves again after a restart.
    net.stop_node("provider2").await;
    net.start_node("provider2").await.unwrap();
    let p2 = net.node("provider2").unwrap().provider.as_ref().unwrap();
    assert_eq!(p2.spool_len("bob").unwrap(), spooled);
    mix2.set_drop_fraction(0.0);
    let mix2 = net.node("mix2").unwrap().clone();
    let before = mix2.counters.received.load(Ordering::Relaxed);
    // The restarted provider listens again; mix3's link to it reconnects.
    let p2node = net.node("provider2").unwrap().clone();
    wait_for("provider2 document", 20, || {
        p2node.document(p2node.clock.now().epoch).is_some()
    })
    .await;
    for i in 0..5 {
        send(&mut s, &Command::SendPacket(packet(&net, i)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_for("mix2 traffic", 20, || {
        mix2.counters.received.load(Ordering::Relaxed) >= before + 5
    })
    .await;
    let p2 = net.node("provider2").unwrap().provider.as_ref().unwrap();
    wait_for("new blocks after the restart", 20, || {
        p2.spool_len("bob").unwrap() > spooled
    })
    .await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authority_refusal_does_not_stop_traffic() {
    let (_dir, net) = start(false, 1).await;
    net.authority.refuse.store(true, Ordering::Relaxed);
    let auth_key: [u8; 32] = hex::decode(&net.spec.authority.identity_public)
        .unwrap()
        .try_into()
        .unwrap();
    let config = session_config(
        LocalIdentity::ephemeral(&mut OsRng, Vec::new()).unwrap(),
        Arc::new(ExpectPeer::authority(&auth_key).unwrap()),
    );
    let r = testnet::link::request(
        &net.spec.authority.address.to_string(),
        &config,
        &Command::GetConsensus { epoch: 1 },
    )
    .await;
    assert!(r.is_err(), "a refusing authority must not answer");
    // The nodes keep their documents, so packets still flow.
    let alice = register(&net, "provider1", "alice");
    register(&net, "provider2", "bob");
    let mut s = client(&net, "alice", alice).await;
    send(&mut s, &Command::SendPacket(packet(&net, 1)))
        .await
        .unwrap();
    let p2 = net.node("provider2").unwrap().provider.as_ref().unwrap();
    wait_for("delivery while the authority refuses", 20, || {
        p2.spool_len("bob").unwrap() == 1
    })
    .await;
    net.authority.refuse.store(false, Ordering::Relaxed);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limiter_drops_beyond_the_burst() {
    let (_dir, net) = start(true, 1).await;
    let alice = register(&net, "provider1", "alice");
    register(&net, "provider2", "bob");
    let mut s = client(&net, "alice", alice).await;
    let t0 = std::time::Instant::now();
    for i in 0..10 {
        send(&mut s, &Command::SendPacket(packet(&net, i)))
            .await
            .unwrap();
    }
    // One RetrieveMessage round trip orders us after the packets' processing.
    send(&mut s, &Command::RetrieveMessage { sequence: 0 })
        .await
        .unwrap();
    let _ = recv(&mut s).await.unwrap();
    let p1 = net.node("provider1").unwrap();
    // Burst 3 at one packet per second: 3 go through, plus one per second elapsed.
    let passed_max = 3 + t0.elapsed().as_secs() + 1;
    let limited = p1.counters.rate_limited.load(Ordering::Relaxed);
    assert!(
        limited <= 7 && 10 - limited <= passed_max,
        "rate limited {limited} of 10"
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_socket_and_add_user_cli() {
    let (dir, net) = start(false, 1).await;
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_testnet"))
        .args(["add-user", "--dir"])
        .arg(dir.path())
        .args([
            "--provider",
            "provider1",
            "--user",
            "Carol",
            "--link-key",
            &"ab".repeat(32),
        ])
        .args(["--identity-key", &"cd".repeat(32)])
        .status()
        .unwrap();
    assert!(status.success());
    let p1 = net.node("provider1").unwrap().provider.as_ref().unwrap();
    use testnet::process::ProviderContext;
    assert!(p1.user_exists("carol"));
    assert_eq!(p1.identity_key("carol"), Some([0xcd; 32]));
    // Raw protocol: banner, USER_LINK, a bad command, QUIT.
    let sock =
        std::os::unix::net::UnixStream::connect(dir.path().join("provider1/management_sock"))
            .unwrap();
    let mut w = sock.try_clone().unwrap();
    let mut r = BufReader::new(sock);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("220 provider1 "), "{line}");
    for (req, want) in [
        (
            "USER_LINK carol",
            "250 q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=",
        ),
        ("FROB", "500 "),
        ("ADD_USER x", "501 "),
        ("USER_IDENTITY nobody", "554 "),
        ("QUIT", "250 "),
    ] {
        writeln!(w, "{req}").unwrap();
        line.clear();
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with(want), "{req}: {line:?}");
    }
    net.shutdown().await;
}
