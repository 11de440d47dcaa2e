//! Generic sealed key-value tables for engine state.
//!
//! Keys are stored as a keyed blind index; the original key is kept inside
//! the sealed value so that listing returns it.

use redb::{ReadableTable, TableDefinition};

use super::codec::{Reader, Writer};
use super::{Store, StoreError};

/// A (key, value) pair.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// The generic tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvTable {
    /// Partial incoming messages being reassembled.
    Partial,
    /// Dedup records of completed incoming messages.
    Dedup,
    /// SURB decryption state for outstanding ACKs.
    Surb,
    /// Anything else.
    Meta,
    /// Markers of incoming messages already reported as unreadable (value:
    /// the Unix time), so retransmissions do not report again; they expire.
    Reports,
}

impl KvTable {
    /// Every generic table.
    pub const ALL: [KvTable; 5] = [
        KvTable::Partial,
        KvTable::Dedup,
        KvTable::Surb,
        KvTable::Meta,
        KvTable::Reports,
    ];

    /// The table's name.
    pub fn name(self) -> &'static str {
        match self {
            KvTable::Partial => "kv_partial",
            KvTable::Dedup => "kv_dedup",
            KvTable::Surb => "kv_surb",
            KvTable::Meta => "kv_meta",
            KvTable::Reports => "kv_reports",
        }
    }

    pub(crate) fn definition(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        TableDefinition::new(self.name())
    }
}

fn encode(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut w = Writer::new(1);
    w.bytes(key).bytes(value);
    w.finish()
}

fn decode(t: KvTable, plain: &[u8]) -> Result<KvPair, StoreError> {
    let mal = |_| StoreError::Malformed(t.name());
    let mut r = Reader::new(plain, 1).map_err(mal)?;
    let k = r.bytes().map_err(mal)?.to_vec();
    let v = r.bytes().map_err(mal)?.to_vec();
    r.end().map_err(mal)?;
    Ok((k, v))
}

impl Store {
    /// Stores `value` under `key`, durably.
    pub fn kv_put(&self, t: KvTable, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let s = &self.inner.sealer;
        let bk = s.blind(t.name(), key);
        let sealed = s.seal(t.name(), &bk, &encode(key, value));
        self.inner.writer.write(
            sealed.len(),
            Box::new(move |tx| {
                tx.open_table(t.definition())?
                    .insert(&bk[..], sealed.as_slice())?;
                Ok(())
            }),
        )
    }

    /// The value stored under `key`.
    pub fn kv_get(&self, t: KvTable, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let s = &self.inner.sealer;
        let bk = s.blind(t.name(), key);
        self.read(|rx| {
            let table = rx.open_table(t.definition())?;
            let Some(v) = table.get(&bk[..])? else {
                return Ok(None);
            };
            let (k, v) = decode(t, &s.open(t.name(), &bk, v.value())?)?;
            if k != key {
                return Err(StoreError::Malformed(t.name()));
            }
            Ok(Some(v))
        })
    }

    /// Removes `key`; true if it existed.
    pub fn kv_remove(&self, t: KvTable, key: &[u8]) -> Result<bool, StoreError> {
        let bk = self.inner.sealer.blind(t.name(), key);
        let found = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let f = found.clone();
        self.inner.writer.write(
            64,
            Box::new(move |tx| {
                let existed = tx.open_table(t.definition())?.remove(&bk[..])?.is_some();
                f.store(existed, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }),
        )?;
        Ok(found.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Stores `puts` and removes `removes` (in any tables) in one durable
    /// transaction: all of it happens, or none.
    pub fn kv_batch(
        &self,
        puts: &[(KvTable, &[u8], &[u8])],
        removes: &[(KvTable, Vec<u8>)],
    ) -> Result<(), StoreError> {
        let s = &self.inner.sealer;
        let sealed: Vec<(KvTable, Vec<u8>, Vec<u8>)> = puts
            .iter()
            .map(|(t, k, v)| {
                let bk = s.blind(t.name(), k);
                let sealed = s.seal(t.name(), &bk, &encode(k, v));
                (*t, bk.to_vec(), sealed)
            })
            .collect();
        let gone: Vec<(KvTable, Vec<u8>)> = removes
            .iter()
            .map(|(t, k)| (*t, s.blind(t.name(), k).to_vec()))
            .collect();
        let bytes = sealed.iter().map(|(_, _, v)| v.len()).sum::<usize>() + 64 * gone.len();
        self.inner.writer.write(
            bytes,
            Box::new(move |tx| {
                for (t, bk, v) in &sealed {
                    tx.open_table(t.definition())?
                        .insert(&bk[..], v.as_slice())?;
                }
                for (t, bk) in &gone {
                    tx.open_table(t.definition())?.remove(&bk[..])?;
                }
                Ok(())
            }),
        )
    }

    /// Removes every key in `keys` in one durable transaction; how many existed.
    pub fn kv_remove_many(&self, t: KvTable, keys: &[Vec<u8>]) -> Result<usize, StoreError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let blind: Vec<_> = keys
            .iter()
            .map(|k| self.inner.sealer.blind(t.name(), k))
            .collect();
        let found = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let f = found.clone();
        self.inner.writer.write(
            64 * blind.len(),
            Box::new(move |tx| {
                let mut table = tx.open_table(t.definition())?;
                let mut n = 0;
                for bk in &blind {
                    n += usize::from(table.remove(&bk[..])?.is_some());
                }
                // The closure may run again (group retry): store, not add.
                f.store(n, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }),
        )?;
        Ok(found.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Calls `f` with each (key, value) pair in the table, one at a time, so
    /// a large table is never held in memory whole.
    pub fn kv_for_each(
        &self,
        t: KvTable,
        mut f: impl FnMut(Vec<u8>, Vec<u8>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let s = &self.inner.sealer;
        self.read(|rx| {
            let table = rx.open_table(t.definition())?;
            for item in table.iter()? {
                let (k, v) = item?;
                let (key, value) = decode(t, &s.open(t.name(), k.value(), v.value())?)?;
                f(key, value)?;
            }
            Ok(())
        })
    }

    /// Every (key, value) pair in the table.
    pub fn kv_list(&self, t: KvTable) -> Result<Vec<KvPair>, StoreError> {
        let s = &self.inner.sealer;
        self.read(|rx| {
            let table = rx.open_table(t.definition())?;
            let mut out = Vec::new();
            for item in table.iter()? {
                let (k, v) = item?;
                let plain = s.open(t.name(), k.value(), v.value())?;
                out.push(decode(t, &plain)?);
            }
            Ok(out)
        })
    }
}
