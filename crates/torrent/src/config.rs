//! Configuration for the tracker (`[torrent-tracker]`) and the client (`[torrent]`), shared by
//! CLI flags, TOML files and the lab. Every protocol constant is here so it can be tuned.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The tracker's listeners and policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackerConfig {
    /// HTTP address (announce, scrape, status page); the UDP tracker binds the same port.
    pub listen: SocketAddr,
    /// Also serve the UDP tracker protocol (BEP 15) on the same port.
    pub udp: bool,
    /// Seconds between announces asked of clients.
    pub interval_secs: u32,
    /// Minimum seconds between announces.
    pub min_interval_secs: u32,
    /// Peers silent this long are dropped (default: two intervals and a minute).
    pub peer_timeout_secs: Option<u64>,
    /// Peers per reply when the client does not ask.
    pub default_numwant: u32,
    /// Most peers per reply.
    pub max_numwant: u32,
    /// Most peers per torrent.
    pub max_peers_per_torrent: usize,
    /// Most torrents tracked.
    pub max_torrents: usize,
    /// Most peer entries per client IP address.
    pub max_peers_per_ip: usize,
    /// Sustained announces per second per IP (burst ten times that).
    pub announces_per_ip_per_sec: u32,
    /// New torrents one source (IPv4 address or IPv6 /64) may add to the table per minute.
    pub new_torrents_per_ip_per_min: u32,
    /// Only track these info hashes (hex); empty allows any.
    pub allow: Vec<String>,
    /// Most simultaneous HTTP connections.
    pub max_connections: usize,
    /// Seconds to receive a whole HTTP request.
    pub request_timeout_secs: u64,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 6969)),
            udp: true,
            interval_secs: 1800,
            min_interval_secs: 60,
            peer_timeout_secs: None,
            default_numwant: 50,
            max_numwant: 200,
            max_peers_per_torrent: 10_000,
            max_torrents: 100_000,
            max_peers_per_ip: 256,
            announces_per_ip_per_sec: 20,
            new_torrents_per_ip_per_min: 30,
            allow: Vec::new(),
            max_connections: 1024,
            request_timeout_secs: 10,
        }
    }
}

/// The client's behaviour: ports, limits, choking and piece-picking constants.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// Address to accept peers on (port 0 picks one).
    pub listen: SocketAddr,
    /// Download directory (`get`) or data location (`seed`: the directory holding the torrent's
    /// file or folder).
    pub dir: PathBuf,
    /// Download cap in bytes per second (all peers together); none by default.
    pub download_rate: Option<u64>,
    /// Upload cap in bytes per second (all peers together); none by default.
    pub upload_rate: Option<u64>,
    /// Token-bucket burst for both caps, in bytes (default: a tenth of a second at the rate).
    pub rate_burst: Option<u64>,
    /// Most connected peers. When all slots are taken, a newcomer takes the slot of the oldest
    /// peer that never became useful (not interested, no block either way).
    pub max_peers: usize,
    /// Most connected peers from one IP address (the same eviction applies within it).
    pub max_peers_per_ip: usize,
    /// Seconds to keep seeding after completing (`None`: forever, 0: leave at once).
    pub seed_time_secs: Option<u64>,
    /// Regular (tit-for-tat) unchoke slots.
    pub unchoke_slots: usize,
    /// Seconds between choker runs.
    pub rechoke_secs: f64,
    /// Seconds between optimistic unchoke rotations.
    pub optimistic_secs: f64,
    /// Window of the rolling transfer rates, in seconds.
    pub rate_window_secs: f64,
    /// A peer that sent no block for this long while we wanted one is snubbed.
    pub snub_secs: f64,
    /// Seconds of a peer's download rate kept requested ahead (the pipeline depth).
    pub request_queue_secs: f64,
    /// Fewest and most outstanding block requests per peer (the pipeline grows with its rate).
    pub min_requests: usize,
    /// See `min_requests`.
    pub max_requests: usize,
    /// Peers sending this many pieces that fail their hash are banned.
    pub max_hash_failures: u32,
    /// fsync each piece before announcing it (crash safety; costs throughput).
    pub fsync: bool,
    /// Reserve the whole download's disk space before the first piece (files are sparse
    /// otherwise): no "disk full" half-way, and unfragmented files.
    pub preallocate: bool,
    /// Take over existing files that are not verifiably this torrent's partial download
    /// (larger than the torrent's file, or no piece of it matches); off, such a file is an error.
    pub overwrite: bool,
    /// Upload nothing (a "selfish" client; also the client-server experiment's clients).
    pub no_upload: bool,
    /// Seconds between tracker announces at most (the tracker's interval is used if shorter).
    pub max_announce_secs: u64,
    /// Peers asked of the tracker per announce.
    pub numwant: u32,
    /// Exchange peer lists with peers (BEP 11 `ut_pex`; never for private torrents).
    pub pex: bool,
    /// Find peers on the mainline DHT (BEP 5; never for private torrents, BEP 27).
    pub dht: bool,
    /// Seconds between PEX messages to a peer (BEP 11 asks for at least 60).
    pub pex_interval_secs: f64,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir: PathBuf::from("."),
            download_rate: None,
            upload_rate: None,
            rate_burst: None,
            max_peers: 50,
            max_peers_per_ip: 4,
            seed_time_secs: Some(0),
            unchoke_slots: 4,
            rechoke_secs: 10.0,
            optimistic_secs: 30.0,
            rate_window_secs: 20.0,
            snub_secs: 60.0,
            request_queue_secs: 2.0,
            min_requests: 8,
            max_requests: 500,
            max_hash_failures: 3,
            fsync: true,
            preallocate: false,
            overwrite: false,
            no_upload: false,
            max_announce_secs: 1800,
            numwant: 50,
            pex: true,
            dht: true,
            pex_interval_secs: 60.0,
        }
    }
}

impl ClientConfig {
    /// The choker's constants from this config.
    pub fn choke_params(&self) -> crate::choker::ChokeParams {
        let secs = |s: f64| std::time::Duration::from_secs_f64(s.clamp(0.001, 1e6));
        crate::choker::ChokeParams {
            slots: self.unchoke_slots,
            rechoke: secs(self.rechoke_secs),
            optimistic: secs(self.optimistic_secs),
            snub: secs(self.snub_secs),
        }
    }
}

impl ClientConfig {
    /// A limiter for `rate` bytes/s with this config's burst (`None`: unlimited).
    pub fn limiter(&self, rate: Option<u64>) -> appnet_netkit::rate::Limiter {
        match (rate, self.rate_burst) {
            (Some(r), Some(b)) => appnet_netkit::rate::Limiter::new(r, b.max(1)),
            (r, _) => appnet_netkit::rate::Limiter::from_rate(r),
        }
    }
}

/// Well-known DHT routers used when no `--dht-bootstrap` is given (real use only; tests always
/// name their own).
pub const DEFAULT_DHT_ROUTERS: &[&str] =
    &["router.bittorrent.com:6881", "dht.transmissionbt.com:6881", "router.utorrent.com:6881"];

/// The mainline DHT node (`[torrent-dht]`, and the DHT of `get`/`seed`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DhtConfig {
    /// UDP address of the node (port 0 picks one).
    pub listen: SocketAddr,
    /// Nodes to join through (`host:port`); asked again while the routing table is nearly empty.
    pub bootstrap: Vec<String>,
    /// Seconds between status lines of `appnet torrent dht` (0: none).
    pub status_secs: u64,
    /// Where the node keeps its id and the nodes it knows across restarts (none: nowhere).
    pub state_file: Option<PathBuf>,
}

impl Default for DhtConfig {
    fn default() -> Self {
        DhtConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 6881)),
            bootstrap: DEFAULT_DHT_ROUTERS.iter().map(|s| s.to_string()).collect(),
            status_secs: 60,
            state_file: None,
        }
    }
}
