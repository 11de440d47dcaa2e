//! The `keyserver` service (§7.2): identity-key look-up by user name.
//!
//! ```text
//! request:  {"User":"bob","Version":0}
//! response: {"PublicKey":"<base64 X25519 identity key>","StatusCode":0,"User":"bob","Version":0}
//! ```
//!
//! Keys in canonical (sorted) order, integers as plain JSON numbers, strings
//! escaped the way the Go encoder (ugorji, HTML-safe) did. Both sides strip
//! trailing NUL bytes before decoding.

use base64::Engine as _;
use serde::Deserialize;

use super::KaetzchenError;
use crate::pki::json::write_str;

/// The only protocol version.
pub const KEYSERVER_VERSION: i64 = 0;

/// Keyserver status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum KeyserverStatus {
    /// The key was found.
    Ok = 0,
    /// Bad JSON, an unknown field, or Version ≠ 0.
    SyntaxError = 1,
    /// No such user, or the user has no identity key.
    NoIdentity = 2,
}

impl KeyserverStatus {
    /// The numeric code on the wire.
    pub fn code(self) -> i64 {
        self as i64
    }
}

/// A keyserver request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyserverRequest {
    /// The user name, looked up exactly as sent (no case mapping).
    pub user: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestWire {
    #[serde(rename = "User", default)]
    user: Option<String>,
    #[serde(rename = "Version", default)]
    version: Option<i64>,
}

#[derive(Deserialize)]
struct ResponseWire {
    #[serde(rename = "PublicKey", default)]
    public_key: Option<String>,
    #[serde(rename = "StatusCode", default)]
    status_code: Option<i64>,
    #[serde(rename = "User", default)]
    user: Option<String>,
    #[serde(rename = "Version", default)]
    version: Option<i64>,
}

/// Strips trailing NUL bytes (the zero padding of payloads).
fn trim_nuls(b: &[u8]) -> &[u8] {
    let end = b.iter().rposition(|&x| x != 0).map_or(0, |i| i + 1);
    &b[..end]
}

/// Decodes one JSON value from the front of `b`, ignoring anything after it
/// (as the Go decoder does).
fn decode_prefix<'de, T: Deserialize<'de>>(b: &'de [u8]) -> Option<T> {
    let mut de = serde_json::Deserializer::from_slice(b);
    T::deserialize(&mut de).ok()
}

impl KeyserverRequest {
    /// A request for `user`.
    pub fn new(user: impl Into<String>) -> Self {
        KeyserverRequest { user: user.into() }
    }

    /// The request JSON, e.g. `{"User":"bob","Version":0}`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.user.len() + 26);
        out.extend_from_slice(b"{\"User\":");
        write_str(&mut out, &self.user);
        out.extend_from_slice(b",\"Version\":0}");
        out
    }

    /// Server side: parses a request payload (trailing NULs stripped; unknown
    /// fields, bad JSON and Version ≠ 0 are [`KeyserverStatus::SyntaxError`]).
    pub fn decode(payload: &[u8]) -> Result<Self, KeyserverStatus> {
        let wire: RequestWire =
            decode_prefix(trim_nuls(payload)).ok_or(KeyserverStatus::SyntaxError)?;
        if wire.version.unwrap_or(0) != KEYSERVER_VERSION {
            return Err(KeyserverStatus::SyntaxError);
        }
        Ok(KeyserverRequest {
            user: wire.user.unwrap_or_default(),
        })
    }
}

/// A keyserver response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyserverResponse {
    /// Protocol version (0).
    pub version: i64,
    /// Status code; see [`KeyserverStatus`].
    pub status_code: i64,
    /// The user asked for (empty on a syntax error).
    pub user: String,
    /// Base64 (standard, padded) identity key; empty unless status is 0.
    pub public_key: String,
}

impl KeyserverResponse {
    /// A successful answer.
    pub fn found(user: impl Into<String>, key: &[u8; 32]) -> Self {
        KeyserverResponse {
            version: KEYSERVER_VERSION,
            status_code: KeyserverStatus::Ok.code(),
            user: user.into(),
            public_key: base64::engine::general_purpose::STANDARD.encode(key),
        }
    }

    /// A failure answer; the user is echoed except on a syntax error.
    pub fn failure(status: KeyserverStatus, user: impl Into<String>) -> Self {
        let user = if status == KeyserverStatus::SyntaxError {
            String::new()
        } else {
            user.into()
        };
        KeyserverResponse {
            version: KEYSERVER_VERSION,
            status_code: status.code(),
            user,
            public_key: String::new(),
        }
    }

    /// The response JSON, keys sorted: `{"PublicKey":…,"StatusCode":…,"User":…,"Version":…}`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.user.len() + self.public_key.len() + 64);
        out.extend_from_slice(b"{\"PublicKey\":");
        write_str(&mut out, &self.public_key);
        out.extend_from_slice(format!(",\"StatusCode\":{},\"User\":", self.status_code).as_bytes());
        write_str(&mut out, &self.user);
        out.extend_from_slice(format!(",\"Version\":{}}}", self.version).as_bytes());
        out
    }

    /// Client side: parses a response (trailing NULs stripped, unknown fields ignored).
    pub fn decode(payload: &[u8]) -> Result<Self, KaetzchenError> {
        let w: ResponseWire =
            decode_prefix(trim_nuls(payload)).ok_or(KaetzchenError::MalformedResponse)?;
        Ok(KeyserverResponse {
            version: w.version.unwrap_or(0),
            status_code: w.status_code.unwrap_or(0),
            user: w.user.unwrap_or_default(),
            public_key: w.public_key.unwrap_or_default(),
        })
    }

    /// Client side: the identity key for `requested_user`, if this response is
    /// a version-0 success for exactly that user with a 32-byte key.
    pub fn identity_key_for(&self, requested_user: &str) -> Result<[u8; 32], KaetzchenError> {
        if self.version != KEYSERVER_VERSION {
            return Err(KaetzchenError::BadVersion(self.version));
        }
        if self.status_code != KeyserverStatus::Ok.code() {
            return Err(KaetzchenError::Status(self.status_code));
        }
        if self.user != requested_user {
            return Err(KaetzchenError::UserMismatch);
        }
        let key = base64::engine::general_purpose::STANDARD
            .decode(self.public_key.as_bytes())
            .map_err(|_| KaetzchenError::BadPublicKey)?;
        key.try_into().map_err(|_| KaetzchenError::BadPublicKey)
    }
}

/// Provider side: answers one keyserver request payload (the 50,642-byte user
/// payload, or the bare JSON). `lookup` maps the user name, exactly as sent,
/// to its identity key. Always returns a response JSON (status 0, 1 or 2).
pub fn keyserver_respond<F>(request: &[u8], lookup: F) -> Vec<u8>
where
    F: FnOnce(&str) -> Option<[u8; 32]>,
{
    let response = match KeyserverRequest::decode(request) {
        Err(status) => KeyserverResponse::failure(status, ""),
        Ok(req) => match lookup(&req.user) {
            Some(key) => KeyserverResponse::found(req.user, &key),
            None => KeyserverResponse::failure(KeyserverStatus::NoIdentity, req.user),
        },
    };
    response.encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_matches_go() {
        let mut out = Vec::new();
        write_str(&mut out, "a\"b\\c\n\u{1}<&>\u{2028}é");
        assert_eq!(
            out,
            b"\"a\\\"b\\\\c\\n\\u0001\\u003c\\u0026\\u003e\\u2028\xc3\xa9\"".to_vec()
        );
    }

    #[test]
    fn escaped_names_round_trip() {
        for user in ["bob", "a\"b", "<x>&\u{7}", "ünï\u{2029}"] {
            let req = KeyserverRequest::new(user);
            assert_eq!(KeyserverRequest::decode(&req.encode()), Ok(req.clone()));
            let resp = KeyserverResponse::found(user, &[1; 32]);
            let back = KeyserverResponse::decode(&resp.encode()).unwrap();
            assert_eq!(back, resp);
            assert_eq!(back.identity_key_for(user), Ok([1; 32]));
        }
    }

    #[test]
    fn request_syntax_errors() {
        for bad in [
            &b"not json"[..],
            b"{\"User\":\"bob\",\"Version\":1}",
            b"{\"User\":\"bob\",\"Version\":0,\"Extra\":1}",
            b"{\"user\":\"bob\"}",
            b"{\"User\":5}",
            b"",
            b"\0\0\0",
        ] {
            assert_eq!(
                KeyserverRequest::decode(bad),
                Err(KeyserverStatus::SyntaxError),
                "{bad:?}"
            );
        }
        // Missing fields take their zero values, as in Go.
        assert_eq!(
            KeyserverRequest::decode(b"{}"),
            Ok(KeyserverRequest::new(""))
        );
        // Trailing NULs are stripped.
        let mut p = b"{\"User\":\"bob\",\"Version\":0}".to_vec();
        p.resize(50_642, 0);
        assert_eq!(
            KeyserverRequest::decode(&p),
            Ok(KeyserverRequest::new("bob"))
        );
    }
}
