//! Configuration of a Chord node, shared by CLI flags, TOML (`[chord]`) and the lab.

use crate::id::{Id, MAX_BITS};
use crate::node::Params;
use crate::pool::PoolLimits;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Shortest ring secret accepted, in bytes.
pub const MIN_SECRET: usize = 16;

/// Where a node listens, which ring it joins, and the protocol's timers and limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChordConfig {
    /// Address to listen on (port 0 picks a free one). It is also the address other nodes use.
    pub listen: SocketAddr,
    /// Any node of the ring to join; none starts a new ring.
    pub join: Option<SocketAddr>,
    /// Explicit node id (decimal, or hex for wide rings); default SHA-1 of the listen address.
    pub id: Option<String>,
    /// Identifier width m, 1..=160.
    pub bits: u8,
    /// Successor list length r.
    pub successors: usize,
    /// Copies of each key (on its successor and the following nodes).
    pub replicas: usize,
    /// Mean milliseconds between stabilize rounds.
    pub stabilize_ms: u64,
    /// Mean milliseconds between fix_fingers steps.
    pub fix_fingers_ms: u64,
    /// Mean milliseconds between predecessor pings.
    pub check_predecessor_ms: u64,
    /// Milliseconds before an RPC counts as failed (the peer is presumed dead).
    pub rpc_timeout_ms: u64,
    /// Largest value accepted, in bytes.
    pub max_value: usize,
    /// Most items one node stores.
    pub max_items: usize,
    /// Most bytes of keys and values one node stores.
    pub max_bytes: usize,
    /// Most RPC connections served at once.
    pub max_connections: usize,
    /// Seconds an idle RPC connection has to deliver its whole next frame (and a peer has to
    /// read an answer).
    pub idle_timeout_secs: u64,
    /// Idle connections this node keeps per peer for its own RPCs; 0 = a new connection per RPC.
    pub pool_per_peer: usize,
    /// Idle connections this node keeps in all.
    pub pool_max_idle: usize,
    /// Seconds an idle pooled connection is kept (capped below `idle_timeout_secs`, the peers'
    /// own idle limit, so they rarely close one under us).
    pub pool_idle_secs: u64,
    /// Milliseconds between garbage-collection rounds (dropping items this node is no longer
    /// a replica holder for); 0 = never.
    pub gc_ms: u64,
    /// File holding the ring secret (at least 16 bytes, surrounding whitespace ignored). With
    /// it every frame carries an HMAC-SHA256 under the secret and frames without a valid one
    /// are refused; every node and client of the ring needs the same file.
    pub secret_file: Option<PathBuf>,
    /// Seconds an authenticated request's timestamp may be off this node's clock (and how long
    /// its request id is remembered against replays).
    pub auth_window_secs: u64,
    /// Most authenticated requests remembered against replays; beyond it the oldest are
    /// forgotten and requests stamped no later than them refused.
    pub max_replay_entries: usize,
    /// Bytes of frames being read, over all connections at once (a frame's buffer grows as
    /// its bytes arrive).
    pub max_frame_buffer_bytes: usize,
    /// Most RPC connections from one IP address; 0 = an eighth of `max_connections` (1..=64).
    /// Raise it when many nodes share one address (a lab on loopback).
    pub max_connections_per_ip: usize,
    /// Seconds a new connection has to deliver its whole first frame.
    pub request_timeout_secs: u64,
    /// Without a secret: most checks of `Notify`, `Leaving` and `Store` claims in flight at
    /// once (more claims are refused).
    pub max_claim_checks: usize,
}

impl Default for ChordConfig {
    fn default() -> Self {
        let p = Params::default();
        ChordConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 14000)),
            join: None,
            id: None,
            bits: p.bits,
            successors: p.successors,
            replicas: p.replicas,
            stabilize_ms: p.stabilize_ms,
            fix_fingers_ms: p.fix_fingers_ms,
            check_predecessor_ms: p.check_predecessor_ms,
            rpc_timeout_ms: 1000,
            max_value: p.max_value,
            max_items: p.max_items,
            max_bytes: p.max_bytes,
            max_connections: 512,
            idle_timeout_secs: 30,
            pool_per_peer: PoolLimits::default().per_peer,
            pool_max_idle: PoolLimits::default().total,
            pool_idle_secs: PoolLimits::default().idle.as_secs(),
            gc_ms: p.gc_ms,
            secret_file: None,
            auth_window_secs: 30,
            max_replay_entries: 1 << 18,
            max_frame_buffer_bytes: 64 * 1024 * 1024,
            max_connections_per_ip: 0,
            request_timeout_secs: 10,
            max_claim_checks: p.max_claim_checks,
        }
    }
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// m out of range.
    #[error("bits must be between 1 and {MAX_BITS}, not {0}")]
    Bits(u8),
    /// The id does not parse or does not fit.
    #[error("id {0:?} is not a number below 2^{1} (decimal, or hex for wide rings)")]
    Id(String, u8),
    /// Lists and replicas out of range.
    #[error("successors must be 1..=32 and replicas 1..=successors+1")]
    Lists,
    /// Value limit over the wire's.
    #[error("max_value must be at most {} bytes", crate::wire::MAX_VALUE)]
    MaxValue,
    /// The secret file cannot be read or is too short.
    #[error("ring secret {0}: {1}")]
    Secret(PathBuf, String),
}

impl ChordConfig {
    /// Checks ranges and returns the protocol parameters.
    pub fn params(&self) -> Result<Params, ConfigError> {
        if self.bits == 0 || self.bits > MAX_BITS {
            return Err(ConfigError::Bits(self.bits));
        }
        if self.successors == 0
            || self.successors > 32
            || self.replicas == 0
            || self.replicas > self.successors + 1
        {
            return Err(ConfigError::Lists);
        }
        if self.max_value > crate::wire::MAX_VALUE {
            return Err(ConfigError::MaxValue);
        }
        Ok(Params {
            bits: self.bits,
            successors: self.successors,
            replicas: self.replicas,
            stabilize_ms: self.stabilize_ms.max(1),
            fix_fingers_ms: self.fix_fingers_ms.max(1),
            check_predecessor_ms: self.check_predecessor_ms.max(1),
            max_value: self.max_value,
            max_items: self.max_items,
            max_bytes: self.max_bytes,
            gc_ms: self.gc_ms,
            max_claim_checks: self.max_claim_checks,
            ..Params::default()
        })
    }

    /// The node id: the configured one, or SHA-1 of the bound address.
    pub fn node_id(&self, bound: SocketAddr) -> Result<Id, ConfigError> {
        match &self.id {
            Some(text) => Id::parse(text, self.bits).ok_or_else(|| ConfigError::Id(text.clone(), self.bits)),
            None => Ok(Id::hash(bound.to_string().as_bytes(), self.bits)),
        }
    }

    /// Limits of the pool of connections the node uses for its own RPCs.
    pub fn pool_limits(&self) -> PoolLimits {
        let idle = self.pool_idle_secs.min(self.idle_timeout_secs.saturating_sub(1)).max(1);
        PoolLimits {
            per_peer: self.pool_per_peer,
            total: self.pool_max_idle,
            idle: Duration::from_secs(idle),
        }
    }

    /// The ring secret's key, read from `secret_file` (None without one).
    pub fn ring_key(&self) -> Result<Option<crate::wire::RingKey>, ConfigError> {
        self.secret_file.as_deref().map(read_secret).transpose()
    }

    /// The RPC timeout as a duration.
    pub fn rpc_timeout(&self) -> Duration {
        Duration::from_millis(self.rpc_timeout_ms.max(1))
    }
}

/// Reads a ring secret file: its bytes without surrounding whitespace, at least [`MIN_SECRET`].
pub fn read_secret(path: &std::path::Path) -> Result<crate::wire::RingKey, ConfigError> {
    let err = |m: String| ConfigError::Secret(path.to_path_buf(), m);
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let secret = bytes.trim_ascii();
    if secret.len() < MIN_SECRET {
        return Err(err(format!(
            "is {} bytes; use at least {MIN_SECRET} (e.g. head -c 32 /dev/urandom | base64 > FILE)",
            secret.len()
        )));
    }
    Ok(crate::wire::RingKey::new(secret))
}

#[cfg(test)]
mod tests {
    use super::*;
    use appnet_netkit::harness::TempDir;

    #[test]
    fn secrets_are_read_trimmed_and_must_be_long_enough() {
        let dir = TempDir::new("chord-config");
        let path = dir.path().join("key");
        let config = ChordConfig { secret_file: Some(path.clone()), ..ChordConfig::default() };
        assert!(matches!(config.ring_key(), Err(ConfigError::Secret(..))), "missing file");
        std::fs::write(&path, "  short\n").unwrap();
        let err = config.ring_key().unwrap_err().to_string();
        assert!(err.contains("is 5 bytes; use at least 16"), "{err}");
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        let key = config.ring_key().unwrap().expect("a key");
        // Trailing whitespace is not part of the secret.
        let frame = crate::wire::encode_request(8, &crate::wire::Request::Ping);
        let stamp = crate::wire::Stamp { unix_ms: 1, request_id: 2 };
        let sealed = crate::wire::RingKey::new(b"0123456789abcdef0123").seal_request(frame, stamp);
        assert!(key.open_request(&sealed[4..]).is_ok());
        assert!(ChordConfig::default().ring_key().unwrap().is_none());
    }
}
