//! Key discovery in the worker: queries started for recipients whose mail
//! waits for a key, sent before normal mail, their replies stored as keys,
//! and the waiting mail bounced when discovery fails.

use std::collections::HashSet;

use katzenpost::wire::commands::Command;
use mailproxy_proto::EventKind;
use rand::RngCore;

use super::super::arq::SurbRecord;
use super::super::clock::{unix_now, unix_now_duration};
use super::super::discovery::{Due, QUERY_ENTRY};
use super::super::pki::Documents;
use super::super::send::{self, Route};
use super::super::{reports, EngineError};
use super::link::ProviderLink;
use super::session::SessionState;
use super::shared::{Core, State};
use super::Worker;
use crate::store::KvTable;

impl Core {
    /// Starts a query for every recipient waited for, forgets queries nobody
    /// waits for any more (key set by hand, entries cancelled or bounced),
    /// and gives up on those past their lifetime or attempts.
    pub(in crate::engine) fn scan_discoveries(
        &self,
        st: &mut State,
        waiting: &HashSet<String>,
        now: u64,
    ) -> Result<(), EngineError> {
        let orphans: Vec<(String, Option<[u8; 16]>)> = st
            .discovery
            .queries()
            .iter()
            .filter(|q| !waiting.contains(&q.recipient))
            .map(|q| (q.recipient.clone(), (q.attempts > 0).then_some(q.surb_id)))
            .collect();
        let started: Vec<String> = waiting
            .iter()
            .filter(|r| st.discovery.get(r).is_none())
            .cloned()
            .collect();
        if !orphans.is_empty() || !started.is_empty() {
            for (_, surb) in &orphans {
                if let Some(surb) = surb {
                    self.store.kv_remove(KvTable::Surb, surb)?;
                }
            }
            self.update_discovery(st, |d| {
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
        let failed: Vec<(String, String)> = st
            .discovery
            .queries()
            .iter()
            .filter_map(|q| match q.due(now, lifetime) {
                Due::Fail(why) => Some((q.recipient.clone(), why)),
                _ => None,
            })
            .collect();
        for (r, why) in failed {
            self.discovery_failed(st, &r, &why)?;
        }
        Ok(())
    }

    /// Gives up discovering `recipient`'s key: every entry waiting for it
    /// bounces (a report with the original attached), then the query goes.
    pub(in crate::engine) fn discovery_failed(
        &self,
        st: &mut State,
        recipient: &str,
        why: &str,
    ) -> Result<(), EngineError> {
        let now = unix_now();
        let reason = format!("key discovery failed: {why}");
        for id in st.schedule.waiting_for(recipient) {
            let Some(e) = self.store.queue_get(id)? else {
                st.schedule.remove(id);
                continue;
            };
            if send::is_prepared(&e) || e.recipient.to_ascii_lowercase() != recipient {
                continue;
            }
            self.bounce(st, &e, now, &reason)?;
        }
        if let Some(q) = st.discovery.get(recipient) {
            if q.attempts > 0 {
                self.store.kv_remove(KvTable::Surb, &q.surb_id)?;
            }
        }
        self.update_discovery(st, |d| d.remove(recipient))?;
        tracing::info!(account = %self.account, recipient, reason = why, "key discovery failed");
        self.emit(EventKind::KeyDiscoveryFailed {
            to: recipient.to_owned(),
            reason: why.to_owned(),
        });
        Ok(())
    }

    /// A keyserver reply arrived under `surb_id`.
    pub(in crate::engine) fn key_reply(
        &self,
        st: &mut State,
        surb_id: &[u8; 16],
        response: &[u8],
    ) -> Result<(), EngineError> {
        use katzenpost::kaetzchen::{KaetzchenError, KeyserverResponse};
        let Some(recipient) = st.discovery.by_surb(surb_id) else {
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
                return self.discovery_failed(st, &recipient, &why);
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
        self.update_discovery(st, |d| d.remove(&recipient))?;
        st.schedule.key_arrived(&recipient);
        tracing::info!(account = %self.account, recipient = %recipient, "key discovery stored a key");
        self.emit(EventKind::KeyDiscovered {
            to: recipient.clone(),
        });
        self.emit(EventKind::Report {
            subject: reports::KEY_DISCOVERY_SUBJECT.into(),
        });
        Ok(())
    }
}

impl Worker {
    /// The recipient whose key query is due now, if any.
    pub(in crate::engine) fn due_query(&self) -> Option<String> {
        let now = unix_now();
        let lifetime = self.core.cfg.timings.urgent_queue_lifetime.as_secs();
        self.core
            .state()
            .discovery
            .queries()
            .iter()
            .find(|q| q.due(now, lifetime) == Due::Send)
            .map(|q| q.recipient.clone())
    }

    /// Sends (or re-sends) the key query for `recipient`: the query's SURB
    /// record and its new state are durable before the packet leaves. False
    /// if no packet went out (the tick may carry normal mail instead).
    pub(in crate::engine) async fn send_query<L: ProviderLink>(
        &mut self,
        sess: &mut SessionState<L>,
        docs: &Documents,
        recipient: &str,
    ) -> Result<bool, EngineError> {
        let Some(doc) = docs.current() else {
            return Ok(false);
        };
        let failed = |why: String| {
            let r = recipient.to_owned();
            move |c: &Core, st: &mut State| c.discovery_failed(st, &r, &why)
        };
        let Some((user, provider)) = send::split_address(recipient) else {
            let why = "not a user@provider address".to_owned();
            self.core.run(failed(why)).await?;
            return Ok(false);
        };
        let endpoint = doc
            .provider_by_name(&provider)
            .and_then(|d| d.kaetzchen_endpoint(katzenpost::kaetzchen::CAPABILITY_KEYSERVER))
            .map(str::to_owned);
        let Some(endpoint) = endpoint else {
            let why = format!("provider {provider} offers no keyserver in the PKI document");
            self.core.run(failed(why)).await?;
            return Ok(false);
        };
        let mut surb_id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut surb_id);
        let route = Route {
            src_provider: &self.core.cfg.provider,
            own_user: &self.core.user,
            dst_provider: &provider,
            recipient: endpoint.as_bytes(),
        };
        let request = katzenpost::kaetzchen::KeyserverRequest::new(user).encode();
        let built = match send::build_packet(doc, &docs.clock, &route, &request, Some(surb_id)) {
            Ok(b) => b,
            Err(err) => {
                self.core.record_error(&err);
                return Ok(false);
            }
        };
        let Some(keys) = &built.surb_keys else {
            return Ok(false);
        };
        let now = unix_now_duration();
        let rec = SurbRecord {
            entry: QUERY_ENTRY,
            block: 0,
            eta: (now + built.eta).as_secs(),
            keys: keys.as_bytes().to_vec(),
        };
        let overdue = now + built.eta + self.core.cfg.timings.retransmit_slack;
        let Some((old, resend, attempt)) = self
            .core
            .state()
            .discovery
            .get(recipient)
            .map(|q| (q.surb_id, q.attempts > 0, q.attempts.saturating_add(1)))
        else {
            return Ok(false);
        };
        let r = recipient.to_owned();
        self.core
            .run(move |c, st| {
                c.store.kv_put(KvTable::Surb, &surb_id, &rec.encode())?;
                c.update_discovery(st, |d| {
                    if let Some(q) = d.get_mut(&r) {
                        q.attempts = attempt;
                        q.surb_id = surb_id;
                        q.overdue_at = overdue.as_secs_f64().ceil() as u64;
                    }
                })?;
                if resend {
                    c.store.kv_remove(KvTable::Surb, &old)?;
                }
                Ok(())
            })
            .await?;
        sess.link.send(&Command::SendPacket(built.packet)).await?;
        self.core.set_status(|s| {
            s.packets_sent += 1;
            if resend {
                s.retransmissions += 1;
            }
        });
        tracing::info!(account = %self.core.account, recipient, attempt, "key query sent");
        Ok(true)
    }
}
