//! What a node does with one incoming Sphinx packet (§2.6, §2.7, §7),
//! without I/O: try the mix keys in force, check the replay filter, classify
//! by the command set, and decide: forward after a delay, spool for a user
//! (and send the SURB-ACK), answer a Kaetzchen request, or drop (with the
//! reason, for the node's counters).

use std::time::Duration;

use katzenpost::block::ForwardBody;
use katzenpost::epoch::EpochTime;
use katzenpost::kaetzchen::{self, Service};
use katzenpost::sphinx::{self, SphinxError, UnwrapAction};

use crate::classify::{classify, recipient_name, PacketClass};
use crate::mixkeys::MixKeyring;
use crate::replay::ReplayFilters;
use crate::spool::SpoolEntry;
use crate::users::normalize_user;

/// Where a packet came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingress {
    /// A client session at this provider.
    Client,
    /// Another node (a provider or mix of the previous layer).
    Node,
}

/// The node's role for packet handling.
pub enum NodeRole<'a> {
    /// A mix: only forwards.
    Mix,
    /// A provider: path ends, users, Kaetzchen.
    Provider(&'a dyn ProviderContext),
}

/// What a provider knows about its users and services.
pub trait ProviderContext {
    /// The service behind a Kaetzchen endpoint, matched byte-exact.
    fn service_for(&self, recipient: &[u8; 64]) -> Option<Service>;
    /// Whether `user` (already case-mapped) is registered.
    fn user_exists(&self, user: &str) -> bool;
    /// The identity key of `user` exactly as sent (keyserver path).
    fn identity_key(&self, user: &str) -> Option<[u8; 32]>;
}

/// Why a packet was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// No key in force opened it (bad MAC), or it was malformed.
    Invalid(SphinxError),
    /// Its replay tag was seen before under the same key.
    Replay,
    /// Its command set is not one of the four classes, or the class is not
    /// allowed at this node for this ingress.
    BadClass,
    /// NodeDelay longer than 3 epochs.
    DelayTooLong,
    /// A user packet whose forward body breaks the provider's rules.
    BadBody,
    /// No such user at this provider.
    UnknownUser,
    /// A Kaetzchen request without a SURB, or a SURB reply to an endpoint.
    BadKaetzchen,
}

/// What to do with the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Send `packet` to node `next` after `delay`.
    Forward {
        next: [u8; 32],
        delay: Duration,
        packet: Vec<u8>,
    },
    /// Store `entry` in `user`'s spool; then send `ack` if present.
    Spool {
        user: String,
        entry: SpoolEntry,
        ack: Option<Box<Outcome>>,
    },
    /// Dropped.
    Drop(DropReason),
}

/// Processes one packet. `packet` is consumed (unwrapped in place).
pub fn process_packet(
    mut packet: Vec<u8>,
    ingress: Ingress,
    role: &NodeRole<'_>,
    keys: &MixKeyring,
    replay: &mut ReplayFilters,
    now: EpochTime,
    period: Duration,
) -> Outcome {
    // Try each key in force; a bad MAC leaves the buffer untouched.
    let mut last_err = SphinxError::BadMac;
    let mut opened = None;
    for (epoch, secret) in keys.unwrap_candidates(now, period) {
        match sphinx::unwrap_packet(&secret.to_bytes(), &mut packet) {
            Ok(u) => {
                opened = Some((epoch, u));
                break;
            }
            Err(SphinxError::BadMac) => continue,
            Err(e) => {
                last_err = e;
                break;
            }
        }
    }
    let Some((epoch, unwrapped)) = opened else {
        return Outcome::Drop(DropReason::Invalid(last_err));
    };
    if !replay.check_and_insert(epoch, unwrapped.replay_tag) {
        return Outcome::Drop(DropReason::Replay);
    }
    let Some(class) = classify(&unwrapped.commands) else {
        return Outcome::Drop(DropReason::BadClass);
    };
    let max_delay = period.saturating_mul(3);
    match (class, role, ingress, unwrapped.action) {
        (PacketClass::Forward { next, delay_ms }, _, _, UnwrapAction::Forward { .. }) => {
            // A provider forwards only what its clients send; mixes forward anything.
            if matches!(role, NodeRole::Provider(_)) && ingress == Ingress::Node {
                return Outcome::Drop(DropReason::BadClass);
            }
            let delay = Duration::from_millis(delay_ms as u64);
            if delay > max_delay {
                return Outcome::Drop(DropReason::DelayTooLong);
            }
            Outcome::Forward {
                next,
                delay,
                packet,
            }
        }
        (
            PacketClass::ToUser {
                recipient,
                ack_delay_ms,
            },
            NodeRole::Provider(ctx),
            Ingress::Node,
            UnwrapAction::Deliver { payload },
        ) => {
            let Ok(body) = ForwardBody::parse(&packet[payload]) else {
                return Outcome::Drop(DropReason::BadBody);
            };
            let reply_to = |reply_body: Vec<u8>, surb: &[u8]| -> Outcome {
                let delay = Duration::from_millis(ack_delay_ms.unwrap_or(0) as u64);
                match sphinx::packet_from_surb(surb, &reply_body) {
                    Ok((next, packet)) if delay <= max_delay => Outcome::Forward {
                        next,
                        delay,
                        packet,
                    },
                    Ok(_) => Outcome::Drop(DropReason::DelayTooLong),
                    Err(e) => Outcome::Drop(DropReason::Invalid(e)),
                }
            };
            if let Some(service) = ctx.service_for(&recipient) {
                // A Kaetzchen request: needs a SURB and a terminal NodeDelay.
                let (Some(surb), Some(_)) = (body.surb, ack_delay_ms) else {
                    return Outcome::Drop(DropReason::BadKaetzchen);
                };
                return match kaetzchen::handle_request(service, &body, |u| ctx.identity_key(u)) {
                    Ok(reply) => reply_to(reply, surb),
                    Err(_) => Outcome::Drop(DropReason::BadKaetzchen),
                };
            }
            let Some(user) = recipient_name(&recipient).and_then(|n| normalize_user(n).ok()) else {
                return Outcome::Drop(DropReason::UnknownUser);
            };
            if !ctx.user_exists(&user) {
                return Outcome::Drop(DropReason::UnknownUser);
            }
            let ack = match (body.surb, ack_delay_ms) {
                (Some(surb), Some(_)) => Some(Box::new(reply_to(kaetzchen::ack_body(), surb))),
                _ => None,
            };
            Outcome::Spool {
                user,
                entry: SpoolEntry::Message(body.user_payload.to_vec()),
                ack,
            }
        }
        (
            PacketClass::SurbReply { recipient, surb_id },
            NodeRole::Provider(ctx),
            Ingress::Node,
            UnwrapAction::SurbReply { payload, .. },
        ) => {
            if ctx.service_for(&recipient).is_some() {
                return Outcome::Drop(DropReason::BadKaetzchen);
            }
            let Some(user) = recipient_name(&recipient).and_then(|n| normalize_user(n).ok()) else {
                return Outcome::Drop(DropReason::UnknownUser);
            };
            if !ctx.user_exists(&user) {
                return Outcome::Drop(DropReason::UnknownUser);
            }
            let payload = packet[payload].to_vec();
            Outcome::Spool {
                user,
                entry: SpoolEntry::SurbReply { surb_id, payload },
                ack: None,
            }
        }
        _ => Outcome::Drop(DropReason::BadClass),
    }
}
