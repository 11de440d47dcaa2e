//! §2.10 path selection: shape, commands, delays, per-hop epochs, ETA,
//! restart rules and determinism with a seeded RNG.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::time::Duration;

use katzenpost::epoch::EpochClock;
use katzenpost::path::{
    select_paths, PathError, PathRequest, SelectedPaths, SurbRequest, MAX_ATTEMPTS,
};
use katzenpost::pki::document::{Document, MixDescriptor, Parameters};
use katzenpost::sphinx::commands::{PathHop, RoutingCommand};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

const EPOCH: u64 = 27708;
const SURB_ID: [u8; 16] = [0x5b; 16];

/// Node `n`'s mix key for `epoch`: recognisable from its bytes.
fn mix_key(n: u8, epoch: u64) -> [u8; 32] {
    let mut k = [n; 32];
    k[..8].copy_from_slice(&epoch.to_be_bytes());
    k
}

fn node(n: u8, name: &str, layer: u8, epochs: std::ops::Range<u64>) -> MixDescriptor {
    MixDescriptor {
        name: name.to_string(),
        identity_key: [n; 32],
        mix_keys: epochs
            .map(|e| (e, mix_key(n, e)))
            .collect::<BTreeMap<_, _>>(),
        layer,
        ..Default::default()
    }
}

/// 3 layers × 2 mixes (ids 10..16), providers "p1" (id 1) and "p2" (id 2).
fn document(epochs: std::ops::Range<u64>) -> Document {
    Document {
        epoch: EPOCH,
        params: Parameters {
            mu: 0.00025,
            mu_max_delay: 46_051,
            ..Default::default()
        },
        topology: (0..3u8)
            .map(|l| {
                (0..2u8)
                    .map(|i| node(10 + 2 * l + i, &format!("mix{l}{i}"), 0, epochs.clone()))
                    .collect()
            })
            .collect(),
        providers: vec![
            node(1, "p1", 255, epochs.clone()),
            node(2, "p2", 255, epochs),
        ],
        ..Default::default()
    }
}

fn noon() -> Duration {
    EpochClock::default().start_of(EPOCH)
}

fn reliable() -> PathRequest<'static> {
    PathRequest {
        src_provider: "p1",
        dst_provider: "p2",
        recipient: b"bob",
        surb: Some(SurbRequest {
            own_user: b"alice",
            surb_id: SURB_ID,
        }),
    }
}

fn select(
    doc: &Document,
    clock: &EpochClock,
    req: &PathRequest<'_>,
    seed: u64,
    now: Duration,
) -> Result<SelectedPaths, PathError> {
    select_paths(
        doc,
        clock,
        req,
        &mut ChaCha20Rng::seed_from_u64(seed),
        || now,
    )
}

fn rid(name: &[u8]) -> [u8; 64] {
    let mut r = [0u8; 64];
    r[..name.len()].copy_from_slice(name);
    r
}

fn delay_of(hop: &PathHop) -> Option<u32> {
    hop.commands.iter().find_map(|c| match c {
        RoutingCommand::NodeDelay(d) => Some(*d),
        _ => None,
    })
}

fn encoded_len(c: &RoutingCommand) -> usize {
    match c {
        RoutingCommand::NextNodeHop { .. } => 49,
        RoutingCommand::Recipient(_) => 65,
        RoutingCommand::SurbReply(_) => 17,
        RoutingCommand::NodeDelay(_) => 5,
    }
}

/// Checks every hop's key against its expected arrival epoch; returns the time after the path.
fn check_keys(path: &[PathHop], doc: &Document, clock: &EpochClock, start: Duration) -> Duration {
    let all: Vec<&MixDescriptor> = doc
        .topology
        .iter()
        .flatten()
        .chain(doc.providers.iter())
        .collect();
    let mut then = start;
    for hop in path {
        let desc = all
            .iter()
            .find(|d| d.identity_key == hop.id)
            .expect("hop is a document node");
        let epoch = clock.at(then).epoch;
        assert_eq!(
            hop.public_key, desc.mix_keys[&epoch],
            "hop {:?} key for epoch {epoch}",
            desc.name
        );
        then += Duration::from_millis(u64::from(delay_of(hop).unwrap_or(0)));
    }
    then
}

#[test]
fn reliable_paths_have_the_documented_shape() {
    let doc = document(EPOCH..EPOCH + 3);
    let clock = EpochClock::default();
    for seed in 0..50 {
        let now = noon() + Duration::from_millis(3_600_000 + 123);
        let p = select(&doc, &clock, &reliable(), seed, now).unwrap();
        assert_eq!(
            p.base_time,
            Duration::from_secs(now.as_secs()),
            "whole seconds"
        );

        let fwd = &p.forward;
        assert_eq!(fwd.len(), 5);
        assert_eq!(fwd[0].id, [1; 32], "own provider first");
        assert_eq!(fwd[4].id, [2; 32], "destination provider last");
        for l in 0..3 {
            assert!(
                doc.topology[l]
                    .iter()
                    .any(|d| d.identity_key == fwd[l + 1].id),
                "hop {} from layer {l}",
                l + 1
            );
        }
        for hop in &fwd[..4] {
            assert!(matches!(hop.commands[..], [RoutingCommand::NodeDelay(_)]));
        }
        assert!(
            matches!(&fwd[4].commands[..], [RoutingCommand::NodeDelay(_), RoutingCommand::Recipient(r)] if *r == rid(b"bob"))
        );

        let surb = p.surb.as_ref().unwrap();
        assert_eq!(surb.len(), 4);
        for (layer, hop) in doc.topology.iter().zip(surb.iter()) {
            assert!(layer.iter().any(|d| d.identity_key == hop.id));
            assert!(matches!(hop.commands[..], [RoutingCommand::NodeDelay(_)]));
        }
        assert_eq!(surb[3].id, [1; 32], "SURB path ends at the own provider");
        assert_eq!(
            surb[3].commands,
            vec![
                RoutingCommand::Recipient(rid(b"alice")),
                RoutingCommand::SurbReply(SURB_ID)
            ]
        );

        // Terminal command sets fit the 82-byte routing block; others leave room for NextNodeHop.
        for (i, hop) in fwd.iter().chain(surb.iter()).enumerate() {
            let len: usize = hop.commands.iter().map(encoded_len).sum();
            let terminal = i == 4 || i == 8;
            assert!(len <= if terminal { 82 } else { 33 });
        }

        // Keys per arrival epoch; ETA = all 8 delays.
        let then = check_keys(fwd, &doc, &clock, p.base_time);
        let end = check_keys(surb, &doc, &clock, then);
        assert_eq!(p.eta, end - p.base_time);
        let sum: u64 = fwd
            .iter()
            .chain(surb.iter())
            .filter_map(delay_of)
            .map(u64::from)
            .sum();
        assert_eq!(p.eta, Duration::from_millis(sum));
    }
}

#[test]
fn unreliable_path_has_no_terminal_delay_and_no_surb() {
    let doc = document(EPOCH..EPOCH + 3);
    let req = PathRequest {
        surb: None,
        ..reliable()
    };
    let p = select(&doc, &EpochClock::default(), &req, 1, noon()).unwrap();
    assert!(p.surb.is_none());
    assert_eq!(p.forward.len(), 5);
    assert_eq!(
        p.forward[4].commands,
        vec![RoutingCommand::Recipient(rid(b"bob"))]
    );
    let sum: u64 = p.forward.iter().filter_map(delay_of).map(u64::from).sum();
    assert_eq!(p.eta, Duration::from_millis(sum));
    assert_eq!(p.forward.iter().filter_map(delay_of).count(), 4);
}

#[test]
fn deterministic_with_a_seeded_rng() {
    let doc = document(EPOCH..EPOCH + 3);
    let clock = EpochClock::default();
    let a = select(&doc, &clock, &reliable(), 42, noon()).unwrap();
    let b = select(&doc, &clock, &reliable(), 42, noon()).unwrap();
    assert_eq!(a, b);
    let c = select(&doc, &clock, &reliable(), 43, noon()).unwrap();
    assert_ne!(a, c);
}

#[test]
fn delays_follow_exp_mu_plus_one_and_the_cap() {
    let clock = EpochClock::default();
    let mut doc = document(EPOCH..EPOCH + 3);
    doc.params.mu_max_delay = 0; // no cap
    let mut delays = Vec::new();
    for seed in 0..2000 {
        let p = select(&doc, &clock, &reliable(), seed, noon()).unwrap();
        delays.extend(
            p.forward
                .iter()
                .chain(p.surb.unwrap().iter())
                .filter_map(delay_of),
        );
    }
    assert_eq!(delays.len(), 2000 * 8);
    assert!(delays.iter().all(|&d| d >= 1));
    // E[⌊Exp(Mu)⌋ + 1] ≈ 1/Mu + 0.5 = 4000.5 ms; standard error ≈ 32 ms.
    let mean = delays.iter().map(|&d| f64::from(d)).sum::<f64>() / delays.len() as f64;
    assert!((mean - 4000.5).abs() < 150.0, "mean delay {mean}");

    doc.params.mu_max_delay = 1500;
    for seed in 0..200 {
        let p = select(&doc, &clock, &reliable(), seed, noon()).unwrap();
        let ds: Vec<u32> = p
            .forward
            .iter()
            .chain(p.surb.unwrap().iter())
            .filter_map(delay_of)
            .collect();
        assert!(ds.iter().all(|&d| (1..=1500).contains(&d)), "{ds:?}");
    }

    // A fast rate: delays are mostly the +1 floor.
    doc.params.mu = 10.0;
    let p = select(&doc, &clock, &reliable(), 3, noon()).unwrap();
    assert!(p.forward.iter().filter_map(delay_of).all(|d| d == 1));
}

#[test]
fn keys_follow_the_arrival_epoch_across_a_boundary() {
    let doc = document(EPOCH..EPOCH + 3);
    let clock = EpochClock::default();
    // Ten seconds before the next epoch: the first hop uses epoch e, later hops e+1.
    let now = clock.start_of(EPOCH + 1) - Duration::from_secs(10);
    let mut saw_both = false;
    for seed in 0..40 {
        let p = select_paths(
            &doc,
            &clock,
            &reliable(),
            &mut ChaCha20Rng::seed_from_u64(seed),
            || now,
        )
        .unwrap();
        let then = check_keys(&p.forward, &doc, &clock, p.base_time);
        check_keys(p.surb.as_ref().unwrap(), &doc, &clock, then);
        assert_eq!(p.forward[0].public_key, mix_key(1, EPOCH));
        let last = p.surb.as_ref().unwrap().last().unwrap();
        if last.public_key == mix_key(1, EPOCH + 1) {
            saw_both = true;
        }
    }
    assert!(saw_both, "some paths end in the next epoch");
}

#[test]
fn missing_mix_keys_restart_then_give_up() {
    let clock = EpochClock::default();
    // Layer 1 has a node without any key for this epoch and one with keys.
    let mut doc = document(EPOCH..EPOCH + 3);
    doc.topology[1][0].mix_keys.clear();
    let mut ok = 0;
    let mut gave_up = 0;
    for seed in 0..200 {
        match select(&doc, &clock, &reliable(), seed, noon()) {
            Ok(p) => {
                ok += 1;
                assert_ne!(p.forward[2].id, doc.topology[1][0].identity_key);
                assert_ne!(p.surb.unwrap()[1].id, doc.topology[1][0].identity_key);
            }
            Err(PathError::GaveUp { attempts, last }) => {
                gave_up += 1;
                assert_eq!(attempts, MAX_ATTEMPTS);
                assert!(
                    matches!(*last, PathError::MissingMixKey { ref node, epoch } if node == "mix10" && epoch == EPOCH)
                );
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    // Each attempt succeeds with probability 1/4 (two picks from layer 1).
    assert!(ok > 50 && gave_up > 50, "ok {ok}, gave up {gave_up}");

    // A layer with no usable node always fails after MAX_ATTEMPTS.
    let mut doc = document(EPOCH..EPOCH + 3);
    doc.topology[2].truncate(1);
    doc.topology[2][0].mix_keys.remove(&EPOCH);
    assert!(matches!(
        select(&doc, &clock, &reliable(), 0, noon()),
        Err(PathError::GaveUp { .. })
    ));
}

#[test]
fn eta_of_two_periods_restarts_then_gives_up() {
    // 10-second epochs, delays of ~1000 s: the ETA is always ≥ 2 periods.
    let clock = EpochClock::new(Duration::from_secs(10));
    let now = Duration::from_secs(1_800_000_000);
    let e = clock.at(now).epoch;
    let mut doc = document(e..e + 100_000);
    doc.params.mu = 1e-6;
    doc.params.mu_max_delay = 0;
    match select(&doc, &clock, &reliable(), 5, now) {
        Err(PathError::GaveUp { last, .. }) => assert!(matches!(*last, PathError::EtaTooLong(_))),
        other => panic!("expected EtaTooLong, got {other:?}"),
    }
}

#[test]
fn straddling_the_epoch_restarts_with_a_fresh_clock_reading() {
    let doc = document(EPOCH..EPOCH + 3);
    let clock = EpochClock::default();
    let t0 = clock.start_of(EPOCH + 1) - Duration::from_secs(5);
    let t1 = clock.start_of(EPOCH + 1) + Duration::from_secs(7);
    // Attempt 1 starts at t0 but finishes after the epoch ended; attempt 2 starts at t1.
    let readings = [
        t0,
        t0 + Duration::from_secs(6),
        t1,
        t1 + Duration::from_millis(3),
    ];
    let calls = Cell::new(0);
    let p = select_paths(
        &doc,
        &clock,
        &reliable(),
        &mut ChaCha20Rng::seed_from_u64(9),
        || {
            let i = calls.get();
            calls.set(i + 1);
            readings[i]
        },
    )
    .unwrap();
    assert_eq!(calls.get(), 4);
    assert_eq!(p.base_time, t1);
    assert_eq!(p.forward[0].public_key, mix_key(1, EPOCH + 1));

    // A clock that always straddles gives up.
    let calls = Cell::new(0u64);
    let r = select_paths(
        &doc,
        &clock,
        &reliable(),
        &mut ChaCha20Rng::seed_from_u64(9),
        || {
            calls.set(calls.get() + 1);
            t0 + Duration::from_secs(if calls.get() & 1 == 0 { 6 } else { 0 })
        },
    );
    assert!(
        matches!(r, Err(PathError::GaveUp { ref last, .. }) if **last == PathError::EpochBoundary)
    );
}

#[test]
fn bad_inputs_are_errors() {
    let clock = EpochClock::default();
    let doc = document(EPOCH..EPOCH + 3);
    let long = [b'x'; 65];
    let err =
        |doc: &Document, req: &PathRequest<'_>| select(doc, &clock, req, 0, noon()).unwrap_err();

    assert_eq!(
        err(
            &doc,
            &PathRequest {
                recipient: &long,
                ..reliable()
            }
        ),
        PathError::BadRecipient { len: 65 }
    );
    assert_eq!(
        err(
            &doc,
            &PathRequest {
                recipient: b"",
                ..reliable()
            }
        ),
        PathError::BadRecipient { len: 0 }
    );
    let own_long = PathRequest {
        surb: Some(SurbRequest {
            own_user: &long,
            surb_id: SURB_ID,
        }),
        ..reliable()
    };
    assert_eq!(err(&doc, &own_long), PathError::BadRecipient { len: 65 });
    assert!(select(
        &doc,
        &clock,
        &PathRequest {
            recipient: &[b'x'; 64],
            ..reliable()
        },
        0,
        noon()
    )
    .is_ok());
    assert_eq!(
        err(
            &doc,
            &PathRequest {
                dst_provider: "nope",
                ..reliable()
            }
        ),
        PathError::NoSuchProvider("nope".into())
    );
    assert_eq!(
        err(
            &doc,
            &PathRequest {
                src_provider: "mix00",
                ..reliable()
            }
        ),
        PathError::NoSuchProvider("mix00".into())
    );

    for mu in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let mut d = doc.clone();
        d.params.mu = mu;
        assert!(matches!(err(&d, &reliable()), PathError::BadMu(_)));
    }
    let d = Document {
        topology: vec![],
        ..doc.clone()
    };
    assert_eq!(err(&d, &reliable()), PathError::EmptyTopology);
    let mut d = doc.clone();
    d.topology[1].clear();
    assert_eq!(err(&d, &reliable()), PathError::EmptyLayer(1));
    let mut d = doc.clone();
    d.topology.push(d.topology[0].clone());
    assert_eq!(err(&d, &reliable()), PathError::TooManyLayers(4));
}

#[test]
fn kaetzchen_request_to_own_provider() {
    // Loop decoy / keyserver query: destination is the own provider, recipient an endpoint.
    let doc = document(EPOCH..EPOCH + 3);
    let req = PathRequest {
        dst_provider: "p1",
        recipient: b"+loop",
        ..reliable()
    };
    let p = select(&doc, &EpochClock::default(), &req, 11, noon()).unwrap();
    assert_eq!(p.forward[0].id, [1; 32]);
    assert_eq!(p.forward[4].id, [1; 32]);
    assert!(
        matches!(&p.forward[4].commands[..], [RoutingCommand::NodeDelay(_), RoutingCommand::Recipient(r)] if *r == rid(b"+loop"))
    );
}
