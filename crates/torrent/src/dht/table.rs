//! The Kademlia routing table of BEP 5: k=8 buckets that split only when they cover our own id,
//! with good / questionable / bad nodes (15 minutes of silence makes a node questionable; failing
//! to answer makes it bad) and questionable nodes pinged before they are replaced.

use super::krpc::{Id, NodeInfo};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

/// Nodes per bucket (BEP 5's K).
pub const K: usize = 8;
/// Silence after which a node is questionable and a bucket wants a refresh.
pub const REFRESH: Duration = Duration::from_secs(15 * 60);
/// Failed queries after which a node is bad.
pub const MAX_FAILS: u8 = 2;

/// XOR distance between two ids (compare as big-endian numbers).
pub fn distance(a: &Id, b: &Id) -> Id {
    std::array::from_fn(|i| a[i] ^ b[i])
}

/// Number of leading bits `a` and `b` share (160 when equal).
pub fn common_prefix(a: &Id, b: &Id) -> usize {
    let d = distance(a, b);
    d.iter().position(|&x| x != 0).map_or(160, |i| i * 8 + d[i].leading_zeros() as usize)
}

/// What the table knows about one node.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Id and address.
    pub node: NodeInfo,
    /// When it last answered one of our queries (`None`: never).
    pub last_response: Option<Instant>,
    /// When it last queried us.
    pub last_query: Option<Instant>,
    /// Queries it failed to answer in a row.
    pub fails: u8,
}

/// How healthy a node is, per BEP 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Answered in the last 15 minutes, or ever answered and queried us in the last 15 minutes.
    Good,
    /// Neither good nor bad.
    Questionable,
    /// Failed to answer several queries in a row.
    Bad,
}

impl Entry {
    /// This entry's health at `now`.
    pub fn health(&self, now: Instant) -> Health {
        let recent = |t: Option<Instant>| t.is_some_and(|t| now.saturating_duration_since(t) < REFRESH);
        if self.fails >= MAX_FAILS {
            Health::Bad
        } else if recent(self.last_response) || (self.last_response.is_some() && recent(self.last_query)) {
            Health::Good
        } else {
            Health::Questionable
        }
    }
}

#[derive(Debug, Clone)]
struct Bucket {
    entries: Vec<Entry>,
    /// A node waiting for a questionable entry's ping to fail.
    candidate: Option<NodeInfo>,
    changed: Instant,
}

/// What inserting a node did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insert {
    /// The node is (now) in the table.
    Added,
    /// The bucket is full of good nodes; the node was dropped.
    Dropped,
    /// The bucket is full but these questionable nodes should be pinged; the new node waits and
    /// replaces the first of them that fails.
    Ping(Vec<NodeInfo>),
}

/// The routing table around our own id.
#[derive(Debug, Clone)]
pub struct Table {
    own: Id,
    /// Bucket `i < len-1` holds nodes sharing exactly `i` leading bits with us; the last holds
    /// the rest (the one containing our own id, which splits when full).
    buckets: Vec<Bucket>,
}

impl Table {
    /// An empty table for `own`.
    pub fn new(own: Id, now: Instant) -> Table {
        Table { own, buckets: vec![Bucket { entries: Vec::new(), candidate: None, changed: now }] }
    }

    /// Our own id.
    pub fn own_id(&self) -> Id {
        self.own
    }

    fn index(&self, id: &Id) -> usize {
        common_prefix(&self.own, id).min(self.buckets.len() - 1)
    }

    /// Number of nodes in the table.
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.entries.len()).sum()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of buckets.
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// Number of good nodes at `now`.
    pub fn good(&self, now: Instant) -> usize {
        self.buckets.iter().flat_map(|b| &b.entries).filter(|e| e.health(now) == Health::Good).count()
    }

    /// Looks up a node by id.
    pub fn get(&self, id: &Id) -> Option<&Entry> {
        self.buckets[self.index(id)].entries.iter().find(|e| e.node.id == *id)
    }

    fn split_last(&mut self) {
        let depth = self.buckets.len() - 1;
        let own = self.own;
        let last = self.buckets.last_mut().expect("at least one bucket");
        let (deeper, here): (Vec<Entry>, Vec<Entry>) =
            last.entries.drain(..).partition(|e| common_prefix(&own, &e.node.id) > depth);
        last.entries = here;
        let changed = last.changed;
        self.buckets.push(Bucket { entries: deeper, candidate: None, changed });
    }

    /// Records a node heard from: `responded` when it answered our query, else it queried us.
    pub fn insert(&mut self, node: NodeInfo, responded: bool, now: Instant) -> Insert {
        if node.id == self.own {
            return Insert::Dropped;
        }
        loop {
            let i = self.index(&node.id);
            let count = self.buckets.len();
            let is_last = i == count - 1;
            let b = &mut self.buckets[i];
            if let Some(e) = b.entries.iter_mut().find(|e| e.node.id == node.id) {
                if e.node.addr != node.addr && !responded {
                    // Only a verified answer may move a known node to a new address.
                    return Insert::Dropped;
                }
                e.node.addr = node.addr;
                if responded {
                    e.last_response = Some(now);
                    e.fails = 0;
                } else {
                    e.last_query = Some(now);
                }
                b.changed = now;
                return Insert::Added;
            }
            let entry = Entry {
                node,
                last_response: responded.then_some(now),
                last_query: (!responded).then_some(now),
                fails: 0,
            };
            if b.entries.len() < K {
                b.entries.push(entry);
                b.changed = now;
                return Insert::Added;
            }
            if let Some(pos) = b.entries.iter().position(|e| e.health(now) == Health::Bad) {
                b.entries[pos] = entry;
                b.changed = now;
                return Insert::Added;
            }
            if is_last && count < 160 {
                self.split_last();
                continue;
            }
            let questionable: Vec<NodeInfo> =
                b.entries.iter().filter(|e| e.health(now) == Health::Questionable).map(|e| e.node).collect();
            if questionable.is_empty() || !responded {
                return Insert::Dropped;
            }
            b.candidate = Some(node);
            return Insert::Ping(questionable);
        }
    }

    /// A query to `id` timed out: count the failure, and once the node is bad, let a waiting
    /// candidate take its place.
    pub fn failed(&mut self, id: &Id, now: Instant) {
        let i = self.index(id);
        let b = &mut self.buckets[i];
        if let Some(pos) = b.entries.iter().position(|e| e.node.id == *id) {
            let e = &mut b.entries[pos];
            e.fails = e.fails.saturating_add(1);
            // A questionable node that also fails a ping is bad (BEP 5).
            if e.last_response.is_none_or(|t| now.saturating_duration_since(t) >= REFRESH) {
                e.fails = e.fails.max(MAX_FAILS);
            }
            if e.fails >= MAX_FAILS
                && let Some(c) = b.candidate.take()
            {
                b.entries[pos] = Entry { node: c, last_response: Some(now), last_query: None, fails: 0 };
                b.changed = now;
            }
        }
    }

    /// The `n` known non-bad nodes closest to `target`, nearest first.
    pub fn closest(&self, target: &Id, n: usize, now: Instant) -> Vec<NodeInfo> {
        let mut all: Vec<&Entry> =
            self.buckets.iter().flat_map(|b| &b.entries).filter(|e| e.health(now) != Health::Bad).collect();
        all.sort_by_key(|e| distance(&e.node.id, target));
        all.into_iter().take(n).map(|e| e.node).collect()
    }

    /// Ids to look up for buckets nobody touched in 15 minutes (a random id in each one's range);
    /// marks them refreshed.
    pub fn stale_buckets(&mut self, now: Instant, rand_id: impl Fn() -> Id) -> Vec<Id> {
        let n = self.buckets.len();
        let own = self.own;
        let mut out = Vec::new();
        for (i, b) in self.buckets.iter_mut().enumerate() {
            if now.saturating_duration_since(b.changed) < REFRESH {
                continue;
            }
            b.changed = now;
            out.push(random_in_bucket(&own, i, i == n - 1, rand_id()));
        }
        out
    }

    /// Every entry (for status output and tests).
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.buckets.iter().flat_map(|b| &b.entries)
    }

    /// Addresses of every node, for saving and restoring.
    pub fn addrs(&self) -> Vec<SocketAddrV4> {
        self.entries().map(|e| e.node.addr).collect()
    }
}

/// An id sharing exactly `depth` leading bits with `own` (at least `depth` for the last bucket).
fn random_in_bucket(own: &Id, depth: usize, last: bool, mut r: Id) -> Id {
    for bit in 0..depth.min(160) {
        let (byte, mask) = (bit / 8, 0x80u8 >> (bit % 8));
        r[byte] = (r[byte] & !mask) | (own[byte] & mask);
    }
    if !last && depth < 160 {
        let (byte, mask) = (depth / 8, 0x80u8 >> (depth % 8));
        r[byte] = (r[byte] & !mask) | (!own[byte] & mask);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn node(id: Id, port: u16) -> NodeInfo {
        NodeInfo { id, addr: SocketAddrV4::new(Ipv4Addr::LOCALHOST, port) }
    }

    fn id_with_prefix(first: u8, n: u8) -> Id {
        let mut id = [n; 20];
        id[0] = first;
        id
    }

    #[test]
    fn distance_and_prefix() {
        assert_eq!(common_prefix(&[0; 20], &[0; 20]), 160);
        assert_eq!(common_prefix(&[0; 20], &id_with_prefix(0x80, 0)), 0);
        assert_eq!(common_prefix(&[0; 20], &id_with_prefix(0x01, 0)), 7);
        let own = [0x55; 20];
        for depth in [0, 3, 9, 100, 159] {
            assert_eq!(common_prefix(&own, &random_in_bucket(&own, depth, false, [0xaa; 20])), depth);
            assert!(common_prefix(&own, &random_in_bucket(&own, depth, true, [0x11; 20])) >= depth);
        }
    }

    #[test]
    fn splits_only_the_bucket_with_our_id() {
        let now = Instant::now();
        let mut t = Table::new([0; 20], now);
        // Nine far nodes (first bit 1) fill bucket 0 after the first split; the ninth is dropped.
        for n in 0..9u8 {
            let r = t.insert(node(id_with_prefix(0x80, n), 1000 + u16::from(n)), true, now);
            assert_eq!(r, if n < 8 { Insert::Added } else { Insert::Dropped }, "node {n}");
        }
        assert_eq!(t.len(), 8);
        assert_eq!(t.bucket_count(), 2);
        // Near nodes keep splitting the bucket holding our own id.
        for n in 0..20u8 {
            let mut id = [n; 20];
            id[0] = 0;
            id[1] = 0x80 >> (n % 8);
            assert_eq!(t.insert(node(id, 2000 + u16::from(n)), true, now), Insert::Added, "near node {n}");
        }
        assert_eq!(t.len(), 28);
        assert!(t.bucket_count() > 8);
        let near = t.closest(&[0; 20], 3, now);
        assert_eq!(near.iter().map(|n| n.id[1]).collect::<Vec<_>>(), vec![1, 1, 2]);
    }

    #[test]
    fn questionable_nodes_are_pinged_then_replaced_when_they_fail() {
        let t0 = Instant::now();
        let mut t = Table::new([0; 20], t0);
        for n in 0..8u8 {
            t.insert(node(id_with_prefix(0x80, n), 1000 + u16::from(n)), true, t0);
        }
        t.insert(node(id_with_prefix(0x01, 0), 3000), true, t0); // forces the split
        let later = t0 + REFRESH + Duration::from_secs(1);
        let newcomer = node(id_with_prefix(0x80, 99), 4000);
        let Insert::Ping(q) = t.insert(newcomer, true, later) else { panic!("expected pings") };
        assert_eq!(q.len(), 8);
        // One answers (good again), one fails (bad, replaced by the newcomer).
        t.insert(q[0], true, later);
        t.failed(&q[1].id, later);
        assert!(t.get(&q[1].id).is_none());
        assert_eq!(t.get(&newcomer.id).map(|e| e.health(later)), Some(Health::Good));
        assert_eq!(t.get(&q[0].id).map(|e| e.health(later)), Some(Health::Good));
    }

    #[test]
    fn health_follows_bep5() {
        let t0 = Instant::now();
        let mut e = Entry { node: node([1; 20], 1), last_response: Some(t0), last_query: None, fails: 0 };
        assert_eq!(e.health(t0 + Duration::from_secs(60)), Health::Good);
        assert_eq!(e.health(t0 + REFRESH), Health::Questionable);
        e.last_query = Some(t0 + REFRESH);
        assert_eq!(e.health(t0 + REFRESH), Health::Good);
        e.fails = MAX_FAILS;
        assert_eq!(e.health(t0), Health::Bad);
        let unverified =
            Entry { node: node([2; 20], 2), last_response: None, last_query: Some(t0), fails: 0 };
        assert_eq!(unverified.health(t0), Health::Questionable);
    }

    #[test]
    fn stale_buckets_get_refresh_targets() {
        let t0 = Instant::now();
        let mut t = Table::new([7; 20], t0);
        assert!(t.stale_buckets(t0, || [0; 20]).is_empty());
        let ids = t.stale_buckets(t0 + REFRESH, || [0xff; 20]);
        assert_eq!(ids.len(), 1);
        assert!(t.stale_buckets(t0 + REFRESH, || [0; 20]).is_empty());
    }
}
