//! Which backend gets a new connection or flow: Maglev consistent hashing, smooth weighted
//! round robin (nginx's algorithm) or least connections, as a pure core. The driver gives each
//! backend a weight (0 = down or draining; slow start ramps it) and the current number of
//! active connections; the core never touches sockets or clocks.

use crate::maglev::{Maglev, mix64};
use serde::Deserialize;
use std::fmt;
use std::str::FromStr;

/// The balancing policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Maglev consistent hashing of the flow key: a flow's backend only changes when its
    /// backend leaves, and only about 1/N of flows move when one of N backends leaves.
    #[default]
    Maglev,
    /// Each backend in turn, in proportion to its weight.
    RoundRobin,
    /// The backend with the fewest active connections per unit of weight.
    LeastConn,
}

impl FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Policy, String> {
        match s {
            "maglev" => Ok(Policy::Maglev),
            "roundrobin" => Ok(Policy::RoundRobin),
            "leastconn" => Ok(Policy::LeastConn),
            other => Err(format!("unknown balance policy {other:?}: use maglev, roundrobin or leastconn")),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Policy::Maglev => "maglev",
            Policy::RoundRobin => "roundrobin",
            Policy::LeastConn => "leastconn",
        })
    }
}

/// The balancer over an indexed list of backends.
#[derive(Debug, Clone)]
pub struct Balancer {
    policy: Policy,
    table_size: usize,
    backends: Vec<(String, u32)>,
    maglev: Maglev,
    rr_current: Vec<i64>,
    turn: usize,
}

impl Balancer {
    /// A balancer with no backends yet; `table_size` is Maglev's (prime) table size.
    pub fn new(policy: Policy, table_size: usize) -> Balancer {
        Balancer {
            policy,
            table_size,
            backends: Vec::new(),
            maglev: Maglev::new(&[], table_size),
            rr_current: Vec::new(),
            turn: 0,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The backends and weights in force.
    pub fn backends(&self) -> &[(String, u32)] {
        &self.backends
    }

    /// Replaces the backends (name, weight); indices of later picks refer to this slice.
    /// Returns the fraction of the flow-key space whose backend changed (measured on the Maglev
    /// table, which is kept for every policy so the number is comparable).
    pub fn set_backends(&mut self, backends: &[(String, u32)]) -> f64 {
        if backends == self.backends.as_slice() {
            return 0.0;
        }
        let table = Maglev::new(backends, self.table_size);
        let moved = self.maglev.fraction_moved(&table);
        self.maglev = table;
        // Keep round-robin state for backends that stay at the same index.
        self.rr_current.resize(backends.len(), 0);
        self.backends = backends.to_vec();
        moved
    }

    /// Picks a backend for flow `key` among those with weight > 0 and not in `exclude`;
    /// `active(i)` is backend i's open connections (for least-connections).
    pub fn pick(&mut self, key: u64, active: impl Fn(usize) -> usize, exclude: &[usize]) -> Option<usize> {
        let usable = |i: usize, b: &[(String, u32)]| b[i].1 > 0 && !exclude.contains(&i);
        match self.policy {
            Policy::Maglev => {
                let mut k = key;
                for attempt in 0..8u64 {
                    if let Some(i) = self.maglev.lookup(k)
                        && usable(i, &self.backends)
                    {
                        return Some(i);
                    }
                    k = mix64(key ^ (attempt + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                }
                // Every probe hit an excluded backend: the first usable one, from a key-based start.
                let n = self.backends.len();
                (0..n).map(|j| (key as usize).wrapping_add(j) % n).find(|&i| usable(i, &self.backends))
            }
            Policy::RoundRobin => {
                let total: i64 = (0..self.backends.len())
                    .filter(|&i| usable(i, &self.backends))
                    .map(|i| i64::from(self.backends[i].1))
                    .sum();
                let mut best: Option<usize> = None;
                for i in 0..self.backends.len() {
                    if !usable(i, &self.backends) {
                        continue;
                    }
                    self.rr_current[i] += i64::from(self.backends[i].1);
                    if best.is_none_or(|b| self.rr_current[i] > self.rr_current[b]) {
                        best = Some(i);
                    }
                }
                let b = best?;
                self.rr_current[b] -= total;
                Some(b)
            }
            Policy::LeastConn => {
                let n = self.backends.len();
                if n == 0 {
                    return None;
                }
                self.turn = self.turn.wrapping_add(1);
                let mut best: Option<(usize, u128, u128)> = None;
                for j in 0..n {
                    let i = (self.turn + j) % n;
                    if !usable(i, &self.backends) {
                        continue;
                    }
                    let (load, weight) = (active(i) as u128 + 1, u128::from(self.backends[i].1));
                    // load/weight < best_load/best_weight, without division.
                    if best.is_none_or(|(_, bl, bw)| load * bw < bl * weight) {
                        best = Some((i, load, weight));
                    }
                }
                best.map(|(i, _, _)| i)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three(weights: [u32; 3]) -> Vec<(String, u32)> {
        weights.iter().enumerate().map(|(i, w)| (format!("b{i}"), *w)).collect()
    }

    #[test]
    fn maglev_is_sticky_and_moves_only_the_leavers_flows() {
        let mut b = Balancer::new(Policy::Maglev, 65537);
        b.set_backends(&three([100, 100, 100]));
        let keys: Vec<u64> = (0..3000u64).map(mix64).collect();
        let before: Vec<usize> = keys.iter().map(|&k| b.pick(k, |_| 0, &[]).unwrap()).collect();
        let again: Vec<usize> = keys.iter().map(|&k| b.pick(k, |_| 0, &[]).unwrap()).collect();
        assert_eq!(before, again);
        let moved = b.set_backends(&three([100, 0, 100]));
        assert!((moved - 1.0 / 3.0).abs() < 0.05, "moved {moved}");
        // Maglev trades perfect consistency for balance: a few flows of the staying backends
        // may move too (about 0.1% here), never more than a small fraction.
        let mut others_moved = 0;
        for (&k, &was) in keys.iter().zip(&before) {
            let now = b.pick(k, |_| 0, &[]).unwrap();
            assert_ne!(now, 1);
            others_moved += usize::from(was != 1 && now != was);
        }
        assert!(others_moved * 100 <= keys.len(), "{others_moved} flows of staying backends moved");
    }

    #[test]
    fn maglev_excludes_a_failed_backend_on_retry() {
        let mut b = Balancer::new(Policy::Maglev, 4099);
        b.set_backends(&three([100, 100, 100]));
        for k in 0..200u64 {
            let first = b.pick(mix64(k), |_| 0, &[]).unwrap();
            let retry = b.pick(mix64(k), |_| 0, &[first]).unwrap();
            assert_ne!(first, retry);
        }
        assert_eq!(b.pick(1, |_| 0, &[0, 1, 2]), None);
    }

    #[test]
    fn round_robin_follows_weights_and_skips_the_down() {
        let mut b = Balancer::new(Policy::RoundRobin, 7);
        b.set_backends(&three([100, 100, 100]));
        let picks: Vec<usize> = (0..6).map(|_| b.pick(0, |_| 0, &[]).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        b.set_backends(&three([100, 0, 50]));
        let mut counts = [0; 3];
        for _ in 0..300 {
            counts[b.pick(0, |_| 0, &[]).unwrap()] += 1;
        }
        assert_eq!(counts, [200, 0, 100]);
    }

    #[test]
    fn least_conn_prefers_the_idle_and_respects_weight() {
        let mut b = Balancer::new(Policy::LeastConn, 7);
        b.set_backends(&three([100, 100, 100]));
        let active = [5usize, 1, 3];
        assert_eq!(b.pick(0, |i| active[i], &[]), Some(1));
        assert_eq!(b.pick(0, |i| active[i], &[1]), Some(2));
        // A slow-starting backend at a tenth of the weight with 1 connection counts as 20.
        b.set_backends(&three([100, 10, 100]));
        assert_eq!(b.pick(0, |i| active[i], &[]), Some(2));
        b.set_backends(&[]);
        assert_eq!(b.pick(0, |_| 0, &[]), None);
    }

    #[test]
    fn policies_parse() {
        assert_eq!("leastconn".parse::<Policy>(), Ok(Policy::LeastConn));
        assert!("random".parse::<Policy>().is_err());
        assert_eq!(Policy::RoundRobin.to_string(), "roundrobin");
    }
}
