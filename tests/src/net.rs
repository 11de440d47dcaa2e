//! The local testnet, run in this process by the testnet library so tests
//! can inject faults: packet loss at a node, stopping and restarting nodes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use testnet::config::{Params, Role};
use testnet::network::{Network, Shape};
use testnet::node::Counters;

/// The 2019 profile's epoch period: the daemon's engine assumes it.
pub const EPOCH_SECS: u64 = 10_800;

/// Fast test parameters: 3-hour epochs (as the daemon assumes), the demo's
/// Mu (20 ms mean per hop), clients sending `send_per_sec` packets a second.
pub fn params(send_per_sec: f64) -> Params {
    let mut p = Params::demo();
    p.epoch_period_secs = EPOCH_SECS;
    p.document.lambda_p = send_per_sec / 1000.0;
    p.document.lambda_p_max_delay = (4_000.0 / send_per_sec).ceil() as u64;
    p
}

/// Packet counts of a node (see [`Counters`]).
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    received: u64,
    spooled: u64,
    /// Every kind of drop: invalid, replay, other, fault injection.
    dropped: u64,
}

impl Counts {
    fn of(c: &Counters) -> Counts {
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        Counts {
            received: n(&c.received),
            spooled: n(&c.spooled),
            dropped: n(&c.dropped_invalid)
                + n(&c.dropped_replay)
                + n(&c.dropped_other)
                + n(&c.dropped_fault),
        }
    }

    fn add(self, o: Counts) -> Counts {
        Counts {
            received: self.received + o.received,
            spooled: self.spooled + o.spooled,
            dropped: self.dropped + o.dropped,
        }
    }
}

/// A running network and the runtime it runs on.
pub struct Net {
    // Dropped in this order: the network (inside the runtime), then the runtime.
    net: Option<Network>,
    rt: tokio::runtime::Runtime,
    /// The network's directory (keys, `network.toml`, spools).
    pub dir: PathBuf,
    /// Counts of the earlier runs of restarted nodes (a node starts again
    /// with zero counters).
    retired: BTreeMap<String, Counts>,
}

impl Net {
    /// Creates a network in `dir` and starts it (rate limiter off), waiting
    /// until every node holds the current document.
    pub fn start(dir: &Path, params: Params) -> Net {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("testnet")
            .build()
            .expect("tokio runtime");
        let shape = Shape {
            params,
            ..Shape::default()
        };
        let net = rt
            .block_on(Network::launch(
                dir,
                &shape,
                false,
                Duration::from_secs(120),
            ))
            .unwrap_or_else(|e| panic!("starting the testnet in {}: {e}", dir.display()));
        Net {
            net: Some(net),
            rt,
            dir: dir.to_path_buf(),
            retired: BTreeMap::new(),
        }
    }

    fn net(&self) -> &Network {
        self.net.as_ref().expect("network running")
    }

    /// The authority's address and hex public key, for `[NonvotingAuthority]`.
    pub fn authority(&self) -> (String, String) {
        let a = &self.net().spec.authority;
        (a.address.to_string(), a.identity_public.clone())
    }

    /// The network's parameters.
    pub fn params(&self) -> Params {
        self.net().spec.params.clone()
    }

    /// The mixes of layer `layer` (0-based).
    pub fn layer(&self, layer: usize) -> Vec<String> {
        let per = self
            .net()
            .spec
            .nodes
            .iter()
            .filter(|n| n.role == Role::Mix)
            .count()
            / self.net().spec.params.layers;
        (0..per)
            .map(|i| format!("mix{}", layer * per + i + 1))
            .collect()
    }

    fn provider(&self, name: &str) -> &testnet::node::provider::ProviderState {
        self.net()
            .node(name)
            .unwrap_or_else(|| panic!("node {name} is not running"))
            .provider
            .as_ref()
            .unwrap_or_else(|| panic!("{name} is not a provider"))
    }

    /// Registers `user` at `provider` with its link and identity public keys.
    pub fn register(&self, provider: &str, user: &str, link: [u8; 32], identity: [u8; 32]) {
        self.provider(provider)
            .add_user(user, link, Some(identity))
            .unwrap_or_else(|e| panic!("registering {user}@{provider}: {e}"));
    }

    /// Entries waiting in `user`'s spool at `provider` (which must be running).
    pub fn spool_len(&self, provider: &str, user: &str) -> usize {
        self.provider(provider)
            .spool_len(user)
            .unwrap_or_else(|e| panic!("spool of {user}@{provider}: {e}"))
    }

    /// Makes node `name` drop fraction `f` of the packets it receives.
    pub fn set_drop_fraction(&self, name: &str, f: f64) {
        self.net()
            .node(name)
            .unwrap_or_else(|| panic!("node {name} is not running"))
            .set_drop_fraction(f);
    }

    /// Packets node `name` dropped by fault injection (this run).
    pub fn dropped_by_fault(&self, name: &str) -> u64 {
        self.net()
            .node(name)
            .map(|n| n.counters.dropped_fault.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Packets node `name` received (this run).
    pub fn received(&self, name: &str) -> u64 {
        self.net()
            .node(name)
            .map(|n| n.counters.received.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Node `name`'s counts over all its runs.
    fn counts(&self, name: &str) -> Counts {
        let live = self
            .net()
            .node(name)
            .map(|n| Counts::of(&n.counters))
            .unwrap_or_default();
        self.retired
            .get(name)
            .copied()
            .unwrap_or_default()
            .add(live)
    }

    /// A lower bound of the packets still in flight (in a node or on a
    /// link), from the nodes' counters, when exactly one client sends,
    /// through provider `sender_provider`, only blocks with a SURB-ACK (no
    /// decoys, no key discovery), and at least `local` of its blocks were
    /// spooled for users of `sender_provider`.
    ///
    /// Every packet the sender's provider receives is a block from the
    /// sender (`C` of them) or, from a node, a block for one of its users
    /// (`L` spooled) or a SURB-ACK; every block spooled sends back one
    /// SURB-ACK, spooled at the sender's provider or dropped. With `R1`,
    /// `S1`, `d1` the sender's provider's received, spooled and dropped, `D`
    /// every node's drops and nothing in flight: `C = S1 - L + D` and
    /// `R1 = C + S1 + (its drops of packets from nodes)`, so
    /// `R1 - 2*S1 + L - D - d1` is then at most 0, and otherwise the packets
    /// in flight less `L - local` and less the sender's provider's drops of
    /// the sender's packets (none without faults there).
    ///
    /// A client's packet counts once the provider received it: a client
    /// killed or cut off mid-write adds nothing. A packet lost without a
    /// count stays in flight for ever: a node stopped by [`Net::stop_node`]
    /// loses what it holds, and a link into it the first packets sent on it
    /// afterwards (testnet/src/node/outgoing.rs).
    pub fn packets_in_flight_at_least(&self, sender_provider: &str, local: u64) -> i64 {
        let all = self
            .net()
            .spec
            .nodes
            .iter()
            .fold(Counts::default(), |a, n| a.add(self.counts(&n.name)));
        let p = self.counts(sender_provider);
        p.received as i64 - 2 * p.spooled as i64 + local as i64
            - all.dropped as i64
            - p.dropped as i64
    }

    /// Stops node `name` (its state stays on disk; its counts are kept).
    pub fn stop_node(&mut self, name: &str) {
        let node = self.net().node(name).cloned();
        let net = self.net.as_mut().expect("network running");
        self.rt.block_on(net.stop_node(name));
        if let Some(n) = node {
            let run = Counts::of(&n.counters);
            let r = self.retired.entry(name.to_string()).or_default();
            *r = r.add(run);
        }
    }

    /// Starts node `name` again.
    pub fn start_node(&mut self, name: &str) {
        let net = self.net.as_mut().expect("network running");
        self.rt
            .block_on(net.start_node(name))
            .unwrap_or_else(|e| panic!("restarting {name}: {e}"));
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Some(net) = self.net.take() {
            let _ = self.rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), net.shutdown()).await
            });
        }
    }
}
