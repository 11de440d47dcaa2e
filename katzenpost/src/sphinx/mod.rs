//! Sphinx packets (§2): creation, unwrap, SURBs, katzenpost-2019 profile.
//!
//! * [`create_packet`] builds a forward packet along 1 to 5 [`PathHop`]s.
//! * [`unwrap_packet`] processes one hop IN PLACE on the packet buffer with
//!   the node's X25519 mix private key and tells what to do next
//!   ([`Unwrapped`], [`UnwrapAction`]).
//! * [`create_surb`] makes a SURB and its [`SurbKeys`] decryption token;
//!   [`packet_from_surb`] makes the (deterministic) reply packet from a SURB;
//!   [`decrypt_surb_payload`] / [`SurbKeys::decrypt_in_place`] read a reply.
//! * [`commands`] encodes and parses the per-hop routing commands.
//!
//! Primitives: X25519 (clamped scalars), HKDF-SHA256 expand only,
//! HMAC-SHA256/128, AES-128-CTR with a 128-bit counter, AEZ v5 (no AD,
//! tau 0), SHA-512/256 replay tags.
//!
//! Speed, with no build configuration needed (CPU features are detected at
//! run time): AEZ runs on AES-NI where present (`aez_accelerated()`), else
//! on the portable `zears`; X25519 multiplies in Edwards form with
//! curve25519-dalek (AVX2 backend where present) and falls back to the
//! ladder for twist points; header creation folds the blinding factors into
//! one scalar per hop (5 variable-base + 4 fixed-base multiplications for 5
//! hops instead of the 2019 code's 20 ladders), which reproduces the 2019
//! results exactly (tested against the step-by-step construction).

mod aez;
#[doc(hidden)]
pub mod bench_support;
pub mod commands;
mod error;
mod exp;
#[doc(hidden)]
pub mod forge;
mod header;
mod packet;
mod primitives;
mod surb;

pub use aez::accelerated as aez_accelerated;
pub use commands::{PathHop, RoutingCommand};
pub use error::SphinxError;
pub use packet::{create_packet, packet_replay_tag, unwrap_packet, UnwrapAction, Unwrapped};
pub use surb::{
    create_surb, decrypt_surb_payload, packet_from_surb, pad_reply_body, Surb, SurbKeys,
};

/// The X25519 public key (mix key) of a private key: X25519(k, 9).
pub fn public_key(private_key: &[u8; 32]) -> [u8; 32] {
    exp::exp_base(private_key)
}
