//! The single writer thread and its group commit.
//!
//! Callers prepare (and seal) their records first, then hand a small closure
//! to the writer. The writer takes every request waiting in its channel, runs
//! them all in one write transaction and commits once (durably), then
//! answers each caller. If one request fails, the group is rolled back and
//! each request is retried in a transaction of its own, so one bad request
//! never fails the others.

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
    tx: mpsc::Sender<Job>,
}

impl Writer {
    pub(crate) fn spawn(db: Arc<Database>) -> Writer {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(db, rx))
            .expect("spawn store writer thread");
        Writer { tx }
    }

    /// Submits a write; the receiver yields once it is durable (or failed).
    pub(crate) fn submit(
        &self,
        bytes: usize,
        run: WriteFn,
    ) -> oneshot::Receiver<Result<(), StoreError>> {
        let (done, rx) = oneshot::channel();
        let job = Job { run, bytes, done };
        if let Err(mpsc::SendError(job)) = self.tx.send(job) {
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

fn run(db: Arc<Database>, rx: mpsc::Receiver<Job>) {
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
        match commit_group(&db, &mut group) {
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
                    let res = commit_one(&db, &mut j.run);
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

fn commit_group(db: &Database, group: &mut [Job]) -> Result<(), GroupError> {
    let tx = db
        .begin_write()
        .map_err(|e| GroupError::Commit(e.to_string()))?;
    for j in group.iter_mut() {
        if (j.run)(&tx).is_err() {
            let _ = tx.abort();
            return Err(GroupError::Job);
        }
    }
    tx.commit().map_err(|e| GroupError::Commit(e.to_string()))
}

fn commit_one(db: &Database, run: &mut WriteFn) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
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
