//! Key discovery (`InsecureKeyDiscovery`): one keyserver query per unknown
//! recipient, shared by every queue entry waiting for that recipient.
//!
//! The queue entries themselves are the parked mail (they survive restarts);
//! the queries live in one small store record so a restart neither loses an
//! outstanding query nor sends it again before its reply is overdue. A query
//! is sent before normal mail, with a SURB (its SURB record carries
//! [`QUERY_ENTRY`] instead of a queue id), and is never re-sent before its
//! ETA plus RetransmitSlack; it is tried at most [`MAX_ATTEMPTS`] times and
//! given up after UrgentQueueLifetime.

use crate::store::codec::{Reader, Writer};
use crate::store::{KvTable, Store};

use super::EngineError;

/// The SURB-record "entry" of a key query (queue ids start at 1).
pub(super) const QUERY_ENTRY: u64 = 0;
/// Most times one query is sent.
pub(super) const MAX_ATTEMPTS: u8 = 3;

const RECORD_KEY: &[u8] = b"engine/discovery";
const VERSION: u8 = 1;
/// More queries than this in one record means a damaged record.
const MAX_QUERIES: usize = 100_000;

/// One outstanding key discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Query {
    /// `user@provider`, lower case.
    pub recipient: String,
    /// Unix seconds the discovery started (UrgentQueueLifetime runs from here).
    pub created: u64,
    /// How many times the query was sent.
    pub attempts: u8,
    /// SURB id of the latest attempt.
    pub surb_id: [u8; 16],
    /// Unix seconds after which the latest attempt's reply is overdue (0: not sent).
    pub overdue_at: u64,
}

/// What to do about a query now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Due {
    /// Send (or re-send) it.
    Send,
    /// Give up: this is why.
    Fail(String),
    /// Wait for its reply.
    Wait,
}

impl Query {
    /// What is due at `now` with lifetime `lifetime_secs`.
    pub(super) fn due(&self, now: u64, lifetime_secs: u64) -> Due {
        // Strictly after: `created` is rounded down to whole seconds.
        if now > self.created.saturating_add(lifetime_secs) {
            return Due::Fail(format!(
                "no key obtained within the urgent queue lifetime ({lifetime_secs} s)"
            ));
        }
        if self.attempts == 0 {
            return Due::Send;
        }
        if now < self.overdue_at {
            return Due::Wait;
        }
        if self.attempts >= MAX_ATTEMPTS {
            return Due::Fail(format!(
                "the keyserver did not answer ({} queries)",
                self.attempts
            ));
        }
        Due::Send
    }
}

/// Every outstanding query, mirrored in the store.
#[derive(Debug, Default, Clone)]
pub(super) struct Discoveries {
    queries: Vec<Query>,
}

impl Discoveries {
    /// Loads the queries (a damaged record is dropped: its entries simply
    /// start discovery again).
    pub(super) fn load(store: &Store) -> Result<Discoveries, EngineError> {
        let Some(v) = store.kv_get(KvTable::Meta, RECORD_KEY)? else {
            return Ok(Discoveries::default());
        };
        match decode(&v) {
            Some(queries) => Ok(Discoveries { queries }),
            None => {
                tracing::warn!("damaged key discovery record dropped");
                Ok(Discoveries::default())
            }
        }
    }

    /// Writes the queries to the store (durably).
    pub(super) fn save(&self, store: &Store) -> Result<(), EngineError> {
        if self.queries.is_empty() {
            store.kv_remove(KvTable::Meta, RECORD_KEY)?;
        } else {
            store.kv_put(KvTable::Meta, RECORD_KEY, &encode(&self.queries))?;
        }
        Ok(())
    }

    /// All queries.
    pub(super) fn queries(&self) -> &[Query] {
        &self.queries
    }

    /// The query for `recipient`.
    pub(super) fn get(&self, recipient: &str) -> Option<&Query> {
        self.queries.iter().find(|q| q.recipient == recipient)
    }

    /// The query for `recipient`, mutable.
    pub(super) fn get_mut(&mut self, recipient: &str) -> Option<&mut Query> {
        self.queries.iter_mut().find(|q| q.recipient == recipient)
    }

    /// Starts a discovery for `recipient` unless one runs. True if new.
    pub(super) fn ensure(&mut self, recipient: &str, now: u64) -> bool {
        if self.get(recipient).is_some() {
            return false;
        }
        self.queries.push(Query {
            recipient: recipient.to_owned(),
            created: now,
            attempts: 0,
            surb_id: [0; 16],
            overdue_at: 0,
        });
        true
    }

    /// The recipient whose latest query used `surb_id`.
    pub(super) fn by_surb(&self, surb_id: &[u8; 16]) -> Option<String> {
        self.queries
            .iter()
            .find(|q| q.attempts > 0 && &q.surb_id == surb_id)
            .map(|q| q.recipient.clone())
    }

    /// Forgets the query for `recipient`; returns it.
    pub(super) fn remove(&mut self, recipient: &str) -> Option<Query> {
        let i = self.queries.iter().position(|q| q.recipient == recipient)?;
        Some(self.queries.remove(i))
    }

    /// The SURB ids of sent queries (their SURB records are live).
    pub(super) fn live_surbs(&self) -> impl Iterator<Item = [u8; 16]> + '_ {
        self.queries
            .iter()
            .filter(|q| q.attempts > 0)
            .map(|q| q.surb_id)
    }
}

fn encode(queries: &[Query]) -> Vec<u8> {
    let mut w = Writer::new(VERSION);
    w.u32(queries.len() as u32);
    for q in queries {
        w.str(&q.recipient)
            .u64(q.created)
            .u8(q.attempts)
            .bytes(&q.surb_id)
            .u64(q.overdue_at);
    }
    w.finish()
}

fn decode(v: &[u8]) -> Option<Vec<Query>> {
    let mut r = Reader::new(v, VERSION).ok()?;
    let n = r.u32().ok()? as usize;
    // Each query takes at least 37 bytes: bound the allocation by the input.
    if n > MAX_QUERIES || n > v.len() / 37 {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(Query {
            recipient: r.string().ok()?,
            created: r.u64().ok()?,
            attempts: r.u8().ok()?,
            surb_id: r.bytes().ok()?.try_into().ok()?,
            overdue_at: r.u64().ok()?,
        });
    }
    r.end().ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{KeySource, StorageKey};

    fn q(attempts: u8, overdue_at: u64) -> Query {
        Query {
            recipient: "bob@p2".into(),
            created: 100,
            attempts,
            surb_id: [7; 16],
            overdue_at,
        }
    }

    #[test]
    fn queries_are_sent_once_then_retried_a_bounded_number_of_times() {
        assert_eq!(q(0, 0).due(100, 60), Due::Send);
        assert_eq!(q(1, 130).due(120, 60), Due::Wait, "reply not overdue yet");
        assert_eq!(q(1, 130).due(130, 60), Due::Send, "overdue: retry");
        assert_eq!(q(MAX_ATTEMPTS, 130).due(129, 60), Due::Wait);
        assert!(matches!(q(MAX_ATTEMPTS, 130).due(130, 60), Due::Fail(_)));
        assert_eq!(q(1, 1000).due(160, 60), Due::Wait, "a full lifetime");
        assert!(matches!(q(1, 1000).due(161, 60), Due::Fail(_)), "lifetime");
        assert!(matches!(q(0, 0).due(161, 60), Due::Fail(_)), "never sent");
    }

    #[test]
    fn queries_persist_and_damage_is_survived() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open(dir.path(), &KeySource::Raw(StorageKey::from_bytes([4; 32]))).unwrap();
        let mut d = Discoveries::load(&store).unwrap();
        assert!(d.ensure("bob@p2", 5));
        assert!(!d.ensure("bob@p2", 6), "one query per recipient");
        assert!(d.ensure("carol@p3", 7));
        {
            let bob = d.get_mut("bob@p2").unwrap();
            bob.attempts = 1;
            bob.surb_id = [9; 16];
            bob.overdue_at = 99;
        }
        d.save(&store).unwrap();
        let d2 = Discoveries::load(&store).unwrap();
        assert_eq!(d2.queries(), d.queries());
        assert_eq!(d2.by_surb(&[9; 16]).as_deref(), Some("bob@p2"));
        assert_eq!(d2.by_surb(&[0; 16]), None, "unsent queries have no SURB");
        assert_eq!(d2.live_surbs().collect::<Vec<_>>(), vec![[9; 16]]);
        // Truncated or inflated records decode to nothing, never panic.
        let raw = encode(d.queries());
        for cut in 0..raw.len() {
            assert!(decode(&raw[..cut]).is_none());
        }
        let mut huge = raw.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(&huge).is_none());
        store.kv_put(KvTable::Meta, RECORD_KEY, b"junk").unwrap();
        assert!(Discoveries::load(&store).unwrap().queries().is_empty());
        let mut d3 = d2;
        d3.remove("bob@p2");
        d3.remove("carol@p3");
        d3.save(&store).unwrap();
        assert!(store.kv_get(KvTable::Meta, RECORD_KEY).unwrap().is_none());
    }
}
