//! Per-account key files and the PEM format they use.
//!
//! Each account has a directory `<DataDir>/<user>@<provider>/` (0700) with
//! `link.{private,public}.pem` and `identity.{private,public}.pem` (0600).
//! PEM types are `X25519 PRIVATE KEY` / `X25519 PUBLIC KEY` with the raw
//! 32-byte key as the body (not PKCS#8), as the original daemon wrote them.
//! Private keys are generated on first start and loaded afterwards; the
//! public files are rewritten from the private key when missing or wrong.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// PEM type of private keys.
pub const PRIVATE_PEM: &str = "X25519 PRIVATE KEY";
/// PEM type of public keys.
pub const PUBLIC_PEM: &str = "X25519 PUBLIC KEY";
/// Largest key file read.
const MAX_PEM_BYTES: u64 = 4096;

/// Errors about key files.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A file or directory could not be read or written.
    #[error("key file '{path}': {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key file exists but is not a valid key.
    #[error("key file '{path}' is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: PemError,
    },
}

/// Why a PEM text is not a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    /// No BEGIN line.
    #[error("no PEM block")]
    NoBlock,
    /// The BEGIN line names another type.
    #[error("PEM type is '{0}', expected '{1}'")]
    WrongType(String, &'static str),
    /// No matching END line.
    #[error("PEM block is not terminated")]
    Unterminated,
    /// The body is not base64.
    #[error("PEM body is not base64")]
    Base64,
    /// The body is not 32 bytes.
    #[error("PEM body is {0} bytes, expected 32")]
    Length(usize),
    /// Something other than whitespace follows the block.
    #[error("data after the PEM block")]
    TrailingData,
    /// The file is larger than any key file.
    #[error("file too large")]
    TooLarge,
    /// The file is not UTF-8 text.
    #[error("not a text file")]
    NotText,
}

/// Encodes a 32-byte key as a PEM block of the given type.
pub fn encode_pem(label: &str, key: &[u8; 32]) -> String {
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        STANDARD.encode(key)
    )
}

/// Decodes a PEM block of the given type holding a raw 32-byte key.
/// Whitespace around the block is allowed, anything else is an error.
pub fn decode_pem(label: &'static str, text: &str) -> Result<[u8; 32], PemError> {
    let text = text.trim();
    let rest = text.strip_prefix("-----BEGIN ").ok_or(PemError::NoBlock)?;
    let (found, rest) = rest.split_once("-----").ok_or(PemError::NoBlock)?;
    if found != label {
        return Err(PemError::WrongType(found.chars().take(64).collect(), label));
    }
    let end = format!("-----END {label}-----");
    let (body, after) = rest.split_once(&end).ok_or(PemError::Unterminated)?;
    if !after.trim().is_empty() {
        return Err(PemError::TrailingData);
    }
    let body: Zeroizing<String> = Zeroizing::new(body.split_whitespace().collect());
    let bytes = Zeroizing::new(
        STANDARD
            .decode(body.as_bytes())
            .map_err(|_| PemError::Base64)?,
    );
    let len = bytes.len();
    let mut key = [0u8; 32];
    if len != 32 {
        return Err(PemError::Length(len));
    }
    key.copy_from_slice(&bytes);
    Ok(key)
}

/// Reads a key file (bounded size) and decodes it.
pub fn read_pem_file(path: &Path, label: &'static str) -> Result<[u8; 32], KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let corrupt = |reason| KeyError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let file = fs::File::open(path).map_err(io)?;
    let mut raw = Zeroizing::new(Vec::new());
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut raw)
        .map_err(io)?;
    if raw.len() as u64 > MAX_PEM_BYTES {
        return Err(corrupt(PemError::TooLarge));
    }
    let text = std::str::from_utf8(&raw).map_err(|_| corrupt(PemError::NotText))?;
    decode_pem(label, text).map_err(corrupt)
}

/// Writes a file atomically (temporary file, fsync, rename) with mode 0600.
pub fn write_file_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates `dir` with mode 0700 if absent; refuses an existing directory
/// that group or others may access.
pub fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    match fs::metadata(dir) {
        Ok(meta) => {
            if !meta.is_dir() {
                return Err(std::io::Error::other(format!(
                    "'{}' exists and is not a directory",
                    dir.display()
                )));
            }
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(std::io::Error::other(format!(
                    "directory '{}' has permissions {mode:04o}; it must not be accessible to group or others (chmod 700)",
                    dir.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::DirBuilder::new().mode(0o700).create(dir)?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        }
        Err(e) => Err(e),
    }
}

/// An account's two X25519 key pairs.
pub struct AccountKeys {
    /// Authenticates the account to its provider (link layer).
    pub link: StaticSecret,
    /// The end-to-end identity others encrypt to.
    pub identity: StaticSecret,
}

impl std::fmt::Debug for AccountKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountKeys")
            .field("link_public", &STANDARD.encode(self.link_public()))
            .field("identity_public", &STANDARD.encode(self.identity_public()))
            .finish_non_exhaustive()
    }
}

impl AccountKeys {
    /// The link public key.
    pub fn link_public(&self) -> [u8; 32] {
        PublicKey::from(&self.link).to_bytes()
    }

    /// The identity public key.
    pub fn identity_public(&self) -> [u8; 32] {
        PublicKey::from(&self.identity).to_bytes()
    }

    /// Loads the account's keys from `dir`, generating any that are missing.
    /// Returns the keys and whether any key was generated.
    pub fn load_or_generate(dir: &Path) -> Result<(AccountKeys, bool), KeyError> {
        ensure_private_dir(dir).map_err(|source| KeyError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let (link, new_link) = load_or_generate_one(dir, "link")?;
        let (identity, new_identity) = load_or_generate_one(dir, "identity")?;
        Ok((AccountKeys { link, identity }, new_link || new_identity))
    }
}

fn load_or_generate_one(dir: &Path, name: &str) -> Result<(StaticSecret, bool), KeyError> {
    let private_path = dir.join(format!("{name}.private.pem"));
    let public_path = dir.join(format!("{name}.public.pem"));
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| KeyError::Io { path, source }
    };
    let (secret, generated) = match fs::symlink_metadata(&private_path) {
        Ok(meta) => {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(file = %private_path.display(), "private key file is readable by group or others; fixing to 0600");
                fs::set_permissions(&private_path, fs::Permissions::from_mode(0o600))
                    .map_err(io(&private_path))?;
            }
            let bytes = Zeroizing::new(read_pem_file(&private_path, PRIVATE_PEM)?);
            (StaticSecret::from(*bytes), false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = StaticSecret::random_from_rng(rand::rngs::OsRng);
            let pem = Zeroizing::new(encode_pem(PRIVATE_PEM, &secret.to_bytes()));
            write_file_atomic(&private_path, pem.as_bytes()).map_err(io(&private_path))?;
            tracing::info!(file = %private_path.display(), "generated a new {name} key");
            (secret, true)
        }
        Err(e) => return Err(io(&private_path)(e)),
    };
    let public = PublicKey::from(&secret).to_bytes();
    let public_ok = matches!(read_pem_file(&public_path, PUBLIC_PEM), Ok(k) if k == public);
    if !public_ok {
        if !generated {
            tracing::warn!(file = %public_path.display(), "public key file missing or not matching the private key; rewriting it");
        }
        write_file_atomic(&public_path, encode_pem(PUBLIC_PEM, &public).as_bytes())
            .map_err(io(&public_path))?;
    }
    Ok((secret, generated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_and_errors() {
        let key = [9u8; 32];
        let pem = encode_pem(PUBLIC_PEM, &key);
        assert_eq!(decode_pem(PUBLIC_PEM, &pem), Ok(key));
        assert_eq!(decode_pem(PUBLIC_PEM, &format!("\n{pem}\n\n")), Ok(key));
        assert!(matches!(
            decode_pem(PRIVATE_PEM, &pem),
            Err(PemError::WrongType(..))
        ));
        assert_eq!(decode_pem(PUBLIC_PEM, "hello"), Err(PemError::NoBlock));
        assert_eq!(
            decode_pem(PUBLIC_PEM, &format!("{pem}junk")),
            Err(PemError::TrailingData)
        );
        let short = encode_pem(PUBLIC_PEM, &[1; 32])
            .replace(&STANDARD.encode([1u8; 32]), &STANDARD.encode([1u8; 31]));
        assert_eq!(decode_pem(PUBLIC_PEM, &short), Err(PemError::Length(31)));
        let cut = &pem[..pem.len() - 10];
        assert_eq!(decode_pem(PUBLIC_PEM, cut), Err(PemError::Unterminated));
        let bad = pem.replace(&STANDARD.encode(key), "!!!!");
        assert_eq!(decode_pem(PUBLIC_PEM, &bad), Err(PemError::Base64));
    }

    #[test]
    fn keys_are_generated_once_then_loaded() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("alice@example.org");
        let (first, generated) = AccountKeys::load_or_generate(&dir).unwrap();
        assert!(generated);
        for f in [
            "link.private.pem",
            "link.public.pem",
            "identity.private.pem",
            "identity.public.pem",
        ] {
            let mode = fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_ne!(first.link_public(), first.identity_public());
        let public = read_pem_file(&dir.join("identity.public.pem"), PUBLIC_PEM).unwrap();
        assert_eq!(public, first.identity_public());

        let (second, generated) = AccountKeys::load_or_generate(&dir).unwrap();
        assert!(!generated);
        assert_eq!(second.link_public(), first.link_public());
        assert_eq!(second.identity_public(), first.identity_public());
    }

    #[test]
    fn corrupt_private_key_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a@b");
        AccountKeys::load_or_generate(&dir).unwrap();
        fs::write(dir.join("link.private.pem"), b"not a key").unwrap();
        let err = AccountKeys::load_or_generate(&dir).unwrap_err().to_string();
        assert!(
            err.contains("link.private.pem") && err.contains("corrupt"),
            "{err}"
        );
    }

    #[test]
    fn loose_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("open");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(ensure_private_dir(&dir).is_err());
    }
}
