//! One provider session: connecting, then the loop that interleaves
//! housekeeping, Poisson send ticks and retrieval on the one link until it
//! fails or the engine stops.

use std::collections::HashSet;
use std::time::Duration;

use katzenpost::wire::commands::Command;
use mailproxy_proto::{ConnState, EventKind};
use tokio::time::Instant;

use super::super::arq;
use super::super::clock::unix_now;
use super::super::connection;
use super::super::pki::Documents;
use super::super::receive::Incoming;
use super::super::EngineError;
use super::link::ProviderLink;
use super::Worker;
use crate::store::Health;

/// How often stale SURB records are swept.
const SURB_SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Per-session state.
pub(in crate::engine) struct SessionState<L> {
    pub(in crate::engine) link: L,
    pub(in crate::engine) seq: u32,
    pub(in crate::engine) next_send: Instant,
    pub(in crate::engine) next_poll: Instant,
    pub(in crate::engine) next_housekeeping: Instant,
    pub(in crate::engine) next_sweep: Instant,
    /// Earliest next PKI fetch attempt after one that found nothing.
    pub(in crate::engine) next_pki_attempt: Instant,
}

impl<L: ProviderLink> SessionState<L> {
    /// A fresh session over `link`: every duty is due at once.
    pub(in crate::engine) fn new(link: L) -> Self {
        let now = Instant::now();
        SessionState {
            link,
            seq: 0,
            next_send: now,
            next_poll: now,
            next_housekeeping: now,
            next_sweep: now,
            next_pki_attempt: now,
        }
    }
}

impl Worker {
    /// One provider session, until it fails or the engine stops.
    pub(in crate::engine) async fn session(
        &mut self,
        docs: &mut Documents,
    ) -> Result<(), EngineError> {
        self.bootstrap_document(docs).await?;
        let core = self.core.clone();
        let cfg = &core.cfg;
        let desc = docs
            .current()
            .or(docs.newest())
            .and_then(|d| d.provider_by_name(&cfg.provider))
            .cloned()
            .ok_or_else(|| EngineError::Pki(format!("provider {} not in the PKI", cfg.provider)))?;
        let connect = connection::connect_provider(
            &cfg.upstream,
            &core.account,
            &desc,
            &core.user,
            cfg.link_private,
            cfg.provider_key_pin,
            cfg.timings.link_timeout,
        );
        tokio::pin!(connect);
        let link = loop {
            tokio::select! {
                r = &mut connect => break r?,
                _ = self.stop.changed() => return Err(EngineError::Stopped),
                Some(c) = self.control.recv() => self.handle_control(c).await,
            }
        };
        self.had_session = true;
        let skew = link.clock_skew();
        self.core.set_status(|s| {
            s.set_state(ConnState::Up);
            s.clock_skew = skew;
        });
        self.core.emit(EventKind::ConnectionUp);
        tracing::info!(account = %self.core.account, "connected to provider");
        let mut sess = SessionState::new(link);
        let r = self.session_loop(&mut sess, docs).await;
        if matches!(r, Err(EngineError::Stopped)) {
            let _ = ProviderLink::send(&mut sess.link, &Command::Disconnect).await;
        }
        r
    }

    /// The session's duties, each at its time, until an error or a stop.
    pub(in crate::engine) async fn session_loop<L: ProviderLink>(
        &mut self,
        sess: &mut SessionState<L>,
        docs: &mut Documents,
    ) -> Result<(), EngineError> {
        let t = self.core.cfg.timings.clone();
        let mut health = self.core.store.health_watch();
        loop {
            let deadline = sess
                .next_send
                .min(sess.next_poll)
                .min(sess.next_housekeeping);
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.stop.changed() => return Err(EngineError::Stopped),
                Ok(()) = health.changed() => {
                    if *health.borrow_and_update() == Health::Ok {
                        // Writable again: fetch what waits at the provider now.
                        tracing::info!(account = %self.core.account, "store writes again: retrieval resumes");
                        sess.next_poll = Instant::now();
                        sess.next_housekeeping = Instant::now();
                    }
                    continue;
                }
                _ = self.wake.notified() => {
                    // New work: let housekeeping prepare it promptly.
                    sess.next_housekeeping = Instant::now();
                }
                Some(c) = self.control.recv() => {
                    self.handle_control(c).await;
                    continue;
                }
            }
            if self.stopped() {
                return Err(EngineError::Stopped);
            }
            let now = Instant::now();
            if now >= sess.next_housekeeping {
                if now >= sess.next_pki_attempt && !self.refresh_documents(sess, docs).await? {
                    // Not published yet (or unreachable): do not hammer the
                    // provider and authority with handshakes and requests.
                    sess.next_pki_attempt = now + t.pki_retry;
                }
                self.housekeeping(sess, now).await?;
                sess.next_housekeeping = now + t.housekeeping_interval;
            }
            if now >= sess.next_send {
                let r = self.send_tick(sess, docs).await;
                self.core.tolerate_store(r)?;
            }
            if now >= sess.next_poll && self.core.store.health() != Health::Ok {
                // Nothing could be stored: leave every block at the provider
                // (the retrieval sequence does not move) until the store
                // writes again (its recovery wakes this loop).
                sess.next_poll = Instant::now() + t.polling_interval;
            }
            if now >= sess.next_poll {
                let more = self.retrieve_batch(sess, docs).await?;
                sess.next_poll = if more {
                    Instant::now()
                } else {
                    Instant::now() + t.polling_interval
                };
            }
        }
    }

    /// The queue scan, the partial-message sweep and, now and then, the
    /// SURB and dedup sweeps.
    async fn housekeeping<L>(
        &mut self,
        sess: &mut SessionState<L>,
        now: Instant,
    ) -> Result<(), EngineError> {
        let core = self.core.clone();
        let t = core.cfg.timings.clone();
        let r = core.run(|c, st| c.scan_queue(st)).await;
        core.tolerate_store(r)?;
        let limit = t.partial_limit();
        let r = core
            .run(move |c, st| {
                let Some(incoming) = st.incoming.as_mut() else {
                    return Ok(());
                };
                let r = incoming.sweep(&c.store, limit, &c.account);
                c.emit_reports(incoming);
                r.map(drop)
            })
            .await;
        core.tolerate_store(r)?;
        if now >= sess.next_sweep {
            let r = core
                .run(move |c, st| {
                    let live: HashSet<[u8; 16]> = st.discovery.live_surbs().collect();
                    arq::sweep_surbs(&c.store, unix_now(), t.retransmit_slack, &live)?;
                    if let Some(incoming) = st.incoming.as_mut() {
                        incoming.expire_dedup(&c.store, t.dedup_ttl())?;
                    }
                    Incoming::expire_reports(&c.store, t.dedup_ttl())?;
                    Ok(())
                })
                .await;
            if core.tolerate_store(r)?.is_some() {
                sess.next_sweep = now + SURB_SWEEP_EVERY;
            }
        }
        Ok(())
    }
}
