//! A provider's user database: user name (case-mapped) to link key and
//! optional identity key, persisted as a JSON file written atomically.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};

/// Errors of the user database.
#[derive(Debug, thiserror::Error)]
pub enum UserDbError {
    #[error("user database {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("user database {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("invalid user name {0:?}")]
    BadName(String),
    #[error("no such user {0:?}")]
    NoSuchUser(String),
}

/// One registered user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub link_key: [u8; 32],
    pub identity_key: Option<[u8; 32]>,
}

#[derive(Serialize, Deserialize)]
struct StoredUser {
    link_key: String,
    identity_key: Option<String>,
}

/// Case-maps a user name the way the provider does (PRECIS
/// UsernameCaseMapped, restricted here to what user names in this network
/// use): lower-cased, 1 to 64 bytes, no NUL, whitespace, `@` or control characters.
pub fn normalize_user(name: &str) -> Result<String, UserDbError> {
    let lower = name.to_lowercase();
    let ok = !lower.is_empty()
        && lower.len() <= 64
        && lower
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '@' && c != '\0');
    if ok {
        Ok(lower)
    } else {
        Err(UserDbError::BadName(name.to_string()))
    }
}

/// The user database.
#[derive(Debug)]
pub struct UserDb {
    path: PathBuf,
    users: BTreeMap<String, User>,
}

fn decode_key(path: &Path, s: &str) -> Result<[u8; 32], UserDbError> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| UserDbError::Corrupt {
            path: path.to_path_buf(),
            reason: "bad key".into(),
        })
}

impl UserDb {
    /// Opens (or creates, empty) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, UserDbError> {
        let mut users = BTreeMap::new();
        match fs::read(path) {
            Ok(bytes) => {
                let stored: BTreeMap<String, StoredUser> =
                    serde_json::from_slice(&bytes).map_err(|e| UserDbError::Corrupt {
                        path: path.to_path_buf(),
                        reason: e.to_string(),
                    })?;
                for (name, u) in stored {
                    let identity_key = u
                        .identity_key
                        .as_deref()
                        .map(|k| decode_key(path, k))
                        .transpose()?;
                    users.insert(
                        name,
                        User {
                            link_key: decode_key(path, &u.link_key)?,
                            identity_key,
                        },
                    );
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(UserDbError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            users,
        })
    }

    fn save(&self) -> Result<(), UserDbError> {
        let b64 = |k: &[u8; 32]| base64::engine::general_purpose::STANDARD.encode(k);
        let stored: BTreeMap<&String, StoredUser> = self
            .users
            .iter()
            .map(|(n, u)| {
                (
                    n,
                    StoredUser {
                        link_key: b64(&u.link_key),
                        identity_key: u.identity_key.as_ref().map(b64),
                    },
                )
            })
            .collect();
        let json =
            serde_json::to_vec_pretty(&stored).expect("serialising a map of strings cannot fail");
        let tmp = self.path.with_extension("tmp");
        let io = |source| UserDbError::Io {
            path: self.path.clone(),
            source,
        };
        let mut f = fs::File::create(&tmp).map_err(io)?;
        f.write_all(&json).map_err(io)?;
        f.sync_all().map_err(io)?;
        fs::rename(&tmp, &self.path).map_err(io)?;
        Ok(())
    }

    /// Adds or updates a user's link key.
    pub fn set_link_key(&mut self, name: &str, link_key: [u8; 32]) -> Result<(), UserDbError> {
        let name = normalize_user(name)?;
        let entry = self.users.entry(name).or_insert(User {
            link_key,
            identity_key: None,
        });
        entry.link_key = link_key;
        self.save()
    }

    /// Sets (or with `None` clears) a user's identity key.
    pub fn set_identity_key(
        &mut self,
        name: &str,
        key: Option<[u8; 32]>,
    ) -> Result<(), UserDbError> {
        let name = normalize_user(name)?;
        let u = self
            .users
            .get_mut(&name)
            .ok_or(UserDbError::NoSuchUser(name.clone()))?;
        u.identity_key = key;
        self.save()
    }

    /// Removes a user.
    pub fn remove(&mut self, name: &str) -> Result<(), UserDbError> {
        let name = normalize_user(name)?;
        self.users
            .remove(&name)
            .ok_or(UserDbError::NoSuchUser(name))?;
        self.save()
    }

    /// Looks a user up (the name is case-mapped first).
    pub fn get(&self, name: &str) -> Option<&User> {
        normalize_user(name).ok().and_then(|n| self.users.get(&n))
    }

    /// Whether `name` is registered with exactly this link key.
    pub fn authenticates(&self, name: &str, link_key: &[u8; 32]) -> bool {
        self.get(name).is_some_and(|u| &u.link_key == link_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_persist_and_are_case_mapped() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("users.json");
        let mut db = UserDb::open(&p).unwrap();
        db.set_link_key("Alice", [1; 32]).unwrap();
        db.set_identity_key("ALICE", Some([2; 32])).unwrap();
        assert!(matches!(
            db.set_identity_key("bob", Some([3; 32])),
            Err(UserDbError::NoSuchUser(_))
        ));
        let db = UserDb::open(&p).unwrap();
        assert_eq!(
            db.get("alice"),
            Some(&User {
                link_key: [1; 32],
                identity_key: Some([2; 32])
            })
        );
        assert!(db.authenticates("aLiCe", &[1; 32]));
        assert!(!db.authenticates("alice", &[9; 32]));
    }

    #[test]
    fn bad_names_and_files_are_errors() {
        assert!(normalize_user("").is_err());
        assert!(normalize_user("a b").is_err());
        assert!(normalize_user(&"x".repeat(65)).is_err());
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("users.json");
        fs::write(&p, b"{not json").unwrap();
        assert!(matches!(UserDb::open(&p), Err(UserDbError::Corrupt { .. })));
    }

    #[test]
    fn removing_forgets() {
        let d = tempfile::tempdir().unwrap();
        let mut db = UserDb::open(&d.path().join("u.json")).unwrap();
        db.set_link_key("carol", [4; 32]).unwrap();
        db.remove("carol").unwrap();
        assert!(db.get("carol").is_none());
        assert!(db.remove("carol").is_err());
    }
}
