//! The send queue: one entry per message and recipient.
//!
//! An entry records the recipient, the shared message blob, deadlines and
//! per-block state; the network engine owns the meaning of `engine` (opaque
//! bytes it may use for anything else it must keep across restarts).

use redb::ReadableTable;

use super::blob::{self, MessageRef, PreparedBlob};
use super::codec::{Reader, Writer};
use super::{KvTable, Store, StoreError, QUEUE};

const TABLE: &str = "queue";

/// State of one block of a queued message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockState {
    /// The provider acknowledged the block (SURB-ACK received).
    pub acked: bool,
    /// Unix time at which to retransmit if still unacknowledged (0 = not sent yet).
    pub retransmit_at: u64,
    /// How many times it was sent.
    pub attempts: u32,
}

/// A queue entry (one recipient of one submitted message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    /// Entry id (key in the queue table).
    pub id: u64,
    /// Sending account id.
    pub sender: String,
    /// Recipient address `user@provider`.
    pub recipient: String,
    /// The message.
    pub message: MessageRef,
    /// Unix time of submission.
    pub created: u64,
    /// Unix time after which the message bounces if not fully acknowledged.
    pub bounce_at: u64,
    /// Send unreliably (no SURB-ACKs).
    pub unreliable: bool,
    /// Per-block state (empty until the engine fragments the message).
    pub blocks: Vec<BlockState>,
    /// Opaque engine state.
    pub engine: Vec<u8>,
}

/// What a submission provides for each recipient.
#[derive(Debug, Clone)]
pub struct NewQueueEntry {
    /// Recipient address.
    pub recipient: String,
    /// Unix time of submission.
    pub created: u64,
    /// Bounce deadline.
    pub bounce_at: u64,
    /// Send unreliably.
    pub unreliable: bool,
}

fn encode(e: &QueueEntry) -> Vec<u8> {
    let mut w = Writer::new(1);
    w.str(&e.sender)
        .str(&e.recipient)
        .u64(e.message.blob)
        .u64(e.message.len)
        .u32(e.message.chunks)
        .u64(e.created)
        .u64(e.bounce_at)
        .u8(e.unreliable as u8)
        .u32(e.blocks.len() as u32);
    for b in &e.blocks {
        w.u8(b.acked as u8).u64(b.retransmit_at).u32(b.attempts);
    }
    w.bytes(&e.engine);
    w.finish()
}

fn decode(id: u64, plain: &[u8]) -> Result<QueueEntry, StoreError> {
    let mal = |_| StoreError::Malformed(TABLE);
    let mut r = Reader::new(plain, 1).map_err(mal)?;
    let sender = r.string().map_err(mal)?;
    let recipient = r.string().map_err(mal)?;
    let message = MessageRef {
        blob: r.u64().map_err(mal)?,
        len: r.u64().map_err(mal)?,
        chunks: r.u32().map_err(mal)?,
    };
    let created = r.u64().map_err(mal)?;
    let bounce_at = r.u64().map_err(mal)?;
    let unreliable = r.u8().map_err(mal)? != 0;
    let n = r.u32().map_err(mal)? as usize;
    // Each block takes 13 bytes; bound the allocation by the input size.
    if n > plain.len() / 13 {
        return Err(StoreError::Malformed(TABLE));
    }
    let mut blocks = Vec::with_capacity(n);
    for _ in 0..n {
        blocks.push(BlockState {
            acked: r.u8().map_err(mal)? != 0,
            retransmit_at: r.u64().map_err(mal)?,
            attempts: r.u32().map_err(mal)?,
        });
    }
    let engine = r.bytes().map_err(mal)?.to_vec();
    r.end().map_err(mal)?;
    Ok(QueueEntry {
        id,
        sender,
        recipient,
        message,
        created,
        bounce_at,
        unreliable,
        blocks,
        engine,
    })
}

impl Store {
    /// Stores `message` once and queues it for every recipient, in one
    /// durable transaction. Returns the new entry ids in recipient order.
    pub fn enqueue(
        &self,
        sender: &str,
        message: &[u8],
        recipients: &[NewQueueEntry],
    ) -> Result<Vec<QueueEntry>, StoreError> {
        let (bytes, run, entries) = self.prepare_enqueue(sender, message, recipients, None);
        self.inner.writer.write(bytes, run)?;
        self.inner.queued.added(entries.iter().map(|e| e.id));
        Ok(entries)
    }

    /// Like [`Store::enqueue`], but returns at once with a receiver that
    /// completes when the transaction is durable (for async callers).
    pub fn enqueue_async(
        &self,
        sender: &str,
        message: &[u8],
        recipients: &[NewQueueEntry],
    ) -> (
        Vec<QueueEntry>,
        tokio::sync::oneshot::Receiver<Result<(), StoreError>>,
    ) {
        let (bytes, run, entries) = self.prepare_enqueue(sender, message, recipients, None);
        let rx = self.submit_enqueue(bytes, run, &entries);
        (entries, rx)
    }

    /// Submits an enqueue's transaction; once it is durable, the engines
    /// learn of its entries and the receiver completes.
    fn submit_enqueue(
        &self,
        bytes: usize,
        run: super::writer::WriteFn,
        entries: &[QueueEntry],
    ) -> tokio::sync::oneshot::Receiver<Result<(), StoreError>> {
        let (done, rx) = tokio::sync::oneshot::channel();
        let (queued, ids) = (
            self.inner.queued.clone(),
            entries.iter().map(|e| e.id).collect::<Vec<_>>(),
        );
        self.inner.writer.submit_with(bytes, run, move |r| {
            if r.is_ok() {
                queued.added(ids);
            }
            let _ = done.send(r);
        });
        rx
    }

    /// Like [`Store::enqueue_async`], and also files a copy in the IMAP Sent
    /// mailbox (keyword `$Queued`) in the same transaction, sharing the
    /// message's blob; `arrived` is its internal date.
    pub fn enqueue_async_with_sent(
        &self,
        sender: &str,
        message: &[u8],
        recipients: &[NewQueueEntry],
        arrived: u64,
    ) -> (
        Vec<QueueEntry>,
        tokio::sync::oneshot::Receiver<Result<(), StoreError>>,
    ) {
        let (bytes, run, entries) =
            self.prepare_enqueue(sender, message, recipients, Some(arrived));
        let rx = self.submit_enqueue(bytes, run, &entries);
        // Wake IMAP sessions once the commit is durable.
        let (tx, out) = tokio::sync::oneshot::channel();
        let store = self.clone();
        tokio::spawn(async move {
            let r = rx.await.unwrap_or(Err(StoreError::Closed));
            if r.is_ok() {
                store.mailbox_changed(Some(&[super::BOX_SENT]));
            }
            let _ = tx.send(r);
        });
        (entries, out)
    }

    fn prepare_enqueue(
        &self,
        sender: &str,
        message: &[u8],
        recipients: &[NewQueueEntry],
        sent: Option<u64>,
    ) -> (usize, super::writer::WriteFn, Vec<QueueEntry>) {
        let s = &self.inner.sealer;
        let refs = recipients.len() as u32 + u32::from(sent.is_some());
        let blob = PreparedBlob::new(s, self.alloc_id(), message, refs);
        let entries: Vec<QueueEntry> = recipients
            .iter()
            .map(|r| QueueEntry {
                id: self.alloc_id(),
                sender: sender.to_owned(),
                recipient: r.recipient.clone(),
                message: blob.mref(),
                created: r.created,
                bounce_at: r.bounce_at,
                unreliable: r.unreliable,
                blocks: Vec::new(),
                engine: Vec::new(),
            })
            .collect();
        let sealed: Vec<(u64, Vec<u8>)> = entries
            .iter()
            .map(|e| (e.id, s.seal(TABLE, &e.id.to_be_bytes(), &encode(e))))
            .collect();
        let bytes = message.len() + 256 * sealed.len();
        let sent_copy = sent.map(|arrived| {
            let ids: Vec<u64> = entries.iter().map(|e| e.id).collect();
            super::mailbox::sent_record(s, self.alloc_id(), blob.mref(), &ids, arrived)
        });
        let run = Box::new(move |tx: &redb::WriteTransaction| {
            blob.insert(tx)?;
            if let Some((key, v)) = &sent_copy {
                tx.open_table(super::IMAP_MSGS)?
                    .insert(*key, v.as_slice())?;
            }
            let mut q = tx.open_table(QUEUE)?;
            for (id, v) in &sealed {
                q.insert(*id, v.as_slice())?;
            }
            Ok(())
        });
        (bytes, run, entries)
    }

    /// Ids of all queue entries, oldest first.
    pub fn queue_ids(&self) -> Result<Vec<u64>, StoreError> {
        self.read(|rx| {
            let t = rx.open_table(QUEUE)?;
            let mut ids = Vec::new();
            for item in t.iter()? {
                ids.push(item?.0.value());
            }
            Ok(ids)
        })
    }

    /// Number of queue entries.
    pub fn queue_len(&self) -> Result<u64, StoreError> {
        use redb::ReadableTableMetadata;
        self.read(|rx| Ok(rx.open_table(QUEUE)?.len()?))
    }

    /// One queue entry.
    pub fn queue_get(&self, id: u64) -> Result<Option<QueueEntry>, StoreError> {
        self.read(|rx| {
            let t = rx.open_table(QUEUE)?;
            match t.get(id)? {
                None => Ok(None),
                Some(v) => {
                    let plain = self
                        .inner
                        .sealer
                        .open(TABLE, &id.to_be_bytes(), v.value())?;
                    decode(id, &plain).map(Some)
                }
            }
        })
    }

    /// Rewrites a queue entry (block states, deadlines, engine bytes).
    pub fn queue_update(&self, e: &QueueEntry) -> Result<(), StoreError> {
        let id = e.id;
        let v = self.inner.sealer.seal(TABLE, &id.to_be_bytes(), &encode(e));
        self.inner.writer.write(
            v.len(),
            Box::new(move |tx| {
                let mut q = tx.open_table(QUEUE)?;
                if q.get(id)?.is_none() {
                    return Err(StoreError::NotFound("queue entry"));
                }
                q.insert(id, v.as_slice())?;
                Ok(())
            }),
        )
    }

    /// Rewrites many queue entries in one durable transaction (all or none).
    pub fn queue_update_many(&self, entries: &[QueueEntry]) -> Result<(), StoreError> {
        let s = &self.inner.sealer;
        let sealed: Vec<(u64, Vec<u8>)> = entries
            .iter()
            .map(|e| (e.id, s.seal(TABLE, &e.id.to_be_bytes(), &encode(e))))
            .collect();
        let bytes = sealed.iter().map(|(_, v)| v.len()).sum();
        self.inner.writer.write(
            bytes,
            Box::new(move |tx| {
                let mut q = tx.open_table(QUEUE)?;
                for (id, v) in &sealed {
                    if q.get(*id)?.is_none() {
                        return Err(StoreError::NotFound("queue entry"));
                    }
                    q.insert(*id, v.as_slice())?;
                }
                Ok(())
            }),
        )
    }

    /// Removes a queue entry (sent or bounced) and releases its message.
    pub fn queue_remove(&self, id: u64) -> Result<(), StoreError> {
        self.queue_remove_with(id, KvTable::Meta, &[])
    }

    /// Removes entry `id` and the keys `also` of table `t` in one durable
    /// transaction: a failure leaves all of them, a success none.
    pub fn queue_remove_with(
        &self,
        id: u64,
        t: KvTable,
        also: &[Vec<u8>],
    ) -> Result<(), StoreError> {
        let s = self.inner.sealer.clone();
        let blind: Vec<_> = also.iter().map(|k| s.blind(t.name(), k)).collect();
        self.inner.writer.write(
            64 * (1 + blind.len()),
            Box::new(move |tx| {
                let mut kv = tx.open_table(t.definition())?;
                for bk in &blind {
                    kv.remove(&bk[..])?;
                }
                drop(kv);
                let mut q = tx.open_table(QUEUE)?;
                let sealed = match q.remove(id)? {
                    Some(v) => v.value().to_vec(),
                    None => return Ok(()),
                };
                drop(q);
                let e = decode(id, &s.open(TABLE, &id.to_be_bytes(), &sealed)?)?;
                blob::release(tx, &s, e.message.blob)
            }),
        )
    }
}
