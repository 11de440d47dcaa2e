//! The inbox: the POP3 maildrop of received messages and local reports.

use rand::RngCore;
use redb::ReadableTable;

use super::blob::{self, MessageRef, PreparedBlob};
use super::codec::{Reader, Writer};
use super::{Store, StoreError, IMAP_FLAGS, INBOX};

const TABLE: &str = "inbox";

/// One message in the maildrop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEntry {
    /// Entry id; ids grow with arrival order.
    pub id: u64,
    /// The message.
    pub message: MessageRef,
    /// Unique id for POP3 UIDL, stable for the life of the message.
    pub uidl: String,
    /// Unix time of arrival.
    pub arrived: u64,
}

pub(super) fn encode(e: &InboxEntry) -> Vec<u8> {
    let mut w = Writer::new(1);
    w.u64(e.message.blob)
        .u64(e.message.len)
        .u32(e.message.chunks)
        .str(&e.uidl)
        .u64(e.arrived);
    w.finish()
}

pub(super) fn decode(id: u64, plain: &[u8]) -> Result<InboxEntry, StoreError> {
    let mal = |_| StoreError::Malformed(TABLE);
    let mut r = Reader::new(plain, 1).map_err(mal)?;
    let e = InboxEntry {
        id,
        message: MessageRef {
            blob: r.u64().map_err(mal)?,
            len: r.u64().map_err(mal)?,
            chunks: r.u32().map_err(mal)?,
        },
        uidl: r.string().map_err(mal)?,
        arrived: r.u64().map_err(mal)?,
    };
    r.end().map_err(mal)?;
    Ok(e)
}

impl Store {
    /// Adds a received message to the inbox, durably.
    pub fn deliver(&self, message: &[u8], arrived: u64) -> Result<InboxEntry, StoreError> {
        let s = &self.inner.sealer;
        // One id for the entry and its blob (separate tables), so that an
        // account that only receives numbers its inbox 1, 2, 3... Ids are
        // unique in the account's store across inbox and queue and never
        // reused, so mail sent in between leaves gaps.
        let id = self.alloc_id();
        let blob = PreparedBlob::new(s, id, message, 1);
        let mut uid = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut uid);
        let entry = InboxEntry {
            id,
            message: blob.mref(),
            uidl: hex::encode(uid),
            arrived,
        };
        let id = entry.id;
        let sealed = s.seal(TABLE, &id.to_be_bytes(), &encode(&entry));
        self.inner.writer.write(
            message.len() + 128,
            Box::new(move |tx| {
                blob.insert(tx)?;
                tx.open_table(INBOX)?.insert(id, sealed.as_slice())?;
                Ok(())
            }),
        )?;
        self.mailbox_changed(Some(&[super::BOX_INBOX]));
        Ok(entry)
    }

    /// All inbox entries in arrival order (a consistent snapshot).
    pub fn inbox_list(&self) -> Result<Vec<InboxEntry>, StoreError> {
        self.read(|rx| {
            let t = rx.open_table(INBOX)?;
            let mut out = Vec::new();
            for item in t.iter()? {
                let (k, v) = item?;
                let id = k.value();
                let plain = self
                    .inner
                    .sealer
                    .open(TABLE, &id.to_be_bytes(), v.value())?;
                out.push(decode(id, &plain)?);
            }
            Ok(out)
        })
    }

    /// Number of messages in the inbox.
    pub fn inbox_len(&self) -> Result<u64, StoreError> {
        use redb::ReadableTableMetadata;
        self.read(|rx| Ok(rx.open_table(INBOX)?.len()?))
    }

    /// Deletes inbox entries (and their messages) in one durable transaction.
    pub fn inbox_delete(&self, ids: &[u64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids = ids.to_vec();
        let s = self.inner.sealer.clone();
        self.inner.writer.write(
            64 * ids.len(),
            Box::new(move |tx| {
                for &id in &ids {
                    let mut t = tx.open_table(INBOX)?;
                    let sealed = match t.remove(id)? {
                        Some(v) => v.value().to_vec(),
                        None => continue,
                    };
                    drop(t);
                    let e = decode(id, &s.open(TABLE, &id.to_be_bytes(), &sealed)?)?;
                    blob::release(tx, &s, e.message.blob)?;
                    tx.open_table(IMAP_FLAGS)?.remove(id)?;
                }
                Ok(())
            }),
        )?;
        self.mailbox_changed(Some(&[super::BOX_INBOX]));
        Ok(())
    }
}
