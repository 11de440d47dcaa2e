//! The single writer thread: group commit, and recovery from storage faults.
//!
//! Callers prepare (and seal) their records first, then hand a small closure
//! to the writer. The writer takes every request waiting in its channel, runs
//! them all in one write transaction and commits once (durably), then
//! answers each caller. If one request fails on its own (a missing record),
//! the group is rolled back and each request is retried in a transaction of
//! its own, so one bad request never fails the others.
//!
//! A storage failure (a failed write, sync or set_len; redb then answers
//! `PreviousIo` to everything) makes the writer drop the poisoned
//! [`Database`], publish [`Health::Failing`] and reopen the file over a fresh
//! backend, at once and then with a backoff of 20 ms doubling to 1 s, each
//! time followed by a tiny durable probe commit; the first probe that
//! commits makes the store healthy again. Readers get the current database
//! from the [`DbSlot`], and an `Unavailable` error while there is none.
//! Requests that arrive while the store is failing are answered with an
//! error at once.
//!
//! Every commit also records a sequence number. When a commit fails, its
//! outcome is unknown (its pages may all have reached the file before the
//! final sync failed); its callers wait until the reopened database tells
//! whether that sequence number landed, and get `Ok` or `Err` accordingly,
//! so what they are told matches what the store holds. If the database
//! cannot be reopened within [`PENDING_MAX`] (every sync keeps failing),
//! they get an error; should that commit turn out to have landed after all,
//! it is kept and an error is logged (a retry may then duplicate it).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, RwLock};
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, WriteTransaction};
use tokio::sync::watch;

use super::faults::{FaultBackend, Faults};
use super::health::{io_is_full, redb_io, Health};
use super::{StoreError, CACHE_BYTES, IDS};

/// A write to run inside a transaction; it may be run more than once.
pub(crate) type WriteFn = Box<dyn FnMut(&WriteTransaction) -> Result<(), StoreError> + Send>;

/// A storage failure, shared by every request it fails.
pub(crate) type Cause = Arc<redb::Error>;

/// Called once with a request's outcome (on the writer thread: it must not
/// block).
pub(crate) struct Done(Box<dyn FnOnce(Result<(), StoreError>) + Send>);

impl Done {
    fn send(self, r: Result<(), StoreError>) {
        (self.0)(r)
    }
}

struct Job {
    run: WriteFn,
    bytes: usize,
    done: Done,
}

enum Msg {
    Job(Job),
    /// A reader met a storage error: probe the database.
    Check,
}

/// Most requests in one group.
const MAX_GROUP: usize = 512;
/// Most payload bytes in one group.
const MAX_GROUP_BYTES: usize = 64 << 20;
/// First delay between reopen attempts (the very first one is immediate).
const BACKOFF_MIN: Duration = Duration::from_millis(20);
/// Longest delay between reopen attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Longest wait of the callers of a failed commit for its outcome.
pub(crate) const PENDING_MAX: Duration = Duration::from_secs(2);

/// IDS key of the id high-water mark.
const NEXT_KEY: &str = "next";
/// IDS key of the sequence number of the last commit.
const COMMIT_KEY: &str = "commit";

/// Opens the database file over a [`FaultBackend`].
pub(crate) struct Opener {
    pub(crate) path: PathBuf,
    pub(crate) faults: Faults,
}

impl Opener {
    pub(crate) fn open(&self) -> Result<Database, StoreError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)
            .map_err(|e| StoreError::io(&self.path, e))?;
        let backend = FaultBackend::new(file, self.faults.clone())?;
        // A bounded page cache keeps memory flat however large the store grows.
        Ok(Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create_with_backend(backend)?)
    }
}

/// The database readers use; the writer swaps it when it reopens.
pub(crate) struct DbSlot(RwLock<Result<Arc<Database>, Cause>>);

impl DbSlot {
    fn new(db: Arc<Database>) -> Self {
        DbSlot(RwLock::new(Ok(db)))
    }

    /// The current database, or why there is none.
    pub(crate) fn get(&self) -> Result<Arc<Database>, StoreError> {
        match &*self.0.read().unwrap_or_else(|p| p.into_inner()) {
            Ok(db) => Ok(db.clone()),
            Err(cause) => Err(StoreError::Unavailable(cause.clone())),
        }
    }

    fn set(&self, v: Result<Arc<Database>, Cause>) {
        let old = std::mem::replace(&mut *self.0.write().unwrap_or_else(|p| p.into_inner()), v);
        // Close the old database outside the lock.
        drop(old);
    }
}

/// Marks read back from a database.
pub(crate) struct Marks {
    pub(crate) next: u64,
    pub(crate) commit: u64,
}

pub(crate) fn read_marks(db: &Database) -> Result<Marks, StoreError> {
    let rx = db.begin_read()?;
    let t = rx.open_table(IDS)?;
    let get = |k| -> Result<u64, StoreError> { Ok(t.get(k)?.map(|v| v.value()).unwrap_or(0)) };
    Ok(Marks {
        next: get(NEXT_KEY)?,
        commit: get(COMMIT_KEY)?,
    })
}

/// Records the id high-water mark (so ids are never reused after restarts)
/// and the commit's sequence number.
fn save_marks(tx: &WriteTransaction, next_id: &AtomicU64, seq: u64) -> Result<(), StoreError> {
    let mut t = tx.open_table(IDS)?;
    t.insert(NEXT_KEY, next_id.load(Ordering::SeqCst))?;
    t.insert(COMMIT_KEY, seq)?;
    Ok(())
}

/// The storage failure behind `e`.
fn cause(e: StoreError) -> Cause {
    match e {
        StoreError::Database(e) => Arc::new(e),
        StoreError::Commit(c) | StoreError::Unavailable(c) => c,
        StoreError::Io { source, .. } => Arc::new(redb::Error::Io(source)),
        other => Arc::new(redb::Error::Corrupted(other.to_string())),
    }
}

pub(crate) struct Writer {
    tx: Option<mpsc::Sender<Msg>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Writer {
    /// Closes the channel and waits for the thread, so that the database is
    /// closed (and may be reopened) once the last store handle is gone.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Writer {
    /// Starts the writer over the open `db`; returns it with the slot
    /// readers use and the health receiver.
    pub(crate) fn spawn(
        db: Arc<Database>,
        opener: Opener,
        next_id: Arc<AtomicU64>,
        commit_seq: u64,
    ) -> (Writer, Arc<DbSlot>, watch::Receiver<Health>) {
        let (tx, rx) = mpsc::channel::<Msg>();
        let slot = Arc::new(DbSlot::new(db.clone()));
        let (health_tx, health_rx) = watch::channel(Health::Ok);
        let worker = Worker {
            slot: slot.clone(),
            opener,
            db: Some(db),
            next_id,
            seq: commit_seq,
            health: health_tx,
            failure: None,
            pending: None,
            unresolved: None,
        };
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || worker.run(rx))
            .expect("spawn store writer thread");
        let w = Writer {
            tx: Some(tx),
            thread: Some(thread),
        };
        (w, slot, health_rx)
    }

    /// Submits a write; `done` is called with its outcome once it is durable
    /// (or failed), on the writer thread.
    pub(crate) fn submit_with(
        &self,
        bytes: usize,
        run: WriteFn,
        done: impl FnOnce(Result<(), StoreError>) + Send + 'static,
    ) {
        let job = Job {
            run,
            bytes,
            done: Done(Box::new(done)),
        };
        let Some(tx) = self.tx.as_ref() else {
            job.done.send(Err(StoreError::Closed));
            return;
        };
        if let Err(mpsc::SendError(Msg::Job(job))) = tx.send(Msg::Job(job)) {
            job.done.send(Err(StoreError::Closed));
        }
    }

    /// Submits a write and waits until it is durable. Blocks the calling
    /// thread: for synchronous callers (a blocking task, a plain thread);
    /// async code uses [`Writer::submit`] and awaits it.
    pub(crate) fn write(&self, bytes: usize, run: WriteFn) -> Result<(), StoreError> {
        let (done, rx) = mpsc::sync_channel(1);
        self.submit_with(bytes, run, move |r| {
            let _ = done.send(r);
        });
        rx.recv().unwrap_or(Err(StoreError::Closed))
    }

    /// Asks the writer to probe the database (a reader met a storage error).
    pub(crate) fn check(&self) {
        if let Some(tx) = self.tx.as_ref() {
            let _ = tx.send(Msg::Check);
        }
    }
}

/// The current failure episode.
struct Failure {
    /// The last failure with an OS error (or the first failure).
    last: Cause,
    backoff: Duration,
    next_try: Instant,
}

/// A group whose commit failed: its outcome is known after a reopen.
struct Pending {
    seq: u64,
    jobs: Vec<Job>,
    cause: Cause,
    deadline: Instant,
}

enum Attempt {
    Done,
    /// Job `i` failed on its own; nothing was applied.
    JobFailed(usize, StoreError),
    /// The storage failed before the commit; nothing was applied.
    NotApplied(Cause),
    /// The commit with this sequence number failed; it may have landed.
    Unknown(u64, Cause),
}

struct Worker {
    slot: Arc<DbSlot>,
    opener: Opener,
    /// The open database; `None` while failing until a reopen succeeds.
    db: Option<Arc<Database>>,
    next_id: Arc<AtomicU64>,
    /// Sequence number of the last commit attempted.
    seq: u64,
    health: watch::Sender<Health>,
    failure: Option<Failure>,
    pending: Option<Pending>,
    /// A commit answered as failed at [`PENDING_MAX`] without knowing.
    unresolved: Option<u64>,
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        loop {
            let msg = match &self.failure {
                None => match rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                },
                Some(f) => {
                    let mut wake = f.next_try;
                    if let Some(p) = &self.pending {
                        wake = wake.min(p.deadline);
                    }
                    let now = Instant::now();
                    if wake <= now {
                        self.recover();
                        continue;
                    }
                    match rx.recv_timeout(wake - now) {
                        Ok(m) => m,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            self.recover();
                            continue;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            match msg {
                Msg::Check => {
                    if self.failure.is_none() {
                        self.probe();
                    }
                }
                Msg::Job(first) => {
                    if let Some(f) = &self.failure {
                        first
                            .done
                            .send(Err(StoreError::Unavailable(f.last.clone())));
                        continue;
                    }
                    let mut group = vec![first];
                    let mut bytes = group[0].bytes;
                    while group.len() < MAX_GROUP && bytes < MAX_GROUP_BYTES {
                        match rx.try_recv() {
                            Ok(Msg::Job(j)) => {
                                bytes += j.bytes;
                                group.push(j);
                            }
                            // The commit below checks the database anyway.
                            Ok(Msg::Check) => {}
                            Err(_) => break,
                        }
                    }
                    self.commit(group);
                }
            }
        }
        // Shutting down: learn the outcome of a failed commit if we can.
        if self.pending.is_some() {
            if let Some(f) = self.failure.as_mut() {
                f.next_try = Instant::now();
            }
            self.recover();
        }
        if let Some(p) = self.pending.take() {
            reply_all(p.jobs, || Err(StoreError::Commit(p.cause.clone())));
        }
    }

    /// Commits `group`, answering every request in it (now, or once the
    /// outcome of a failed commit is known).
    fn commit(&mut self, mut group: Vec<Job>) {
        match self.try_commit(&mut group) {
            Attempt::Done => reply_all(group, || Ok(())),
            Attempt::JobFailed(i, e) if group.len() == 1 => {
                debug_assert_eq!(i, 0);
                if let Some(j) = group.pop() {
                    j.done.send(Err(e));
                }
            }
            Attempt::JobFailed(..) => {
                // Isolate the failing request(s).
                for j in group {
                    match &self.failure {
                        Some(f) => {
                            j.done.send(Err(StoreError::Unavailable(f.last.clone())));
                        }
                        None => self.commit(vec![j]),
                    }
                }
            }
            Attempt::NotApplied(c) => {
                self.fail(c.clone());
                reply_all(group, || Err(StoreError::Commit(c.clone())));
            }
            Attempt::Unknown(seq, c) => {
                self.fail(c.clone());
                self.pending = Some(Pending {
                    seq,
                    jobs: group,
                    cause: c,
                    deadline: Instant::now() + PENDING_MAX,
                });
            }
        }
    }

    fn try_commit(&mut self, group: &mut [Job]) -> Attempt {
        let db = match &self.db {
            Some(db) => db.clone(),
            None => return Attempt::NotApplied(Arc::new(redb::Error::DatabaseClosed)),
        };
        self.seq += 1;
        let seq = self.seq;
        let tx = match db.begin_write() {
            Ok(tx) => tx,
            Err(e) => return Attempt::NotApplied(Arc::new(e.into())),
        };
        if let Err(e) = save_marks(&tx, &self.next_id, seq) {
            let _ = tx.abort();
            return Attempt::NotApplied(cause(e));
        }
        for (i, j) in group.iter_mut().enumerate() {
            if let Err(e) = (j.run)(&tx) {
                let _ = tx.abort();
                return if e.needs_reopen() {
                    Attempt::NotApplied(cause(e))
                } else {
                    Attempt::JobFailed(i, e)
                };
            }
        }
        match tx.commit() {
            Ok(()) => Attempt::Done,
            Err(e) => Attempt::Unknown(seq, Arc::new(e.into())),
        }
    }

    /// A tiny durable commit: proves the database can write again.
    fn probe(&mut self) {
        let Some(db) = self.db.clone() else { return };
        self.seq += 1;
        let seq = self.seq;
        let r = (|| -> Result<(), StoreError> {
            let tx = db.begin_write()?;
            save_marks(&tx, &self.next_id, seq)?;
            tx.commit()?;
            Ok(())
        })();
        match r {
            Ok(()) => self.healthy(),
            Err(e) => self.fail(cause(e)),
        }
    }

    /// One reopen-and-probe step of a failure episode.
    fn recover(&mut self) {
        let now = Instant::now();
        if let Some(p) = self.pending.take_if(|p| p.deadline <= now) {
            tracing::debug!(
                error = %p.cause,
                "store not reopened in time to learn whether a failed commit landed; reporting failure"
            );
            reply_all(p.jobs, || Err(StoreError::Commit(p.cause.clone())));
            self.unresolved = Some(p.seq);
        }
        if self.failure.as_ref().is_some_and(|f| f.next_try > now) {
            return;
        }
        if self.db.is_none() {
            let opened = self
                .opener
                .open()
                .map(Arc::new)
                .and_then(|db| read_marks(&db).map(|m| (db, m)));
            let (db, marks) = match opened {
                Ok(v) => v,
                Err(e) => {
                    self.fail(cause(e));
                    return;
                }
            };
            if self.unresolved.take() == Some(marks.commit) {
                tracing::error!(
                    "a store commit reported as failed had reached the file after all and is kept; \
                     its callers may retry it (duplicates possible)"
                );
            }
            self.next_id.fetch_max(marks.next, Ordering::SeqCst);
            self.seq = self.seq.max(marks.commit);
            self.db = Some(db.clone());
            self.slot.set(Ok(db));
            tracing::debug!("store database reopened");
            if let Some(p) = self.pending.take() {
                if marks.commit == p.seq {
                    // It landed before the failure; the reopen made it durable.
                    reply_all(p.jobs, || Ok(()));
                } else {
                    reply_all(p.jobs, || Err(StoreError::Commit(p.cause.clone())));
                }
            }
        }
        self.probe();
    }

    /// Enters (or continues) a failure episode: drops the database and
    /// schedules the next reopen.
    fn fail(&mut self, c: Cause) {
        self.db = None;
        let now = Instant::now();
        match self.failure.as_mut() {
            None => {
                tracing::warn!(error = %c, "store write failed; reopening the database until it works again");
                self.health.send_replace(Health::Failing {
                    error: c.to_string(),
                    full: redb_io(&c).is_some_and(io_is_full),
                    since: super::unix_now(),
                });
                self.failure = Some(Failure {
                    last: c,
                    backoff: BACKOFF_MIN,
                    next_try: now,
                });
            }
            Some(f) => {
                tracing::debug!(error = %c, retry_in = ?f.backoff, "store still failing");
                // Keep the OS error visible over follow-up errors without one
                // (e.g. the old database still open while a reader finishes).
                if redb_io(&c).is_some() || redb_io(&f.last).is_none() {
                    let error = c.to_string();
                    let full = redb_io(&c).is_some_and(io_is_full);
                    self.health.send_if_modified(|h| match h {
                        Health::Failing {
                            error: e, full: fl, ..
                        } if *e != error || *fl != full => {
                            *e = error;
                            *fl = full;
                            true
                        }
                        _ => false,
                    });
                    f.last = c;
                }
                f.next_try = now + f.backoff;
                f.backoff = (f.backoff * 2).min(BACKOFF_MAX);
            }
        }
        let last = self.failure.as_ref().map(|f| f.last.clone());
        if let Some(last) = last {
            self.slot.set(Err(last));
        }
    }

    fn healthy(&mut self) {
        if let Some(f) = self.failure.take() {
            tracing::info!(after = %f.last, "store recovered; writes work again");
            self.health.send_replace(Health::Ok);
        }
    }
}

fn reply_all(jobs: Vec<Job>, res: impl Fn() -> Result<(), StoreError>) {
    for j in jobs {
        j.done.send(res());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{Fault, Faults, Health, KeySource, KvTable, Op, Store};

    /// A reader still holding the poisoned database keeps its file locked:
    /// reopening is refused (DatabaseAlreadyOpen) and retried until the
    /// reader lets go.
    #[test]
    fn reopen_waits_for_readers_of_the_old_database() {
        let d = tempfile::tempdir().unwrap();
        let f = Faults::new();
        let s = Store::open_with_faults(d.path(), &KeySource::KeyFile, f.clone()).unwrap();
        let old = s.inner.slot.get().unwrap();
        f.fail_nth(Op::Write, 1, Fault::NoSpace);
        let e = s.kv_put(KvTable::Meta, b"k", b"v").unwrap_err();
        assert!(e.is_storage_full(), "{e}");
        f.clear();
        assert!(matches!(s.health(), Health::Failing { full: true, .. }));
        // While it is held, a fresh open of the file is refused.
        let opener = super::Opener {
            path: d.path().join(super::super::DB_FILE),
            faults: Faults::new(),
        };
        assert!(matches!(
            opener.open(),
            Err(super::StoreError::Database(
                redb::Error::DatabaseAlreadyOpen
            ))
        ));
        drop(old);
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(30), s.wait_healthy()).await
            })
            .expect("recovered once the reader let go");
        s.kv_put(KvTable::Meta, b"k", b"v").unwrap();
        assert_eq!(
            s.kv_get(KvTable::Meta, b"k").unwrap().as_deref(),
            Some(&b"v"[..])
        );
    }
}
