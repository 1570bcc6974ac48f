//! Free loopback ports for a cluster on one machine (`scot up`, the simulation, tests).
//!
//! A port is probed by binding port 0 and releasing it; the process that will listen on it binds
//! later, often only after loading a model. Two probes in that gap could get the same port back from
//! the OS, and the second listener would then find the first one's port taken (or, worse, a client
//! would reach the wrong service). So this process never hands out a port twice.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;

/// Ports handed out by this process so far.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Probes before giving up: a repeat is rare, 64 in a row means something else is wrong.
const ATTEMPTS: usize = 64;

/// A loopback port that is free now and that this process has not handed out before.
pub fn loopback_port() -> std::io::Result<u16> {
    for _ in 0..ATTEMPTS {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut handed_out = HANDED_OUT
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if handed_out.insert(port) {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no loopback port this process has not used yet in {ATTEMPTS} probes"),
    ))
}

/// `127.0.0.1:<loopback_port()>`.
pub fn loopback_addr() -> std::io::Result<SocketAddr> {
    Ok(SocketAddr::from(([127, 0, 0, 1], loopback_port()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_hands_out_a_port_twice_even_when_the_os_would() {
        // Probing and releasing in a loop makes the OS offer released ports again; none may repeat.
        let ports: Vec<u16> = (0..500).map(|_| loopback_port().unwrap()).collect();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
        assert!(ports.iter().all(|&p| p != 0));
        // The port is free: it can be bound.
        let addr = loopback_addr().unwrap();
        TcpListener::bind(addr).expect("a handed-out port can be bound");
    }
}
