//! The engine task, split by role: this file is its life cycle (loading
//! its state, reconnecting with backoff, answering control requests while
//! offline); [`session`] runs one provider session, [`documents`] keeps the
//! PKI documents, [`housekeeping`] the queue's deadlines and new entries,
//! [`keys`] key discovery, [`sending`] the Poisson send tick over the
//! [`schedule`], and [`retrieval`] the spool drain. [`shared`] is what they
//! share; store work runs in blocking tasks, never on the async thread.

mod documents;
mod housekeeping;
mod keys;
mod link;
mod retrieval;
mod schedule;
mod sending;
mod session;
mod shared;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailproxy_proto::{ConnState, EventKind};
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

pub(super) use self::sending::Pick;
pub(super) use self::shared::{Core, State};
use super::arq;
use super::pki::Documents;
use super::{Control, EngineConfig, EngineError, EngineStatus};
use crate::store::Store;

pub(super) struct Worker {
    core: Arc<Core>,
    wake: Arc<Notify>,
    stop: watch::Receiver<bool>,
    control: mpsc::Receiver<Control>,
    /// Set when a provider session was established (resets the backoff).
    had_session: bool,
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
            core: Arc::new(Core::new(store, cfg, status)),
            control,
            had_session: false,
            wake,
            stop,
        }
    }

    /// Answers a control request (between the worker's own steps).
    async fn handle_control(&mut self, c: Control) {
        match c {
            Control::Cancel { id, reply } => {
                let r = self
                    .core
                    .run(move |c, st| {
                        let removed = arq::cancel(&c.store, id)?;
                        st.schedule.remove(id);
                        Ok(removed)
                    })
                    .await;
                if let Ok(true) = r {
                    tracing::info!(account = %self.core.account, entry = id, "queue entry cancelled");
                    self.core.emit(EventKind::Cancelled { id });
                }
                let _ = reply.send(r);
            }
        }
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
                if let Err(e) = self.core.run(|c, st| c.scan_queue(st)).await {
                    self.core.record_error(&e);
                }
            }
            if self.stopped() {
                return false;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return !self.stopped(),
                _ = self.stop.changed() => return false,
                Some(c) = self.control.recv() => self.handle_control(c).await,
                _ = self.wake.notified(), if scan => {}
            }
        }
    }

    /// Loads the worker's state and its saved PKI document; `None` if
    /// stopped first.
    async fn load(&mut self) -> Option<Documents> {
        let cfg = &self.core.cfg;
        let mut docs = match Documents::new(&cfg.authority, cfg.timings.epoch_period) {
            Ok(d) => d,
            Err(e) => {
                self.core.record_error(&e);
                return None;
            }
        };
        while let Err(e) = self.core.run(|c, st| c.load(st)).await {
            self.core.record_error(&e);
            if !self.pause(self.core.cfg.timings.reconnect_max).await {
                return None;
            }
        }
        match docs.load_saved(&self.core.store).await {
            Ok(true) => {
                tracing::debug!(account = %self.core.account, "using saved PKI document");
                let (epoch, fetched) = (docs.newest().map(|d| d.epoch), docs.newest_obtained());
                self.core.set_status(|s| {
                    s.document_epoch = epoch;
                    s.document_fetched = fetched;
                });
            }
            Ok(false) => {}
            Err(e) => self.core.record_error(&e),
        }
        Some(docs)
    }

    /// Runs until stopped.
    pub(super) async fn run(mut self) {
        let Some(mut docs) = self.load().await else {
            return;
        };
        let t = self.core.cfg.timings.clone();
        let mut backoff = t.reconnect_min;
        while !self.stopped() {
            match self.session(&mut docs).await {
                Ok(()) => break,
                Err(EngineError::Stopped) => break,
                Err(e) => {
                    self.core.record_error(&e);
                    self.core.set_status(|s| s.set_state(ConnState::Down));
                    self.core.emit(EventKind::ConnectionDown {
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
            self.core.set_status(|s| s.set_state(ConnState::Connecting));
        }
        let was_up = self
            .core
            .status
            .lock()
            .is_ok_and(|s| s.state == ConnState::Up);
        self.core.set_status(|s| s.set_state(ConnState::Down));
        if was_up {
            self.core.emit(EventKind::ConnectionDown { error: None });
        }
        tracing::debug!(account = %self.core.account, "engine stopped");
    }
}
