//! §7.1 request/reply framing end to end (without the Sphinx layer).

use katzenpost::block::ForwardBody;
use katzenpost::geometry::{FORWARD_PAYLOAD_LENGTH, SURB_LENGTH};
use katzenpost::kaetzchen::{
    ack_body, classify_surb_payload, handle_request, KaetzchenError, KeyserverRequest,
    KeyserverResponse, Service, SurbPayload,
};

#[test]
fn keyserver_round_trip_through_bodies() {
    let surb = [0x33u8; SURB_LENGTH];
    let key = [0x42u8; 32];
    // Client: the request body, flags = 1, SURB, plaintext request zero-padded.
    let body = ForwardBody {
        surb: Some(&surb),
        user_payload: &KeyserverRequest::new("alice").encode(),
    }
    .encode()
    .unwrap();
    assert_eq!(body.len(), FORWARD_PAYLOAD_LENGTH);

    // Provider: parse, dispatch, reply.
    let parsed = ForwardBody::parse(&body).unwrap();
    assert_eq!(parsed.surb, Some(&surb));
    let reply = handle_request(Service::Keyserver, &parsed, |u| {
        (u == "alice").then_some(key)
    })
    .unwrap();
    assert_eq!(reply.len(), FORWARD_PAYLOAD_LENGTH);
    assert_eq!(&reply[..2], &[1, 0]);

    // Client: classify the decrypted SURB payload and read the key.
    match classify_surb_payload(&reply).unwrap() {
        SurbPayload::KaetzchenReply(resp) => {
            let resp = KeyserverResponse::decode(resp).unwrap();
            assert_eq!(resp.identity_key_for("alice"), Ok(key));
        }
        other => panic!("expected a Kaetzchen reply, got {other:?}"),
    }
}

#[test]
fn loop_reply_is_01_00_then_zeros() {
    let surb = [0u8; SURB_LENGTH];
    let body = ForwardBody {
        surb: Some(&surb),
        user_payload: &[],
    }
    .encode()
    .unwrap();
    let parsed = ForwardBody::parse(&body).unwrap();
    let reply = handle_request(Service::Loop, &parsed, |_| None).unwrap();
    let mut want = vec![0u8; FORWARD_PAYLOAD_LENGTH];
    want[0] = 1;
    assert_eq!(reply, want);
    assert_eq!(
        classify_surb_payload(&reply),
        Ok(SurbPayload::KaetzchenReply(&[]))
    );
    assert_eq!(classify_surb_payload(&ack_body()), Ok(SurbPayload::Ack));
}

#[test]
fn no_surb_no_reply() {
    let body = ForwardBody {
        surb: None,
        user_payload: &KeyserverRequest::new("alice").encode(),
    }
    .encode()
    .unwrap();
    let parsed = ForwardBody::parse(&body).unwrap();
    assert_eq!(
        handle_request(Service::Keyserver, &parsed, |_| Some([1; 32])),
        Err(KaetzchenError::NoSurb)
    );
    assert_eq!(
        handle_request(Service::Loop, &parsed, |_| None),
        Err(KaetzchenError::NoSurb)
    );
}
