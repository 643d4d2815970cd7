//! The sans-IO DHT node (BEP 5): answers queries, keeps the routing table, runs lookups, hands
//! out and checks tokens, stores announced peers. Feed it datagrams and `now`; take datagrams
//! to send and events out. The tokio driver in `dht::server` does the I/O.

use super::krpc::{Body, ERR_PROTOCOL, ERR_SERVER, Id, Message, NodeInfo, Query, Response};
use super::lookup::Lookup;
use super::store::PeerStore;
use super::table::{Insert, K, Table};
use super::token::Tokens;
use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

/// How long to wait for an answer.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// Most queries outstanding at once (the rest wait for a tick).
pub const MAX_PENDING: usize = 512;
/// Most lookups running at once.
pub const MAX_LOOKUPS: usize = 64;
/// Longest a lookup may run.
pub const LOOKUP_DEADLINE: Duration = Duration::from_secs(60);
/// Most datagrams queued for sending before new ones are dropped.
pub const MAX_OUTBOX: usize = 1024;
/// Our KRPC client version: "AP" and a version number.
pub const VERSION: &[u8; 4] = b"AP\x00\x01";

/// Identifies a lookup started on the node.
pub type LookupId = u64;

/// What a lookup is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupKind {
    /// find_node: fill the routing table.
    FindNode,
    /// get_peers: find peers of a torrent.
    GetPeers,
    /// get_peers, then announce_peer to the closest nodes (`None`: implied port).
    Announce(Option<u16>),
}

/// Something a caller of the node wants to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A get_peers answer named peers of `info_hash`.
    Peers {
        /// Which lookup.
        lookup: LookupId,
        /// The torrent.
        info_hash: Id,
        /// The peers.
        peers: Vec<SocketAddrV4>,
    },
    /// A lookup finished.
    LookupDone {
        /// Which lookup.
        lookup: LookupId,
        /// Its target.
        target: Id,
        /// The closest nodes that answered.
        closest: Vec<NodeInfo>,
        /// How many announce_peer queries were sent (announce lookups).
        announced: usize,
    },
}

/// A summary for status output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Our node id.
    pub id: Id,
    /// Nodes in the routing table.
    pub nodes: usize,
    /// Good nodes among them.
    pub good: usize,
    /// Buckets.
    pub buckets: usize,
    /// Torrents with announced peers stored here.
    pub torrents: usize,
    /// Lookups running.
    pub lookups: usize,
}

#[derive(Debug, Clone, Copy)]
enum Purpose {
    Ping,
    Lookup(LookupId),
    Announce,
}

#[derive(Debug, Clone)]
struct Pending {
    addr: SocketAddrV4,
    sent: Instant,
    purpose: Purpose,
}

struct Running {
    lookup: Lookup,
    kind: LookupKind,
    started: Instant,
}

/// The DHT node.
pub struct Node {
    table: Table,
    tokens: Tokens,
    store: PeerStore,
    routers: Vec<SocketAddrV4>,
    pending: HashMap<[u8; 2], Pending>,
    next_tid: u16,
    lookups: HashMap<LookupId, Running>,
    next_lookup: LookupId,
    outbox: VecDeque<(SocketAddrV4, Vec<u8>)>,
    events: VecDeque<Event>,
    last_expiry: Instant,
}

impl Node {
    /// A node with id `id`; `secret` seeds the token secret (random in real use).
    pub fn new(id: Id, secret: [u8; 16], now: Instant) -> Node {
        Node {
            table: Table::new(id, now),
            tokens: Tokens::new(secret, now),
            store: PeerStore::default(),
            routers: Vec::new(),
            pending: HashMap::new(),
            next_tid: rand::random(),
            lookups: HashMap::new(),
            next_lookup: 1,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            last_expiry: now,
        }
    }

    /// Our id.
    pub fn id(&self) -> Id {
        self.table.own_id()
    }

    /// The routing table (read-only).
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// A status summary.
    pub fn status(&self, now: Instant) -> Status {
        Status {
            id: self.id(),
            nodes: self.table.len(),
            good: self.table.good(now),
            buckets: self.table.bucket_count(),
            torrents: self.store.torrents(),
            lookups: self.lookups.len(),
        }
    }

    /// Joins the DHT through `routers` (remembered as a fallback for lookups while the table
    /// is nearly empty): a find_node lookup for our own id.
    pub fn bootstrap(&mut self, routers: &[SocketAddrV4], now: Instant) -> LookupId {
        for r in routers {
            if !self.routers.contains(r) && self.routers.len() < 16 {
                self.routers.push(*r);
            }
        }
        let own = self.id();
        self.start(own, LookupKind::FindNode, now)
    }

    /// Starts a find_node lookup for `target`.
    pub fn find_node(&mut self, target: Id, now: Instant) -> LookupId {
        self.start(target, LookupKind::FindNode, now)
    }

    /// Starts a get_peers lookup for `info_hash`; peers arrive as [`Event::Peers`].
    pub fn get_peers(&mut self, info_hash: Id, now: Instant) -> LookupId {
        self.start(info_hash, LookupKind::GetPeers, now)
    }

    /// Announces that we seed/download `info_hash` on `port` (`None`: the UDP source port, BEP 5
    /// implied_port), finding peers on the way.
    pub fn announce(&mut self, info_hash: Id, port: Option<u16>, now: Instant) -> LookupId {
        self.start(info_hash, LookupKind::Announce(port), now)
    }

    /// Rejoins through the nodes a previous run knew (see [`super::state`]): a find_node
    /// lookup for our own id that asks them first. Only those that answer enter the table.
    pub fn restore(&mut self, known: &[NodeInfo], now: Instant) -> LookupId {
        let own = self.id();
        self.start_with(own, LookupKind::FindNode, known, now)
    }

    fn start(&mut self, target: Id, kind: LookupKind, now: Instant) -> LookupId {
        self.start_with(target, kind, &[], now)
    }

    fn start_with(&mut self, target: Id, kind: LookupKind, extra: &[NodeInfo], now: Instant) -> LookupId {
        let id = self.next_lookup;
        self.next_lookup += 1;
        if self.lookups.len() >= MAX_LOOKUPS {
            self.events.push_back(Event::LookupDone {
                lookup: id,
                target,
                closest: Vec::new(),
                announced: 0,
            });
            return id;
        }
        let mut seeds = self.table.closest(&target, K, now);
        seeds.extend(extra.iter().filter(|n| n.id != target));
        if seeds.len() < K {
            // Routers' ids are unknown: a placeholder equal to the target puts them first.
            seeds.extend(self.routers.iter().map(|&addr| NodeInfo { id: target, addr }));
        }
        self.lookups.insert(id, Running { lookup: Lookup::new(target, seeds), kind, started: now });
        self.drive(id, now);
        id
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddrV4, Vec<u8>)> {
        self.outbox.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn send(&mut self, to: SocketAddrV4, msg: &Message) {
        if self.outbox.len() < MAX_OUTBOX {
            self.outbox.push_back((to, msg.encode()));
        }
    }

    fn query(&mut self, to: SocketAddrV4, q: Query, purpose: Purpose, now: Instant) -> bool {
        if self.pending.len() >= MAX_PENDING {
            return false;
        }
        let mut tid = self.next_tid.to_be_bytes();
        while self.pending.contains_key(&tid) {
            self.next_tid = self.next_tid.wrapping_add(1);
            tid = self.next_tid.to_be_bytes();
        }
        self.next_tid = self.next_tid.wrapping_add(1);
        self.pending.insert(tid, Pending { addr: to, sent: now, purpose });
        let msg =
            Message { tid: tid.to_vec(), version: Some(VERSION.to_vec()), ip: None, body: Body::Query(q) };
        self.send(to, &msg);
        true
    }

    fn ping_all(&mut self, nodes: Vec<NodeInfo>, now: Instant) {
        let id = self.id();
        for n in nodes {
            let already = self.pending.values().any(|p| p.addr == n.addr);
            if !already {
                self.query(n.addr, Query::Ping { id }, Purpose::Ping, now);
            }
        }
    }

    fn drive(&mut self, lid: LookupId, now: Instant) {
        let own = self.id();
        loop {
            let Some(run) = self.lookups.get_mut(&lid) else { return };
            if run.lookup.done() || now.saturating_duration_since(run.started) >= LOOKUP_DEADLINE {
                break;
            }
            let Some(addr) = run.lookup.next_query() else { return };
            let target = run.lookup.target();
            let q = match run.kind {
                LookupKind::FindNode => Query::FindNode { id: own, target },
                _ => Query::GetPeers { id: own, info_hash: target },
            };
            if !self.query(addr, q, Purpose::Lookup(lid), now)
                && let Some(run) = self.lookups.get_mut(&lid)
            {
                run.lookup.failed(addr);
            }
        }
        let Some(run) = self.lookups.remove(&lid) else { return };
        let closest = run.lookup.closest();
        let mut announced = 0;
        if let LookupKind::Announce(port) = run.kind {
            for (n, token) in &closest {
                let Some(token) = token.clone() else { continue };
                let q = Query::AnnouncePeer {
                    id: own,
                    info_hash: run.lookup.target(),
                    port: port.unwrap_or(0),
                    token,
                    implied_port: port.is_none(),
                };
                if self.query(n.addr, q, Purpose::Announce, now) {
                    announced += 1;
                }
            }
        }
        self.events.push_back(Event::LookupDone {
            lookup: lid,
            target: run.lookup.target(),
            closest: closest.into_iter().map(|(n, _)| n).collect(),
            announced,
        });
    }

    /// Handles one received datagram from `from`.
    pub fn handle(&mut self, from: SocketAddr, data: &[u8], now: Instant) {
        let SocketAddr::V4(from) = from else { return };
        if from.port() == 0 {
            return;
        }
        let msg = match Message::decode(data) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!("dht: {from}: {e}");
                if e.was_query
                    && let Some(tid) = e.tid
                {
                    let body = Body::Error { code: e.code, message: e.what.to_string() };
                    self.send(from, &Message { tid, version: Some(VERSION.to_vec()), ip: Some(from), body });
                }
                return;
            }
        };
        match msg.body {
            Body::Query(q) => self.on_query(from, msg.tid, q, now),
            Body::Response(r) => self.on_reply(from, &msg.tid, Ok(r), now),
            Body::Error { code, message } => {
                tracing::debug!("dht: {from} error {code}: {message}");
                self.on_reply(from, &msg.tid, Err(()), now)
            }
        }
    }

    fn on_query(&mut self, from: SocketAddrV4, tid: Vec<u8>, q: Query, now: Instant) {
        let own = self.id();
        match self.table.insert(NodeInfo { id: q.id(), addr: from }, false, now) {
            Insert::Ping(q) => self.ping_all(q, now),
            // A node that only queried us is questionable until it answers a query of ours.
            Insert::Added if self.table.get(&q.id()).is_some_and(|e| e.last_response.is_none()) => {
                self.ping_all(vec![NodeInfo { id: q.id(), addr: from }], now)
            }
            _ => {}
        }
        let reply =
            |body| Message { tid: tid.clone(), version: Some(VERSION.to_vec()), ip: Some(from), body };
        let body = match q {
            Query::Ping { .. } => Body::Response(Response { id: own, ..Default::default() }),
            Query::FindNode { target, .. } => Body::Response(Response {
                id: own,
                nodes: self.table.closest(&target, K, now),
                ..Default::default()
            }),
            Query::GetPeers { info_hash, .. } => Body::Response(Response {
                id: own,
                nodes: self.table.closest(&info_hash, K, now),
                values: self.store.peers(&info_hash, now),
                token: Some(self.tokens.issue(*from.ip())),
            }),
            Query::AnnouncePeer { info_hash, port, token, implied_port, .. } => {
                if !self.tokens.valid(*from.ip(), &token) {
                    Body::Error { code: ERR_PROTOCOL, message: "bad token".into() }
                } else {
                    let port = if implied_port { from.port() } else { port };
                    if self.store.announce(info_hash, SocketAddrV4::new(*from.ip(), port), now) {
                        Body::Response(Response { id: own, ..Default::default() })
                    } else {
                        Body::Error { code: ERR_SERVER, message: "peer store full".into() }
                    }
                }
            }
        };
        self.send(from, &reply(body));
    }

    fn on_reply(&mut self, from: SocketAddrV4, tid: &[u8], r: Result<Response, ()>, now: Instant) {
        let Ok(key) = <[u8; 2]>::try_from(tid) else { return };
        // Only the address we asked may answer (no spoofed replies to guessed transaction ids).
        if self.pending.get(&key).is_none_or(|p| p.addr != from) {
            return;
        }
        let p = self.pending.remove(&key).expect("checked above");
        if let Ok(resp) = &r
            && let Insert::Ping(q) = self.table.insert(NodeInfo { id: resp.id, addr: from }, true, now)
        {
            self.ping_all(q, now);
        }
        if let Purpose::Lookup(lid) = p.purpose {
            let Some(run) = self.lookups.get_mut(&lid) else { return };
            match &r {
                Ok(resp) => {
                    run.lookup.replied(from, resp);
                    if run.kind != LookupKind::FindNode && !resp.values.is_empty() {
                        self.events.push_back(Event::Peers {
                            lookup: lid,
                            info_hash: run.lookup.target(),
                            peers: resp.values.clone(),
                        });
                    }
                }
                Err(()) => run.lookup.failed(from),
            }
            self.drive(lid, now);
        }
    }

    /// Time passes: time out queries, rotate the token secret, expire peers, refresh stale
    /// buckets, end overdue lookups.
    pub fn tick(&mut self, now: Instant) {
        let expired: Vec<([u8; 2], Pending)> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.sent) >= QUERY_TIMEOUT)
            .map(|(k, p)| (*k, p.clone()))
            .collect();
        let mut touched = Vec::new();
        for (k, p) in expired {
            self.pending.remove(&k);
            let id = self.table.entries().find(|e| e.node.addr == p.addr).map(|e| e.node.id);
            if let Some(id) = id {
                self.table.failed(&id, now);
            }
            if let Purpose::Lookup(lid) = p.purpose
                && let Some(run) = self.lookups.get_mut(&lid)
            {
                run.lookup.failed(p.addr);
                touched.push(lid);
            }
        }
        let overdue: Vec<LookupId> = self
            .lookups
            .iter()
            .filter(|(_, r)| now.saturating_duration_since(r.started) >= LOOKUP_DEADLINE)
            .map(|(id, _)| *id)
            .collect();
        touched.extend(overdue);
        for lid in touched {
            self.drive(lid, now);
        }
        self.tokens.tick(now, rand::random);
        if now.saturating_duration_since(self.last_expiry) >= Duration::from_secs(60) {
            self.store.expire(now);
            self.last_expiry = now;
        }
        for target in self.table.stale_buckets(now, rand::random) {
            self.find_node(target, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dht::table::REFRESH;
    use std::net::Ipv4Addr;

    fn addr(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
    }

    /// Delivers every queued datagram between the nodes (addressed by port 1000+index) until the
    /// network is quiet.
    fn pump(nodes: &mut [Node], now: Instant) {
        for _ in 0..10_000 {
            let mut moved = false;
            for i in 0..nodes.len() {
                while let Some((to, data)) = nodes[i].poll_transmit() {
                    moved = true;
                    let j = usize::from(to.port() - 1000);
                    if let Some(n) = nodes.get_mut(j) {
                        n.handle(SocketAddr::V4(addr(1000 + i as u16)), &data, now);
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("network never went quiet");
    }

    fn id(n: usize) -> Id {
        let mut id: Id = rand::random();
        id[19] = n as u8;
        id
    }

    fn events(n: &mut Node) -> Vec<Event> {
        std::iter::from_fn(|| n.poll_event()).collect()
    }

    #[test]
    fn a_network_bootstraps_and_finds_announced_peers() {
        let now = Instant::now();
        let mut nodes: Vec<Node> = (0..30).map(|i| Node::new(id(i), [i as u8; 16], now)).collect();
        for i in 1..nodes.len() {
            nodes[i].bootstrap(&[addr(1000)], now);
            pump(&mut nodes, now);
        }
        // A second round lets early joiners learn about later ones.
        for n in nodes.iter_mut().skip(1) {
            let own = n.id();
            n.find_node(own, now);
        }
        pump(&mut nodes, now);
        let sizes: Vec<usize> = nodes.iter().map(|n| n.table().len()).collect();
        assert!(sizes.iter().all(|&s| s >= K / 2), "tables too small: {sizes:?}");
        let info_hash: Id = [0x42; 20];
        nodes[7].announce(info_hash, Some(6881), now);
        pump(&mut nodes, now);
        let done = events(&mut nodes[7]);
        assert!(
            done.iter().any(|e| matches!(e, Event::LookupDone { announced, .. } if *announced >= K)),
            "{done:?}"
        );
        nodes[21].get_peers(info_hash, now);
        pump(&mut nodes, now);
        let found: Vec<SocketAddrV4> = events(&mut nodes[21])
            .into_iter()
            .filter_map(|e| match e {
                Event::Peers { peers, info_hash: h, .. } if h == info_hash => Some(peers),
                _ => None,
            })
            .flatten()
            .collect();
        assert!(found.contains(&addr(6881)), "{found:?}");
    }

    /// The node's answer among what it sends (it may also ping the unverified querier).
    fn answer(n: &mut Node) -> Vec<u8> {
        let out: Vec<Vec<u8>> = std::iter::from_fn(|| n.poll_transmit()).map(|(_, d)| d).collect();
        let pings = out.iter().filter(|d| matches!(Message::decode(d).map(|m| m.body), Ok(Body::Query(_))));
        assert!(pings.count() <= 1);
        out.into_iter()
            .find(|d| !matches!(Message::decode(d).map(|m| m.body), Ok(Body::Query(_))))
            .expect("an answer")
    }

    #[test]
    fn implied_port_and_bad_tokens() {
        let now = Instant::now();
        let mut server = Node::new([1; 20], [9; 16], now);
        let from = SocketAddr::V4(addr(5555));
        let gp = Message {
            tid: b"aa".to_vec(),
            version: None,
            ip: None,
            body: Body::Query(Query::GetPeers { id: [2; 20], info_hash: [3; 20] }),
        };
        server.handle(from, &gp.encode(), now);
        let data = answer(&mut server);
        let Body::Response(r) = Message::decode(&data).unwrap().body else { panic!() };
        let token = r.token.unwrap();
        let ann = |token: Vec<u8>| Message {
            tid: b"bb".to_vec(),
            version: None,
            ip: None,
            body: Body::Query(Query::AnnouncePeer {
                id: [2; 20],
                info_hash: [3; 20],
                port: 1,
                token,
                implied_port: true,
            }),
        };
        server.handle(from, &ann(b"forged".to_vec()).encode(), now);
        let data = answer(&mut server);
        assert!(matches!(Message::decode(&data).unwrap().body, Body::Error { code: 203, .. }));
        // A token is bound to the address it was issued to.
        server.handle(
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 5555)),
            &ann(token.clone()).encode(),
            now,
        );
        let data = answer(&mut server);
        assert!(matches!(Message::decode(&data).unwrap().body, Body::Error { code: 203, .. }));
        server.handle(from, &ann(token).encode(), now);
        let data = answer(&mut server);
        assert!(matches!(Message::decode(&data).unwrap().body, Body::Response(_)));
        server.handle(from, &gp.encode(), now);
        let data = answer(&mut server);
        let Body::Response(r) = Message::decode(&data).unwrap().body else { panic!() };
        assert_eq!(r.values, vec![addr(5555)], "implied port: the UDP source port");
        // Unknown methods get 204 and the node keeps serving.
        server.handle(from, b"d1:ad2:id20:abcdefghij0123456789e1:q4:vote1:t2:xy1:y1:qe", now);
        let data = answer(&mut server);
        assert!(matches!(Message::decode(&data).unwrap().body, Body::Error { code: 204, .. }));
        while server.poll_transmit().is_some() {}
        server.handle(from, b"garbage", now);
        assert!(server.poll_transmit().is_none());
    }

    #[test]
    fn timeouts_fail_lookups_and_spoofed_replies_are_ignored() {
        let t0 = Instant::now();
        let mut n = Node::new([1; 20], [0; 16], t0);
        n.bootstrap(&[addr(7000)], t0);
        let (to, data) = n.poll_transmit().unwrap();
        assert_eq!(to, addr(7000));
        let q = Message::decode(&data).unwrap();
        let reply = Message {
            tid: q.tid,
            version: None,
            ip: None,
            body: Body::Response(Response { id: [5; 20], ..Default::default() }),
        };
        n.handle(SocketAddr::V4(addr(7001)), &reply.encode(), t0);
        assert_eq!(n.table().len(), 0, "reply from the wrong address ignored");
        n.tick(t0 + QUERY_TIMEOUT);
        assert!(
            matches!(events(&mut n).as_slice(), [Event::LookupDone { closest, .. }] if closest.is_empty())
        );
        // Stale buckets trigger a refresh lookup (which asks the remembered router).
        n.tick(t0 + REFRESH);
        assert_eq!(n.status(t0 + REFRESH).lookups, 1);
    }
}
