//! Voting authorities: the committee's agreement without the network (each
//! peer serves the same multi-signed document in the 2019 format, one peer
//! down still gives 2 of 3, one alone gives nothing, the serve faults are
//! refused by the client rule), then a running voting network.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use katzenpost::epoch::EpochClock;
use katzenpost::pki::cert::Certificate;
use katzenpost::pki::voting::{VotingError, VotingPeers};
use katzenpost::wire::commands::{consensus_status, descriptor_status};
use testnet::authority::AuthorityState;
use testnet::config::{authority_block, Params, Role};
use testnet::descriptor::{epoch_descriptor, signed_descriptor, NodeFacts};
use testnet::network::{Network, Shape};
use testnet::voting::{apply_fault, step, tabulate, Participant, ServeFault};

/// A fixed moment early in an epoch of the demo parameters.
const NOW: u64 = 1_795_521_600 + 30;

struct Committee {
    keys: Vec<SigningKey>,
    states: Vec<AuthorityState>,
    /// (identity key, role, name) of each node, with its key.
    nodes: Vec<(SigningKey, Role, String)>,
}

impl Committee {
    fn new(peers: u8) -> Committee {
        let mut nodes: Vec<(SigningKey, Role, String)> = (1..=3u8)
            .map(|i| {
                (
                    SigningKey::from_bytes(&[i; 32]),
                    Role::Mix,
                    format!("mix{i}"),
                )
            })
            .collect();
        nodes.push((
            SigningKey::from_bytes(&[9; 32]),
            Role::Provider,
            "provider1".into(),
        ));
        let id = |k: &SigningKey| k.verifying_key().to_bytes();
        let mixes: BTreeSet<[u8; 32]> = nodes
            .iter()
            .filter(|n| n.1 == Role::Mix)
            .map(|n| id(&n.0))
            .collect();
        let providers: BTreeMap<[u8; 32], String> = nodes
            .iter()
            .filter(|n| n.1 == Role::Provider)
            .map(|n| (id(&n.0), n.2.clone()))
            .collect();
        let keys: Vec<SigningKey> = (0..peers)
            .map(|i| SigningKey::from_bytes(&[100 + i; 32]))
            .collect();
        let states = keys
            .iter()
            .map(|k| {
                AuthorityState::new(
                    k.clone(),
                    Params::demo(),
                    mixes.clone(),
                    providers.clone(),
                    NOW,
                )
            })
            .collect();
        Committee {
            keys,
            states,
            nodes,
        }
    }

    fn epoch(&self) -> u64 {
        EpochClock::new(Duration::from_secs(Params::demo().epoch_period_secs))
            .at(Duration::from_secs(NOW))
            .epoch
    }

    /// Node `n` uploads its descriptor for `epoch` to peer `peer` only.
    fn post(&mut self, n: usize, peer: usize, epoch: u64) {
        self.post_signed_at(n, peer, epoch, NOW);
    }

    /// [`Committee::post`] of a descriptor signed at `signed_at`.
    fn post_signed_at(&mut self, n: usize, peer: usize, epoch: u64, signed_at: u64) {
        let (key, role, name) = &self.nodes[n];
        let facts = NodeFacts {
            name,
            role: *role,
            link_public: [n as u8 + 1; 32],
            address: format!("127.0.0.1:{}", 4000 + n).parse().unwrap(),
            extra_transport: None,
        };
        let mix_keys = (epoch..epoch + 3).map(|e| (e, [e as u8; 32])).collect();
        let desc = signed_descriptor(
            facts,
            key,
            mix_keys,
            signed_at,
            Params::demo().epoch_period_secs,
        )
        .unwrap();
        let id = key.verifying_key().to_bytes();
        self.states[peer].post_descriptor(&id, epoch, &desc.signed, NOW);
    }

    /// Each node uploads to one peer only (round robin): the peers must
    /// exchange descriptors to see them all.
    fn post_spread(&mut self, epoch: u64) {
        for n in 0..self.nodes.len() {
            self.post(n, n % self.states.len(), epoch);
        }
    }

    /// A committee step with the peers in `up` taking part.
    fn step(&mut self, up: &[usize]) -> Vec<u64> {
        let configured = self.keys.len();
        let mut parts: Vec<Participant<'_>> = self
            .states
            .iter_mut()
            .zip(&self.keys)
            .enumerate()
            .filter(|(i, _)| up.contains(i))
            .map(|(_, (state, key))| Participant { key, state })
            .collect();
        step(&mut parts, configured, NOW)
    }

    fn served(&self, peer: usize, epoch: u64) -> (u8, Vec<u8>) {
        self.states[peer].get_consensus(epoch, NOW)
    }

    fn client(&self) -> VotingPeers {
        VotingPeers::new(self.keys.iter().map(|k| k.verifying_key().to_bytes())).unwrap()
    }
}

#[test]
fn every_peer_serves_the_same_document_signed_by_each() {
    let mut c = Committee::new(3);
    let epoch = c.epoch();
    c.post_spread(epoch);
    // Before the exchange no peer has every descriptor; after one step all do.
    assert!(c.states.iter().all(|s| s.descriptors(epoch).len() < 4));
    assert_eq!(c.step(&[0, 1, 2]), vec![epoch]);
    let (code, first) = c.served(0, epoch);
    assert_eq!(code, consensus_status::OK);
    for peer in 1..3 {
        assert_eq!(c.served(peer, epoch), (consensus_status::OK, first.clone()));
    }
    let cert = Certificate::from_bytes(&first).unwrap();
    assert_eq!(cert.signatures.len(), 3);
    assert_eq!(cert.to_bytes(), first, "canonical, signatures sorted");
    let v = c.client().verify(&first, epoch, NOW).unwrap();
    assert_eq!(v.signers.len(), 3);
    assert_eq!(v.document.topology.len(), 3);
    assert!(v.document.topology.iter().all(|l| l.len() == 1));
    assert_eq!(v.document.providers[0].name, "provider1");
    assert_eq!(v.document.shared_random_value.len(), 32);
    // A second step changes nothing.
    assert!(c.step(&[0, 1, 2]).is_empty());
    assert_eq!(c.served(2, epoch).1, first);
}

#[test]
fn peers_holding_different_descriptors_of_a_node_cannot_agree() {
    // Why a node's descriptor for an epoch must be the same bytes at every
    // peer (it is signed as of the epoch's start): signed at different
    // seconds, its descriptors differ,
    // each peer keeps the one it was given (another is a conflict), and
    // the peers compute different documents.
    let mut c = Committee::new(3);
    let epoch = c.epoch();
    for n in 0..c.nodes.len() {
        for peer in 0..3 {
            c.post_signed_at(n, peer, epoch, NOW + peer as u64);
        }
    }
    for _ in 0..3 {
        assert!(c.step(&[0, 1, 2]).is_empty());
    }
    for peer in 0..3 {
        assert_ne!(c.served(peer, epoch).0, consensus_status::OK);
    }
    // One node's split is enough to leave a peer out: 2 of 3 sign.
    let split = |n: usize, peer: usize| if n == 0 && peer == 2 { NOW + 1 } else { NOW };
    assert_eq!(signers_when_signed_at(split), 2);
    // The same bytes at every peer: all three sign.
    assert_eq!(signers_when_signed_at(|_, _| NOW), 3);
}

/// How many peers sign the document when node `n` posts to peer `peer` a
/// descriptor signed at `at(n, peer)`.
fn signers_when_signed_at(at: impl Fn(usize, usize) -> u64) -> usize {
    let mut c = Committee::new(3);
    let epoch = c.epoch();
    for n in 0..c.nodes.len() {
        for peer in 0..3 {
            c.post_signed_at(n, peer, epoch, at(n, peer));
        }
    }
    assert_eq!(c.step(&[0, 1, 2]), vec![epoch]);
    let doc = c.served(0, epoch).1;
    c.client().verify(&doc, epoch, NOW).unwrap().signers.len()
}

#[test]
fn a_nodes_epoch_descriptor_is_the_same_bytes_whenever_signed_and_accepted() {
    let c = Committee::new(3);
    let clock = EpochClock::new(Duration::from_secs(Params::demo().epoch_period_secs));
    let epoch = c.epoch();
    let (key, role, name) = &c.nodes[3];
    let facts = NodeFacts {
        name,
        role: *role,
        link_public: [4; 32],
        address: "127.0.0.1:4003".parse().unwrap(),
        extra_transport: None,
    };
    let keys = |e: u64| (e..e + 3).map(|e| (e, [e as u8; 32])).collect();
    let start = clock.start_of(epoch).as_secs();
    let period = clock.period().as_secs();
    for e in [epoch, epoch + 1] {
        let first = epoch_descriptor(facts, key, keys(e), &clock, e).unwrap();
        assert_eq!(
            epoch_descriptor(facts, key, keys(e), &clock, e)
                .unwrap()
                .signed,
            first.signed,
            "signed again (a retry, another peer, a restart): the same bytes"
        );
        // Any time in the current epoch, a fresh authority accepts it.
        for now in [start + 1, start + period / 2, start + period - 1] {
            let mut s = AuthorityState::new(
                c.keys[0].clone(),
                Params::demo(),
                BTreeSet::new(),
                [(key.verifying_key().to_bytes(), name.clone())].into(),
                now,
            );
            let id = key.verifying_key().to_bytes();
            assert_eq!(
                s.post_descriptor(&id, e, &first.signed, now),
                descriptor_status::OK,
                "epoch {e} at {now}"
            );
        }
    }
}

#[test]
fn one_peer_down_still_publishes_two_of_three_and_it_catches_up() {
    let mut c = Committee::new(3);
    let epoch = c.epoch();
    // Peer 2 is down: nodes reach only peers 0 and 1.
    for n in 0..c.nodes.len() {
        c.post(n, n % 2, epoch);
    }
    assert_eq!(c.step(&[0, 1]), vec![epoch]);
    let (code, doc) = c.served(0, epoch);
    assert_eq!(code, consensus_status::OK);
    assert_eq!(c.served(1, epoch).1, doc);
    assert_ne!(c.served(2, epoch).0, consensus_status::OK);
    let v = c.client().verify(&doc, epoch, NOW).unwrap();
    assert_eq!(v.signers.len(), 2);
    // Back up: the peer serves the published document.
    c.step(&[0, 1, 2]);
    assert_eq!(c.served(2, epoch), (consensus_status::OK, doc));
}

#[test]
fn a_peer_alone_publishes_nothing() {
    let mut c = Committee::new(3);
    let epoch = c.epoch();
    for n in 0..c.nodes.len() {
        c.post(n, 0, epoch);
    }
    assert!(c.step(&[0]).is_empty());
    assert_ne!(c.served(0, epoch).0, consensus_status::OK);
    // tabulate itself refuses below the threshold of the configured peers.
    let configured = c.keys.len();
    let mut parts = vec![Participant {
        key: &c.keys[0],
        state: &mut c.states[0],
    }];
    assert_eq!(tabulate(&mut parts, configured, epoch, NOW), None);
}

#[test]
fn spoilt_documents_are_refused_by_the_client_rule() {
    let mut c = Committee::new(3);
    let epoch = c.epoch();
    c.post_spread(epoch);
    c.step(&[0, 1, 2]);
    let doc = c.served(0, epoch).1;
    let key = &c.keys[1];
    let client = c.client();
    let own_only = apply_fault(ServeFault::OwnSignatureOnly, &doc, key);
    assert!(matches!(
        client.verify(&own_only, epoch, NOW),
        Err(VotingError::Threshold {
            valid: 1,
            invalid: 0,
            ..
        })
    ));
    let forged = apply_fault(ServeFault::Forged, &doc, key);
    assert_ne!(
        Certificate::from_bytes(&forged).unwrap().certified,
        Certificate::from_bytes(&doc).unwrap().certified
    );
    assert!(matches!(
        client.verify(&forged, epoch, NOW),
        Err(VotingError::Threshold {
            valid: 1,
            invalid: 2,
            ..
        })
    ));
    let extra = apply_fault(ServeFault::ExtraSigner, &doc, key);
    assert!(matches!(
        client.verify(&extra, epoch, NOW),
        Err(VotingError::UnknownSigner(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voting_network_serves_one_document_from_every_peer() {
    let dir = tempfile::tempdir().unwrap();
    let mut params = Params::demo();
    params.epoch_period_secs = 600;
    let shape = Shape {
        params,
        mixes_per_layer: 1,
        voting_authorities: 3,
        ..Shape::default()
    };
    let net = Network::launch(dir.path(), &shape, false, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(net.spec.voting.len(), 3);
    assert_eq!(net.authorities.len(), 3);
    let epoch = net.node("provider1").unwrap().clock.now().epoch;
    let docs: Vec<Vec<u8>> = net
        .authorities
        .iter()
        .map(|a| a.document(epoch).expect("every peer holds the document"))
        .collect();
    assert!(docs.windows(2).all(|w| w[0] == w[1]));
    // Every node posted the same signed descriptor to each peer.
    let held: Vec<Vec<Vec<u8>>> = net
        .authorities
        .iter()
        .map(|a| a.descriptors(epoch).into_iter().map(|d| d.signed).collect())
        .collect();
    assert_eq!(held[0].len(), net.spec.nodes.len());
    assert!(held.windows(2).all(|w| w[0] == w[1]));
    let client = VotingPeers::new(
        net.authority_endpoints()
            .unwrap()
            .iter()
            .map(|e| e.identity_key),
    )
    .unwrap();
    let v = client.verify(&docs[0], epoch, testnet::unix_now()).unwrap();
    assert_eq!(v.signers.len(), 3);
    assert_eq!(v.document.providers.len(), 2);
    // The info block names every peer with both keys.
    let block = authority_block(&net.spec, "testnet");
    assert!(
        block.starts_with("[VotingAuthority.testnet]\n  Peers = [\n"),
        "{block}"
    );
    for p in &net.spec.voting {
        assert!(block.contains(&p.identity_public) && block.contains(&p.link_public));
        assert!(block.contains(&p.address.to_string()));
    }
    // `testnet info` prints that block for mailproxyd.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_testnet"))
        .args(["info", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let info = String::from_utf8(out.stdout).unwrap();
    assert!(info.contains(&block), "{info}");
    assert!(!info.contains("NonvotingAuthority"), "{info}");
    net.shutdown().await;
}

#[test]
fn fewer_than_three_voting_authorities_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let shape = Shape {
        voting_authorities: 2,
        ..Shape::default()
    };
    let e = testnet::network::init(dir.path(), &shape).unwrap_err();
    assert!(e.to_string().contains("at least 3"), "{e}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
}
