//! Configuration of the recursive resolver, shared by flags, TOML (`[resolver]`) and the lab.

use crate::local::DEFAULT_EXTRA_ZONES;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The resolver service's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResolverConfig {
    /// UDP and TCP address for clients (port 0 picks a free one).
    pub listen: SocketAddr,
    /// A root hints file (the standard `named.root` format); `None` uses the built-in
    /// list of the real root servers.
    pub root_hints: Option<PathBuf>,
    /// The port upstream authoritative servers listen on (53; the lab uses 10053).
    pub upstream_port: u16,
    /// Forward every question to this recursive resolver instead of iterating from the root.
    pub forward: Option<SocketAddr>,
    /// Client networks allowed to use the resolver; everyone else gets REFUSED.
    pub allow: Vec<String>,
    /// Per-client queries per second (0 = no limit); over it, queries are dropped.
    pub rate_limit_qps: u32,
    /// Apply the rate limit to loopback clients too (off by default, for benchmarks and tests).
    pub rate_limit_loopback: bool,
    /// Randomise the case of names in upstream queries (DNS 0x20) and insist it is echoed.
    pub use_0x20: bool,
    /// Most cached answers.
    pub cache_size: usize,
    /// Longest time (seconds) any answer is cached.
    pub max_ttl: u32,
    /// Longest time (seconds) a negative answer is cached.
    pub max_negative_ttl: u32,
    /// Seconds a SERVFAIL is remembered so a dead zone is not hammered.
    pub servfail_ttl: u32,
    /// Zones answered NXDOMAIN locally besides the built-in special-use ones.
    pub extra_local_zones: Vec<String>,
    /// Seconds an idle client TCP connection stays open.
    pub tcp_idle_timeout_secs: u64,
    /// Most client TCP connections at once.
    pub max_tcp_connections: usize,
    /// Most questions being resolved at once; more are answered SERVFAIL.
    pub max_in_flight: usize,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8053)),
            root_hints: None,
            upstream_port: 53,
            forward: None,
            allow: vec!["127.0.0.0/8".into(), "::1".into()],
            rate_limit_qps: 200,
            rate_limit_loopback: false,
            use_0x20: false,
            cache_size: 100_000,
            max_ttl: 86_400,
            max_negative_ttl: 3_600,
            servfail_ttl: 5,
            extra_local_zones: DEFAULT_EXTRA_ZONES.iter().map(|s| s.to_string()).collect(),
            tcp_idle_timeout_secs: 10,
            max_tcp_connections: 256,
            max_in_flight: 2_048,
        }
    }
}
