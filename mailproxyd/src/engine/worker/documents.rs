//! PKI documents in the worker: the bootstrap document that finds the
//! provider, and keeping the current and next epochs' documents, through
//! the provider with the authority as fallback.

use katzenpost::wire::commands::Command;
use mailproxy_proto::EventKind;

use super::super::pki::{Documents, Fetched};
use super::super::EngineError;
use super::link::ProviderLink;
use super::session::SessionState;
use super::Worker;

impl Worker {
    /// Records a newly obtained document in the status and as an event.
    pub(in crate::engine) fn document_obtained(&self, docs: &Documents, epoch: u64) {
        let fetched = docs.newest_obtained();
        self.core.set_status(|s| {
            s.document_epoch = Some(s.document_epoch.unwrap_or(0).max(epoch));
            s.document_fetched = fetched;
        });
        self.core.emit(EventKind::Document { epoch });
    }

    /// Obtains a document to find the provider with: held, or from the authority.
    pub(in crate::engine) async fn bootstrap_document(
        &mut self,
        docs: &mut Documents,
    ) -> Result<(), EngineError> {
        if docs.newest().is_some() {
            return Ok(());
        }
        let epoch = docs.epoch();
        let cfg = &self.core.cfg;
        match docs
            .fetch_from_authority(
                &self.core.store,
                &cfg.upstream,
                &cfg.authority,
                epoch,
                cfg.timings.link_timeout,
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

    /// Fetches the current epoch's document if missing and the next one near
    /// the end of the epoch, through the provider, falling back to the authority.
    /// Returns false if a wanted document could not be obtained.
    pub(in crate::engine) async fn refresh_documents<L: ProviderLink>(
        &mut self,
        sess: &mut SessionState<L>,
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
        let core = self.core.clone();
        let cfg = &core.cfg;
        for epoch in wanted {
            sess.link.send(&Command::GetConsensus { epoch }).await?;
            let reply = sess.link.recv(cfg.timings.link_timeout).await?;
            let via_provider = docs.consensus_reply(&core.store, epoch, reply).await;
            let got = match via_provider {
                Ok(Fetched::Document(_)) => true,
                Ok(Fetched::NotFound) | Err(EngineError::Pki(_)) => {
                    match docs
                        .fetch_from_authority(
                            &core.store,
                            &cfg.upstream,
                            &cfg.authority,
                            epoch,
                            cfg.timings.link_timeout,
                        )
                        .await
                    {
                        Ok(Fetched::Document(_)) => true,
                        Ok(Fetched::NotFound) => false,
                        Err(e) => {
                            core.record_error(&e);
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
}
