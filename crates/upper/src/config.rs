//! Configuration for the uppercase server, shared by flags, TOML (`[upper]`) and the lab.

use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// Where and how the uppercase server listens, and the limits it enforces.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpperConfig {
    /// Address to listen on (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Serve UDP datagrams instead of TCP connections.
    pub udp: bool,
    /// Longest accepted line (TCP) or datagram (UDP), in bytes; longer input gets an error.
    pub max_line: usize,
    /// Seconds a TCP connection may stay silent before it is closed.
    pub idle_timeout_secs: u64,
    /// Most TCP connections served at once; more are told the server is busy.
    pub max_connections: usize,
}

impl Default for UpperConfig {
    fn default() -> Self {
        UpperConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 12000)),
            udp: false,
            max_line: 64 * 1024,
            idle_timeout_secs: 60,
            max_connections: 1024,
        }
    }
}

impl UpperConfig {
    /// The idle timeout as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs.max(1))
    }
}
