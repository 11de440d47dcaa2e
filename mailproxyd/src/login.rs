//! Logins on one SMTP or POP3 connection: the name is normalised as the
//! account ids are, the password checked against the account's Argon2id hash
//! (a few at a time, off the async runtime), and every failure is logged,
//! without the password or the name that was tried, and answered only after
//! a delay that doubles with each failure on the connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use crate::store::{AccountInfo, Directory};

/// Delay before answering the first failed login of a connection.
pub const FIRST_FAILURE_DELAY: Duration = Duration::from_secs(1);
/// The longest delay.
pub const MAX_FAILURE_DELAY: Duration = Duration::from_secs(8);

/// Argon2id verifications running at once (each takes ~19 MiB and tens of
/// milliseconds): a burst of logins queues instead of exhausting memory.
static VERIFICATIONS: Semaphore = Semaphore::const_new(2);

/// The delay after the `n`th failed login (n >= 1) of a connection.
pub fn failure_delay(n: u32) -> Duration {
    let shift = n.saturating_sub(1).min(16);
    FIRST_FAILURE_DELAY
        .saturating_mul(1 << shift)
        .min(MAX_FAILURE_DELAY)
}

/// The login state of one connection.
pub struct Logins {
    dir: Arc<dyn Directory>,
    protocol: &'static str,
    failures: u32,
}

impl Logins {
    /// Logins for a connection of `protocol` (`"SMTP"`, `"POP3"`, for logs).
    pub fn new(dir: Arc<dyn Directory>, protocol: &'static str) -> Logins {
        Logins {
            dir,
            protocol,
            failures: 0,
        }
    }

    /// Failed logins on this connection so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Checks `name` (an account id in any form the account ids accept) and
    /// `password`. Returns the account on success; on failure, logs it and
    /// returns `None` after the connection's failure delay.
    pub async fn attempt(
        &mut self,
        name: &str,
        password: Zeroizing<Vec<u8>>,
    ) -> Option<AccountInfo> {
        let account = self
            .dir
            .normalize(name)
            .and_then(|id| self.dir.account(&id));
        let ok = match &account {
            None => false,
            Some(a) if !a.password_required => true,
            Some(a) => verify(self.dir.clone(), a.id.clone(), password).await,
        };
        if ok {
            return account;
        }
        self.failures += 1;
        let failures = self.failures;
        let protocol = self.protocol;
        match &account {
            Some(a) => tracing::warn!(
                protocol,
                account = %a.id,
                failures,
                "login failed: wrong password"
            ),
            None => tracing::warn!(protocol, failures, "login failed: no such account"),
        }
        tokio::time::sleep(failure_delay(failures)).await;
        None
    }
}

async fn verify(dir: Arc<dyn Directory>, account: String, password: Zeroizing<Vec<u8>>) -> bool {
    let Ok(_permit) = VERIFICATIONS.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || dir.verify_password(&account, &password))
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn delays_double_up_to_the_maximum() {
        assert_eq!(failure_delay(1), Duration::from_secs(1));
        assert_eq!(failure_delay(2), Duration::from_secs(2));
        assert_eq!(failure_delay(3), Duration::from_secs(4));
        assert_eq!(failure_delay(4), MAX_FAILURE_DELAY);
        assert_eq!(failure_delay(u32::MAX), MAX_FAILURE_DELAY);
    }

    /// One account, "alice@p", password "right"; ids are case-insensitive.
    struct OneAccount;

    impl Directory for OneAccount {
        fn account(&self, id: &str) -> Option<AccountInfo> {
            (id == "alice@p").then(|| AccountInfo {
                id: id.to_owned(),
                password_required: true,
                insecure_key_discovery: false,
            })
        }
        fn recipient_known(&self, _: &str) -> bool {
            false
        }
        fn verify_password(&self, account: &str, password: &[u8]) -> bool {
            account == "alice@p" && password == b"right"
        }
        fn store(&self, _: &str) -> Option<Store> {
            None
        }
    }

    fn pw(s: &str) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(s.as_bytes().to_vec())
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_slowed_down_and_counted_per_connection() {
        let dir: Arc<dyn Directory> = Arc::new(OneAccount);
        let mut logins = Logins::new(dir.clone(), "POP3");
        let start = tokio::time::Instant::now();
        assert!(logins.attempt("alice@p", pw("wrong")).await.is_none());
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        assert!(logins.attempt("nobody@p", pw("right")).await.is_none());
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        assert_eq!(logins.failures(), 2);
        // Success is answered at once, normalised as account ids are.
        let ok = logins.attempt("Alice@P", pw("right")).await.unwrap();
        assert_eq!(ok.id, "alice@p");
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        // Another connection starts from the first delay again.
        let mut other = Logins::new(dir, "SMTP");
        let t = tokio::time::Instant::now();
        assert!(other.attempt("alice@p", pw("")).await.is_none());
        assert_eq!(t.elapsed(), FIRST_FAILURE_DELAY);
    }
}
