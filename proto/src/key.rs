//! Key encoding: 32-byte keys in hex (tried first) or base64.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;

/// Length of every key the protocol carries (X25519 and Ed25519 public keys).
pub const KEY_LEN: usize = 32;

/// Longest text accepted as an encoded key (hex is 64 characters, base64 44).
const MAX_ENCODED: usize = 2 * KEY_LEN;

/// Why a key string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The string is empty.
    #[error("key is empty")]
    Empty,
    /// Neither valid hex nor valid base64.
    #[error("key is neither hex nor base64")]
    Encoding,
    /// Decoded, but not 32 bytes.
    #[error("key is {0} bytes, expected 32")]
    Length(usize),
}

/// Decodes a 32-byte key written in hex (tried first) or standard base64
/// (padding optional). Surrounding whitespace is ignored.
pub fn decode_key(text: &str) -> Result<[u8; KEY_LEN], KeyError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(KeyError::Empty);
    }
    if text.len() > MAX_ENCODED {
        // Still report a useful length where we cheaply can.
        return Err(
            if text.bytes().all(|b| b.is_ascii_hexdigit()) && text.len().is_multiple_of(2) {
                KeyError::Length(text.len() / 2)
            } else {
                KeyError::Encoding
            },
        );
    }
    if text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        let bytes = hex::decode(text).map_err(|_| KeyError::Encoding)?;
        return to_key(bytes);
    }
    let bytes = STANDARD
        .decode(text)
        .or_else(|_| STANDARD_NO_PAD.decode(text))
        .map_err(|_| KeyError::Encoding)?;
    to_key(bytes)
}

fn to_key(bytes: Vec<u8>) -> Result<[u8; KEY_LEN], KeyError> {
    let len = bytes.len();
    bytes.try_into().map_err(|_| KeyError::Length(len))
}

/// Encodes a key the way the server writes it: padded standard base64.
pub fn encode_key(key: &[u8; KEY_LEN]) -> String {
    STANDARD.encode(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
        25, 26, 27, 28, 29, 30, 0xff,
    ];

    #[test]
    fn hex_and_base64_round_trip() {
        assert_eq!(decode_key(&hex::encode(KEY)), Ok(KEY));
        assert_eq!(decode_key(&hex::encode_upper(KEY)), Ok(KEY));
        let b64 = encode_key(&KEY);
        assert_eq!(b64.len(), 44);
        assert_eq!(decode_key(&b64), Ok(KEY));
        assert_eq!(decode_key(b64.trim_end_matches('=')), Ok(KEY));
        assert_eq!(decode_key(&format!("  {b64}\n")), Ok(KEY));
    }

    #[test]
    fn hex_is_tried_first() {
        // 64 hex digits are also valid base64 (48 bytes); hex must win.
        let all_a = "a".repeat(64);
        assert_eq!(decode_key(&all_a), Ok([0xaa; 32]));
    }

    #[test]
    fn rejects_bad_keys() {
        assert_eq!(decode_key(""), Err(KeyError::Empty));
        assert_eq!(decode_key("zz!"), Err(KeyError::Encoding));
        assert_eq!(
            decode_key(&hex::encode([1u8; 31])),
            Err(KeyError::Length(31))
        );
        assert_eq!(
            decode_key(&hex::encode([1u8; 33])),
            Err(KeyError::Length(33))
        );
        assert_eq!(
            decode_key(&STANDARD.encode([1u8; 16])),
            Err(KeyError::Length(16))
        );
        assert_eq!(decode_key(&"Z".repeat(10_000)), Err(KeyError::Encoding));
    }
}
