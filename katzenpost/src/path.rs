//! Path selection and delays (§2.10; core `sphinx/path`, minclient `send.go`).
//!
//! Forward path from a client: own provider, one mix per layer (uniform per
//! layer), destination provider. The last hop carries `Recipient`, and also a
//! `NodeDelay` when a SURB is attached (or the destination provider sends no
//! ACK); every other hop carries a `NodeDelay`.
//!
//! SURB (reverse) path: one mix per layer, then the own provider, whose hop
//! carries `Recipient(own user)` and `SURBReply(id)`; the SURB path starts
//! from the forward path's final arrival time.
//!
//! Each hop's mix key is the one for the epoch the packet is expected to reach
//! it. Everything is deterministic given the RNG, the clock and the document.

use std::time::Duration;

use rand::{CryptoRng, Rng};
use rand_distr::{Distribution, Exp};

use crate::epoch::EpochClock;
use crate::geometry::{NR_HOPS, RECIPIENT_ID_LENGTH, SURB_ID_LENGTH};
use crate::pki::document::{Document, MixDescriptor};
use crate::sphinx::commands::{PathHop, RoutingCommand};

/// Attempts before path selection gives up (minclient's `maxAttempts`).
pub const MAX_ATTEMPTS: usize = 3;

/// Errors selecting a path.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PathError {
    /// No provider of this name in the document.
    #[error("no provider named {0:?} in the document")]
    NoSuchProvider(String),
    /// The document has no mix layers.
    #[error("document has no mix layers")]
    EmptyTopology,
    /// A mix layer has no nodes.
    #[error("mix layer {0} is empty")]
    EmptyLayer(usize),
    /// Too many layers for the 5-hop geometry (at most 3).
    #[error("{0} mix layers do not fit in {NR_HOPS} hops")]
    TooManyLayers(usize),
    /// The document's Mu is not a positive finite rate.
    #[error("document Mu {0} is not a positive rate")]
    BadMu(f64),
    /// A recipient id is 1 to 64 bytes.
    #[error("recipient of {len} bytes is not 1..=64")]
    BadRecipient { len: usize },
    /// A hop's descriptor has no mix key for the epoch the packet reaches it.
    #[error("node {node:?} has no mix key for epoch {epoch}")]
    MissingMixKey { node: String, epoch: u64 },
    /// The total delay is at least two epoch periods.
    #[error("path ETA {0:?} is at least two epoch periods")]
    EtaTooLong(Duration),
    /// Building the paths took longer than what was left of the epoch.
    #[error("path selection straddled an epoch boundary")]
    EpochBoundary,
    /// Every attempt failed; this is the last failure.
    #[error("path selection failed after {attempts} attempts: {last}")]
    GaveUp {
        attempts: usize,
        last: Box<PathError>,
    },
}

/// The RecipientID for a user name or endpoint: NUL-padded to 64 bytes.
/// Empty names and names longer than 64 bytes are errors.
pub fn recipient_id(name: &[u8]) -> Result<[u8; RECIPIENT_ID_LENGTH], PathError> {
    if name.is_empty() || name.len() > RECIPIENT_ID_LENGTH {
        return Err(PathError::BadRecipient { len: name.len() });
    }
    let mut r = [0u8; RECIPIENT_ID_LENGTH];
    r[..name.len()].copy_from_slice(name);
    Ok(r)
}

/// The SURB part of a request: who the reply is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SurbRequest<'a> {
    /// The sending account's own user name (the SURB's Recipient).
    pub own_user: &'a [u8],
    /// The SURB id (random, chosen by the caller, who keeps the record).
    pub surb_id: [u8; SURB_ID_LENGTH],
}

/// What to route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathRequest<'a> {
    /// Name of the sending account's provider (first hop, SURB path's last hop).
    pub src_provider: &'a str,
    /// Name of the destination provider (forward path's last hop).
    pub dst_provider: &'a str,
    /// Forward Recipient: the destination user name or a Kaetzchen endpoint.
    pub recipient: &'a [u8],
    /// Attach a SURB (reliable send, Kaetzchen request), or not (unreliable send).
    pub surb: Option<SurbRequest<'a>>,
}

/// The result of path selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedPaths {
    /// The forward path: L + 2 hops.
    pub forward: Vec<PathHop>,
    /// The SURB path (L + 1 hops), when a SURB was asked for.
    pub surb: Option<Vec<PathHop>>,
    /// The start time the paths were computed from (Unix time, whole seconds).
    pub base_time: Duration,
    /// Expected round trip: forward delays plus SURB path delays.
    pub eta: Duration,
}

/// Selects the forward path and, if asked, the SURB path (§2.10).
///
/// `clock` returns the current Unix time; it is read at the start of each
/// attempt (truncated to whole seconds) and again after building, for the
/// epoch-straddling check. A missing mix key, an ETA of two periods or more, or
/// straddling the epoch restarts selection, at most [`MAX_ATTEMPTS`] times.
pub fn select_paths<R, C>(
    doc: &Document,
    epochs: &EpochClock,
    request: &PathRequest<'_>,
    rng: &mut R,
    mut clock: C,
) -> Result<SelectedPaths, PathError>
where
    R: Rng + CryptoRng + ?Sized,
    C: FnMut() -> Duration,
{
    let layers = doc.topology.len();
    if layers == 0 {
        return Err(PathError::EmptyTopology);
    }
    if layers + 2 > NR_HOPS {
        return Err(PathError::TooManyLayers(layers));
    }
    if let Some(i) = doc.topology.iter().position(Vec::is_empty) {
        return Err(PathError::EmptyLayer(i));
    }
    if !(doc.params.mu.is_finite() && doc.params.mu > 0.0) {
        return Err(PathError::BadMu(doc.params.mu));
    }
    let exp = Exp::new(doc.params.mu).map_err(|_| PathError::BadMu(doc.params.mu))?;
    let src = provider(doc, request.src_provider)?;
    let dst = provider(doc, request.dst_provider)?;
    let fwd_recipient = recipient_id(request.recipient)?;
    let surb = match &request.surb {
        Some(s) => Some((recipient_id(s.own_user)?, s.surb_id)),
        None => None,
    };
    let delays = Delays {
        exp,
        max: doc.params.mu_max_delay,
    };
    let two_periods = epochs.period().saturating_mul(2);

    let mut last = PathError::EpochBoundary;
    for _ in 0..MAX_ATTEMPTS {
        let now = Duration::from_secs(clock().as_secs());
        let till = epochs.at(now).till;

        let mut hops: Vec<&MixDescriptor> = Vec::with_capacity(layers + 2);
        hops.push(src);
        hops.extend(pick_mixes(doc, rng));
        hops.push(dst);
        let mut terminal = Vec::with_capacity(2);
        terminal.push(RoutingCommand::Recipient(fwd_recipient));
        let built = build_path(&hops, now, terminal, surb.is_some(), epochs, &delays, rng);
        let (forward, then) = match built {
            Ok(x) => x,
            Err(e @ PathError::MissingMixKey { .. }) => {
                last = e;
                continue;
            }
            Err(e) => return Err(e),
        };

        let (surb_path, then) = match surb {
            None => (None, then),
            Some((own, id)) => {
                let mut hops: Vec<&MixDescriptor> = Vec::with_capacity(layers + 1);
                hops.extend(pick_mixes(doc, rng));
                hops.push(src);
                let terminal = vec![
                    RoutingCommand::Recipient(own),
                    RoutingCommand::SurbReply(id),
                ];
                match build_path(&hops, then, terminal, false, epochs, &delays, rng) {
                    Ok((p, t)) => (Some(p), t),
                    Err(e @ PathError::MissingMixKey { .. }) => {
                        last = e;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
        };

        let eta = then.saturating_sub(now);
        if eta >= two_periods {
            last = PathError::EtaTooLong(eta);
            continue;
        }
        if clock().saturating_sub(now) >= till {
            last = PathError::EpochBoundary;
            continue;
        }
        return Ok(SelectedPaths {
            forward,
            surb: surb_path,
            base_time: now,
            eta,
        });
    }
    Err(PathError::GaveUp {
        attempts: MAX_ATTEMPTS,
        last: Box::new(last),
    })
}

fn provider<'a>(doc: &'a Document, name: &str) -> Result<&'a MixDescriptor, PathError> {
    doc.providers
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| PathError::NoSuchProvider(name.to_string()))
}

/// One node per layer, uniformly at random, layer 0 first.
fn pick_mixes<'a, R: Rng + ?Sized>(doc: &'a Document, rng: &mut R) -> Vec<&'a MixDescriptor> {
    doc.topology
        .iter()
        .map(|layer| &layer[rng.gen_range(0..layer.len())])
        .collect()
}

struct Delays {
    exp: Exp<f64>,
    /// MuMaxDelay in ms; 0 = no cap.
    max: u64,
}

impl Delays {
    /// ⌊Exp(Mu)⌋ + 1 ms, capped at MuMaxDelay when that is set (and at u32::MAX,
    /// the largest NodeDelay).
    fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u32 {
        let x: f64 = self.exp.sample(rng);
        // `as` saturates (and maps NaN to 0).
        let mut d = (x.floor() as u64).saturating_add(1);
        if self.max > 0 && d > self.max {
            d = self.max;
        }
        u32::try_from(d).unwrap_or(u32::MAX)
    }
}

/// Builds the hops for `descs` starting at `base`. Every hop but the last gets a
/// NodeDelay, the last one too if `delay_on_terminal`; the last hop gets
/// `terminal` after its NodeDelay. Returns the path and the arrival time after
/// the last delay.
fn build_path<R: Rng + ?Sized>(
    descs: &[&MixDescriptor],
    base: Duration,
    terminal: Vec<RoutingCommand>,
    delay_on_terminal: bool,
    epochs: &EpochClock,
    delays: &Delays,
    rng: &mut R,
) -> Result<(Vec<PathHop>, Duration), PathError> {
    let mut then = base;
    let mut path = Vec::with_capacity(descs.len());
    let last = descs.len() - 1;
    let mut terminal = Some(terminal);
    for (idx, desc) in descs.iter().enumerate() {
        let epoch = epochs.at(then).epoch;
        let public_key = *desc
            .mix_keys
            .get(&epoch)
            .ok_or_else(|| PathError::MissingMixKey {
                node: desc.name.clone(),
                epoch,
            })?;
        let mut commands = Vec::with_capacity(3);
        if idx != last || delay_on_terminal {
            let d = delays.sample(rng);
            then += Duration::from_millis(u64::from(d));
            commands.push(RoutingCommand::NodeDelay(d));
        }
        if idx == last {
            commands.extend(terminal.take().unwrap_or_default());
        }
        path.push(PathHop {
            id: desc.identity_key,
            public_key,
            commands,
        });
    }
    Ok((path, then))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipient_ids() {
        let r = recipient_id(b"bob").unwrap();
        assert_eq!(&r[..3], b"bob");
        assert!(r[3..].iter().all(|&b| b == 0));
        assert!(recipient_id(&[b'a'; 64]).is_ok());
        assert_eq!(
            recipient_id(&[b'a'; 65]),
            Err(PathError::BadRecipient { len: 65 })
        );
        assert_eq!(recipient_id(b""), Err(PathError::BadRecipient { len: 0 }));
    }
}
