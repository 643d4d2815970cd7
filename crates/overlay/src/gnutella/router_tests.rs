use super::*;

/// Shares a fixed list of file names (size 1000, digest from the index).
struct Names(Vec<&'static str>);

impl LocalShares for Names {
    fn search(&self, q: &Query, max: usize) -> Vec<HitResult> {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                let words = crate::index::keywords(n);
                let k = crate::index::keywords(&q.criteria);
                !k.is_empty() && k.iter().all(|w| words.contains(w))
            })
            .take(max)
            .map(|(i, n)| HitResult { index: i as u32, size: 1000, name: n.to_string(), ext: vec![] })
            .collect()
    }
    fn totals(&self) -> (u32, u32) {
        (self.0.len() as u32, self.0.len() as u32)
    }
    fn qrp_table(&self, bits: u8) -> QrpTable {
        QrpTable::from_names(bits, self.0.iter().copied(), [])
    }
}

fn router(ultrapeer: bool, names: Vec<&'static str>) -> Router {
    let cfg = RouterConfig {
        ultrapeer,
        addr: SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 9), 6346),
        servent: Guid([9; 16]),
        ..RouterConfig::default()
    };
    Router::new(cfg, Box::new(Names(names)))
}

fn query(guid: u8, ttl: u8, hops: u8, text: &str) -> Descriptor {
    Descriptor {
        guid: Guid([guid; 16]),
        ttl,
        hops,
        payload: Payload::Query(Query { flags: 0, criteria: text.into(), ext: vec![] }),
    }
}

fn sends(actions: &[Action]) -> Vec<(NeighbourId, &Descriptor)> {
    actions.iter().filter_map(|a| if let Action::Send(n, d) = a { Some((*n, d)) } else { None }).collect()
}

fn targets(actions: &[Action]) -> Vec<NeighbourId> {
    let mut v: Vec<_> = sends(actions).into_iter().map(|(n, _)| n).collect();
    v.sort();
    v
}

fn hit(guid: u8, servent: u8, ttl: u8, hops: u8) -> Descriptor {
    Descriptor {
        guid: Guid([guid; 16]),
        ttl,
        hops,
        payload: Payload::QueryHit(QueryHit {
            port: 1,
            ip: Ipv4Addr::new(10, 0, 0, servent),
            speed: 1,
            results: vec![HitResult { index: 0, size: 1, name: "x".into(), ext: vec![] }],
            qhd: None,
            servent: Guid([servent; 16]),
        }),
    }
}

fn peers(r: &mut Router, ids: &[NeighbourId], role: Role, now: Instant) {
    for &id in ids {
        r.add_neighbour(id, role, now);
    }
}

#[test]
fn query_floods_to_other_peers_with_ttl_and_hops_updated() {
    let now = Instant::now();
    let mut r = router(false, vec![]);
    peers(&mut r, &[1, 2, 3], Role::Peer, now);
    let out = r.on_descriptor(1, query(7, 5, 1, "hey jude"), now);
    assert_eq!(targets(&out), vec![2, 3], "not back to the sender");
    for (_, d) in sends(&out) {
        assert_eq!((d.ttl, d.hops), (4, 2));
        assert_eq!(d.guid, Guid([7; 16]));
    }
}

#[test]
fn duplicates_are_suppressed_by_guid() {
    let now = Instant::now();
    let mut r = router(false, vec![]);
    peers(&mut r, &[1, 2, 3], Role::Peer, now);
    assert_eq!(targets(&r.on_descriptor(1, query(7, 5, 0, "a"), now)).len(), 2);
    assert!(r.on_descriptor(2, query(7, 5, 0, "a"), now).is_empty());
    assert_eq!(r.stats().duplicates, 1);
}

#[test]
fn ttl_rules() {
    let now = Instant::now();
    let mut r = router(false, vec!["hey jude.mp3"]);
    peers(&mut r, &[1, 2], Role::Peer, now);
    // TTL 1: answered locally, not forwarded.
    let out = r.on_descriptor(1, query(1, 1, 3, "jude"), now);
    assert_eq!(targets(&out), vec![1], "only the QueryHit back");
    assert!(matches!(sends(&out)[0].1.payload, Payload::QueryHit(_)));
    // TTL + hops above 7 is capped: TTL 7 hops 3 travels on as TTL 3 hops 4.
    let out = r.on_descriptor(1, query(2, 7, 3, "nothing"), now);
    assert_eq!((sends(&out)[0].1.ttl, sends(&out)[0].1.hops), (3, 4));
    // TTL 0 and hops ≥ 7 are dropped.
    assert!(r.on_descriptor(1, query(3, 0, 1, "x"), now).is_empty());
    assert!(r.on_descriptor(1, query(4, 1, 7, "x"), now).is_empty());
    assert_eq!(r.stats().ttl_dropped, 2);
}

#[test]
fn local_hits_answer_along_the_reverse_path() {
    let now = Instant::now();
    let mut r = router(false, vec!["Hey Jude.mp3", "Yesterday.mp3"]);
    peers(&mut r, &[1, 2], Role::Peer, now);
    let out = r.on_descriptor(1, query(5, 4, 2, "HEY jude"), now);
    let (to, d) = sends(&out).into_iter().find(|(_, d)| matches!(d.payload, Payload::QueryHit(_))).unwrap();
    assert_eq!(to, 1);
    assert_eq!((d.guid, d.hops, d.ttl), (Guid([5; 16]), 0, 4));
    let Payload::QueryHit(h) = &d.payload else { unreachable!() };
    assert_eq!(h.results.len(), 1);
    assert_eq!(h.results[0].name, "Hey Jude.mp3");
    assert_eq!((h.ip, h.port, h.servent), (Ipv4Addr::new(127, 0, 0, 9), 6346, Guid([9; 16])));
    assert_eq!(r.stats().local_hits, 1);
}

#[test]
fn query_hits_route_back_and_local_ones_are_delivered() {
    let now = Instant::now();
    let mut r = router(false, vec![]);
    peers(&mut r, &[1, 2, 3], Role::Peer, now);
    r.on_descriptor(1, query(7, 5, 0, "a"), now);
    let out = r.on_descriptor(3, hit(7, 42, 3, 1), now);
    assert_eq!(targets(&out), vec![1]);
    assert_eq!((sends(&out)[0].1.ttl, sends(&out)[0].1.hops), (2, 2));
    // Unknown GUID: nowhere to go.
    assert!(r.on_descriptor(3, hit(99, 42, 3, 1), now).is_empty());
    assert_eq!(r.stats().unroutable, 1);
    // Our own query: the hit is delivered, not forwarded.
    let (g, out) = r.local_query("hey jude", &[], 7, now);
    assert_eq!(targets(&out), vec![1, 2, 3]);
    assert!(sends(&out).iter().all(|(_, d)| d.ttl == 7 && d.hops == 0));
    let mut h = hit(0, 43, 3, 2);
    h.guid = g;
    let out = r.on_descriptor(2, h, now);
    assert!(matches!(&out[..], [Action::Deliver { query, hops: 2, .. }] if *query == g));
    // A hit that has run out of TTL is not forwarded.
    r.on_descriptor(1, query(8, 5, 0, "a"), now);
    assert!(r.on_descriptor(3, hit(8, 42, 1, 5), now).is_empty());
}

#[test]
fn lost_neighbour_takes_its_routes() {
    let now = Instant::now();
    let mut r = router(false, vec![]);
    peers(&mut r, &[1, 2], Role::Peer, now);
    r.on_descriptor(1, query(7, 5, 0, "a"), now);
    r.remove_neighbour(1);
    assert!(r.on_descriptor(2, hit(7, 1, 3, 1), now).is_empty());
    assert!(r.on_descriptor(1, query(9, 5, 0, "a"), now).is_empty(), "unknown neighbour ignored");
}

#[test]
fn ping_answered_with_own_and_cached_pongs() {
    let now = Instant::now();
    let mut r = router(false, vec!["a"]);
    peers(&mut r, &[1, 2, 3], Role::Peer, now);
    // Fill the cache: our refresh ping, and pongs for it from neighbour 2.
    let out = r.local_ping(7, now);
    let g = sends(&out)[0].1.guid;
    for i in 0..3u8 {
        let pong = Pong {
            port: 6000 + u16::from(i),
            ip: Ipv4Addr::new(10, 0, 0, i),
            files: 1,
            kbytes: 1,
            ext: vec![],
        };
        let out =
            r.on_descriptor(2, Descriptor { guid: g, ttl: 6, hops: i, payload: Payload::Pong(pong) }, now);
        assert!(matches!(&out[..], [Action::Host(a)] if a.port() == 6000 + u16::from(i)));
    }
    assert_eq!(r.hosts().count(), 3);
    // A keep-alive ping (TTL 1): only our pong.
    let ka = Descriptor { guid: Guid([1; 16]), ttl: 1, hops: 0, payload: Payload::Ping(Ping::default()) };
    let out = r.on_descriptor(1, ka, now);
    assert_eq!(sends(&out).len(), 1);
    let Payload::Pong(p) = &sends(&out)[0].1.payload else { panic!() };
    assert_eq!((p.ip, p.port, p.files), (Ipv4Addr::new(127, 0, 0, 9), 6346, 1));
    // A TTL-7 ping: our pong plus the three cached, and it is not forwarded (pong caching).
    let ping = Descriptor { guid: Guid([2; 16]), ttl: 7, hops: 0, payload: Payload::Ping(Ping::default()) };
    let out = r.on_descriptor(1, ping, now);
    assert_eq!(targets(&out), vec![1, 1, 1, 1]);
    let hops: Vec<u8> = sends(&out).iter().map(|(_, d)| d.hops).collect();
    assert_eq!(hops, vec![0, 3, 2, 1]);
}

#[test]
fn pings_flood_and_pongs_route_back_without_caching() {
    let now = Instant::now();
    let mut r = router(false, vec![]);
    r.cfg.pong_caching = false;
    peers(&mut r, &[1, 2, 3], Role::Peer, now);
    let ping = Descriptor { guid: Guid([2; 16]), ttl: 3, hops: 0, payload: Payload::Ping(Ping::default()) };
    let out = r.on_descriptor(1, ping, now);
    assert_eq!(targets(&out), vec![1, 2, 3], "own pong to 1, ping to 2 and 3");
    let pong = Pong { port: 1, ip: Ipv4Addr::new(10, 0, 0, 1), files: 0, kbytes: 0, ext: vec![] };
    let out = r.on_descriptor(
        2,
        Descriptor { guid: Guid([2; 16]), ttl: 2, hops: 0, payload: Payload::Pong(pong) },
        now,
    );
    assert_eq!(targets(&out), vec![1]);
}

#[test]
fn push_follows_the_servent_route() {
    let now = Instant::now();
    let mut r = router(false, vec![]);
    peers(&mut r, &[1, 2], Role::Peer, now);
    r.on_descriptor(1, query(7, 5, 0, "a"), now);
    r.on_descriptor(2, hit(7, 42, 3, 1), now); // servent [42;16] is behind neighbour 2
    let push = |guid: u8, servent: u8| Descriptor {
        guid: Guid([guid; 16]),
        ttl: 7,
        hops: 0,
        payload: Payload::Push(Push {
            servent: Guid([servent; 16]),
            index: 3,
            ip: Ipv4Addr::LOCALHOST,
            port: 1,
            ext: vec![],
        }),
    };
    assert_eq!(targets(&r.on_descriptor(1, push(50, 42), now)), vec![2]);
    assert!(r.on_descriptor(1, push(50, 42), now).is_empty(), "duplicate push");
    assert!(r.on_descriptor(1, push(51, 77), now).is_empty(), "no route");
    let out = r.on_descriptor(1, push(52, 9), now);
    assert!(matches!(&out[..], [Action::PushRequest(p)] if p.index == 3), "addressed to us");
    // Our own push goes the same way.
    assert_eq!(targets(&r.local_push(Guid([42; 16]), 1, now)), vec![2]);
    assert!(r.local_push(Guid([77; 16]), 1, now).is_empty());
}

#[test]
fn rate_limit_drops_then_disconnects() {
    let now = Instant::now();
    let mut r = router(false, vec![]);
    r.cfg.query_burst = 5;
    r.cfg.max_violations = 3;
    peers(&mut r, &[1, 2], Role::Peer, now);
    let mut forwarded = 0;
    let mut dropped = false;
    for i in 0..10u8 {
        let out = r.on_descriptor(1, query(100 + i, 3, 0, "a"), now);
        forwarded += targets(&out).len();
        dropped |= out.iter().any(|a| matches!(a, Action::Drop(1, _)));
    }
    assert_eq!(forwarded, 5);
    assert!(dropped);
    assert_eq!(r.stats().rate_limited, 5);
    // Tokens come back with time.
    let later = now + Duration::from_secs(1);
    assert_eq!(targets(&r.on_descriptor(1, query(200, 3, 0, "a"), later)), vec![2]);
}

#[test]
fn ultrapeer_routes_to_leaves_by_qrp() {
    let now = Instant::now();
    let mut up = router(true, vec![]);
    peers(&mut up, &[1, 2], Role::Ultrapeer, now);
    peers(&mut up, &[10, 11, 12], Role::Leaf, now);
    // Leaf 10 shares Hey Jude, leaf 11 Yesterday, leaf 12 has not sent a table.
    let mut leaf = router(false, vec!["Hey Jude.mp3"]);
    let msgs = leaf.add_neighbour(1000, Role::Ultrapeer, now);
    assert!(msgs.len() > 1, "a leaf sends RESET + PATCH to its ultrapeer at once");
    for (_, d) in sends(&msgs) {
        up.on_descriptor(10, d.clone(), now);
    }
    let mut leaf2 = router(false, vec!["Yesterday.mp3"]);
    for (_, d) in sends(&leaf2.add_neighbour(1000, Role::Ultrapeer, now)) {
        up.on_descriptor(11, d.clone(), now);
    }
    assert!(up.leaf_has_table(10) && up.leaf_has_table(11) && !up.leaf_has_table(12));
    let out = up.on_descriptor(1, query(7, 3, 1, "hey jude"), now);
    assert_eq!(targets(&out), vec![2, 10, 12]);
    for (to, d) in sends(&out) {
        match to {
            2 => assert_eq!((d.ttl, d.hops), (2, 2)),
            _ => assert_eq!((d.ttl, d.hops), (1, 2), "leaves get the last hop"),
        }
    }
    assert_eq!(up.stats().qrp_filtered, 1);
    // With TTL 1 left the query still reaches matching leaves, but no ultrapeer.
    assert_eq!(targets(&up.on_descriptor(1, query(8, 1, 5, "yesterday"), now)), vec![11, 12]);
    // A leaf's query goes to every ultrapeer and to other matching leaves.
    assert_eq!(targets(&up.on_descriptor(10, query(9, 4, 0, "jude"), now)), vec![1, 2, 12]);
    // The leaf answers but never forwards.
    peers(&mut leaf, &[1001], Role::Ultrapeer, now);
    let out = leaf.on_descriptor(1000, query(9, 4, 1, "jude"), now);
    assert_eq!(targets(&out), vec![1000]);
    // A leaf's own query goes to its ultrapeers.
    let (_, out) = leaf2.local_query("jude", &[], 4, now);
    assert_eq!(targets(&out), vec![1000]);
}

#[test]
fn broken_qrp_leaf_gets_everything() {
    let now = Instant::now();
    let mut up = router(true, vec![]);
    peers(&mut up, &[1], Role::Ultrapeer, now);
    peers(&mut up, &[10], Role::Leaf, now);
    let bad = Descriptor {
        guid: Guid([3; 16]),
        ttl: 1,
        hops: 0,
        payload: Payload::RouteTable(super::super::wire::RouteTableUpdate::Patch {
            seq_no: 1,
            seq_size: 1,
            compressor: 1,
            entry_bits: 4,
            data: vec![0x78, 0x9c],
        }),
    };
    up.on_descriptor(10, bad, now);
    assert_eq!(up.stats().qrp_errors, 1);
    assert_eq!(targets(&up.on_descriptor(1, query(7, 3, 1, "anything"), now)), vec![10]);
}

#[test]
fn tick_keepalive_and_idle() {
    let now = Instant::now();
    let mut r = router(false, vec![]);
    peers(&mut r, &[1, 2], Role::Peer, now);
    let first = r.tick(now);
    assert_eq!(targets(&first), vec![1, 2], "pong-cache refresh ping");
    let t1 = now + Duration::from_secs(31);
    r.on_descriptor(1, query(1, 1, 0, "x"), t1);
    let out = r.tick(t1);
    let ka: Vec<_> = sends(&out).into_iter().filter(|(_, d)| d.ttl == 1).map(|(n, _)| n).collect();
    assert_eq!(ka, vec![1, 2]);
    let t2 = now + Duration::from_secs(125);
    let out = r.tick(t2);
    let dropped: Vec<_> =
        out.iter().filter_map(|a| if let Action::Drop(n, _) = a { Some(*n) } else { None }).collect();
    assert_eq!(dropped, vec![2], "neighbour 1 spoke at t1, 2 never did");
}

#[test]
fn bye_closes_and_unknown_is_counted() {
    let now = Instant::now();
    let mut r = router(false, vec![]);
    peers(&mut r, &[1], Role::Peer, now);
    let bye = Descriptor {
        guid: Guid([1; 16]),
        ttl: 1,
        hops: 0,
        payload: Payload::Bye(Bye { code: 200, message: "done".into() }),
    };
    assert!(matches!(&r.on_descriptor(1, bye, now)[..], [Action::Drop(1, m)] if m.contains("200")));
    let unk = Descriptor {
        guid: Guid([2; 16]),
        ttl: 1,
        hops: 0,
        payload: Payload::Unknown { ptype: 0x31, data: vec![] },
    };
    assert!(r.on_descriptor(1, unk, now).is_empty());
    assert_eq!(r.stats().unknown, 1);
}

#[test]
fn share_index_answers_by_keyword_and_urn() {
    use appnet_netkit::harness::TempDir;
    let dir = TempDir::new("overlay-router-shares");
    std::fs::write(dir.path().join("Hey Jude.mp3"), b"na na na").unwrap();
    let idx = crate::index::ShareIndex::scan(dir.path()).unwrap();
    let sha = idx.files()[0].sha1;
    let by_kw = LocalShares::search(&idx, &Query { flags: 0, criteria: "jude".into(), ext: vec![] }, 10);
    assert_eq!(by_kw.len(), 1);
    assert_eq!(by_kw[0].sha1(), Some(sha));
    let urn = Query {
        flags: 0,
        criteria: String::new(),
        ext: vec![Extension::Urn(super::super::base32::sha1_urn(&sha))],
    };
    assert_eq!(LocalShares::search(&idx, &urn, 10).len(), 1);
    assert!(idx.qrp_table(16).matches_query(&urn));
    assert_eq!(idx.totals(), (1, 0));
}
