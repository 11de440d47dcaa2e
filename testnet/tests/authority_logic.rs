//! The nonvoting authority's rules, without the network.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use katzenpost::epoch::EpochClock;
use katzenpost::pki::document::Document;
use katzenpost::wire::commands::{consensus_status, descriptor_status};
use rand::rngs::OsRng;
use testnet::authority::AuthorityState;
use testnet::config::{Params, Role};
use testnet::descriptor::{signed_descriptor, NodeFacts};

struct N {
    name: String,
    role: Role,
    key: SigningKey,
}

fn nodes() -> Vec<N> {
    let mut v: Vec<N> = (0..3)
        .map(|i| N {
            name: format!("mix{i}"),
            role: Role::Mix,
            key: SigningKey::generate(&mut OsRng),
        })
        .collect();
    v.push(N {
        name: "provider1".into(),
        role: Role::Provider,
        key: SigningKey::generate(&mut OsRng),
    });
    v
}

fn desc(n: &N, epoch: u64, now: u64, period: u64) -> Vec<u8> {
    let keys = (epoch..epoch + 3).map(|e| (e, [e as u8; 32])).collect();
    let facts = NodeFacts {
        name: &n.name,
        role: n.role,
        link_public: [7; 32],
        address: "127.0.0.1:4000".parse().unwrap(),
        extra_transport: None,
    };
    signed_descriptor(facts, &n.key, keys, now, period)
        .unwrap()
        .signed
}

fn authority(nodes: &[N], now: u64) -> (AuthorityState, SigningKey) {
    let key = SigningKey::generate(&mut OsRng);
    let mixes: BTreeSet<_> = nodes
        .iter()
        .filter(|n| n.role == Role::Mix)
        .map(|n| n.key.verifying_key().to_bytes())
        .collect();
    let providers: BTreeMap<_, _> = nodes
        .iter()
        .filter(|n| n.role == Role::Provider)
        .map(|n| (n.key.verifying_key().to_bytes(), n.name.clone()))
        .collect();
    (
        AuthorityState::new(key.clone(), Params::demo(), mixes, providers, now),
        key,
    )
}

#[test]
fn document_is_published_when_every_node_has_posted() {
    let params = Params::demo();
    let clock = EpochClock::new(Duration::from_secs(params.epoch_period_secs));
    let now = 1_795_521_600 + 30;
    let epoch = clock.at(Duration::from_secs(now)).epoch;
    let ns = nodes();
    let (mut auth, key) = authority(&ns, now);
    assert_eq!(
        auth.get_consensus(epoch, now).0,
        consensus_status::NOT_FOUND
    );
    for (i, n) in ns.iter().enumerate() {
        let id = n.key.verifying_key().to_bytes();
        let signed = desc(n, epoch, now, params.epoch_period_secs);
        assert_eq!(
            auth.post_descriptor(&id, epoch, &signed, now),
            descriptor_status::OK
        );
        // Re-posting the identical descriptor is fine.
        assert_eq!(
            auth.post_descriptor(&id, epoch, &signed, now),
            descriptor_status::OK
        );
        let made = auth.generate_due(&mut OsRng, now);
        assert_eq!(
            made.is_empty(),
            i + 1 < ns.len(),
            "published only once all have posted"
        );
    }
    let (code, doc) = auth.get_consensus(epoch, now);
    assert_eq!(code, consensus_status::OK);
    let doc = Document::verify_and_parse(&doc, &key.verifying_key(), now).unwrap();
    assert_eq!(doc.epoch, epoch);
    assert_eq!(doc.topology.len(), 3);
    assert!(doc.topology.iter().all(|l| l.len() == 1));
    assert_eq!(doc.providers[0].name, "provider1");
    assert_eq!(doc.params.mu, params.document.mu);
    // After publication, a different descriptor for that epoch conflicts.
    let id = ns[0].key.verifying_key().to_bytes();
    let other = desc(&ns[0], epoch, now + 1, params.epoch_period_secs);
    assert_eq!(
        auth.post_descriptor(&id, epoch, &other, now + 1),
        descriptor_status::CONFLICT
    );
}

#[test]
fn forbidden_invalid_and_wrong_epoch_uploads() {
    let params = Params::demo();
    let now = 1_795_521_600 + 30;
    let epoch = EpochClock::new(Duration::from_secs(params.epoch_period_secs))
        .at(Duration::from_secs(now))
        .epoch;
    let ns = nodes();
    let (mut auth, _) = authority(&ns, now);
    // A node not on the whitelist.
    let stranger = N {
        name: "mixx".into(),
        role: Role::Mix,
        key: SigningKey::generate(&mut OsRng),
    };
    let sid = stranger.key.verifying_key().to_bytes();
    let p = params.epoch_period_secs;
    assert_eq!(
        auth.post_descriptor(&sid, epoch, &desc(&stranger, epoch, now, p), now),
        descriptor_status::FORBIDDEN
    );
    // A whitelisted node's descriptor posted over someone else's session.
    let id0 = ns[0].key.verifying_key().to_bytes();
    let id1 = ns[1].key.verifying_key().to_bytes();
    assert_eq!(
        auth.post_descriptor(&id1, epoch, &desc(&ns[0], epoch, now, p), now),
        descriptor_status::FORBIDDEN
    );
    // Garbage, and an epoch far away.
    assert_eq!(
        auth.post_descriptor(&id0, epoch, b"garbage", now),
        descriptor_status::INVALID
    );
    assert_eq!(
        auth.post_descriptor(&id0, epoch + 5, &desc(&ns[0], epoch + 5, now, p), now),
        descriptor_status::INVALID
    );
    // A provider pretending to be a mix is forbidden.
    let prov = &ns[3];
    let as_mix = N {
        name: prov.name.clone(),
        role: Role::Mix,
        key: prov.key.clone(),
    };
    let pid = prov.key.verifying_key().to_bytes();
    assert_eq!(
        auth.post_descriptor(&pid, epoch, &desc(&as_mix, epoch, now, p), now),
        descriptor_status::FORBIDDEN
    );
    // Past epochs are gone.
    assert_eq!(auth.get_consensus(epoch - 1, now).0, consensus_status::GONE);
}

/// The demo parameters' epoch period, a time 30 s into an epoch, that
/// epoch, the nodes, and an authority that started then.
fn demo_network() -> (u64, u64, u64, Vec<N>, AuthorityState, SigningKey) {
    let p = Params::demo().epoch_period_secs;
    let now = 1_795_521_600 + 30;
    let epoch = EpochClock::new(Duration::from_secs(p))
        .at(Duration::from_secs(now))
        .epoch;
    let ns = nodes();
    let (auth, key) = authority(&ns, now);
    (p, now, epoch, ns, auth, key)
}

#[test]
fn external_whitelisted_nodes_enter_the_document_strangers_do_not() {
    let (p, now, epoch, ns, mut auth, key) = demo_network();
    let outside = |name: &str, role| N {
        name: name.into(),
        role,
        key: SigningKey::generate(&mut OsRng),
    };
    let (gomix, goprov, stranger) = (
        outside("gomix", Role::Mix),
        outside("goprovider", Role::Provider),
        outside("stranger", Role::Mix),
    );
    let id = |n: &N| n.key.verifying_key().to_bytes();
    auth.admit_external(
        BTreeSet::from([id(&gomix)]),
        BTreeMap::from([(id(&goprov), "goprovider".to_owned())]),
    );
    for n in [&gomix, &goprov] {
        assert_eq!(
            auth.post_descriptor(&id(n), epoch, &desc(n, epoch, now, p), now),
            descriptor_status::OK,
            "{}",
            n.name
        );
    }
    assert_eq!(
        auth.post_descriptor(&id(&stranger), epoch, &desc(&stranger, epoch, now, p), now),
        descriptor_status::FORBIDDEN
    );
    assert!(
        auth.generate_due(&mut OsRng, now).is_empty(),
        "the testnet's own nodes have not posted yet"
    );
    for n in &ns {
        assert_eq!(
            auth.post_descriptor(&id(n), epoch, &desc(n, epoch, now, p), now),
            descriptor_status::OK
        );
    }
    assert_eq!(auth.generate_due(&mut OsRng, now), vec![epoch]);
    let (code, doc) = auth.get_consensus(epoch, now);
    assert_eq!(code, consensus_status::OK);
    let doc = Document::verify_and_parse(&doc, &key.verifying_key(), now).unwrap();
    assert!(doc.node_by_identity(&id(&gomix)).is_some(), "external mix");
    assert!(
        doc.provider_by_name("goprovider").is_some(),
        "external provider"
    );
    assert!(doc.node_by_identity(&id(&stranger)).is_none());
    assert_eq!(doc.nodes().count(), ns.len() + 2);
}

#[test]
fn the_start_up_document_does_not_wait_for_external_nodes() {
    let (p, now, epoch, ns, mut auth, _) = demo_network();
    auth.admit_external(BTreeSet::from([[9; 32]]), BTreeMap::new());
    for n in &ns {
        let id = n.key.verifying_key().to_bytes();
        auth.post_descriptor(&id, epoch, &desc(n, epoch, now, p), now);
    }
    assert_eq!(auth.generate_due(&mut OsRng, now), vec![epoch]);
}
