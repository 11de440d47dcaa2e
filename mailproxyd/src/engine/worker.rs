//! The engine task: connection life cycle and the per-session loop that
//! interleaves Poisson send ticks, retrieval and housekeeping on one link.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use katzenpost::wire::commands::Command;
use mailproxy_proto::{ConnState, EventKind};
use rand::RngCore;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

use super::arq::{self, AckOutcome, SurbRecord};
use super::connection::{self, Link};
use super::discovery::{Discoveries, Due, QUERY_ENTRY};
use super::pki::{Documents, Fetched};
use super::receive::{Incoming, Received};
use super::reports;
use super::send::{self, Route};
use super::{Control, EngineConfig, EngineError, EngineStatus};
use crate::store::{unix_now, Health, KvTable, QueueEntry, Store};

/// Runs a store operation (which may wait for a durable commit) without
/// stalling the runtime's other tasks. Needs the multi-threaded runtime.
pub(super) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Most retrievals in a row before the loop looks at its other duties.
const DRAIN_BATCH: usize = 16;
/// How often stale SURB records are swept.
const SURB_SWEEP_EVERY: Duration = Duration::from_secs(60);

pub(super) struct Worker {
    store: Store,
    cfg: EngineConfig,
    status: Arc<Mutex<EngineStatus>>,
    wake: Arc<Notify>,
    stop: watch::Receiver<bool>,
    control: mpsc::Receiver<Control>,
    account: String,
    /// Queue entries already announced with a `Queued` event.
    seen: HashSet<u64>,
    /// Outstanding key discoveries (mirrored in the store).
    discovery: Discoveries,
    user: String,
    /// Set when a provider session was established (resets the backoff).
    had_session: bool,
}

/// Per-session state.
struct SessionState {
    link: Link,
    seq: u32,
    next_send: Instant,
    next_poll: Instant,
    next_housekeeping: Instant,
    next_sweep: Instant,
    /// Earliest next PKI fetch attempt after one that found nothing.
    next_pki_attempt: Instant,
}

impl Worker {
    pub(super) fn new(
        store: Store,
        cfg: EngineConfig,
        status: Arc<Mutex<EngineStatus>>,
        wake: Arc<Notify>,
        stop: watch::Receiver<bool>,
        control: mpsc::Receiver<Control>,
    ) -> Worker {
        Worker {
            store,
            control,
            seen: HashSet::new(),
            discovery: Discoveries::default(),
            account: cfg.address(),
            had_session: false,
            user: cfg.user.to_ascii_lowercase(),
            cfg,
            status,
            wake,
            stop,
        }
    }

    fn set_status(&self, f: impl FnOnce(&mut EngineStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    fn emit(&self, kind: EventKind) {
        self.cfg.events.emit(&self.account, kind);
    }

    /// Answers a control request (between the worker's own steps).
    fn handle_control(&mut self, c: Control) {
        match c {
            Control::Cancel { id, reply } => {
                let r = blocking(|| arq::cancel(&self.store, id));
                if let Ok(true) = r {
                    self.seen.remove(&id);
                    tracing::info!(account = %self.account, entry = id, "queue entry cancelled");
                    self.emit(EventKind::Cancelled { id });
                }
                let _ = reply.send(r);
            }
        }
    }

    /// Changes the key-discovery state: a changed copy is saved first and
    /// becomes current only once it is durable (memory follows the disk).
    fn update_discovery<T>(
        &mut self,
        f: impl FnOnce(&mut Discoveries) -> T,
    ) -> Result<T, EngineError> {
        let mut next = self.discovery.clone();
        let out = f(&mut next);
        next.save(&self.store)?;
        self.discovery = next;
        Ok(out)
    }

    /// Records a newly obtained document in the status and as an event.
    fn document_obtained(&self, docs: &Documents, epoch: u64) {
        let fetched = docs.newest_obtained();
        self.set_status(|s| {
            s.document_epoch = Some(s.document_epoch.unwrap_or(0).max(epoch));
            s.document_fetched = fetched;
        });
        self.emit(EventKind::Document { epoch });
    }

    /// A store failure stops only the step that met it: nothing it would
    /// have acknowledged was acknowledged, and the step runs again later
    /// (the store recovers by itself). Other errors end the session.
    fn tolerate_store<T>(&self, r: Result<T, EngineError>) -> Result<Option<T>, EngineError> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(e @ EngineError::Store(_)) => {
                self.record_error(&e);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Announces the reports the receiver put in the inbox and records how
    /// much it holds.
    fn emit_reports(&self, incoming: &mut Incoming) {
        let (n, bytes) = incoming.partial_usage();
        self.set_status(|s| {
            s.partials = n as u64;
            s.partial_bytes = bytes;
        });
        for _ in 0..incoming.take_reports() {
            self.emit(EventKind::Report {
                subject: reports::UNREADABLE_SUBJECT.into(),
            });
        }
    }

    fn record_error(&self, e: &EngineError) {
        let msg = e.explained();
        tracing::warn!(account = %self.account, error = %msg, "engine error");
        self.set_status(|s| s.last_error = Some(msg));
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps for `d` (answering control requests) unless stopped first;
    /// false if stopped.
    async fn pause(&mut self, d: Duration) -> bool {
        self.wait(d, false).await
    }

    /// Waits `d` between provider sessions. Deadlines do not wait for the
    /// provider: the queue is scanned now and whenever new mail is submitted,
    /// so entries are announced, bounce when their lifetime runs out, and
    /// key lookups past UrgentQueueLifetime fail, even while there is no
    /// session. False if stopped.
    async fn offline_pause(&mut self, d: Duration) -> bool {
        self.wait(d, true).await
    }

    /// [`pause`](Self::pause), scanning the queue first and on every wake-up
    /// when `scan` is set.
    async fn wait(&mut self, d: Duration, scan: bool) -> bool {
        let until = Instant::now() + d;
        loop {
            if scan {
                if let Err(e) = blocking(|| self.scan_queue()) {
                    self.record_error(&e);
                }
            }
            if self.stopped() {
                return false;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return !self.stopped(),
                _ = self.stop.changed() => return false,
                Some(c) = self.control.recv() => self.handle_control(c),
                _ = self.wake.notified(), if scan => {}
            }
        }
    }

    /// Runs until stopped.
    pub(super) async fn run(mut self) {
        let mut docs = match Documents::new(&self.cfg.authority, self.cfg.timings.epoch_period) {
            Ok(d) => d,
            Err(e) => {
                self.record_error(&e);
                return;
            }
        };
        let mut incoming = loop {
            match blocking(|| {
                Incoming::load(
                    &self.store,
                    self.cfg.max_incoming_blocks,
                    self.cfg.timings.report_coalesce,
                    self.cfg.partial_limits,
                    &self.account,
                )
            }) {
                Ok(mut i) => {
                    self.emit_reports(&mut i);
                    break i;
                }
                Err(e) => {
                    self.record_error(&e);
                    if !self.pause(self.cfg.timings.reconnect_max).await {
                        return;
                    }
                }
            }
        };
        loop {
            match blocking(|| Discoveries::load(&self.store)) {
                Ok(d) => {
                    self.discovery = d;
                    break;
                }
                Err(e) => {
                    self.record_error(&e);
                    if !self.pause(self.cfg.timings.reconnect_max).await {
                        return;
                    }
                }
            }
        }
        match blocking(|| docs.load_saved(&self.store)) {
            Ok(true) => {
                tracing::debug!(account = %self.account, "using saved PKI document");
                let (epoch, fetched) = (docs.newest().map(|d| d.epoch), docs.newest_obtained());
                self.set_status(|s| {
                    s.document_epoch = epoch;
                    s.document_fetched = fetched;
                });
            }
            Ok(false) => {}
            Err(e) => self.record_error(&e),
        }
        let t = self.cfg.timings.clone();
        let mut backoff = t.reconnect_min;
        while !self.stopped() {
            match self.session(&mut docs, &mut incoming).await {
                Ok(()) => break,
                Err(EngineError::Stopped) => break,
                Err(e) => {
                    self.record_error(&e);
                    self.set_status(|s| s.set_state(ConnState::Down));
                    self.emit(EventKind::ConnectionDown {
                        error: Some(e.to_string()),
                    });
                }
            }
            if std::mem::take(&mut self.had_session) {
                backoff = t.reconnect_min;
            }
            if !self.offline_pause(backoff).await {
                break;
            }
            backoff = (backoff * 2).min(t.reconnect_max);
            self.set_status(|s| s.set_state(ConnState::Connecting));
        }
        let was_up = self.status.lock().is_ok_and(|s| s.state == ConnState::Up);
        self.set_status(|s| s.set_state(ConnState::Down));
        if was_up {
            self.emit(EventKind::ConnectionDown { error: None });
        }
        tracing::debug!(account = %self.account, "engine stopped");
    }

    /// Obtains a document to find the provider with: held, or from the authority.
    async fn bootstrap_document(&mut self, docs: &mut Documents) -> Result<(), EngineError> {
        if docs.newest().is_some() {
            return Ok(());
        }
        let epoch = docs.epoch();
        match docs
            .fetch_from_authority(
                &self.store,
                &self.cfg.upstream,
                &self.cfg.authority,
                epoch,
                self.cfg.timings.link_timeout,
            )
            .await?
        {
            Fetched::Document(d) => {
                self.document_obtained(docs, d.epoch);
                Ok(())
            }
            Fetched::NotFound => Err(EngineError::Pki(format!(
                "the authority has no document for epoch {epoch}"
            ))),
        }
    }

    /// One provider session, until it fails or the engine stops.
    async fn session(
        &mut self,
        docs: &mut Documents,
        incoming: &mut Incoming,
    ) -> Result<(), EngineError> {
        self.bootstrap_document(docs).await?;
        let desc = docs
            .current()
            .or(docs.newest())
            .and_then(|d| d.provider_by_name(&self.cfg.provider))
            .cloned()
            .ok_or_else(|| {
                EngineError::Pki(format!("provider {} not in the PKI", self.cfg.provider))
            })?;
        let (user, account, upstream) = (
            self.user.clone(),
            self.account.clone(),
            self.cfg.upstream.clone(),
        );
        let connect = connection::connect_provider(
            &upstream,
            &account,
            &desc,
            &user,
            self.cfg.link_private,
            self.cfg.provider_key_pin,
            self.cfg.timings.link_timeout,
        );
        tokio::pin!(connect);
        let link = loop {
            tokio::select! {
                r = &mut connect => break r?,
                _ = self.stop.changed() => return Err(EngineError::Stopped),
                Some(c) = self.control.recv() => self.handle_control(c),
            }
        };
        self.had_session = true;
        let skew = link.clock_skew();
        self.set_status(|s| {
            s.set_state(ConnState::Up);
            s.clock_skew = skew;
        });
        self.emit(EventKind::ConnectionUp);
        tracing::info!(account = %self.account, "connected to provider");
        let now = Instant::now();
        let mut st = SessionState {
            link,
            seq: 0,
            next_send: now,
            next_poll: now,
            next_housekeeping: now,
            next_sweep: now,
            next_pki_attempt: now,
        };
        let r = self.session_loop(&mut st, docs, incoming).await;
        if matches!(r, Err(EngineError::Stopped)) {
            let _ = connection::send(&mut st.link, &Command::Disconnect).await;
        }
        r
    }

    async fn session_loop(
        &mut self,
        st: &mut SessionState,
        docs: &mut Documents,
        incoming: &mut Incoming,
    ) -> Result<(), EngineError> {
        let t = self.cfg.timings.clone();
        let mut health = self.store.health_watch();
        loop {
            let deadline = st.next_send.min(st.next_poll).min(st.next_housekeeping);
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.stop.changed() => return Err(EngineError::Stopped),
                Ok(()) = health.changed() => {
                    if *health.borrow_and_update() == Health::Ok {
                        // Writable again: fetch what waits at the provider now.
                        tracing::info!(account = %self.account, "store writes again: retrieval resumes");
                        st.next_poll = Instant::now();
                        st.next_housekeeping = Instant::now();
                    }
                    continue;
                }
                _ = self.wake.notified() => {
                    // New work: let housekeeping prepare it promptly.
                    st.next_housekeeping = Instant::now();
                }
                Some(c) = self.control.recv() => {
                    self.handle_control(c);
                    continue;
                }
            }
            if self.stopped() {
                return Err(EngineError::Stopped);
            }
            let now = Instant::now();
            if now >= st.next_housekeeping {
                if now >= st.next_pki_attempt && !self.refresh_documents(st, docs).await? {
                    // Not published yet (or unreachable): do not hammer the
                    // provider and authority with handshakes and requests.
                    st.next_pki_attempt = now + t.pki_retry;
                }
                let r = blocking(|| self.scan_queue());
                self.tolerate_store(r)?;
                let limit = t.partial_limit();
                let r = blocking(|| incoming.sweep(&self.store, limit, &self.account));
                self.emit_reports(incoming);
                self.tolerate_store(r)?;
                if now >= st.next_sweep {
                    let live: HashSet<[u8; 16]> = self.discovery.live_surbs().collect();
                    let r = blocking(|| -> Result<(), EngineError> {
                        arq::sweep_surbs(&self.store, unix_now(), t.retransmit_slack, &live)?;
                        incoming.expire_dedup(&self.store, t.dedup_ttl())?;
                        Incoming::expire_reports(&self.store, t.dedup_ttl())?;
                        Ok(())
                    });
                    if self.tolerate_store(r)?.is_some() {
                        st.next_sweep = now + SURB_SWEEP_EVERY;
                    }
                }
                st.next_housekeeping = now + t.housekeeping_interval;
            }
            if now >= st.next_send {
                let r = self.send_tick(st, docs).await;
                self.tolerate_store(r)?;
            }
            if now >= st.next_poll && self.store.health() != Health::Ok {
                // Nothing could be stored: leave every block at the provider
                // (the retrieval sequence does not move) until the store
                // writes again (its recovery wakes this loop).
                st.next_poll = Instant::now() + t.polling_interval;
            }
            if now >= st.next_poll {
                let more = self.retrieve_batch(st, docs, incoming).await?;
                st.next_poll = if more {
                    Instant::now()
                } else {
                    Instant::now() + t.polling_interval
                };
            }
        }
    }

    /// Fetches the current epoch's document if missing and the next one near
    /// the end of the epoch, through the provider, falling back to the authority.
    /// Returns false if a wanted document could not be obtained.
    async fn refresh_documents(
        &mut self,
        st: &mut SessionState,
        docs: &mut Documents,
    ) -> Result<bool, EngineError> {
        let mut wanted = Vec::new();
        let cur = docs.epoch();
        if !docs.has(cur) {
            wanted.push(cur);
        }
        if let Some(next) = docs.wants_next() {
            wanted.push(next);
        }
        let mut all = true;
        for epoch in wanted {
            connection::send(&mut st.link, &Command::GetConsensus { epoch }).await?;
            let reply = connection::recv(&mut st.link, self.cfg.timings.link_timeout).await?;
            let via_provider = blocking(|| docs.consensus_reply(&self.store, epoch, reply));
            let got = match via_provider {
                Ok(Fetched::Document(_)) => true,
                Ok(Fetched::NotFound) | Err(EngineError::Pki(_)) => {
                    match docs
                        .fetch_from_authority(
                            &self.store,
                            &self.cfg.upstream,
                            &self.cfg.authority,
                            epoch,
                            self.cfg.timings.link_timeout,
                        )
                        .await
                    {
                        Ok(Fetched::Document(_)) => true,
                        Ok(Fetched::NotFound) => false,
                        Err(e) => {
                            self.record_error(&e);
                            false
                        }
                    }
                }
                Err(e) => return Err(e),
            };
            all &= got;
            if got {
                self.document_obtained(docs, epoch);
            }
        }
        Ok(all)
    }

    /// Emits `Queued` for an entry the first time the worker sees it, so
    /// before any of its blocks is sent.
    fn announce(&mut self, e: &QueueEntry) {
        if self.seen.insert(e.id) {
            self.emit(EventKind::Queued {
                id: e.id,
                to: e.recipient.clone(),
                size: e.message.len,
            });
        }
    }

    /// Announces entries not seen before and bounces every entry past its
    /// deadline.
    fn scan_queue(&mut self) -> Result<(), EngineError> {
        let now = unix_now();
        let ids = self.store.queue_ids()?;
        // Recipients whose unprepared entries wait for a key.
        let mut waiting = HashSet::new();
        for &id in &ids {
            let Some(e) = self.store.queue_get(id)? else {
                continue;
            };
            self.announce(&e);
            if self.cfg.key_discovery && !send::is_prepared(&e) {
                let r = e.recipient.to_ascii_lowercase();
                if (self.cfg.recipient_keys)(&r).is_none() {
                    waiting.insert(r);
                }
            }
            if e.bounce_at == 0 || e.bounce_at > now {
                continue;
            }
            if !e.blocks.is_empty() && e.blocks.iter().all(|b| b.acked) {
                arq::finish(&self.store, &e)?;
                continue;
            }
            self.bounce(
                &e,
                now,
                "not acknowledged before the queue lifetime ran out",
            )?;
        }
        // Forget entries that left the queue.
        if self.seen.len() > ids.len() {
            let live: HashSet<u64> = ids.into_iter().collect();
            self.seen.retain(|id| live.contains(id));
        }
        self.scan_discoveries(&waiting, now)
    }

    /// Starts a query for every recipient waited for, forgets queries nobody
    /// waits for any more (key set by hand, entries cancelled or bounced),
    /// and gives up on those past their lifetime or attempts.
    fn scan_discoveries(&mut self, waiting: &HashSet<String>, now: u64) -> Result<(), EngineError> {
        let orphans: Vec<(String, Option<[u8; 16]>)> = self
            .discovery
            .queries()
            .iter()
            .filter(|q| !waiting.contains(&q.recipient))
            .map(|q| (q.recipient.clone(), (q.attempts > 0).then_some(q.surb_id)))
            .collect();
        let started: Vec<&String> = waiting
            .iter()
            .filter(|r| self.discovery.get(r).is_none())
            .collect();
        if !orphans.is_empty() || !started.is_empty() {
            for (_, surb) in &orphans {
                if let Some(surb) = surb {
                    self.store.kv_remove(KvTable::Surb, surb)?;
                }
            }
            self.update_discovery(|d| {
                for (r, _) in &orphans {
                    d.remove(r);
                }
                for r in &started {
                    d.ensure(r, now);
                }
            })?;
            for r in started {
                tracing::info!(account = %self.account, recipient = %r, "key discovery started");
            }
        }
        let lifetime = self.cfg.timings.urgent_queue_lifetime.as_secs();
        let failed: Vec<(String, String)> = self
            .discovery
            .queries()
            .iter()
            .filter_map(|q| match q.due(now, lifetime) {
                Due::Fail(why) => Some((q.recipient.clone(), why)),
                _ => None,
            })
            .collect();
        for (r, why) in failed {
            self.discovery_failed(&r, &why)?;
        }
        Ok(())
    }

    /// Bounces queue entry `e` (a report with the original attached goes into
    /// the account's inbox and the entry leaves the queue), counts it and
    /// announces it.
    fn bounce(&mut self, e: &QueueEntry, now: u64, reason: &str) -> Result<(), EngineError> {
        arq::bounce(&self.store, &self.account, e, now, reason)?;
        self.seen.remove(&e.id);
        self.set_status(|s| s.bounced += 1);
        tracing::info!(account = %self.account, entry = e.id, "queue entry bounced");
        self.emit(EventKind::Bounced {
            id: e.id,
            to: e.recipient.clone(),
            reason: reason.to_owned(),
        });
        self.emit(EventKind::Report {
            subject: reports::BOUNCE_SUBJECT.into(),
        });
        Ok(())
    }

    /// Gives up discovering `recipient`'s key: every entry waiting for it
    /// bounces (a report with the original attached), then the query goes.
    fn discovery_failed(&mut self, recipient: &str, why: &str) -> Result<(), EngineError> {
        let now = unix_now();
        let reason = format!("key discovery failed: {why}");
        for id in self.store.queue_ids()? {
            let Some(e) = self.store.queue_get(id)? else {
                continue;
            };
            if send::is_prepared(&e) || e.recipient.to_ascii_lowercase() != recipient {
                continue;
            }
            self.bounce(&e, now, &reason)?;
        }
        if let Some(q) = self.discovery.get(recipient) {
            if q.attempts > 0 {
                self.store.kv_remove(KvTable::Surb, &q.surb_id)?;
            }
        }
        self.update_discovery(|d| d.remove(recipient))?;
        tracing::info!(account = %self.account, recipient, reason = why, "key discovery failed");
        self.emit(EventKind::KeyDiscoveryFailed {
            to: recipient.to_owned(),
            reason: why.to_owned(),
        });
        Ok(())
    }

    /// A keyserver reply arrived under `surb_id`.
    fn key_reply(&mut self, surb_id: &[u8; 16], response: &[u8]) -> Result<(), EngineError> {
        use katzenpost::kaetzchen::{KaetzchenError, KeyserverResponse};
        let Some(recipient) = self.discovery.by_surb(surb_id) else {
            tracing::debug!("keyserver reply for no outstanding query");
            return Ok(());
        };
        let user = send::split_address(&recipient)
            .map(|(u, _)| u)
            .unwrap_or_default();
        let key = KeyserverResponse::decode(response).and_then(|r| r.identity_key_for(&user));
        let key = match key {
            Ok(k) => k,
            Err(e) => {
                let why = match e {
                    KaetzchenError::Status(2) => "the provider has no key for this user".into(),
                    KaetzchenError::Status(1) => "the keyserver rejected the query".into(),
                    KaetzchenError::UserMismatch => "the reply named another user".into(),
                    e => e.to_string(),
                };
                return self.discovery_failed(&recipient, &why);
            }
        };
        if let Err(e) = (self.cfg.store_key)(&recipient, &key) {
            // Our own failure (a full disk, say), not the recipient's: the
            // mail must not bounce for it. The query stays and is asked
            // again once it is overdue (within its attempts and lifetime).
            tracing::warn!(account = %self.account, recipient = %recipient, error = %e,
                "key discovery: the key could not be stored, asking again later");
            return Ok(());
        }
        let now = unix_now();
        let notice = reports::key_discovered(&self.account, &recipient, &key, now);
        self.store.deliver(&notice, now)?;
        self.update_discovery(|d| d.remove(&recipient))?;
        tracing::info!(account = %self.account, recipient = %recipient, "key discovery stored a key");
        self.emit(EventKind::KeyDiscovered {
            to: recipient.clone(),
        });
        self.emit(EventKind::Report {
            subject: reports::KEY_DISCOVERY_SUBJECT.into(),
        });
        Ok(())
    }

    /// Sends (or re-sends) the key query for `recipient`: the query's SURB
    /// record and its new state are durable before the packet leaves. False
    /// if no packet went out (the tick may carry normal mail instead).
    async fn send_query(
        &mut self,
        st: &mut SessionState,
        docs: &Documents,
        recipient: &str,
    ) -> Result<bool, EngineError> {
        let Some(doc) = docs.current() else {
            return Ok(false);
        };
        let Some((user, provider)) = send::split_address(recipient) else {
            blocking(|| self.discovery_failed(recipient, "not a user@provider address"))?;
            return Ok(false);
        };
        let endpoint = doc
            .provider_by_name(&provider)
            .and_then(|d| d.kaetzchen_endpoint(katzenpost::kaetzchen::CAPABILITY_KEYSERVER))
            .map(str::to_owned);
        let Some(endpoint) = endpoint else {
            let why = format!("provider {provider} offers no keyserver in the PKI document");
            blocking(|| self.discovery_failed(recipient, &why))?;
            return Ok(false);
        };
        let mut surb_id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut surb_id);
        let route = Route {
            src_provider: &self.cfg.provider,
            own_user: &self.user,
            dst_provider: &provider,
            recipient: endpoint.as_bytes(),
        };
        let request = katzenpost::kaetzchen::KeyserverRequest::new(user).encode();
        let built = match send::build_packet(doc, &docs.clock, &route, &request, Some(surb_id)) {
            Ok(b) => b,
            Err(err) => {
                self.record_error(&err);
                return Ok(false);
            }
        };
        let Some(keys) = &built.surb_keys else {
            return Ok(false);
        };
        let now = send::unix_now_duration();
        let rec = SurbRecord {
            entry: QUERY_ENTRY,
            block: 0,
            eta: (now + built.eta).as_secs(),
            keys: keys.as_bytes().to_vec(),
        };
        let overdue = now + built.eta + self.cfg.timings.retransmit_slack;
        let Some(q) = self.discovery.get(recipient) else {
            return Ok(false);
        };
        let (old, resend, attempt) = (q.surb_id, q.attempts > 0, q.attempts.saturating_add(1));
        blocking(|| -> Result<(), EngineError> {
            self.store.kv_put(KvTable::Surb, &surb_id, &rec.encode())?;
            self.update_discovery(|d| {
                if let Some(q) = d.get_mut(recipient) {
                    q.attempts = attempt;
                    q.surb_id = surb_id;
                    q.overdue_at = overdue.as_secs_f64().ceil() as u64;
                }
            })?;
            if resend {
                self.store.kv_remove(KvTable::Surb, &old)?;
            }
            Ok(())
        })?;
        connection::send(&mut st.link, &Command::SendPacket(built.packet)).await?;
        self.set_status(|s| {
            s.packets_sent += 1;
            if resend {
                s.retransmissions += 1;
            }
        });
        tracing::info!(account = %self.account, recipient, attempt, "key query sent");
        Ok(true)
    }

    /// The next queue entry with a block due, prepared if need be.
    fn next_due(&mut self) -> Result<Option<(QueueEntry, usize)>, EngineError> {
        let now = unix_now();
        for id in self.store.queue_ids()? {
            let Some(mut e) = self.store.queue_get(id)? else {
                continue;
            };
            self.announce(&e);
            if !send::is_prepared(&e) {
                let Some(key) = (self.cfg.recipient_keys)(&e.recipient.to_ascii_lowercase()) else {
                    continue; // waits for its key (or its bounce)
                };
                send::prepare(&self.store, &mut e, &self.cfg.identity_private, &key)?;
            }
            if let Some(i) = send::due_block(&e, now) {
                return Ok(Some((e, i)));
            }
        }
        Ok(None)
    }

    /// One Poisson tick: one packet (a due block, or a decoy), then the next tick.
    async fn send_tick(
        &mut self,
        st: &mut SessionState,
        docs: &Documents,
    ) -> Result<(), EngineError> {
        let Some(doc) = docs.current() else {
            st.next_send = Instant::now() + Duration::from_millis(100);
            return Ok(());
        };
        st.next_send =
            Instant::now() + send::poisson_interval(doc.lambda_p, doc.lambda_p_max_delay);
        // Key queries are urgent: they go before normal mail.
        let now = unix_now();
        let lifetime = self.cfg.timings.urgent_queue_lifetime.as_secs();
        let query = self
            .discovery
            .queries()
            .iter()
            .find(|q| q.due(now, lifetime) == Due::Send)
            .map(|q| q.recipient.clone());
        if let Some(r) = query {
            if self.send_query(st, docs, &r).await? {
                return Ok(());
            }
        }
        match blocking(|| self.next_due())? {
            Some((mut e, idx)) => {
                let Some((user, provider)) = send::split_address(&e.recipient) else {
                    // Cannot be routed: let it bounce now.
                    e.bounce_at = 1;
                    blocking(|| self.store.queue_update(&e))?;
                    return Ok(());
                };
                let Some(ct) = blocking(|| {
                    self.store
                        .kv_get(KvTable::Meta, &send::ciphertext_key(e.id, idx))
                })?
                else {
                    // Lost state: prepare again from scratch.
                    e.blocks.clear();
                    e.engine.clear();
                    blocking(|| self.store.queue_update(&e))?;
                    return Ok(());
                };
                let mut surb_id = [0u8; 16];
                rand::rngs::OsRng.fill_bytes(&mut surb_id);
                let route = Route {
                    src_provider: &self.cfg.provider,
                    own_user: &self.user,
                    dst_provider: &provider,
                    recipient: user.as_bytes(),
                };
                let built = match send::build_packet(
                    doc,
                    &docs.clock,
                    &route,
                    &ct,
                    (!e.unreliable).then_some(surb_id),
                ) {
                    Ok(b) => b,
                    Err(err) => {
                        self.record_error(&err);
                        return Ok(());
                    }
                };
                let now = send::unix_now_duration();
                let retransmission = e.blocks[idx].attempts > 0;
                if let Some(keys) = &built.surb_keys {
                    let rec = SurbRecord {
                        entry: e.id,
                        block: idx as u32,
                        eta: (now + built.eta).as_secs(),
                        keys: keys.as_bytes().to_vec(),
                    };
                    blocking(|| self.store.kv_put(KvTable::Surb, &surb_id, &rec.encode()))?;
                }
                let b = &mut e.blocks[idx];
                let first_send = b.attempts == 0;
                b.attempts = b.attempts.saturating_add(1);
                b.retransmit_at =
                    send::retransmit_at(now, built.eta, self.cfg.timings.retransmit_slack);
                let complete = if e.unreliable {
                    b.acked = true;
                    e.blocks.iter().all(|b| b.acked)
                } else {
                    false
                };
                // Durable before the packet leaves, even for the last
                // unreliable block: were `finish` to fail after the send, the
                // stored state must not say the block is still unsent.
                blocking(|| self.store.queue_update(&e))?;
                connection::send(&mut st.link, &Command::SendPacket(built.packet)).await?;
                if complete {
                    blocking(|| arq::finish(&self.store, &e))?;
                }
                self.set_status(|s| {
                    s.packets_sent += 1;
                    if retransmission {
                        s.retransmissions += 1;
                    }
                });
                if first_send && e.blocks.iter().all(|b| b.attempts > 0) {
                    self.emit(EventKind::Sent {
                        id: e.id,
                        blocks: e.blocks.len() as u32,
                    });
                }
                if complete {
                    // Unreliable: nothing more will happen to it.
                    self.seen.remove(&e.id);
                    self.emit(EventKind::Acknowledged { id: e.id });
                }
                tracing::debug!(entry = e.id, block = idx, retransmission, "block sent");
            }
            None if self.cfg.send_decoy_traffic => {
                let own = doc.provider_by_name(&self.cfg.provider);
                let Some(endpoint) = own
                    .and_then(|d| d.kaetzchen_endpoint("loop"))
                    .map(str::to_owned)
                else {
                    return Ok(());
                };
                let mut surb_id = [0u8; 16];
                rand::rngs::OsRng.fill_bytes(&mut surb_id);
                let route = Route {
                    src_provider: &self.cfg.provider,
                    own_user: &self.user,
                    dst_provider: &self.cfg.provider,
                    recipient: endpoint.as_bytes(),
                };
                // The reply comes back under an unknown SURB id and is discarded.
                if let Ok(b) = send::build_packet(doc, &docs.clock, &route, &[], Some(surb_id)) {
                    connection::send(&mut st.link, &Command::SendPacket(b.packet)).await?;
                    self.set_status(|s| s.packets_sent += 1);
                }
            }
            None => {}
        }
        Ok(())
    }

    /// Retrieves up to a batch of spool entries. Each entry is made durable
    /// before the next RetrieveMessage (which acknowledges it) is sent.
    /// Returns true if the provider said more is waiting.
    async fn retrieve_batch(
        &mut self,
        st: &mut SessionState,
        docs: &Documents,
        incoming: &mut Incoming,
    ) -> Result<bool, EngineError> {
        for _ in 0..DRAIN_BATCH {
            connection::send(&mut st.link, &Command::RetrieveMessage { sequence: st.seq }).await?;
            let reply = connection::recv(&mut st.link, self.cfg.timings.link_timeout).await?;
            let hint = match reply {
                Command::MessageEmpty { sequence } if sequence == st.seq => return Ok(false),
                Command::Message {
                    queue_size_hint,
                    sequence,
                    payload,
                } if sequence == st.seq => {
                    let r = blocking(|| {
                        incoming.accept(
                            &self.store,
                            &self.cfg.identity_private,
                            &payload,
                            &self.account,
                        )
                    });
                    self.emit_reports(incoming);
                    // Not stored: the sequence stays, the provider keeps the
                    // block and hands it over again at the next poll.
                    let Some(r) = self.tolerate_store(r)? else {
                        return Ok(false);
                    };
                    self.emit(EventKind::Fetched {
                        remaining: queue_size_hint.into(),
                    });
                    match r {
                        Received::Delivered(d) => {
                            self.set_status(|s| s.delivered += 1);
                            self.emit(EventKind::Delivered {
                                id: d.inbox_id,
                                size: d.size,
                                sender: Some(
                                    base64::engine::general_purpose::STANDARD.encode(d.sender),
                                ),
                            });
                        }
                        r => tracing::trace!(outcome = ?r, "block retrieved"),
                    }
                    queue_size_hint
                }
                Command::MessageAck {
                    queue_size_hint,
                    sequence,
                    surb_id,
                    payload,
                } if sequence == st.seq => {
                    let r = blocking(|| arq::handle_ack(&self.store, &surb_id, &payload));
                    let Some(outcome) = self.tolerate_store(r)? else {
                        return Ok(false);
                    };
                    match outcome {
                        AckOutcome::Acked(p) => {
                            self.set_status(|s| {
                                s.acks += 1;
                                if p.complete {
                                    s.messages_acked += 1;
                                }
                            });
                            self.emit(EventKind::Progress {
                                id: p.entry,
                                acked: p.acked,
                                blocks: p.total,
                            });
                            if p.complete {
                                tracing::info!(account = %self.account, entry = p.entry, "queue entry delivered");
                                self.seen.remove(&p.entry);
                                self.emit(EventKind::Acknowledged { id: p.entry });
                            }
                        }
                        AckOutcome::KaetzchenReply(response) => {
                            // The SURB record is gone: a reply not acted on
                            // now is lost, and the query is sent again.
                            let r = blocking(|| self.key_reply(&surb_id, &response));
                            self.tolerate_store(r)?;
                        }
                        other => tracing::debug!(outcome = ?other, "SURB reply"),
                    }
                    queue_size_hint
                }
                other => {
                    return Err(EngineError::Protocol(format!(
                        "unexpected reply to RetrieveMessage {}: {other:?}",
                        st.seq
                    )))
                }
            };
            st.seq = st.seq.wrapping_add(1);
            // Keep the Poisson schedule while draining.
            if Instant::now() >= st.next_send {
                self.send_tick(st, docs).await?;
            }
            // With hint 0 the next RetrieveMessage still goes out at once: it
            // acknowledges this entry, and an empty reply ends the drain.
            let _ = hint;
        }
        Ok(true)
    }
}
