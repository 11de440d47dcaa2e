//! The body of every user-level forward Sphinx packet (§2.9, "BlockSphinxPlaintext"):
//!
//! ```text
//! flags u8 (0 = no SURB, 1 = SURB attached) ‖ reserved u8 (0x00) ‖ SURB (556, zeros when flags = 0)
//!   ‖ user payload (50,642)
//! ```

use crate::geometry::{
    FORWARD_PAYLOAD_LENGTH, SPHINX_PLAINTEXT_HEADER_LENGTH, SURB_LENGTH,
    USER_FORWARD_PAYLOAD_LENGTH,
};

/// `flags` value: no SURB attached.
pub const FLAGS_NO_SURB: u8 = 0;
/// `flags` value: a SURB is attached.
pub const FLAGS_SURB: u8 = 1;
/// Offset of the user payload in the body.
pub const USER_PAYLOAD_OFFSET: usize = SPHINX_PLAINTEXT_HEADER_LENGTH + SURB_LENGTH;

/// Errors building or parsing a forward body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardBodyError {
    /// The body must be exactly 51,200 bytes.
    #[error("forward body is {len} bytes, expected {FORWARD_PAYLOAD_LENGTH}")]
    BadLength { len: usize },
    /// `flags` must be 0 or 1.
    #[error("invalid forward body flags 0x{0:02x}")]
    BadFlags(u8),
    /// The reserved byte must be zero.
    #[error("invalid forward body reserved byte 0x{0:02x}")]
    NonZeroReserved(u8),
    /// The user payload is longer than 50,642 bytes.
    #[error("user payload of {len} bytes exceeds {USER_FORWARD_PAYLOAD_LENGTH}")]
    UserPayloadTooLong { len: usize },
}

/// A forward body, borrowed from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardBody<'a> {
    /// The SURB for the reply or ACK, if one is attached.
    pub surb: Option<&'a [u8; SURB_LENGTH]>,
    /// The user payload: an end-to-end block ciphertext, or a Kaetzchen request.
    /// Exactly 50,642 bytes when parsed; at most that when encoding (zero-padded).
    pub user_payload: &'a [u8],
}

impl<'a> ForwardBody<'a> {
    /// Parses a 51,200-byte body with the provider's rules (server v0.0.7
    /// `ParseForwardPacket`): exact length, flags 0 or 1, reserved byte zero.
    /// The SURB bytes are not looked at when flags = 0.
    pub fn parse(body: &'a [u8]) -> Result<Self, ForwardBodyError> {
        if body.len() != FORWARD_PAYLOAD_LENGTH {
            return Err(ForwardBodyError::BadLength { len: body.len() });
        }
        if body[1] != 0 {
            return Err(ForwardBodyError::NonZeroReserved(body[1]));
        }
        let surb = match body[0] {
            FLAGS_NO_SURB => None,
            FLAGS_SURB => Some(
                <&[u8; SURB_LENGTH]>::try_from(
                    &body[SPHINX_PLAINTEXT_HEADER_LENGTH..USER_PAYLOAD_OFFSET],
                )
                .expect("slice of SURB_LENGTH"),
            ),
            other => return Err(ForwardBodyError::BadFlags(other)),
        };
        Ok(ForwardBody {
            surb,
            user_payload: &body[USER_PAYLOAD_OFFSET..],
        })
    }

    /// Writes the 51,200-byte body; the user payload is zero-padded to 50,642 bytes.
    pub fn encode_into(
        &self,
        out: &mut [u8; FORWARD_PAYLOAD_LENGTH],
    ) -> Result<(), ForwardBodyError> {
        if self.user_payload.len() > USER_FORWARD_PAYLOAD_LENGTH {
            return Err(ForwardBodyError::UserPayloadTooLong {
                len: self.user_payload.len(),
            });
        }
        out[1] = 0;
        match self.surb {
            Some(surb) => {
                out[0] = FLAGS_SURB;
                out[SPHINX_PLAINTEXT_HEADER_LENGTH..USER_PAYLOAD_OFFSET].copy_from_slice(surb);
            }
            None => {
                out[0] = FLAGS_NO_SURB;
                out[SPHINX_PLAINTEXT_HEADER_LENGTH..USER_PAYLOAD_OFFSET].fill(0);
            }
        }
        let end = USER_PAYLOAD_OFFSET + self.user_payload.len();
        out[USER_PAYLOAD_OFFSET..end].copy_from_slice(self.user_payload);
        out[end..].fill(0);
        Ok(())
    }

    /// The 51,200-byte body.
    pub fn encode(&self) -> Result<Vec<u8>, ForwardBodyError> {
        let mut out = Box::new([0u8; FORWARD_PAYLOAD_LENGTH]);
        self.encode_into(&mut out)?;
        Ok(out.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_round_trip() {
        let surb = [0x5a; SURB_LENGTH];
        let body = ForwardBody {
            surb: Some(&surb),
            user_payload: b"abc",
        }
        .encode()
        .unwrap();
        assert_eq!(body.len(), FORWARD_PAYLOAD_LENGTH);
        assert_eq!(&body[..2], &[1, 0]);
        assert_eq!(&body[2..558], &surb[..]);
        assert_eq!(&body[558..561], b"abc");
        assert!(body[561..].iter().all(|&b| b == 0));
        let p = ForwardBody::parse(&body).unwrap();
        assert_eq!(p.surb, Some(&surb));
        assert_eq!(p.user_payload.len(), USER_FORWARD_PAYLOAD_LENGTH);
        assert_eq!(&p.user_payload[..3], b"abc");

        let body = ForwardBody {
            surb: None,
            user_payload: &[],
        }
        .encode()
        .unwrap();
        assert!(body.iter().all(|&b| b == 0));
        assert_eq!(ForwardBody::parse(&body).unwrap().surb, None);
    }

    #[test]
    fn provider_rules() {
        let mut body = vec![0u8; FORWARD_PAYLOAD_LENGTH];
        body[0] = 2;
        assert_eq!(
            ForwardBody::parse(&body),
            Err(ForwardBodyError::BadFlags(2))
        );
        body[0] = 1;
        body[1] = 1;
        assert_eq!(
            ForwardBody::parse(&body),
            Err(ForwardBodyError::NonZeroReserved(1))
        );
        assert_eq!(
            ForwardBody::parse(&body[1..]),
            Err(ForwardBodyError::BadLength {
                len: FORWARD_PAYLOAD_LENGTH - 1
            })
        );
        let long = vec![0u8; USER_FORWARD_PAYLOAD_LENGTH + 1];
        assert_eq!(
            ForwardBody {
                surb: None,
                user_payload: &long
            }
            .encode(),
            Err(ForwardBodyError::UserPayloadTooLong {
                len: USER_FORWARD_PAYLOAD_LENGTH + 1
            })
        );
    }
}
