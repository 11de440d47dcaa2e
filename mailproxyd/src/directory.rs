//! The daemon's [`Directory`]: what the SMTP and POP3 servers see of the
//! configured accounts (logins, key discovery), the recipient table, and
//! each account's open store.
//!
//! Every account's SMTP and POP3 login needs a password: its `PasswordHash`
//! from the config if it has one, else the generated password
//! ([`crate::password`]), made at first start. `[Proxy] Authentication =
//! "none"` lets accounts without a `PasswordHash` in with any password.
//!
//! A password that matched its Argon2id hash is remembered as an HMAC tag
//! under a key made at start (only the last one per account): a mail client
//! that logs in every minute costs one Argon2id computation, not one per
//! login. A wrong password always costs the full computation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use zeroize::Zeroizing;

use crate::config::{AccountConfig, Authentication, Config};
use crate::password::{self, Generated, PasswordError};
use crate::recipients::{normalize_address, Recipients};
use crate::store::{AccountInfo, Directory, KeySource, Store, StoreError};

/// How an account's logins are checked.
enum Gate {
    /// No password needed (`Authentication = "none"`, no `PasswordHash`).
    Open,
    /// The config's `PasswordHash`.
    Configured(RwLock<Hash>),
    /// The hash of the generated password; a reset replaces it.
    Generated(RwLock<Hash>),
}

/// A password hash and the tag of the last password that matched it.
struct Hash {
    phc: String,
    matched: Option<[u8; 32]>,
}

impl Hash {
    fn new(phc: String) -> RwLock<Hash> {
        RwLock::new(Hash { phc, matched: None })
    }
}

type Tag = hmac::Hmac<sha2::Sha256>;

/// The tag of `password` under `key`.
fn tag(key: &[u8; 32], password: &str) -> Tag {
    use hmac::Mac;
    let mut mac = Tag::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(password.as_bytes());
    mac
}

/// Whether `password` matches the hash in `lock`: the remembered tag
/// (constant-time), else Argon2id (slow), remembering the tag on success
/// unless the hash was replaced meanwhile.
fn check(lock: &RwLock<Hash>, key: &[u8; 32], password: &str) -> bool {
    use hmac::Mac;
    let phc = {
        let h = lock.read().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = &h.matched {
            if tag(key, password).verify_slice(t).is_ok() {
                return true;
            }
        }
        h.phc.clone()
    };
    if !crate::auth::verify_password(&phc, password) {
        return false;
    }
    let mut h = lock.write().unwrap_or_else(|e| e.into_inner());
    if h.phc == phc {
        h.matched = Some(tag(key, password).finalize().into_bytes().into());
    }
    true
}

struct Entry {
    info: AccountInfo,
    gate: Gate,
    store: Store,
}

/// Accounts with their stores, and the recipients.
pub struct DaemonDirectory {
    accounts: HashMap<String, Entry>,
    recipients: Recipients,
    case_sensitive: bool,
    /// Key of the remembered password tags (random, this process only).
    tag_key: Zeroizing<[u8; 32]>,
    /// Resets one at a time, so that the stored password and the hash file
    /// always come from the same reset.
    resets: Mutex<()>,
    /// Per account, what tells its engine that mail was queued.
    wakers: RwLock<HashMap<String, Waker>>,
}

/// Tells an engine that its queue grew.
type Waker = Box<dyn Fn() + Send + Sync>;

/// Opening an account's store or its password failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The store.
    #[error("account {account}: store: {source}")]
    Store {
        /// The account id.
        account: String,
        /// Why.
        source: StoreError,
    },
    /// The generated password.
    #[error("account {account}: password: {source}")]
    Password {
        /// The account id.
        account: String,
        /// Why.
        source: PasswordError,
    },
}

/// An account's SMTP and POP3 login, as `mailproxyd -g` shows it.
pub enum LoginPassword {
    /// The generated password.
    Generated(Zeroizing<String>),
    /// The password hashed in the config's `PasswordHash`.
    InConfig,
    /// None (`[Proxy] Authentication = "none"`).
    NotRequired,
}

/// Why `PASSWORD` has no answer.
#[derive(Debug, thiserror::Error)]
pub enum PasswordRequestError {
    /// No such account.
    #[error("no account '{0}'")]
    NoAccount(String),
    /// The account's password is the one hashed in the config.
    #[error("account {0} has a PasswordHash in the config: its password is the one hashed there and cannot be shown or reset here")]
    InConfig(String),
    /// Authentication is off.
    #[error("account {0} needs no password ([Proxy] Authentication = \"none\")")]
    NotRequired(String),
    /// Reading or storing the password failed.
    #[error("account {account}: {source}")]
    Failed {
        /// The account id.
        account: String,
        /// Why.
        source: PasswordError,
    },
}

/// The login an account has before the daemon's in-memory state: nothing,
/// the config's hash, or the generated password (made now if missing).
enum Login {
    Open,
    Configured(String),
    Generated(Generated),
}

fn login_of(config: &Config, a: &AccountConfig, store: &Store) -> Result<Login, OpenError> {
    Ok(match (&a.password_hash, config.proxy.authentication) {
        (Some(hash), _) => Login::Configured(hash.clone()),
        (None, Authentication::None) => Login::Open,
        (None, Authentication::Password) => {
            let g = password::ensure(store).map_err(|source| OpenError::Password {
                account: a.id.clone(),
                source,
            })?;
            if g.created {
                tracing::info!(account = %a.id, "generated the account's SMTP and POP3 password (show it with: mailproxyctl password {})", a.id);
            }
            Login::Generated(g)
        }
    })
}

/// Opens the store of `a` under `<DataDir>/<id>/` with the key source the
/// config selects (key file, or a passphrase). Blocking.
pub fn open_store(config: &Config, a: &AccountConfig) -> Result<Store, OpenError> {
    let err = |source| OpenError::Store {
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
    Store::open(&config.proxy.data_dir.join(&a.id), &source).map_err(err)
}

/// The login of `a` for `mailproxyd -g`: its generated password (made and
/// stored now if missing), or why it has none. Blocking; opens the store,
/// so the daemon must not be running.
pub fn login_password(config: &Config, a: &AccountConfig) -> Result<LoginPassword, OpenError> {
    if a.password_hash.is_some() {
        return Ok(LoginPassword::InConfig);
    }
    if config.proxy.authentication == Authentication::None {
        return Ok(LoginPassword::NotRequired);
    }
    let store = open_store(config, a)?;
    Ok(match login_of(config, a, &store)? {
        Login::Generated(g) => LoginPassword::Generated(g.password),
        Login::Configured(_) => LoginPassword::InConfig,
        Login::Open => LoginPassword::NotRequired,
    })
}

impl DaemonDirectory {
    /// Opens every account's store and login (generating the passwords
    /// accounts do not have yet). Blocking.
    pub fn open(config: &Config, recipients: Recipients) -> Result<Arc<Self>, OpenError> {
        let mut accounts = HashMap::new();
        for a in &config.accounts {
            let store = open_store(config, a)?;
            let gate = match login_of(config, a, &store)? {
                Login::Open => Gate::Open,
                Login::Configured(hash) => Gate::Configured(Hash::new(hash)),
                Login::Generated(g) => Gate::Generated(Hash::new(g.hash)),
            };
            let info = AccountInfo {
                id: a.id.clone(),
                password_required: !matches!(gate, Gate::Open),
                insecure_key_discovery: a.insecure_key_discovery,
            };
            accounts.insert(a.id.clone(), Entry { info, gate, store });
        }
        Ok(Arc::new(Self {
            accounts,
            recipients,
            case_sensitive: config.debug.case_sensitive_user_identifiers,
            tag_key: {
                let mut key = Zeroizing::new([0u8; 32]);
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key[..]);
                key
            },
            resets: Mutex::new(()),
            wakers: RwLock::new(HashMap::new()),
        }))
    }

    /// Sets what [`Directory::queued`] calls for `account`: its engine's
    /// wake-up, so that the engine announces and prepares new mail at once.
    pub fn on_queued(&self, account: &str, wake: impl Fn() + Send + Sync + 'static) {
        if let Ok(mut w) = self.wakers.write() {
            w.insert(account.to_owned(), Box::new(wake));
        }
    }

    /// The entry `name` stands for, with its id.
    fn entry(&self, name: &str) -> Result<(&str, &Entry), PasswordRequestError> {
        self.normalize(name)
            .and_then(|id| self.accounts.get_key_value(&id))
            .map(|(id, e)| (id.as_str(), e))
            .ok_or_else(|| PasswordRequestError::NoAccount(name.to_owned()))
    }

    /// The generated password of account `name` (normalised as account ids
    /// are), with the account id. Blocking (reads the store).
    pub fn password(
        &self,
        name: &str,
    ) -> Result<(String, Zeroizing<String>), PasswordRequestError> {
        let (id, entry) = self.entry(name)?;
        generated_only(id, &entry.gate)?;
        let failed = |source| PasswordRequestError::Failed {
            account: id.to_owned(),
            source,
        };
        match password::stored(&entry.store).map_err(failed)? {
            Some(p) => Ok((id.to_owned(), p)),
            None => Err(failed(PasswordError::Malformed)),
        }
    }

    /// Replaces the generated password of account `name` with a new one and
    /// returns it with the account id. The old password fails from the
    /// moment this returns (both writes are durable first). Blocking.
    pub fn reset_password(
        &self,
        name: &str,
    ) -> Result<(String, Zeroizing<String>), PasswordRequestError> {
        let (id, entry) = self.entry(name)?;
        let current = generated_only(id, &entry.gate)?;
        let _one_at_a_time = self.resets.lock().unwrap_or_else(|e| e.into_inner());
        let g = password::replace(&entry.store).map_err(|source| PasswordRequestError::Failed {
            account: id.to_owned(),
            source,
        })?;
        *current.write().unwrap_or_else(|e| e.into_inner()) = Hash {
            phc: g.hash,
            matched: None,
        };
        Ok((id.to_owned(), g.password))
    }
}

/// The hash of a generated password, or why the account has none.
fn generated_only<'a>(id: &str, gate: &'a Gate) -> Result<&'a RwLock<Hash>, PasswordRequestError> {
    match gate {
        Gate::Generated(hash) => Ok(hash),
        Gate::Configured(_) => Err(PasswordRequestError::InConfig(id.to_owned())),
        Gate::Open => Err(PasswordRequestError::NotRequired(id.to_owned())),
    }
}

impl Directory for DaemonDirectory {
    fn account(&self, id: &str) -> Option<AccountInfo> {
        self.accounts.get(id).map(|e| e.info.clone())
    }

    fn normalize(&self, name: &str) -> Option<String> {
        normalize_address(name, self.case_sensitive).ok()
    }

    fn recipient_known(&self, addr: &str) -> bool {
        matches!(self.recipients.get(addr), Ok(Some(_)))
    }

    fn verify_password(&self, account: &str, password: &[u8]) -> bool {
        let Some(entry) = self.accounts.get(account) else {
            return false;
        };
        let Ok(password) = std::str::from_utf8(password) else {
            return false;
        };
        match &entry.gate {
            Gate::Open => true,
            Gate::Configured(hash) | Gate::Generated(hash) => check(hash, &self.tag_key, password),
        }
    }

    fn store(&self, account: &str) -> Option<Store> {
        self.accounts.get(account).map(|e| e.store.clone())
    }

    fn queued(&self, account: &str) {
        if let Some(wake) = self
            .wakers
            .read()
            .ok()
            .as_ref()
            .and_then(|w| w.get(account))
        {
            wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUTH_KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn open(dir: &std::path::Path, extra_proxy: &str, accounts: &str) -> Arc<DaemonDirectory> {
        let text = format!(
            "[Proxy]\nDataDir = \"{}\"\nNoLaunchListeners = true\n{extra_proxy}\
             [NonvotingAuthority.T]\nAddress = \"127.0.0.1:1\"\nPublicKey = \"{AUTH_KEY}\"\n{accounts}",
            dir.join("data").display()
        );
        let config = Config::parse(&text).unwrap();
        crate::keys::ensure_private_dir(&config.proxy.data_dir).unwrap();
        for a in &config.accounts {
            crate::keys::ensure_private_dir(&config.proxy.data_dir.join(&a.id)).unwrap();
        }
        let recipients = Recipients::new(dir.join("r"), Default::default(), false);
        DaemonDirectory::open(&config, recipients).unwrap()
    }

    const ALICE_BOB: &str = "[[Account]]\nUser = \"alice\"\nProvider = \"p\"\n\
                             [[Account]]\nUser = \"bob\"\nProvider = \"p\"\n";

    #[test]
    fn generated_passwords_are_required_and_a_reset_replaces_them_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let d = open(tmp.path(), "", ALICE_BOB);
        let alice = d.account("alice@p").unwrap();
        assert!(alice.password_required);
        let (id, pw) = d.password("Alice@P").unwrap();
        assert_eq!(id, "alice@p");
        let (_, bob) = d.password("bob@p").unwrap();
        assert_ne!(*pw, *bob);
        assert!(d.verify_password("alice@p", pw.as_bytes()));
        // Remembered: the same again, and still nothing else.
        assert!(d.verify_password("alice@p", pw.as_bytes()));
        assert!(!d.verify_password("alice@p", bob.as_bytes()));
        assert!(!d.verify_password("bob@p", pw.as_bytes()));
        assert!(!d.verify_password("nobody@p", pw.as_bytes()));
        let (_, new) = d.reset_password("alice@p").unwrap();
        assert_ne!(*new, *pw);
        assert!(
            !d.verify_password("alice@p", pw.as_bytes()),
            "old one fails at once"
        );
        assert!(d.verify_password("alice@p", new.as_bytes()));
        assert_eq!(*d.password("alice@p").unwrap().1, *new);
        assert!(matches!(
            d.password("carol@p"),
            Err(PasswordRequestError::NoAccount(_))
        ));
        // Reopened (a restart): the new password, from the store.
        drop(d);
        let d = open(tmp.path(), "", ALICE_BOB);
        assert_eq!(*d.password("alice@p").unwrap().1, *new);
        assert!(d.verify_password("alice@p", new.as_bytes()));
    }

    #[test]
    fn a_match_remembered_before_a_reset_does_not_let_the_old_password_in() {
        let key = [7u8; 32];
        let lock = Hash::new(crate::auth::hash_password("old").unwrap());
        assert!(check(&lock, &key, "old"));
        assert!(lock.read().unwrap().matched.is_some());
        assert!(!check(&lock, &key, "other"));
        *lock.write().unwrap() = Hash {
            phc: crate::auth::hash_password("new").unwrap(),
            matched: None,
        };
        assert!(!check(&lock, &key, "old"));
        assert!(check(&lock, &key, "new"));
    }

    #[test]
    fn a_configured_hash_wins_and_none_opens_only_accounts_without_one() {
        let tmp = tempfile::tempdir().unwrap();
        let hash = crate::auth::hash_password("chosen").unwrap();
        let accounts =
            format!("{ALICE_BOB}[[Account]]\nUser = \"carol\"\nProvider = \"p\"\nPasswordHash = \"{hash}\"\n");
        let d = open(tmp.path(), "", &accounts);
        assert!(d.verify_password("carol@p", b"chosen"));
        assert!(!d.verify_password("carol@p", b"x"));
        assert!(matches!(
            d.password("carol@p"),
            Err(PasswordRequestError::InConfig(_))
        ));
        assert!(matches!(
            d.reset_password("carol@p"),
            Err(PasswordRequestError::InConfig(_))
        ));
        assert!(!tmp
            .path()
            .join("data/carol@p")
            .join(password::HASH_FILE)
            .exists());
        drop(d);

        let tmp = tempfile::tempdir().unwrap();
        let d = open(tmp.path(), "Authentication = \"none\"\n", &accounts);
        assert!(!d.account("alice@p").unwrap().password_required);
        assert!(d.account("carol@p").unwrap().password_required);
        assert!(matches!(
            d.password("alice@p"),
            Err(PasswordRequestError::NotRequired(_))
        ));
        assert!(!tmp
            .path()
            .join("data/alice@p")
            .join(password::HASH_FILE)
            .exists());
    }

    #[test]
    fn names_are_normalised_as_the_account_ids_are() {
        let tmp = tempfile::tempdir().unwrap();
        let d = open(tmp.path(), "", ALICE_BOB);
        assert_eq!(d.normalize("ALICE@P").as_deref(), Some("alice@p"));
        assert_eq!(d.normalize("no-at-sign"), None);
        let tmp = tempfile::tempdir().unwrap();
        let text = format!(
            "[Proxy]\nDataDir = \"{}\"\nNoLaunchListeners = true\n\
             [NonvotingAuthority.T]\nAddress = \"127.0.0.1:1\"\nPublicKey = \"{AUTH_KEY}\"\n\
             [[Account]]\nUser = \"Alice\"\nProvider = \"P\"\n[Debug]\nCaseSensitiveUserIdentifiers = true\n",
            tmp.path().join("data").display()
        );
        let config = Config::parse(&text).unwrap();
        crate::keys::ensure_private_dir(&config.proxy.data_dir).unwrap();
        crate::keys::ensure_private_dir(&config.proxy.data_dir.join("Alice@p")).unwrap();
        let d = DaemonDirectory::open(
            &config,
            Recipients::new(tmp.path().join("r"), Default::default(), true),
        )
        .unwrap();
        assert_eq!(d.normalize("Alice@P").as_deref(), Some("Alice@p"));
        assert!(d.account(&d.normalize("alice@p").unwrap()).is_none());
        assert!(d.password("Alice@p").is_ok());
        assert!(matches!(
            d.password("ALICE@p"),
            Err(PasswordRequestError::NoAccount(_))
        ));
    }
}
