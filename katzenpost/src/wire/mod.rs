//! The Katzenpost link protocol (KMNWP, §4): commands, NewHope-Simple, the
//! XXhfs handshake, framing, and the async session.

pub mod commands;
pub mod framing;
pub mod handshake;
pub mod newhope;
pub mod session;
