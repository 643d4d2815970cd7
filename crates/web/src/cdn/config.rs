//! Configuration of the CDN's DNS server (`[cdn]` table; the lab builds it in code).

use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};

/// One replica (a reverse-proxy cache) the DNS may hand out.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Replica {
    /// A short name used in the network table and logs (`replica-east`).
    pub name: String,
    /// The address put in A (or AAAA) answers.
    pub addr: IpAddr,
    /// Where its health is checked with an HTTP GET (default: `addr` port 80).
    #[serde(default)]
    pub check: Option<SocketAddr>,
}

impl Replica {
    /// The health-check address.
    pub fn check_addr(&self) -> SocketAddr {
        self.check.unwrap_or(SocketAddr::new(self.addr, 80))
    }
}

/// Clients in `prefix` are sent to `replicas`, nearest first.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// An address or CIDR prefix of querying resolvers (`127.0.4.0/24`).
    pub prefix: String,
    /// Replica names in order of closeness.
    pub replicas: Vec<String>,
}

/// Everything the CDN DNS server needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CdnConfig {
    /// Address to listen on (UDP and TCP; port 0 picks a free one).
    pub listen: SocketAddr,
    /// The zone this server is authoritative for (`akamai.net`).
    pub zone: String,
    /// The names answered with a replica (`a128.g.akamai.net`); empty: every name in the zone.
    pub names: Vec<String>,
    /// The replicas.
    pub replicas: Vec<Replica>,
    /// Client networks → replicas by closeness; the longest matching prefix wins. Clients in
    /// no listed network get the replicas in configuration order.
    pub networks: Vec<Network>,
    /// TTL of replica answers (short, so clients follow health changes).
    pub ttl: u32,
    /// Name servers of the zone (name, address) for the apex NS records and their glue.
    pub nameservers: Vec<(String, IpAddr)>,
    /// Milliseconds between health checks of each replica (0: no checks, all count as up).
    pub check_interval_ms: u64,
    /// Milliseconds a health check may take.
    pub check_timeout_ms: u64,
    /// The path requested by health checks.
    pub check_path: String,
    /// Consecutive failures before a replica counts as down.
    pub fall: u32,
    /// Consecutive successes before a down replica counts as up again.
    pub rise: u32,
}

impl Default for CdnConfig {
    fn default() -> Self {
        CdnConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 10053)),
            zone: "akamai.net".into(),
            names: vec!["a128.g.akamai.net".into()],
            replicas: Vec::new(),
            networks: Vec::new(),
            ttl: 20,
            nameservers: Vec::new(),
            check_interval_ms: 1000,
            check_timeout_ms: 500,
            check_path: "/".into(),
            fall: 2,
            rise: 1,
        }
    }
}
