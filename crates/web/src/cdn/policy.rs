//! The CDN's choice, sans-IO: the nearest healthy replica for a querying resolver (longest
//! matching client-network prefix, then closeness order, skipping replicas that are down), and
//! the per-replica health state machine (down after `fall` failures, up after `rise` successes).

use super::config::{CdnConfig, Replica};
use appnet_netkit::acl::AccessList;
use std::net::IpAddr;

/// One replica's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// Whether the replica is handed out.
    pub up: bool,
    oks: u32,
    fails: u32,
}

impl Default for Health {
    fn default() -> Self {
        Health { up: true, oks: 0, fails: 0 }
    }
}

impl Health {
    /// Records one check result; returns whether the up/down state changed.
    pub fn record(&mut self, ok: bool, fall: u32, rise: u32) -> bool {
        let before = self.up;
        if ok {
            self.fails = 0;
            self.oks = self.oks.saturating_add(1);
            if !self.up && self.oks >= rise.max(1) {
                self.up = true;
            }
        } else {
            self.oks = 0;
            self.fails = self.fails.saturating_add(1);
            if self.up && self.fails >= fall.max(1) {
                self.up = false;
            }
        }
        before != self.up
    }
}

/// The compiled table: prefixes with their replica preference lists.
#[derive(Debug, Clone)]
pub struct Table {
    replicas: Vec<Replica>,
    rules: Vec<(AccessList, u8, Vec<usize>)>,
}

/// Errors in the CDN configuration.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// A network prefix does not parse.
    #[error("network {0}")]
    Prefix(String),
    /// A network names a replica that is not configured.
    #[error("network {prefix} names unknown replica {name:?}")]
    Unknown {
        /// The network.
        prefix: String,
        /// The missing replica.
        name: String,
    },
}

impl Table {
    /// Compiles the network table of `cfg`.
    pub fn new(cfg: &CdnConfig) -> Result<Table, TableError> {
        let mut rules = Vec::new();
        for n in &cfg.networks {
            let acl = AccessList::parse(std::slice::from_ref(&n.prefix)).map_err(TableError::Prefix)?;
            let len = n.prefix.split_once('/').and_then(|(_, l)| l.parse().ok()).unwrap_or(128);
            let mut order = Vec::new();
            for name in &n.replicas {
                let i = cfg
                    .replicas
                    .iter()
                    .position(|r| &r.name == name)
                    .ok_or_else(|| TableError::Unknown { prefix: n.prefix.clone(), name: name.clone() })?;
                order.push(i);
            }
            rules.push((acl, len, order));
        }
        // Longest prefix first.
        rules.sort_by_key(|r| std::cmp::Reverse(r.1));
        Ok(Table { replicas: cfg.replicas.clone(), rules })
    }

    /// The replicas.
    pub fn replicas(&self) -> &[Replica] {
        &self.replicas
    }

    /// The nearest replica that is up for a resolver at `client`, as an index into
    /// [`Table::replicas`]; `None` when every candidate is down.
    pub fn choose(&self, client: IpAddr, health: &[Health]) -> Option<usize> {
        let up = |i: &usize| health.get(*i).is_none_or(|h| h.up);
        if let Some((_, _, order)) = self.rules.iter().find(|(acl, _, _)| acl.contains(client)) {
            // The listed order first, then any other replica that is up (far, but alive).
            if let Some(i) = order.iter().copied().find(up) {
                return Some(i);
            }
        }
        (0..self.replicas.len()).find(up)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdn::config::Network;

    fn cfg() -> CdnConfig {
        let r = |name: &str, ip: &str| Replica { name: name.into(), addr: ip.parse().unwrap(), check: None };
        CdnConfig {
            replicas: vec![r("east", "127.0.20.1"), r("west", "127.0.20.2"), r("europe", "127.0.20.3")],
            networks: vec![
                Network { prefix: "127.0.4.0/24".into(), replicas: vec!["east".into(), "west".into()] },
                Network { prefix: "127.0.4.2/32".into(), replicas: vec!["europe".into(), "east".into()] },
                Network { prefix: "10.0.0.0/8".into(), replicas: vec!["west".into()] },
            ],
            ..CdnConfig::default()
        }
    }

    #[test]
    fn nearest_by_longest_prefix_then_order() {
        let t = Table::new(&cfg()).unwrap();
        let all_up = vec![Health::default(); 3];
        assert_eq!(t.choose("127.0.4.1".parse().unwrap(), &all_up), Some(0));
        assert_eq!(t.choose("127.0.4.2".parse().unwrap(), &all_up), Some(2));
        assert_eq!(t.choose("10.1.2.3".parse().unwrap(), &all_up), Some(1));
        // Unknown networks get configuration order.
        assert_eq!(t.choose("192.0.2.1".parse().unwrap(), &all_up), Some(0));
    }

    #[test]
    fn dead_replicas_are_skipped() {
        let t = Table::new(&cfg()).unwrap();
        let mut h = vec![Health::default(); 3];
        h[0].record(false, 1, 1);
        assert_eq!(t.choose("127.0.4.1".parse().unwrap(), &h), Some(1));
        h[1].record(false, 1, 1);
        assert_eq!(t.choose("127.0.4.1".parse().unwrap(), &h), Some(2), "any live replica beats none");
        h[2].record(false, 1, 1);
        assert_eq!(t.choose("127.0.4.1".parse().unwrap(), &h), None);
    }

    #[test]
    fn health_falls_and_rises_with_hysteresis() {
        let mut h = Health::default();
        assert!(!h.record(false, 2, 2));
        assert!(h.up);
        assert!(h.record(false, 2, 2));
        assert!(!h.up);
        assert!(!h.record(true, 2, 2));
        assert!(h.record(true, 2, 2));
        assert!(h.up);
    }

    #[test]
    fn unknown_replica_names_are_rejected() {
        let mut c = cfg();
        c.networks.push(Network { prefix: "::1".into(), replicas: vec!["mars".into()] });
        assert!(matches!(Table::new(&c), Err(TableError::Unknown { .. })));
    }
}
