//! A node's Sphinx mix keys, one X25519 key per epoch (§3): generated for
//! epochs e, e+1, e+2, kept on disk so that a restarted node can still
//! unwrap the packets in flight, and chosen for unwrap by the 2019 rule:
//! the current epoch's key, plus the previous one early in an epoch or the
//! next one late in it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use katzenpost::epoch::EpochTime;
use katzenpost::geometry::MIX_KEYS_PER_DESCRIPTOR;
use rand::{CryptoRng, RngCore};
use x25519_dalek::{PublicKey, StaticSecret};

/// Errors of the keyring.
#[derive(Debug, thiserror::Error)]
pub enum MixKeyError {
    #[error("mix key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mix key file {path} is not a 32-byte key")]
    Corrupt { path: PathBuf },
}

/// The real servers' grace window around epoch boundaries.
pub const KEY_GRACE: Duration = Duration::from_secs(120);

/// A node's mix keys by epoch.
pub struct MixKeyring {
    dir: PathBuf,
    keys: BTreeMap<u64, StaticSecret>,
}

impl std::fmt::Debug for MixKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MixKeyring")
            .field("dir", &self.dir)
            .field("epochs", &self.keys.keys())
            .finish()
    }
}

impl MixKeyring {
    /// Loads every `mixkey-<epoch>.private` file in `dir` (created if absent).
    pub fn open(dir: &Path) -> Result<Self, MixKeyError> {
        let io = |source| MixKeyError::Io {
            path: dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        let mut keys = BTreeMap::new();
        for e in fs::read_dir(dir).map_err(io)? {
            let e = e.map_err(io)?;
            let name = e.file_name();
            let Some(epoch) = name
                .to_str()
                .and_then(|s| s.strip_prefix("mixkey-"))
                .and_then(|s| s.strip_suffix(".private"))
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            let path = e.path();
            let bytes = fs::read(&path).map_err(|source| MixKeyError::Io {
                path: path.clone(),
                source,
            })?;
            let raw: [u8; 32] = bytes
                .try_into()
                .map_err(|_| MixKeyError::Corrupt { path: path.clone() })?;
            keys.insert(epoch, StaticSecret::from(raw));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            keys,
        })
    }

    /// Makes sure keys exist for `epoch` and the two after it; drops keys
    /// older than `epoch - 1`.
    pub fn ensure<R: RngCore + CryptoRng>(
        &mut self,
        rng: &mut R,
        epoch: u64,
    ) -> Result<(), MixKeyError> {
        for e in epoch..epoch + MIX_KEYS_PER_DESCRIPTOR as u64 {
            if self.keys.contains_key(&e) {
                continue;
            }
            let mut raw = [0u8; 32];
            rng.fill_bytes(&mut raw);
            let path = self.dir.join(format!("mixkey-{e}.private"));
            write_private(&path, &raw)?;
            self.keys.insert(e, StaticSecret::from(raw));
        }
        let keep = epoch.saturating_sub(1);
        let old: Vec<u64> = self.keys.range(..keep).map(|(e, _)| *e).collect();
        for e in old {
            self.keys.remove(&e);
            let _ = fs::remove_file(self.dir.join(format!("mixkey-{e}.private")));
        }
        Ok(())
    }

    /// The public keys to publish in the descriptor for `epoch` (e, e+1, e+2).
    pub fn public_keys(&self, epoch: u64) -> BTreeMap<u64, [u8; 32]> {
        self.keys
            .range(epoch..epoch + MIX_KEYS_PER_DESCRIPTOR as u64)
            .map(|(e, k)| (*e, PublicKey::from(k).to_bytes()))
            .collect()
    }

    /// The keys to try for a packet arriving at `now`, current first. The
    /// grace window is the real servers' 2 minutes, or a quarter of a short
    /// test period.
    pub fn unwrap_candidates(&self, now: EpochTime, period: Duration) -> Vec<(u64, &StaticSecret)> {
        let grace = KEY_GRACE.min(period / 4);
        let mut out = Vec::with_capacity(2);
        if let Some(k) = self.keys.get(&now.epoch) {
            out.push((now.epoch, k));
        }
        if now.elapsed < grace && now.epoch > 0 {
            if let Some(k) = self.keys.get(&(now.epoch - 1)) {
                out.push((now.epoch - 1, k));
            }
        }
        if now.till < grace {
            if let Some(k) = self.keys.get(&(now.epoch + 1)) {
                out.push((now.epoch + 1, k));
            }
        }
        out
    }
}

fn write_private(path: &Path, raw: &[u8; 32]) -> Result<(), MixKeyError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| MixKeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(raw).map_err(io)?;
    f.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;

    fn at(epoch: u64, elapsed: u64, period: u64) -> EpochTime {
        EpochTime {
            epoch,
            elapsed: Duration::from_secs(elapsed),
            till: Duration::from_secs(period - elapsed),
        }
    }

    #[test]
    fn keys_for_three_epochs_persist_and_rotate() {
        let d = tempfile::tempdir().unwrap();
        let mut k = MixKeyring::open(d.path()).unwrap();
        k.ensure(&mut OsRng, 10).unwrap();
        let published = k.public_keys(10);
        assert_eq!(
            published.keys().copied().collect::<Vec<_>>(),
            vec![10, 11, 12]
        );
        let again = MixKeyring::open(d.path()).unwrap();
        assert_eq!(again.public_keys(10), published);
        k.ensure(&mut OsRng, 12).unwrap();
        assert_eq!(
            k.public_keys(11).keys().copied().collect::<Vec<_>>(),
            vec![11, 12, 13]
        );
        // Epoch 10 is gone (older than 12 - 1), from memory and disk.
        assert!(!k.public_keys(10).contains_key(&10));
        assert!(!d.path().join("mixkey-10.private").exists());
        assert_eq!(k.public_keys(12)[&12], published[&12]);
    }

    #[test]
    fn grace_windows_pick_neighbouring_keys() {
        let d = tempfile::tempdir().unwrap();
        let mut k = MixKeyring::open(d.path()).unwrap();
        k.ensure(&mut OsRng, 4).unwrap();
        k.ensure(&mut OsRng, 5).unwrap();
        let p = Duration::from_secs(10_800);
        let epochs = |t| {
            k.unwrap_candidates(t, p)
                .iter()
                .map(|(e, _)| *e)
                .collect::<Vec<_>>()
        };
        assert_eq!(epochs(at(5, 60, 10_800)), vec![5, 4]);
        assert_eq!(epochs(at(5, 5_000, 10_800)), vec![5]);
        assert_eq!(epochs(at(5, 10_750, 10_800)), vec![5, 6]);
        // A 60 s test period shrinks the window to 15 s.
        let short = Duration::from_secs(60);
        assert_eq!(k.unwrap_candidates(at(5, 20, 60), short).len(), 1);
        assert_eq!(k.unwrap_candidates(at(5, 10, 60), short).len(), 2);
    }

    #[test]
    fn a_truncated_key_file_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("mixkey-3.private"), [1u8; 31]).unwrap();
        assert!(matches!(
            MixKeyring::open(d.path()),
            Err(MixKeyError::Corrupt { .. })
        ));
    }
}
