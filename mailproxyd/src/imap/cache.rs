//! In-memory caches of what never changes about a stored message, shared by
//! every IMAP session: its parsed MIME structure ([`MimeCache`]) and its
//! decrypted bytes ([`BodyCache`]). Both are keyed by (account, blob): a
//! blob's bytes are immutable, and a store never hands out an id twice while
//! the daemon runs (the caches live no longer).
//!
//! Nothing here is ever written to disk. The body cache holds plaintext in
//! process memory only, bounded in bytes, and only while the account has an
//! IMAP session or had one within a grace period (a client that reconnects
//! to poll finds its messages warm): [`Caches::sweep`] then drops the
//! account's bodies, as a session seeing messages expunged drops theirs.
//! Every body is zeroed when its last holder drops it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lru::LruCache;
use zeroize::Zeroizing;

use super::mime;

/// Most messages whose structure is cached.
const MIME_ENTRIES: usize = 4096;

/// Bytes of decrypted bodies kept, across accounts (with [`ENTRY_OVERHEAD`]
/// for each).
pub const BODY_CACHE_BYTES: usize = 64 << 20;
/// What an entry costs beside its body: key, reference count, vector
/// header and the LRU's node, rounded up.
pub const ENTRY_OVERHEAD: usize = 256;
/// Largest body kept: bigger ones are decrypted on each read, so that one
/// large attachment does not push out many ordinary messages.
pub const BODY_CACHE_MAX_ENTRY: usize = 1 << 20;

/// The caches, as the sessions share them.
#[derive(Debug)]
pub struct Caches {
    /// Parsed structures.
    pub mime: MimeCache,
    /// Decrypted bodies.
    pub bodies: BodyCache,
    /// Accounts whose last IMAP session ended, and when (one entry per
    /// logged-in account at most).
    idle_since: Mutex<HashMap<String, Instant>>,
}

impl Default for Caches {
    fn default() -> Self {
        Caches {
            mime: MimeCache::default(),
            bodies: BodyCache::new(BODY_CACHE_BYTES, BODY_CACHE_MAX_ENTRY),
            idle_since: Mutex::default(),
        }
    }
}

impl Caches {
    /// Drops what is cached of `blobs` of `account` (they were expunged).
    pub fn forget(&self, account: &str, blobs: &[u64]) {
        self.bodies.forget(account, blobs);
        self.mime.forget(account, blobs);
    }

    /// Drops every body of `account`.
    pub fn forget_account(&self, account: &str) {
        self.bodies.forget_account(account);
    }

    /// Notes that `account`'s last IMAP session ended now.
    pub fn account_idle(&self, account: &str) {
        lock(&self.idle_since).insert(account.to_owned(), Instant::now());
    }

    /// Drops the bodies of the accounts idle for `grace` or longer, unless
    /// `in_use` says they have a session again.
    pub fn sweep(&self, grace: Duration, in_use: impl Fn(&str) -> bool) {
        let due: Vec<String> = {
            let mut idle = lock(&self.idle_since);
            idle.retain(|a, _| !in_use(a));
            let due: Vec<String> = idle
                .iter()
                .filter(|(_, since)| since.elapsed() >= grace)
                .map(|(a, _)| a.clone())
                .collect();
            for a in &due {
                idle.remove(a);
            }
            due
        };
        for a in due {
            self.forget_account(&a);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Parsed MIME structure of messages, by (account, blob): each message is
/// parsed once.
#[derive(Debug, Default)]
pub struct MimeCache {
    map: Mutex<HashMap<(String, u64), Arc<mime::Parsed>>>,
}

impl MimeCache {
    /// The structure of blob `blob` of `account`, parsing `raw` if needed.
    pub fn get_or_parse(&self, account: &str, blob: u64, raw: &[u8]) -> Arc<mime::Parsed> {
        let key = (account.to_owned(), blob);
        if let Some(p) = lock(&self.map).get(&key) {
            return p.clone();
        }
        let parsed = Arc::new(mime::parse(raw));
        let mut map = lock(&self.map);
        if map.len() >= MIME_ENTRIES {
            // Bounded: start over rather than track recency.
            map.clear();
        }
        map.insert(key, parsed.clone());
        parsed
    }

    /// The cached structure, if any.
    pub fn get(&self, account: &str, blob: u64) -> Option<Arc<mime::Parsed>> {
        lock(&self.map).get(&(account.to_owned(), blob)).cloned()
    }

    fn forget(&self, account: &str, blobs: &[u64]) {
        let mut map = lock(&self.map);
        for &b in blobs {
            map.remove(&(account.to_owned(), b));
        }
    }
}

/// A decrypted message body, zeroed when the last holder drops it.
pub type Body = Arc<Zeroizing<Vec<u8>>>;

/// `bytes` as a [`Body`].
pub fn body(bytes: Vec<u8>) -> Body {
    Arc::new(Zeroizing::new(bytes))
}

/// Decrypted bodies most recently read, by (account, blob), least recently
/// used first out, within a bound on their total size.
///
/// Dovecot serves a warm mailbox from the page cache; this is the same for
/// a store whose bytes are sealed, without putting plaintext on disk.
#[derive(Debug)]
pub struct BodyCache {
    inner: Mutex<Lru>,
    capacity: usize,
    max_entry: usize,
}

#[derive(Debug)]
struct Lru {
    map: LruCache<(String, u64), Body>,
    /// Bodies' lengths plus [`ENTRY_OVERHEAD`] each.
    bytes: usize,
    /// Bumped by every forget: a body read while it changed may have been
    /// forgotten meanwhile, and is not kept.
    generation: u64,
}

fn cost(body: &Body) -> usize {
    body.len() + ENTRY_OVERHEAD
}

impl BodyCache {
    /// A cache of at most `capacity` bytes, keeping no body over `max_entry`.
    pub fn new(capacity: usize, max_entry: usize) -> Self {
        BodyCache {
            inner: Mutex::new(Lru {
                map: LruCache::unbounded(),
                bytes: 0,
                generation: 0,
            }),
            capacity,
            max_entry: max_entry.min(capacity),
        }
    }

    /// Blob `blob` of `account`, from the cache or from `read` (whose result
    /// is then kept, if small enough). An error from `read` is returned as is
    /// and nothing is kept.
    pub fn get_or_read<E>(
        &self,
        account: &str,
        blob: u64,
        read: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<Body, E> {
        let key = (account.to_owned(), blob);
        let generation = {
            let mut c = lock(&self.inner);
            if let Some(b) = c.map.get(&key) {
                return Ok(b.clone());
            }
            c.generation
        };
        // Read without the lock: other sessions go on meanwhile.
        let body = self::body(read()?);
        if body.len() <= self.max_entry {
            let mut evicted = Vec::new();
            let mut c = lock(&self.inner);
            if c.generation == generation {
                if let Some(old) = c.map.put(key, body.clone()) {
                    c.bytes -= cost(&old);
                    evicted.push(old);
                }
                c.bytes += cost(&body);
                while c.bytes > self.capacity {
                    match c.map.pop_lru() {
                        Some((_, old)) => {
                            c.bytes -= cost(&old);
                            evicted.push(old);
                        }
                        None => break,
                    }
                }
            }
            drop(c);
            // Zeroed here, outside the lock.
            drop(evicted);
        }
        Ok(body)
    }

    /// Blob `blob` of `account` if it is cached, else `read`'s result, which
    /// is not kept (a scan such as SEARCH BODY would push out what FETCH
    /// reads again).
    pub fn get_or_read_once<E>(
        &self,
        account: &str,
        blob: u64,
        read: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<Body, E> {
        if let Some(b) = lock(&self.inner).map.get(&(account.to_owned(), blob)) {
            return Ok(b.clone());
        }
        Ok(self::body(read()?))
    }

    /// Drops `blobs` of `account`.
    pub fn forget(&self, account: &str, blobs: &[u64]) {
        self.forget_keys(blobs.iter().map(|&b| (account.to_owned(), b)).collect());
    }

    /// Drops every body of `account`.
    pub fn forget_account(&self, account: &str) {
        let keys = lock(&self.inner)
            .map
            .iter()
            .map(|(k, _)| k)
            .filter(|(a, _)| a == account)
            .cloned()
            .collect();
        self.forget_keys(keys);
    }

    fn forget_keys(&self, keys: Vec<(String, u64)>) {
        let mut dropped = Vec::with_capacity(keys.len());
        let mut c = lock(&self.inner);
        c.generation += 1;
        for k in keys {
            if let Some(old) = c.map.pop(&k) {
                c.bytes -= cost(&old);
                dropped.push(old);
            }
        }
        drop(c);
        // Zeroed here, outside the lock.
        drop(dropped);
    }

    /// Bytes and bodies held now.
    pub fn usage(&self) -> (usize, usize) {
        let c = lock(&self.inner);
        (c.bytes, c.map.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    const O: usize = ENTRY_OVERHEAD;

    fn read(reads: &Cell<u32>, len: usize) -> impl FnOnce() -> Result<Vec<u8>, ()> + '_ {
        move || {
            reads.set(reads.get() + 1);
            Ok(vec![7; len])
        }
    }

    #[test]
    fn a_body_is_read_once_then_served_from_memory() {
        let c = BodyCache::new(10_000, 5_000);
        let reads = Cell::new(0);
        let a = c.get_or_read("a@p", 1, read(&reads, 100)).unwrap();
        let b = c.get_or_read("a@p", 1, read(&reads, 100)).unwrap();
        assert_eq!(reads.get(), 1);
        assert!(Arc::ptr_eq(&a, &b));
        // Another account's blob 1 is another message.
        c.get_or_read("b@p", 1, read(&reads, 100)).unwrap();
        assert_eq!(reads.get(), 2);
        assert_eq!(c.usage(), (2 * (100 + O), 2));
    }

    #[test]
    fn the_total_with_overheads_stays_within_capacity_least_recently_used_out() {
        let c = BodyCache::new(3 * (300 + O) + 10, 500);
        let reads = Cell::new(0);
        for blob in 0..4 {
            c.get_or_read("a@p", blob, read(&reads, 300)).unwrap();
        }
        assert_eq!(c.usage(), (3 * (300 + O), 3), "blob 0 made room");
        // Blob 1 is used, so blob 2 is the next out.
        c.get_or_read("a@p", 1, read(&reads, 300)).unwrap();
        assert_eq!(reads.get(), 4);
        c.get_or_read("a@p", 9, read(&reads, 300)).unwrap();
        c.get_or_read("a@p", 1, read(&reads, 300)).unwrap();
        assert_eq!(reads.get(), 5, "blob 1 stayed");
        c.get_or_read("a@p", 2, read(&reads, 300)).unwrap();
        assert_eq!(reads.get(), 6, "blob 2 was evicted");
        assert!(c.usage().0 <= 3 * (300 + O) + 10);
        // Empty bodies are not free: the count is bounded too.
        for blob in 100..200 {
            c.get_or_read("a@p", blob, read(&reads, 0)).unwrap();
        }
        assert!(c.usage().1 <= (3 * (300 + O) + 10) / O, "{:?}", c.usage());
    }

    #[test]
    fn large_bodies_and_failed_reads_are_not_kept() {
        let c = BodyCache::new(10_000, 500);
        let reads = Cell::new(0);
        let big = c.get_or_read("a@p", 1, read(&reads, 501)).unwrap();
        assert_eq!(big.len(), 501);
        assert_eq!(c.usage(), (0, 0));
        let e: Result<Body, &str> = c.get_or_read("a@p", 2, || Err("disk"));
        assert_eq!(e.unwrap_err(), "disk");
        assert_eq!(c.usage(), (0, 0));
    }

    #[test]
    fn forgotten_bodies_are_read_again_and_one_forgotten_mid_read_is_not_kept() {
        let c = BodyCache::new(10_000, 5_000);
        let reads = Cell::new(0);
        c.get_or_read("a@p", 1, read(&reads, 10)).unwrap();
        c.get_or_read("a@p", 2, read(&reads, 20)).unwrap();
        c.forget("a@p", &[1, 3]);
        assert_eq!(c.usage(), (20 + O, 1));
        c.get_or_read("a@p", 1, read(&reads, 10)).unwrap();
        assert_eq!(reads.get(), 3);
        // Expunged by another session while this one was reading it.
        let b = c
            .get_or_read("a@p", 5, || {
                c.forget("a@p", &[5]);
                Ok::<_, ()>(vec![1; 50])
            })
            .unwrap();
        assert_eq!(b.len(), 50, "the reader still gets what it read");
        assert_eq!(c.usage().1, 2, "but it is not kept");
        // The account's last session ends: all its bodies go, others stay.
        c.get_or_read("b@p", 1, read(&reads, 10)).unwrap();
        c.forget_account("a@p");
        assert_eq!(c.usage(), (10 + O, 1));
    }

    #[test]
    fn an_idle_accounts_bodies_go_after_the_grace_period_unless_it_is_back() {
        let c = Caches::default();
        let reads = Cell::new(0);
        for a in ["a@p", "b@p", "c@p"] {
            c.bodies.get_or_read(a, 1, read(&reads, 10)).unwrap();
            c.account_idle(a);
        }
        // Within the grace period, or with a session again: kept.
        c.sweep(Duration::from_secs(3600), |_| false);
        c.sweep(Duration::ZERO, |a| a == "b@p");
        assert_eq!(c.bodies.usage().1, 1, "only b@p is left");
        // b@p is no longer idle: a later sweep leaves it alone.
        c.sweep(Duration::ZERO, |_| false);
        assert_eq!(c.bodies.usage().1, 1);
        c.account_idle("b@p");
        c.sweep(Duration::ZERO, |_| false);
        assert_eq!(c.bodies.usage(), (0, 0));
    }

    #[test]
    fn a_scan_reads_through_without_filling_the_cache() {
        let c = BodyCache::new(10_000, 5_000);
        let reads = Cell::new(0);
        c.get_or_read("a@p", 1, read(&reads, 10)).unwrap();
        c.get_or_read_once("a@p", 1, read(&reads, 10)).unwrap();
        assert_eq!(reads.get(), 1, "a cached body is used");
        let b = c.get_or_read_once("a@p", 2, read(&reads, 30)).unwrap();
        assert_eq!((b.len(), reads.get()), (30, 2));
        assert_eq!(c.usage(), (10 + O, 1), "nothing added");
    }
}
