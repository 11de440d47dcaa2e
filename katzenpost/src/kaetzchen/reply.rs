//! What comes back through a SURB (§6.4, §7.1): a SURB-ACK is 51,200 zero
//! bytes; a Kaetzchen reply is `01 00 ‖ response`, zero-padded to 51,200 bytes.

use super::KaetzchenError;
use crate::geometry::FORWARD_PAYLOAD_LENGTH;

/// First byte of a SURB-ACK plaintext.
pub const KIND_ACK: u8 = 0x00;
/// First byte of a Kaetzchen reply plaintext.
pub const KIND_KAETZCHEN_REPLY: u8 = 0x01;
/// Bytes in front of a Kaetzchen response.
pub const REPLY_HEADER_LENGTH: usize = 2;
/// The longest response one reply can carry.
pub const MAX_RESPONSE_LENGTH: usize = FORWARD_PAYLOAD_LENGTH - REPLY_HEADER_LENGTH;

/// The 51,200-byte SURB-ACK body (all zero).
pub fn ack_body() -> Vec<u8> {
    vec![0u8; FORWARD_PAYLOAD_LENGTH]
}

/// The 51,200-byte reply body for a Kaetzchen response: `01 00 ‖ response ‖ zeros`.
pub fn reply_body(response: &[u8]) -> Result<Vec<u8>, KaetzchenError> {
    if response.len() > MAX_RESPONSE_LENGTH {
        return Err(KaetzchenError::ResponseTooLong {
            len: response.len(),
        });
    }
    let mut out = vec![0u8; FORWARD_PAYLOAD_LENGTH];
    out[0] = KIND_KAETZCHEN_REPLY;
    out[REPLY_HEADER_LENGTH..REPLY_HEADER_LENGTH + response.len()].copy_from_slice(response);
    Ok(out)
}

/// A decrypted SURB payload, classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SurbPayload<'a> {
    /// A SURB-ACK: the block was stored in the recipient's spool.
    Ack,
    /// A Kaetzchen reply: the response, trailing NUL bytes removed (replies are
    /// not length-framed; both sides strip trailing NULs, §7.2).
    KaetzchenReply(&'a [u8]),
}

/// Classifies the 51,200-byte plaintext of a SURB reply (after SURB decryption
/// and the tag check): `00` and all zero is an ACK, `01 00 ‖ response` a
/// Kaetzchen reply; anything else is an error.
pub fn classify_surb_payload(plaintext: &[u8]) -> Result<SurbPayload<'_>, KaetzchenError> {
    if plaintext.len() != FORWARD_PAYLOAD_LENGTH {
        return Err(KaetzchenError::BadSurbPayloadLength {
            len: plaintext.len(),
        });
    }
    match plaintext[0] {
        KIND_ACK => {
            if plaintext.iter().all(|&b| b == 0) {
                Ok(SurbPayload::Ack)
            } else {
                Err(KaetzchenError::NonZeroAck)
            }
        }
        KIND_KAETZCHEN_REPLY => {
            if plaintext[1] != 0 {
                return Err(KaetzchenError::BadReplyReserved(plaintext[1]));
            }
            let body = &plaintext[REPLY_HEADER_LENGTH..];
            let end = body.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            Ok(SurbPayload::KaetzchenReply(&body[..end]))
        }
        other => Err(KaetzchenError::UnknownReplyKind(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_and_reply_framing() {
        let ack = ack_body();
        assert_eq!(ack.len(), 51_200);
        assert_eq!(classify_surb_payload(&ack), Ok(SurbPayload::Ack));

        let r = reply_body(b"{\"x\":1}").unwrap();
        assert_eq!(r.len(), 51_200);
        assert_eq!(&r[..9], b"\x01\x00{\"x\":1}");
        assert!(r[9..].iter().all(|&b| b == 0));
        assert_eq!(
            classify_surb_payload(&r),
            Ok(SurbPayload::KaetzchenReply(b"{\"x\":1}"))
        );

        // Loop reply: 01 00 then zeros.
        let l = reply_body(&[]).unwrap();
        assert_eq!(
            classify_surb_payload(&l),
            Ok(SurbPayload::KaetzchenReply(&[]))
        );

        let full = vec![0x41u8; MAX_RESPONSE_LENGTH];
        let r = reply_body(&full).unwrap();
        assert_eq!(
            classify_surb_payload(&r),
            Ok(SurbPayload::KaetzchenReply(&full[..]))
        );
        assert_eq!(
            reply_body(&[0u8; MAX_RESPONSE_LENGTH + 1]),
            Err(KaetzchenError::ResponseTooLong {
                len: MAX_RESPONSE_LENGTH + 1
            })
        );
    }

    #[test]
    fn invalid_payloads() {
        let mut p = ack_body();
        p[51_199] = 1;
        assert_eq!(classify_surb_payload(&p), Err(KaetzchenError::NonZeroAck));
        let mut p = ack_body();
        p[0] = 1;
        p[1] = 1;
        assert_eq!(
            classify_surb_payload(&p),
            Err(KaetzchenError::BadReplyReserved(1))
        );
        p[0] = 2;
        assert_eq!(
            classify_surb_payload(&p),
            Err(KaetzchenError::UnknownReplyKind(2))
        );
        assert_eq!(
            classify_surb_payload(&p[..100]),
            Err(KaetzchenError::BadSurbPayloadLength { len: 100 })
        );
    }
}
