//! A virtual-time search simulator: how many messages one search costs and how often it finds
//! a file held by r peers, in four designs.
//!
//! - Gnutella flooding: N instances of the real routing core ([`Router`]) on a random graph of
//!   average degree d, all plain peers; a query floods with TTL t.
//! - Two-tier (KaZaA-style / Gnutella 0.6 ultrapeers): the same core, a fraction of the peers are
//!   ultrapeers meshed among themselves, every other peer a leaf of 1–3 ultrapeers that has sent
//!   them its QRP table; queries flood among ultrapeers and reach a leaf only on a QRP match.
//! - Napster: a directory model — every peer registers its files once with one server; a search
//!   is one request and one answer; when the server is down nothing is found.
//! - Chord: appnet-chord's own sans-IO node core in its discrete-event simulator
//!   ([`appnet_chord::sim`]), a converged ring where each file's key is stored at its successor;
//!   a search is an iterative lookup of the key, every RPC request and answer counted.
//!
//! Messages are counted as sent over one overlay link (a Query forwarded to 5 neighbours is 5
//! messages; its QueryHits are counted separately). Links have equal latency, so flooding order
//! is breadth-first, as in virtual time with constant delay. Deterministic for a seed.

use crate::gnutella::qrp::QrpTable;
use crate::gnutella::router::{Action, LocalShares, NeighbourId, Role, Router, RouterConfig};
use crate::gnutella::wire::{Descriptor, Guid, HitResult, Payload, Query};
use std::collections::{HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

/// A small deterministic generator (splitmix64).
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator for this seed.
    pub fn new(seed: u64) -> SimRng {
        SimRng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// `k` distinct values of 0..n (k ≤ n).
    pub fn distinct(&mut self, n: usize, k: usize) -> Vec<usize> {
        let k = k.min(n);
        let mut set = HashSet::with_capacity(k);
        let mut out = Vec::with_capacity(k);
        while out.len() < k {
            let v = self.below(n);
            if set.insert(v) {
                out.push(v);
            }
        }
        out
    }
}

/// What is shared and searched for.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Distinct files.
    pub files: usize,
    /// Copies of each file, on distinct random peers.
    pub replicas: usize,
    /// Seed of placement and query choices.
    pub seed: u64,
}

/// Totals over a batch of searches.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Outcome {
    /// Searches run.
    pub queries: usize,
    /// Searches that found at least one copy.
    pub found: usize,
    /// Messages that carried the search (Queries, directory requests, lookup RPCs).
    pub query_msgs: u64,
    /// Messages that carried answers back (QueryHits, directory answers).
    pub hit_msgs: u64,
}

impl Outcome {
    /// Fraction of searches that found the file.
    pub fn success(&self) -> f64 {
        if self.queries == 0 { 0.0 } else { self.found as f64 / self.queries as f64 }
    }

    /// All messages per search.
    pub fn messages_per_query(&self) -> f64 {
        if self.queries == 0 { 0.0 } else { (self.query_msgs + self.hit_msgs) as f64 / self.queries as f64 }
    }

    /// Search messages (without answers) per search.
    pub fn query_msgs_per_query(&self) -> f64 {
        if self.queries == 0 { 0.0 } else { self.query_msgs as f64 / self.queries as f64 }
    }
}

/// The name of file `k` (one keyword, so a query matches exactly its copies).
pub fn file_name(k: usize) -> String {
    format!("track{k:06}.mp3")
}

fn file_keyword(k: usize) -> String {
    format!("track{k:06}")
}

/// A simulated peer's shares: file numbers.
struct SimShares {
    files: Vec<u32>,
}

impl LocalShares for SimShares {
    fn search(&self, q: &Query, max: usize) -> Vec<HitResult> {
        let Some(k) = q.criteria.strip_prefix("track").and_then(|s| s.parse::<u32>().ok()) else {
            return Vec::new();
        };
        self.files
            .iter()
            .filter(|&&f| f == k)
            .take(max)
            .map(|&f| HitResult { index: f, size: 1 << 20, name: file_name(f as usize), ext: Vec::new() })
            .collect()
    }

    fn totals(&self) -> (u32, u32) {
        (self.files.len() as u32, self.files.len() as u32 * 1024)
    }

    fn qrp_table(&self, bits: u8) -> QrpTable {
        let names: Vec<String> = self.files.iter().map(|&f| file_name(f as usize)).collect();
        QrpTable::from_names(bits, names.iter().map(String::as_str), [])
    }
}

/// Places `w.replicas` copies of each of `w.files` files on distinct random peers of `0..n`:
/// returns (files per peer, holders per file).
pub fn place(n: usize, w: &Workload, rng: &mut SimRng) -> (Vec<Vec<u32>>, Vec<Vec<usize>>) {
    let mut per_peer = vec![Vec::new(); n];
    let mut holders = Vec::with_capacity(w.files);
    for f in 0..w.files {
        let h = rng.distinct(n, w.replicas);
        for &p in &h {
            per_peer[p].push(f as u32);
        }
        holders.push(h);
    }
    (per_peer, holders)
}

/// N routing cores wired into an overlay.
pub struct GnutellaSim {
    routers: Vec<Router>,
    holders: Vec<Vec<usize>>,
    base: Instant,
    clock: Duration,
    rng: SimRng,
    ultrapeers: usize,
}

fn sim_config(i: usize, ultrapeer: bool, seed: u64, qrp_bits: u8) -> RouterConfig {
    let ip = Ipv4Addr::from(0x0a00_0001u32 + i as u32);
    let mut g = [0u8; 16];
    g[..8].copy_from_slice(&(i as u64).to_le_bytes());
    RouterConfig {
        ultrapeer,
        servent: Guid::modern(g),
        addr: SocketAddrV4::new(ip, 6346),
        route_expiry: Duration::from_secs(5),
        query_rate: 1_000,
        query_burst: 1_000,
        qrp_bits,
        seed: seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xA5A5,
        ..RouterConfig::default()
    }
}

impl GnutellaSim {
    /// A flat overlay of `n` plain peers: each opens `degree / 2` connections to random others,
    /// so the average degree is `degree`.
    pub fn flat(n: usize, degree: usize, w: &Workload) -> GnutellaSim {
        let mut rng = SimRng::new(w.seed);
        let (per_peer, holders) = place(n, w, &mut rng);
        let mut routers: Vec<Router> = per_peer
            .into_iter()
            .enumerate()
            .map(|(i, files)| Router::new(sim_config(i, false, w.seed, 10), Box::new(SimShares { files })))
            .collect();
        let start = Instant::now();
        let mut edges = HashSet::new();
        for i in 0..n {
            for _ in 0..(degree / 2).max(1) {
                let j = rng.below(n);
                if j != i && edges.insert((i.min(j), i.max(j))) {
                    routers[i].add_neighbour(j as NeighbourId, Role::Peer, start);
                    routers[j].add_neighbour(i as NeighbourId, Role::Peer, start);
                }
            }
        }
        GnutellaSim { routers, holders, base: start, clock: Duration::ZERO, rng, ultrapeers: 0 }
    }

    /// A two-tier overlay: `ultrapeers` of the `n` peers form a random mesh of average degree
    /// `up_degree`; every other peer is a leaf of `leaf_links` random ultrapeers and sends each
    /// its QRP table (2^qrp_bits slots) before the searches start.
    pub fn two_tier(
        n: usize,
        ultrapeers: usize,
        up_degree: usize,
        leaf_links: usize,
        qrp_bits: u8,
        w: &Workload,
    ) -> GnutellaSim {
        let ups = ultrapeers.clamp(1, n);
        let mut rng = SimRng::new(w.seed);
        let (per_peer, holders) = place(n, w, &mut rng);
        let mut routers: Vec<Router> = per_peer
            .into_iter()
            .enumerate()
            .map(|(i, files)| {
                Router::new(sim_config(i, i < ups, w.seed, qrp_bits), Box::new(SimShares { files }))
            })
            .collect();
        let start = Instant::now();
        let mut edges = HashSet::new();
        for i in 0..ups {
            for _ in 0..(up_degree / 2).max(1) {
                let j = rng.below(ups);
                if j != i && edges.insert((i.min(j), i.max(j))) {
                    routers[i].add_neighbour(j as NeighbourId, Role::Ultrapeer, start);
                    routers[j].add_neighbour(i as NeighbourId, Role::Ultrapeer, start);
                }
            }
        }
        for leaf in ups..n {
            for up in rng.distinct(ups, leaf_links.clamp(1, ups)) {
                routers[up].add_neighbour(leaf as NeighbourId, Role::Leaf, start);
                // The leaf's QRP table travels to the ultrapeer now (joining cost, not counted
                // against searches).
                for a in routers[leaf].add_neighbour(up as NeighbourId, Role::Ultrapeer, start) {
                    if let Action::Send(_, d) = a {
                        routers[up].on_descriptor(leaf as NeighbourId, d, start);
                    }
                }
            }
        }
        GnutellaSim { routers, holders, base: start, clock: Duration::ZERO, rng, ultrapeers: ups }
    }

    /// Number of peers.
    pub fn len(&self) -> usize {
        self.routers.len()
    }

    /// Whether there are no peers.
    pub fn is_empty(&self) -> bool {
        self.routers.is_empty()
    }

    /// Number of ultrapeers (0 in a flat overlay).
    pub fn ultrapeers(&self) -> usize {
        self.ultrapeers
    }

    /// Mean number of neighbours.
    pub fn mean_degree(&self) -> f64 {
        let total: usize = self.routers.iter().map(|r| r.neighbours().count()).sum();
        total as f64 / self.routers.len().max(1) as f64
    }

    /// Runs `queries` searches with TTL `ttl`, each for a random file from a random peer that
    /// does not hold it.
    pub fn run(&mut self, queries: usize, ttl: u8) -> Outcome {
        let mut out = Outcome::default();
        let n = self.routers.len();
        let mut queue: VecDeque<(usize, usize, Descriptor)> = VecDeque::new();
        for _ in 0..queries {
            let f = self.rng.below(self.holders.len().max(1));
            let Some(h) = self.holders.get(f) else { break };
            if h.len() >= n {
                continue;
            }
            let origin = loop {
                let o = self.rng.below(n);
                if !h.contains(&o) {
                    break o;
                }
            };
            // Queries are 10 s apart in virtual time: earlier routes have expired.
            self.clock += Duration::from_secs(10);
            let now = self.base + self.clock;
            let (guid, actions) = self.routers[origin].local_query(&file_keyword(f), &[], ttl, now);
            let mut found = false;
            let mut handle =
                |from: usize, actions: Vec<Action>, queue: &mut VecDeque<_>, out: &mut Outcome| {
                    for a in actions {
                        match a {
                            Action::Send(to, d) => {
                                match d.payload {
                                    Payload::Query(_) => out.query_msgs += 1,
                                    Payload::QueryHit(_) => out.hit_msgs += 1,
                                    _ => {}
                                }
                                queue.push_back((from, to as usize, d));
                            }
                            Action::Deliver { query, .. } if query == guid => found = true,
                            _ => {}
                        }
                    }
                };
            handle(origin, actions, &mut queue, &mut out);
            // Bounded: each router forwards a GUID once and answers it once.
            while let Some((from, to, d)) = queue.pop_front() {
                let actions = self.routers[to].on_descriptor(from as NeighbourId, d, now);
                handle(to, actions, &mut queue, &mut out);
            }
            out.queries += 1;
            if found {
                out.found += 1;
            }
        }
        out
    }
}

/// The Napster directory model over `n` peers: returns (join messages, search outcome).
/// `server_up = false` shows the single point of failure: nothing is found.
pub fn napster(n: usize, w: &Workload, queries: usize, server_up: bool) -> (u64, Outcome) {
    let mut rng = SimRng::new(w.seed);
    let (per_peer, holders) = place(n, w, &mut rng);
    // Each peer informs the server of its address and content: one message per peer.
    let joins = per_peer.len() as u64;
    let mut directory: std::collections::HashMap<u32, Vec<usize>> = std::collections::HashMap::new();
    for (p, files) in per_peer.iter().enumerate() {
        for &f in files {
            directory.entry(f).or_default().push(p);
        }
    }
    let mut out = Outcome::default();
    for _ in 0..queries {
        let f = rng.below(holders.len().max(1)) as u32;
        out.queries += 1;
        if !server_up {
            out.query_msgs += 1; // the request goes unanswered
            continue;
        }
        out.query_msgs += 1;
        out.hit_msgs += 1;
        if directory.get(&f).is_some_and(|h| !h.is_empty()) {
            out.found += 1;
        }
    }
    (joins, out)
}

/// Chord: `queries` lookups of file keys from random peers on a converged ring of `n` nodes
/// running appnet-chord's node core. A search succeeds when the lookup ends at the key's true
/// successor, which holds the file's index entry (peers holding a copy inserted it). Every RPC
/// request and answer is a message.
pub fn chord(n: usize, w: &Workload, queries: usize) -> Outcome {
    use appnet_chord::id::Id;
    use appnet_chord::node::{Event, Params};
    use appnet_chord::sim::{Sim, SimConfig, successor_in};
    const BITS: u8 = 64;
    let params = Params {
        bits: BITS,
        successors: 3,
        replicas: 1,
        stabilize_ms: 600_000,
        fix_fingers_ms: 600_000,
        check_predecessor_ms: 600_000,
        gc_ms: 0,
        ..Params::default()
    };
    let mut sim = Sim::new(params, SimConfig { seed: w.seed, ..SimConfig::default() });
    let ids: Vec<_> = (0..n).map(|_| sim.rng.id(BITS)).collect();
    let nodes = sim.build_converged(&ids);
    let ring = sim.live_ring();
    let mut rng = SimRng::new(w.seed ^ 0xC0DE);
    let mut out = Outcome::default();
    let mut expected = std::collections::HashMap::new();
    let before = sim.messages;
    for _ in 0..queries {
        let f = rng.below(w.files.max(1));
        let key = Id::hash(file_name(f).as_bytes(), BITS);
        let from = nodes[rng.below(nodes.len())];
        let op = sim.lookup(from, key);
        expected.insert((from, op), successor_in(&ring, &key).id);
        out.queries += 1;
    }
    // Long enough for every lookup (RPC timeout 500 ms, a few dozen hops), shorter than the
    // maintenance periods, so only lookup traffic is counted.
    let t = sim.now + 60_000;
    sim.run_until(t);
    for (i, ev) in sim.take_events() {
        if let Event::LookupDone { op, outcome: Some(o) } = ev
            && let Some(want) = expected.get(&(i, op))
            && o.succs.first().is_some_and(|s| s.id == *want)
        {
            out.found += 1;
        }
    }
    // The simulator counts delivered requests; each is answered (the lookup is iterative).
    let rpcs = sim.messages - before;
    out.query_msgs = rpcs;
    out.hit_msgs = rpcs;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(files: usize, replicas: usize) -> Workload {
        Workload { files, replicas, seed: 7 }
    }

    #[test]
    fn flooding_finds_more_with_ttl_and_costs_more() {
        let mut sim = GnutellaSim::flat(500, 4, &w(50, 2));
        assert!((sim.mean_degree() - 4.0).abs() < 0.5, "degree {}", sim.mean_degree());
        let t1 = sim.run(100, 1);
        let t3 = sim.run(100, 3);
        let t7 = sim.run(100, 7);
        assert_eq!(t1.queries, 100);
        assert!(t1.success() < t3.success() && t3.success() <= t7.success(), "{t1:?} {t3:?} {t7:?}");
        assert!(t1.query_msgs_per_query() < t3.query_msgs_per_query());
        assert!(t3.query_msgs_per_query() < t7.query_msgs_per_query());
        // TTL 1 reaches only the direct neighbours: about the mean degree.
        assert!((t1.query_msgs_per_query() - 4.0).abs() < 1.0, "{}", t1.query_msgs_per_query());
        // TTL 7 on 500 nodes of degree 4 reaches nearly everyone: near-certain success, and
        // about one message per edge direction at most.
        assert!(t7.success() > 0.9, "{t7:?}");
        assert!(t7.query_msgs_per_query() <= 500.0 * 4.0);
        // Every found search had at least one hit message.
        assert!(t7.hit_msgs as usize >= t7.found);
    }

    #[test]
    fn ultrapeers_save_messages() {
        let work = w(100, 2);
        let mut flat = GnutellaSim::flat(1000, 6, &work);
        let mut tiered = GnutellaSim::two_tier(1000, 100, 6, 2, 12, &work);
        assert_eq!(tiered.ultrapeers(), 100);
        let f = flat.run(100, 4);
        let t = tiered.run(100, 4);
        assert!(t.success() > 0.8, "{t:?}");
        assert!(t.query_msgs_per_query() < f.query_msgs_per_query() / 2.0, "flat {f:?} tiered {t:?}");
    }

    #[test]
    fn napster_is_one_round_trip_and_one_point_of_failure() {
        let (joins, up) = napster(1000, &w(100, 1), 50, true);
        assert_eq!(joins, 1000);
        assert_eq!((up.success(), up.messages_per_query()), (1.0, 2.0));
        let (_, down) = napster(1000, &w(100, 1), 50, false);
        assert_eq!(down.success(), 0.0);
    }

    #[test]
    fn chord_is_logarithmic_and_exact() {
        let small = chord(64, &w(100, 1), 200);
        let large = chord(1024, &w(100, 1), 200);
        assert_eq!(small.success(), 1.0);
        assert_eq!(large.success(), 1.0);
        assert!(large.messages_per_query() > small.messages_per_query());
        // About ½·log2 N RPCs (request + answer each): 2·5 = 10 messages for N = 1024.
        let rpcs = large.query_msgs as f64 / large.queries as f64;
        assert!((3.0..8.0).contains(&rpcs), "{large:?}");
    }

    #[test]
    fn same_seed_same_result() {
        let a = GnutellaSim::flat(300, 4, &w(30, 3)).run(50, 3);
        let b = GnutellaSim::flat(300, 4, &w(30, 3)).run(50, 3);
        assert_eq!(a, b);
    }
}
