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
//!
//! A port checked that way is free only at that moment: two processes walking
//! the range could both see it free and both hand it out. So every port handed
//! out is also claimed with an exclusive `flock` on a file named for it in a
//! directory shared by every user of this module on the machine, held until
//! the process exits: another process skips a port whose lock it cannot take.
//! (A process that binds ports without this module can still take one; the
//! range below the ephemeral one makes that rare.)

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// Lowest port handed out.
const LOW: u32 = 10_000;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The locks of the ports this process handed out (held until exit).
static CLAIMED: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// Where the port locks live: one directory per user, so that another user's
/// files never stand in the way.
fn lock_dir() -> PathBuf {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    std::env::temp_dir().join(format!("testnet-ports-{uid}"))
}

/// Claims `port` for this process, unless another process holds its lock.
/// Without a usable lock directory, claims nothing and says yes (the bind
/// check alone, as before).
fn claim(port: u32) -> bool {
    let dir = lock_dir();
    let _ = std::fs::create_dir_all(&dir);
    let file = match File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(port.to_string()))
    {
        Ok(f) => f,
        Err(_) => return true,
    };
    // SAFETY: flock on a valid, owned file descriptor.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return false;
    }
    CLAIMED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(file);
    true
}

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
        if TcpListener::bind(addr).is_ok() && claim(port) {
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

    #[test]
    fn another_process_skips_claimed_ports() {
        let mine = reserve().unwrap();
        // The lock another process would try to take: flock locks belong to
        // the open file description, so a second open of the same file
        // conflicts just as another process's would.
        let other = File::options()
            .write(true)
            .open(lock_dir().join(mine.port().to_string()))
            .unwrap();
        // SAFETY: flock on a valid, owned file descriptor.
        let rc = unsafe { libc::flock(other.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_ne!(rc, 0, "port {} was not claimed", mine.port());
        assert!(!claim(u32::from(mine.port())));
    }
}
