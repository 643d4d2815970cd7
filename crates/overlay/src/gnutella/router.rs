//! The sans-IO routing core of one Gnutella 0.6 servent. The driver owns the sockets: it adds
//! and removes neighbours, hands every received descriptor to [`Router::on_descriptor`], calls
//! [`Router::tick`] now and then, and carries out the returned [`Action`]s. No clock reads, no
//! I/O: the same core runs on real connections and in the simulator ([`crate::sim`]).
//!
//! Rules (Gnutella 0.6 + Pong-Caching 0.1 + Ultrapeers 1.0 + QRP):
//! - TTL + hops is capped at `max_ttl` (7) on arrival; TTL 0 is dropped; a descriptor is
//!   forwarded with TTL − 1 and hops + 1 only while TTL − 1 ≥ 1 (limited-scope flooding).
//! - Pings and Queries are suppressed by GUID (bounded tables with expiry); their GUIDs remember
//!   the neighbour they came from, so Pongs and QueryHits go back along the reverse path, and
//!   QueryHits teach which neighbour leads to a servent GUID, for Push.
//! - Pings are answered with our Pong and, with Pong caching, with up to ten cached Pongs
//!   instead of being forwarded.
//! - Each neighbour has token buckets for Queries and Pings; excess is dropped, and a neighbour
//!   that keeps flooding is disconnected.
//! - An ultrapeer floods Queries among ultrapeers and hands one to a leaf only when the leaf's
//!   QRP table matches; a leaf never forwards; plain (0.4-style) peers flood to each other.

use super::guid_table::GuidTable;
use super::qrp::{self, QrpReceiver, QrpTable};
use super::wire::{
    Bye, Descriptor, Extension, Guid, HitResult, Payload, Ping, Pong, Push, Qhd, Query, QueryHit,
};
use crate::index::ShareIndex;
use appnet_netkit::rate::TokenBucket;
use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

/// The driver's name for one neighbour connection.
pub type NeighbourId = u64;

/// What a neighbour is to us (from the handshake's X-Ultrapeer headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A plain flooding connection between two non-ultrapeers.
    Peer,
    /// An ultrapeer: our fellow (when we are one) or our parent (when we are its leaf).
    Ultrapeer,
    /// Our leaf (we are its ultrapeer): it gets queries only through its QRP table.
    Leaf,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write this descriptor to that neighbour.
    Send(NeighbourId, Descriptor),
    /// A QueryHit for one of our own queries (`query` is its GUID).
    Deliver {
        /// GUID of our query.
        query: Guid,
        /// The hit.
        hit: QueryHit,
        /// Hops it travelled.
        hops: u8,
    },
    /// Close that neighbour's connection.
    Drop(NeighbourId, String),
    /// A servent address learnt from a Pong (a candidate for new connections).
    Host(SocketAddrV4),
    /// A Push addressed to us: connect to `ip:port` and send file `index` (GIV).
    PushRequest(Push),
}

/// Local search over the files we share.
pub trait LocalShares: Send {
    /// Results for a query (by `urn:sha1:` when it names one, else by keywords).
    fn search(&self, q: &Query, max: usize) -> Vec<HitResult>;
    /// Number of files and kilobytes shared (for our Pong).
    fn totals(&self) -> (u32, u32);
    /// Our QRP table.
    fn qrp_table(&self, bits: u8) -> QrpTable;
}

impl LocalShares for ShareIndex {
    fn search(&self, q: &Query, max: usize) -> Vec<HitResult> {
        let urns = q.sha1_urns();
        let files: Vec<_> = if urns.is_empty() {
            ShareIndex::search(self, &q.criteria)
        } else {
            urns.iter().filter_map(|d| self.by_sha1(d)).collect()
        };
        files
            .into_iter()
            .take(max)
            .map(|f| HitResult {
                index: f.index,
                size: f.size.min(u64::from(u32::MAX)) as u32,
                name: f.name.clone(),
                ext: vec![Extension::Urn(f.urn())],
            })
            .collect()
    }

    fn totals(&self) -> (u32, u32) {
        (self.len().min(u32::MAX as usize) as u32, self.total_kbytes().min(u64::from(u32::MAX)) as u32)
    }

    fn qrp_table(&self, bits: u8) -> QrpTable {
        QrpTable::from_names(
            bits,
            self.files().iter().map(|f| f.name.as_str()),
            self.files().iter().map(|f| f.urn()),
        )
    }
}

/// Limits and identity of one servent's router; every field has a default.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// We are an ultrapeer (accept leaves, route among ultrapeers).
    pub ultrapeer: bool,
    /// Our servent GUID (QueryHit trailer, Push target).
    pub servent: Guid,
    /// Our advertised listening address (Pongs, QueryHits): `--listen`, not the TCP source.
    pub addr: SocketAddrV4,
    /// We cannot accept connections: no own Pong, Push flag set in QueryHits.
    pub firewalled: bool,
    /// Cap on TTL + hops (7 in the specification).
    pub max_ttl: u8,
    /// How long reverse-path routes and duplicate GUIDs are remembered.
    pub route_expiry: Duration,
    /// Most entries in each GUID table (pings, queries, pushes, push routes).
    pub max_routes: usize,
    /// Queries accepted per second from one neighbour …
    pub query_rate: u64,
    /// … with this burst.
    pub query_burst: u64,
    /// Pings accepted per second from one neighbour …
    pub ping_rate: u64,
    /// … with this burst.
    pub ping_burst: u64,
    /// Disconnect a neighbour after this many rate-limited descriptors in a row.
    pub max_violations: u32,
    /// Answer Pings from the Pong cache instead of forwarding them.
    pub pong_caching: bool,
    /// Cached Pongs sent in answer to one Ping.
    pub pong_replies: usize,
    /// Cached Pongs kept (all neighbours together).
    pub pong_cache: usize,
    /// How long a cached Pong stays fresh.
    pub pong_expiry: Duration,
    /// Keep-alive Ping (TTL 1) to each neighbour this often.
    pub keepalive: Duration,
    /// A neighbour silent this long is dropped.
    pub idle_timeout: Duration,
    /// Refresh the Pong cache with a Ping to all neighbours this often.
    pub pong_refresh: Duration,
    /// Most results in one QueryHit.
    pub max_results: usize,
    /// Size exponent of our QRP table.
    pub qrp_bits: u8,
    /// Largest QRP table accepted from a leaf (exponent).
    pub qrp_max_bits: u8,
    /// PATCH fragment size.
    pub qrp_fragment: usize,
    /// Speed advertised in QueryHits (kbit/s).
    pub speed: u32,
    /// Vendor code in the QueryHit trailer.
    pub vendor: [u8; 4],
    /// Seed of the GUID generator.
    pub seed: u64,
    /// Most hosts kept in the host cache.
    pub host_cache: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            ultrapeer: false,
            servent: Guid::modern([0x41; 16]),
            addr: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 6346),
            firewalled: false,
            max_ttl: 7,
            route_expiry: Duration::from_secs(600),
            max_routes: 100_000,
            query_rate: 20,
            query_burst: 60,
            ping_rate: 5,
            ping_burst: 20,
            max_violations: 1_000,
            pong_caching: true,
            pong_replies: 10,
            pong_cache: 200,
            pong_expiry: Duration::from_secs(120),
            keepalive: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            pong_refresh: Duration::from_secs(60),
            max_results: 64,
            qrp_bits: qrp::DEFAULT_BITS,
            qrp_max_bits: qrp::DEFAULT_MAX_BITS,
            qrp_fragment: qrp::DEFAULT_FRAGMENT,
            speed: 1000,
            vendor: *b"APNT",
            seed: 1,
            host_cache: 1000,
        }
    }
}

/// Counters of what the router saw and did (Prometheus-ready).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// Descriptors handed in.
    pub received: u64,
    /// Descriptors sent (forwarded or originated).
    pub sent: u64,
    /// Pings/Queries/Pushes dropped as duplicates.
    pub duplicates: u64,
    /// Dropped for TTL 0 or hops ≥ max.
    pub ttl_dropped: u64,
    /// Dropped by a neighbour's rate limit.
    pub rate_limited: u64,
    /// Pongs/QueryHits/Pushes with no route back.
    pub unroutable: u64,
    /// Queries answered from our shares.
    pub local_hits: u64,
    /// QueryHits delivered to our own queries.
    pub delivered: u64,
    /// Leaves skipped because their QRP table had no match.
    pub qrp_filtered: u64,
    /// ROUTE_TABLE_UPDATEs refused.
    pub qrp_errors: u64,
    /// Unknown payload types ignored.
    pub unknown: u64,
}

/// Where a routed GUID came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Local,
    Neighbour(NeighbourId),
}

#[derive(Debug, Clone)]
struct CachedPong {
    pong: Pong,
    hops: u8,
    from: NeighbourId,
    at: Instant,
}

struct Neighbour {
    role: Role,
    queries: TokenBucket,
    pings: TokenBucket,
    violations: u32,
    last_heard: Instant,
    last_keepalive: Instant,
    qrp: Option<QrpReceiver>,
    qrp_broken: bool,
}

/// One servent's routing state.
pub struct Router {
    cfg: RouterConfig,
    shares: Box<dyn LocalShares>,
    neighbours: BTreeMap<NeighbourId, Neighbour>,
    pings: GuidTable<Origin>,
    queries: GuidTable<Origin>,
    pushes: GuidTable<()>,
    push_routes: GuidTable<Origin>,
    pongs: VecDeque<CachedPong>,
    hosts: VecDeque<SocketAddrV4>,
    rng: u64,
    last_refresh: Option<Instant>,
    stats: RouterStats,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").field("cfg", &self.cfg).field("neighbours", &self.neighbours.len()).finish()
    }
}

impl Router {
    /// A router with no neighbours.
    pub fn new(cfg: RouterConfig, shares: Box<dyn LocalShares>) -> Router {
        let t = cfg.route_expiry;
        let cap = cfg.max_routes;
        Router {
            pings: GuidTable::new(cap, t.min(Duration::from_secs(60))),
            queries: GuidTable::new(cap, t),
            pushes: GuidTable::new(cap, t),
            push_routes: GuidTable::new(cap, t),
            pongs: VecDeque::new(),
            hosts: VecDeque::new(),
            rng: cfg.seed ^ 0x9E37_79B9_7F4A_7C15,
            last_refresh: None,
            neighbours: BTreeMap::new(),
            shares,
            stats: RouterStats::default(),
            cfg,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RouterConfig {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> &RouterStats {
        &self.stats
    }

    /// Neighbour ids with their roles.
    pub fn neighbours(&self) -> impl Iterator<Item = (NeighbourId, Role)> + '_ {
        self.neighbours.iter().map(|(&id, n)| (id, n.role))
    }

    /// Hosts learnt from Pongs, newest last.
    pub fn hosts(&self) -> impl Iterator<Item = SocketAddrV4> + '_ {
        self.hosts.iter().copied()
    }

    /// Whether the leaf `id` has sent a complete QRP table.
    pub fn leaf_has_table(&self, id: NeighbourId) -> bool {
        self.neighbours.get(&id).and_then(|n| n.qrp.as_ref()).is_some_and(|q| q.table().is_some())
    }

    /// A fresh GUID from the router's generator (xorshift64*, seeded by the config).
    pub fn new_guid(&mut self) -> Guid {
        let mut b = [0u8; 16];
        for half in b.chunks_mut(8) {
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            half.copy_from_slice(&self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        Guid::modern(b)
    }

    /// Registers a neighbour after its handshake. A leaf that joins an ultrapeer sends it the
    /// QRP table at once (the returned actions).
    pub fn add_neighbour(&mut self, id: NeighbourId, role: Role, now: Instant) -> Vec<Action> {
        let c = &self.cfg;
        let n = Neighbour {
            role,
            queries: TokenBucket::new(c.query_rate, c.query_burst, now),
            pings: TokenBucket::new(c.ping_rate, c.ping_burst, now),
            violations: 0,
            last_heard: now,
            last_keepalive: now,
            qrp: (role == Role::Leaf).then(|| QrpReceiver::new(c.qrp_max_bits)),
            qrp_broken: false,
        };
        self.neighbours.insert(id, n);
        let mut out = Vec::new();
        if role == Role::Ultrapeer && !self.cfg.ultrapeer {
            self.send_qrp(id, &mut out);
        }
        out
    }

    /// Forgets a neighbour (connection closed): its routes and cached Pongs go with it.
    pub fn remove_neighbour(&mut self, id: NeighbourId) {
        self.neighbours.remove(&id);
        let gone = Origin::Neighbour(id);
        self.pings.retain(|o| *o != gone);
        self.queries.retain(|o| *o != gone);
        self.push_routes.retain(|o| *o != gone);
        self.pongs.retain(|p| p.from != id);
    }

    /// Replaces the shared files (after a rescan) and re-sends our QRP table to our ultrapeers.
    pub fn set_shares(&mut self, shares: Box<dyn LocalShares>) -> Vec<Action> {
        self.shares = shares;
        let mut out = Vec::new();
        if !self.cfg.ultrapeer {
            let ups: Vec<_> = self
                .neighbours
                .iter()
                .filter(|(_, n)| n.role == Role::Ultrapeer)
                .map(|(&id, _)| id)
                .collect();
            for id in ups {
                self.send_qrp(id, &mut out);
            }
        }
        out
    }

    fn send_qrp(&mut self, id: NeighbourId, out: &mut Vec<Action>) {
        let table = self.shares.qrp_table(self.cfg.qrp_bits);
        for m in table.update_messages(self.cfg.qrp_fragment) {
            let g = self.new_guid();
            self.send(out, id, Descriptor::new(g, 1, Payload::RouteTable(m)));
        }
    }

    fn send(&mut self, out: &mut Vec<Action>, to: NeighbourId, d: Descriptor) {
        self.stats.sent += 1;
        out.push(Action::Send(to, d));
    }

    fn own_pong(&self) -> Option<Pong> {
        if self.cfg.firewalled {
            return None;
        }
        let (files, kbytes) = self.shares.totals();
        Some(Pong { port: self.cfg.addr.port(), ip: *self.cfg.addr.ip(), files, kbytes, ext: Vec::new() })
    }

    /// Starts a search of our own: returns its GUID and the Queries to send. As a leaf it goes
    /// to our ultrapeers; as an ultrapeer to the other ultrapeers and matching leaves; as a plain
    /// peer to every neighbour.
    pub fn local_query(
        &mut self,
        criteria: &str,
        urns: &[[u8; 20]],
        ttl: u8,
        now: Instant,
    ) -> (Guid, Vec<Action>) {
        let guid = self.new_guid();
        let ext = urns.iter().map(|d| Extension::Urn(super::base32::sha1_urn(d))).collect();
        let q = Query { flags: 0, criteria: criteria.to_string(), ext };
        self.queries.insert(guid, Origin::Local, now);
        let ttl = ttl.clamp(1, self.cfg.max_ttl);
        let d = Descriptor::new(guid, ttl, Payload::Query(q));
        let mut out = Vec::new();
        self.forward_query(&d, None, &mut out);
        (guid, out)
    }

    /// Pings every neighbour (TTL `ttl`): the Pongs that come back fill the host cache.
    pub fn local_ping(&mut self, ttl: u8, now: Instant) -> Vec<Action> {
        let guid = self.new_guid();
        self.pings.insert(guid, Origin::Local, now);
        let ttl = ttl.clamp(1, self.cfg.max_ttl);
        let ids: Vec<_> =
            self.neighbours.iter().filter(|(_, n)| n.role != Role::Leaf).map(|(&id, _)| id).collect();
        let mut out = Vec::new();
        for id in ids {
            self.send(&mut out, id, Descriptor::new(guid, ttl, Payload::Ping(Ping::default())));
        }
        out
    }

    /// Asks the firewalled servent `servent` (from a QueryHit) to connect to us and send file
    /// `index`; empty if no route to it is known.
    pub fn local_push(&mut self, servent: Guid, index: u32, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(Origin::Neighbour(id)) = self.push_routes.get(&servent, now).copied()
            && self.neighbours.contains_key(&id)
        {
            let guid = self.new_guid();
            self.pushes.insert(guid, (), now);
            let p =
                Push { servent, index, ip: *self.cfg.addr.ip(), port: self.cfg.addr.port(), ext: Vec::new() };
            self.send(&mut out, id, Descriptor::new(guid, self.cfg.max_ttl, Payload::Push(p)));
        }
        out
    }

    /// Periodic work: expire tables, keep-alive Pings, drop silent neighbours, refresh the
    /// Pong cache.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        self.pings.expire(now);
        self.queries.expire(now);
        self.pushes.expire(now);
        self.push_routes.expire(now);
        let exp = self.cfg.pong_expiry;
        self.pongs.retain(|p| now.saturating_duration_since(p.at) < exp);
        let mut out = Vec::new();
        let mut idle = Vec::new();
        let mut ping = Vec::new();
        for (&id, n) in self.neighbours.iter_mut() {
            if now.saturating_duration_since(n.last_heard) >= self.cfg.idle_timeout {
                idle.push(id);
            } else if now.saturating_duration_since(n.last_keepalive) >= self.cfg.keepalive {
                n.last_keepalive = now;
                ping.push(id);
            }
        }
        for id in idle {
            out.push(Action::Drop(id, format!("no traffic for {:?}", self.cfg.idle_timeout)));
        }
        for id in ping {
            let g = self.new_guid();
            self.pings.insert(g, Origin::Local, now);
            self.send(&mut out, id, Descriptor::new(g, 1, Payload::Ping(Ping::default())));
        }
        let refresh =
            self.last_refresh.is_none_or(|t| now.saturating_duration_since(t) >= self.cfg.pong_refresh);
        if refresh && !self.neighbours.is_empty() {
            self.last_refresh = Some(now);
            let ttl = self.cfg.max_ttl;
            out.extend(self.local_ping(ttl, now));
        }
        out
    }

    /// Handles one descriptor from neighbour `from`.
    pub fn on_descriptor(&mut self, from: NeighbourId, mut d: Descriptor, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(n) = self.neighbours.get_mut(&from) else {
            return out;
        };
        self.stats.received += 1;
        n.last_heard = now;
        // TTL rules: TTL 0 is invalid; TTL + hops never above the cap.
        let max = self.cfg.max_ttl;
        if d.ttl == 0 || d.hops >= max {
            self.stats.ttl_dropped += 1;
            return out;
        }
        if u16::from(d.ttl) + u16::from(d.hops) > u16::from(max) {
            d.ttl = max - d.hops;
        }
        match d.payload {
            Payload::Ping(_) => self.on_ping(from, d, now, &mut out),
            Payload::Pong(_) => self.on_pong(from, d, now, &mut out),
            Payload::Query(_) => self.on_query(from, d, now, &mut out),
            Payload::QueryHit(_) => self.on_hit(from, d, now, &mut out),
            Payload::Push(_) => self.on_push(from, d, now, &mut out),
            Payload::Bye(Bye { code, ref message }) => {
                out.push(Action::Drop(from, format!("bye {code} {message}")));
            }
            Payload::RouteTable(ref u) => {
                let n = self.neighbours.get_mut(&from).expect("checked above");
                match n.qrp.as_mut() {
                    Some(r) if !n.qrp_broken => {
                        if r.on_update(u).is_err() {
                            // Forward everything to a leaf whose table we cannot read.
                            n.qrp_broken = true;
                            self.stats.qrp_errors += 1;
                        }
                    }
                    _ => self.stats.qrp_errors += 1,
                }
            }
            Payload::Unknown { .. } => self.stats.unknown += 1,
        }
        out
    }

    /// Takes a token from the neighbour's bucket; disconnects after too many misses in a row.
    fn admit(&mut self, from: NeighbourId, query: bool, now: Instant, out: &mut Vec<Action>) -> bool {
        let max_violations = self.cfg.max_violations;
        let n = self.neighbours.get_mut(&from).expect("caller checked");
        let ok = if query { n.queries.try_take(1, now) } else { n.pings.try_take(1, now) };
        if ok {
            n.violations = 0;
            return true;
        }
        self.stats.rate_limited += 1;
        n.violations += 1;
        if n.violations == max_violations {
            out.push(Action::Drop(from, "query/ping rate limit exceeded".into()));
        }
        false
    }

    fn forwarded(d: &Descriptor) -> Descriptor {
        Descriptor { guid: d.guid, ttl: d.ttl - 1, hops: d.hops + 1, payload: d.payload.clone() }
    }

    fn on_ping(&mut self, from: NeighbourId, d: Descriptor, now: Instant, out: &mut Vec<Action>) {
        if !self.admit(from, false, now, out) {
            return;
        }
        if !self.pings.insert(d.guid, Origin::Neighbour(from), now) {
            self.stats.duplicates += 1;
            return;
        }
        let reply_ttl = (d.hops + 2).min(self.cfg.max_ttl);
        if let Some(p) = self.own_pong() {
            self.send(
                out,
                from,
                Descriptor { guid: d.guid, ttl: reply_ttl, hops: 0, payload: Payload::Pong(p) },
            );
        }
        let from_role = self.neighbours[&from].role;
        // A keep-alive / handshake Ping (TTL 1) asks only about us.
        if d.ttl <= 1 {
            return;
        }
        if self.cfg.pong_caching {
            let mut sent = 0;
            let cached: Vec<CachedPong> =
                self.pongs.iter().rev().filter(|p| p.from != from).cloned().collect();
            for c in cached {
                if sent >= self.cfg.pong_replies {
                    break;
                }
                let hops = c.hops.saturating_add(1);
                if u16::from(hops) + u16::from(reply_ttl) > u16::from(self.cfg.max_ttl) {
                    continue;
                }
                self.send(
                    out,
                    from,
                    Descriptor { guid: d.guid, ttl: reply_ttl, hops, payload: Payload::Pong(c.pong) },
                );
                sent += 1;
            }
            return;
        }
        if (self.cfg.ultrapeer || from_role != Role::Ultrapeer) && d.ttl > 1 {
            let fwd = Self::forwarded(&d);
            let ids: Vec<_> = self
                .neighbours
                .iter()
                .filter(|&(&id, n)| id != from && n.role != Role::Leaf)
                .map(|(&id, _)| id)
                .collect();
            for id in ids {
                self.send(out, id, fwd.clone());
            }
        }
    }

    fn on_pong(&mut self, from: NeighbourId, d: Descriptor, now: Instant, out: &mut Vec<Action>) {
        let Payload::Pong(p) = &d.payload else { return };
        // Cache every Pong that passes, newest last, bounded.
        if p.ip != Ipv4Addr::UNSPECIFIED && p.port != 0 {
            let addr = SocketAddrV4::new(p.ip, p.port);
            if addr != self.cfg.addr {
                self.pongs.retain(|c| !(c.pong.ip == p.ip && c.pong.port == p.port));
                self.pongs.push_back(CachedPong { pong: p.clone(), hops: d.hops, from, at: now });
                while self.pongs.len() > self.cfg.pong_cache {
                    self.pongs.pop_front();
                }
            }
        }
        match self.pings.get(&d.guid, now).copied() {
            Some(Origin::Local) => {
                let addr = SocketAddrV4::new(p.ip, p.port);
                if addr != self.cfg.addr && p.port != 0 && !self.hosts.contains(&addr) {
                    self.hosts.push_back(addr);
                    while self.hosts.len() > self.cfg.host_cache {
                        self.hosts.pop_front();
                    }
                    out.push(Action::Host(addr));
                }
            }
            Some(Origin::Neighbour(id)) if id != from && self.neighbours.contains_key(&id) && d.ttl > 1 => {
                let fwd = Self::forwarded(&d);
                self.send(out, id, fwd);
            }
            _ => self.stats.unroutable += 1,
        }
    }

    fn on_query(&mut self, from: NeighbourId, d: Descriptor, now: Instant, out: &mut Vec<Action>) {
        if !self.admit(from, true, now, out) {
            return;
        }
        if !self.queries.insert(d.guid, Origin::Neighbour(from), now) {
            self.stats.duplicates += 1;
            return;
        }
        let Payload::Query(q) = &d.payload else { return };
        let results = self.shares.search(q, self.cfg.max_results);
        if !results.is_empty() {
            self.stats.local_hits += 1;
            let push = self.cfg.firewalled;
            let hit = QueryHit {
                port: self.cfg.addr.port(),
                ip: *self.cfg.addr.ip(),
                speed: self.cfg.speed,
                results,
                qhd: Some(Qhd::with_flags(self.cfg.vendor, push, false, false)),
                servent: self.cfg.servent,
            };
            let ttl = (d.hops + 2).min(self.cfg.max_ttl);
            self.send(out, from, Descriptor { guid: d.guid, ttl, hops: 0, payload: Payload::QueryHit(hit) });
        }
        let from_role = self.neighbours[&from].role;
        if from_role == Role::Ultrapeer && !self.cfg.ultrapeer {
            return; // a leaf does not route
        }
        self.forward_query(&d, Some(from), out);
    }

    /// Sends a query on: among ultrapeers / plain peers while TTL allows, and (as an ultrapeer)
    /// to leaves whose QRP table matches, whatever the remaining TTL.
    fn forward_query(&mut self, d: &Descriptor, from: Option<NeighbourId>, out: &mut Vec<Action>) {
        let Payload::Query(q) = &d.payload else { return };
        let local = from.is_none();
        let (mesh_copy, leaf_copy) = if local {
            (d.clone(), Descriptor { ttl: 1, ..d.clone() })
        } else {
            let leaf = Descriptor { guid: d.guid, ttl: 1, hops: d.hops + 1, payload: d.payload.clone() };
            (Self::forwarded_or_same(d), leaf)
        };
        let mesh_ok = local || d.ttl > 1;
        let mut targets = Vec::new();
        let mut leaves = Vec::new();
        for (&id, n) in &self.neighbours {
            if Some(id) == from {
                continue;
            }
            match n.role {
                Role::Peer | Role::Ultrapeer if mesh_ok => targets.push(id),
                Role::Leaf => {
                    let table = n.qrp.as_ref().and_then(|r| r.table());
                    let pass = match table {
                        Some(t) if !n.qrp_broken => t.matches_query(q),
                        _ => true,
                    };
                    if pass {
                        leaves.push(id);
                    } else {
                        self.stats.qrp_filtered += 1;
                    }
                }
                _ => {}
            }
        }
        for id in targets {
            self.send(out, id, mesh_copy.clone());
        }
        for id in leaves {
            self.send(out, id, leaf_copy.clone());
        }
    }

    fn forwarded_or_same(d: &Descriptor) -> Descriptor {
        if d.ttl > 1 { Self::forwarded(d) } else { d.clone() }
    }

    fn on_hit(&mut self, from: NeighbourId, d: Descriptor, now: Instant, out: &mut Vec<Action>) {
        let Payload::QueryHit(h) = &d.payload else { return };
        // Learn the way to the responding servent, for Push.
        self.push_routes.insert(h.servent, Origin::Neighbour(from), now);
        match self.queries.get(&d.guid, now).copied() {
            Some(Origin::Local) => {
                self.stats.delivered += 1;
                out.push(Action::Deliver { query: d.guid, hit: h.clone(), hops: d.hops });
            }
            Some(Origin::Neighbour(id)) if id != from && self.neighbours.contains_key(&id) && d.ttl > 1 => {
                let fwd = Self::forwarded(&d);
                self.send(out, id, fwd);
            }
            _ => self.stats.unroutable += 1,
        }
    }

    fn on_push(&mut self, from: NeighbourId, d: Descriptor, now: Instant, out: &mut Vec<Action>) {
        let Payload::Push(p) = &d.payload else { return };
        if !self.pushes.insert(d.guid, (), now) {
            self.stats.duplicates += 1;
            return;
        }
        if p.servent == self.cfg.servent {
            out.push(Action::PushRequest(p.clone()));
            return;
        }
        match self.push_routes.get(&p.servent, now).copied() {
            Some(Origin::Neighbour(id)) if id != from && self.neighbours.contains_key(&id) && d.ttl > 1 => {
                let fwd = Self::forwarded(&d);
                self.send(out, id, fwd);
            }
            _ => self.stats.unroutable += 1,
        }
    }
}

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;
