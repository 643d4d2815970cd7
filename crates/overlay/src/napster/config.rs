//! Configuration of the Napster directory (`[napster]`) and of a sharing peer
//! (`[napster-share]`), shared by CLI flags, TOML files and the lab.

use crate::http::UploadConfig;
use appnet_netkit::accept::ConnLimits;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// The directory server: where it listens and what it holds.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectoryConfig {
    /// Address to listen on (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Most connections (sharing peers and searchers) at once.
    pub max_connections: usize,
    /// Most connections from one source address.
    pub max_per_ip: usize,
    /// Seconds a new connection has to send its first whole line.
    pub request_timeout_secs: u64,
    /// Seconds a connection may stay silent between lines (sharing peers send PING well
    /// within it); its entries go when it is closed.
    pub idle_timeout_secs: u64,
    /// Longest accepted line, in bytes.
    pub max_line: usize,
    /// Entries one sharing peer may announce.
    pub max_entries_per_peer: usize,
    /// Entries in the whole directory.
    pub max_entries: usize,
    /// Hits one search returns.
    pub max_results: usize,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        DirectoryConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8888)),
            max_connections: 1024,
            max_per_ip: 16,
            request_timeout_secs: 10,
            idle_timeout_secs: 60,
            max_line: 1024,
            max_entries_per_peer: 10_000,
            max_entries: 1_000_000,
            max_results: 100,
        }
    }
}

impl DirectoryConfig {
    /// The connection policy for the listener.
    pub fn conn_limits(&self) -> ConnLimits {
        ConnLimits {
            max_connections: self.max_connections.max(1),
            max_per_ip: self.max_per_ip.max(1),
            request_timeout: Duration::from_secs(self.request_timeout_secs.max(1)),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs.max(1)),
        }
    }
}

/// A sharing peer: its HTTP side, the directory it informs, and how often it says it is alive.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShareConfig {
    /// The directory's address.
    pub server: SocketAddr,
    /// Seconds between keep-alive PINGs to the directory (keep it under the directory's idle
    /// timeout) and between reconnection attempts when the directory is gone.
    pub keepalive_secs: u64,
    /// The HTTP upload side (its `listen` is the address announced to the directory).
    #[serde(flatten)]
    pub upload: UploadConfig,
}

impl Default for ShareConfig {
    fn default() -> Self {
        ShareConfig {
            server: SocketAddr::from(([127, 0, 0, 1], 8888)),
            keepalive_secs: 20,
            upload: UploadConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 6699)),
                ..UploadConfig::default()
            },
        }
    }
}
