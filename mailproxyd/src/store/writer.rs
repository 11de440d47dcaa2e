//! The single writer thread and its group commit.
//!
//! Callers prepare (and seal) their records first, then hand a small closure
//! to the writer. The writer takes every request waiting in its channel, runs
//! them all in one write transaction and commits once (durably), then
//! answers each caller. If one request fails, the group is rolled back and
//! each request is retried in a transaction of its own, so one bad request
//! never fails the others.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use redb::{Database, WriteTransaction};
use tokio::sync::oneshot;

use super::StoreError;

/// A write to run inside a transaction; it may be run more than once.
pub(crate) type WriteFn = Box<dyn FnMut(&WriteTransaction) -> Result<(), StoreError> + Send>;

struct Job {
    run: WriteFn,
    bytes: usize,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// Most requests in one group.
const MAX_GROUP: usize = 512;
/// Most payload bytes in one group.
const MAX_GROUP_BYTES: usize = 64 << 20;

pub(crate) struct Writer {
    tx: Option<mpsc::Sender<Job>>,
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
    pub(crate) fn spawn(db: Arc<Database>, next_id: Arc<AtomicU64>) -> Writer {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(db, rx, next_id))
            .expect("spawn store writer thread");
        Writer {
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    /// Submits a write; the receiver yields once it is durable (or failed).
    pub(crate) fn submit(
        &self,
        bytes: usize,
        run: WriteFn,
    ) -> oneshot::Receiver<Result<(), StoreError>> {
        let (done, rx) = oneshot::channel();
        let job = Job { run, bytes, done };
        let Some(tx) = self.tx.as_ref() else {
            let _ = job.done.send(Err(StoreError::Closed));
            return rx;
        };
        if let Err(mpsc::SendError(job)) = tx.send(job) {
            let _ = job.done.send(Err(StoreError::Closed));
        }
        rx
    }

    /// Submits a write and blocks until it is durable.
    pub(crate) fn write(&self, bytes: usize, run: WriteFn) -> Result<(), StoreError> {
        self.submit(bytes, run)
            .blocking_recv()
            .unwrap_or(Err(StoreError::Closed))
    }
}

fn run(db: Arc<Database>, rx: mpsc::Receiver<Job>, next_id: Arc<AtomicU64>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        let mut bytes = group[0].bytes;
        while group.len() < MAX_GROUP && bytes < MAX_GROUP_BYTES {
            match rx.try_recv() {
                Ok(j) => {
                    bytes += j.bytes;
                    group.push(j);
                }
                Err(_) => break,
            }
        }
        match commit_group(&db, &mut group, &next_id) {
            Ok(()) => {
                for j in group {
                    let _ = j.done.send(Ok(()));
                }
            }
            Err(GroupError::Commit(msg)) => {
                tracing::error!(error = %msg, "store commit failed");
                for j in group {
                    let _ = j.done.send(Err(StoreError::Commit(msg.clone())));
                }
            }
            Err(GroupError::Job) => {
                // Isolate the failing request(s).
                for mut j in group {
                    let res = commit_one(&db, &mut j.run, &next_id);
                    let _ = j.done.send(res);
                }
            }
        }
    }
}

enum GroupError {
    Job,
    Commit(String),
}

/// Records the id high-water mark so ids are never reused after restarts.
fn save_next_id(tx: &WriteTransaction, next_id: &AtomicU64) -> Result<(), StoreError> {
    tx.open_table(super::IDS)?
        .insert("next", next_id.load(Ordering::Relaxed))?;
    Ok(())
}

fn commit_group(db: &Database, group: &mut [Job], next_id: &AtomicU64) -> Result<(), GroupError> {
    let tx = db
        .begin_write()
        .map_err(|e| GroupError::Commit(e.to_string()))?;
    if let Err(e) = save_next_id(&tx, next_id) {
        let _ = tx.abort();
        return Err(GroupError::Commit(e.to_string()));
    }
    for j in group.iter_mut() {
        if (j.run)(&tx).is_err() {
            let _ = tx.abort();
            return Err(GroupError::Job);
        }
    }
    tx.commit().map_err(|e| GroupError::Commit(e.to_string()))
}

fn commit_one(db: &Database, run: &mut WriteFn, next_id: &AtomicU64) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    save_next_id(&tx, next_id)?;
    match run(&tx) {
        Ok(()) => {
            tx.commit()?;
            Ok(())
        }
        Err(e) => {
            let _ = tx.abort();
            Err(e)
        }
    }
}
