//! Certificate envelope (§5.2) against core v0.0.7 `crypto/cert` vectors.

use ed25519_dalek::SigningKey;
use katzenpost::pki::cert::{self, CertError, Certificate};

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/katzenpost-2019/cert_vectors.json"
);

struct Vector {
    keys: Vec<SigningKey>,
    to_sign: Vec<u8>,
    cbor: Vec<u8>,
    expiration: i64,
    key_type: String,
    version: u32,
}

fn vectors() -> Vec<Vector> {
    let text = std::fs::read_to_string(VECTORS)
        .unwrap_or_else(|e| panic!("missing test vector file {VECTORS}: {e}"));
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let list = v["vectors"].as_array().expect("vectors array");
    assert_eq!(list.len(), 6);
    list.iter()
        .map(|x| Vector {
            keys: x["signing_keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| {
                    let b: [u8; 64] = hex::decode(k.as_str().unwrap())
                        .unwrap()
                        .try_into()
                        .unwrap();
                    SigningKey::from_keypair_bytes(&b).expect("seed matches public")
                })
                .collect(),
            to_sign: hex::decode(x["to_sign"].as_str().unwrap()).unwrap(),
            cbor: hex::decode(x["certificate_cbor"].as_str().unwrap()).unwrap(),
            expiration: num(&x["expiration"]) as i64,
            key_type: x["key_type"].as_str().unwrap().to_owned(),
            version: num(&x["version"]) as u32,
        })
        .collect()
}

/// A JSON number or decimal string.
fn num(v: &serde_json::Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not an integer: {v}"))
}

const NOW: u64 = 1_795_000_000;

#[test]
fn every_signature_verifies_and_reencodes_identically() {
    let mut total_sigs = 0;
    for (i, v) in vectors().iter().enumerate() {
        let c = Certificate::from_bytes(&v.cbor).unwrap_or_else(|e| panic!("vector {i}: {e}"));
        assert_eq!(c.certified, v.to_sign, "vector {i}");
        assert_eq!(c.expiration, v.expiration);
        assert_eq!(c.key_type, v.key_type);
        assert_eq!(c.version, v.version);
        assert_eq!(c.signatures.len(), v.keys.len(), "vector {i}");
        // Sorted by identity.
        assert!(c
            .signatures
            .windows(2)
            .all(|w| w[0].identity < w[1].identity));
        for k in &v.keys {
            c.verify(&k.verifying_key(), NOW)
                .unwrap_or_else(|e| panic!("vector {i}: {e}"));
            assert_eq!(
                cert::verify(&v.cbor, &k.verifying_key(), NOW).unwrap(),
                v.to_sign
            );
            total_sigs += 1;
        }
        assert_eq!(c.to_bytes(), v.cbor, "vector {i}: canonical re-encoding");
    }
    assert!(total_sigs >= 10, "{total_sigs}");
}

#[test]
fn signing_reproduces_the_vectors() {
    // Ed25519 is deterministic, so signing the fields again yields the same bytes.
    for (i, v) in vectors().iter().enumerate() {
        let mut c = Certificate::new(v.to_sign.clone(), v.expiration);
        // Sign in reverse order: the encoding must still sort by identity.
        for k in v.keys.iter().rev() {
            c.add_signature(k);
        }
        assert_eq!(c.to_bytes(), v.cbor, "vector {i}");
        if v.keys.len() == 1 {
            assert_eq!(cert::sign(&v.keys[0], &v.to_sign, v.expiration), v.cbor);
        }
    }
}

#[test]
fn verification_failures() {
    let v = &vectors()[0];
    let key = v.keys[0].verifying_key();
    // Expired: the clock after Expiration; the boundary second is still valid.
    assert!(matches!(
        cert::verify(&v.cbor, &key, v.expiration as u64 + 1),
        Err(CertError::Expired { .. })
    ));
    assert!(cert::verify(&v.cbor, &key, v.expiration as u64).is_ok());
    // Another key.
    let other = SigningKey::from_bytes(&[7; 32]).verifying_key();
    assert_eq!(
        cert::verify(&v.cbor, &other, NOW),
        Err(CertError::NoSignature)
    );
    // Tampered payload: same length, one bit.
    let mut c = Certificate::from_bytes(&v.cbor).unwrap();
    c.certified[0] ^= 1;
    assert_eq!(c.verify(&key, NOW), Err(CertError::BadSignature));
    // Tampered signature.
    let mut c = Certificate::from_bytes(&v.cbor).unwrap();
    c.signatures[0].payload[5] ^= 0x40;
    assert_eq!(c.verify(&key, NOW), Err(CertError::BadSignature));
    // Truncated signature.
    let mut c = Certificate::from_bytes(&v.cbor).unwrap();
    c.signatures[0].payload.truncate(63);
    assert_eq!(c.verify(&key, NOW), Err(CertError::BadSignature));
    // Version / KeyType / Certified rules.
    let mut c = Certificate::from_bytes(&v.cbor).unwrap();
    c.version = 1;
    assert_eq!(c.verify(&key, NOW), Err(CertError::Version(1)));
    let mut c = Certificate::new(Vec::new(), 2_000_000_000);
    c.add_signature(&v.keys[0]);
    assert_eq!(c.verify(&key, NOW), Err(CertError::EmptyCertified));
    let mut c = Certificate::new(b"x".to_vec(), 2_000_000_000);
    c.key_type.clear();
    c.add_signature(&v.keys[0]);
    assert_eq!(c.verify(&key, NOW), Err(CertError::EmptyKeyType));
}

/// Minimal CBOR writer for lenient-parse tests.
fn text(s: &str) -> Vec<u8> {
    let mut v = vec![0x60 | s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

#[test]
fn lenient_parse_any_key_order_and_forms() {
    let v = &vectors()[0];
    let c = Certificate::from_bytes(&v.cbor).unwrap();
    let sig = &c.signatures[0];
    // Reverse key order, non-shortest ints, an indefinite chunked byte string,
    // an indefinite map, and an unknown key with a nested value.
    let mut b = vec![0xbf]; // indefinite map
    b.extend(text("Version"));
    b.extend([0x1a, 0, 0, 0, 0]); // 0 as u32
    b.extend(text("Unknown"));
    b.extend([0x82, 0xa1, 0x61, b'k', 0xf9, 0x3c, 0x00, 0xc1, 0x01]); // [ {k: 1.0}, tag(1) 1 ]
    b.extend(text("Signatures"));
    b.extend([0x9f, 0xa2]);
    b.extend(text("Payload"));
    b.extend([0x58, 64]);
    b.extend(&sig.payload);
    b.extend(text("Identity"));
    b.extend([0x58, 32]);
    b.extend(&sig.identity);
    b.push(0xff);
    b.extend(text("KeyType"));
    b.extend(text("ed25519"));
    b.extend(text("Expiration"));
    b.push(0x1b);
    b.extend((v.expiration as u64).to_be_bytes());
    b.extend(text("Certified"));
    b.push(0x5f);
    b.extend([0x41, v.to_sign[0]]);
    b.push(0x58);
    b.push((v.to_sign.len() - 1) as u8);
    b.extend(&v.to_sign[1..]);
    b.push(0xff);
    b.push(0xff);
    let parsed = Certificate::from_bytes(&b).expect("lenient parse");
    assert_eq!(parsed, c);
    parsed.verify(&v.keys[0].verifying_key(), NOW).unwrap();
    assert_eq!(parsed.to_bytes(), v.cbor);
}

#[test]
fn malformed_inputs_are_errors() {
    let v = &vectors()[0];
    // Every truncation fails cleanly.
    for n in 0..v.cbor.len() {
        assert!(Certificate::from_bytes(&v.cbor[..n]).is_err(), "prefix {n}");
    }
    // Trailing bytes.
    let mut b = v.cbor.clone();
    b.push(0);
    assert_eq!(
        Certificate::from_bytes(&b),
        Err(CertError::TrailingBytes(1))
    );
    // Not a map.
    assert!(Certificate::from_bytes(&[0x80]).is_err());
    // Duplicate key.
    let mut b = vec![0xa2];
    b.extend(text("Version"));
    b.push(0);
    b.extend(text("Version"));
    b.push(0);
    assert_eq!(
        Certificate::from_bytes(&b),
        Err(CertError::DuplicateKey("Version"))
    );
    // Wrong type for a known key.
    let mut b = vec![0xa1];
    b.extend(text("Certified"));
    b.extend(text("x"));
    assert!(Certificate::from_bytes(&b).is_err());
    // Version beyond u32, Expiration beyond i64.
    let mut b = vec![0xa1];
    b.extend(text("Version"));
    b.extend([0x1b, 0, 0, 0, 1, 0, 0, 0, 0]);
    assert!(Certificate::from_bytes(&b).is_err());
    let mut b = vec![0xa1];
    b.extend(text("Expiration"));
    b.extend([0x1b, 0x80, 0, 0, 0, 0, 0, 0, 0]);
    assert!(Certificate::from_bytes(&b).is_err());
    // Deep nesting in an unknown value is refused, not recursed without bound.
    let mut b = vec![0xa1];
    b.extend(text("Deep"));
    b.extend(std::iter::repeat_n(0x81, 10_000));
    b.push(0);
    assert_eq!(
        Certificate::from_bytes(&b),
        Err(CertError::Cbor("nesting too deep"))
    );
}

#[test]
fn huge_declared_lengths_do_not_allocate() {
    // Byte string, text, array and map heads claiming 2^64-1 entries with no
    // content: each must fail quickly without reserving memory.
    for head in [0x5bu8, 0x7b, 0x9b, 0xbb] {
        let mut b = vec![0xa1];
        b.extend(text("Certified"));
        b.push(head);
        b.extend([0xff; 8]);
        assert!(Certificate::from_bytes(&b).is_err(), "head {head:#x}");
        let mut b = vec![0xa1];
        b.extend(text("Unknown"));
        b.push(head);
        b.extend([0xff; 8]);
        assert!(Certificate::from_bytes(&b).is_err(), "head {head:#x}");
    }
    // A top-level map claiming 2^64-1 entries.
    let mut b = vec![0xbb];
    b.extend([0xff; 8]);
    assert!(Certificate::from_bytes(&b).is_err());
    // Signatures array claiming 2^32-1 entries.
    let mut b = vec![0xa1];
    b.extend(text("Signatures"));
    b.extend([0x9a, 0xff, 0xff, 0xff, 0xff]);
    assert!(Certificate::from_bytes(&b).is_err());
}

#[test]
fn negative_expiration_round_trips_and_is_expired() {
    let k = SigningKey::from_bytes(&[3; 32]);
    let bytes = cert::sign(&k, b"payload", -5);
    let c = Certificate::from_bytes(&bytes).unwrap();
    assert_eq!(c.expiration, -5);
    assert_eq!(c.to_bytes(), bytes);
    assert!(matches!(
        c.verify(&k.verifying_key(), 0),
        Err(CertError::Expired { .. })
    ));
}

#[test]
fn add_signature_replaces_same_identity() {
    let k = SigningKey::from_bytes(&[4; 32]);
    let mut c = Certificate::new(b"doc".to_vec(), 2_000_000_000);
    c.add_signature(&k);
    c.add_signature(&k);
    assert_eq!(c.signatures.len(), 1);
    c.verify(&k.verifying_key(), NOW).unwrap();
}
