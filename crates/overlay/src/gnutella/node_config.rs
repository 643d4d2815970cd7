//! A Gnutella node's settings (`[gnutella]`), shared by CLI flags, TOML files and the lab.

use crate::http::UploadConfig;
use serde::Deserialize;
use std::net::SocketAddr;

/// One servent: its neighbours, tier, limits, and its HTTP side (same port).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Candidates to join through, tried one after another.
    pub connect: Vec<SocketAddr>,
    /// Act as an ultrapeer (KaZaA group leader): accept leaves, flood among ultrapeers.
    pub ultrapeer: bool,
    /// Most neighbour connections, in and out together; a full node answers `503 Full`.
    pub max_peers: usize,
    /// Outgoing connections a plain node keeps open when candidates are known (0: it only
    /// accepts); a leaf keeps 1–3 ultrapeers; an ultrapeer this many fellow ultrapeers.
    pub want_peers: usize,
    /// Seconds between attempts to open more connections or replace lost ones.
    pub dial_interval_secs: u64,
    /// Seconds a handshake may take.
    pub handshake_timeout_secs: u64,
    /// Seconds between keep-alive Pings to each neighbour.
    pub keepalive_secs: u64,
    /// Seconds of silence after which a neighbour is dropped.
    pub neighbour_timeout_secs: u64,
    /// Queries accepted per second from one neighbour (excess dropped, a flooder cut).
    pub query_rate: u64,
    /// Query burst allowed from one neighbour.
    pub query_burst: u64,
    /// Largest descriptor payload accepted, in bytes; a longer one drops the connection.
    pub max_payload: usize,
    /// Advertise as firewalled: QueryHits set the Push flag and downloads come via Push/GIV.
    pub firewalled: bool,
    /// The HTTP side; its `listen` is also the Gnutella port and the advertised address.
    #[serde(flatten)]
    pub upload: UploadConfig,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            connect: Vec::new(),
            ultrapeer: false,
            max_peers: 8,
            want_peers: 3,
            dial_interval_secs: 2,
            handshake_timeout_secs: 10,
            keepalive_secs: 30,
            neighbour_timeout_secs: 120,
            query_rate: 20,
            query_burst: 60,
            max_payload: 64 * 1024,
            firewalled: false,
            upload: UploadConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 6346)),
                ..UploadConfig::default()
            },
        }
    }
}
