//! The queue's housekeeping: new entries join the schedule (announced with
//! a `Queued` event), entries whose key arrived become ready, and entries
//! past their deadline bounce. Each pass costs what changed, not the
//! queue's size: new entries are reported by the store and deadlines are
//! indexed.

use std::collections::HashSet;

use mailproxy_proto::EventKind;

use super::super::clock::unix_now;
use super::super::{arq, reports, send, EngineError};
use super::schedule::Schedule;
use super::shared::{Core, State};
use crate::store::{QueueAdded, QueueEntry};

impl Core {
    /// Whether `e` can be prepared (or already is).
    fn key_known(&self, e: &QueueEntry) -> bool {
        send::is_prepared(e)
            || (self.cfg.recipient_keys)(&e.recipient.to_ascii_lowercase()).is_some()
    }

    /// Indexes `e` (announcing it if it is new to the schedule).
    pub(in crate::engine) fn schedule(&self, st: &mut State, e: &QueueEntry, now: u64) {
        if !st.schedule.contains(e.id) {
            self.emit(EventKind::Queued {
                id: e.id,
                to: e.recipient.clone(),
                size: e.message.len,
            });
        }
        st.schedule.place(e, now, self.key_known(e));
    }

    /// Builds the schedule from the whole queue: at start, and if the store
    /// lost count of the entries added.
    pub(in crate::engine) fn rebuild_schedule(&self, st: &mut State) -> Result<(), EngineError> {
        // Whatever is added from now on is reported again (and deduplicated).
        let _ = self.store.take_queue_added();
        let now = unix_now();
        let mut fresh = Schedule::default();
        for id in self.store.queue_ids()? {
            let Some(e) = self.store.queue_get(id)? else {
                continue;
            };
            if !st.schedule.contains(id) {
                self.emit(EventKind::Queued {
                    id,
                    to: e.recipient.clone(),
                    size: e.message.len,
                });
            }
            fresh.place(&e, now, self.key_known(&e));
        }
        st.schedule = fresh;
        st.unindexed.clear();
        Ok(())
    }

    /// One housekeeping pass.
    pub(in crate::engine) fn scan_queue(&self, st: &mut State) -> Result<(), EngineError> {
        let now = unix_now();
        match self.store.take_queue_added() {
            QueueAdded::Overflow => self.rebuild_schedule(st)?,
            QueueAdded::Ids(ids) => st.unindexed.extend(ids),
        }
        // Kept until indexed: an error here leaves the rest for the next pass.
        let pending = std::mem::take(&mut st.unindexed);
        for (i, &id) in pending.iter().enumerate() {
            if st.schedule.contains(id) {
                continue;
            }
            match self.store.queue_get(id) {
                Ok(Some(e)) => self.schedule(st, &e, now),
                Ok(None) => {}
                Err(err) => {
                    st.unindexed = pending[i..].to_vec();
                    return Err(err.into());
                }
            }
        }
        let arrived: Vec<String> = st
            .schedule
            .waiting_recipients()
            .filter(|r| (self.cfg.recipient_keys)(r).is_some())
            .map(str::to_owned)
            .collect();
        for r in arrived {
            st.schedule.key_arrived(&r);
        }
        for id in st.schedule.expired(now) {
            let Some(e) = self.store.queue_get(id)? else {
                st.schedule.remove(id);
                continue;
            };
            if e.bounce_at == 0 || e.bounce_at > now {
                st.schedule.place(&e, now, self.key_known(&e));
                continue;
            }
            if !e.blocks.is_empty() && e.blocks.iter().all(|b| b.acked) {
                arq::finish(&self.store, &e)?;
                st.schedule.remove(id);
                continue;
            }
            self.bounce(
                st,
                &e,
                now,
                "not acknowledged before the queue lifetime ran out",
            )?;
        }
        let waiting: HashSet<String> = if self.cfg.key_discovery {
            st.schedule
                .waiting_recipients()
                .map(str::to_owned)
                .collect()
        } else {
            HashSet::new()
        };
        self.scan_discoveries(st, &waiting, now)
    }

    /// Bounces queue entry `e` (a report with the original attached goes into
    /// the account's inbox and the entry leaves the queue), counts it and
    /// announces it.
    pub(in crate::engine) fn bounce(
        &self,
        st: &mut State,
        e: &QueueEntry,
        now: u64,
        reason: &str,
    ) -> Result<(), EngineError> {
        arq::bounce(&self.store, &self.account, e, now, reason)?;
        st.schedule.remove(e.id);
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
}
