//! The upload side's settings, flattened into the Napster share and Gnutella node configs.

use crate::http::slots::SlotLimits;
use appnet_netkit::accept::ConnLimits;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// Where the HTTP side listens and the limits it enforces.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadConfig {
    /// Address to listen on; it is also the address announced to the directory or in Pongs
    /// and QueryHits.
    pub listen: SocketAddr,
    /// Most connections at once.
    pub max_connections: usize,
    /// Most connections from one source address.
    pub max_per_ip: usize,
    /// Seconds a new connection has to send its first whole request head.
    pub request_timeout_secs: u64,
    /// Seconds a kept-alive connection may wait for its next request.
    pub idle_timeout_secs: u64,
    /// Largest request head, in bytes (431 beyond).
    pub max_header: usize,
    /// Files sent at once (KaZaA: limited simultaneous uploads).
    pub max_uploads: usize,
    /// Peers that may wait in the upload queue.
    pub max_queue: usize,
    /// Seconds a queued peer is told to wait before asking again.
    pub poll_min_secs: u64,
    /// Seconds after which a queued peer that has not asked again loses its place.
    pub poll_max_secs: u64,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 6699)),
            max_connections: 256,
            max_per_ip: 8,
            request_timeout_secs: 10,
            idle_timeout_secs: 30,
            max_header: 8192,
            max_uploads: 4,
            max_queue: 32,
            poll_min_secs: 5,
            poll_max_secs: 60,
        }
    }
}

impl UploadConfig {
    /// The connection policy for the listener.
    pub fn conn_limits(&self) -> ConnLimits {
        ConnLimits {
            max_connections: self.max_connections.max(1),
            max_per_ip: self.max_per_ip.max(1),
            request_timeout: Duration::from_secs(self.request_timeout_secs.max(1)),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs.max(1)),
        }
    }

    /// The upload slot policy.
    pub fn slot_limits(&self) -> SlotLimits {
        SlotLimits {
            max_uploads: self.max_uploads.max(1),
            max_queue: self.max_queue,
            poll_min: Duration::from_secs(self.poll_min_secs),
            poll_max: Duration::from_secs(self.poll_max_secs.max(self.poll_min_secs).max(1)),
        }
    }
}
