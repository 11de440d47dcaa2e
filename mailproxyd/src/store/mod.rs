//! The encrypted, crash-safe per-account store (redb + XChaCha20-Poly1305).
//!
//! One [`Store`] per account lives in the account directory as
//! `store.redb`, with its key in `storage.key` (0600) or derived from a
//! passphrase (see [`key`]). It holds:
//! - message contents ("blobs", sealed in chunks, shared by the queue entries
//!   of one submission and referenced by inbox entries),
//! - the send queue ([`QueueEntry`], one per message and recipient),
//! - the inbox / POP3 maildrop ([`InboxEntry`]),
//! - generic sealed key-value tables ([`KvTable`]): partial incoming
//!   messages, dedup records, SURB state, and "meta" for anything else.
//!
//! Every value is sealed with its table and key as associated data; keys are
//! either plain integers or blind indexes. Writes go through one writer
//! thread that groups concurrent requests into a single durable transaction
//! (group commit); every call returns only after its commit is durable.
//!
//! After a storage failure (disk full, I/O error) the writer reopens the
//! database by itself and reports the store's [`Health`] (see the writer
//! module and [`health`]); [`faults`] injects such failures in tests.

mod blob;
pub(crate) mod codec;
mod directory;
pub mod faults;
pub mod health;
mod inbox;
pub mod key;
mod kv;
mod mailbox;
mod queue;
mod seal;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use redb::{ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition};

pub use blob::{MessageRef, CHUNK_SIZE};
pub use codec::CodecError;
pub use directory::{verify_password_hash, AccountInfo, Directory};
pub use faults::{Fault, FaultBackend, Faults, Op};
pub use health::Health;
pub use inbox::InboxEntry;
pub use key::{KdfParams, KeySource};
pub use kv::{KvPair, KvTable};
pub use mailbox::{
    MailMsg, MailboxInfo, Settled, Special, BOX_INBOX, BOX_SENT, BOX_TRASH, KW_BOUNCED,
    KW_DELIVERED, KW_QUEUED,
};
pub use queue::{BlockState, NewQueueEntry, QueueEntry};
pub use seal::{OpenError, StorageKey};

use seal::Sealer;
use writer::{DbSlot, Opener, Writer};

/// redb page cache per store.
const CACHE_BYTES: usize = 16 << 20;

/// File name of the database inside the account directory.
pub const DB_FILE: &str = "store.redb";

pub(crate) const BLOB_HEAD: TableDefinition<u64, &[u8]> = TableDefinition::new("blob_head");
pub(crate) const BLOB_CHUNK: TableDefinition<(u64, u32), &[u8]> =
    TableDefinition::new("blob_chunk");
pub(crate) const QUEUE: TableDefinition<u64, &[u8]> = TableDefinition::new("queue");
pub(crate) const INBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("inbox");
/// Plain counters (no content): the id high-water mark.
pub(crate) const IDS: TableDefinition<&str, u64> = TableDefinition::new("ids");
/// IMAP mailboxes the user created (see [`mailbox`]).
pub(crate) const IMAP_BOXES: TableDefinition<u64, &[u8]> = TableDefinition::new("imap_boxes");
/// Messages of the IMAP mailboxes other than INBOX, by (mailbox, uid).
pub(crate) const IMAP_MSGS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("imap_msgs");
/// IMAP flags of INBOX messages, by inbox entry id.
pub(crate) const IMAP_FLAGS: TableDefinition<u64, &[u8]> = TableDefinition::new("imap_flags");

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(#[from] redb::Error),
    /// A record failed authentication.
    #[error(transparent)]
    Sealed(#[from] OpenError),
    /// A record authenticated but did not decode (a bug or a format change).
    #[error("malformed record in table {0}")]
    Malformed(&'static str),
    /// The storage key does not open this store.
    #[error("the storage key does not match this store (wrong key or passphrase)")]
    WrongKey,
    /// A key or salt file problem.
    #[error("storage key: {0}")]
    Key(String),
    /// A record that should exist does not.
    #[error("no such record: {0}")]
    NotFound(&'static str),
    /// A commit failed (every request of its group gets this); the store
    /// reopens its database by itself.
    #[error("commit failed: {0}")]
    Commit(#[source] Arc<redb::Error>),
    /// The store is failing and reopening its database after this storage
    /// error; retry once [`Store::health`] is `Ok` again.
    #[error("store unavailable after a storage error: {0}")]
    Unavailable(#[source] Arc<redb::Error>),
    /// The writer thread is gone.
    #[error("store is closed")]
    Closed,
}

impl StoreError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Database(redb::Error::from(e))
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

pub(crate) struct Inner {
    pub(crate) sealer: Arc<Sealer>,
    pub(crate) writer: Writer,
    /// The current database (swapped by the writer when it reopens).
    slot: Arc<DbSlot>,
    health: tokio::sync::watch::Receiver<Health>,
    next_id: Arc<AtomicU64>,
    /// Queue entries added since the engine last asked.
    pub(crate) queued: Arc<QueuedIds>,
    dir: PathBuf,
    /// One counter per watched mailbox, bumped after every durable change to
    /// it (IMAP IDLE wakes on it).
    changes: std::sync::Mutex<std::collections::HashMap<u64, tokio::sync::watch::Sender<u64>>>,
}

/// Ids of queue entries whose enqueue became durable, for the engine's
/// schedule (so it never rescans the queue to find new mail). Bounded: past
/// [`QueuedIds::MAX`] unclaimed ids it only remembers that it overflowed,
/// and the engine rescans the queue once.
#[derive(Default)]
pub(crate) struct QueuedIds(std::sync::Mutex<(Vec<u64>, bool)>);

impl QueuedIds {
    const MAX: usize = 1 << 16;

    pub(crate) fn added(&self, ids: impl IntoIterator<Item = u64>) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if g.1 {
            return;
        }
        g.0.extend(ids);
        if g.0.len() > Self::MAX {
            g.0 = Vec::new();
            g.1 = true;
        }
    }

    fn take(&self) -> QueueAdded {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (ids, overflow) = std::mem::take(&mut *g);
        if overflow {
            QueueAdded::Overflow
        } else {
            QueueAdded::Ids(ids)
        }
    }
}

/// What [`Store::take_queue_added`] returns.
#[derive(Debug, PartialEq, Eq)]
pub enum QueueAdded {
    /// These entries were added (durably), oldest first.
    Ids(Vec<u64>),
    /// Too many to remember: rescan the queue.
    Overflow,
}

/// Handle to one account's store. Cheap to clone; all clones share one
/// database and one writer thread.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .finish()
    }
}

const KEYCHECK: &[u8] = b"mailproxy storage key check";

impl Store {
    /// Opens (creating if needed) the store in the account directory `dir`.
    pub fn open(dir: &Path, source: &KeySource) -> Result<Store, StoreError> {
        Self::open_with_faults(dir, source, Faults::new())
    }

    /// Like [`Store::open`], with the database file's writes, syncs and
    /// resizes failing as `faults` arms them (also after reopens).
    pub fn open_with_faults(
        dir: &Path,
        source: &KeySource,
        faults: Faults,
    ) -> Result<Store, StoreError> {
        let db_path = dir.join(DB_FILE);
        let fresh = !db_path.exists();
        let key = key::obtain_key(dir, source, fresh)?;
        let sealer = Arc::new(Sealer::new(&key));
        drop(key);
        let opener = Opener {
            path: db_path.clone(),
            faults,
        };
        let db = opener.open()?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&db_path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| StoreError::io(&db_path, e))?;
        }
        let db = Arc::new(db);
        // Create the tables so readers never meet a missing table.
        let tx = db.begin_write()?;
        {
            tx.open_table(BLOB_HEAD)?;
            tx.open_table(BLOB_CHUNK)?;
            tx.open_table(QUEUE)?;
            tx.open_table(INBOX)?;
            tx.open_table(IDS)?;
            tx.open_table(IMAP_BOXES)?;
            tx.open_table(IMAP_MSGS)?;
            tx.open_table(IMAP_FLAGS)?;
            for t in KvTable::ALL {
                tx.open_table(t.definition())?;
            }
        }
        tx.commit()?;
        let marks = writer::read_marks(&db)?;
        let next = {
            let rx = db.begin_read()?;
            let mut max = 0u64;
            for def in [BLOB_HEAD, QUEUE, INBOX] {
                let t = rx.open_table(def)?;
                let last = t.last()?.map(|(k, _)| k.value());
                if let Some(k) = last {
                    max = max.max(k);
                }
            }
            (max + 1).max(marks.next)
        };
        let next_id = Arc::new(AtomicU64::new(next));
        let (writer, slot, health) = Writer::spawn(db, opener, next_id.clone(), marks.commit);
        let store = Store {
            inner: Arc::new(Inner {
                sealer,
                writer,
                slot,
                health,
                next_id,
                queued: Arc::default(),
                dir: dir.to_owned(),
                changes: Default::default(),
            }),
        };
        match store.kv_get(KvTable::Meta, b"keycheck") {
            Ok(Some(v)) if v == KEYCHECK => {}
            Ok(Some(_)) => return Err(StoreError::WrongKey),
            Ok(None) => {
                // A store with data but no key check was not made by us.
                if !store.is_empty()? {
                    return Err(StoreError::WrongKey);
                }
                store.kv_put(KvTable::Meta, b"keycheck", KEYCHECK)?;
            }
            Err(StoreError::Sealed(_)) => return Err(StoreError::WrongKey),
            Err(e) => return Err(e),
        }
        Ok(store)
    }

    /// The account directory this store lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn is_empty(&self) -> Result<bool, StoreError> {
        self.read(|rx| {
            for def in [BLOB_HEAD, QUEUE, INBOX] {
                if rx.open_table(def)?.first()?.is_some() {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }

    /// Runs `f` in a read transaction of the current database. A storage
    /// failure met there makes the writer check (and reopen) the database.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let db = self.inner.slot.get()?;
        let r = db
            .begin_read()
            .map_err(StoreError::from)
            .and_then(|rx| f(&rx));
        if let Err(e) = &r {
            // DatabaseClosed means a reopen already replaced this database.
            if e.needs_reopen() && !matches!(e, StoreError::Database(redb::Error::DatabaseClosed)) {
                self.inner.writer.check();
            }
        }
        r
    }

    /// The queue entries added since the last call (each id once; an id
    /// may also have left the queue again since).
    pub fn take_queue_added(&self) -> QueueAdded {
        self.inner.queued.take()
    }

    pub(crate) fn alloc_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
