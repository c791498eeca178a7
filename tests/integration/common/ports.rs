//! Loopback ports for the processes a test starts.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// Returns a port that was free a moment ago. Another process can take it
/// before the caller binds it, so callers retry on a bind failure.
pub fn free_port() -> u16 {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding an ephemeral loopback port");
    listener
        .local_addr()
        .expect("a bound listener has an address")
        .port()
}

/// A loopback port that refuses connections, chosen below Linux's default
/// ephemeral range (32768-60999).
///
/// Ports in that range are never handed out for outgoing connections, so
/// after [`UnusedPort::release`] no connection of another test can take the
/// port while a process is about to bind it; only an explicit bind can, and
/// the port is chosen at random among several thousand.
pub struct UnusedPort {
    pub port: u16,
}

/// The range [`UnusedPort`] picks from.
const UNUSED_PORTS: std::ops::Range<u16> = 20_000..32_000;

impl UnusedPort {
    pub fn new() -> UnusedPort {
        let mut seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
            ^ std::process::id().rotate_left(16);
        for _ in 0..200 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let port =
                UNUSED_PORTS.start + (seed >> 8) as u16 % (UNUSED_PORTS.end - UNUSED_PORTS.start);
            // Free now, and nothing is listening, so connections are refused.
            if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return UnusedPort { port };
            }
        }
        panic!("no free loopback port found in {UNUSED_PORTS:?}");
    }

    pub fn address(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Returns the port for a process about to bind it.
    pub fn release(self) -> u16 {
        self.port
    }
}
