//! IMAP mailboxes: INBOX (the POP3 maildrop, plus sealed IMAP flags per
//! entry), Sent, Trash and the mailboxes the user creates.
//!
//! - INBOX messages are the inbox entries ([`super::inbox`]); their UID is
//!   the entry id and their flags live in `imap_flags`, so a deletion by
//!   POP3 or IMAP is gone for both.
//! - Every other message is a record in `imap_msgs` keyed by (mailbox, uid),
//!   referencing a shared blob (COPY adds a reference, never a copy).
//! - UIDs come from the store's id counter, which never goes back (its
//!   high-water mark is persisted with every commit): they strictly increase
//!   and are never reused, so UIDVALIDITY never has to change for the fixed
//!   mailboxes; a user mailbox's UIDVALIDITY is its (never reused) id.
//! - Sent copies are written in the enqueue's own transaction (see
//!   [`Store::enqueue_async_with_sent`]) with the ids of their queue entries
//!   still pending; [`Store::sent_settle`] turns `$Queued` into `$Delivered`
//!   or `$Bounced` as the engine settles each entry.
//!
//! Every change bumps the watch channel of each mailbox it touched after its
//! commit is durable ([`Store::mailbox_changes`]; a DELETE or RENAME, every
//! mailbox's): an IMAP session wakes for its selected mailbox only.

use std::sync::{Arc, Mutex};

use rand::RngCore;
use redb::{ReadableTable, WriteTransaction};

use super::blob::{self, MessageRef, PreparedBlob};
use super::codec::{Reader, Writer};
use super::inbox::{self, InboxEntry};
use super::seal::Sealer;
use super::{Store, StoreError, BLOB_HEAD, IMAP_BOXES, IMAP_FLAGS, IMAP_MSGS, INBOX, QUEUE};

const MSG_TABLE: &str = "imap_msgs";
const BOX_TABLE: &str = "imap_boxes";
const FLAGS_TABLE: &str = "imap_flags";

/// Mailbox id of INBOX.
pub const BOX_INBOX: u64 = 0;
/// Mailbox id of Sent.
pub const BOX_SENT: u64 = 1;
/// Mailbox id of Trash.
pub const BOX_TRASH: u64 = 2;
/// User mailbox ids are store ids plus this (clear of the fixed ones).
const USER_BOX_BASE: u64 = 1000;

/// Keyword of a Sent message some of whose recipients are still queued.
pub const KW_QUEUED: &str = "$Queued";
/// Keyword of a Sent message every recipient's provider acknowledged.
pub const KW_DELIVERED: &str = "$Delivered";
/// Keyword of a Sent message that bounced for some recipient.
pub const KW_BOUNCED: &str = "$Bounced";

/// The special use of a mailbox (RFC 6154).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// INBOX.
    Inbox,
    /// \Sent.
    Sent,
    /// \Trash.
    Trash,
    /// A mailbox the user created.
    None,
}

/// One mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxInfo {
    /// Mailbox id.
    pub id: u64,
    /// Name (hierarchy delimiter `/`).
    pub name: String,
    /// Special use.
    pub special: Special,
    /// UIDVALIDITY.
    pub uidvalidity: u32,
}

/// One message of a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailMsg {
    /// UID (a store id).
    pub uid: u64,
    /// The message.
    pub message: MessageRef,
    /// Flags and keywords as IMAP atoms (`\Seen`, `$Delivered`).
    pub flags: Vec<String>,
    /// Internal date (Unix time).
    pub internal: u64,
    /// Sent only: queue entries not yet settled.
    pub pending: Vec<u64>,
}

/// How the engine settled one queue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Every block acknowledged.
    Delivered,
    /// Bounced.
    Bounced,
    /// Removed by the user before it was settled.
    Cancelled,
}

fn fixed() -> [MailboxInfo; 3] {
    [
        MailboxInfo {
            id: BOX_INBOX,
            name: "INBOX".into(),
            special: Special::Inbox,
            uidvalidity: 1,
        },
        MailboxInfo {
            id: BOX_SENT,
            name: "Sent".into(),
            special: Special::Sent,
            uidvalidity: 1,
        },
        MailboxInfo {
            id: BOX_TRASH,
            name: "Trash".into(),
            special: Special::Trash,
            uidvalidity: 1,
        },
    ]
}

fn msg_key(mailbox: u64, uid: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&mailbox.to_be_bytes());
    k[8..].copy_from_slice(&uid.to_be_bytes());
    k
}

fn encode_msg(m: &MailMsg) -> Vec<u8> {
    let mut w = Writer::new(1);
    w.u64(m.message.blob)
        .u64(m.message.len)
        .u32(m.message.chunks)
        .u64(m.internal)
        .u32(m.flags.len() as u32);
    for f in &m.flags {
        w.str(f);
    }
    w.u32(m.pending.len() as u32);
    for p in &m.pending {
        w.u64(*p);
    }
    w.finish()
}

fn decode_msg(uid: u64, plain: &[u8]) -> Result<MailMsg, StoreError> {
    let mal = |_| StoreError::Malformed(MSG_TABLE);
    let mut r = Reader::new(plain, 1).map_err(mal)?;
    let message = MessageRef {
        blob: r.u64().map_err(mal)?,
        len: r.u64().map_err(mal)?,
        chunks: r.u32().map_err(mal)?,
    };
    let internal = r.u64().map_err(mal)?;
    let flags = read_flags(&mut r, plain.len()).map_err(|_| StoreError::Malformed(MSG_TABLE))?;
    let n = r.u32().map_err(mal)? as usize;
    if n > plain.len() / 8 {
        return Err(StoreError::Malformed(MSG_TABLE));
    }
    let mut pending = Vec::with_capacity(n);
    for _ in 0..n {
        pending.push(r.u64().map_err(mal)?);
    }
    r.end().map_err(mal)?;
    Ok(MailMsg {
        uid,
        message,
        flags,
        internal,
        pending,
    })
}

fn read_flags(r: &mut Reader<'_>, bound: usize) -> Result<Vec<String>, super::CodecError> {
    let n = r.u32()? as usize;
    let mut flags = Vec::with_capacity(n.min(bound / 4));
    for _ in 0..n {
        flags.push(r.string()?);
    }
    Ok(flags)
}

fn seal_msg(s: &Sealer, mailbox: u64, m: &MailMsg) -> Vec<u8> {
    s.seal(MSG_TABLE, &msg_key(mailbox, m.uid), &encode_msg(m))
}

fn seal_flags(s: &Sealer, id: u64, flags: &[String]) -> Vec<u8> {
    let mut w = Writer::new(1);
    w.u32(flags.len() as u32);
    for f in flags {
        w.str(f);
    }
    s.seal(FLAGS_TABLE, &id.to_be_bytes(), &w.finish())
}

fn open_flags(s: &Sealer, id: u64, sealed: &[u8]) -> Result<Vec<String>, StoreError> {
    let plain = s.open(FLAGS_TABLE, &id.to_be_bytes(), sealed)?;
    let mal = |_| StoreError::Malformed(FLAGS_TABLE);
    let mut r = Reader::new(&plain, 1).map_err(mal)?;
    let f = read_flags(&mut r, plain.len()).map_err(mal)?;
    r.end().map_err(mal)?;
    Ok(f)
}

fn open_box(s: &Sealer, id: u64, sealed: &[u8]) -> Result<MailboxInfo, StoreError> {
    let plain = s.open(BOX_TABLE, &id.to_be_bytes(), sealed)?;
    let mal = |_| StoreError::Malformed(BOX_TABLE);
    let mut r = Reader::new(&plain, 1).map_err(mal)?;
    let name = r.string().map_err(mal)?;
    let uidvalidity = r.u32().map_err(mal)?;
    r.end().map_err(mal)?;
    Ok(MailboxInfo {
        id,
        name,
        special: Special::None,
        uidvalidity,
    })
}

fn seal_box(s: &Sealer, b: &MailboxInfo) -> Vec<u8> {
    let mut w = Writer::new(1);
    w.str(&b.name).u32(b.uidvalidity);
    s.seal(BOX_TABLE, &b.id.to_be_bytes(), &w.finish())
}

/// The sealed Sent record for a message being enqueued (for
/// [`Store::enqueue_async_with_sent`]).
pub(super) fn sent_record(
    s: &Sealer,
    uid: u64,
    message: MessageRef,
    queue_ids: &[u64],
    arrived: u64,
) -> ((u64, u64), Vec<u8>) {
    let m = MailMsg {
        uid,
        message,
        flags: vec![KW_QUEUED.into(), "\\Seen".into()],
        internal: arrived,
        pending: queue_ids.to_vec(),
    };
    ((BOX_SENT, uid), seal_msg(s, BOX_SENT, &m))
}

/// Adds one reference to a blob inside `tx`.
fn add_ref(tx: &WriteTransaction, s: &Sealer, b: u64) -> Result<(), StoreError> {
    let mut heads = tx.open_table(BLOB_HEAD)?;
    let sealed = heads
        .get(b)?
        .ok_or(StoreError::NotFound("message"))?
        .value()
        .to_vec();
    let mut h = blob::open_head(s, b, &sealed)?;
    h.refs = h.refs.saturating_add(1);
    heads.insert(b, blob::seal_head(s, b, &h).as_slice())?;
    Ok(())
}

/// Every user mailbox, read inside a write transaction.
fn user_boxes(tx: &WriteTransaction, s: &Sealer) -> Result<Vec<MailboxInfo>, StoreError> {
    let t = tx.open_table(IMAP_BOXES)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        let (k, v) = item?;
        out.push(open_box(s, k.value(), v.value())?);
    }
    Ok(out)
}

/// Reads message `uid` of `mailbox` inside `tx`.
fn get_msg(
    tx: &WriteTransaction,
    s: &Sealer,
    mailbox: u64,
    uid: u64,
) -> Result<Option<MailMsg>, StoreError> {
    if mailbox == BOX_INBOX {
        let t = tx.open_table(INBOX)?;
        let Some(v) = t.get(uid)? else {
            return Ok(None);
        };
        let e = inbox::decode(uid, &s.open("inbox", &uid.to_be_bytes(), v.value())?)?;
        let flags = match tx.open_table(IMAP_FLAGS)?.get(uid)? {
            Some(f) => open_flags(s, uid, f.value())?,
            None => Vec::new(),
        };
        return Ok(Some(MailMsg {
            uid,
            message: e.message,
            flags,
            internal: e.arrived,
            pending: Vec::new(),
        }));
    }
    let t = tx.open_table(IMAP_MSGS)?;
    let Some(v) = t.get((mailbox, uid))? else {
        return Ok(None);
    };
    let plain = s.open(MSG_TABLE, &msg_key(mailbox, uid), v.value())?;
    decode_msg(uid, &plain).map(Some)
}

/// Writes a new message into `mailbox` inside `tx` (the blob reference is
/// the caller's business).
fn put_msg(tx: &WriteTransaction, s: &Sealer, mailbox: u64, m: &MailMsg) -> Result<(), StoreError> {
    if mailbox == BOX_INBOX {
        let mut uidl = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut uidl);
        let e = InboxEntry {
            id: m.uid,
            message: m.message,
            uidl: hex::encode(uidl),
            arrived: m.internal,
        };
        let sealed = s.seal("inbox", &m.uid.to_be_bytes(), &inbox::encode(&e));
        tx.open_table(INBOX)?.insert(m.uid, sealed.as_slice())?;
        tx.open_table(IMAP_FLAGS)?
            .insert(m.uid, seal_flags(s, m.uid, &m.flags).as_slice())?;
        return Ok(());
    }
    tx.open_table(IMAP_MSGS)?
        .insert((mailbox, m.uid), seal_msg(s, mailbox, m).as_slice())?;
    Ok(())
}

/// Removes message `uid` of `mailbox` inside `tx` and drops its blob
/// reference; false if it was not there.
fn remove_msg(
    tx: &WriteTransaction,
    s: &Arc<Sealer>,
    mailbox: u64,
    uid: u64,
) -> Result<bool, StoreError> {
    let Some(m) = get_msg(tx, s, mailbox, uid)? else {
        return Ok(false);
    };
    if mailbox == BOX_INBOX {
        tx.open_table(INBOX)?.remove(uid)?;
        tx.open_table(IMAP_FLAGS)?.remove(uid)?;
    } else {
        tx.open_table(IMAP_MSGS)?.remove((mailbox, uid))?;
    }
    blob::release(tx, s, m.message.blob)?;
    Ok(true)
}

/// Shares a result between a write closure (which may run more than once)
/// and its caller.
type Out<T> = Arc<Mutex<T>>;

fn take<T: Default>(o: &Out<T>) -> T {
    std::mem::take(&mut *o.lock().unwrap_or_else(|e| e.into_inner()))
}

fn set<T>(o: &Out<T>, v: T) {
    *o.lock().unwrap_or_else(|e| e.into_inner()) = v;
}

impl Store {
    /// A receiver that changes after every durable change to `mailbox`.
    pub fn mailbox_changes(&self, mailbox: u64) -> tokio::sync::watch::Receiver<u64> {
        let mut c = self.inner.changes.lock().unwrap_or_else(|e| e.into_inner());
        // Mailboxes nobody watches any more are dropped here.
        c.retain(|_, tx| tx.receiver_count() > 0);
        c.entry(mailbox)
            .or_insert_with(|| tokio::sync::watch::channel(0).0)
            .subscribe()
    }

    /// Tells IMAP sessions watching `mailboxes` (every mailbox for `None`)
    /// that they changed; call after the commit.
    pub(crate) fn mailbox_changed(&self, mailboxes: Option<&[u64]>) {
        let c = self.inner.changes.lock().unwrap_or_else(|e| e.into_inner());
        for (id, tx) in c.iter() {
            if mailboxes.is_none_or(|m| m.contains(id)) {
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }

    /// A value greater than every UID given out so far (IMAP UIDNEXT).
    pub fn uid_next(&self) -> u64 {
        self.inner.next_id.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every mailbox: INBOX, Sent, Trash, then the user's by name.
    pub fn mailboxes(&self) -> Result<Vec<MailboxInfo>, StoreError> {
        let s = &self.inner.sealer;
        let mut user = self.read(|rx| {
            let t = rx.open_table(IMAP_BOXES)?;
            let mut out = Vec::new();
            for item in t.iter()? {
                let (k, v) = item?;
                out.push(open_box(s, k.value(), v.value())?);
            }
            Ok(out)
        })?;
        user.sort_by(|a, b| a.name.cmp(&b.name));
        let mut all = fixed().to_vec();
        all.extend(user);
        Ok(all)
    }

    /// The mailbox called `name` (INBOX in any case).
    pub fn mailbox_find(&self, name: &str) -> Result<Option<MailboxInfo>, StoreError> {
        Ok(self
            .mailboxes()?
            .into_iter()
            .find(|b| b.name == name || (b.id == BOX_INBOX && name.eq_ignore_ascii_case("INBOX"))))
    }

    /// Creates a user mailbox; `NotFound` never, `Malformed` if the name exists.
    pub fn mailbox_create(&self, name: &str) -> Result<Option<MailboxInfo>, StoreError> {
        if name.eq_ignore_ascii_case("INBOX") || fixed().iter().any(|b| b.name == name) {
            return Ok(None);
        }
        let id = self.alloc_id() + USER_BOX_BASE;
        let info = MailboxInfo {
            id,
            name: name.to_owned(),
            special: Special::None,
            uidvalidity: (id as u32).max(1),
        };
        let sealed = seal_box(&self.inner.sealer, &info);
        let s = self.inner.sealer.clone();
        let (name, created) = (name.to_owned(), Out::default());
        let c = created.clone();
        self.inner.writer.write(
            sealed.len(),
            Box::new(move |tx| {
                let exists = user_boxes(tx, &s)?.iter().any(|b| b.name == name);
                if !exists {
                    tx.open_table(IMAP_BOXES)?.insert(id, sealed.as_slice())?;
                }
                set(&c, !exists);
                Ok(())
            }),
        )?;
        Ok(take(&created).then_some(info))
    }

    /// Renames user mailbox `from` (and its children `from/...`) to `to`;
    /// false if `from` is not a user mailbox or `to` exists.
    pub fn mailbox_rename(&self, from: &str, to: &str) -> Result<bool, StoreError> {
        if to.eq_ignore_ascii_case("INBOX") || fixed().iter().any(|b| b.name == to) {
            return Ok(false);
        }
        let s = self.inner.sealer.clone();
        let (from, to, done) = (from.to_owned(), to.to_owned(), Out::default());
        let d = done.clone();
        self.inner.writer.write(
            256,
            Box::new(move |tx| {
                let boxes = user_boxes(tx, &s)?;
                let ok =
                    boxes.iter().any(|b| b.name == from) && !boxes.iter().any(|b| b.name == to);
                if ok {
                    let prefix = format!("{from}/");
                    let mut t = tx.open_table(IMAP_BOXES)?;
                    for mut b in boxes {
                        let name = if b.name == from {
                            to.clone()
                        } else if let Some(rest) = b.name.strip_prefix(&prefix) {
                            format!("{to}/{rest}")
                        } else {
                            continue;
                        };
                        b.name = name;
                        t.insert(b.id, seal_box(&s, &b).as_slice())?;
                    }
                }
                set(&d, ok);
                Ok(())
            }),
        )?;
        self.mailbox_changed(None);
        Ok(take(&done))
    }

    /// Deletes user mailbox `id` and its messages.
    pub fn mailbox_delete(&self, id: u64) -> Result<(), StoreError> {
        if id < USER_BOX_BASE {
            return Err(StoreError::NotFound("user mailbox"));
        }
        let uids: Vec<u64> = self.mailbox_messages(id)?.iter().map(|m| m.uid).collect();
        let s = self.inner.sealer.clone();
        self.inner.writer.write(
            64 * (uids.len() + 1),
            Box::new(move |tx| {
                for &uid in &uids {
                    remove_msg(tx, &s, id, uid)?;
                }
                // Messages that arrived since the listing, too.
                let rest: Vec<u64> = {
                    let t = tx.open_table(IMAP_MSGS)?;
                    let mut v = Vec::new();
                    for item in t.range((id, 0)..=(id, u64::MAX))? {
                        v.push(item?.0.value().1);
                    }
                    v
                };
                for uid in rest {
                    remove_msg(tx, &s, id, uid)?;
                }
                tx.open_table(IMAP_BOXES)?.remove(id)?;
                Ok(())
            }),
        )?;
        self.mailbox_changed(None);
        Ok(())
    }

    /// The messages of a mailbox in UID order (a consistent snapshot).
    pub fn mailbox_messages(&self, mailbox: u64) -> Result<Vec<MailMsg>, StoreError> {
        self.mailbox_messages_of(mailbox, None)
    }

    /// The messages of a mailbox whose UIDs are in `uids` (those still
    /// there), in the order of `uids`.
    pub fn mailbox_messages_some(
        &self,
        mailbox: u64,
        uids: &[u64],
    ) -> Result<Vec<MailMsg>, StoreError> {
        self.mailbox_messages_of(mailbox, Some(uids))
    }

    /// Each message of a mailbox, in UID order, with a fingerprint of the
    /// sealed record that holds its flags (and, outside INBOX, the rest of
    /// its state): the record's last 16 bytes, its AEAD tag, which changes
    /// whenever the record is rewritten. Decrypts nothing, so an IMAP
    /// session can re-read only what changed.
    pub fn mailbox_fingerprints(&self, mailbox: u64) -> Result<Vec<(u64, [u8; 16])>, StoreError> {
        fn tail(sealed: &[u8]) -> [u8; 16] {
            let mut fp = [0u8; 16];
            let n = sealed.len().min(16);
            fp[16 - n..].copy_from_slice(&sealed[sealed.len() - n..]);
            fp
        }
        self.read(|rx| {
            let mut out = Vec::new();
            if mailbox == BOX_INBOX {
                let t = rx.open_table(INBOX)?;
                let flags = rx.open_table(IMAP_FLAGS)?;
                for item in t.iter()? {
                    let id = item?.0.value();
                    let fp = flags.get(id)?.map(|f| tail(f.value())).unwrap_or_default();
                    out.push((id, fp));
                }
            } else {
                let t = rx.open_table(IMAP_MSGS)?;
                for item in t.range((mailbox, 0)..=(mailbox, u64::MAX))? {
                    let (k, v) = item?;
                    out.push((k.value().1, tail(v.value())));
                }
            }
            Ok(out)
        })
    }

    /// [`Store::mailbox_messages`] (`uids` None) or
    /// [`Store::mailbox_messages_some`].
    fn mailbox_messages_of(
        &self,
        mailbox: u64,
        uids: Option<&[u64]>,
    ) -> Result<Vec<MailMsg>, StoreError> {
        let s = &self.inner.sealer;
        self.read(|rx| {
            let mut out = Vec::new();
            if mailbox == BOX_INBOX {
                let t = rx.open_table(INBOX)?;
                let flags = rx.open_table(IMAP_FLAGS)?;
                let mut one = |id: u64, v: &[u8]| -> Result<(), StoreError> {
                    let e = inbox::decode(id, &s.open("inbox", &id.to_be_bytes(), v)?)?;
                    let f = match flags.get(id)? {
                        Some(f) => open_flags(s, id, f.value())?,
                        None => Vec::new(),
                    };
                    out.push(MailMsg {
                        uid: id,
                        message: e.message,
                        flags: f,
                        internal: e.arrived,
                        pending: Vec::new(),
                    });
                    Ok(())
                };
                match uids {
                    None => {
                        for item in t.iter()? {
                            let (k, v) = item?;
                            one(k.value(), v.value())?;
                        }
                    }
                    Some(uids) => {
                        for &id in uids {
                            if let Some(v) = t.get(id)? {
                                one(id, v.value())?;
                            }
                        }
                    }
                }
            } else {
                let t = rx.open_table(IMAP_MSGS)?;
                let mut one = |uid: u64, v: &[u8]| -> Result<(), StoreError> {
                    let plain = s.open(MSG_TABLE, &msg_key(mailbox, uid), v)?;
                    out.push(decode_msg(uid, &plain)?);
                    Ok(())
                };
                match uids {
                    None => {
                        for item in t.range((mailbox, 0)..=(mailbox, u64::MAX))? {
                            let (k, v) = item?;
                            one(k.value().1, v.value())?;
                        }
                    }
                    Some(uids) => {
                        for &uid in uids {
                            if let Some(v) = t.get((mailbox, uid))? {
                                one(uid, v.value())?;
                            }
                        }
                    }
                }
            }
            Ok(out)
        })
    }

    /// Sets the flags of messages of a mailbox (those still there).
    pub fn mailbox_set_flags(
        &self,
        mailbox: u64,
        changes: Vec<(u64, Vec<String>)>,
    ) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let s = self.inner.sealer.clone();
        self.inner.writer.write(
            128 * changes.len(),
            Box::new(move |tx| {
                for (uid, flags) in &changes {
                    let Some(mut m) = get_msg(tx, &s, mailbox, *uid)? else {
                        continue;
                    };
                    m.flags = flags.clone();
                    if mailbox == BOX_INBOX {
                        tx.open_table(IMAP_FLAGS)?
                            .insert(*uid, seal_flags(&s, *uid, flags).as_slice())?;
                    } else {
                        put_msg(tx, &s, mailbox, &m)?;
                    }
                }
                Ok(())
            }),
        )?;
        self.mailbox_changed(Some(&[mailbox]));
        Ok(())
    }

    /// Copies (or, with `remove`, moves) messages `uids` of `from` into `to`
    /// in one transaction, sharing their blobs; returns (source uid, new
    /// uid) for every message copied.
    pub fn mailbox_copy(
        &self,
        from: u64,
        uids: &[u64],
        to: u64,
        remove: bool,
    ) -> Result<Vec<(u64, u64)>, StoreError> {
        let plan: Vec<(u64, u64)> = uids.iter().map(|&u| (u, self.alloc_id())).collect();
        let s = self.inner.sealer.clone();
        let out: Out<Vec<(u64, u64)>> = Out::default();
        let o = out.clone();
        self.inner.writer.write(
            128 * plan.len(),
            Box::new(move |tx| {
                if to >= USER_BOX_BASE && tx.open_table(IMAP_BOXES)?.get(to)?.is_none() {
                    return Err(StoreError::NotFound("mailbox"));
                }
                let mut done = Vec::new();
                for &(uid, new) in &plan {
                    let Some(mut m) = get_msg(tx, &s, from, uid)? else {
                        continue;
                    };
                    add_ref(tx, &s, m.message.blob)?;
                    m.uid = new;
                    m.pending.clear();
                    put_msg(tx, &s, to, &m)?;
                    if remove {
                        remove_msg(tx, &s, from, uid)?;
                    }
                    done.push((uid, new));
                }
                set(&o, done);
                Ok(())
            }),
        )?;
        // A move also changes the source.
        let changed = [to, from];
        self.mailbox_changed(Some(if remove { &changed } else { &changed[..1] }));
        Ok(take(&out))
    }

    /// Removes messages `uids` of a mailbox (and their blob references).
    pub fn mailbox_expunge(&self, mailbox: u64, uids: &[u64]) -> Result<(), StoreError> {
        if uids.is_empty() {
            return Ok(());
        }
        let uids = uids.to_vec();
        let s = self.inner.sealer.clone();
        self.inner.writer.write(
            64 * uids.len(),
            Box::new(move |tx| {
                for &uid in &uids {
                    remove_msg(tx, &s, mailbox, uid)?;
                }
                Ok(())
            }),
        )?;
        self.mailbox_changed(Some(&[mailbox]));
        Ok(())
    }

    /// Appends a message to a mailbox; returns its UID.
    pub fn mailbox_append(
        &self,
        mailbox: u64,
        message: &[u8],
        flags: Vec<String>,
        internal: u64,
    ) -> Result<u64, StoreError> {
        let s = self.inner.sealer.clone();
        let blob = PreparedBlob::new(&s, self.alloc_id(), message, 1);
        let m = MailMsg {
            uid: self.alloc_id(),
            message: blob.mref(),
            flags,
            internal,
            pending: Vec::new(),
        };
        let uid = m.uid;
        self.inner.writer.write(
            message.len() + 256,
            Box::new(move |tx| {
                if mailbox >= USER_BOX_BASE && tx.open_table(IMAP_BOXES)?.get(mailbox)?.is_none() {
                    return Err(StoreError::NotFound("mailbox"));
                }
                blob.insert(tx)?;
                put_msg(tx, &s, mailbox, &m)
            }),
        )?;
        self.mailbox_changed(Some(&[mailbox]));
        Ok(uid)
    }

    /// Records how the engine settled queue entry `queue_id` on the Sent
    /// copy it belongs to: `$Bounced` for a bounce, and once no entry is
    /// pending `$Queued` gives way to `$Delivered` (if none bounced or was
    /// cancelled). True if a Sent message changed.
    pub fn sent_settle(&self, queue_id: u64, how: Settled) -> Result<bool, StoreError> {
        self.sent_update(move |_, pending| {
            pending.contains(&queue_id).then_some(vec![(queue_id, how)])
        })
    }

    /// At start: settles the pending entries of Sent messages that are no
    /// longer queued (the daemon stopped between the engine's commit and
    /// ours). Their outcome is unknown: `$Queued` is removed and neither
    /// `$Delivered` nor `$Bounced` is claimed. Returns how many changed.
    pub fn sent_reconcile(&self) -> Result<bool, StoreError> {
        self.sent_update(|tx, pending| {
            let q = tx.open_table(QUEUE).ok()?;
            let gone: Vec<(u64, Settled)> = pending
                .iter()
                .filter(|id| matches!(q.get(**id), Ok(None)))
                .map(|&id| (id, Settled::Cancelled))
                .collect();
            (!gone.is_empty()).then_some(gone)
        })
    }

    /// Applies the settlements `f` picks for each Sent message.
    fn sent_update(
        &self,
        f: impl Fn(&WriteTransaction, &[u64]) -> Option<Vec<(u64, Settled)>> + Send + 'static,
    ) -> Result<bool, StoreError> {
        let s = self.inner.sealer.clone();
        let changed = Out::default();
        let c = changed.clone();
        self.inner.writer.write(
            256,
            Box::new(move |tx| {
                let msgs: Vec<(u64, Vec<u8>)> = {
                    let t = tx.open_table(IMAP_MSGS)?;
                    let mut v = Vec::new();
                    for item in t.range((BOX_SENT, 0)..=(BOX_SENT, u64::MAX))? {
                        let (k, val) = item?;
                        v.push((k.value().1, val.value().to_vec()));
                    }
                    v
                };
                let mut any = false;
                for (uid, sealed) in msgs {
                    let plain = s.open(MSG_TABLE, &msg_key(BOX_SENT, uid), &sealed)?;
                    let mut m = decode_msg(uid, &plain)?;
                    if m.pending.is_empty() {
                        continue;
                    }
                    let Some(settled) = f(tx, &m.pending) else {
                        continue;
                    };
                    for (id, how) in settled {
                        m.pending.retain(|p| *p != id);
                        let kw = match how {
                            Settled::Bounced => KW_BOUNCED,
                            // Remembered until the last entry settles.
                            Settled::Cancelled => "$Cancelled",
                            Settled::Delivered => continue,
                        };
                        if !m.flags.iter().any(|f| f == kw) {
                            m.flags.push(kw.into());
                        }
                    }
                    if m.pending.is_empty() {
                        m.flags.retain(|f| f != KW_QUEUED);
                        let cancelled = m.flags.iter().any(|f| f == "$Cancelled");
                        m.flags.retain(|f| f != "$Cancelled");
                        if !cancelled && !m.flags.iter().any(|f| f == KW_BOUNCED) {
                            m.flags.push(KW_DELIVERED.into());
                        }
                    }
                    put_msg(tx, &s, BOX_SENT, &m)?;
                    any = true;
                }
                set(&c, any);
                Ok(())
            }),
        )?;
        let any = take(&changed);
        if any {
            self.mailbox_changed(Some(&[BOX_SENT]));
        }
        Ok(any)
    }
}
