//! Storage faults: every write either commits or leaves nothing behind, and
//! the store recovers by itself (no reopen by the caller) once the fault is
//! gone.
//!
//! - `matrix_*`: a small workload with the n-th write, sync or set_len failing
//!   with ENOSPC or EIO, for every n the workload reaches.
//! - `a_full_disk_*`: every write failing for a while (health, error kinds).
//! - `concurrent_*`: group commit under faults, with readers running.
//! - `a_real_full_filesystem_*`: a 4 MiB tmpfs filled up (root only).

mod store_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use store_support::wait_ok;

use mailproxyd::store::{
    Fault, Faults, Health, InboxEntry, KeySource, KvTable, NewQueueEntry, Op, QueueEntry, Store,
    StoreError,
};

fn rcpt(r: &str) -> NewQueueEntry {
    NewQueueEntry {
        recipient: r.into(),
        created: 10,
        bounce_at: 20,
        unreliable: false,
    }
}

fn msg(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// What the workload did and what the store must now hold.
#[derive(Default, Debug)]
struct Expect {
    queue: Vec<QueueEntry>,
    inbox: Vec<(InboxEntry, Vec<u8>)>,
    kv: Vec<(Vec<u8>, Vec<u8>)>,
    /// Every blob id that must exist, with its bytes.
    blobs: Vec<(u64, Vec<u8>)>,
    /// Ids handed out by the workload, successful or not.
    max_id: u64,
    errors: usize,
}

const MSG_A: usize = 150_000;

fn workload(s: &Store) -> Expect {
    let mut ex = Expect::default();
    let a = msg(MSG_A, 1);
    let b = msg(1_000, 2);
    let c = msg(3_000, 3);

    let (entries, rx) = s.enqueue_async("alice@p", &a, &[rcpt("r1@p"), rcpt("r2@p")]);
    ex.max_id = entries
        .iter()
        .map(|e| e.id.max(e.message.blob))
        .max()
        .unwrap();
    let enq_ok = rx.blocking_recv().expect("writer answered").is_ok();

    let d1 = s.deliver(&b, 100);
    let d2 = s.deliver(&c, 101);
    let p1 = s.kv_put(KvTable::Meta, b"k1", b"v1").is_ok();
    let p2 = s.kv_put(KvTable::Meta, b"k2", b"v2").is_ok();
    let rm = s.kv_remove(KvTable::Meta, b"k1");
    let del = match &d1 {
        Ok(e) => s.inbox_delete(&[e.id]).is_ok(),
        Err(_) => false,
    };
    let mut updated = entries[0].clone();
    updated.blocks = vec![mailproxyd::store::BlockState {
        acked: true,
        retransmit_at: 77,
        attempts: 2,
    }];
    updated.engine = b"engine state".to_vec();
    let upd = enq_ok && s.queue_update(&updated).is_ok();

    ex.errors = [
        enq_ok,
        d1.is_ok(),
        d2.is_ok(),
        p1,
        p2,
        rm.is_ok(),
        del || d1.is_err(),
        upd || !enq_ok,
    ]
    .iter()
    .filter(|ok| !**ok)
    .count();

    if enq_ok {
        ex.queue = vec![
            if upd { updated } else { entries[0].clone() },
            entries[1].clone(),
        ];
        ex.blobs.push((entries[0].message.blob, a));
    }
    for (d, m, deleted) in [(d1, b, del), (d2, c, false)] {
        if let Ok(e) = d {
            ex.max_id = ex.max_id.max(e.id.max(e.message.blob));
            if !deleted {
                ex.blobs.push((e.message.blob, m.clone()));
                ex.inbox.push((e, m));
            }
        }
    }
    // k1 survives only if it was put and its removal failed.
    if p1 && rm.is_err() {
        ex.kv.push((b"k1".to_vec(), b"v1".to_vec()));
    }
    if let Ok(found) = rm {
        assert_eq!(found, p1, "kv_remove saw k1 exactly when its put succeeded");
    }
    if p2 {
        ex.kv.push((b"k2".to_vec(), b"v2".to_vec()));
    }
    ex
}

/// The store holds exactly what `ex` says, byte for byte.
fn check(s: &Store, ex: &Expect, what: &str) {
    let ids = s.queue_ids().unwrap();
    let want: Vec<u64> = ex.queue.iter().map(|e| e.id).collect();
    assert_eq!(ids, want, "{what}: queue ids");
    for e in &ex.queue {
        assert_eq!(
            s.queue_get(e.id).unwrap().as_ref(),
            Some(e),
            "{what}: queue entry"
        );
    }
    let inbox = s.inbox_list().unwrap();
    let want: Vec<&InboxEntry> = ex.inbox.iter().map(|(e, _)| e).collect();
    assert_eq!(inbox.iter().collect::<Vec<_>>(), want, "{what}: inbox");
    for (e, m) in &ex.inbox {
        assert_eq!(
            &s.read_message(e.message.blob).unwrap(),
            m,
            "{what}: inbox message"
        );
    }
    let mut kv: Vec<_> = s
        .kv_list(KvTable::Meta)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k != b"keycheck")
        .collect();
    kv.sort();
    let mut want = ex.kv.clone();
    want.sort();
    assert_eq!(kv, want, "{what}: kv");
    // Blobs: exactly the expected ones exist among every id handed out, so a
    // failed request left no message behind.
    let mut present = BTreeSet::new();
    for id in 1..=ex.max_id + 4 {
        match s.message_ref(id) {
            Ok(_) => {
                let m = s.read_message(id).unwrap();
                let want = ex.blobs.iter().find(|(b, _)| *b == id);
                assert_eq!(want.map(|(_, m)| m), Some(&m), "{what}: blob {id}");
                present.insert(id);
            }
            Err(StoreError::NotFound(_)) => {}
            Err(e) => panic!("{what}: reading blob {id}: {e}"),
        }
    }
    let want: BTreeSet<u64> = ex.blobs.iter().map(|(b, _)| *b).collect();
    assert_eq!(present, want, "{what}: blobs");
}

/// Writes after recovery, added to `ex`.
fn write_more(s: &Store, ex: &mut Expect) {
    s.kv_put(KvTable::Meta, b"after", b"recovery")
        .expect("write after recovery");
    ex.kv.push((b"after".to_vec(), b"recovery".to_vec()));
    let m = msg(2_000, 9);
    let e = s.deliver(&m, 200).expect("deliver after recovery");
    // Ids only grow: nothing handed out before (even by a failed request) is reused.
    assert!(
        e.message.blob > ex.max_id && e.id > ex.max_id,
        "new ids {} {} after {}",
        e.message.blob,
        e.id,
        ex.max_id
    );
    ex.max_id = ex.max_id.max(e.id.max(e.message.blob));
    ex.blobs.push((e.message.blob, m.clone()));
    ex.inbox.push((e, m));
}

/// Calls of each op one workload makes on a fresh store.
fn measure() -> [u64; 3] {
    let d = tempfile::tempdir().unwrap();
    let f = Faults::new();
    let s = Store::open_with_faults(d.path(), &KeySource::KeyFile, f.clone()).unwrap();
    let before = Op::ALL.map(|op| f.calls(op));
    let ex = workload(&s);
    assert_eq!(ex.errors, 0, "the workload succeeds without faults");
    let after = Op::ALL.map(|op| f.calls(op));
    [0, 1, 2].map(|i| after[i] - before[i])
}

/// Runs the workload with the n-th call of `op` failing, for every n.
fn matrix(op: Op) {
    let idx = Op::ALL.iter().position(|o| *o == op).unwrap();
    let n_max = measure()[idx];
    println!("{op:?}: {n_max} calls per workload");
    if op != Op::SetLen {
        assert!(n_max > 0, "the workload makes {op:?} calls");
    }
    let mut failing_cases = 0;
    let mut disturbed = 0;
    for fault in Fault::ALL {
        // One past the end too: a fault that never fires changes nothing.
        for n in 1..=n_max + 1 {
            let what = format!("{op:?} #{n} {fault:?}");
            let d = tempfile::tempdir().unwrap();
            let f = Faults::new();
            let s = Store::open_with_faults(d.path(), &KeySource::KeyFile, f.clone()).unwrap();
            let health = s.health_watch();
            f.fail_nth(op, n, fault);
            let mut ex = workload(&s);
            if ex.errors > 0 {
                failing_cases += 1;
            }
            // The fault made the store fail (and recover) at least once.
            if health.has_changed().unwrap() {
                disturbed += 1;
            }
            f.clear();
            wait_ok(&s);
            check(&s, &ex, &format!("{what}, recovered"));
            write_more(&s, &mut ex);
            check(&s, &ex, &format!("{what}, after new writes"));
            drop(s);
            let s = Store::open(d.path(), &KeySource::KeyFile).unwrap();
            check(&s, &ex, &format!("{what}, reopened"));
        }
    }
    println!(
        "{op:?}: of {} cases, {disturbed} made the store fail and recover, {failing_cases} failed requests",
        2 * (n_max + 1)
    );
    if op == Op::SyncData {
        // Every sync belongs to a commit: each fault fails the store.
        assert_eq!(disturbed as u64, 2 * n_max, "every sync fault is seen");
    } else if n_max > 0 {
        assert!(disturbed > 0, "some {op:?} fault is seen");
        assert!(failing_cases > 0, "some {op:?} fault fails a request");
    }
}

#[test]
fn matrix_write() {
    matrix(Op::Write);
}

#[test]
fn matrix_sync_data() {
    matrix(Op::SyncData);
}

#[test]
fn matrix_set_len() {
    matrix(Op::SetLen);
}

#[test]
fn a_full_disk_fails_writes_until_space_returns() {
    let d = tempfile::tempdir().unwrap();
    let f = Faults::new();
    let s = Store::open_with_faults(d.path(), &KeySource::KeyFile, f.clone()).unwrap();
    s.kv_put(KvTable::Meta, b"before", b"1").unwrap();
    f.fail_all(Op::Write, Fault::NoSpace);
    let e = s.kv_put(KvTable::Meta, b"during", b"2").unwrap_err();
    assert!(e.is_storage_full(), "{e}");
    assert!(e.is_transient(), "{e}");
    match s.health() {
        Health::Failing { error, full, since } => {
            assert!(full);
            assert!(
                error.contains("No space left on device (os error 28)"),
                "{error}"
            );
            assert!(since > 0);
        }
        Health::Ok => panic!("health is Ok while the disk is full"),
    }
    // The writer keeps probing (each probe tries to write) and keeps failing.
    store_support::wait_retries(&f, 3);
    assert!(matches!(s.health(), Health::Failing { full: true, .. }));
    // Requests meanwhile fail at once, with the storage error.
    let e = s.deliver(b"hello", 1).unwrap_err();
    assert!(e.is_storage_full() && e.is_transient(), "{e}");
    let e = s.kv_get(KvTable::Meta, b"before").unwrap_err();
    assert!(e.is_transient(), "{e}");

    f.clear();
    wait_ok(&s);
    assert_eq!(
        s.kv_get(KvTable::Meta, b"before").unwrap().as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(s.kv_get(KvTable::Meta, b"during").unwrap(), None);
    s.kv_put(KvTable::Meta, b"after", b"3").unwrap();
    assert_eq!(s.inbox_len().unwrap(), 0);
    drop(s);
    let s = Store::open(d.path(), &KeySource::KeyFile).unwrap();
    assert_eq!(
        s.kv_get(KvTable::Meta, b"after").unwrap().as_deref(),
        Some(&b"3"[..])
    );
    assert_eq!(s.kv_get(KvTable::Meta, b"during").unwrap(), None);
}

#[test]
fn an_eio_is_transient_but_not_full() {
    let d = tempfile::tempdir().unwrap();
    let f = Faults::new();
    let s = Store::open_with_faults(d.path(), &KeySource::KeyFile, f.clone()).unwrap();
    f.fail_all(Op::Write, Fault::Io);
    let e = s.kv_put(KvTable::Meta, b"k", b"v").unwrap_err();
    assert!(e.is_transient() && !e.is_storage_full(), "{e}");
    match s.health() {
        Health::Failing { error, full, .. } => {
            assert!(!full);
            assert!(error.contains("os error 5"), "{error}");
        }
        Health::Ok => panic!("health is Ok while writes fail"),
    }
    f.clear();
    wait_ok(&s);
    assert_eq!(s.kv_get(KvTable::Meta, b"k").unwrap(), None);
    s.kv_put(KvTable::Meta, b"k", b"v2").unwrap();
}

#[test]
fn a_commit_whose_last_sync_failed_is_answered_by_what_the_file_holds() {
    let d = tempfile::tempdir().unwrap();
    let f = Faults::new();
    let s = Store::open_with_faults(d.path(), &KeySource::KeyFile, f.clone()).unwrap();
    let health = s.health_watch();
    // Every page of the commit reached the file before its sync failed: the
    // reopened database holds it, so the caller is told it succeeded.
    f.fail_nth(Op::SyncData, 1, Fault::Io);
    s.kv_put(KvTable::Meta, b"k", b"v").unwrap();
    assert!(
        health.has_changed().unwrap(),
        "the store failed and reopened"
    );
    wait_ok(&s);
    assert_eq!(
        s.kv_get(KvTable::Meta, b"k").unwrap().as_deref(),
        Some(&b"v"[..])
    );
    drop(s);
    let s = Store::open(d.path(), &KeySource::KeyFile).unwrap();
    assert_eq!(
        s.kv_get(KvTable::Meta, b"k").unwrap().as_deref(),
        Some(&b"v"[..])
    );
}

/// The one ambiguous case: every sync fails, so the store cannot reopen to
/// learn whether the commit landed. The caller is told it failed after a
/// bounded wait; once syncs work again the record is whole or absent.
#[test]
fn a_write_while_every_sync_fails_is_whole_or_absent_afterwards() {
    let d = tempfile::tempdir().unwrap();
    let f = Faults::new();
    let s = Store::open_with_faults(d.path(), &KeySource::KeyFile, f.clone()).unwrap();
    f.fail_all(Op::SyncData, Fault::Io);
    let m = msg(300_000, 5);
    let e = s.deliver(&m, 1).unwrap_err();
    assert!(e.is_transient() && !e.is_storage_full(), "{e}");
    f.clear();
    wait_ok(&s);
    // Whole or absent, never half: an inbox entry with its message, or
    // neither (which one depends on whether the sync that failed was the
    // commit's last, after every page was written).
    let inbox = s.inbox_list().unwrap();
    assert!(inbox.len() <= 1);
    for e in &inbox {
        assert_eq!(s.read_message(e.message.blob).unwrap(), m);
    }
    for id in 1..=20 {
        if s.message_ref(id).is_ok() {
            assert!(
                inbox.iter().any(|e| e.message.blob == id),
                "orphan blob {id}"
            );
        }
    }
    println!("kept: {}", inbox.len());
}

/// Many concurrent writers (grouped into shared commits) and readers while
/// faults fire: every request is answered, Ok ones are there, Err ones not.
fn concurrent(op: Op, fault: Fault) {
    let d = tempfile::tempdir().unwrap();
    let f = Faults::new();
    let s = Store::open_with_faults(d.path(), &KeySource::KeyFile, f.clone()).unwrap();
    let health = s.health_watch();
    for n in [1, 3, 7] {
        f.fail_nth(op, n, fault);
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let s = s.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut reads = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match s.kv_list(KvTable::Meta) {
                    Ok(_) => reads += 1,
                    Err(e) => assert!(e.is_transient(), "reader: {e}"),
                }
            }
            reads
        })
    };
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                (0..6)
                    .map(|i| {
                        let k = format!("t{t}-{i}").into_bytes();
                        let ok = s.kv_put(KvTable::Meta, &k, &k).is_ok();
                        (k, ok)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<(Vec<u8>, bool)> = writers
        .into_iter()
        .flat_map(|w| w.join().expect("writer thread"))
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.join().expect("reader thread");
    assert!(reads > 0);
    assert!(
        health.has_changed().unwrap(),
        "{op:?} {fault:?}: the store failed and recovered"
    );
    if op == Op::Write {
        assert!(
            results.iter().any(|(_, ok)| !ok),
            "{op:?} {fault:?}: some request failed"
        );
    }
    f.clear();
    wait_ok(&s);
    let check = |s: &Store| {
        for (k, ok) in &results {
            let got = s.kv_get(KvTable::Meta, k).unwrap();
            assert_eq!(
                got.is_some(),
                *ok,
                "{op:?} {fault:?}: {}",
                String::from_utf8_lossy(k)
            );
        }
    };
    check(&s);
    drop(s);
    check(&Store::open(d.path(), &KeySource::KeyFile).unwrap());
}

#[test]
fn concurrent_writers_and_readers_under_write_faults() {
    concurrent(Op::Write, Fault::NoSpace);
}

#[test]
fn concurrent_writers_and_readers_under_sync_faults() {
    concurrent(Op::SyncData, Fault::Io);
}

/// Unmounts on drop, also when the test fails.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("could not unmount {}", self.0.display());
        }
    }
}

/// Fills the filesystem of `dir` with one file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let p = dir.join("filler");
    let mut file = std::fs::File::create(&p).unwrap();
    let block = vec![0x55u8; 16 * 1024];
    loop {
        match file.write_all(&block) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling: {e}"),
        }
    }
    // Smaller pieces for the last bytes.
    loop {
        match file.write_all(&block[..512]) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling: {e}"),
        }
    }
    p
}

#[test]
fn a_real_full_filesystem_recovers_when_space_is_freed() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: mounting a tmpfs needs root (CI runs as root)");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(d.path())
        .status()
        .expect("run mount");
    assert!(status.success(), "mount -t tmpfs failed: {status}");
    let _mount = Mount(d.path().to_owned());
    let acct = d.path().join("acct");
    std::fs::create_dir(&acct).unwrap();
    let s = Store::open(&acct, &KeySource::KeyFile).unwrap();
    let filler = fill(d.path());

    let mut delivered = Vec::new();
    let err = loop {
        let m = msg(48 * 1024, delivered.len() as u8);
        match s.deliver(&m, 1) {
            Ok(e) => delivered.push((e, m)),
            Err(e) => break e,
        }
        assert!(delivered.len() < 200, "the full tmpfs accepted 9 MiB");
    };
    assert!(err.is_storage_full(), "{err}");
    assert!(err.is_transient(), "{err}");
    match s.health() {
        Health::Failing { error, full, .. } => {
            assert!(full, "{error}");
            assert!(error.contains("No space left on device"), "{error}");
        }
        Health::Ok => panic!("health Ok on a full filesystem"),
    }
    let e = s.kv_put(KvTable::Meta, b"k", b"v").unwrap_err();
    assert!(e.is_storage_full(), "{e}");

    std::fs::remove_file(&filler).unwrap();
    let freed = std::time::Instant::now();
    // No write from us: the store probes by itself.
    wait_ok(&s);
    println!("recovered {:?} after space returned", freed.elapsed());
    s.kv_put(KvTable::Meta, b"k", b"v").unwrap();
    let m = msg(48 * 1024, 200);
    delivered.push((s.deliver(&m, 2).unwrap(), m));
    let check = |s: &Store| {
        let inbox = s.inbox_list().unwrap();
        assert_eq!(inbox.len(), delivered.len());
        for ((e, m), got) in delivered.iter().zip(&inbox) {
            assert_eq!(e, got);
            assert_eq!(&s.read_message(e.message.blob).unwrap(), m);
        }
    };
    check(&s);
    drop(s);
    check(&Store::open(&acct, &KeySource::KeyFile).unwrap());
}
