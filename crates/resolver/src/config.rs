//! Configuration of the recursive resolver, shared by flags, TOML (`[resolver]`) and the lab.

use crate::cache::DEFAULT_CACHE_BYTES;
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
    /// Most bytes the cache holds (answers and delegations; LRU eviction past it). In TOML a
    /// number of bytes or a string with a unit: `"32MiB"`, `"512KiB"`, `"1GiB"`.
    #[serde(deserialize_with = "de_size")]
    pub cache_size: usize,
    /// Longest time (seconds) any answer is cached, and the largest TTL clients are given.
    pub max_ttl: u32,
    /// Longest time (seconds) a negative answer is cached, and the largest TTL its SOA is given.
    pub max_negative_ttl: u32,
    /// Seconds a SERVFAIL is remembered so a dead zone is not hammered.
    pub servfail_ttl: u32,
    /// Zones answered NXDOMAIN locally besides the built-in special-use ones.
    pub extra_local_zones: Vec<String>,
    /// Seconds a client TCP connection has to send each whole query (the first one too); an
    /// idle connection is closed after it, and may be closed earlier for a newcomer when
    /// `max_tcp_connections` are open.
    pub tcp_idle_timeout_secs: u64,
    /// Most client TCP connections at once.
    pub max_tcp_connections: usize,
    /// Most client TCP connections from one address (0 = an eighth of `max_tcp_connections`,
    /// between 1 and 64).
    pub max_tcp_per_ip: usize,
    /// Most questions being resolved at once; more are answered SERVFAIL.
    pub max_in_flight: usize,
    /// Most upstream exchanges in flight towards one zone (delegation point) at once, like
    /// Unbound's `ratelimit`: a random-subdomain flood of one zone gets SERVFAIL past it instead
    /// of piling up waits on that zone's servers (0 = no limit).
    pub max_in_flight_per_zone: usize,
    /// Most questions one client (an IPv4 address, an IPv6 /64) may have being resolved at once;
    /// its further uncached questions get SERVFAIL at once while other clients proceed; cached
    /// answers are still served (0 = no limit).
    pub max_in_flight_per_client: usize,
    /// Most upstream queries one client question may cause, name-server address lookups and
    /// retries included; past it the question gets SERVFAIL (at least 1).
    pub max_queries_per_question: usize,
    /// Validate answers with DNSSEC (RFC 4033-4035): AD on secure answers, SERVFAIL with an
    /// Extended DNS Error (RFC 8914) on bogus ones, insecure below a proven unsigned delegation.
    pub dnssec: bool,
    /// Trust-anchor files (DS and/or DNSKEY records in zone-file format, like Unbound's
    /// `trust-anchor-file`; `appnet dns ds` output works). Empty: the built-in IANA root
    /// anchors (KSK-2017, KSK-2024). When any file is given, only the files' anchors are
    /// trusted — that is how the lab (or a private hierarchy) replaces the IANA root anchor.
    pub trust_anchors: Vec<PathBuf>,
}

fn de_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(usize),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Bytes(n) => Ok(n),
        Size::Text(t) => appnet_netkit::units::parse_size_usize(&t).map_err(serde::de::Error::custom),
    }
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
            cache_size: DEFAULT_CACHE_BYTES,
            max_ttl: 86_400,
            max_negative_ttl: 3_600,
            servfail_ttl: 5,
            extra_local_zones: DEFAULT_EXTRA_ZONES.iter().map(|s| s.to_string()).collect(),
            tcp_idle_timeout_secs: 10,
            max_tcp_connections: 256,
            max_tcp_per_ip: 0,
            max_in_flight: 2_048,
            max_in_flight_per_zone: 64,
            max_in_flight_per_client: 32,
            max_queries_per_question: crate::iterate::DEFAULT_MAX_QUERIES,
            dnssec: false,
            trust_anchors: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_size_reads_bytes_or_text() {
        use serde::de::IntoDeserializer;
        use serde::de::value::Error;
        let text = |t: &str| de_size(IntoDeserializer::<Error>::into_deserializer(t));
        assert_eq!(de_size(IntoDeserializer::<Error>::into_deserializer(33_554_432u64)), Ok(32 << 20));
        assert_eq!(text("4m"), Ok(4 << 20));
        assert_eq!(text("32MiB"), Ok(32 << 20));
        assert_eq!(text("10kB"), Ok(10_000));
        assert!(text("lots").is_err());
        assert!(text("99999999999999999999GiB").is_err());
    }
}
