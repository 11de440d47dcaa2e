//! A local Katzenpost network (`katzenpost-2019` profile) for demos and tests:
//! a nonvoting authority (or a set of voting authorities), mixes and
//! providers that speak the same link protocol, PKI and packet formats as
//! the real 2019 servers.

pub mod authority;
pub mod authority_server;
pub mod classify;
pub mod config;
pub mod descriptor;
pub mod link;
pub mod mgmt;
pub mod mixkeys;
pub mod network;
pub mod node;
pub mod ports;
pub mod process;
pub mod ratelimit;
pub mod registration;
pub mod replay;
pub mod spool;
pub mod users;
pub mod voting;
pub mod voting_server;

/// Seconds since the Unix epoch by the system clock.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
