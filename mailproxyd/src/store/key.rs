//! Where the storage key comes from: a 0600 key file in the account
//! directory (default), or a passphrase stretched with Argon2id and a salt
//! file kept beside the store.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;
use zeroize::Zeroizing;

use super::seal::StorageKey;
use super::StoreError;

/// Name of the key file inside the account directory.
pub const KEY_FILE: &str = "storage.key";
/// Name of the salt file used in passphrase mode.
pub const SALT_FILE: &str = "storage.salt";

/// Argon2id cost parameters (stored in the salt file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane.
    fn default() -> Self {
        KdfParams {
            m_kib: 65536,
            t: 3,
            p: 1,
        }
    }
}

/// How the storage key is obtained.
#[derive(Clone)]
pub enum KeySource {
    /// A random key in `<account dir>/storage.key`, mode 0600, created on first use.
    KeyFile,
    /// A key derived from a passphrase with Argon2id; the salt lives in `storage.salt`.
    Passphrase {
        /// The passphrase bytes.
        passphrase: Zeroizing<Vec<u8>>,
        /// Cost parameters used when the salt file is first created.
        params: KdfParams,
    },
    /// A key supplied directly (tests, or a key held elsewhere).
    Raw(StorageKey),
}

impl KeySource {
    /// Passphrase mode with default parameters.
    pub fn passphrase(p: impl Into<Vec<u8>>) -> Self {
        KeySource::Passphrase {
            passphrase: Zeroizing::new(p.into()),
            params: KdfParams::default(),
        }
    }
    /// Passphrase read from a file (one trailing newline is removed).
    pub fn passphrase_file(path: &Path) -> Result<Self, StoreError> {
        let mut p = Zeroizing::new(fs::read(path).map_err(|e| StoreError::io(path, e))?);
        strip_newline(&mut p);
        if p.is_empty() {
            return Err(StoreError::Key(format!(
                "passphrase file {} is empty",
                path.display()
            )));
        }
        Ok(KeySource::Passphrase {
            passphrase: p,
            params: KdfParams::default(),
        })
    }
    /// Passphrase taken from an environment variable.
    pub fn passphrase_env(var: &str) -> Result<Self, StoreError> {
        let v = std::env::var_os(var)
            .ok_or_else(|| StoreError::Key(format!("environment variable {var} is not set")))?;
        let mut p = Zeroizing::new(std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()).to_vec());
        strip_newline(&mut p);
        if p.is_empty() {
            return Err(StoreError::Key(format!(
                "environment variable {var} is empty"
            )));
        }
        Ok(KeySource::Passphrase {
            passphrase: p,
            params: KdfParams::default(),
        })
    }
}

fn strip_newline(p: &mut Vec<u8>) {
    if p.last() == Some(&b'\n') {
        p.pop();
        if p.last() == Some(&b'\r') {
            p.pop();
        }
    }
}

/// Loads (or, when `may_create`, creates) the storage key for the store in `dir`.
pub fn obtain_key(
    dir: &Path,
    source: &KeySource,
    may_create: bool,
) -> Result<StorageKey, StoreError> {
    match source {
        KeySource::Raw(k) => Ok(k.clone()),
        KeySource::KeyFile => key_file(&dir.join(KEY_FILE), may_create),
        KeySource::Passphrase { passphrase, params } => {
            let (salt, params) = salt_file(&dir.join(SALT_FILE), *params, may_create)?;
            derive(passphrase, &salt, params)
        }
    }
}

fn create_private(path: &Path, contents: &[u8]) -> Result<(), StoreError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| StoreError::io(path, e))?;
    f.write_all(contents).map_err(|e| StoreError::io(path, e))?;
    f.sync_all().map_err(|e| StoreError::io(path, e))?;
    if let Some(parent) = path.parent() {
        if let Ok(d) = fs::File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn read_private(path: &Path, max: u64) -> Result<Vec<u8>, StoreError> {
    let f = fs::File::open(path).map_err(|e| StoreError::io(path, e))?;
    let meta = f.metadata().map_err(|e| StoreError::io(path, e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(StoreError::Key(format!(
            "{} has mode {:o}; it must not be accessible to group or others (0600)",
            path.display(),
            meta.permissions().mode() & 0o777
        )));
    }
    let mut buf = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| StoreError::io(path, e))?;
    Ok(buf)
}

fn key_file(path: &Path, may_create: bool) -> Result<StorageKey, StoreError> {
    if !path.exists() {
        if !may_create {
            return Err(StoreError::Key(format!(
                "storage key {} is missing but the store exists; refusing to create a new key",
                path.display()
            )));
        }
        let key = StorageKey::generate();
        create_private(path, &key.0[..])?;
        return Ok(key);
    }
    let bytes = Zeroizing::new(read_private(path, 32)?);
    let arr: [u8; 32] = bytes[..]
        .try_into()
        .map_err(|_| StoreError::Key(format!("{} must hold exactly 32 bytes", path.display())))?;
    Ok(StorageKey::from_bytes(arr))
}

const SALT_MAGIC: &str = "mailproxy-storage-argon2id-v1";

fn salt_file(
    path: &Path,
    params: KdfParams,
    may_create: bool,
) -> Result<([u8; 16], KdfParams), StoreError> {
    if !path.exists() {
        if !may_create {
            return Err(StoreError::Key(format!(
                "salt file {} is missing but the store exists",
                path.display()
            )));
        }
        let mut salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let text = format!(
            "{SALT_MAGIC} m={} t={} p={} salt={}\n",
            params.m_kib,
            params.t,
            params.p,
            hex::encode(salt)
        );
        create_private(path, text.as_bytes())?;
        return Ok((salt, params));
    }
    let bad = || StoreError::Key(format!("salt file {} is malformed", path.display()));
    let text = read_private(path, 512)?;
    let text = std::str::from_utf8(&text).map_err(|_| bad())?;
    let mut it = text.trim_end().split(' ');
    if it.next() != Some(SALT_MAGIC) {
        return Err(bad());
    }
    let mut field = |name: &str| -> Result<&str, StoreError> {
        it.next()
            .and_then(|f| f.strip_prefix(name))
            .and_then(|f| f.strip_prefix('='))
            .ok_or_else(bad)
    };
    let m_kib = field("m")?.parse().map_err(|_| bad())?;
    let t = field("t")?.parse().map_err(|_| bad())?;
    let p = field("p")?.parse().map_err(|_| bad())?;
    let salt_hex = field("salt")?;
    let mut salt = [0u8; 16];
    hex::decode_to_slice(salt_hex, &mut salt).map_err(|_| bad())?;
    // Refuse absurd costs from a damaged file rather than allocate them.
    if !(8..=4 * 1024 * 1024).contains(&m_kib) || !(1..=100).contains(&t) || !(1..=16).contains(&p)
    {
        return Err(bad());
    }
    Ok((salt, KdfParams { m_kib, t, p }))
}

fn derive(passphrase: &[u8], salt: &[u8; 16], p: KdfParams) -> Result<StorageKey, StoreError> {
    let params = argon2::Params::new(p.m_kib, p.t, p.p, Some(32))
        .map_err(|e| StoreError::Key(format!("bad Argon2 parameters: {e}")))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    a.hash_password_into(passphrase, salt, &mut out[..])
        .map_err(|e| StoreError::Key(format!("key derivation failed: {e}")))?;
    Ok(StorageKey(out))
}

/// The files that make up a store in `dir` (for tests and backups).
pub fn store_files(dir: &Path) -> Vec<PathBuf> {
    [super::DB_FILE, KEY_FILE, SALT_FILE]
        .iter()
        .map(|f| dir.join(f))
        .filter(|p| p.exists())
        .collect()
}
