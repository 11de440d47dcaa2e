//! SASL PLAIN and LOGIN decoding (RFC 4616, draft-murchison-sasl-login).
//! Shared by SMTP AUTH and POP3 AUTH.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use zeroize::Zeroizing;

/// Credentials taken from a SASL exchange.
pub struct Credentials {
    /// Authentication identity (user name as sent).
    pub authcid: String,
    /// Password bytes (zeroed on drop).
    pub password: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("authcid", &self.authcid)
            .finish()
    }
}

/// Why a SASL response was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// Not valid base64.
    #[error("invalid base64")]
    Base64,
    /// Not `authzid NUL authcid NUL password`.
    #[error("malformed SASL PLAIN message")]
    Malformed,
    /// The authorization identity differs from the authentication identity.
    #[error("authorization identity not permitted")]
    Authzid,
    /// The client cancelled with `*`.
    #[error("authentication cancelled")]
    Cancelled,
}

/// Decodes one base64 SASL response line (`=` is an empty response, `*` cancels).
pub fn decode_response(line: &str) -> Result<Zeroizing<Vec<u8>>, SaslError> {
    let line = line.trim();
    if line == "*" {
        return Err(SaslError::Cancelled);
    }
    if line == "=" || line.is_empty() {
        return Ok(Zeroizing::new(Vec::new()));
    }
    STANDARD
        .decode(line)
        .map(Zeroizing::new)
        .map_err(|_| SaslError::Base64)
}

/// Decodes a SASL PLAIN message. The authzid must be empty or equal
/// (case-insensitively) to the authcid.
pub fn decode_plain(line: &str) -> Result<Credentials, SaslError> {
    decode_plain_bytes(&decode_response(line)?)
}

/// Decodes a SASL PLAIN message already base64-decoded (IMAP's codec does
/// that), with the same rules as [`decode_plain`].
pub fn decode_plain_bytes(raw: &[u8]) -> Result<Credentials, SaslError> {
    let mut parts = raw.splitn(3, |&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    let authcid = std::str::from_utf8(authcid).map_err(|_| SaslError::Malformed)?;
    let authzid = std::str::from_utf8(authzid).map_err(|_| SaslError::Malformed)?;
    if authcid.is_empty() || password.contains(&0) {
        return Err(SaslError::Malformed);
    }
    if !authzid.is_empty() && !authzid.eq_ignore_ascii_case(authcid) {
        return Err(SaslError::Authzid);
    }
    Ok(Credentials {
        authcid: authcid.to_owned(),
        password: Zeroizing::new(password.to_vec()),
    })
}

/// Base64 of a server challenge.
pub fn encode_challenge(s: &[u8]) -> String {
    STANDARD.encode(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_forms() {
        let c = decode_plain(&STANDARD.encode(b"\0alice@p\0secret")).unwrap();
        assert_eq!(c.authcid, "alice@p");
        assert_eq!(&c.password[..], b"secret");
        let c = decode_plain(&STANDARD.encode(b"Alice@p\0alice@p\0pw")).unwrap();
        assert_eq!(c.authcid, "alice@p");
        assert_eq!(
            decode_plain(&STANDARD.encode(b"bob\0alice\0pw")).unwrap_err(),
            SaslError::Authzid
        );
        assert_eq!(
            decode_plain(&STANDARD.encode(b"alice\0pw")).unwrap_err(),
            SaslError::Malformed
        );
        assert_eq!(decode_plain("!!!").unwrap_err(), SaslError::Base64);
        assert_eq!(decode_plain("*").unwrap_err(), SaslError::Cancelled);
        assert_eq!(&decode_response("=").unwrap()[..], b"");
    }
}
