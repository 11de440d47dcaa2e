//! What the worker's steps share: the store, the configuration, the status
//! and event outlets, and the queue and discovery state. Store work runs in
//! blocking tasks ([`Core::run`]), never on the async thread.

use std::sync::{Arc, Mutex, MutexGuard};

use mailproxy_proto::EventKind;

use super::super::discovery::Discoveries;
use super::super::receive::Incoming;
use super::super::{blocking, reports, send, EngineConfig, EngineError, EngineStatus};
use super::schedule::Schedule;
use crate::store::Store;

/// The worker's state, touched only by its own steps, one at a time.
#[derive(Default)]
pub(in crate::engine) struct State {
    /// The send schedule of the queue.
    pub(in crate::engine) schedule: Schedule,
    /// Outstanding key discoveries (mirrored in the store).
    pub(in crate::engine) discovery: Discoveries,
    /// Incoming reassembly (loaded when the worker starts).
    pub(in crate::engine) incoming: Option<Incoming>,
    /// Queue entries reported added but not yet in the schedule.
    pub(in crate::engine) unindexed: Vec<u64>,
}

/// Shared by the worker's async loop and its blocking store steps.
pub(in crate::engine) struct Core {
    pub(in crate::engine) store: Store,
    pub(in crate::engine) cfg: EngineConfig,
    pub(in crate::engine) status: Arc<Mutex<EngineStatus>>,
    pub(in crate::engine) account: String,
    /// The account's user name, lower case.
    pub(in crate::engine) user: String,
    /// Most ciphertext bytes per commit when an entry is prepared.
    pub(in crate::engine) prepare_batch: usize,
    state: Mutex<State>,
}

impl Core {
    pub(in crate::engine) fn new(
        store: Store,
        cfg: EngineConfig,
        status: Arc<Mutex<EngineStatus>>,
    ) -> Core {
        Core {
            store,
            account: cfg.address(),
            user: cfg.user.to_ascii_lowercase(),
            prepare_batch: send::PREPARE_BATCH_BYTES,
            cfg,
            status,
            state: Mutex::default(),
        }
    }

    /// The state (never held across an await).
    pub(in crate::engine) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` (store work) in a blocking task and waits for it.
    pub(in crate::engine) async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Core, &mut State) -> Result<T, EngineError> + Send + 'static,
    ) -> Result<T, EngineError> {
        let core = self.clone();
        blocking(move || f(&core, &mut core.state())).await
    }

    pub(in crate::engine) fn set_status(&self, f: impl FnOnce(&mut EngineStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    pub(in crate::engine) fn emit(&self, kind: EventKind) {
        self.cfg.events.emit(&self.account, kind);
    }

    pub(in crate::engine) fn record_error(&self, e: &EngineError) {
        let msg = e.explained();
        tracing::warn!(account = %self.account, error = %msg, "engine error");
        self.set_status(|s| s.last_error = Some(msg));
    }

    /// A store failure stops only the step that met it: nothing it would
    /// have acknowledged was acknowledged, and the step runs again later
    /// (the store recovers by itself). Other errors end the session.
    pub(in crate::engine) fn tolerate_store<T>(
        &self,
        r: Result<T, EngineError>,
    ) -> Result<Option<T>, EngineError> {
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
    pub(in crate::engine) fn emit_reports(&self, incoming: &mut Incoming) {
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

    /// Changes the key-discovery state: a changed copy is saved first and
    /// becomes current only once it is durable (memory follows the disk).
    pub(in crate::engine) fn update_discovery<T>(
        &self,
        st: &mut State,
        f: impl FnOnce(&mut Discoveries) -> T,
    ) -> Result<T, EngineError> {
        let mut next = st.discovery.clone();
        let out = f(&mut next);
        next.save(&self.store)?;
        st.discovery = next;
        Ok(out)
    }

    /// Loads what the worker keeps in memory: incoming reassembly, the key
    /// discoveries and the send schedule.
    pub(in crate::engine) fn load(&self, st: &mut State) -> Result<(), EngineError> {
        if st.incoming.is_none() {
            let mut i = Incoming::load(
                &self.store,
                self.cfg.max_incoming_blocks,
                self.cfg.timings.report_coalesce,
                self.cfg.partial_limits,
                &self.account,
            )?;
            self.emit_reports(&mut i);
            st.incoming = Some(i);
        }
        st.discovery = Discoveries::load(&self.store)?;
        self.rebuild_schedule(st)
    }
}
