//! Documents and descriptors (§5.3-§5.5): the real epoch-27708 consensus,
//! canonical serialisation, creation round trips and every validation rule.

use std::collections::BTreeMap;

use base64::Engine as _;
use ed25519_dalek::{SigningKey, VerifyingKey};
use katzenpost::pki::cert::{self, CertError, Certificate};
use katzenpost::pki::document::{
    expiration_for, sign_descriptor, sign_document, DescriptorError, Document, DocumentError,
    MixDescriptor, Parameters, RawDocument, LAYER_PROVIDER,
};

const CONSENSUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/katzenpost-2019/consensus_epoch27708.cbor"
);
/// Authority key from the vectors README.
const AUTHORITY_KEY_B64: &str = "OpboUcwNS6Qs5uaNPfDYHDpT6ahaasFtc0IY2NZcNw0=";
/// Certificate expiration of the consensus (2026-11-24 22:27:32 UTC).
const EXPIRATION: u64 = 1_795_559_252;
/// Start of epoch 27708 (2026-11-24 12:00 UTC).
const EPOCH_START: u64 = 1_496_275_200 + 27_708 * 10_800;
const BEFORE_EXPIRY: u64 = EPOCH_START + 3600;

fn consensus() -> Vec<u8> {
    std::fs::read(CONSENSUS).unwrap_or_else(|e| panic!("missing test vector file {CONSENSUS}: {e}"))
}

fn authority_key() -> VerifyingKey {
    let b: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(AUTHORITY_KEY_B64)
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(
        hex::encode(b),
        "3a96e851cc0d4ba42ce6e68d3df0d81c3a53e9a85a6ac16d734218d8d65c370d"
    );
    VerifyingKey::from_bytes(&b).unwrap()
}

#[test]
fn consensus_verifies_and_parses() {
    let bytes = consensus();
    let doc = Document::verify_and_parse(&bytes, &authority_key(), BEFORE_EXPIRY)
        .expect("consensus verifies before its expiry");
    assert_eq!(doc.epoch, 27_708);
    assert_eq!(doc.params.send_rate_per_minute, 100);
    for (rate, max) in [
        (doc.params.mu, doc.params.mu_max_delay),
        (doc.params.lambda_p, doc.params.lambda_p_max_delay),
        (doc.params.lambda_l, doc.params.lambda_l_max_delay),
        (doc.params.lambda_d, doc.params.lambda_d_max_delay),
        (doc.params.lambda_m, doc.params.lambda_m_max_delay),
    ] {
        assert_eq!(rate, 0.00025);
        assert_eq!(max, 46_051);
    }
    assert!(doc.shared_random_commit.is_empty());
    assert_eq!(doc.shared_random_value, vec![0u8; 32]);
    // 3 layers x 1 mix.
    assert_eq!(doc.topology.len(), 3);
    let mut names = Vec::new();
    for (l, layer) in doc.topology.iter().enumerate() {
        assert_eq!(layer.len(), 1);
        let m = &layer[0];
        assert_eq!(m.layer as usize, l, "layer set to the topology index");
        assert!(m.kaetzchen.is_empty());
        assert_eq!(
            m.mix_keys.keys().copied().collect::<Vec<_>>(),
            [27_708, 27_709, 27_710]
        );
        assert_eq!(m.addresses.keys().collect::<Vec<_>>(), ["tcp4"]);
        assert!(m.addresses["tcp4"][0].starts_with("127.0.0.1:3000"));
        assert!(!m.signed.is_empty());
        names.push(m.name.clone());
    }
    names.sort();
    assert_eq!(names, ["mix1", "mix2", "mix3"]);
    // 1 provider with keyserver and loop.
    assert_eq!(doc.providers.len(), 1);
    let p = &doc.providers[0];
    assert_eq!(p.name, "provider1");
    assert_eq!(p.layer, LAYER_PROVIDER);
    assert_eq!(p.addresses["tcp4"], ["127.0.0.1:30004"]);
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(p.identity_key),
        "8r6zNqVEOryFYjdnrKEOAj3C31Kt8iLPPpqtDizgM/I="
    );
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(p.link_key),
        "+LHzuG2YsGlNtqkXBkJhDk4gm6i8/Z9IU950O57DjWg="
    );
    assert_eq!(p.kaetzchen.len(), 2);
    assert_eq!(p.kaetzchen["keyserver"]["endpoint"], "+keyserver");
    assert_eq!(p.kaetzchen["loop"]["endpoint"], "+loop");
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(p.mix_keys[&27_708]),
        "/Z3wuNEX0cGU+nEw4Py8yz9o/N/GjIWR2+0x2L+KKHE="
    );
    assert_eq!(p.kaetzchen_endpoint("keyserver"), Some("+keyserver"));
    assert_eq!(p.kaetzchen_endpoint("loop"), Some("+loop"));
    assert_eq!(p.kaetzchen_endpoint("echo"), None);
    assert_eq!(doc.provider_by_name("provider1"), Some(p));
    assert_eq!(doc.node_by_identity(&p.identity_key), Some(p));
    assert_eq!(doc.nodes().count(), 4);
}

#[test]
fn all_four_descriptor_self_signatures_verify() {
    let c = Certificate::from_bytes(&consensus()).unwrap();
    let raw = RawDocument::from_json(&c.certified).unwrap();
    let blobs: Vec<&Vec<u8>> = raw
        .topology
        .iter()
        .flatten()
        .chain(&raw.providers)
        .collect();
    assert_eq!(blobs.len(), 4);
    for blob in blobs {
        let d = MixDescriptor::parse_signed(blob, 27_708, BEFORE_EXPIRY).unwrap();
        let key = VerifyingKey::from_bytes(&d.identity_key).unwrap();
        let certified = cert::verify(blob, &key, BEFORE_EXPIRY).expect("self-signature");
        let dc = Certificate::from_bytes(blob).unwrap();
        assert_eq!(dc.signatures.len(), 1);
        assert_eq!(dc.expiration, EXPIRATION as i64);
        // Canonical re-serialisation reproduces the node's JSON and CBOR exactly.
        assert_eq!(d.to_json().unwrap(), certified, "descriptor {}", d.name);
        assert_eq!(&dc.to_bytes(), blob);
        // Wrong epoch: not well formed.
        assert!(matches!(
            MixDescriptor::parse_signed(blob, 27_707, BEFORE_EXPIRY),
            Err(DescriptorError::MissingMixKey(27_707))
        ));
        assert!(matches!(
            MixDescriptor::parse_signed(blob, 27_709, BEFORE_EXPIRY),
            Err(DescriptorError::MixKeyEpoch {
                key_epoch: 27_708,
                ..
            })
        ));
    }
}

#[test]
fn consensus_serialises_byte_identically() {
    let bytes = consensus();
    let c = Certificate::from_bytes(&bytes).unwrap();
    assert_eq!(c.to_bytes(), bytes, "CBOR envelope re-encodes identically");
    assert_eq!(c.expiration, EXPIRATION as i64);
    let raw = RawDocument::from_json(&c.certified).unwrap();
    assert_eq!(raw.to_json().unwrap(), c.certified, "raw JSON round trip");
    let doc = Document::verify_and_parse(&bytes, &authority_key(), BEFORE_EXPIRY).unwrap();
    assert_eq!(
        doc.to_json().unwrap(),
        c.certified,
        "document JSON as the Go authority"
    );
}

#[test]
fn consensus_rejected_after_expiry_and_with_other_keys() {
    let bytes = consensus();
    let key = authority_key();
    assert!(Document::verify_and_parse_for_epoch(&bytes, &key, 27_708, BEFORE_EXPIRY).is_ok());
    assert_eq!(
        Document::verify_and_parse_for_epoch(&bytes, &key, 27_709, BEFORE_EXPIRY),
        Err(DocumentError::WrongEpoch {
            want: 27_709,
            got: 27_708
        })
    );
    assert!(Document::verify_and_parse(&bytes, &key, EXPIRATION).is_ok());
    assert!(matches!(
        Document::verify_and_parse(&bytes, &key, EXPIRATION + 1),
        Err(DocumentError::Cert(CertError::Expired { .. }))
    ));
    let other = SigningKey::from_bytes(&[9; 32]).verifying_key();
    assert_eq!(
        Document::verify_and_parse(&bytes, &other, BEFORE_EXPIRY),
        Err(DocumentError::Cert(CertError::NoSignature))
    );
    // One flipped byte inside the signed JSON.
    let mut c = Certificate::from_bytes(&bytes).unwrap();
    let pos = c.certified.iter().position(|&b| b == b'7').unwrap();
    c.certified[pos] = b'8';
    assert_eq!(
        Document::verify_and_parse(&c.to_bytes(), &key, BEFORE_EXPIRY),
        Err(DocumentError::Cert(CertError::BadSignature))
    );
}

// ------------------------------------------------------------------ creation

const EPOCH: u64 = 27_708;
const NOW: u64 = EPOCH_START + 60;

fn key(i: u8) -> SigningKey {
    SigningKey::from_bytes(&[i; 32])
}

fn mix(i: u8) -> MixDescriptor {
    MixDescriptor {
        name: format!("mix{i}"),
        identity_key: key(i).verifying_key().to_bytes(),
        link_key: [i.wrapping_add(100); 32],
        mix_keys: (EPOCH..EPOCH + 3).map(|e| (e, [e as u8 ^ i; 32])).collect(),
        addresses: BTreeMap::from([(
            "tcp4".to_owned(),
            vec![format!("127.0.0.1:{}", 30_000 + u16::from(i))],
        )]),
        ..Default::default()
    }
}

fn provider(i: u8, name: &str) -> MixDescriptor {
    let mut d = mix(i);
    d.name = name.to_owned();
    d.layer = LAYER_PROVIDER;
    d.addresses
        .insert("tcp".to_owned(), vec![format!("{name}.example.org:1234")]);
    d.addresses
        .insert("onion".to_owned(), vec!["abcdef.onion:99".to_owned()]);
    for cap in ["keyserver", "loop"] {
        d.kaetzchen.insert(
            cap.to_owned(),
            BTreeMap::from([("endpoint".to_owned(), serde_json::json!(format!("+{cap}")))]),
        );
    }
    d
}

/// Signs and parses back (the descriptor then carries its signed bytes).
fn signed(d: &MixDescriptor, k: &SigningKey) -> MixDescriptor {
    let bytes = sign_descriptor(d, k, expiration_for(NOW)).unwrap();
    let parsed = MixDescriptor::parse_signed(&bytes, EPOCH, NOW).unwrap();
    let mut want = d.clone();
    want.signed = bytes;
    assert_eq!(parsed, want);
    parsed
}

fn document() -> Document {
    Document {
        epoch: EPOCH,
        params: Parameters {
            send_rate_per_minute: 100,
            mu: 0.00025,
            mu_max_delay: 46_051,
            lambda_p: 0.00025,
            lambda_p_max_delay: 46_051,
            lambda_l: 0.0005,
            lambda_l_max_delay: 23_025,
            lambda_d: 0.000025,
            lambda_d_max_delay: 460_517,
            lambda_m: 1.0,
            lambda_m_max_delay: 1,
        },
        topology: vec![
            vec![signed(&mix(1), &key(1))],
            vec![signed(&mix(2), &key(2)), signed(&mix(3), &key(3))],
            vec![signed(&mix(4), &key(4))],
        ],
        providers: vec![
            signed(&provider(5, "provider1"), &key(5)),
            signed(&provider(6, "provider2"), &key(6)),
        ],
        shared_random_commit: Vec::new(),
        shared_random_value: vec![0; 32],
    }
}

fn with_index_layers(mut doc: Document) -> Document {
    for (l, layer) in doc.topology.iter_mut().enumerate() {
        for d in layer {
            d.layer = l as u8;
        }
    }
    doc
}

#[test]
fn create_sign_verify_parse_round_trip() {
    let doc = document();
    let authority = key(200);
    let bytes = sign_document(&doc, &authority, expiration_for(NOW)).unwrap();
    let parsed = Document::verify_and_parse(&bytes, &authority.verifying_key(), NOW).unwrap();
    assert_eq!(parsed, with_index_layers(doc.clone()));
    // The JSON looks like the Go authority's: sorted keys, integers as strings.
    let json = Certificate::from_bytes(&bytes).unwrap().certified;
    let text = String::from_utf8(json.clone()).unwrap();
    assert!(
        text.starts_with(
            r#"{"Epoch":"27708","LambdaD":2.5E-05,"LambdaDMaxDelay":"460517","LambdaL":0.0005,"#
        ),
        "{text}"
    );
    assert!(text.contains(r#""LambdaM":1.0,"#));
    assert!(text.contains(r#""SharedRandomCommit":null,"SharedRandomValue":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","Topology":[["#));
    assert!(text.ends_with(r#"]],"Version":"document-v0"}"#));
    // Re-signing the parsed document gives the same bytes (deterministic).
    assert_eq!(
        sign_document(&parsed, &authority, expiration_for(NOW)).unwrap(),
        bytes
    );
    // Expired after 9 h 10 min.
    assert!(Document::verify_and_parse(&bytes, &authority.verifying_key(), NOW + 33_000).is_ok());
    assert!(Document::verify_and_parse(&bytes, &authority.verifying_key(), NOW + 33_001).is_err());
}

#[test]
fn provider_descriptor_json_is_canonical() {
    let d = provider(5, "provider1");
    let json = String::from_utf8(d.to_json().unwrap()).unwrap();
    let id = base64::engine::general_purpose::STANDARD.encode(d.identity_key);
    let link = base64::engine::general_purpose::STANDARD.encode(d.link_key);
    let k0 = base64::engine::general_purpose::STANDARD.encode(d.mix_keys[&EPOCH]);
    assert!(json.starts_with(&format!(
        r#"{{"Addresses":{{"onion":["abcdef.onion:99"],"tcp":["provider1.example.org:1234"],"tcp4":["127.0.0.1:30005"]}},"IdentityKey":"{id}","Kaetzchen":{{"keyserver":{{"endpoint":"+keyserver"}},"loop":{{"endpoint":"+loop"}}}},"Layer":"255","LinkKey":"{link}","LoadWeight":"0","MixKeys":{{"27708":"{k0}","#
    )), "{json}");
    assert!(
        json.ends_with(r#","Name":"provider1","Version":"v0"}"#),
        "{json}"
    );
    // A mix omits Kaetzchen entirely.
    let m = String::from_utf8(mix(1).to_json().unwrap()).unwrap();
    assert!(!m.contains("Kaetzchen"));
    assert!(m.contains(r#""Layer":"0","#));
}

#[test]
fn lenient_json_forms() {
    // Integers as numbers, unknown fields, nulls, any key order.
    let d = mix(1);
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let json = format!(
        r#"{{"Version":"v0","Name":"mix1","Future":{{"x":[1,2]}},"Layer":0,"LoadWeight":null,
            "IdentityKey":"{}","LinkKey":"{}","Kaetzchen":null,
            "MixKeys":{{"27708":"{}","27709":"{}","27710":"{}"}},
            "Addresses":{{"tcp4":["127.0.0.1:30001"]}}}}"#,
        b64(&d.identity_key),
        b64(&d.link_key),
        b64(&d.mix_keys[&27_708]),
        b64(&d.mix_keys[&27_709]),
        b64(&d.mix_keys[&27_710]),
    );
    let (parsed, version) = MixDescriptor::from_json(json.as_bytes()).unwrap();
    assert_eq!(version, "v0");
    assert_eq!(parsed, d);
    // Document integers as numbers, SharedRandomCommit absent.
    let raw = RawDocument::from_json(
        br#"{"Epoch":27708,"Mu":"0.5","MuMaxDelay":"7","Topology":[null,[]],"Providers":null,"Version":"document-v0","Extra":1}"#,
    )
    .unwrap();
    assert_eq!(raw.epoch, 27_708);
    assert_eq!(raw.params.mu, 0.5);
    assert_eq!(raw.params.mu_max_delay, 7);
    assert_eq!(raw.topology, vec![Vec::<Vec<u8>>::new(), Vec::new()]);
    assert!(raw.providers.is_empty() && raw.shared_random_commit.is_empty());
    // Wrong types are errors naming the field.
    for (bad, field) in [
        (r#"{"Epoch":"-1"}"#, "Epoch"),
        (r#"{"Epoch":1.5}"#, "Epoch"),
        (r#"{"Mu":[]}"#, "Mu"),
        (r#"{"Topology":["x"]}"#, "Topology"),
        (r#"{"Providers":["***"]}"#, "Providers"),
        (r#"{"SharedRandomValue":5}"#, "SharedRandomValue"),
        (r#"{"Version":7}"#, "Version"),
    ] {
        match RawDocument::from_json(bad.as_bytes()) {
            Err(DocumentError::Field { field: f, .. }) => assert_eq!(f, field, "{bad}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
    assert!(matches!(
        RawDocument::from_json(b"[1]"),
        Err(DocumentError::Json(_))
    ));
    assert!(matches!(
        RawDocument::from_json(b"{"),
        Err(DocumentError::Json(_))
    ));
    assert!(matches!(
        MixDescriptor::from_json(br#"{"Name":"x"}"#),
        Err(DescriptorError::Field {
            field: "IdentityKey",
            reason: "missing"
        })
    ));
    assert!(matches!(
        MixDescriptor::from_json(br#"{"IdentityKey":"AAAA"}"#),
        Err(DescriptorError::Field {
            field: "IdentityKey",
            reason: "wrong length"
        })
    ));
    let j = String::from_utf8(mix(1).to_json().unwrap()).unwrap();
    assert!(j.contains(r#""Layer":"0""#));
    let j = j.replace(r#""Layer":"0""#, r#""Layer":"256""#);
    assert!(matches!(
        MixDescriptor::from_json(j.as_bytes()),
        Err(DescriptorError::Field { field: "Layer", .. })
    ));
}

// ---------------------------------------------------------- descriptor rules

fn check(d: &MixDescriptor) -> Result<(), DescriptorError> {
    d.validate(EPOCH)
}

#[test]
fn descriptor_rules() {
    assert!(check(&mix(1)).is_ok());
    assert!(check(&provider(2, "p")).is_ok());

    let mut d = mix(1);
    d.name.clear();
    assert_eq!(check(&d), Err(DescriptorError::Name(0)));
    d.name = "x".repeat(33);
    assert_eq!(check(&d), Err(DescriptorError::Name(33)));
    d.name = "x".repeat(32);
    assert!(check(&d).is_ok());

    let mut d = mix(1);
    d.mix_keys.remove(&EPOCH);
    assert_eq!(check(&d), Err(DescriptorError::MissingMixKey(EPOCH)));
    let mut d = mix(1);
    d.mix_keys.insert(EPOCH + 3, [0; 32]);
    assert!(matches!(
        check(&d),
        Err(DescriptorError::MixKeyEpoch { .. })
    ));
    let mut d = mix(1);
    d.mix_keys.insert(EPOCH - 1, [0; 32]);
    assert!(matches!(
        check(&d),
        Err(DescriptorError::MixKeyEpoch { .. })
    ));

    let mut d = mix(1);
    d.addresses.clear();
    assert_eq!(check(&d), Err(DescriptorError::NoAddresses));
    let mut d = mix(1);
    d.addresses.insert(String::new(), vec!["1.2.3.4:5".into()]);
    assert_eq!(check(&d), Err(DescriptorError::EmptyTransport));
    let mut d = mix(1);
    d.addresses.insert("tcp6".into(), vec![]);
    assert_eq!(
        check(&d),
        Err(DescriptorError::EmptyAddressList("tcp6".into()))
    );
    let mut d = mix(1);
    d.addresses.insert("tcp6".into(), vec!["[::1]:80".into()]);
    assert!(check(&d).is_ok());
    d.addresses
        .insert("tcp6".into(), vec!["127.0.0.1:80".into()]);
    assert!(matches!(check(&d), Err(DescriptorError::Address { .. })));
    let mut d = mix(1);
    d.addresses.insert("tcp4".into(), vec!["[::1]:80".into()]);
    assert!(matches!(check(&d), Err(DescriptorError::Address { .. })));
    for bad in [
        "127.0.0.1",
        "127.0.0.1:0",
        "127.0.0.1:70000",
        "host:80",
        ":80",
    ] {
        let mut d = mix(1);
        d.addresses.insert("tcp4".into(), vec![bad.into()]);
        assert!(
            matches!(check(&d), Err(DescriptorError::Address { .. })),
            "{bad}"
        );
    }
    // Other transports only for providers.
    let mut d = mix(1);
    d.addresses.insert("onion".into(), vec!["x.onion:1".into()]);
    assert_eq!(
        check(&d),
        Err(DescriptorError::TransportNotAllowed("onion".into()))
    );
    let mut d = provider(2, "p");
    d.addresses.insert("tcp".into(), vec!["bad_name:80".into()]);
    assert!(matches!(check(&d), Err(DescriptorError::Address { .. })));
    let mut d = provider(2, "p");
    d.addresses
        .insert("onion".into(), vec!["anything at all".into()]);
    assert!(check(&d).is_ok(), "unvalidated transports are not checked");
    // tcp4 required.
    let mut d = provider(2, "p");
    d.addresses.remove("tcp4");
    assert_eq!(check(&d), Err(DescriptorError::NoTcp4));

    // Layers and Kaetzchen.
    let mut d = mix(1);
    d.layer = 1;
    assert_eq!(check(&d), Err(DescriptorError::Layer(1)));
    let mut d = provider(2, "p");
    d.layer = 0;
    d.addresses.retain(|k, _| k == "tcp4");
    assert_eq!(check(&d), Err(DescriptorError::MixWithKaetzchen));
    let mut d = provider(2, "p");
    d.kaetzchen.insert(
        String::new(),
        BTreeMap::from([("endpoint".into(), "+x".into())]),
    );
    assert!(matches!(check(&d), Err(DescriptorError::Kaetzchen { .. })));
    let mut d = provider(2, "p");
    d.kaetzchen.insert(
        "echo".into(),
        BTreeMap::from([("endpoint".into(), serde_json::json!(5))]),
    );
    assert!(matches!(check(&d), Err(DescriptorError::Kaetzchen { .. })));
    let mut d = provider(2, "p");
    d.kaetzchen.insert("echo".into(), BTreeMap::new());
    assert!(matches!(check(&d), Err(DescriptorError::Kaetzchen { .. })));
    let mut d = provider(2, "p");
    d.kaetzchen.insert(
        "echo".into(),
        BTreeMap::from([("endpoint".into(), "e".repeat(65).into())]),
    );
    assert!(matches!(check(&d), Err(DescriptorError::Kaetzchen { .. })));
    d.kaetzchen.insert(
        "echo".into(),
        BTreeMap::from([("endpoint".into(), "e".repeat(64).into())]),
    );
    assert!(check(&d).is_ok());
}

#[test]
fn signed_descriptor_rules() {
    let d = mix(1);
    // Signed by another key: refused at signing, and no matching signature at parse.
    assert_eq!(
        sign_descriptor(&d, &key(2), expiration_for(NOW)),
        Err(DescriptorError::Identity)
    );
    let forged = cert::sign(&key(2), &d.to_json().unwrap(), expiration_for(NOW));
    assert_eq!(
        MixDescriptor::parse_signed(&forged, EPOCH, NOW),
        Err(DescriptorError::Cert(CertError::NoSignature))
    );
    // Two signatures.
    let mut c = Certificate::new(d.to_json().unwrap(), expiration_for(NOW));
    c.add_signature(&key(1));
    c.add_signature(&key(2));
    assert_eq!(
        MixDescriptor::parse_signed(&c.to_bytes(), EPOCH, NOW),
        Err(DescriptorError::SignatureCount(2))
    );
    // Version.
    let json = String::from_utf8(d.to_json().unwrap())
        .unwrap()
        .replace(r#""Version":"v0""#, r#""Version":"v1""#);
    let b = cert::sign(&key(1), json.as_bytes(), expiration_for(NOW));
    assert_eq!(
        MixDescriptor::parse_signed(&b, EPOCH, NOW),
        Err(DescriptorError::Version("v1".into()))
    );
    // Expired.
    let b = sign_descriptor(&d, &key(1), (NOW - 1) as i64).unwrap();
    assert!(matches!(
        MixDescriptor::parse_signed(&b, EPOCH, NOW),
        Err(DescriptorError::Cert(CertError::Expired { .. }))
    ));
    // Not well formed.
    let mut bad = d.clone();
    bad.name.clear();
    let b = sign_descriptor(&bad, &key(1), expiration_for(NOW)).unwrap();
    assert_eq!(
        MixDescriptor::parse_signed(&b, EPOCH, NOW),
        Err(DescriptorError::Name(0))
    );
    // Expected identity (authority upload check).
    let b = sign_descriptor(&d, &key(1), expiration_for(NOW)).unwrap();
    assert!(MixDescriptor::parse_signed_by(&b, &d.identity_key, EPOCH, NOW).is_ok());
    assert_eq!(
        MixDescriptor::parse_signed_by(&b, &[0; 32], EPOCH, NOW),
        Err(DescriptorError::Identity)
    );
}

// ------------------------------------------------------------ document rules

/// Signs an arbitrary raw document with the authority key and parses it.
fn parse_raw(raw: &RawDocument) -> Result<Document, DocumentError> {
    let authority = key(200);
    let bytes = cert::sign(&authority, &raw.to_json().unwrap(), expiration_for(NOW));
    Document::verify_and_parse(&bytes, &authority.verifying_key(), NOW)
}

#[test]
fn document_rules() {
    let good = document().to_raw().unwrap();
    assert!(parse_raw(&good).is_ok());

    let mut r = good.clone();
    r.version = "document-v1".into();
    assert_eq!(
        parse_raw(&r),
        Err(DocumentError::Version("document-v1".into()))
    );

    // Shared random: 40-byte commit for this epoch with a 32-byte or empty value.
    let mut commit = EPOCH.to_be_bytes().to_vec();
    commit.extend([7; 32]);
    let mut r = good.clone();
    r.shared_random_commit = commit.clone();
    assert!(parse_raw(&r).is_ok());
    r.shared_random_value.clear();
    assert!(parse_raw(&r).is_ok());
    let mut r = good.clone();
    let mut wrong = (EPOCH + 1).to_be_bytes().to_vec();
    wrong.extend([7; 32]);
    r.shared_random_commit = wrong;
    assert_eq!(
        parse_raw(&r),
        Err(DocumentError::SharedRandomCommitEpoch(EPOCH + 1))
    );
    let mut r = good.clone();
    r.shared_random_value.clear();
    assert_eq!(parse_raw(&r), Err(DocumentError::SharedRandomValue(0)));
    let mut r = good.clone();
    r.shared_random_value = vec![0; 31];
    assert_eq!(parse_raw(&r), Err(DocumentError::SharedRandomValue(31)));
    let mut r = good.clone();
    r.shared_random_commit = vec![0; 39];
    assert_eq!(parse_raw(&r), Err(DocumentError::SharedRandomCommit(39)));

    // Structure.
    let mut r = good.clone();
    r.topology.clear();
    assert_eq!(parse_raw(&r), Err(DocumentError::EmptyTopology));
    let mut r = good.clone();
    r.topology[1].clear();
    assert_eq!(parse_raw(&r), Err(DocumentError::EmptyLayer(1)));
    let mut r = good.clone();
    r.providers.clear();
    assert_eq!(parse_raw(&r), Err(DocumentError::NoProviders));
    let mut r = good.clone();
    r.providers.push(r.topology[0][0].clone());
    assert_eq!(
        parse_raw(&r),
        Err(DocumentError::ProviderLayer { index: 2, layer: 0 })
    );
    let mut r = good.clone();
    let dup = r.topology[0][0].clone();
    r.topology[2].push(dup);
    assert_eq!(
        parse_raw(&r),
        Err(DocumentError::DuplicateIdentity("Topology[2][1]".into()))
    );
    let mut r = good.clone();
    let dup = r.providers[0].clone();
    r.providers.push(dup);
    assert_eq!(
        parse_raw(&r),
        Err(DocumentError::DuplicateIdentity("Providers[2]".into()))
    );

    // A descriptor for the wrong epoch, and a tampered descriptor.
    let mut r = good.clone();
    r.epoch = EPOCH + 1;
    match parse_raw(&r) {
        Err(DocumentError::Descriptor {
            location,
            source: DescriptorError::MixKeyEpoch { .. },
        }) => {
            assert_eq!(location, "Topology[0][0]")
        }
        other => panic!("{other:?}"),
    }
    let mut r = good.clone();
    let mut c = Certificate::from_bytes(&r.providers[1]).unwrap();
    let n = c.certified.len();
    c.certified[n - 3] ^= 1; // inside "v0"
    r.providers[1] = c.to_bytes();
    match parse_raw(&r) {
        Err(DocumentError::Descriptor { location, .. }) => assert_eq!(location, "Providers[1]"),
        other => panic!("{other:?}"),
    }
    let mut r = good.clone();
    r.providers[0] = b"not cbor".to_vec();
    assert!(matches!(
        parse_raw(&r),
        Err(DocumentError::Descriptor { .. })
    ));
}

#[test]
fn signing_refuses_bad_documents() {
    let authority = key(200);
    let mut d = document();
    d.providers[0].signed.clear();
    assert_eq!(
        sign_document(&d, &authority, expiration_for(NOW)),
        Err(DocumentError::UnsignedDescriptor("Providers[0]".into()))
    );
    let mut d = document();
    d.providers.clear();
    assert_eq!(
        sign_document(&d, &authority, expiration_for(NOW)),
        Err(DocumentError::NoProviders)
    );
    let mut d = document();
    d.params.mu = f64::NAN;
    assert_eq!(
        sign_document(&d, &authority, expiration_for(NOW)),
        Err(DocumentError::NonFinite("Mu"))
    );
}

#[test]
fn expiration_is_nine_hours_ten_minutes() {
    assert_eq!(expiration_for(1000), 1000 + 9 * 3600 + 600);
    assert_eq!(expiration_for(u64::MAX), i64::MAX);
}

#[test]
fn garbage_never_panics() {
    let authority = authority_key();
    let bytes = consensus();
    // Every prefix and a sample of single-byte corruptions fail cleanly.
    for n in (0..bytes.len()).step_by(7) {
        assert!(Document::verify_and_parse(&bytes[..n], &authority, BEFORE_EXPIRY).is_err());
    }
    for i in (0..bytes.len()).step_by(13) {
        let mut b = bytes.clone();
        b[i] ^= 0x55;
        assert!(
            Document::verify_and_parse(&b, &authority, BEFORE_EXPIRY).is_err(),
            "byte {i}"
        );
    }
}
