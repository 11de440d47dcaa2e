//! Katzenpost network protocols, `katzenpost-2019` profile (core v0.0.7,
//! server v0.0.7, nonvoting authority v0.0.8, minclient v0.0.5).
//!
//! Everything here is sans-I/O except [`wire::session`], the async link
//! session over tokio streams. The protocol reference is
//! `../shared/docs/katzenpost-2019.md`; section numbers in comments refer to it.

pub mod block;
pub mod epoch;
pub mod geometry;
pub mod kaetzchen;
pub mod path;
pub mod pki;
pub mod sphinx;
pub mod wire;
