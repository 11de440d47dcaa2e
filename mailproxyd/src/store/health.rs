//! Whether the store can write, and how store errors are classified.
//!
//! The writer thread publishes [`Health`] on a watch channel: `Failing` from
//! the first storage failure (a failed commit, or `PreviousIo` met by a
//! reader), with the OS error text and whether the disk is full; `Ok` again
//! after the next successful durable commit. While failing, the writer
//! reopens the database and probes it with a tiny durable write at every
//! backoff step, so health returns to `Ok` by itself once the fault is gone
//! (space freed), without any client write.
//!
//! [`StoreError::is_storage_full`] and [`StoreError::is_transient`] let
//! callers choose their answer (SMTP 452, leave a block at the provider)
//! without matching on redb's error types.

use std::io;

use super::{Store, StoreError};

/// The store's ability to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// The last commit succeeded.
    Ok,
    /// Writes fail; the store is reopening and probing by itself.
    Failing {
        /// The last storage error, with the OS error text
        /// (e.g. "No space left on device (os error 28)").
        error: String,
        /// The error says the storage is full (ENOSPC, EDQUOT, EFBIG).
        full: bool,
        /// Unix time of the first failure of this episode.
        since: u64,
    },
}

impl Store {
    /// The store's current health.
    pub fn health(&self) -> Health {
        self.inner.health.borrow().clone()
    }

    /// A receiver that sees every change of health.
    pub fn health_watch(&self) -> tokio::sync::watch::Receiver<Health> {
        self.inner.health.clone()
    }

    /// Resolves once the store is healthy (at once if it is).
    pub async fn wait_healthy(&self) {
        let mut rx = self.health_watch();
        // The sender lives as long as the store; if it is gone, so is the wait.
        let _ = rx.wait_for(|h| *h == Health::Ok).await;
    }
}

/// The OS error inside a redb error, if any.
pub(crate) fn redb_io(e: &redb::Error) -> Option<&io::Error> {
    match e {
        redb::Error::Io(e) => Some(e),
        _ => None,
    }
}

/// Whether `e` says the storage is full.
pub(crate) fn io_is_full(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG)
    )
}

/// Whether a redb error means the database must be closed and reopened
/// (its file failed, or it was closed under us by a reopen).
pub(crate) fn redb_needs_reopen(e: &redb::Error) -> bool {
    matches!(
        e,
        redb::Error::Io(_)
            | redb::Error::Backend(_)
            | redb::Error::PreviousIo
            | redb::Error::DatabaseClosed
            | redb::Error::LockPoisoned(_)
    )
}

impl StoreError {
    /// The OS error at the root of this error, if any.
    pub fn os_error(&self) -> Option<&io::Error> {
        match self {
            StoreError::Io { source, .. } => Some(source),
            StoreError::Database(e) => redb_io(e),
            StoreError::Commit(e) | StoreError::Unavailable(e) => redb_io(e),
            _ => None,
        }
    }

    /// The storage is full: ENOSPC, EDQUOT or EFBIG anywhere in the chain.
    pub fn is_storage_full(&self) -> bool {
        self.os_error().is_some_and(io_is_full)
    }

    /// A failure that a retry after the store recovered can cure: any I/O,
    /// commit or while-reopening failure. Not bad records, a wrong key, a
    /// missing record, or a store that was shut down.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Io { .. } | StoreError::Commit(_) | StoreError::Unavailable(_) => true,
            StoreError::Database(e) => {
                redb_needs_reopen(e) || matches!(e, redb::Error::DatabaseAlreadyOpen)
            }
            StoreError::Sealed(_)
            | StoreError::Malformed(_)
            | StoreError::WrongKey
            | StoreError::Key(_)
            | StoreError::NotFound(_)
            | StoreError::Closed => false,
        }
    }

    /// Whether this error says the database must be reopened.
    pub(crate) fn needs_reopen(&self) -> bool {
        match self {
            StoreError::Database(e) => redb_needs_reopen(e),
            StoreError::Commit(e) => redb_needs_reopen(e),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn os(code: i32) -> redb::Error {
        redb::Error::Io(io::Error::from_raw_os_error(code))
    }

    #[test]
    fn full_is_found_in_every_variant_that_carries_an_os_error() {
        for code in [libc::ENOSPC, libc::EDQUOT, libc::EFBIG] {
            assert!(StoreError::Database(os(code)).is_storage_full());
            assert!(StoreError::Commit(Arc::new(os(code))).is_storage_full());
            assert!(StoreError::Unavailable(Arc::new(os(code))).is_storage_full());
            assert!(StoreError::Io {
                path: "x".into(),
                source: io::Error::from_raw_os_error(code)
            }
            .is_storage_full());
        }
        assert!(!StoreError::Commit(Arc::new(os(libc::EIO))).is_storage_full());
        assert!(!StoreError::Database(redb::Error::PreviousIo).is_storage_full());
        assert!(!StoreError::NotFound("x").is_storage_full());
    }

    #[test]
    fn transient_is_io_and_recovery_not_content() {
        assert!(StoreError::Commit(Arc::new(os(libc::EIO))).is_transient());
        assert!(StoreError::Unavailable(Arc::new(os(libc::ENOSPC))).is_transient());
        assert!(StoreError::Database(redb::Error::PreviousIo).is_transient());
        assert!(StoreError::Database(redb::Error::DatabaseClosed).is_transient());
        assert!(!StoreError::Database(redb::Error::Corrupted("x".into())).is_transient());
        assert!(!StoreError::Malformed("t").is_transient());
        assert!(!StoreError::WrongKey.is_transient());
        assert!(!StoreError::NotFound("x").is_transient());
        assert!(!StoreError::Closed.is_transient());
    }
}
