//! The daemon's [`Directory`]: what the SMTP and POP3 servers see of the
//! configured accounts (password hashes, key discovery), the recipient
//! table, and each account's open store.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::Config;
use crate::recipients::Recipients;
use crate::store::{AccountInfo, Directory, KeySource, Store, StoreError};

struct Entry {
    info: AccountInfo,
    password_hash: Option<String>,
    store: Store,
}

/// Accounts with their stores, and the recipients.
pub struct DaemonDirectory {
    accounts: HashMap<String, Entry>,
    recipients: Recipients,
}

/// Opening an account's store failed.
#[derive(Debug, thiserror::Error)]
#[error("account {account}: store: {source}")]
pub struct OpenError {
    /// The account id.
    pub account: String,
    /// Why.
    pub source: StoreError,
}

impl DaemonDirectory {
    /// Opens every account's store under `<DataDir>/<id>/` with the key
    /// source the config selects (key file, or a passphrase). Blocking.
    pub fn open(config: &Config, recipients: Recipients) -> Result<Arc<Self>, OpenError> {
        let mut accounts = HashMap::new();
        for a in &config.accounts {
            let err = |source| OpenError {
                account: a.id.clone(),
                source,
            };
            let source = match &config.storage.passphrase {
                None => KeySource::KeyFile,
                Some(p) => {
                    let pass = p.read().map_err(|e| err(StoreError::Key(e.to_string())))?;
                    KeySource::passphrase(pass.as_bytes().to_vec())
                }
            };
            let store = Store::open(&config.proxy.data_dir.join(&a.id), &source).map_err(err)?;
            let info = AccountInfo {
                id: a.id.clone(),
                password_required: a.password_hash.is_some(),
                insecure_key_discovery: a.insecure_key_discovery,
            };
            accounts.insert(
                a.id.clone(),
                Entry {
                    info,
                    password_hash: a.password_hash.clone(),
                    store,
                },
            );
        }
        Ok(Arc::new(Self {
            accounts,
            recipients,
        }))
    }
}

impl Directory for DaemonDirectory {
    fn account(&self, id: &str) -> Option<AccountInfo> {
        self.accounts.get(id).map(|e| e.info.clone())
    }

    fn recipient_known(&self, addr: &str) -> bool {
        matches!(self.recipients.get(addr), Ok(Some(_)))
    }

    fn verify_password(&self, account: &str, password: &[u8]) -> bool {
        let Some(hash) = self
            .accounts
            .get(account)
            .and_then(|e| e.password_hash.as_deref())
        else {
            return false;
        };
        std::str::from_utf8(password).is_ok_and(|p| crate::auth::verify_password(hash, p))
    }

    fn store(&self, account: &str) -> Option<Store> {
        self.accounts.get(account).map(|e| e.store.clone())
    }
}
