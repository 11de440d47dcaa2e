//! The Poisson send tick: one packet per wake-up, at LambdaP. A due key
//! query goes first, then the next queue entry in the schedule's
//! round-robin (so a small message is not held behind a large one), else a
//! decoy. Fairness picks which block goes out, never when.

use std::time::Duration;

use katzenpost::wire::commands::Command;
use mailproxy_proto::EventKind;
use rand::RngCore;
use tokio::time::Instant;

use super::super::arq::{self, SurbRecord};
use super::super::clock::{unix_now, unix_now_duration};
use super::super::pki::Documents;
use super::super::send::{self, Route};
use super::super::EngineError;
use super::link::ProviderLink;
use super::session::SessionState;
use super::shared::{Core, State};
use super::Worker;
use crate::store::{KvTable, QueueEntry};

/// Most schedule entries looked at in one tick (stale ones are re-placed).
const MAX_PICKS: usize = 64;

/// A block to send.
pub(in crate::engine) enum Pick {
    /// Block `idx` of the entry, with its stored ciphertext.
    Block(QueueEntry, usize, Vec<u8>),
    /// Nothing due.
    Nothing,
    /// The tick was used to repair or re-route an entry.
    Handled,
}

impl Core {
    /// The next queue entry with a block due, prepared if need be, by the
    /// schedule's round-robin.
    pub(in crate::engine) fn next_due(&self, st: &mut State) -> Result<Pick, EngineError> {
        let now = unix_now();
        for _ in 0..MAX_PICKS {
            let Some(id) = st.schedule.next(now) else {
                return Ok(Pick::Nothing);
            };
            let Some(mut e) = self.store.queue_get(id)? else {
                st.schedule.remove(id);
                continue;
            };
            if !send::is_prepared(&e) {
                let Some(key) = (self.cfg.recipient_keys)(&e.recipient.to_ascii_lowercase()) else {
                    st.schedule.place(&e, now, false); // waits for its key (or its bounce)
                    continue;
                };
                send::prepare(
                    &self.store,
                    &mut e,
                    &self.cfg.identity_private,
                    &key,
                    self.prepare_batch,
                )?;
            }
            let Some(idx) = send::due_block(&e, now) else {
                st.schedule.place(&e, now, true);
                continue;
            };
            if send::split_address(&e.recipient).is_none() {
                // Cannot be routed: let it bounce now.
                e.bounce_at = 1;
                self.store.queue_update(&e)?;
                st.schedule.place(&e, now, true);
                return Ok(Pick::Handled);
            }
            let Some(ct) = self
                .store
                .kv_get(KvTable::Meta, &send::ciphertext_key(e.id, idx))?
            else {
                // Lost state: prepare again from scratch.
                e.blocks.clear();
                e.engine.clear();
                self.store.queue_update(&e)?;
                st.schedule.place(&e, now, true);
                return Ok(Pick::Handled);
            };
            return Ok(Pick::Block(e, idx, ct));
        }
        Ok(Pick::Nothing)
    }
}

impl Worker {
    /// One Poisson tick: one packet (a due block, or a decoy), then the next tick.
    pub(in crate::engine) async fn send_tick<L: ProviderLink>(
        &mut self,
        sess: &mut SessionState<L>,
        docs: &Documents,
    ) -> Result<(), EngineError> {
        let Some(doc) = docs.current() else {
            sess.next_send = Instant::now() + Duration::from_millis(100);
            return Ok(());
        };
        sess.next_send = Instant::now()
            + send::poisson_interval(doc.params.lambda_p, doc.params.lambda_p_max_delay);
        // Key queries are urgent: they go before normal mail.
        if let Some(r) = self.due_query() {
            if self.send_query(sess, docs, &r).await? {
                return Ok(());
            }
        }
        let core = self.core.clone();
        let (mut e, idx, ct) = match core.run(|c, st| c.next_due(st)).await? {
            Pick::Block(e, idx, ct) => (e, idx, ct),
            Pick::Handled => return Ok(()),
            Pick::Nothing => return self.send_decoy(sess, docs).await,
        };
        let cfg = &core.cfg;
        let Some((user, provider)) = send::split_address(&e.recipient) else {
            return Ok(());
        };
        let mut surb_id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut surb_id);
        let route = Route {
            src_provider: &cfg.provider,
            own_user: &core.user,
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
                core.record_error(&err);
                return Ok(());
            }
        };
        let now = unix_now_duration();
        let retransmission = e.blocks[idx].attempts > 0;
        let rec = built.surb_keys.as_ref().map(|keys| SurbRecord {
            entry: e.id,
            block: idx as u32,
            eta: (now + built.eta).as_secs(),
            keys: keys.as_bytes().to_vec(),
        });
        let b = &mut e.blocks[idx];
        let first_send = b.attempts == 0;
        b.attempts = b.attempts.saturating_add(1);
        b.retransmit_at = send::retransmit_at(now, built.eta, cfg.timings.retransmit_slack);
        let complete = if e.unreliable {
            b.acked = true;
            e.blocks.iter().all(|b| b.acked)
        } else {
            false
        };
        // Durable before the packet leaves, even for the last unreliable
        // block: were `finish` to fail after the send, the stored state must
        // not say the block is still unsent.
        let e = core
            .run(move |c, st| {
                if let Some(rec) = rec {
                    c.store.kv_put(KvTable::Surb, &surb_id, &rec.encode())?;
                }
                c.store.queue_update(&e)?;
                st.schedule.place(&e, now.as_secs(), true);
                Ok(e)
            })
            .await?;
        sess.link.send(&Command::SendPacket(built.packet)).await?;
        let (id, blocks) = (e.id, e.blocks.len() as u32);
        let all_sent = e.blocks.iter().all(|b| b.attempts > 0);
        if complete {
            core.run(move |c, st| {
                arq::finish(&c.store, &e)?;
                st.schedule.remove(e.id);
                Ok(())
            })
            .await?;
        }
        core.set_status(|s| {
            s.packets_sent += 1;
            if retransmission {
                s.retransmissions += 1;
            }
        });
        if first_send && all_sent {
            core.emit(EventKind::Sent { id, blocks });
        }
        if complete {
            // Unreliable: nothing more will happen to it.
            core.emit(EventKind::Acknowledged { id });
        }
        tracing::debug!(entry = id, block = idx, retransmission, "block sent");
        Ok(())
    }

    /// A loop decoy to our own provider, if decoys are on.
    async fn send_decoy<L: ProviderLink>(
        &mut self,
        sess: &mut SessionState<L>,
        docs: &Documents,
    ) -> Result<(), EngineError> {
        let cfg = &self.core.cfg;
        let Some(doc) = docs.current().filter(|_| cfg.send_decoy_traffic) else {
            return Ok(());
        };
        let own = doc.provider_by_name(&cfg.provider);
        let Some(endpoint) = own
            .and_then(|d| d.kaetzchen_endpoint("loop"))
            .map(str::to_owned)
        else {
            return Ok(());
        };
        let mut surb_id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut surb_id);
        let route = Route {
            src_provider: &cfg.provider,
            own_user: &self.core.user,
            dst_provider: &cfg.provider,
            recipient: endpoint.as_bytes(),
        };
        // The reply comes back under an unknown SURB id and is discarded.
        if let Ok(b) = send::build_packet(doc, &docs.clock, &route, &[], Some(surb_id)) {
            sess.link.send(&Command::SendPacket(b.packet)).await?;
            self.core.set_status(|s| s.packets_sent += 1);
        }
        Ok(())
    }
}
