//! Configuration for the uppercase server, shared by flags, TOML (`[upper]`) and the lab.

use appnet_netkit::accept::ConnLimits;
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
    /// Seconds a TCP connection has, after an answer, to deliver its whole next line
    /// (trickled bytes do not extend it).
    pub idle_timeout_secs: u64,
    /// Seconds a new TCP connection has to deliver its whole first line.
    pub request_timeout_secs: u64,
    /// Most TCP connections at once; when full, the connection that has waited longest
    /// without a complete line is closed to make room.
    pub max_connections: usize,
    /// Most TCP connections from one source address; more are told the server is busy.
    pub max_per_ip: usize,
    /// Largest UDP reply, as a multiple of the request's size. Upper-casing valid UTF-8 can
    /// triple a text (U+0390 "ΐ", 2 bytes, becomes 6), so the default 3 answers every request;
    /// 1 makes the service useless as a reflector. Replies over it are not sent.
    pub udp_max_amplification: usize,
}

impl Default for UpperConfig {
    fn default() -> Self {
        UpperConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 12000)),
            udp: false,
            max_line: 64 * 1024,
            idle_timeout_secs: 60,
            request_timeout_secs: 10,
            max_connections: 1024,
            max_per_ip: 64,
            udp_max_amplification: 3,
        }
    }
}

impl UpperConfig {
    /// The idle timeout as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs.max(1))
    }

    /// The connection policy for the TCP listener.
    pub fn conn_limits(&self) -> ConnLimits {
        ConnLimits {
            max_connections: self.max_connections.max(1),
            max_per_ip: self.max_per_ip.max(1),
            request_timeout: Duration::from_secs(self.request_timeout_secs.max(1)),
            idle_timeout: self.idle_timeout(),
        }
    }
}
