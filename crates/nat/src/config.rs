//! `[turn]` settings, shared by the `appnet turn serve` flags and the TOML table.

use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// The TURN/STUN server's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnConfig {
    /// UDP address for STUN and TURN.
    pub listen: SocketAddr,
    /// The long-term credential realm.
    pub realm: String,
    /// `user:password` lines.
    pub users: Option<PathBuf>,
    /// Address relayed sockets bind to and advertise (default: the listen address's IP).
    pub relay_ip: Option<IpAddr>,
    /// Relayed ports, `LOW-HIGH`.
    pub ports: String,
    /// Peer prefixes allowed although loopback, private or link-local.
    pub allow_peer: Vec<String>,
    /// Most allocations one user holds at once.
    pub user_quota: usize,
    /// Most allocations one client IP address holds at once.
    pub ip_quota: usize,
    /// Most allocations in all.
    pub max_allocations: usize,
    /// Seconds a nonce stays valid before 438 Stale Nonce.
    pub nonce_lifetime_secs: u64,
    /// Longest allocation lifetime granted, in seconds.
    pub max_lifetime_secs: u32,
    /// A second address, another IP and another port than `listen`, for NAT behaviour discovery
    /// (RFC 5780: OTHER-ADDRESS, CHANGE-REQUEST, RESPONSE-ORIGIN).
    pub alt_listen: Option<SocketAddr>,
    /// Unauthenticated error replies (401, 438, 400) per second per source IP, burst twice that;
    /// 0 for no limit.
    pub unauth_rate: u32,
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig {
            listen: "127.0.0.1:3478".parse().expect("literal"),
            realm: "appnet".into(),
            users: None,
            relay_ip: None,
            ports: "49152-65535".into(),
            allow_peer: Vec::new(),
            user_quota: 10,
            ip_quota: 32,
            max_allocations: 10_000,
            nonce_lifetime_secs: 600,
            max_lifetime_secs: 3600,
            alt_listen: None,
            unauth_rate: 50,
        }
    }
}

/// Parses `LOW-HIGH`.
pub fn parse_ports(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s.split_once('-').ok_or_else(|| format!("port range {s:?} is not LOW-HIGH"))?;
    let a: u16 = a.trim().parse().map_err(|_| format!("bad port in {s:?}"))?;
    let b: u16 = b.trim().parse().map_err(|_| format!("bad port in {s:?}"))?;
    if a == 0 || a > b {
        return Err(format!("empty port range {s:?}"));
    }
    Ok((a, b))
}

/// Parses a users file: one `user:password` per line; `#` comments and blank lines skipped.
pub fn parse_users(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (u, p) = line.split_once(':').ok_or_else(|| format!("line {}: expected user:password", n + 1))?;
        if u.is_empty() {
            return Err(format!("line {}: empty user name", n + 1));
        }
        out.push((u.to_string(), p.to_string()));
    }
    Ok(out)
}

/// A supernode's settings (`[skype]` table and flags): where it listens and its directory caps.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupernodeConfig {
    /// UDP address of the SN protocol.
    pub listen: SocketAddr,
    /// Seconds a registration keeps a user online without a refresh.
    pub entry_lifetime_secs: u64,
    /// Seconds a challenge nonce stays valid.
    pub nonce_lifetime_secs: u64,
    /// Most names one source IP may bind.
    pub names_per_ip: usize,
    /// Most names bound in all.
    pub max_names: usize,
    /// Unauthenticated answers (challenges, lookups, errors) per second per source IP.
    pub requests_per_sec: u32,
    /// Other SNs to join (`--join`, repeatable): the overlay is learnt from them.
    pub join: Vec<SocketAddr>,
    /// File holding the overlay's shared secret (at least 16 bytes); without it SN-SN
    /// messages are refused and the SN works alone.
    pub overlay_secret_file: Option<std::path::PathBuf>,
    /// A peer asking to be promoted must have been registered this long from one address.
    pub promote_min_uptime_secs: u64,
    /// Peers are promoted while the overlay has fewer live SNs than this (0: never).
    pub target_supernodes: usize,
}

impl Default for SupernodeConfig {
    fn default() -> Self {
        SupernodeConfig {
            listen: "127.0.0.1:33033".parse().expect("literal"),
            entry_lifetime_secs: 120,
            nonce_lifetime_secs: 30,
            names_per_ip: 8,
            max_names: 100_000,
            requests_per_sec: 20,
            join: Vec::new(),
            overlay_secret_file: None,
            promote_min_uptime_secs: 300,
            target_supernodes: 8,
        }
    }
}
