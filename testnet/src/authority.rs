//! The nonvoting authority's logic without I/O (§5.5): the whitelist,
//! descriptor uploads with their status codes, document generation per
//! epoch, and the answers to GetConsensus. A voting peer uses the same state
//! for uploads and answers; its documents are made by the committee
//! ([`crate::voting`]) and handed over with [`AuthorityState::publish`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use katzenpost::epoch::EpochClock;
use katzenpost::pki::document::{sign_document, Document, MixDescriptor};
use katzenpost::wire::commands::{consensus_status, descriptor_status};
use rand::seq::SliceRandom;
use rand::{CryptoRng, RngCore};

use crate::config::Params;
use crate::descriptor::cert_expiration;

/// How many past epochs' descriptors and documents are kept.
const KEEP_EPOCHS: u64 = 3;

/// The authority's state.
pub struct AuthorityState {
    key: SigningKey,
    params: Params,
    clock: EpochClock,
    mixes: BTreeSet<[u8; 32]>,
    providers: BTreeMap<[u8; 32], String>,
    descriptors: BTreeMap<u64, BTreeMap<[u8; 32], MixDescriptor>>,
    documents: BTreeMap<u64, Vec<u8>>,
    start_epoch: u64,
    started_unix: u64,
    layers: BTreeMap<[u8; 32], usize>,
    /// Whitelisted nodes run elsewhere: admitted like the others, but the
    /// start-up document does not wait for them.
    external: BTreeSet<[u8; 32]>,
}

/// A document of `params` for `epoch` (no commit, as both 2019 authorities).
pub fn document(
    p: &Params,
    epoch: u64,
    topology: Vec<Vec<MixDescriptor>>,
    providers: Vec<MixDescriptor>,
    shared_random_value: Vec<u8>,
) -> Document {
    Document {
        epoch,
        params: p.document,
        topology,
        providers,
        shared_random_commit: Vec::new(),
        shared_random_value,
    }
}

/// How long after start-up the authority waits for every node before it
/// settles for "enough" descriptors for the next epoch.
const STARTUP_GRACE_SECS: u64 = 60;

impl AuthorityState {
    /// A new authority that started at `now_unix`.
    pub fn new(
        key: SigningKey,
        params: Params,
        mixes: BTreeSet<[u8; 32]>,
        providers: BTreeMap<[u8; 32], String>,
        now_unix: u64,
    ) -> Self {
        let clock = EpochClock::new(Duration::from_secs(params.epoch_period_secs));
        let start_epoch = clock.at(Duration::from_secs(now_unix)).epoch;
        Self {
            key,
            params,
            clock,
            mixes,
            providers,
            descriptors: BTreeMap::new(),
            documents: BTreeMap::new(),
            start_epoch,
            started_unix: now_unix,
            layers: BTreeMap::new(),
            external: BTreeSet::new(),
        }
    }

    /// Whitelists mixes and providers run elsewhere (other implementations'
    /// nodes): their descriptors are accepted and enter the documents made
    /// after they posted; the start-up document does not wait for them.
    pub fn admit_external(
        &mut self,
        mixes: BTreeSet<[u8; 32]>,
        providers: BTreeMap<[u8; 32], String>,
    ) {
        self.external.extend(mixes.iter().chain(providers.keys()));
        self.mixes.extend(mixes);
        self.providers.extend(providers);
    }

    /// Whether `identity` may upload (whitelisted mix or provider).
    pub fn is_whitelisted(&self, identity: &[u8; 32]) -> bool {
        self.mixes.contains(identity) || self.providers.contains_key(identity)
    }

    /// Handles `PostDescriptor{epoch, signed}` from an authenticated node
    /// session with identity `session`: the status code to reply.
    pub fn post_descriptor(
        &mut self,
        session: &[u8; 32],
        epoch: u64,
        signed: &[u8],
        now_unix: u64,
    ) -> u8 {
        let now = self.clock.at(Duration::from_secs(now_unix)).epoch;
        if epoch + 1 < now || epoch > now + 1 {
            return descriptor_status::INVALID;
        }
        let Ok(desc) = MixDescriptor::parse_signed(signed, epoch, now_unix) else {
            return descriptor_status::INVALID;
        };
        if &desc.identity_key != session || !self.is_whitelisted(session) {
            return descriptor_status::FORBIDDEN;
        }
        let is_provider = desc.layer == 255;
        match self.providers.get(session) {
            Some(name) if !is_provider || name != &desc.name => {
                return descriptor_status::FORBIDDEN
            }
            None if is_provider => return descriptor_status::FORBIDDEN,
            _ => {}
        }
        let stored = self.descriptors.entry(epoch).or_default();
        if let Some(old) = stored.get(session) {
            return if old.signed == desc.signed {
                descriptor_status::OK
            } else {
                descriptor_status::CONFLICT
            };
        }
        if self.documents.contains_key(&epoch) {
            return descriptor_status::CONFLICT;
        }
        stored.insert(*session, desc);
        descriptor_status::OK
    }

    fn all_posted(&self, epoch: u64) -> bool {
        let Some(d) = self.descriptors.get(&epoch) else {
            return false;
        };
        self.mixes
            .iter()
            .chain(self.providers.keys())
            .filter(|k| !self.external.contains(*k))
            .all(|k| d.contains_key(k))
    }

    fn enough_for(&self, epoch: u64) -> bool {
        let Some(d) = self.descriptors.get(&epoch) else {
            return false;
        };
        let providers = d.values().filter(|x| x.layer == 255).count();
        let mixes = d.len() - providers;
        providers >= 1 && mixes >= self.params.layers
    }

    /// The epochs (current and next) whose document is due at `now_unix`
    /// and not made yet: every node posted, or, late in the epoch, enough.
    pub fn due(&self, now_unix: u64) -> Vec<u64> {
        let now = self.clock.at(Duration::from_secs(now_unix));
        // The real authority settles for "enough" descriptors once less than
        // an hour is left; a short test period scales that to an eighth, and
        // never in the first minute, while every node is still posting.
        let late = now.till < Duration::from_secs(3600).min(self.clock.period() / 8)
            && now_unix >= self.started_unix + STARTUP_GRACE_SECS;
        [now.epoch, now.epoch + 1]
            .into_iter()
            .filter(|epoch| !self.documents.contains_key(epoch))
            .filter(|&epoch| {
                self.all_posted(epoch) || (epoch == now.epoch + 1 && late && self.enough_for(epoch))
            })
            .collect()
    }

    /// Forgets documents and descriptors older than [`KEEP_EPOCHS`].
    fn prune(&mut self, now_unix: u64) {
        let now = self.clock.at(Duration::from_secs(now_unix));
        let keep = now.epoch.saturating_sub(KEEP_EPOCHS);
        self.documents = self.documents.split_off(&keep);
        self.descriptors = self.descriptors.split_off(&keep);
    }

    /// Generates the documents that are due (call on every upload and
    /// periodically); returns the epochs for which a document was made.
    pub fn generate_due<R: RngCore + CryptoRng>(&mut self, rng: &mut R, now_unix: u64) -> Vec<u64> {
        let mut made = Vec::new();
        for epoch in self.due(now_unix) {
            if let Some(doc) = self.make_document(rng, epoch, now_unix) {
                self.documents.insert(epoch, doc);
                made.push(epoch);
            }
        }
        self.prune(now_unix);
        made
    }

    /// The descriptors accepted for `epoch` (for the voting committee's
    /// exchange), by identity key.
    pub fn descriptors(&self, epoch: u64) -> Vec<MixDescriptor> {
        self.descriptors
            .get(&epoch)
            .map(|d| d.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether the document for `epoch` is held.
    pub fn has_document(&self, epoch: u64) -> bool {
        self.documents.contains_key(&epoch)
    }

    /// The signed document for `epoch`, if held.
    pub fn signed_document(&self, epoch: u64) -> Option<Vec<u8>> {
        self.documents.get(&epoch).cloned()
    }

    /// Takes a document made elsewhere (by the voting committee) to serve.
    pub fn publish(&mut self, epoch: u64, signed: Vec<u8>, now_unix: u64) {
        self.documents.insert(epoch, signed);
        self.prune(now_unix);
    }

    /// The document parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    fn make_document<R: RngCore + CryptoRng>(
        &mut self,
        rng: &mut R,
        epoch: u64,
        now_unix: u64,
    ) -> Option<Vec<u8>> {
        let descs = self.descriptors.get(&epoch)?;
        let mut providers: Vec<MixDescriptor> =
            descs.values().filter(|d| d.layer == 255).cloned().collect();
        providers.sort_by(|a, b| a.name.cmp(&b.name));
        let mut mixes: Vec<&MixDescriptor> = descs.values().filter(|d| d.layer != 255).collect();
        mixes.shuffle(rng);
        // Keep each mix's previous layer where possible, then fill the smallest layers.
        let n = self.params.layers;
        let mut topology: Vec<Vec<MixDescriptor>> = vec![Vec::new(); n];
        let per_layer = mixes.len().div_ceil(n);
        let mut rest = Vec::new();
        for m in mixes {
            match self.layers.get(&m.identity_key) {
                Some(&l) if l < n && topology[l].len() < per_layer => topology[l].push(m.clone()),
                _ => rest.push(m),
            }
        }
        for m in rest {
            let l = (0..n).min_by_key(|&l| topology[l].len()).unwrap_or(0);
            topology[l].push(m.clone());
        }
        if topology.iter().any(Vec::is_empty) || providers.is_empty() {
            return None;
        }
        for (l, layer) in topology.iter_mut().enumerate() {
            layer.sort_by_key(|d| d.identity_key);
            for d in layer.iter() {
                self.layers.insert(d.identity_key, l);
            }
        }
        let doc = document(&self.params, epoch, topology, providers, vec![0; 32]);
        let expiration = cert_expiration(now_unix, self.clock.period().as_secs());
        match sign_document(&doc, &self.key, expiration) {
            Ok(signed) => Some(signed),
            Err(e) => {
                tracing::warn!(epoch, error = %e, "could not make the document");
                None
            }
        }
    }

    /// Answers `GetConsensus{epoch}`: (status code, signed document or empty).
    pub fn get_consensus(&self, epoch: u64, now_unix: u64) -> (u8, Vec<u8>) {
        if let Some(doc) = self.documents.get(&epoch) {
            return (consensus_status::OK, doc.clone());
        }
        let now = self.clock.at(Duration::from_secs(now_unix));
        let code = if epoch == now.epoch {
            if epoch == self.start_epoch {
                consensus_status::NOT_FOUND
            } else {
                consensus_status::GONE
            }
        } else if epoch == now.epoch + 1 {
            if now.till < self.clock.period() / 8 * 7 {
                consensus_status::GONE
            } else {
                consensus_status::NOT_FOUND
            }
        } else if epoch < now.epoch {
            consensus_status::GONE
        } else {
            consensus_status::NOT_FOUND
        };
        (code, Vec::new())
    }

    /// The epoch clock in use.
    pub fn clock(&self) -> EpochClock {
        self.clock
    }
}
