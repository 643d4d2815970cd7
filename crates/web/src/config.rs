//! Configuration for the web server, shared by flags, TOML (`[web]`) and the lab.

use crate::files::policy::{CacheRule, Redirect};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `appnet web serve` needs: sites, TLS, features and limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Address to listen on (port 0 picks a free one).
    pub listen: SocketAddr,
    /// The default site's directory (used for unknown or absent Host names).
    pub root: PathBuf,
    /// Virtual hosts: host name (lower case, no port) → site directory.
    pub vhosts: BTreeMap<String, PathBuf>,
    /// Serve HTTPS (HTTP/1.1 and h2 by ALPN). Without `cert`/`key` the lab CA mints a certificate.
    pub tls: bool,
    /// Also serve HTTP/3 over QUIC on the same IP and port (UDP); needs `tls`. HTTP/1.1 and
    /// HTTP/2 responses then advertise it with `Alt-Svc`.
    pub http3: bool,
    /// PEM certificate chain file.
    pub cert: Option<PathBuf>,
    /// PEM private key file.
    pub key: Option<PathBuf>,
    /// Where the lab CA keeps `ca.pem` and `ca.key` (default: ~/.local/share/appnet/lab-ca).
    pub ca_dir: Option<PathBuf>,
    /// Allow PUT (upload) and DELETE inside the site directories.
    pub allow_write: bool,
    /// Index file names tried, in order, for a directory.
    pub index: Vec<String>,
    /// Generate a listing for directories without an index file.
    pub listing: bool,
    /// Serve the built-in apps: `/cart` (cookie shopping cart) and `/echo` (request echo).
    pub apps: bool,
    /// Where the echo app answers (each path and everything below it); `["/"]` makes the whole
    /// server an echo server, as conformance suites that POST to `/` expect.
    pub echo_paths: Vec<String>,
    /// HTTP/2 server push of the resources an HTML page links (when the client allows push).
    pub push: bool,
    /// Explicit push lists per page (the request path, e.g. `/`, or the file's, `/index.html`);
    /// they replace the links found in the page.
    pub push_pages: BTreeMap<String, Vec<String>>,
    /// Cache-Control/Expires rules, first match wins.
    pub cache: Vec<CacheRule>,
    /// Configured redirects.
    pub redirects: Vec<Redirect>,
    /// Serve the counters in the Prometheus text format at this path (off when absent).
    pub metrics_path: Option<String>,
    /// Write the access log (Combined Log Format) to stdout.
    pub access_log: bool,
    /// Largest request body accepted (PUT uploads, POST to the apps), in bytes.
    pub max_body: u64,
    /// Longest request line (method, target, version), in bytes; longer gets 414.
    pub max_request_line: usize,
    /// Largest request head (request line and all header fields), in bytes; larger gets 431.
    pub max_header_bytes: usize,
    /// Most header fields in one request; more gets 431.
    pub max_headers: usize,
    /// Seconds a client has to send a complete request head once it started (slowloris).
    pub header_timeout_secs: u64,
    /// Seconds an idle keep-alive connection stays open.
    pub idle_timeout_secs: u64,
    /// Most connections at once. At the cap a newcomer takes the slot of the connection that
    /// has waited longest without a request; only when all are busy does it get 503.
    pub max_connections: usize,
    /// Most connections from one client address (absent: `max_connections`/8, from 1 to 64);
    /// more get 503.
    pub max_per_ip: Option<usize>,
    /// `/cart` sessions kept at most; at the cap the least recently used is dropped.
    pub cart_max_sessions: usize,
    /// `/cart` sessions one client address (IPv6: one /64) may create per second; more get 429.
    pub cart_new_per_sec: u64,
    /// ... and in a burst.
    pub cart_new_burst: u64,
    /// Most concurrent HTTP/2 streams per connection.
    pub h2_max_streams: u32,
    /// Kernel TCP's congestion control for HTTP/1.1 and HTTP/2 connections (`cubic`, `reno`,
    /// `bbr`, ...; set on the listener, connections inherit it). Absent: the system's default.
    pub tcp_congestion: Option<String>,
    /// The congestion controller of HTTP/3's QUIC connections: `cubic` (the default, as in
    /// most kernels' TCP), `new-reno` or `bbr`.
    pub h3_congestion: crate::h3::quic::Congestion,
    /// Which HTTP/2 implementation serves connections: appnet's own core (`own`, the
    /// default) or the driver on the `h2` crate (`h2-crate`).
    pub h2_engine: H2Engine,
    /// Serve plain GET and HEAD on HTTP/1 by appnet's own connection loop
    /// ([`crate::http1_fast`]); `false` sends every HTTP/1 request through hyper.
    pub http1_fast_path: bool,
    /// Files up to this size are kept in memory (checked against mtime on each use).
    pub cache_file_max: u64,
    /// Total bytes of the in-memory file cache (0 disables it).
    pub cache_total: u64,
    /// TCP worker threads, each with its own single-threaded runtime and accept loop (as
    /// nginx's worker processes and h2o's threads), sharing one connection table and caps.
    /// 0 serves on the caller's runtime (the lab and tests do); HTTP/3 always does.
    pub workers: usize,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            root: PathBuf::from("."),
            vhosts: BTreeMap::new(),
            tls: false,
            http3: false,
            cert: None,
            key: None,
            ca_dir: None,
            allow_write: false,
            index: vec!["index.html".into(), "index.htm".into()],
            listing: true,
            apps: true,
            echo_paths: vec!["/echo".into()],
            push: true,
            push_pages: BTreeMap::new(),
            cache: Vec::new(),
            redirects: Vec::new(),
            metrics_path: None,
            access_log: true,
            max_body: 10 * 1024 * 1024,
            max_request_line: 8 * 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            header_timeout_secs: 10,
            idle_timeout_secs: 60,
            max_connections: 10_000,
            max_per_ip: None,
            cart_max_sessions: crate::apps::MAX_SESSIONS,
            cart_new_per_sec: 2,
            cart_new_burst: 20,
            h2_max_streams: 128,
            tcp_congestion: None,
            h3_congestion: crate::h3::quic::Congestion::default(),
            h2_engine: H2Engine::default(),
            http1_fast_path: true,
            cache_file_max: 2 * 1024 * 1024,
            cache_total: 128 * 1024 * 1024,
            workers: 0,
        }
    }
}

/// The HTTP/2 server implementation (see [`WebConfig::h2_engine`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum H2Engine {
    /// appnet's sans-IO core ([`crate::h2core`]) driven by [`crate::h2serve`]: conformant
    /// (httpwg 107/107), RFC 9218 priorities, static answers memoized per connection.
    #[default]
    Own,
    /// The `h2` crate behind [`crate::h2srv`] (kept selectable: it costs one match per
    /// connection).
    H2Crate,
}

impl WebConfig {
    /// The header read timeout.
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_secs.max(1))
    }

    /// The idle keep-alive timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs.max(1))
    }
}
