//! Sending: preparing a queue entry once (fragment + Noise_X per block, the
//! ciphertexts kept in the store so every retransmission carries identical
//! bytes), choosing the next block to send, and wrapping it in a Sphinx
//! packet with a SURB.

use std::time::Duration;

use katzenpost::block::{encrypt_block, fragment, ForwardBody};
use katzenpost::epoch::EpochClock;
use katzenpost::path::{select_paths, PathRequest, SurbRequest};
use katzenpost::pki::document::Document;
use katzenpost::sphinx::{self, SurbKeys};
use rand::{Rng, RngCore};

use super::clock::unix_now_duration;
use super::EngineError;
use crate::store::{BlockState, KvTable, QueueEntry, Store};

/// Most ciphertext bytes stored in one commit when preparing an entry.
pub(super) const PREPARE_BATCH_BYTES: usize = 4 << 20;

/// Version byte of the entry's `engine` bytes.
const ENGINE_STATE_V1: u8 = 1;

/// The store key of block `idx`'s ciphertext for queue entry `id`.
pub(super) fn ciphertext_key(id: u64, idx: usize) -> Vec<u8> {
    let mut k = b"engine/ct/".to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(&(idx as u32).to_be_bytes());
    k
}

/// Whether the entry was already fragmented and encrypted.
pub(super) fn is_prepared(e: &QueueEntry) -> bool {
    e.engine.first() == Some(&ENGINE_STATE_V1) && !e.blocks.is_empty()
}

/// Splits `user@provider` into (lower-case user, provider).
pub(super) fn split_address(addr: &str) -> Option<(String, String)> {
    let (u, p) = addr.rsplit_once('@')?;
    if u.is_empty() || p.is_empty() {
        return None;
    }
    Some((u.to_ascii_lowercase(), p.to_ascii_lowercase()))
}

/// Fragments and encrypts the entry's message for `recipient_key`, stores
/// every ciphertext (in commits of about `batch_bytes`), then records the
/// blocks in the entry (in that order: a crash in between just prepares
/// again, nothing was sent yet).
pub(super) fn prepare(
    store: &Store,
    e: &mut QueueEntry,
    identity_private: &[u8; 32],
    recipient_key: &[u8; 32],
    batch_bytes: usize,
) -> Result<(), EngineError> {
    let message = store.read_message(e.message.blob)?;
    let mut message_id = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut message_id);
    let blocks = fragment(message_id, &message)
        .map_err(|err| EngineError::Packet(format!("fragment: {err}")))?;
    // Stored in bounded batches, one commit each, not one per block.
    let mut batch: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut bytes = 0;
    for (i, b) in blocks.iter().enumerate() {
        let ct = encrypt_block(identity_private, recipient_key, b)?;
        bytes += ct.len();
        batch.push((ciphertext_key(e.id, i), ct));
        if bytes >= batch_bytes || i + 1 == blocks.len() {
            let puts: Vec<(KvTable, &[u8], &[u8])> = batch
                .iter()
                .map(|(k, v)| (KvTable::Meta, k.as_slice(), v.as_slice()))
                .collect();
            store.kv_batch(&puts, &[])?;
            batch.clear();
            bytes = 0;
        }
    }
    e.blocks = vec![BlockState::default(); blocks.len()];
    let mut state = vec![ENGINE_STATE_V1];
    state.extend_from_slice(&message_id);
    e.engine = state;
    store.queue_update(e)?;
    Ok(())
}

/// The first block of `e` due for (re)transmission at `now` (Unix seconds).
pub(super) fn due_block(e: &QueueEntry, now: u64) -> Option<usize> {
    e.blocks
        .iter()
        .position(|b| !b.acked && (b.attempts == 0 || b.retransmit_at <= now))
}

/// A Sphinx packet ready to send.
pub(super) struct Built {
    /// The packet.
    pub packet: Vec<u8>,
    /// SURB decryption keys, if a SURB was attached.
    pub surb_keys: Option<SurbKeys>,
    /// Expected round trip (forward + SURB path delays).
    pub eta: Duration,
}

/// Who a packet goes to.
pub(super) struct Route<'a> {
    /// The sending account's provider.
    pub src_provider: &'a str,
    /// The sending account's user name (SURB recipient).
    pub own_user: &'a str,
    /// The destination provider.
    pub dst_provider: &'a str,
    /// The Sphinx recipient: user name or Kaetzchen endpoint.
    pub recipient: &'a [u8],
}

/// Builds a packet along fresh paths, with a SURB under `surb_id` if given.
pub(super) fn build_packet(
    doc: &Document,
    clock: &EpochClock,
    route: &Route<'_>,
    payload: &[u8],
    surb_id: Option<[u8; 16]>,
) -> Result<Built, EngineError> {
    let req = PathRequest {
        src_provider: route.src_provider,
        dst_provider: route.dst_provider,
        recipient: route.recipient,
        surb: surb_id.map(|surb_id| SurbRequest {
            own_user: route.own_user.as_bytes(),
            surb_id,
        }),
    };
    let mut rng = rand::rngs::OsRng;
    let paths = select_paths(doc, clock, &req, &mut rng, unix_now_duration)
        .map_err(|e| EngineError::Packet(format!("path selection: {e}")))?;
    let (surb, surb_keys) = match &paths.surb {
        Some(p) => {
            let (s, k) = sphinx::create_surb(&mut rng, p)
                .map_err(|e| EngineError::Packet(format!("SURB: {e}")))?;
            (Some(s), Some(k))
        }
        None => (None, None),
    };
    let body = ForwardBody {
        surb: surb.as_ref(),
        user_payload: payload,
    }
    .encode()
    .map_err(|e| EngineError::Packet(format!("body: {e}")))?;
    let packet = sphinx::create_packet(&mut rng, &paths.forward, &body)
        .map_err(|e| EngineError::Packet(format!("packet: {e}")))?;
    Ok(Built {
        packet,
        surb_keys,
        eta: paths.eta,
    })
}

/// The Unix time at which an unacknowledged block is re-sent: now + ETA +
/// RetransmitSlack randomised by +-25% (rounded up to whole seconds).
pub(super) fn retransmit_at(now: Duration, eta: Duration, slack: Duration) -> u64 {
    let factor = rand::rngs::OsRng.gen_range(0.75..=1.25);
    let wait = eta + slack.mul_f64(factor);
    (now + wait).as_secs_f64().ceil() as u64
}

/// A Poisson interval at `lambda` per ms, capped at `max_ms` (0 = no cap).
pub(super) fn poisson_interval(lambda: f64, max_ms: u64) -> Duration {
    if !(lambda.is_finite() && lambda > 0.0) {
        return Duration::from_millis(max_ms.max(1000));
    }
    let u: f64 = rand::rngs::OsRng.gen_range(f64::EPSILON..1.0);
    let mut ms = -u.ln() / lambda;
    if max_ms > 0 && ms > max_ms as f64 {
        ms = max_ms as f64;
    }
    Duration::from_secs_f64(ms / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_and_lowercase() {
        assert_eq!(
            split_address("Bob@Provider2"),
            Some(("bob".into(), "provider2".into()))
        );
        assert_eq!(split_address("bob"), None);
        assert_eq!(split_address("@p"), None);
    }

    #[test]
    fn poisson_intervals_are_capped_and_positive() {
        for _ in 0..1000 {
            let d = poisson_interval(1.0 / 10.0, 50);
            assert!(d <= Duration::from_millis(50));
        }
        assert_eq!(poisson_interval(0.0, 0), Duration::from_millis(1000));
    }

    #[test]
    fn retransmission_is_randomised_around_the_slack() {
        let now = Duration::from_secs(1000);
        let at: Vec<u64> = (0..200)
            .map(|_| retransmit_at(now, Duration::ZERO, Duration::from_secs(100)))
            .collect();
        assert!(at.iter().all(|&t| (1075..=1125).contains(&t)));
        assert!(at.iter().any(|&t| t != at[0]), "not randomised");
    }

    #[test]
    fn due_blocks() {
        let mut e = QueueEntry {
            id: 1,
            sender: "a".into(),
            recipient: "b@p".into(),
            message: crate::store::MessageRef {
                blob: 1,
                len: 0,
                chunks: 0,
            },
            created: 0,
            bounce_at: 0,
            unreliable: false,
            blocks: vec![BlockState::default(); 2],
            engine: vec![],
        };
        assert_eq!(due_block(&e, 10), Some(0));
        e.blocks[0] = BlockState {
            acked: false,
            retransmit_at: 20,
            attempts: 1,
        };
        assert_eq!(due_block(&e, 10), Some(1));
        e.blocks[1].acked = true;
        assert_eq!(due_block(&e, 10), None);
        assert_eq!(due_block(&e, 20), Some(0));
    }
}
