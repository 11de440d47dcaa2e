//! The partial-message flood of issue 12 at CI size: distinct partial
//! messages from random senders through the engine's receive path (the
//! hidden `engine::bench` API). The Partial table never holds more than the
//! bound, one report covers every drop, and after a reload the index is
//! rebuilt from the disk as it was. The full-size run with RSS figures is
//! `benches/partial_flood.rs`.

use std::collections::BTreeSet;
use std::time::Duration;

use katzenpost::block::{encrypt_block, fragments};
use katzenpost::geometry::{BLOCK_LENGTH, BLOCK_PAYLOAD_LENGTH};
use mailproxyd::engine::bench::{Incoming, Outcome};
use mailproxyd::engine::PartialLimits;
use mailproxyd::store::{KeySource, KvTable, StorageKey, Store};
use rand::{RngCore, SeedableRng};

const ACCOUNT: &str = "bob@provider";
const IDENTITY: [u8; 32] = [0xb0; 32];
const STORED_BLOCK_BYTES: u64 = 8 + BLOCK_LENGTH as u64;
const MESSAGES: usize = 3000;
const BOUND: usize = 100;

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, &KeySource::Raw(StorageKey::from_bytes([5; 32]))).unwrap()
}

fn load(store: &Store, limits: PartialLimits) -> Incoming {
    Incoming::load(store, 1000, Duration::from_secs(3600), limits, ACCOUNT).unwrap()
}

/// The (sender key ‖ message id) of every message in the Partial table,
/// and how many block records it holds.
fn on_disk(store: &Store) -> (BTreeSet<Vec<u8>>, usize) {
    let mut messages = BTreeSet::new();
    let mut records = 0;
    store
        .kv_for_each(KvTable::Partial, |k, _| {
            messages.insert(k[..48].to_vec());
            records += 1;
            Ok(())
        })
        .unwrap();
    (messages, records)
}

#[test]
fn random_senders_never_hold_more_than_the_bound_and_a_reload_finds_the_same_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let limits = PartialLimits {
        messages: BOUND,
        ..PartialLimits::default()
    };
    let mut inc = load(&store, limits);
    let recipient = katzenpost::sphinx::public_key(&IDENTITY);
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let message = vec![b'f'; BLOCK_PAYLOAD_LENGTH + 1];
    let mut sent = BTreeSet::new();
    for i in 1..=MESSAGES {
        let (mut sender, mut id) = ([0u8; 32], [0u8; 16]);
        rng.fill_bytes(&mut sender);
        rng.fill_bytes(&mut id);
        let block = fragments(id, &message).unwrap().next().unwrap().to_block();
        assert_eq!(block.total_blocks, 2);
        let ct = encrypt_block(&sender, &recipient, &block).unwrap();
        sent.insert([&katzenpost::sphinx::public_key(&sender)[..], &id[..]].concat());
        assert_eq!(
            inc.accept(&store, &IDENTITY, &ct, ACCOUNT).unwrap(),
            Outcome::Stored,
            "message {i}"
        );
        let (held, bytes) = inc.partial_usage();
        assert_eq!(held, i.min(BOUND), "message {i}");
        assert_eq!(bytes, held as u64 * STORED_BLOCK_BYTES);
        if i % 500 == 0 || i == BOUND + 1 {
            let (messages, records) = on_disk(&store);
            assert_eq!(
                (messages.len(), records),
                (held, held),
                "the disk holds what the index says after message {i}"
            );
            assert!(messages.is_subset(&sent));
        }
    }
    // One report for the 2,900 dropped (the rest are coalesced for an hour).
    assert_eq!(store.inbox_len().unwrap(), 1);
    let report = store
        .read_message(store.inbox_list().unwrap()[0].message.blob)
        .unwrap();
    assert!(
        String::from_utf8_lossy(&report).contains("1 incomplete"),
        "{}",
        String::from_utf8_lossy(&report)
    );

    // After a reload the index is rebuilt from the disk: the same messages.
    let before = (inc.partial_usage(), on_disk(&store));
    drop(inc);
    drop(store);
    let store = open(dir.path());
    let mut inc = load(&store, limits);
    let after = (inc.partial_usage(), on_disk(&store));
    assert_eq!(after, before);
    assert_eq!(after.0, (BOUND, BOUND as u64 * STORED_BLOCK_BYTES));

    // The reloaded index still enforces the bound: a new message drops one.
    let mut sender = [0u8; 32];
    rng.fill_bytes(&mut sender);
    let block = fragments([0xee; 16], &message)
        .unwrap()
        .next()
        .unwrap()
        .to_block();
    let ct = encrypt_block(&sender, &recipient, &block).unwrap();
    assert_eq!(
        inc.accept(&store, &IDENTITY, &ct, ACCOUNT).unwrap(),
        Outcome::Stored
    );
    let (messages, records) = on_disk(&store);
    assert_eq!((messages.len(), records), (BOUND, BOUND));
    assert_eq!(inc.partial_usage().0, BOUND);
    assert_eq!(
        messages.difference(&before.1 .0).count(),
        1,
        "exactly the new message came in"
    );
}
