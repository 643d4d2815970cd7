//! The UDP flow table: which backend each client flow (the 5-tuple: the client's address and
//! port towards our one listening address) is pinned to, with an idle timeout, a cap on flows in
//! all and a cap per client address, so one sender cannot fill the table. Sans-IO: the value
//! `V` is whatever the driver keeps per flow (its upstream socket's task handle).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// The table's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowLimits {
    /// Flows in all.
    pub max_flows: usize,
    /// Flows from one client address.
    pub max_per_client: usize,
    /// A flow with no datagram either way for this long is forgotten.
    pub idle: Duration,
}

/// Why a new flow was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlowRefused {
    /// The table holds `max_flows`.
    #[error("the flow table is full")]
    Full,
    /// The client address holds `max_per_client` flows.
    #[error("this client holds its maximum number of flows")]
    PerClient,
}

/// One pinned flow.
#[derive(Debug)]
pub struct Flow<V> {
    /// The stable id of the backend the flow is pinned to.
    pub backend: u64,
    /// The driver's state for the flow.
    pub value: V,
    last_seen: Instant,
}

/// Flows keyed by the client's address.
#[derive(Debug)]
pub struct FlowTable<V> {
    limits: FlowLimits,
    flows: HashMap<SocketAddr, Flow<V>>,
    per_client: HashMap<IpAddr, usize>,
}

impl<V> FlowTable<V> {
    /// An empty table.
    pub fn new(limits: FlowLimits) -> FlowTable<V> {
        FlowTable { limits, flows: HashMap::new(), per_client: HashMap::new() }
    }

    /// Flows held.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether no flow is held.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// The flow of `client`, marked as seen at `now`.
    pub fn touch(&mut self, client: SocketAddr, now: Instant) -> Option<&Flow<V>> {
        let flow = self.flows.get_mut(&client)?;
        flow.last_seen = now;
        Some(flow)
    }

    /// The flow of `client`, without marking it.
    pub fn get(&self, client: &SocketAddr) -> Option<&Flow<V>> {
        self.flows.get(client)
    }

    /// Whether a new flow from `client` would be admitted now.
    pub fn admits(&self, client: SocketAddr) -> Result<(), FlowRefused> {
        if self.flows.contains_key(&client) {
            return Ok(());
        }
        if self.flows.len() >= self.limits.max_flows.max(1) {
            return Err(FlowRefused::Full);
        }
        if self.per_client.get(&client.ip()).copied().unwrap_or(0) >= self.limits.max_per_client.max(1) {
            return Err(FlowRefused::PerClient);
        }
        Ok(())
    }

    /// Pins `client` to `backend`; replaces (and returns) an existing flow of the same client.
    pub fn insert(
        &mut self,
        client: SocketAddr,
        backend: u64,
        value: V,
        now: Instant,
    ) -> Result<Option<V>, FlowRefused> {
        self.admits(client)?;
        let flow = Flow { backend, value, last_seen: now };
        match self.flows.insert(client, flow) {
            Some(old) => Ok(Some(old.value)),
            None => {
                *self.per_client.entry(client.ip()).or_insert(0) += 1;
                Ok(None)
            }
        }
    }

    /// Forgets the flow of `client`.
    pub fn remove(&mut self, client: &SocketAddr) -> Option<Flow<V>> {
        let flow = self.flows.remove(client)?;
        self.release(client.ip());
        Some(flow)
    }

    /// Forgets every flow idle since before `now - idle`; returns them for the driver to close.
    pub fn expire(&mut self, now: Instant) -> Vec<(SocketAddr, Flow<V>)> {
        let idle = self.limits.idle;
        let stale: Vec<SocketAddr> = self
            .flows
            .iter()
            .filter(|(_, f)| now.saturating_duration_since(f.last_seen) >= idle)
            .map(|(c, _)| *c)
            .collect();
        stale.into_iter().filter_map(|c| self.remove(&c).map(|f| (c, f))).collect()
    }

    /// Forgets every flow pinned to `backend` (it went down: their next datagram picks again).
    pub fn remove_backend(&mut self, backend: u64) -> Vec<(SocketAddr, Flow<V>)> {
        let gone: Vec<SocketAddr> =
            self.flows.iter().filter(|(_, f)| f.backend == backend).map(|(c, _)| *c).collect();
        gone.into_iter().filter_map(|c| self.remove(&c).map(|f| (c, f))).collect()
    }

    /// Forgets every flow whose value matches `gone` (its backend went down or was removed).
    pub fn remove_where(&mut self, gone: impl Fn(&Flow<V>) -> bool) -> Vec<(SocketAddr, Flow<V>)> {
        let matched: Vec<SocketAddr> = self.flows.iter().filter(|(_, f)| gone(f)).map(|(c, _)| *c).collect();
        matched.into_iter().filter_map(|c| self.remove(&c).map(|f| (c, f))).collect()
    }

    /// Flows pinned to `backend`.
    pub fn count_for(&self, backend: u64) -> usize {
        self.flows.values().filter(|f| f.backend == backend).count()
    }

    fn release(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_client.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> FlowLimits {
        FlowLimits { max_flows: 4, max_per_client: 2, idle: Duration::from_secs(30) }
    }

    fn addr(ip: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, ip], port))
    }

    #[test]
    fn caps_per_client_and_in_all() {
        let t0 = Instant::now();
        let mut t = FlowTable::new(limits());
        t.insert(addr(1, 1), 7, (), t0).unwrap();
        t.insert(addr(1, 2), 7, (), t0).unwrap();
        assert_eq!(t.insert(addr(1, 3), 7, (), t0), Err(FlowRefused::PerClient));
        assert_eq!(t.insert(addr(1, 1), 8, (), t0), Ok(Some(())), "the same flow may be re-pinned");
        t.insert(addr(2, 1), 7, (), t0).unwrap();
        t.insert(addr(3, 1), 7, (), t0).unwrap();
        assert_eq!(t.insert(addr(4, 1), 7, (), t0), Err(FlowRefused::Full));
        assert_eq!(t.len(), 4);
        assert!(t.remove(&addr(1, 2)).is_some());
        t.insert(addr(1, 3), 7, (), t0).unwrap();
    }

    #[test]
    fn idle_flows_expire_and_traffic_keeps_them() {
        let t0 = Instant::now();
        let mut t = FlowTable::new(limits());
        t.insert(addr(1, 1), 1, "a", t0).unwrap();
        t.insert(addr(2, 1), 1, "b", t0).unwrap();
        assert_eq!(t.touch(addr(1, 1), t0 + Duration::from_secs(20)).map(|f| f.value), Some("a"));
        let gone = t.expire(t0 + Duration::from_secs(30));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].0, addr(2, 1));
        assert!(t.get(&addr(1, 1)).is_some());
        assert_eq!(t.expire(t0 + Duration::from_secs(50)).len(), 1);
        assert!(t.is_empty());
        // Released counts let the client open flows again.
        t.insert(addr(2, 2), 1, "c", t0).unwrap();
        t.insert(addr(2, 3), 1, "d", t0).unwrap();
    }

    #[test]
    fn a_backend_leaving_frees_only_its_flows() {
        let t0 = Instant::now();
        let mut t = FlowTable::new(FlowLimits { max_flows: 100, max_per_client: 100, ..limits() });
        for p in 0..30u16 {
            t.insert(addr(1, p), u64::from(p % 3), p, t0).unwrap();
        }
        let gone = t.remove_backend(1);
        assert_eq!(gone.len(), 10);
        assert!(gone.iter().all(|(_, f)| f.backend == 1));
        assert_eq!((t.count_for(0), t.count_for(1), t.count_for(2)), (10, 0, 10));
    }

    #[test]
    fn junk_sources_never_exceed_the_caps() {
        // A flood from pseudo-random addresses and ports keeps the table within its caps and
        // its per-client counts consistent.
        let t0 = Instant::now();
        let mut t =
            FlowTable::new(FlowLimits { max_flows: 64, max_per_client: 3, idle: Duration::from_secs(1) });
        let mut x: u64 = 0x1234_5678;
        for i in 0..10_000u64 {
            x = crate::maglev::mix64(x ^ i);
            let client = SocketAddr::from(([10, 0, (x >> 8) as u8 % 4, x as u8 % 16], (x >> 16) as u16));
            let now = t0 + Duration::from_millis(i);
            if t.touch(client, now).is_none() {
                let _ = t.insert(client, x % 5, (), now);
            }
            if i % 500 == 0 {
                t.expire(now);
            }
            assert!(t.len() <= 64);
        }
        let counted: usize = t.per_client.values().sum();
        assert_eq!(counted, t.len());
        assert!(t.per_client.values().all(|&n| n <= 3));
    }
}
