//! What the management socket shows of the running daemon and what it can
//! do to it beyond recipients (protocol 2: `STATUS`, `QUEUE`, `INBOX`,
//! `CANCEL`, `EVENTS`).
//!
//! The server talks to a [`Control`]; the daemon's is [`DaemonControl`],
//! over every account's [`Store`] and engine, tests use fakes. Nothing here
//! ever returns message contents: the inbox view reads only the
//! `X-Katzenpost-Sender` header field of a message, and passes on only a
//! key that decodes as one.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use mailproxy_proto::{
    AccountStatus, ConnState, Event, EventKind, InboxItem, QueueItem, QueueState, StoreState,
};
use tokio::sync::broadcast;

use crate::daemon::Engines;
use crate::engine::{Engine, EngineStatus};
use crate::events::EventBus;
use crate::recipients::Recipients;
use crate::store::{unix_now, Health, QueueEntry, Store, StoreError};

/// A boxed `Send` future (the trait is used as `dyn Control`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The account is not configured.
    #[error("no account '{0}'")]
    NoAccount(String),
    /// An account's store failed.
    #[error("account {account}: store: {source}")]
    Store {
        /// The account.
        account: String,
        /// Why.
        source: StoreError,
    },
    /// An account's engine refused or failed.
    #[error("account {account}: engine: {message}")]
    Engine {
        /// The account.
        account: String,
        /// Why.
        message: String,
    },
    /// A blocking task failed.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The daemon as the management server sees it.
pub trait Control: Send + Sync + 'static {
    /// One entry per account, sorted by account.
    fn status(&self) -> BoxFuture<'_, Vec<AccountStatus>>;
    /// The send queues, sorted by account and id.
    fn queue(&self) -> BoxFuture<'_, Result<Vec<QueueItem>, ControlError>>;
    /// The inboxes (no contents), sorted by account and id.
    fn inbox(&self) -> BoxFuture<'_, Result<Vec<InboxItem>, ControlError>>;
    /// Drops queue entry `id` of `account`: `Ok(true)` when it was removed,
    /// `Ok(false)` when there is no such entry.
    fn cancel<'a>(&'a self, account: &'a str, id: u64)
        -> BoxFuture<'a, Result<bool, ControlError>>;
    /// The daemon's events from now on.
    fn subscribe(&self) -> broadcast::Receiver<Event>;
}

/// What [`DaemonControl`] needs of an account's running engine.
pub trait EngineHandle: Send + Sync + 'static {
    /// A snapshot of its status.
    fn status(&self) -> EngineStatus;
    /// Cancels queue entry `id` (the engine forgets its in-memory state and
    /// removes the entry): `Ok(true)` if removed, `Ok(false)` if unknown.
    fn cancel(&self, id: u64) -> BoxFuture<'_, Result<bool, String>>;
}

impl EngineHandle for Engine {
    fn status(&self) -> EngineStatus {
        Engine::status(self)
    }

    fn cancel(&self, id: u64) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(async move { Engine::cancel(self, id).await.map_err(|e| e.to_string()) })
    }
}

/// The engine of one account among the daemon's [`Engines`].
pub struct EngineOf {
    engines: Arc<Engines>,
    account: String,
}

impl EngineOf {
    /// The engine of `account` in `engines` (which must hold one).
    pub fn new(engines: Arc<Engines>, account: String) -> EngineOf {
        EngineOf { engines, account }
    }
}

impl EngineHandle for EngineOf {
    fn status(&self) -> EngineStatus {
        self.engines
            .get(&self.account)
            .map(Engine::status)
            .unwrap_or_default()
    }

    fn cancel(&self, id: u64) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(async move {
            match self.engines.get(&self.account) {
                Some(engine) => EngineHandle::cancel(engine, id).await,
                None => Err("no engine".to_owned()),
            }
        })
    }
}

/// One account as [`DaemonControl`] sees it.
#[derive(Clone)]
pub struct ControlAccount {
    /// The account id, `user@provider`.
    pub id: String,
    /// Its open store.
    pub store: Store,
    /// Its engine, if one runs (none without an authority).
    pub engine: Option<Arc<dyn EngineHandle>>,
}

/// The daemon's [`Control`]: stores, engines, recipients and the event bus.
pub struct DaemonControl {
    accounts: Vec<ControlAccount>,
    recipients: Recipients,
    events: EventBus,
    /// Sender keys of inbox messages already read, by (account, id):
    /// inbox entries never change, so each is read once.
    senders: Mutex<HashMap<(String, u64), Option<String>>>,
    /// Logged-in IMAP sessions per account.
    imap: crate::imap::ImapSessions,
}

impl DaemonControl {
    /// A control over `accounts` (any order; views are sorted).
    pub fn new(
        mut accounts: Vec<ControlAccount>,
        recipients: Recipients,
        events: EventBus,
    ) -> DaemonControl {
        accounts.sort_by(|a, b| a.id.cmp(&b.id));
        DaemonControl {
            accounts,
            recipients,
            events,
            senders: Mutex::new(HashMap::new()),
            imap: crate::imap::ImapSessions::default(),
        }
    }

    /// Reports the IMAP sessions counted by `sessions` in `STATUS`.
    pub fn with_imap_sessions(mut self, sessions: crate::imap::ImapSessions) -> DaemonControl {
        self.imap = sessions;
        self
    }

    fn account(&self, id: &str) -> Option<&ControlAccount> {
        let id = id.to_ascii_lowercase();
        self.accounts.iter().find(|a| a.id == id)
    }
}

/// Runs a blocking store call off the runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ControlError> + Send + 'static,
) -> Result<T, ControlError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ControlError::Internal(e.to_string()))?
}

fn store_err(account: &str) -> impl Fn(StoreError) -> ControlError + '_ {
    move |source| ControlError::Store {
        account: account.to_owned(),
        source,
    }
}

/// All queue entries of a store, oldest first (entries removed while
/// reading are skipped).
fn queue_entries(store: &Store) -> Result<Vec<QueueEntry>, StoreError> {
    let mut out = Vec::new();
    for id in store.queue_ids()? {
        if let Some(e) = store.queue_get(id)? {
            out.push(e);
        }
    }
    Ok(out)
}

/// Whether any block of the entry was sent.
fn started(e: &QueueEntry) -> bool {
    e.blocks
        .iter()
        .any(|b| b.attempts > 0 || b.retransmit_at != 0)
}

/// The `QUEUE` line of an entry at time `now`; `key_known` tells whether the
/// recipient's key is known.
pub fn queue_item(account: &str, e: &QueueEntry, key_known: bool, now: u64) -> QueueItem {
    let sending = started(e);
    let state = if sending {
        QueueState::Sending
    } else if key_known {
        QueueState::Queued
    } else {
        QueueState::WaitingKey
    };
    let retransmit_in = if e.unreliable {
        None
    } else {
        e.blocks
            .iter()
            .filter(|b| !b.acked && b.retransmit_at != 0)
            .map(|b| b.retransmit_at.saturating_sub(now))
            .min()
    };
    QueueItem {
        account: account.to_owned(),
        id: e.id,
        recipient: e.recipient.clone(),
        size: e.message.len,
        blocks_acked: e.blocks.iter().filter(|b| b.acked).count() as u32,
        blocks_total: e.blocks.len() as u32,
        age: now.saturating_sub(e.created),
        state,
        retransmit_in,
        bounce_in: e.bounce_at.saturating_sub(now),
        unreliable: e.unreliable,
    }
}

/// The engine's connection state as the protocol shows it (down without
/// an engine).
fn conn_state(engine: Option<&EngineStatus>) -> ConnState {
    engine.map_or(ConnState::Down, |s| s.state)
}

/// The `STATUS` line of an account from its engine status (if an engine
/// runs) and its store counts.
pub fn account_status(
    account: &str,
    engine: Option<&EngineStatus>,
    counts: &StoreCounts,
    now: u64,
) -> AccountStatus {
    let e = engine.cloned().unwrap_or_default();
    AccountStatus {
        account: account.to_owned(),
        connection: conn_state(engine),
        epoch: e.document_epoch,
        document_age: e.document_fetched.map(|t| now.saturating_sub(t)),
        clock_skew: e.clock_skew,
        queued: counts.queued,
        in_flight: counts.in_flight,
        acknowledged: e.messages_acked,
        bounced: e.bounced,
        delivered: e.delivered,
        inbox: counts.inbox,
        inbox_bytes: counts.inbox_bytes,
        packets_sent: e.packets_sent,
        retransmissions: e.retransmissions,
        last_error: match engine {
            None => Some("no network engine (no authority configured)".to_owned()),
            Some(_) => e.last_error,
        },
        partials: e.partials,
        partial_bytes: e.partial_bytes,
        ..Default::default()
    }
}

/// The `store` and `store_error` fields of `STATUS` from a store's health.
pub fn store_state(h: &Health) -> (StoreState, Option<String>) {
    match h {
        Health::Ok => (StoreState::Ok, None),
        Health::Failing { error, full, .. } => (
            if *full {
                StoreState::Full
            } else {
                StoreState::Failing
            },
            Some(error.clone()),
        ),
    }
}

/// What `STATUS` reads from an account's store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreCounts {
    /// Queue entries with no block sent.
    pub queued: u64,
    /// Queue entries with blocks sent.
    pub in_flight: u64,
    /// Inbox messages.
    pub inbox: u64,
    /// Their total size.
    pub inbox_bytes: u64,
}

fn store_counts(store: &Store) -> Result<StoreCounts, StoreError> {
    let mut c = StoreCounts::default();
    for e in queue_entries(store)? {
        if started(&e) {
            c.in_flight += 1;
        } else {
            c.queued += 1;
        }
    }
    for e in store.inbox_list()? {
        c.inbox += 1;
        c.inbox_bytes += e.message.len;
    }
    Ok(c)
}

/// The sender key of a message from its header section: the value of the
/// first `X-Katzenpost-Sender` field, if it decodes as a key (re-encoded, so
/// nothing else of the message can leave).
pub fn sender_key(head: &[u8]) -> Option<String> {
    const NAME: &[u8] = b"x-katzenpost-sender:";
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break; // end of the header section
        }
        if line.len() >= NAME.len() && line[..NAME.len()].eq_ignore_ascii_case(NAME) {
            let value = std::str::from_utf8(&line[NAME.len()..]).ok()?.trim();
            return mailproxy_proto::decode_key(value)
                .ok()
                .map(|k| mailproxy_proto::encode_key(&k));
        }
    }
    None
}

fn read_sender(store: &Store, e: &crate::store::InboxEntry) -> Result<Option<String>, StoreError> {
    if e.message.chunks == 0 {
        return Ok(None);
    }
    Ok(sender_key(&store.read_chunk(&e.message, 0)?))
}

impl Control for DaemonControl {
    fn status(&self) -> BoxFuture<'_, Vec<AccountStatus>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(self.accounts.len());
            for a in &self.accounts {
                let engine = a.engine.as_ref().map(|e| e.status());
                let store = a.store.clone();
                let counts = match blocking(move || store_counts(&store).map_err(store_err("")))
                    .await
                {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(account = %a.id, error = %e, "status: store counts failed");
                        StoreCounts::default()
                    }
                };
                let mut status = account_status(&a.id, engine.as_ref(), &counts, unix_now());
                (status.store, status.store_error) = store_state(&a.store.health());
                status.imap_sessions = self.imap.count(&a.id);
                out.push(status);
            }
            out
        })
    }

    fn queue(&self) -> BoxFuture<'_, Result<Vec<QueueItem>, ControlError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for a in &self.accounts {
                let (store, id) = (a.store.clone(), a.id.clone());
                let entries =
                    blocking(move || queue_entries(&store).map_err(store_err(&id))).await?;
                let now = unix_now();
                for e in &entries {
                    let known = matches!(self.recipients.get(&e.recipient), Ok(Some(_)));
                    out.push(queue_item(&a.id, e, known, now));
                }
            }
            Ok(out)
        })
    }

    fn inbox(&self) -> BoxFuture<'_, Result<Vec<InboxItem>, ControlError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for a in &self.accounts {
                let known: HashMap<u64, Option<String>> = {
                    let cache = self.senders.lock().unwrap_or_else(|p| p.into_inner());
                    cache
                        .iter()
                        .filter(|((acc, _), _)| *acc == a.id)
                        .map(|((_, id), s)| (*id, s.clone()))
                        .collect()
                };
                let (store, id) = (a.store.clone(), a.id.clone());
                let items = blocking(move || {
                    let mut items = Vec::new();
                    for e in store.inbox_list().map_err(store_err(&id))? {
                        let sender = match known.get(&e.id) {
                            Some(s) => s.clone(),
                            None => match read_sender(&store, &e) {
                                Ok(s) => s,
                                // Deleted meanwhile (POP3): skip it.
                                Err(StoreError::NotFound(_)) => continue,
                                Err(source) => return Err(store_err(&id)(source)),
                            },
                        };
                        items.push(InboxItem {
                            account: id.clone(),
                            id: e.id,
                            size: e.message.len,
                            arrived: e.arrived,
                            sender,
                        });
                    }
                    Ok(items)
                })
                .await?;
                let mut cache = self.senders.lock().unwrap_or_else(|p| p.into_inner());
                cache.retain(|(acc, _), _| *acc != a.id);
                for i in &items {
                    cache.insert((a.id.clone(), i.id), i.sender.clone());
                }
                out.extend(items);
            }
            Ok(out)
        })
    }

    fn cancel<'a>(
        &'a self,
        account: &'a str,
        id: u64,
    ) -> BoxFuture<'a, Result<bool, ControlError>> {
        Box::pin(async move {
            let a = self
                .account(account)
                .ok_or_else(|| ControlError::NoAccount(account.to_owned()))?;
            if let Some(engine) = &a.engine {
                return engine
                    .cancel(id)
                    .await
                    .map_err(|message| ControlError::Engine {
                        account: a.id.clone(),
                        message,
                    });
            }
            // No engine: nothing else holds the entry; remove it here.
            let (store, acc) = (a.store.clone(), a.id.clone());
            let removed = blocking(move || {
                let err = store_err(&acc);
                if store.queue_get(id).map_err(&err)?.is_none() {
                    return Ok(false);
                }
                store.queue_remove(id).map_err(&err)?;
                Ok(true)
            })
            .await?;
            if removed {
                self.events.emit(&a.id, EventKind::Cancelled { id });
            }
            Ok(removed)
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{BlockState, KeySource, NewQueueEntry};

    fn open_store(dir: &std::path::Path) -> Store {
        crate::keys::ensure_private_dir(dir).unwrap();
        Store::open(dir, &KeySource::KeyFile).unwrap()
    }

    fn recipients(dir: &std::path::Path, known: &[(&str, [u8; 32])]) -> Recipients {
        let table = known.iter().map(|(a, k)| (a.to_string(), *k)).collect();
        std::fs::create_dir_all(dir).unwrap();
        let r = Recipients::new(dir.to_owned(), table, false);
        r.rescan().unwrap();
        r
    }

    struct FakeEngine {
        status: EngineStatus,
        store: Store,
        cancelled: Mutex<Vec<u64>>,
    }

    impl EngineHandle for FakeEngine {
        fn status(&self) -> EngineStatus {
            self.status.clone()
        }
        fn cancel(&self, id: u64) -> BoxFuture<'_, Result<bool, String>> {
            Box::pin(async move {
                self.cancelled.lock().unwrap().push(id);
                let store = self.store.clone();
                tokio::task::spawn_blocking(move || {
                    let present = store.queue_get(id).map_err(|e| e.to_string())?.is_some();
                    if present {
                        store.queue_remove(id).map_err(|e| e.to_string())?;
                    }
                    Ok(present)
                })
                .await
                .map_err(|e| e.to_string())?
            })
        }
    }

    fn enqueue(store: &Store, to: &str, msg: &[u8], created: u64) -> QueueEntry {
        store
            .enqueue(
                "alice@p",
                msg,
                &[NewQueueEntry {
                    recipient: to.into(),
                    created,
                    bounce_at: created + 1000,
                    unreliable: false,
                }],
            )
            .unwrap()
            .remove(0)
    }

    #[test]
    fn queue_items_show_state_progress_and_deadlines() {
        let tmp = tempfile::tempdir().unwrap();
        let store = open_store(&tmp.path().join("a"));
        let mut e = enqueue(&store, "bob@q", &[b'x'; 300], 1000);
        let item = queue_item("alice@p", &e, false, 1010);
        assert_eq!(item.state, QueueState::WaitingKey);
        assert_eq!((item.size, item.age, item.bounce_in), (300, 10, 990));
        assert_eq!(
            (item.blocks_acked, item.blocks_total, item.retransmit_in),
            (0, 0, None)
        );
        assert_eq!(
            queue_item("alice@p", &e, true, 1010).state,
            QueueState::Queued
        );
        e.blocks = vec![
            BlockState {
                acked: true,
                retransmit_at: 1005,
                attempts: 1,
            },
            BlockState {
                acked: false,
                retransmit_at: 1050,
                attempts: 1,
            },
            BlockState {
                acked: false,
                retransmit_at: 1030,
                attempts: 2,
            },
            BlockState::default(),
        ];
        let item = queue_item("alice@p", &e, true, 1020);
        assert_eq!(item.state, QueueState::Sending);
        assert_eq!((item.blocks_acked, item.blocks_total), (1, 4));
        assert_eq!(item.retransmit_in, Some(10));
        assert_eq!(queue_item("alice@p", &e, true, 5000).bounce_in, 0);
        e.unreliable = true;
        assert_eq!(queue_item("alice@p", &e, true, 1020).retransmit_in, None);
    }

    #[test]
    fn sender_key_reads_only_a_valid_key_from_the_header() {
        let key = mailproxy_proto::encode_key(&[9; 32]);
        let msg = format!("X-Katzenpost-Sender: {key}\r\nSubject: secret\r\n\r\nbody");
        assert_eq!(sender_key(msg.as_bytes()), Some(key.clone()));
        let lower = format!(
            "subject: s\nx-katzenpost-sender:{}\n\n",
            hex::encode([9u8; 32])
        );
        assert_eq!(sender_key(lower.as_bytes()), Some(key));
        assert_eq!(sender_key(b"X-Katzenpost-Sender: not a key\r\n\r\n"), None);
        let in_body = format!(
            "Subject: s\r\n\r\nX-Katzenpost-Sender: {}\r\n",
            "A".repeat(43)
        );
        assert_eq!(sender_key(in_body.as_bytes()), None);
        assert_eq!(sender_key(b""), None);
    }

    #[test]
    fn daemon_control_over_stores_and_a_fake_engine() {
        let tmp = tempfile::tempdir().unwrap();
        let a_store = open_store(&tmp.path().join("a"));
        let b_store = open_store(&tmp.path().join("b"));
        let now = unix_now();
        let q1 = enqueue(&a_store, "bob@q", &[b'x'; 300], now - 5);
        let q2 = enqueue(&a_store, "carol@q", &[b'y'; 70], now);
        let key = mailproxy_proto::encode_key(&[3; 32]);
        let delivered = format!("X-Katzenpost-Sender: {key}\r\nSubject: hi\r\n\r\nsecret body");
        let i1 = b_store.deliver(delivered.as_bytes(), now).unwrap();
        let i2 = b_store
            .deliver(b"Subject: report\r\n\r\nlocal", now)
            .unwrap();
        let engine = Arc::new(FakeEngine {
            status: EngineStatus {
                state: ConnState::Up,
                connected: true,
                document_epoch: Some(7),
                document_fetched: Some(unix_now() - 30),
                messages_acked: 4,
                packets_sent: 12,
                ..Default::default()
            },
            store: b_store.clone(),
            cancelled: Mutex::new(Vec::new()),
        });
        let bus = EventBus::new(8);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let control: Arc<dyn Control> = Arc::new(DaemonControl::new(
            vec![
                ControlAccount {
                    id: "b@p".into(),
                    store: b_store.clone(),
                    engine: Some(engine.clone()),
                },
                ControlAccount {
                    id: "a@p".into(),
                    store: a_store.clone(),
                    engine: None,
                },
            ],
            recipients(&tmp.path().join("r"), &[("bob@q", [1; 32])]),
            bus.clone(),
        ));
        rt.block_on(async move {
            let status = control.status().await;
            assert_eq!(status.len(), 2);
            assert_eq!(status[0].account, "a@p", "sorted");
            assert_eq!(status[0].connection, ConnState::Down);
            assert!(status[0].last_error.is_some());
            assert_eq!((status[0].queued, status[0].in_flight), (2, 0));
            assert_eq!(status[1].connection, ConnState::Up);
            assert_eq!((status[1].epoch, status[1].packets_sent), (Some(7), 12));
            assert_eq!(status[1].acknowledged, 4);
            let age = status[1].document_age.unwrap();
            assert!((30..40).contains(&age), "{age}");
            assert_eq!(status[1].inbox, 2);
            assert_eq!(
                status[1].inbox_bytes,
                delivered.len() as u64 + b"Subject: report\r\n\r\nlocal".len() as u64
            );

            let queue = control.queue().await.unwrap();
            assert_eq!(queue.len(), 2);
            assert_eq!((queue[0].id, queue[0].recipient.as_str()), (q1.id, "bob@q"));
            assert_eq!((queue[0].state, queue[0].size), (QueueState::Queued, 300));
            assert!(queue[0].age >= 5);
            assert_eq!(
                (queue[1].id, queue[1].state),
                (q2.id, QueueState::WaitingKey)
            );

            for _ in 0..2 {
                // The second time from the sender cache.
                let inbox = control.inbox().await.unwrap();
                assert_eq!(inbox.len(), 2);
                assert_eq!(
                    (inbox[0].id, inbox[0].sender.as_deref()),
                    (i1.id, Some(key.as_str()))
                );
                assert_eq!((inbox[1].id, inbox[1].sender.as_deref()), (i2.id, None));
                let json = serde_json::to_string(&inbox).unwrap();
                assert!(
                    !json.contains("secret") && !json.contains("report"),
                    "{json}"
                );
            }

            // Cancel without an engine: removed from the store, event emitted.
            let mut events = control.subscribe();
            assert!(control.cancel("A@P", q1.id).await.unwrap());
            assert!(!control.cancel("a@p", q1.id).await.unwrap(), "gone");
            assert!(a_store.queue_get(q1.id).unwrap().is_none());
            let e = events.recv().await.unwrap();
            assert_eq!(
                (e.account.as_str(), e.kind),
                ("a@p", EventKind::Cancelled { id: q1.id })
            );
            assert!(matches!(
                control.cancel("nobody@p", 1).await,
                Err(ControlError::NoAccount(_))
            ));
            // With an engine, the engine does it.
            assert!(!control.cancel("b@p", 999).await.unwrap());
            assert_eq!(*engine.cancelled.lock().unwrap(), vec![999]);
            assert_eq!(control.queue().await.unwrap().len(), 1);
        });
    }
}
