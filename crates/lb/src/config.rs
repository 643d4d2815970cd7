//! Configuration of the load balancer, shared by the CLI flags, the `[lb]` TOML table (which
//! SIGHUP re-reads) and the lab.

use crate::balance::Policy;
use crate::flows::FlowLimits;
use crate::health::HealthPolicy;
use crate::proxy_protocol::Version;
use appnet_netkit::accept::ConnLimits;
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// How a backend's health is checked actively.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum HealthCheck {
    /// No active checks: only passive ejection after failed connects, re-admitted after
    /// `eject_secs`.
    None,
    /// A TCP connect succeeds (for UDP backends: the same address over TCP, as DNS servers have).
    Tcp,
    /// `GET path HTTP/1.0` answers 2xx or 3xx.
    Http(String),
}

impl FromStr for HealthCheck {
    type Err = String;
    fn from_str(s: &str) -> Result<HealthCheck, String> {
        match s {
            "none" => Ok(HealthCheck::None),
            "tcp" => Ok(HealthCheck::Tcp),
            _ => match s.strip_prefix("http:") {
                Some(path) if path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic()) => {
                    Ok(HealthCheck::Http(path.to_string()))
                }
                _ => Err(format!("unknown health check {s:?}: use tcp, http:/path or none")),
            },
        }
    }
}

impl TryFrom<String> for HealthCheck {
    type Error = String;
    fn try_from(s: String) -> Result<HealthCheck, String> {
        s.parse()
    }
}

impl fmt::Display for HealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HealthCheck::None => f.write_str("none"),
            HealthCheck::Tcp => f.write_str("tcp"),
            HealthCheck::Http(p) => write!(f, "http:{p}"),
        }
    }
}

/// What Maglev hashes to choose a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HashBy {
    /// The client's address and port (each connection or UDP flow on its own).
    #[default]
    Flow,
    /// The client's address only (all of a client's connections on one replica, like
    /// HAProxy's `balance source`).
    ClientIp,
}

impl FromStr for HashBy {
    type Err = String;
    fn from_str(s: &str) -> Result<HashBy, String> {
        match s {
            "flow" => Ok(HashBy::Flow),
            "client-ip" => Ok(HashBy::ClientIp),
            other => Err(format!("unknown hash key {other:?}: use flow or client-ip")),
        }
    }
}

/// Everything the balancer needs; every field has a default (see `docs/lb.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LbConfig {
    /// The one address clients connect to.
    pub listen: SocketAddr,
    /// The replicas behind it. SIGHUP re-reads this list from the config file.
    pub backends: Vec<SocketAddr>,
    /// Balance UDP flows instead of TCP connections.
    pub udp: bool,
    /// maglev, roundrobin or leastconn.
    pub balance: Policy,
    /// What Maglev hashes: `flow` (address and port) or `client-ip`.
    pub hash_by: HashBy,
    /// Maglev's lookup table size (a prime).
    pub table_size: usize,
    /// Active health check: `tcp`, `http:/path` or `none`.
    pub health: HealthCheck,
    /// Milliseconds between active checks of one backend.
    pub health_interval_ms: u64,
    /// Milliseconds one active check may take.
    pub health_timeout_ms: u64,
    /// Consecutive passing checks that bring a backend back.
    pub rise: u32,
    /// Consecutive failing checks that take a backend out.
    pub fall: u32,
    /// Consecutive failed connects (real traffic) that eject a backend at once.
    pub eject_after: u32,
    /// Without active checks, seconds an ejected backend stays out.
    pub eject_secs: u64,
    /// Seconds a recovered backend takes to ramp up to its full share (0: at once).
    pub slow_start_secs: u64,
    /// Most client connections at once.
    pub max_conns: usize,
    /// Most client connections from one address.
    pub max_per_client: usize,
    /// Milliseconds to connect to a backend before trying another.
    pub connect_timeout_ms: u64,
    /// Other backends tried after a failed connect.
    pub retries: u32,
    /// Seconds a TCP connection may pass no byte in either direction before it is closed.
    pub idle_timeout_secs: u64,
    /// Seconds in-flight connections get to finish at shutdown.
    pub drain_secs: u64,
    /// Send a PROXY protocol header (v1 or v2) first on each backend connection.
    pub proxy_protocol: Option<Version>,
    /// Serve Prometheus metrics over HTTP on this address.
    pub metrics: Option<SocketAddr>,
    /// Bytes of buffer per direction of a proxied TCP connection.
    pub buffer_size: usize,
    /// Most UDP flows at once.
    pub udp_max_flows: usize,
    /// Most UDP flows from one client address.
    pub udp_max_flows_per_client: usize,
    /// Seconds without a datagram either way after which a UDP flow is forgotten.
    pub udp_idle_timeout_secs: u64,
}

impl Default for LbConfig {
    fn default() -> Self {
        LbConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            backends: Vec::new(),
            udp: false,
            balance: Policy::Maglev,
            hash_by: HashBy::Flow,
            table_size: crate::maglev::DEFAULT_TABLE_SIZE,
            health: HealthCheck::Tcp,
            health_interval_ms: 2000,
            health_timeout_ms: 1000,
            rise: 2,
            fall: 3,
            eject_after: 3,
            eject_secs: 10,
            slow_start_secs: 10,
            max_conns: 10_000,
            max_per_client: 1000,
            connect_timeout_ms: 3000,
            retries: 2,
            idle_timeout_secs: 300,
            drain_secs: 30,
            proxy_protocol: None,
            metrics: None,
            buffer_size: 16 * 1024,
            udp_max_flows: 16_384,
            udp_max_flows_per_client: 1024,
            udp_idle_timeout_secs: 30,
        }
    }
}

/// A configuration the balancer cannot run with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No backend given.
    #[error("no backends: give --backend ADDR (one or more) or backends = [...] in [lb]")]
    NoBackends,
    /// The same backend twice.
    #[error("backend {0} is listed twice")]
    Duplicate(SocketAddr),
    /// A zero where a positive number is needed.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
}

impl LbConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.backends.is_empty() {
            return Err(ConfigError::NoBackends);
        }
        for (i, b) in self.backends.iter().enumerate() {
            if self.backends[..i].contains(b) {
                return Err(ConfigError::Duplicate(*b));
            }
        }
        for (name, v) in [
            ("max_conns", self.max_conns as u64),
            ("max_per_client", self.max_per_client as u64),
            ("health_interval_ms", self.health_interval_ms),
            ("health_timeout_ms", self.health_timeout_ms),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("buffer_size", self.buffer_size as u64),
            ("udp_max_flows", self.udp_max_flows as u64),
            ("udp_max_flows_per_client", self.udp_max_flows_per_client as u64),
            ("udp_idle_timeout_secs", self.udp_idle_timeout_secs),
            ("table_size", self.table_size as u64),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        Ok(())
    }

    /// The client-side connection policy. The L4 balancer has no requests to time: a client
    /// has `connect_timeout` (plus a second) to be connected through, then the idle timeout
    /// (no byte either way) applies.
    pub fn conn_limits(&self) -> ConnLimits {
        ConnLimits {
            max_connections: self.max_conns.max(1),
            max_per_ip: self.max_per_client.max(1),
            request_timeout: self.connect_timeout() * (self.retries + 1) + Duration::from_secs(1),
            idle_timeout: self.idle_timeout(),
        }
    }

    /// The health thresholds.
    pub fn health_policy(&self) -> HealthPolicy {
        HealthPolicy {
            rise: self.rise.max(1),
            fall: self.fall.max(1),
            eject_after: self.eject_after.max(1),
            eject_for: Duration::from_secs(self.eject_secs),
            active: self.health != HealthCheck::None,
            slow_start: Duration::from_secs(self.slow_start_secs),
        }
    }

    /// The UDP flow table's limits.
    pub fn flow_limits(&self) -> FlowLimits {
        FlowLimits {
            max_flows: self.udp_max_flows.max(1),
            max_per_client: self.udp_max_flows_per_client.max(1),
            idle: Duration::from_secs(self.udp_idle_timeout_secs.max(1)),
        }
    }

    /// The backend connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms.max(1))
    }

    /// The TCP idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_table_with_defaults() {
        let c: LbConfig = toml::from_str(
            r#"listen = "127.0.0.1:9000"
               backends = ["127.0.0.1:1", "127.0.0.1:2"]
               balance = "leastconn"
               health = "http:/healthz"
               proxy_protocol = "v2"
               hash_by = "client-ip""#,
        )
        .unwrap();
        assert_eq!(c.backends.len(), 2);
        assert_eq!(c.balance, Policy::LeastConn);
        assert_eq!(c.health, HealthCheck::Http("/healthz".into()));
        assert_eq!(c.proxy_protocol, Some(Version::V2));
        assert_eq!(c.hash_by, HashBy::ClientIp);
        assert_eq!(c.rise, 2);
        c.validate().unwrap();
        assert!(toml::from_str::<LbConfig>("health = \"icmp\"").is_err());
        assert!(toml::from_str::<LbConfig>("bogus = 1").is_err());
    }

    #[test]
    fn validation_says_what_to_fix() {
        assert!(matches!(LbConfig::default().validate(), Err(ConfigError::NoBackends)));
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let twice = LbConfig { backends: vec![a, a], ..LbConfig::default() };
        assert!(matches!(twice.validate(), Err(ConfigError::Duplicate(_))));
        let zero = LbConfig { backends: vec![a], max_conns: 0, ..LbConfig::default() };
        assert!(matches!(zero.validate(), Err(ConfigError::Zero("max_conns"))));
    }

    #[test]
    fn health_check_syntax() {
        assert_eq!("tcp".parse::<HealthCheck>(), Ok(HealthCheck::Tcp));
        assert_eq!("http:/".parse::<HealthCheck>(), Ok(HealthCheck::Http("/".into())));
        assert!("http:nope".parse::<HealthCheck>().is_err());
        assert!("http:/a b".parse::<HealthCheck>().is_err());
        assert_eq!(HealthCheck::Http("/x".into()).to_string(), "http:/x");
    }
}
