//! Listening ports for a local network.
//!
//! Binding port 0 and releasing the socket hands out a port from the kernel's
//! ephemeral range, which every outgoing connection on the machine also draws
//! from: between choosing the port and binding it for real, a client socket
//! elsewhere (another test, another node's link) can take it, and the node then
//! fails with "address in use". Ports here come from below the ephemeral range,
//! which only explicit binds use, walking from a per-process offset so
//! concurrent processes start far apart; each candidate is checked by binding
//! it once.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};

/// Lowest port handed out.
const LOW: u32 = 10_000;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The first port of the kernel's ephemeral range (32768 when it cannot be
/// read).
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .filter(|&p: &u32| p > LOW + 1_000)
        .unwrap_or(32_768)
}

/// A free loopback address whose port lies outside the ephemeral range.
pub fn reserve() -> std::io::Result<SocketAddr> {
    let span = ephemeral_low() - LOW;
    let offset = (std::process::id().wrapping_mul(7919)) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LOW + (offset + n) % span;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port as u16));
        if TcpListener::bind(addr).is_ok() {
            return Ok(addr);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no free port below the ephemeral range",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_free_and_below_the_ephemeral_range() {
        let a: Vec<_> = (0..50).map(|_| reserve().unwrap()).collect();
        let mut ports: Vec<u16> = a.iter().map(|a| a.port()).collect();
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), 50);
        for p in ports {
            assert!(u32::from(p) >= LOW && u32::from(p) < ephemeral_low());
        }
        // Each is bindable right now.
        let _held: Vec<_> = a.iter().map(|a| TcpListener::bind(a).unwrap()).collect();
    }
}
