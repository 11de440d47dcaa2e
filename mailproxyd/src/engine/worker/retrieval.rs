//! Retrieval: draining the provider's spool for the account. Each entry is
//! made durable (a block stored, an ACK recorded) before the next
//! RetrieveMessage, which acknowledges it, is sent.

use base64::Engine as _;
use katzenpost::wire::commands::Command;
use mailproxy_proto::EventKind;
use tokio::time::Instant;

use super::super::arq::{self, AckOutcome};
use super::super::pki::Documents;
use super::super::receive::Received;
use super::super::EngineError;
use super::link::ProviderLink;
use super::session::SessionState;
use super::Worker;

/// Most retrievals in a row before the loop looks at its other duties.
pub(in crate::engine) const DRAIN_BATCH: usize = 16;

impl Worker {
    /// Retrieves up to a batch of spool entries. Returns true if the
    /// provider may hold more.
    pub(in crate::engine) async fn retrieve_batch<L: ProviderLink>(
        &mut self,
        sess: &mut SessionState<L>,
        docs: &Documents,
    ) -> Result<bool, EngineError> {
        let core = self.core.clone();
        for _ in 0..DRAIN_BATCH {
            sess.link
                .send(&Command::RetrieveMessage { sequence: sess.seq })
                .await?;
            let reply = sess.link.recv(core.cfg.timings.link_timeout).await?;
            match reply {
                Command::MessageEmpty { sequence } if sequence == sess.seq => return Ok(false),
                Command::Message {
                    queue_size_hint,
                    sequence,
                    payload,
                } if sequence == sess.seq => {
                    let r = core
                        .run(move |c, st| {
                            let Some(incoming) = st.incoming.as_mut() else {
                                return Err(EngineError::Stopped);
                            };
                            let r = incoming.accept(
                                &c.store,
                                &c.cfg.identity_private,
                                &payload,
                                &c.account,
                            );
                            c.emit_reports(incoming);
                            r
                        })
                        .await;
                    // Not stored: the sequence stays, the provider keeps the
                    // block and hands it over again at the next poll.
                    let Some(r) = core.tolerate_store(r)? else {
                        return Ok(false);
                    };
                    core.emit(EventKind::Fetched {
                        remaining: queue_size_hint.into(),
                    });
                    match r {
                        Received::Delivered(d) => {
                            core.set_status(|s| s.delivered += 1);
                            core.emit(EventKind::Delivered {
                                id: d.inbox_id,
                                size: d.size,
                                sender: Some(
                                    base64::engine::general_purpose::STANDARD.encode(d.sender),
                                ),
                            });
                        }
                        r => tracing::trace!(outcome = ?r, "block retrieved"),
                    }
                }
                Command::MessageAck {
                    sequence,
                    surb_id,
                    payload,
                    ..
                } if sequence == sess.seq => {
                    let r = core
                        .run(move |c, st| {
                            let outcome = arq::handle_ack(&c.store, &surb_id, &payload)?;
                            if let AckOutcome::Acked(p) = &outcome {
                                if p.complete {
                                    st.schedule.remove(p.entry);
                                }
                            }
                            Ok(outcome)
                        })
                        .await;
                    let Some(outcome) = core.tolerate_store(r)? else {
                        return Ok(false);
                    };
                    match outcome {
                        AckOutcome::Acked(p) => {
                            core.set_status(|s| {
                                s.acks += 1;
                                if p.complete {
                                    s.messages_acked += 1;
                                }
                            });
                            core.emit(EventKind::Progress {
                                id: p.entry,
                                acked: p.acked,
                                blocks: p.total,
                            });
                            if p.complete {
                                tracing::info!(account = %core.account, entry = p.entry, "queue entry delivered");
                                core.emit(EventKind::Acknowledged { id: p.entry });
                            }
                        }
                        AckOutcome::KaetzchenReply(response) => {
                            // The SURB record is gone: a reply not acted on
                            // now is lost, and the query is sent again.
                            let r = core
                                .run(move |c, st| c.key_reply(st, &surb_id, &response))
                                .await;
                            core.tolerate_store(r)?;
                        }
                        other => tracing::debug!(outcome = ?other, "SURB reply"),
                    }
                }
                other => {
                    return Err(EngineError::Protocol(format!(
                        "unexpected reply to RetrieveMessage {}: {other:?}",
                        sess.seq
                    )))
                }
            }
            sess.seq = sess.seq.wrapping_add(1);
            // Keep the Poisson schedule while draining.
            if Instant::now() >= sess.next_send {
                self.send_tick(sess, docs).await?;
            }
            // With a queue size hint of 0 the next RetrieveMessage still goes
            // out at once: it acknowledges this entry, and an empty reply
            // ends the drain.
        }
        Ok(true)
    }
}
