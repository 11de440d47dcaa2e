//! Testnet figures (run: `cargo bench -p testnet --bench mix`):
//! 1. packets per second one mix can unwrap and classify (the forwarding
//!    work), beside the bare Sphinx unwrap rate in the same run;
//! 2. per-hop latency overhead above the sampled NodeDelay, through a
//!    running network on 127.0.0.1 (client -> provider -> 3 mixes -> provider).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use katzenpost::block::ForwardBody;
use katzenpost::epoch::EpochClock;
use katzenpost::path::{select_paths, PathRequest};
use katzenpost::sphinx::{self, PathHop, RoutingCommand};
use katzenpost::wire::commands::Command;
use katzenpost::wire::handshake::{ExpectPeer, LocalIdentity};
use rand::rngs::OsRng;
use rand::RngCore;
use testnet::config::Params;
use testnet::link::{dial, send, session_config};
use testnet::mixkeys::MixKeyring;
use testnet::network::{init, Network, Shape};
use testnet::process::{process_packet, Ingress, NodeRole, Outcome};
use testnet::replay::ReplayFilters;

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

fn throughput() {
    let period = Duration::from_secs(600);
    let clock = EpochClock::new(period);
    let t = clock.now();
    let dir = tempfile::tempdir().unwrap();
    let mut keys = MixKeyring::open(dir.path()).unwrap();
    keys.ensure(&mut OsRng, t.epoch).unwrap();
    let pk = keys.public_keys(t.epoch)[&t.epoch];
    let mut other = [0u8; 32];
    OsRng.fill_bytes(&mut other);
    let next = PathHop {
        id: [2; 32],
        public_key: sphinx::public_key(&other),
        commands: vec![],
    };
    let hop = PathHop {
        id: [1; 32],
        public_key: pk,
        commands: vec![RoutingCommand::NodeDelay(1)],
    };
    let body = vec![0u8; katzenpost::geometry::FORWARD_PAYLOAD_LENGTH];
    let n = 2000;
    let packets: Vec<Vec<u8>> = (0..n)
        .map(|_| sphinx::create_packet(&mut OsRng, &[hop.clone(), next.clone()], &body).unwrap())
        .collect();
    // Bare unwrap, same packets.
    let secret = keys.unwrap_candidates(t, period)[0].1.to_bytes();
    let mut copies = packets.clone();
    let start = Instant::now();
    for p in copies.iter_mut() {
        sphinx::unwrap_packet(&secret, p).unwrap();
    }
    let bare = n as f64 / start.elapsed().as_secs_f64();
    let mut replay = ReplayFilters::default();
    let start = Instant::now();
    for p in packets {
        match process_packet(
            p,
            Ingress::Node,
            &NodeRole::Mix,
            &keys,
            &mut replay,
            t,
            period,
        ) {
            Outcome::Forward { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    let mix = n as f64 / start.elapsed().as_secs_f64();
    println!("mix processing: {mix:.0} packets/s on one core; bare Sphinx unwrap {bare:.0}/s; ratio {:.2}", bare / mix);
}

fn latency() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut params = Params::demo();
        params.document.mu = 1.0 / 20.0;
        params.document.mu_max_delay = 200;
        init(dir.path(), &Shape { params, mixes_per_layer: 2, ..Shape::default() }).unwrap();
        let net = Network::start(dir.path(), false).await.unwrap();
        net.wait_ready(Duration::from_secs(30)).await.unwrap();
        let mut link = [0u8; 32];
        OsRng.fill_bytes(&mut link);
        let p1 = net.node("provider1").unwrap().clone();
        p1.provider.as_ref().unwrap().add_user("alice", sphinx::public_key(&link), None).unwrap();
        let p2 = net.node("provider2").unwrap().clone();
        p2.provider.as_ref().unwrap().add_user("bob", [9; 32], None).unwrap();
        let doc = p1.document(p1.clock.now().epoch).unwrap();
        let desc = doc.provider_by_name("provider1").unwrap().clone();
        let config = session_config(
            LocalIdentity::new(link, b"alice".to_vec()).unwrap(),
            Arc::new(ExpectPeer::from_descriptor(&desc)),
        );
        let mut s = dial(&desc.addresses["tcp4"][0], &config).await.unwrap();
        let rounds = 50;
        let mut overheads = Vec::new();
        for i in 0..rounds {
            let req = PathRequest { src_provider: "provider1", dst_provider: "provider2", recipient: b"bob", surb: None };
            let paths = select_paths(&doc, &p1.clock, &req, &mut OsRng, now).unwrap();
            let delay: u64 = paths
                .forward
                .iter()
                .flat_map(|h| &h.commands)
                .filter_map(|c| if let RoutingCommand::NodeDelay(d) = c { Some(*d as u64) } else { None })
                .sum();
            let body = ForwardBody { surb: None, user_payload: &[i as u8; 10] }.encode().unwrap();
            let pkt = sphinx::create_packet(&mut OsRng, &paths.forward, &body).unwrap();
            let spool = p2.provider.as_ref().unwrap();
            let before = spool.spool_len("bob").unwrap();
            let t0 = Instant::now();
            send(&mut s, &Command::SendPacket(pkt)).await.unwrap();
            while spool.spool_len("bob").unwrap() == before {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            let total = t0.elapsed();
            overheads.push(total.as_secs_f64() * 1000.0 - delay as f64);
        }
        overheads.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let median = overheads[rounds / 2];
        println!(
            "latency overhead above the sampled NodeDelays over 5 hops: median {median:.2} ms ({:.2} ms per hop), p90 {:.2} ms, n = {rounds}",
            median / 5.0,
            overheads[rounds * 9 / 10]
        );
        net.shutdown().await;
    });
}

fn main() {
    throughput();
    latency();
}
