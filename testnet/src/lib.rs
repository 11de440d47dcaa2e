//! A local Katzenpost network (`katzenpost-2019` profile) for demos and tests:
//! a nonvoting authority, mixes and providers that speak the same link
//! protocol, PKI and packet formats as the real 2019 servers.

pub mod authority;
pub mod classify;
pub mod config;
pub mod descriptor;
pub mod mgmt;
pub mod mixkeys;
pub mod process;
pub mod ratelimit;
pub mod replay;
pub mod spool;
pub mod users;
