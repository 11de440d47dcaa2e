//! What the mail front needs to know about accounts and recipients.
//!
//! The daemon implements [`Directory`] on top of its configuration,
//! recipient keys and open stores; tests implement it directly.

use super::Store;

/// Facts about one local account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInfo {
    /// Normalised account id `user@provider` (lower case).
    pub id: String,
    /// A password is required: AUTH before MAIL, and POP3 checks the password.
    pub password_required: bool,
    /// Recipients without a known key may be accepted (key discovery).
    pub insecure_key_discovery: bool,
}

/// Accounts, recipients and stores, as the SMTP and POP3 servers see them.
pub trait Directory: Send + Sync + 'static {
    /// The account with normalised id `id` (see [`Directory::normalize`]), if it is ours.
    fn account(&self, id: &str) -> Option<AccountInfo>;
    /// The account id a login name or sender address stands for, normalised
    /// as the account ids are; `None` if it cannot be one. By default lower case.
    fn normalize(&self, name: &str) -> Option<String> {
        Some(name.to_ascii_lowercase())
    }
    /// Whether a key for recipient `addr` (lower-cased `user@provider`) is known.
    fn recipient_known(&self, addr: &str) -> bool;
    /// Checks `password` for `account`. Only called when a password is required.
    fn verify_password(&self, account: &str, password: &[u8]) -> bool;
    /// The open store of `account`.
    fn store(&self, account: &str) -> Option<Store>;
    /// Mail for `account` was queued (committed): its engine should look at
    /// the queue now. By default nothing.
    fn queued(&self, _account: &str) {}
}

/// Verifies `password` against an Argon2id PHC string (`$argon2id$...`);
/// false for a malformed hash. Slow by design: call it off the async runtime.
pub fn verify_password_hash(phc: &str, password: &[u8]) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    match PasswordHash::new(phc) {
        Ok(h) => argon2::Argon2::default()
            .verify_password(password, &h)
            .is_ok(),
        Err(_) => false,
    }
}
