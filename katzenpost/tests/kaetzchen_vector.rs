//! §7.2 keyserver strings from `e2e_block_vector.json`, both sides.

use katzenpost::kaetzchen::{
    keyserver_respond, KeyserverRequest, KeyserverResponse, KeyserverStatus,
};

const VECTOR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/katzenpost-2019/e2e_block_vector.json"
);

fn vector() -> serde_json::Value {
    let text = std::fs::read_to_string(VECTOR)
        .unwrap_or_else(|e| panic!("test vector {VECTOR} missing: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("test vector {VECTOR} is not JSON: {e}"))
}

fn bob_key(v: &serde_json::Value) -> [u8; 32] {
    hex::decode(v["recipient_public_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

#[test]
fn request_json_is_byte_exact() {
    let v = vector();
    let want = v["keyserver_request_json"].as_str().unwrap();
    assert_eq!(KeyserverRequest::new("bob").encode(), want.as_bytes());
    assert_eq!(
        KeyserverRequest::decode(want.as_bytes()),
        Ok(KeyserverRequest::new("bob"))
    );
}

#[test]
fn response_json_is_byte_exact() {
    let v = vector();
    let want = v["keyserver_response_json"].as_str().unwrap();
    let key = bob_key(&v);
    assert_eq!(
        KeyserverResponse::found("bob", &key).encode(),
        want.as_bytes()
    );
    let parsed = KeyserverResponse::decode(want.as_bytes()).unwrap();
    assert_eq!(parsed.identity_key_for("bob"), Ok(key));
    assert!(parsed.identity_key_for("alice").is_err());
}

#[test]
fn server_answers_the_vector_request_with_the_vector_response() {
    let v = vector();
    let key = bob_key(&v);
    // As it arrives: the request zero-padded to the 50,642-byte user payload.
    let mut payload = v["keyserver_request_json"]
        .as_str()
        .unwrap()
        .as_bytes()
        .to_vec();
    payload.resize(katzenpost::geometry::USER_FORWARD_PAYLOAD_LENGTH, 0);
    let resp = keyserver_respond(&payload, |u| (u == "bob").then_some(key));
    assert_eq!(
        resp,
        v["keyserver_response_json"].as_str().unwrap().as_bytes()
    );
}

#[test]
fn server_status_codes() {
    let resp = keyserver_respond(br#"{"User":"carol","Version":0}"#, |_| None);
    assert_eq!(
        resp,
        br#"{"PublicKey":"","StatusCode":2,"User":"carol","Version":0}"#
    );
    let parsed = KeyserverResponse::decode(&resp).unwrap();
    assert_eq!(parsed.status_code, KeyserverStatus::NoIdentity.code());
    assert!(parsed.identity_key_for("carol").is_err());

    for bad in [
        &br#"{"User":"bob","Version":1}"#[..],
        br#"{"User":"bob","Bogus":0}"#,
        b"garbage",
    ] {
        let resp = keyserver_respond(bad, |_| panic!("no lookup on a syntax error"));
        assert_eq!(
            resp,
            br#"{"PublicKey":"","StatusCode":1,"User":"","Version":0}"#
        );
    }

    // Looked up exactly as sent: no case mapping.
    let mut seen = String::new();
    keyserver_respond(br#"{"User":"Bob","Version":0}"#, |u| {
        seen = u.to_string();
        None
    });
    assert_eq!(seen, "Bob");
}
