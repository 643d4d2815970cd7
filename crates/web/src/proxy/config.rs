//! Configuration of the caching proxy, shared by `appnet web proxy` flags, the `[proxy]` table
//! of a TOML file and the lab.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `appnet web proxy` needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// Address to listen on (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Reverse-proxy mode: the origin (`http://host[:port]` or `https://host[:port]`) every
    /// request goes to. Without it (and without `origins`) the proxy is a forward proxy for
    /// configured clients.
    pub reverse: Option<String>,
    /// Reverse-proxy mode: origin per Host name (lower case, no port), before `reverse`.
    pub origins: BTreeMap<String, String>,
    /// Keep bodies on disk in this directory (survives restarts); otherwise in memory.
    pub cache_dir: Option<PathBuf>,
    /// Bytes of bodies kept in memory (without `cache_dir`).
    pub memory_size: u64,
    /// Bytes of bodies kept on disk (with `cache_dir`).
    pub disk_size: u64,
    /// Largest object stored; larger ones pass through.
    pub max_object_size: u64,
    /// Most Vary variants kept per URL.
    pub max_variants: usize,
    /// Clients allowed to use the proxy (addresses or CIDR prefixes; empty: everyone).
    pub allow: Vec<String>,
    /// Clients allowed to PURGE and to read the metrics.
    pub purge_allow: Vec<String>,
    /// Ports CONNECT may reach (forward mode).
    pub connect_ports: Vec<u16>,
    /// Forward mode: internal destinations (loopback, private, link-local...; addresses or
    /// CIDR prefixes) that may be reached anyway. Empty: none. The proxy's own listening
    /// address is refused regardless.
    pub allow_dest: Vec<String>,
    /// Forward the client's `X-Forwarded-Host` (and `X-Host`, `X-Forwarded-Server`,
    /// `X-Original-URL`, `X-Rewrite-URL`) upstream. Off by default: they are not part of the
    /// cache key, and origins that reflect them would let one client poison the cache.
    pub forward_host_overrides: bool,
    /// Bytes of bodies being stored in memory at once, all misses together (memory store
    /// only; they count against `memory_size` too). A miss that would exceed it stops
    /// storing and streams through uncached.
    pub max_inflight_bytes: u64,
    /// Path answered with statistics in the Prometheus text format (empty: off). In reverse
    /// mode only `purge_allow` clients get it; others reach the origin's path.
    pub metrics_path: String,
    /// Serve HTTPS to clients (HTTP/1.1 and HTTP/2 by ALPN). Without `cert`/`key` the lab CA
    /// mints a certificate, as for `appnet web serve --tls`.
    pub tls: bool,
    /// Also serve clients over HTTP/3 (QUIC) on the same IP and port (UDP); needs `tls`. TCP
    /// responses then advertise it with `Alt-Svc`.
    pub http3: bool,
    /// PEM certificate chain of the listener (implies `tls`).
    pub cert: Option<PathBuf>,
    /// PEM private key of the listener.
    pub key: Option<PathBuf>,
    /// Extra names for a lab-CA certificate (besides localhost and the listening address).
    pub tls_names: Vec<String>,
    /// The lab CA's directory (default: ~/.local/share/appnet/lab-ca): it mints the listener's
    /// certificate, and `https://` origins it signed are trusted when `origin_lab_ca` is on.
    pub ca_dir: Option<PathBuf>,
    /// PEM files of further CAs trusted for `https://` origins (besides the system's roots).
    pub origin_ca: Vec<PathBuf>,
    /// Trust the system's roots (/etc/ssl/certs) for `https://` origins.
    pub origin_system_roots: bool,
    /// Trust the lab CA (when it exists) for `https://` origins.
    pub origin_lab_ca: bool,
    /// Offer HTTP/2 to `https://` origins by ALPN (HTTP/1.1 is always offered).
    pub origin_h2: bool,
    /// Resolve origin host names by asking this recursive DNS resolver (`None`: the system's).
    pub dns: Option<SocketAddr>,
    /// Seconds to connect to an origin.
    pub connect_timeout_secs: u64,
    /// Seconds an origin has to start answering; then 504.
    pub origin_timeout_secs: u64,
    /// Seconds an origin body may stall between chunks.
    pub body_idle_timeout_secs: u64,
    /// Seconds a client connection with no request in progress stays open (HTTP/1 keep-alive
    /// and HTTP/2).
    pub idle_timeout_secs: u64,
    /// Seconds a client has to send a request head.
    pub header_timeout_secs: u64,
    /// Most client connections at once; when full, the longest-idle connection without a
    /// request in progress is closed for a newcomer (503 only when every one is busy).
    pub max_connections: usize,
    /// Most client connections from one address; more get 503. `None`: an eighth of
    /// `max_connections` (1,250 by default: a proxy's clients often share one address
    /// behind NAT, and idle connections are evicted when the proxy is full anyway).
    pub max_connections_per_ip: Option<usize>,
    /// Most idle pooled connections kept per origin.
    pub pool_per_host: usize,
    /// Fraction of (Date − Last-Modified) used as heuristic freshness.
    pub heuristic_fraction: f32,
    /// Cap on heuristic freshness, in seconds.
    pub heuristic_max_secs: u64,
    /// Collapse concurrent misses for one URL into one origin request.
    pub collapse: bool,
    /// Name used in Via and Cache-Status.
    pub name: String,
    /// Log each request on stdout.
    pub access_log: bool,
    /// Longest HTTP/1 request line in bytes (414 beyond).
    pub max_request_line: usize,
    /// Largest HTTP/1 request head in bytes (431 beyond).
    pub max_header_bytes: usize,
    /// Most header fields in an HTTP/1 request head (431 beyond).
    pub max_headers: usize,
    /// CDN push: the file holding the secret shared with the content provider (at least 16
    /// bytes). Without it `POST /.appnet/push` is refused (push is off).
    pub push_secret_file: Option<PathBuf>,
    /// Seconds a push's timestamp may differ from this replica's clock.
    pub push_window_secs: u64,
    /// Most URLs in one push (413 beyond).
    pub push_max_urls: usize,
    /// Largest push body in bytes (413 beyond).
    pub push_max_body: usize,
    /// Most push fetches to origins at once, all pushes together.
    pub push_concurrency: usize,
    /// Most accepted push signatures remembered (against replays) within the window; when
    /// full, further pushes get 503 until older ones expire.
    pub push_max_remembered: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 3128)),
            reverse: None,
            origins: BTreeMap::new(),
            cache_dir: None,
            memory_size: 256 * 1024 * 1024,
            disk_size: 4 * 1024 * 1024 * 1024,
            max_object_size: 64 * 1024 * 1024,
            max_variants: 16,
            allow: ["127.0.0.0/8", "::1", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]
                .map(String::from)
                .to_vec(),
            purge_allow: vec!["127.0.0.0/8".into(), "::1".into()],
            connect_ports: vec![443],
            allow_dest: Vec::new(),
            forward_host_overrides: false,
            max_inflight_bytes: 64 * 1024 * 1024,
            metrics_path: "/metrics".into(),
            tls: false,
            http3: false,
            cert: None,
            key: None,
            tls_names: Vec::new(),
            ca_dir: None,
            origin_ca: Vec::new(),
            origin_system_roots: true,
            origin_lab_ca: true,
            origin_h2: true,
            dns: None,
            connect_timeout_secs: 5,
            origin_timeout_secs: 30,
            body_idle_timeout_secs: 30,
            idle_timeout_secs: 60,
            header_timeout_secs: 10,
            max_connections: 10_000,
            max_connections_per_ip: None,
            pool_per_host: 64,
            heuristic_fraction: 0.1,
            heuristic_max_secs: 86_400,
            collapse: true,
            name: "appnet".into(),
            access_log: false,
            max_request_line: 8 * 1024,
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            push_secret_file: None,
            push_window_secs: 300,
            push_max_urls: 1000,
            push_max_body: 1024 * 1024,
            push_concurrency: 8,
            push_max_remembered: 10_000,
        }
    }
}

impl ProxyConfig {
    /// Whether the proxy runs in reverse mode.
    pub fn is_reverse(&self) -> bool {
        self.reverse.is_some() || !self.origins.is_empty()
    }

    /// Whether the listener speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls || self.cert.is_some()
    }

    pub(crate) fn secs(v: u64) -> Duration {
        Duration::from_secs(v.max(1))
    }
}
