//! Voting-authority consensus (authority v0.0.8 `voting/`): the real
//! epoch-2502817 document from three 2019 Go authorities, and the client's
//! acceptance rule (`len(peers)/2 + 1` valid peer signatures) with every
//! refusal it names.

use base64::Engine as _;
use ed25519_dalek::SigningKey;
use katzenpost::pki::cert::{CertError, Certificate};
use katzenpost::pki::voting::{cosign, VotingError, VotingPeers};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/katzenpost-2019/");
const EPOCH: u64 = 2_502_817;
/// Start of epoch 2502817: 2017-06-01 UTC + EPOCH x 120 s.
const EPOCH_START: u64 = 1_496_275_200 + EPOCH * 120;
/// Certificate expiration of the consensus (tabulation + 960 s).
const EXPIRATION: i64 = 1_796_614_170;
const NOW: u64 = EPOCH_START + 60;

fn read(name: &str) -> Vec<u8> {
    let path = format!("{DIR}{name}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("missing test vector file {path}: {e}"))
}

fn consensus() -> Vec<u8> {
    read("voting_consensus_epoch2502817.cbor")
}

/// The three authorities' identity keys, in the file's order (auth1..auth3).
fn peer_keys() -> Vec<[u8; 32]> {
    let peers: serde_json::Value = serde_json::from_slice(&read("voting_peers.json")).unwrap();
    assert_eq!(peers["epoch"], EPOCH);
    let list = peers["authorities"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    list.iter()
        .map(|a| {
            let b64 = base64::engine::general_purpose::STANDARD
                .decode(a["identity_public_key_b64"].as_str().unwrap())
                .unwrap();
            let hex = hex::decode(a["identity_public_key_hex"].as_str().unwrap()).unwrap();
            assert_eq!(b64, hex);
            b64.try_into().unwrap()
        })
        .collect()
}

fn peers() -> VotingPeers {
    VotingPeers::new(peer_keys()).unwrap()
}

fn edit(bytes: &[u8], f: impl FnOnce(&mut Certificate)) -> Vec<u8> {
    let mut c = Certificate::from_bytes(bytes).unwrap();
    f(&mut c);
    c.to_bytes()
}

fn without(bytes: &[u8], signers: &[[u8; 32]]) -> Vec<u8> {
    edit(bytes, |c| {
        c.signatures
            .retain(|s| !signers.iter().any(|k| s.identity == k))
    })
}

fn corrupted(bytes: &[u8], signers: &[[u8; 32]]) -> Vec<u8> {
    edit(bytes, |c| {
        for s in &mut c.signatures {
            if signers.iter().any(|k| s.identity == k) {
                s.payload[10] ^= 0x40;
            }
        }
    })
}

#[test]
fn the_real_consensus_verifies_with_all_three_signatures() {
    let bytes = consensus();
    let keys = peer_keys();
    let c = Certificate::from_bytes(&bytes).unwrap();
    assert_eq!(c.to_bytes(), bytes, "canonical CBOR re-encodes identically");
    assert_eq!(c.expiration, EXPIRATION);
    assert_eq!(c.signatures.len(), 3);
    let ids: Vec<&Vec<u8>> = c.signatures.iter().map(|s| &s.identity).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "sorted by identity");

    let v = peers()
        .verify(&bytes, EPOCH, NOW)
        .expect("the vector verifies");
    assert_eq!(v.signers, keys);
    assert!(v.bad_signatures.is_empty());
    let doc = v.document;
    assert_eq!(doc.epoch, EPOCH);
    assert_eq!(doc.topology.len(), 3);
    assert!(doc.topology.iter().all(|l| l.len() == 1));
    let mut names: Vec<&str> = doc.providers.iter().map(|p| p.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["vprov1", "vprov2"]);
    assert_eq!(doc.params.send_rate_per_minute, 100_000);
    assert!(doc.shared_random_commit.is_empty());
    assert_eq!(doc.shared_random_value.len(), 32);
    assert_eq!(
        doc.provider_by_name("vprov1")
            .unwrap()
            .kaetzchen_endpoint("keyserver"),
        Some("+keyserver")
    );
}

#[test]
fn threshold_is_half_plus_one() {
    let key = |i: u8| SigningKey::from_bytes(&[i; 32]).verifying_key().to_bytes();
    for (n, t) in [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)] {
        let p = VotingPeers::new((1..=n).map(key)).unwrap();
        assert_eq!((p.len(), p.threshold()), (n as usize, t), "{n} peers");
    }
    assert_eq!(VotingPeers::new([]), Err(VotingError::NoPeers));
    assert!(matches!(
        VotingPeers::new([key(1), key(2), key(1)]),
        Err(VotingError::DuplicatePeer(_))
    ));
}

#[test]
fn one_signature_removed_or_corrupted_still_passes_two_of_three() {
    let bytes = consensus();
    let keys = peer_keys();
    for k in &keys {
        let v = peers()
            .verify(&without(&bytes, &[*k]), EPOCH, NOW)
            .expect("2 of 3 after removal");
        assert_eq!(v.signers.len(), 2);
        assert!(!v.signers.contains(k));
        assert!(v.bad_signatures.is_empty());

        let v = peers()
            .verify(&corrupted(&bytes, &[*k]), EPOCH, NOW)
            .expect("2 of 3 after corruption");
        assert_eq!(v.signers.len(), 2);
        assert_eq!(v.bad_signatures, vec![*k]);
    }
}

#[test]
fn two_signatures_removed_or_corrupted_is_refused() {
    let bytes = consensus();
    let keys = peer_keys();
    let short = |invalid| VotingError::Threshold {
        valid: 1,
        invalid,
        needed: 2,
        peers: 3,
    };
    for pair in [[keys[0], keys[1]], [keys[0], keys[2]], [keys[1], keys[2]]] {
        let e = peers()
            .verify(&without(&bytes, &pair), EPOCH, NOW)
            .unwrap_err();
        assert_eq!(e, short(0));
        assert_eq!(e.check(), "threshold");
        let e = peers()
            .verify(&corrupted(&bytes, &pair), EPOCH, NOW)
            .unwrap_err();
        assert_eq!(e, short(2));
        // One removed and one corrupted.
        let e = peers()
            .verify(
                &corrupted(&without(&bytes, &pair[..1]), &pair[1..]),
                EPOCH,
                NOW,
            )
            .unwrap_err();
        assert_eq!(e, short(1));
    }
    let none = without(&bytes, &keys);
    assert_eq!(
        peers().verify(&none, EPOCH, NOW).unwrap_err(),
        VotingError::Threshold {
            valid: 0,
            invalid: 0,
            needed: 2,
            peers: 3
        }
    );
    // The same peer's signature twice counts once.
    let doubled = edit(&without(&bytes, &keys[1..]), |c| {
        let s = c.signatures[0].clone();
        c.signatures.push(s);
    });
    assert!(matches!(
        peers().verify(&doubled, EPOCH, NOW),
        Err(VotingError::Threshold { valid: 1, .. })
    ));
    // Only a peer's first signature counts: a bad copy ahead of the good one
    // makes that peer's signature bad.
    let bad_first = edit(&bytes, |c| {
        let mut s = c.signatures[0].clone();
        s.payload[0] ^= 1;
        c.signatures.insert(0, s);
    });
    let v = peers().verify(&bad_first, EPOCH, NOW).unwrap();
    assert_eq!(v.signers.len(), 2);
    assert_eq!(v.bad_signatures.len(), 1);
    // A changed payload breaks every signature.
    let tampered = edit(&bytes, |c| {
        let i = c.certified.len() - 3;
        c.certified[i] ^= 1;
    });
    assert!(matches!(
        peers().verify(&tampered, EPOCH, NOW),
        Err(VotingError::Threshold {
            valid: 0,
            invalid: 3,
            ..
        })
    ));
}

#[test]
fn an_unknown_signer_is_refused() {
    let bytes = consensus();
    let stranger = SigningKey::from_bytes(&[7; 32]);
    let e = peers()
        .verify(&cosign(&bytes, &stranger).unwrap(), EPOCH, NOW)
        .unwrap_err();
    assert_eq!(
        e,
        VotingError::UnknownSigner(hex::encode(stranger.verifying_key().as_bytes()))
    );
    assert_eq!(e.check(), "signer");
    assert!(e.to_string().contains("unknown key"), "{e}");
    // A client configured with two of the three authorities sees the third
    // as unknown.
    let keys = peer_keys();
    let two = VotingPeers::new(keys[..2].iter().copied()).unwrap();
    assert_eq!(
        two.verify(&bytes, EPOCH, NOW).unwrap_err(),
        VotingError::UnknownSigner(hex::encode(keys[2]))
    );
}

#[test]
fn the_wrong_epoch_is_refused() {
    let bytes = consensus();
    for want in [EPOCH - 1, EPOCH + 1] {
        let e = peers().verify(&bytes, want, NOW).unwrap_err();
        assert_eq!(e, VotingError::WrongEpoch { want, got: EPOCH });
        assert_eq!(e.check(), "epoch");
    }
}

#[test]
fn expiry_and_malformed_envelopes_are_refused() {
    let bytes = consensus();
    let late = EXPIRATION as u64 + 1;
    assert!(matches!(
        peers().verify(&bytes, EPOCH, late),
        Err(VotingError::Cert(CertError::Expired { .. }))
    ));
    assert_eq!(
        peers()
            .verify(&bytes[..100], EPOCH, NOW)
            .unwrap_err()
            .check(),
        "certificate"
    );
    let v1 = edit(&bytes, |c| c.version = 1);
    assert_eq!(
        peers().verify(&v1, EPOCH, NOW).unwrap_err(),
        VotingError::Cert(CertError::Version(1))
    );
}

#[test]
fn cosigning_is_order_independent_and_verifies() {
    let bytes = consensus();
    let stripped = without(&bytes, &peer_keys());
    let keys: Vec<SigningKey> = (1..=4u8)
        .map(|i| SigningKey::from_bytes(&[i; 32]))
        .collect();
    let sign_all = |order: &[usize]| {
        order
            .iter()
            .fold(stripped.clone(), |b, &i| cosign(&b, &keys[i]).unwrap())
    };
    let a = sign_all(&[0, 1, 2, 3]);
    let b = sign_all(&[3, 1, 0, 2]);
    assert_eq!(a, b, "the same bytes whatever the signing order");
    let ours = VotingPeers::new(keys.iter().map(|k| k.verifying_key().to_bytes())).unwrap();
    let v = ours.verify(&a, EPOCH, NOW).unwrap();
    assert_eq!(v.signers.len(), 4);
    // 3 of 4 are needed.
    let two = sign_all(&[0, 1]);
    assert_eq!(
        ours.verify(&two, EPOCH, NOW).unwrap_err(),
        VotingError::Threshold {
            valid: 2,
            invalid: 0,
            needed: 3,
            peers: 4
        }
    );
    assert!(ours.verify(&sign_all(&[0, 1, 3]), EPOCH, NOW).is_ok());
}
