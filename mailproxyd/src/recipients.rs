//! Recipient public keys: addresses, normalisation, and the shared recipient table.
//!
//! Keys come from three places: the config's `[Recipients]` table, PEM files
//! `<RecipientDir>/<user>@<provider>.pem` (type `X25519 PUBLIC KEY`, raw
//! 32-byte body), and the management socket, which writes such files. A
//! file overrides a config entry for the same address. [`Recipients::rescan`]
//! (start-up, SIGHUP, `RESCAN`) re-reads the whole directory: new and changed
//! files are picked up, removed files are forgotten, and each bad file is
//! logged with its name and skipped.
//!
//! Methods do blocking file I/O on small files; call them from
//! `spawn_blocking` in async code.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::keys::{encode_pem, read_pem_file, write_file_atomic, PUBLIC_PEM};

/// Longest local part (the Sphinx recipient field is 64 bytes).
pub const MAX_USER_LEN: usize = 64;
/// Longest provider name (a DNS name).
pub const MAX_PROVIDER_LEN: usize = 253;

/// Why an address was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// No `@`.
    #[error("'{0}' is not an address of the form user@provider")]
    NoAt(String),
    /// Empty user name.
    #[error("the user name is empty")]
    EmptyUser,
    /// User longer than 64 bytes.
    #[error("the user name is longer than {MAX_USER_LEN} bytes")]
    UserTooLong,
    /// Forbidden characters in the user name.
    #[error(
        "the user name contains a space, control character, '@', '/' or '\\\\', or starts with '.'"
    )]
    UserCharacters,
    /// Empty provider.
    #[error("the provider name is empty")]
    EmptyProvider,
    /// Provider longer than 253 bytes.
    #[error("the provider name is longer than {MAX_PROVIDER_LEN} bytes")]
    ProviderTooLong,
    /// Non-ASCII provider.
    #[error("the provider name is not ASCII; write internationalised names in their xn-- form")]
    ProviderNotAscii,
    /// Bad provider characters.
    #[error(
        "the provider name may only hold letters, digits, '-', '_' and '.' (and no empty labels)"
    )]
    ProviderCharacters,
}

/// Normalises a user name: lower-cased unless `case_sensitive`; no blanks,
/// controls, `@`, `/`, `\`, leading `.`; at most 64 bytes.
pub fn normalize_user(user: &str, case_sensitive: bool) -> Result<String, AddressError> {
    if user.is_empty() {
        return Err(AddressError::EmptyUser);
    }
    let user = if case_sensitive {
        user.to_owned()
    } else {
        user.to_lowercase()
    };
    if user.starts_with('.')
        || user
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '@' | '/' | '\\'))
    {
        return Err(AddressError::UserCharacters);
    }
    if user.len() > MAX_USER_LEN {
        return Err(AddressError::UserTooLong);
    }
    Ok(user)
}

/// Normalises a provider name: ASCII, lower-cased, DNS-like labels.
pub fn normalize_provider(provider: &str) -> Result<String, AddressError> {
    if provider.is_empty() {
        return Err(AddressError::EmptyProvider);
    }
    if !provider.is_ascii() {
        return Err(AddressError::ProviderNotAscii);
    }
    if provider.len() > MAX_PROVIDER_LEN {
        return Err(AddressError::ProviderTooLong);
    }
    let provider = provider.to_ascii_lowercase();
    let labels_ok = provider.split('.').all(|label| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if !labels_ok {
        return Err(AddressError::ProviderCharacters);
    }
    Ok(provider)
}

/// Normalises `user@provider` (the last `@` separates them).
pub fn normalize_address(address: &str, case_sensitive: bool) -> Result<String, AddressError> {
    let (user, provider) = address
        .rsplit_once('@')
        .ok_or_else(|| AddressError::NoAt(address.chars().take(80).collect()))?;
    Ok(format!(
        "{}@{}",
        normalize_user(user, case_sensitive)?,
        normalize_provider(provider)?
    ))
}

/// Errors from recipient operations.
#[derive(Debug, thiserror::Error)]
pub enum RecipientError {
    /// The address is invalid.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// The address has no key.
    #[error("no recipient '{0}'")]
    Unknown(String),
    /// The address comes from the config file and cannot be removed at run time.
    #[error("recipient '{0}' is set in the config file's [Recipients]; remove it there")]
    FromConfig(String),
    /// A file or the directory could not be read or written.
    #[error("recipient file '{path}': {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What a rescan changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RescanReport {
    /// Addresses that are new.
    pub added: Vec<String>,
    /// Addresses whose key changed.
    pub changed: Vec<String>,
    /// Addresses forgotten.
    pub removed: Vec<String>,
    /// Files skipped, with the reason.
    pub bad: Vec<(PathBuf, String)>,
}

impl std::fmt::Display for RescanReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} added, {} changed, {} removed, {} bad",
            self.added.len(),
            self.changed.len(),
            self.removed.len(),
            self.bad.len()
        )
    }
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    case_sensitive: bool,
    config: BTreeMap<String, [u8; 32]>,
    files: BTreeMap<String, [u8; 32]>,
}

impl Inner {
    fn effective(&self) -> BTreeMap<String, [u8; 32]> {
        let mut all = self.config.clone();
        all.extend(self.files.iter().map(|(k, v)| (k.clone(), *v)));
        all
    }

    fn lookup(&self, address: &str) -> Option<[u8; 32]> {
        self.files
            .get(address)
            .or_else(|| self.config.get(address))
            .copied()
    }
}

/// The shared recipient table (cheap to clone).
#[derive(Debug, Clone)]
pub struct Recipients {
    inner: Arc<Mutex<Inner>>,
}

impl Recipients {
    /// A table with the config entries (already normalised) and the given
    /// directory, not yet scanned.
    pub fn new(
        dir: PathBuf,
        config: BTreeMap<String, [u8; 32]>,
        case_sensitive: bool,
    ) -> Recipients {
        Recipients {
            inner: Arc::new(Mutex::new(Inner {
                dir,
                case_sensitive,
                config,
                files: BTreeMap::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent maps; keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Normalises an address with this table's case rule.
    pub fn normalize(&self, address: &str) -> Result<String, AddressError> {
        let case_sensitive = self.lock().case_sensitive;
        normalize_address(address, case_sensitive)
    }

    /// The key for an address (normalised first).
    pub fn get(&self, address: &str) -> Result<Option<[u8; 32]>, AddressError> {
        let inner = self.lock();
        let address = normalize_address(address, inner.case_sensitive)?;
        Ok(inner.lookup(&address))
    }

    /// All recipients, sorted by address.
    pub fn list(&self) -> Vec<(String, [u8; 32])> {
        self.lock().effective().into_iter().collect()
    }

    /// Number of recipients.
    pub fn len(&self) -> usize {
        self.lock().effective().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds or replaces a recipient: writes `<dir>/<addr>.pem` (0600) and
    /// updates the table. Returns the normalised address.
    pub fn set(&self, address: &str, key: &[u8; 32]) -> Result<String, RecipientError> {
        let mut inner = self.lock();
        let address = normalize_address(address, inner.case_sensitive)?;
        let path = inner.dir.join(format!("{address}.pem"));
        write_file_atomic(&path, encode_pem(PUBLIC_PEM, key).as_bytes())
            .map_err(|source| RecipientError::Io { path, source })?;
        inner.files.insert(address.clone(), *key);
        Ok(address)
    }

    /// Forgets a recipient and deletes its file. Entries from the config
    /// file cannot be removed this way.
    pub fn remove(&self, address: &str) -> Result<String, RecipientError> {
        let mut inner = self.lock();
        let address = normalize_address(address, inner.case_sensitive)?;
        if inner.config.contains_key(&address) {
            return Err(RecipientError::FromConfig(address));
        }
        if !inner.files.contains_key(&address) {
            return Err(RecipientError::Unknown(address));
        }
        let path = inner.dir.join(format!("{address}.pem"));
        match fs::remove_file(&path) {
            Ok(()) => {}
            // Loaded from a file with a non-normalised name: find it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                remove_files_for(&inner.dir, &address, inner.case_sensitive).map_err(|source| {
                    RecipientError::Io {
                        path: path.clone(),
                        source,
                    }
                })?;
            }
            Err(source) => return Err(RecipientError::Io { path, source }),
        }
        inner.files.remove(&address);
        Ok(address)
    }

    /// Re-reads the directory (see the module docs). Fails only if the
    /// directory itself cannot be read; bad files are reported and skipped.
    pub fn rescan(&self) -> Result<RescanReport, RecipientError> {
        let mut inner = self.lock();
        let (files, bad) = scan_dir(&inner.dir, inner.case_sensitive)?;
        let before = inner.effective();
        inner.files = files;
        let after = inner.effective();
        drop(inner);

        let mut report = RescanReport {
            bad,
            ..RescanReport::default()
        };
        for (addr, key) in &after {
            match before.get(addr) {
                None => report.added.push(addr.clone()),
                Some(old) if old != key => report.changed.push(addr.clone()),
                Some(_) => {}
            }
        }
        report.removed = before
            .keys()
            .filter(|a| !after.contains_key(*a))
            .cloned()
            .collect();
        for (path, why) in &report.bad {
            tracing::warn!(file = %path.display(), error = %why, "skipping bad recipient file");
        }
        tracing::info!(
            added = report.added.len(),
            changed = report.changed.len(),
            removed = report.removed.len(),
            bad = report.bad.len(),
            total = after.len(),
            "recipient directory scanned"
        );
        Ok(report)
    }
}

type Scan = (BTreeMap<String, [u8; 32]>, Vec<(PathBuf, String)>);

fn scan_dir(dir: &Path, case_sensitive: bool) -> Result<Scan, RecipientError> {
    let io = |source| RecipientError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort();
    let mut files = BTreeMap::new();
    let mut bad = Vec::new();
    for path in entries {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') {
            // Hidden files: our own temporary files, editor state, .DS_Store.
            tracing::debug!(file = %path.display(), "ignoring hidden file in recipient directory");
            continue;
        }
        match load_file(&path, &name, case_sensitive) {
            Ok((address, key)) => match files.entry(address) {
                std::collections::btree_map::Entry::Occupied(e) => bad.push((
                    path,
                    format!("another file already holds a key for '{}'", e.key()),
                )),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(key);
                }
            },
            Err(why) => bad.push((path, why)),
        }
    }
    Ok((files, bad))
}

fn load_file(path: &Path, name: &str, case_sensitive: bool) -> Result<(String, [u8; 32]), String> {
    let meta = fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let stem = name
        .strip_suffix(".pem")
        .ok_or_else(|| "not a .pem file (expected <user>@<provider>.pem)".to_owned())?;
    let address = normalize_address(stem, case_sensitive).map_err(|e| e.to_string())?;
    let key = read_pem_file(path, PUBLIC_PEM).map_err(|e| match e {
        crate::keys::KeyError::Corrupt { reason, .. } => reason.to_string(),
        other => other.to_string(),
    })?;
    Ok((address, key))
}

fn remove_files_for(dir: &Path, address: &str, case_sensitive: bool) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(stem) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".pem"))
        else {
            continue;
        };
        if normalize_address(stem, case_sensitive).as_deref() == Ok(address) {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_normalisation() {
        assert_eq!(
            normalize_address("Bob@Example.ORG", false).unwrap(),
            "bob@example.org"
        );
        assert_eq!(
            normalize_address("Bob@Example.ORG", true).unwrap(),
            "Bob@example.org"
        );
        assert!(matches!(
            normalize_address("bob", false),
            Err(AddressError::NoAt(_))
        ));
        assert_eq!(
            normalize_address("@x.org", false),
            Err(AddressError::EmptyUser)
        );
        assert_eq!(
            normalize_address("bob@", false),
            Err(AddressError::EmptyProvider)
        );
        assert_eq!(
            normalize_address("../x@y", false),
            Err(AddressError::UserCharacters)
        );
        assert_eq!(
            normalize_address("a/b@y", false),
            Err(AddressError::UserCharacters)
        );
        assert_eq!(
            normalize_address("a@b/c", false),
            Err(AddressError::ProviderCharacters)
        );
        assert_eq!(
            normalize_address("a@b..c", false),
            Err(AddressError::ProviderCharacters)
        );
        assert_eq!(
            normalize_address("a@bücher.de", false),
            Err(AddressError::ProviderNotAscii)
        );
        let long = format!("{}@x", "u".repeat(65));
        assert_eq!(
            normalize_address(&long, false),
            Err(AddressError::UserTooLong)
        );
    }

    fn table(dir: &Path, config: &[(&str, [u8; 32])]) -> Recipients {
        let config = config.iter().map(|(a, k)| (a.to_string(), *k)).collect();
        Recipients::new(dir.to_owned(), config, false)
    }

    #[test]
    fn set_get_remove_persist() {
        let tmp = tempfile::tempdir().unwrap();
        let r = table(tmp.path(), &[]);
        assert_eq!(
            r.set("Bob@Example.org", &[1; 32]).unwrap(),
            "bob@example.org"
        );
        assert_eq!(r.get("BOB@example.org").unwrap(), Some([1; 32]));
        let file = tmp.path().join("bob@example.org.pem");
        assert_eq!(read_pem_file(&file, PUBLIC_PEM).unwrap(), [1; 32]);

        // A fresh table sees the persisted file.
        let r2 = table(tmp.path(), &[]);
        r2.rescan().unwrap();
        assert_eq!(r2.list(), vec![("bob@example.org".to_owned(), [1; 32])]);

        r.remove("bob@example.org").unwrap();
        assert!(!file.exists());
        assert_eq!(r.get("bob@example.org").unwrap(), None);
        assert!(matches!(
            r.remove("bob@example.org"),
            Err(RecipientError::Unknown(_))
        ));
    }

    #[test]
    fn config_entries_cannot_be_removed_and_files_override_them() {
        let tmp = tempfile::tempdir().unwrap();
        let r = table(tmp.path(), &[("carol@x.org", [5; 32])]);
        r.rescan().unwrap();
        assert_eq!(r.get("carol@x.org").unwrap(), Some([5; 32]));
        assert!(matches!(
            r.remove("carol@x.org"),
            Err(RecipientError::FromConfig(_))
        ));
        r.set("carol@x.org", &[6; 32]).unwrap();
        assert_eq!(r.get("carol@x.org").unwrap(), Some([6; 32]));
    }

    #[test]
    fn rescan_adds_changes_removes_and_skips_bad_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let write = |name: &str, key: [u8; 32]| {
            fs::write(dir.join(name), encode_pem(PUBLIC_PEM, &key)).unwrap()
        };
        write("a@x.org.pem", [1; 32]);
        write("b@x.org.pem", [2; 32]);
        let r = table(dir, &[]);
        let first = r.rescan().unwrap();
        assert_eq!(first.added, vec!["a@x.org", "b@x.org"]);

        write("c@x.org.pem", [3; 32]); // added
        write("a@x.org.pem", [9; 32]); // changed
        fs::remove_file(dir.join("b@x.org.pem")).unwrap(); // removed
        fs::write(dir.join("aa-bad@x.org.pem"), "garbage").unwrap();
        fs::write(dir.join("notes.txt"), "hello").unwrap();
        fs::create_dir(dir.join("sub")).unwrap();
        fs::write(dir.join(".swap"), "x").unwrap();
        write("zz@x.org.pem", [4; 32]); // after the bad ones: still loaded

        let report = r.rescan().unwrap();
        assert_eq!(report.added, vec!["c@x.org", "zz@x.org"]);
        assert_eq!(report.changed, vec!["a@x.org"]);
        assert_eq!(report.removed, vec!["b@x.org"]);
        let bad: Vec<String> = report
            .bad
            .iter()
            .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(bad, vec!["aa-bad@x.org.pem", "notes.txt", "sub"]);
        assert_eq!(r.get("a@x.org").unwrap(), Some([9; 32]));
        assert_eq!(r.get("b@x.org").unwrap(), None);
        assert_eq!(r.len(), 3);
        assert_eq!(report.to_string(), "2 added, 1 changed, 1 removed, 3 bad");
    }
}
