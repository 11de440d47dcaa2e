//! Store behaviour: records, refcounts, keys, tampering, group commit,
//! crash safety (kill -9 in a loop) and plaintext markers on disk.

mod clients_support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use mailproxyd::store::{KdfParams, KeySource, KvTable, NewQueueEntry, Store, StoreError};
use zeroize::Zeroizing;

fn rcpt(r: &str) -> NewQueueEntry {
    NewQueueEntry {
        recipient: r.into(),
        created: 10,
        bounce_at: 20,
        unreliable: false,
    }
}

fn cheap_passphrase(p: &str) -> KeySource {
    KeySource::Passphrase {
        passphrase: Zeroizing::new(p.as_bytes().to_vec()),
        params: KdfParams {
            m_kib: 1024,
            t: 1,
            p: 1,
        },
    }
}

#[test]
fn queue_entries_share_one_message_until_the_last_is_removed() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path(), &KeySource::KeyFile).unwrap();
    let msg: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
    let rs: Vec<_> = (0..150).map(|i| rcpt(&format!("r{i}@p"))).collect();
    let entries = s.enqueue("alice@p", &msg, &rs).unwrap();
    assert_eq!(entries.len(), 150);
    assert_eq!(s.queue_len().unwrap(), 150);
    let mut e = s.queue_get(entries[3].id).unwrap().unwrap();
    assert_eq!(e.recipient, "r3@p");
    assert_eq!(e.sender, "alice@p");
    assert_eq!(e.message.len, msg.len() as u64);
    assert_eq!(s.read_message(e.message.blob).unwrap(), msg);
    e.blocks = vec![Default::default(); 3];
    e.blocks[1].acked = true;
    e.engine = b"state".to_vec();
    s.queue_update(&e).unwrap();
    assert_eq!(s.queue_get(e.id).unwrap().unwrap(), e);
    let blob = e.message.blob;
    for x in &entries[..149] {
        s.queue_remove(x.id).unwrap();
    }
    assert_eq!(s.read_message(blob).unwrap(), msg, "still referenced");
    s.queue_remove(entries[149].id).unwrap();
    assert!(matches!(s.read_message(blob), Err(StoreError::NotFound(_))));
    assert_eq!(s.queue_len().unwrap(), 0);
    // Survives reopen, and ids keep growing.
    drop(s);
    let s = Store::open(d.path(), &KeySource::KeyFile).unwrap();
    let e2 = s.enqueue("alice@p", b"x", &[rcpt("a@b")]).unwrap();
    assert!(e2[0].id > entries[149].id);
}

#[test]
fn inbox_and_kv_tables() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path(), &KeySource::KeyFile).unwrap();
    let a = s.deliver(b"first", 1).unwrap();
    let b = s.deliver(b"", 2).unwrap();
    let c = s.deliver(&vec![0xffu8; 400_000], 3).unwrap();
    let l = s.inbox_list().unwrap();
    assert_eq!(l, vec![a.clone(), b.clone(), c.clone()]);
    assert_ne!(a.uidl, b.uidl);
    // An account that only receives numbers its inbox consecutively.
    assert_eq!((b.id, c.id), (a.id + 1, a.id + 2));
    assert_eq!(s.read_message(b.message.blob).unwrap(), b"");
    s.inbox_delete(&[a.id, c.id]).unwrap();
    assert_eq!(s.inbox_list().unwrap(), vec![b.clone()]);
    assert!(s.read_message(c.message.blob).is_err());

    s.kv_put(KvTable::Dedup, b"k1", b"v1").unwrap();
    s.kv_put(KvTable::Surb, b"k1", b"other table").unwrap();
    assert_eq!(s.kv_get(KvTable::Dedup, b"k1").unwrap().unwrap(), b"v1");
    assert_eq!(
        s.kv_get(KvTable::Surb, b"k1").unwrap().unwrap(),
        b"other table"
    );
    assert_eq!(s.kv_get(KvTable::Partial, b"k1").unwrap(), None);
    assert_eq!(
        s.kv_list(KvTable::Dedup).unwrap(),
        vec![(b"k1".to_vec(), b"v1".to_vec())]
    );
    assert!(s.kv_remove(KvTable::Dedup, b"k1").unwrap());
    assert!(!s.kv_remove(KvTable::Dedup, b"k1").unwrap());
}

#[test]
fn key_file_is_private_and_wrong_keys_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path(), &KeySource::KeyFile).unwrap();
    s.deliver(b"hello", 1).unwrap();
    drop(s);
    let kf = d.path().join("storage.key");
    assert_eq!(
        std::fs::metadata(&kf).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A different key does not open the store.
    let other = mailproxyd::store::StorageKey::generate();
    assert!(matches!(
        Store::open(d.path(), &KeySource::Raw(other)),
        Err(StoreError::WrongKey)
    ));
    // A world-readable key file is refused.
    std::fs::set_permissions(&kf, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        Store::open(d.path(), &KeySource::KeyFile),
        Err(StoreError::Key(_))
    ));
    std::fs::set_permissions(&kf, std::fs::Permissions::from_mode(0o600)).unwrap();
    // A missing key file for an existing store is an error, not a new key.
    std::fs::rename(&kf, d.path().join("moved")).unwrap();
    assert!(matches!(
        Store::open(d.path(), &KeySource::KeyFile),
        Err(StoreError::Key(_))
    ));
    std::fs::rename(d.path().join("moved"), &kf).unwrap();
    let s = Store::open(d.path(), &KeySource::KeyFile).unwrap();
    assert_eq!(
        s.read_message(s.inbox_list().unwrap()[0].message.blob)
            .unwrap(),
        b"hello"
    );
}

#[test]
fn passphrase_mode() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path(), &cheap_passphrase("correct horse")).unwrap();
    s.deliver(b"secret mail", 1).unwrap();
    drop(s);
    assert!(
        !d.path().join("storage.key").exists(),
        "no key on disk in passphrase mode"
    );
    assert!(d.path().join("storage.salt").exists());
    assert!(matches!(
        Store::open(d.path(), &cheap_passphrase("wrong horse")),
        Err(StoreError::WrongKey)
    ));
    let s = Store::open(d.path(), &cheap_passphrase("correct horse")).unwrap();
    assert_eq!(s.inbox_list().unwrap().len(), 1);
    // Default parameters (64 MiB Argon2id) work too.
    let d2 = tempfile::tempdir().unwrap();
    let pf = d2.path().join("pass");
    std::fs::write(&pf, "pw from file\n").unwrap();
    let src = KeySource::passphrase_file(&pf).unwrap();
    Store::open(d2.path(), &src)
        .unwrap()
        .deliver(b"x", 1)
        .unwrap();
    assert_eq!(
        Store::open(d2.path(), &src).unwrap().inbox_len().unwrap(),
        1
    );
}

/// Opens the raw database and swaps / flips records behind the store's back.
#[test]
fn tampered_or_swapped_records_are_errors_not_garbage() {
    use redb::{ReadableTable, TableDefinition};
    const INBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("inbox");
    const CHUNK: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("blob_chunk");
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path(), &KeySource::KeyFile).unwrap();
    let a = s.deliver(b"message a", 1).unwrap();
    let b = s.deliver(b"message b", 1).unwrap();
    drop(s);
    let db_path = d.path().join("store.redb");
    {
        let db = redb::Database::open(&db_path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx.open_table(INBOX).unwrap();
            let va = t.get(a.id).unwrap().unwrap().value().to_vec();
            let vb = t.get(b.id).unwrap().unwrap().value().to_vec();
            t.insert(a.id, vb.as_slice()).unwrap();
            t.insert(b.id, va.as_slice()).unwrap();
        }
        tx.commit().unwrap();
    }
    let s = Store::open(d.path(), &KeySource::KeyFile).unwrap();
    assert!(
        matches!(s.inbox_list(), Err(StoreError::Sealed(_))),
        "swapped records detected"
    );
    drop(s);
    {
        let db = redb::Database::open(&db_path).unwrap();
        // Undo the swap, then flip one byte of a chunk.
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx.open_table(INBOX).unwrap();
            let va = t.get(a.id).unwrap().unwrap().value().to_vec();
            let vb = t.get(b.id).unwrap().unwrap().value().to_vec();
            t.insert(a.id, vb.as_slice()).unwrap();
            t.insert(b.id, va.as_slice()).unwrap();
            let mut c = tx.open_table(CHUNK).unwrap();
            let mut v = c
                .get((a.message.blob, 0))
                .unwrap()
                .unwrap()
                .value()
                .to_vec();
            let last = v.len() - 1;
            v[last] ^= 0x40;
            c.insert((a.message.blob, 0), v.as_slice()).unwrap();
        }
        tx.commit().unwrap();
        drop(db);
    }
    let s = Store::open(d.path(), &KeySource::KeyFile).unwrap();
    assert_eq!(s.inbox_list().unwrap().len(), 2);
    assert!(matches!(
        s.read_message(a.message.blob),
        Err(StoreError::Sealed(_))
    ));
    assert_eq!(s.read_message(b.message.blob).unwrap(), b"message b");
}

#[test]
fn concurrent_writers_are_group_committed() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path(), &KeySource::KeyFile).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let m = format!("thread {t} message {i}");
                    s.enqueue("a@p", m.as_bytes(), &[rcpt("b@p"), rcpt("c@p")])
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(s.queue_len().unwrap(), 800);
    let mut bodies = std::collections::HashSet::new();
    for id in s.queue_ids().unwrap() {
        let e = s.queue_get(id).unwrap().unwrap();
        bodies.insert(s.read_message(e.message.blob).unwrap());
    }
    assert_eq!(bodies.len(), 400);
}

const CRASH_ENV: &str = "MAILPROXY_STORE_CRASH_CHILD";

/// Child side of the crash test: writes forever, printing each durable id.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_ENV) else {
        return; // only meaningful when re-invoked by kill_dash_9_mid_write_then_reopen
    };
    let s = Store::open(std::path::Path::new(&dir), &KeySource::KeyFile).unwrap();
    let mut i = 0u64;
    loop {
        let body = format!("crash body {i} ").repeat(1 + (i % 50) as usize * 100);
        let e = if i & 1 == 0 {
            s.deliver(body.as_bytes(), i).unwrap().id
        } else {
            s.enqueue("a@p", body.as_bytes(), &[rcpt("x@p"), rcpt("y@p")])
                .unwrap()[0]
                .id
        };
        if i % 7 == 3 {
            let l = s.inbox_list().unwrap();
            if l.len() > 20 {
                s.inbox_delete(&[l[0].id]).unwrap();
            }
        }
        println!("durable {i} {e}");
        i += 1;
    }
}

#[test]
fn kill_dash_9_mid_write_then_reopen() {
    let d = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked_total = 0;
    for round in 0..15u64 {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CRASH_ENV, d.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if let Some(rest) = l.strip_prefix("durable ") {
                    let _ = tx.send(rest.to_owned());
                }
            }
        });
        // Let it write for a varying while, then SIGKILL it.
        let wait = 150 + (round * 37) % 300;
        std::thread::sleep(std::time::Duration::from_millis(wait));
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait().unwrap();
        let acked: Vec<String> = rx.try_iter().collect();
        acked_total += acked.len();
        let s = Store::open(d.path(), &KeySource::KeyFile).unwrap();
        // Every record opens and every message is complete and readable.
        for e in s.inbox_list().unwrap() {
            let m = s.read_message(e.message.blob).unwrap();
            assert_eq!(m.len() as u64, e.message.len);
            assert!(m.starts_with(b"crash body "));
        }
        let queue: std::collections::HashSet<u64> = s.queue_ids().unwrap().into_iter().collect();
        for &id in &queue {
            let e = s.queue_get(id).unwrap().unwrap();
            s.read_message(e.message.blob).unwrap();
        }
        // Every acknowledged queue write survived.
        for a in &acked {
            let mut it = a.split(' ');
            let i: u64 = it.next().unwrap().parse().unwrap();
            let id: u64 = it.next().unwrap().parse().unwrap();
            if i & 1 == 1 {
                assert!(
                    queue.contains(&id),
                    "acknowledged entry {id} lost in round {round}"
                );
            }
        }
        drop(s);
    }
    assert!(
        acked_total > 15,
        "child made progress ({acked_total} writes)"
    );
}

#[test]
fn markers_never_reach_the_disk_through_the_store_api() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open(d.path(), &KeySource::KeyFile).unwrap();
    s.enqueue(
        "MARKERSENDER@p",
        b"Subject: MARKERSUBJECT\r\n\r\nMARKERBODY\r\n",
        &[rcpt("MARKERRCPT@p")],
    )
    .unwrap();
    s.deliver(b"Subject: MARKERINBOX\r\n\r\nMARKERRECEIVED", 5)
        .unwrap();
    s.kv_put(KvTable::Partial, b"MARKERKEY", b"MARKERVALUE")
        .unwrap();
    s.kv_put(KvTable::Surb, b"MARKERSURBKEY", b"MARKERSURB")
        .unwrap();
    drop(s);
    for m in [
        "MARKERSENDER",
        "MARKERSUBJECT",
        "MARKERBODY",
        "MARKERRCPT",
        "MARKERINBOX",
        "MARKERRECEIVED",
        "MARKERKEY",
        "MARKERVALUE",
        "MARKERSURB",
    ] {
        clients_support::assert_absent(d.path(), m.as_bytes());
    }
    // The scan itself works: an unsealed copy would be found.
    std::fs::write(d.path().join("probe"), b"xxMARKERBODYxx").unwrap();
    let r = std::panic::catch_unwind(|| clients_support::assert_absent(d.path(), b"MARKERBODY"));
    assert!(r.is_err());
}
