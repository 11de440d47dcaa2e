//! Message contents, sealed in fixed-size chunks.
//!
//! A blob has a sealed head (length, chunk count, reference count) and its
//! chunks, each sealed with the blob id and chunk index as associated data;
//! the head's length and count detect missing or truncated chunks.

use std::sync::Arc;

use redb::{ReadableTable, WriteTransaction};

use super::codec::{Reader, Writer};
use super::seal::Sealer;
use super::{Store, StoreError, BLOB_CHUNK, BLOB_HEAD};

/// Plaintext bytes per sealed chunk.
pub const CHUNK_SIZE: usize = 128 * 1024;

const HEAD_TABLE: &str = "blob_head";
const CHUNK_TABLE: &str = "blob_chunk";

/// Where a stored message is and how big it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRef {
    /// Blob id.
    pub blob: u64,
    /// Length in bytes.
    pub len: u64,
    /// Number of chunks.
    pub chunks: u32,
}

pub(crate) struct Head {
    pub len: u64,
    pub chunks: u32,
    pub refs: u32,
}

fn chunk_key(blob: u64, idx: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&blob.to_be_bytes());
    k[8..].copy_from_slice(&idx.to_be_bytes());
    k
}

pub(crate) fn seal_head(s: &Sealer, blob: u64, h: &Head) -> Vec<u8> {
    let mut w = Writer::new(1);
    w.u64(h.len).u32(h.chunks).u32(h.refs);
    s.seal(HEAD_TABLE, &blob.to_be_bytes(), &w.finish())
}

pub(crate) fn open_head(s: &Sealer, blob: u64, sealed: &[u8]) -> Result<Head, StoreError> {
    let plain = s.open(HEAD_TABLE, &blob.to_be_bytes(), sealed)?;
    let mal = |_| StoreError::Malformed(HEAD_TABLE);
    let mut r = Reader::new(&plain, 1).map_err(mal)?;
    let h = Head {
        len: r.u64().map_err(mal)?,
        chunks: r.u32().map_err(mal)?,
        refs: r.u32().map_err(mal)?,
    };
    r.end().map_err(mal)?;
    Ok(h)
}

/// A message sealed and ready to insert.
pub(crate) struct PreparedBlob {
    pub id: u64,
    pub head: Vec<u8>,
    pub chunks: Vec<Vec<u8>>,
    pub len: u64,
}

impl PreparedBlob {
    pub(crate) fn new(s: &Sealer, id: u64, message: &[u8], refs: u32) -> Self {
        let chunks: Vec<Vec<u8>> = message
            .chunks(CHUNK_SIZE)
            .enumerate()
            .map(|(i, c)| s.seal(CHUNK_TABLE, &chunk_key(id, i as u32), c))
            .collect();
        let head = seal_head(
            s,
            id,
            &Head {
                len: message.len() as u64,
                chunks: chunks.len() as u32,
                refs,
            },
        );
        PreparedBlob {
            id,
            head,
            chunks,
            len: message.len() as u64,
        }
    }

    pub(crate) fn insert(&self, tx: &WriteTransaction) -> Result<(), StoreError> {
        let mut heads = tx.open_table(BLOB_HEAD)?;
        heads.insert(self.id, self.head.as_slice())?;
        let mut chunks = tx.open_table(BLOB_CHUNK)?;
        for (i, c) in self.chunks.iter().enumerate() {
            chunks.insert((self.id, i as u32), c.as_slice())?;
        }
        Ok(())
    }

    pub(crate) fn mref(&self) -> MessageRef {
        MessageRef {
            blob: self.id,
            len: self.len,
            chunks: self.chunks.len() as u32,
        }
    }
}

/// Drops one reference to a blob inside `tx`, deleting it at zero.
pub(crate) fn release(tx: &WriteTransaction, s: &Arc<Sealer>, blob: u64) -> Result<(), StoreError> {
    let mut heads = tx.open_table(BLOB_HEAD)?;
    let sealed = match heads.get(blob)? {
        Some(v) => v.value().to_vec(),
        None => return Ok(()),
    };
    let mut h = open_head(s, blob, &sealed)?;
    h.refs = h.refs.saturating_sub(1);
    if h.refs == 0 {
        heads.remove(blob)?;
        let mut chunks = tx.open_table(BLOB_CHUNK)?;
        for i in 0..h.chunks {
            chunks.remove((blob, i))?;
        }
    } else {
        heads.insert(blob, seal_head(s, blob, &h).as_slice())?;
    }
    Ok(())
}

impl Store {
    /// Size and chunk count of a stored message.
    pub fn message_ref(&self, blob: u64) -> Result<MessageRef, StoreError> {
        self.read(|rx| {
            let t = rx.open_table(BLOB_HEAD)?;
            let v = t.get(blob)?.ok_or(StoreError::NotFound("message"))?;
            let h = open_head(&self.inner.sealer, blob, v.value())?;
            Ok(MessageRef {
                blob,
                len: h.len,
                chunks: h.chunks,
            })
        })
    }

    /// Reads and authenticates chunk `idx` of a message.
    pub fn read_chunk(&self, m: &MessageRef, idx: u32) -> Result<Vec<u8>, StoreError> {
        if idx >= m.chunks {
            return Err(StoreError::NotFound("message chunk"));
        }
        self.read(|rx| self.open_chunk(&rx.open_table(BLOB_CHUNK)?, m, idx))
    }

    /// Opens chunk `idx` of `m` from the chunk table and checks its length
    /// against the head's.
    fn open_chunk(
        &self,
        t: &impl ReadableTable<(u64, u32), &'static [u8]>,
        m: &MessageRef,
        idx: u32,
    ) -> Result<Vec<u8>, StoreError> {
        let v = t
            .get((m.blob, idx))?
            .ok_or(StoreError::NotFound("message chunk"))?;
        let plain = self
            .inner
            .sealer
            .open(CHUNK_TABLE, &chunk_key(m.blob, idx), v.value())?;
        let expect = if idx + 1 < m.chunks {
            CHUNK_SIZE as u64
        } else {
            m.len - CHUNK_SIZE as u64 * (m.chunks as u64 - 1)
        };
        if plain.len() as u64 != expect {
            return Err(StoreError::Malformed(CHUNK_TABLE));
        }
        Ok(plain)
    }

    /// Reads a whole message into memory (use [`Store::read_chunk`] to stream).
    pub fn read_message(&self, blob: u64) -> Result<Vec<u8>, StoreError> {
        // A one-chunk message is returned as opened, without a copy.
        let m = self.message_ref(blob)?;
        self.read(|rx| {
            let t = rx.open_table(BLOB_CHUNK)?;
            if m.chunks == 1 {
                return self.open_chunk(&t, &m, 0);
            }
            let mut out = Vec::with_capacity(m.len.min(64 << 20) as usize);
            for i in 0..m.chunks {
                out.extend_from_slice(&self.open_chunk(&t, &m, i)?);
            }
            if out.len() as u64 != m.len {
                return Err(StoreError::Malformed(CHUNK_TABLE));
            }
            Ok(out)
        })
    }
}
