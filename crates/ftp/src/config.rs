//! Configuration of the FTP server, shared by `appnet ftp serve` flags, the `[ftp]` TOML
//! table and the lab. Every limit has a default here.

use crate::session::Policy;
use appnet_netkit::accept::ConnLimits;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// The server's settings and limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FtpConfig {
    /// Control connection address (port 0 picks a free one).
    pub listen: SocketAddr,
    /// The anonymous users' root (and the default home of named users).
    pub root: PathBuf,
    /// Accept anonymous logins (`anonymous`, `ftp`). Without a users file they are always on.
    pub anonymous: bool,
    /// The users file (`name:$6$salt$hash:home` lines).
    pub users: Option<PathBuf>,
    /// Logged-in users may upload, delete, rename and make directories.
    pub write: bool,
    /// Passive data ports, inclusive (`None`: any free port the system picks).
    pub passive_ports: Option<(u16, u16)>,
    /// The address announced in PASV replies (default: the control connection's local address).
    pub passive_address: Option<IpAddr>,
    /// Offer explicit FTPS (AUTH TLS) with a lab-CA certificate.
    pub tls: bool,
    /// With `tls`: refuse USER before AUTH TLS.
    pub require_tls: bool,
    /// PEM certificate chain for TLS (default: one minted by the lab CA).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Directory of the lab CA (default: the shared lab CA directory).
    pub ca_dir: Option<PathBuf>,
    /// Sessions at once.
    pub max_sessions: usize,
    /// Sessions from one client address.
    pub max_sessions_per_ip: usize,
    /// Seconds a new connection has to log in (USER + PASS).
    pub login_timeout_secs: u64,
    /// Seconds a session may stay without a command (RFC 959 servers use 300).
    pub idle_timeout_secs: u64,
    /// Seconds to wait for the data connection to open (passive or active).
    pub data_connect_timeout_secs: u64,
    /// Seconds a data connection may make no progress before the transfer is aborted.
    pub data_stall_timeout_secs: u64,
    /// Failed logins before the connection is closed.
    pub max_login_failures: u32,
    /// Failed logins from one client address (over any number of connections) after which
    /// the address is refused for 10 minutes (0: no limit).
    pub max_login_failures_per_ip: u32,
    /// Milliseconds to wait before answering a failed login.
    pub login_failure_delay_ms: u64,
    /// Largest file one upload may write, in bytes.
    pub max_upload: u64,
    /// Uploads stop when the file system's free space would fall below this many bytes.
    pub min_free_space: u64,
    /// Longest command line, in bytes.
    pub max_line: usize,
}

impl Default for FtpConfig {
    fn default() -> Self {
        FtpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 2121)),
            root: PathBuf::from("."),
            anonymous: false,
            users: None,
            write: false,
            passive_ports: None,
            passive_address: None,
            tls: false,
            require_tls: false,
            tls_cert: None,
            tls_key: None,
            ca_dir: None,
            max_sessions: 512,
            max_sessions_per_ip: 32,
            login_timeout_secs: 60,
            idle_timeout_secs: 300,
            data_connect_timeout_secs: 30,
            data_stall_timeout_secs: 120,
            max_login_failures: 3,
            max_login_failures_per_ip: 20,
            login_failure_delay_ms: 1000,
            max_upload: 4 << 30,
            min_free_space: 256 << 20,
            max_line: crate::wire::command::MAX_LINE,
        }
    }
}

impl FtpConfig {
    /// Whether anonymous logins are accepted: asked for, or the only way in.
    pub fn anonymous_enabled(&self) -> bool {
        self.anonymous || self.users.is_none()
    }

    /// The session policy this configuration implies.
    pub fn policy(&self) -> Policy {
        Policy {
            anonymous: self.anonymous_enabled(),
            anonymous_root: self.root.clone(),
            write: self.write,
            max_login_failures: self.max_login_failures.max(1),
            login_failure_delay: Duration::from_millis(self.login_failure_delay_ms),
            tls: self.tls,
            require_tls: self.require_tls,
        }
    }

    /// The connection policy of the control listener.
    pub fn conn_limits(&self) -> ConnLimits {
        ConnLimits {
            max_connections: self.max_sessions.max(1),
            max_per_ip: self.max_sessions_per_ip.max(1),
            request_timeout: Duration::from_secs(self.login_timeout_secs.max(1)),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs.max(1)),
        }
    }

    /// Parses `30000-30100` for `passive_ports`.
    pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
        let (a, b) =
            s.split_once('-').ok_or_else(|| format!("{s:?}: expected LOW-HIGH, e.g. 30000-30100"))?;
        let lo: u16 = a.trim().parse().map_err(|_| format!("{a:?} is not a port"))?;
        let hi: u16 = b.trim().parse().map_err(|_| format!("{b:?} is not a port"))?;
        if lo == 0 || lo > hi {
            return Err(format!("{s:?}: need 1 <= LOW <= HIGH"));
        }
        Ok((lo, hi))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_and_anonymous_default() {
        assert_eq!(FtpConfig::parse_port_range("30000-30100"), Ok((30000, 30100)));
        assert!(FtpConfig::parse_port_range("5-4").is_err());
        assert!(FtpConfig::parse_port_range("x").is_err());
        let c = FtpConfig::default();
        assert!(c.anonymous_enabled());
        let c = FtpConfig { users: Some("u".into()), ..FtpConfig::default() };
        assert!(!c.anonymous_enabled());
        assert_eq!(c.conn_limits().idle_timeout, Duration::from_secs(300));
    }
}
