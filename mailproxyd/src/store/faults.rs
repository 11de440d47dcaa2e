//! Fault injection under the store: a redb [`StorageBackend`] that forwards
//! every call to redb's [`FileBackend`] and fails the calls a [`Faults`]
//! handle has armed.
//!
//! Production opens every store through [`FaultBackend`] with nothing armed
//! (the cost is one atomic add and one atomic load per write, sync or
//! set_len). Tests arm a handle to fail the n-th `write`, `sync_data` or
//! `set_len` from now ([`Faults::fail_nth`]), or every one of them until
//! [`Faults::clear`] ([`Faults::fail_all`], a full disk), with `ENOSPC` or
//! `EIO` exactly as the kernel reports them. The store reopens its database
//! over a fresh backend sharing the same handle, so arming survives reopens.

use std::fs::File;
use std::io;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// A backend call that can be made to fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `StorageBackend::write`.
    Write,
    /// `StorageBackend::sync_data`.
    SyncData,
    /// `StorageBackend::set_len`.
    SetLen,
}

impl Op {
    /// Every operation, for test matrices.
    pub const ALL: [Op; 3] = [Op::Write, Op::SyncData, Op::SetLen];

    fn index(self) -> usize {
        match self {
            Op::Write => 0,
            Op::SyncData => 1,
            Op::SetLen => 2,
        }
    }
}

/// The error an armed call fails with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `ENOSPC`: no space left on device.
    NoSpace,
    /// `EIO`: input/output error.
    Io,
}

impl Fault {
    /// Both faults, for test matrices.
    pub const ALL: [Fault; 2] = [Fault::NoSpace, Fault::Io];

    fn error(self) -> io::Error {
        io::Error::from_raw_os_error(match self {
            Fault::NoSpace => libc::ENOSPC,
            Fault::Io => libc::EIO,
        })
    }
}

#[derive(Debug, Default)]
struct Arms {
    /// (op, absolute 1-based call number, fault), each fired once.
    nth: Vec<(Op, u64, Fault)>,
    /// Per op: fail every call.
    all: [Option<Fault>; 3],
}

#[derive(Debug, Default)]
struct Shared {
    calls: [AtomicU64; 3],
    /// Fast path: nothing armed, no lock taken.
    armed: AtomicBool,
    arms: Mutex<Arms>,
}

/// A handle arming failures in the backends opened with it. Cheap to clone;
/// clones share the same arms and counters.
#[derive(Clone, Default, Debug)]
pub struct Faults {
    shared: Arc<Shared>,
}

impl Faults {
    /// A handle with nothing armed.
    pub fn new() -> Self {
        Self::default()
    }

    /// The `n`-th call of `op` from now (1-based) fails once with `fault`.
    pub fn fail_nth(&self, op: Op, n: u64, fault: Fault) {
        let mut arms = self.lock();
        let at = self.calls(op) + n.max(1);
        arms.nth.push((op, at, fault));
        self.shared.armed.store(true, Ordering::SeqCst);
    }

    /// Every call of `op` fails with `fault` until [`Faults::clear`].
    pub fn fail_all(&self, op: Op, fault: Fault) {
        let mut arms = self.lock();
        arms.all[op.index()] = Some(fault);
        self.shared.armed.store(true, Ordering::SeqCst);
    }

    /// Disarms everything (counters keep counting).
    pub fn clear(&self) {
        let mut arms = self.lock();
        *arms = Arms::default();
        self.shared.armed.store(false, Ordering::SeqCst);
    }

    /// Calls of `op` seen so far, failed ones included.
    pub fn calls(&self, op: Op) -> u64 {
        self.shared.calls[op.index()].load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Arms> {
        self.shared
            .arms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a call of `op` and says whether it must fail.
    pub(crate) fn check(&self, op: Op) -> io::Result<()> {
        let n = self.shared.calls[op.index()].fetch_add(1, Ordering::SeqCst) + 1;
        if !self.shared.armed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut arms = self.lock();
        if let Some(f) = arms.all[op.index()] {
            return Err(f.error());
        }
        if let Some(i) = arms.nth.iter().position(|&(o, at, _)| o == op && at == n) {
            let (_, _, f) = arms.nth.swap_remove(i);
            return Err(f.error());
        }
        Ok(())
    }
}

/// redb's [`FileBackend`] with the calls armed in a [`Faults`] failing.
#[derive(Debug)]
pub struct FaultBackend {
    inner: FileBackend,
    faults: Faults,
}

impl FaultBackend {
    /// Wraps the database file `file`.
    pub fn new(file: File, faults: Faults) -> Result<Self, redb::DatabaseError> {
        Ok(FaultBackend {
            inner: FileBackend::new(file)?,
            faults,
        })
    }
}

impl StorageBackend for FaultBackend {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.faults.check(Op::SetLen)?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.faults.check(Op::SyncData)?;
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.faults.check(Op::Write)?;
        self.inner.write(offset, data)
    }

    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(e: io::Error) -> i32 {
        e.raw_os_error().unwrap()
    }

    #[test]
    fn nothing_armed_counts_and_passes() {
        let f = Faults::new();
        for _ in 0..5 {
            f.check(Op::Write).unwrap();
        }
        f.check(Op::SyncData).unwrap();
        assert_eq!(f.calls(Op::Write), 5);
        assert_eq!(f.calls(Op::SyncData), 1);
        assert_eq!(f.calls(Op::SetLen), 0);
    }

    #[test]
    fn nth_counts_from_now_and_fires_once() {
        let f = Faults::new();
        f.check(Op::Write).unwrap();
        f.check(Op::Write).unwrap();
        f.fail_nth(Op::Write, 3, Fault::NoSpace);
        f.check(Op::Write).unwrap();
        f.check(Op::Write).unwrap();
        // Other ops are not affected.
        for _ in 0..5 {
            f.check(Op::SyncData).unwrap();
        }
        assert_eq!(os(f.check(Op::Write).unwrap_err()), libc::ENOSPC);
        for _ in 0..10 {
            f.check(Op::Write).unwrap();
        }
        assert_eq!(f.calls(Op::Write), 15);
    }

    #[test]
    fn several_nth_arms_on_different_ops() {
        let f = Faults::new();
        f.fail_nth(Op::SyncData, 1, Fault::Io);
        f.fail_nth(Op::SetLen, 2, Fault::NoSpace);
        f.fail_nth(Op::SetLen, 3, Fault::Io);
        assert_eq!(os(f.check(Op::SyncData).unwrap_err()), libc::EIO);
        f.check(Op::SyncData).unwrap();
        f.check(Op::SetLen).unwrap();
        assert_eq!(os(f.check(Op::SetLen).unwrap_err()), libc::ENOSPC);
        assert_eq!(os(f.check(Op::SetLen).unwrap_err()), libc::EIO);
        f.check(Op::SetLen).unwrap();
    }

    #[test]
    fn all_fails_until_clear_and_clear_drops_pending_nth() {
        let f = Faults::new();
        f.fail_all(Op::SyncData, Fault::NoSpace);
        f.fail_nth(Op::Write, 2, Fault::Io);
        for _ in 0..3 {
            assert_eq!(os(f.check(Op::SyncData).unwrap_err()), libc::ENOSPC);
        }
        f.check(Op::Write).unwrap();
        f.clear();
        f.check(Op::Write).unwrap();
        f.check(Op::SyncData).unwrap();
        assert_eq!(f.calls(Op::SyncData), 4);
    }

    #[test]
    fn clones_share_arms_and_counters() {
        let f = Faults::new();
        let g = f.clone();
        g.fail_nth(Op::Write, 1, Fault::Io);
        assert!(f.check(Op::Write).is_err());
        assert_eq!(g.calls(Op::Write), 1);
    }

    #[test]
    fn the_error_text_is_the_os_text() {
        assert!(Fault::NoSpace
            .error()
            .to_string()
            .contains("No space left on device (os error 28)"));
    }
}
