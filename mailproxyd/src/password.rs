//! Generated account passwords: the login of the SMTP and POP3 servers for
//! every account without a `PasswordHash` (as Proton Mail Bridge does for
//! its local servers).
//!
//! A password is 28 symbols of Crockford's base32 alphabet in lower case (no
//! `i`, `l`, `o`, `u`), in seven groups of four: 140 random bits, e.g.
//! `7xq2-k9ma-...`. Each account keeps
//! - `<account dir>/password.argon2id` (0600): its Argon2id PHC string,
//!   which logins are checked against;
//! - the password itself in the store's `Meta` table, sealed with the
//!   storage key, so that its user can see it again (`mailproxyctl password`).
//!
//! The sealed password is written first and is the authority: at start a
//! hash file that is missing or does not match it (a crash between the two
//! writes of a reset) is rewritten from it. Nothing here logs a password.

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::auth::{self, AuthError};
use crate::keys::write_file_atomic;
use crate::store::{KvTable, Store, StoreError};

/// File of the Argon2id hash, in the account directory.
pub const HASH_FILE: &str = "password.argon2id";

/// Key of the sealed password in the store's `Meta` table.
const META_KEY: &[u8] = b"login-password";

/// Crockford's base32 alphabet, lower case.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Symbols per group and groups per password: 7 x 4 x 5 = 140 bits.
const GROUP: usize = 4;
const GROUPS: usize = 7;
// At least 128 bits, whatever the grouping.
const _: () = assert!(GROUPS * GROUP * 5 >= 128);

/// Largest hash file read (a PHC string is about 100 bytes).
const MAX_HASH_FILE: u64 = 4096;

/// Why a generated password could not be made, read or stored.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The hash file could not be written.
    #[error("password hash file '{path}': {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Hashing failed.
    #[error(transparent)]
    Hash(#[from] AuthError),
    /// The sealed password is not UTF-8 (a damaged or foreign record).
    #[error("the stored password is malformed")]
    Malformed,
}

/// A fresh random password (see the module documentation for its form).
pub fn generate() -> Zeroizing<String> {
    let mut random = Zeroizing::new([0u8; GROUP * GROUPS]);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut random[..]);
    let mut out = Zeroizing::new(String::with_capacity(GROUPS * (GROUP + 1)));
    for (i, b) in random.iter().enumerate() {
        if i > 0 && i % GROUP == 0 {
            out.push('-');
        }
        // 256 is a multiple of 32: every symbol is equally likely.
        out.push(char::from(ALPHABET[usize::from(b & 31)]));
    }
    out
}

/// An account's generated password and the hash logins are checked against.
pub struct Generated {
    /// The password.
    pub password: Zeroizing<String>,
    /// Its Argon2id PHC string, as in the hash file.
    pub hash: String,
    /// Whether it was created just now.
    pub created: bool,
}

impl std::fmt::Debug for Generated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generated")
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// The stored password of the account whose store this is, if any.
pub fn stored(store: &Store) -> Result<Option<Zeroizing<String>>, PasswordError> {
    match store.kv_get(KvTable::Meta, META_KEY)? {
        None => Ok(None),
        Some(bytes) => String::from_utf8(bytes)
            .map(|s| Some(Zeroizing::new(s)))
            .map_err(|e| {
                drop(Zeroizing::new(e.into_bytes()));
                PasswordError::Malformed
            }),
    }
}

/// The account's password, generated and stored if it has none yet; the
/// hash file is (re)written when missing or not matching. Blocking (one
/// Argon2id computation).
pub fn ensure(store: &Store) -> Result<Generated, PasswordError> {
    let Some(password) = stored(store)? else {
        return replace(store);
    };
    let path = hash_path(store.dir());
    let hash = match read_hash(&path) {
        Some(h) if auth::verify_password(&h, &password) => h,
        found => {
            if found.is_some() {
                tracing::warn!(file = %path.display(), "password hash file does not match the stored password; rewriting it");
            }
            let h = auth::hash_password(&password)?;
            write_hash(&path, &h)?;
            h
        }
    };
    Ok(Generated {
        password,
        hash,
        created: false,
    })
}

/// Makes a new password for the account and stores it (sealed first, then
/// the hash file); both are durable when this returns. Blocking.
pub fn replace(store: &Store) -> Result<Generated, PasswordError> {
    let password = generate();
    let hash = auth::hash_password(&password)?;
    store.kv_put(KvTable::Meta, META_KEY, password.as_bytes())?;
    write_hash(&hash_path(store.dir()), &hash)?;
    Ok(Generated {
        password,
        hash,
        created: true,
    })
}

fn hash_path(account_dir: &Path) -> PathBuf {
    account_dir.join(HASH_FILE)
}

/// The hash file's PHC string, if the file exists and holds one.
fn read_hash(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_HASH_FILE)
        .read_to_string(&mut text)
        .ok()?;
    let phc = text.trim();
    auth::validate_hash(phc).ok()?;
    Some(phc.to_owned())
}

fn write_hash(path: &Path, phc: &str) -> Result<(), PasswordError> {
    write_file_atomic(path, format!("{phc}\n").as_bytes()).map_err(|source| PasswordError::Io {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::KeySource;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_passwords_are_long_typable_and_distinct() {
        let a = generate();
        let b = generate();
        assert_ne!(*a, *b);
        assert_eq!(a.len(), GROUPS * GROUP + GROUPS - 1);
        let groups: Vec<&str> = a.split('-').collect();
        assert_eq!(groups.len(), GROUPS);
        assert!(groups.iter().all(|g| g.len() == GROUP));
        assert!(
            a.bytes().all(|c| c == b'-' || ALPHABET.contains(&c)),
            "{}",
            *a
        );
        // At least 128 bits: 5 per symbol.
        assert!(a.bytes().filter(|&c| c != b'-').count() * 5 >= 128);
        // Every symbol shows up over a few hundred passwords (no stuck bits).
        let mut seen = [false; 32];
        for _ in 0..200 {
            for c in generate().bytes().filter(|&c| c != b'-') {
                seen[ALPHABET.iter().position(|&x| x == c).unwrap()] = true;
            }
        }
        assert!(seen.iter().all(|&s| s));
    }

    fn store() -> (tempfile::TempDir, Store) {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), &KeySource::KeyFile).unwrap();
        (tmp, store)
    }

    #[test]
    fn ensure_creates_once_then_loads() {
        let (tmp, store) = store();
        let first = ensure(&store).unwrap();
        assert!(first.created);
        assert!(auth::verify_password(&first.hash, &first.password));
        let file = tmp.path().join(HASH_FILE);
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), first.hash);
        let again = ensure(&store).unwrap();
        assert!(!again.created);
        assert_eq!(*again.password, *first.password);
        assert_eq!(again.hash, first.hash);
        assert_eq!(*stored(&store).unwrap().unwrap(), *first.password);
    }

    #[test]
    fn a_missing_or_stale_hash_file_is_rewritten_from_the_sealed_password() {
        let (tmp, store) = store();
        let first = ensure(&store).unwrap();
        let file = tmp.path().join(HASH_FILE);
        // A crash between the two writes of a reset: an older hash on disk.
        std::fs::write(&file, auth::hash_password("older").unwrap()).unwrap();
        let healed = ensure(&store).unwrap();
        assert_eq!(*healed.password, *first.password);
        assert!(auth::verify_password(&healed.hash, &first.password));
        let on_disk = std::fs::read_to_string(&file).unwrap();
        assert!(auth::verify_password(on_disk.trim(), &first.password));
        std::fs::remove_file(&file).unwrap();
        ensure(&store).unwrap();
        assert!(file.exists());
    }

    #[test]
    fn replace_makes_a_new_password() {
        let (tmp, store) = store();
        let first = ensure(&store).unwrap();
        let second = replace(&store).unwrap();
        assert_ne!(*first.password, *second.password);
        let on_disk = std::fs::read_to_string(tmp.path().join(HASH_FILE)).unwrap();
        assert!(auth::verify_password(on_disk.trim(), &second.password));
        assert!(!auth::verify_password(on_disk.trim(), &first.password));
        assert_eq!(*stored(&store).unwrap().unwrap(), *second.password);
    }

    #[test]
    fn the_password_is_never_in_plaintext_on_disk() {
        let (tmp, store) = store();
        let g = ensure(&store).unwrap();
        drop(store);
        for e in std::fs::read_dir(tmp.path()).unwrap() {
            let bytes = std::fs::read(e.unwrap().path()).unwrap();
            assert!(!bytes
                .windows(g.password.len())
                .any(|w| w == g.password.as_bytes()));
        }
    }
}
