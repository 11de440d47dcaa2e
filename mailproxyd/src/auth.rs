//! Account passwords: Argon2id PHC strings (`[[Account]] PasswordHash`).
//!
//! The mail front calls [`verify_password`] for POP3 logins and SMTP AUTH
//! when the account has a `password_hash`.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Why a password hash is unusable.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Not a PHC string.
    #[error("not a PHC password hash string ({0})")]
    Format(String),
    /// A PHC string for another algorithm.
    #[error("algorithm '{0}' is not supported; use argon2id (mailproxyd --hash-password)")]
    Algorithm(String),
    /// Hashing failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// Checks that `phc` is an Argon2id PHC string.
pub fn validate_hash(phc: &str) -> Result<(), AuthError> {
    let hash = PasswordHash::new(phc).map_err(|e| AuthError::Format(e.to_string()))?;
    if hash.algorithm.as_str() != "argon2id" {
        return Err(AuthError::Algorithm(hash.algorithm.as_str().to_owned()));
    }
    if hash.hash.is_none() {
        return Err(AuthError::Format("no hash value".into()));
    }
    Ok(())
}

/// Hashes a password with Argon2id (default parameters, random salt) into a PHC string.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let mut bytes = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let salt = SaltString::encode_b64(&bytes).map_err(|e| AuthError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Whether `password` matches the Argon2id PHC string `phc`. Malformed
/// hashes never match. Constant-time comparison.
pub fn verify_password(phc: &str, password: &str) -> bool {
    if validate_hash(phc).is_err() {
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        validate_hash(&phc).unwrap();
        assert!(verify_password(&phc, "correct horse"));
        assert!(!verify_password(&phc, "wrong horse"));
        // Each hash has its own salt.
        assert_ne!(phc, hash_password("correct horse").unwrap());
    }

    #[test]
    fn rejects_bad_hashes() {
        assert!(validate_hash("plaintext").is_err());
        assert!(matches!(
            validate_hash("$argon2i$v=19$m=16,t=2,p=1$c29tZXNhbHQ$2EBeU2rFrLZmH0XyuzgZ1Q"),
            Err(AuthError::Algorithm(_))
        ));
        assert!(!verify_password("garbage", "x"));
    }
}
