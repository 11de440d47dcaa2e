#![no_main]
//! Link handshake messages (§4.1–§4.5): the responder's and the initiator's
//! readers never panic on arbitrary bytes, the AuthenticateMessage payload
//! decodes and re-encodes to its input minus the unchecked padding, and a
//! handshake whose messages are altered anywhere never completes.
//!
//! The first input byte picks the case; the rest is the message (or the XOR
//! mask laid over the three messages of an honest handshake).
use katzenpost::wire::handshake::{
    AcceptAny, AuthenticateMessage, Initiator, LocalIdentity, Responder, AUTH_MESSAGE_LEN,
    MSG1_LEN, MSG2_LEN,
};
use libfuzzer_sys::fuzz_target;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn identities() -> (LocalIdentity, LocalIdentity) {
    (
        LocalIdentity::new([1; 32], b"alice".to_vec()).expect("5 bytes of additional data"),
        LocalIdentity::new([2; 32], vec![7; 32]).expect("32 bytes of additional data"),
    )
}

fn xor(message: &mut [u8], mask: &[u8]) -> bool {
    let mut changed = false;
    for (m, k) in message.iter_mut().zip(mask) {
        *m ^= k;
        changed |= *k != 0;
    }
    changed
}

fuzz_target!(|data: &[u8]| {
    let Some((&case, rest)) = data.split_first() else {
        return;
    };
    let (i_id, r_id) = identities();
    let mut rng = ChaCha20Rng::seed_from_u64(u64::from(case));
    match case % 4 {
        // Responder: message 1 from an unknown peer, then message 3.
        0 => {
            let (msg1, msg3) = rest.split_at(rest.len().min(MSG1_LEN));
            if let Ok((resp, msg2)) = Responder::read_message1(&r_id, msg1, 7, &mut rng) {
                assert_eq!(msg1.len(), MSG1_LEN);
                assert_eq!(msg2.len(), MSG2_LEN);
                let _ = resp.read_message3(msg3, &AcceptAny);
            }
        }
        // Initiator: message 2 from an unknown responder.
        1 => {
            let (init, msg1) = Initiator::start(&i_id, &mut rng);
            assert_eq!(msg1.len(), MSG1_LEN);
            let _ = init.read_message2(rest, 7, &AcceptAny);
        }
        // The payload.
        2 => {
            if let Some(am) = AuthenticateMessage::decode(rest) {
                assert_eq!(rest.len(), AUTH_MESSAGE_LEN);
                let enc = am.encode();
                let n = 1 + usize::from(rest[0]);
                assert_eq!(enc[..n], rest[..n]);
                assert_eq!(enc[AUTH_MESSAGE_LEN - 4..], rest[AUTH_MESSAGE_LEN - 4..]);
                assert_eq!(AuthenticateMessage::decode(&enc), Some(am));
            }
        }
        // An honest handshake with the mask laid over messages 1, 2 and 3.
        _ => {
            let (mask1, rest) = rest.split_at(rest.len().min(MSG1_LEN));
            let (mask2, mask3) = rest.split_at(rest.len().min(MSG2_LEN));
            let (init, mut msg1) = Initiator::start(&i_id, &mut rng);
            let mut altered = xor(&mut msg1, mask1);
            let outcome = Responder::read_message1(&r_id, &msg1, 1000, &mut rng).and_then(
                |(resp, mut msg2)| {
                    altered |= xor(&mut msg2, mask2);
                    let (mut msg3, ie) = init.read_message2(&msg2, 1003, &AcceptAny)?;
                    altered |= xor(&mut msg3, mask3);
                    let re = resp.read_message3(&msg3, &AcceptAny)?;
                    Ok((ie, re))
                },
            );
            match outcome {
                Ok((ie, re)) => {
                    assert!(!altered, "an altered handshake completed");
                    assert_eq!(ie.handshake_hash, re.handshake_hash);
                }
                Err(e) => assert!(altered, "an honest handshake failed: {e}"),
            }
        }
    }
});
