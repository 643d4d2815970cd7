//! Sixteen real Chord nodes on 127.0.0.1: put and get 1000 keys through random nodes, kill two
//! adjacent nodes (r = 3) and read every key back, then join four nodes and check that keys
//! move to their new owners and stay readable.

use appnet_chord::client::Client;
use appnet_chord::server::NodeHandle;
use appnet_chord::sim::Rng;
use appnet_chord::{ChordConfig, ChordServer, Id, NodeRef};
use appnet_netkit::Shutdown;
use appnet_netkit::harness::{self, Running, any_loopback};
use std::time::Duration;

struct Peer {
    me: NodeRef,
    handle: NodeHandle,
    killer: Shutdown,
    running: Option<Running>,
}

fn config(join: Option<std::net::SocketAddr>) -> ChordConfig {
    ChordConfig {
        listen: any_loopback(),
        join,
        stabilize_ms: 40,
        fix_fingers_ms: 50,
        check_predecessor_ms: 40,
        rpc_timeout_ms: 400,
        ..ChordConfig::default()
    }
}

async fn start(join: Option<std::net::SocketAddr>) -> Peer {
    let server = ChordServer::bind(config(join)).await.expect("bind");
    let (me, handle, killer) = (server.node_ref(), server.handle(), server.killer());
    let running = harness::start(server);
    harness::wait_tcp(running.addr(), Duration::from_secs(5)).await.expect("listening");
    Peer { me, handle, killer, running: Some(running) }
}

/// Whether every live peer's successor and predecessor are the true ones.
fn converged(peers: &[&Peer]) -> bool {
    let mut ring: Vec<NodeRef> = peers.iter().map(|p| p.me).collect();
    ring.sort_by_key(|n| n.id);
    let n = ring.len();
    peers.iter().all(|p| {
        let node = p.handle.lock().unwrap();
        let pos = ring.iter().position(|r| r.id == p.me.id).unwrap();
        let rt = node.routing();
        let want: Vec<Id> = (1..=3.min(n - 1)).map(|k| ring[(pos + k) % n].id).collect();
        let have: Vec<Id> = rt.succs.iter().map(|s| s.id).collect();
        have == want && rt.pred.map(|p| p.id) == Some(ring[(pos + n - 1) % n].id)
    })
}

async fn wait_converged(peers: &[&Peer], what: &str) {
    let t0 = std::time::Instant::now();
    let ok = harness::wait_until(Duration::from_secs(30), Duration::from_millis(20), || async {
        converged(peers)
    })
    .await;
    assert!(ok, "ring did not converge: {what}");
    eprintln!("converged ({what}) in {:?}", t0.elapsed());
}

fn key(i: usize) -> Vec<u8> {
    format!("key-{i}").into_bytes()
}

fn value(i: usize) -> Vec<u8> {
    format!("value of key {i}").into_bytes()
}

/// Reads keys 0..n, each through a random peer, eight at a time.
async fn read_all(peers: &[&Peer], rng: &mut Rng, n: usize) {
    let t0 = std::time::Instant::now();
    let mut clients = Vec::new();
    for p in peers {
        clients.push(Client::connect(p.me.addr, Duration::from_secs(2)).await.expect("connect"));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let client = clients[rng.below(clients.len())].clone();
        tasks.spawn(async move {
            let got = client.get(&key(i)).await.unwrap_or_else(|e| panic!("get key-{i}: {e}"));
            assert_eq!(got.value.as_deref(), Some(&value(i)[..]), "key-{i}");
        });
        if tasks.len() >= 8 {
            tasks.join_next().await.expect("task").expect("read");
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("read");
    }
    eprintln!("read {n} keys in {:?}", t0.elapsed());
}

/// The number of live peers holding key i.
fn copies(peers: &[&Peer], i: usize) -> usize {
    peers.iter().filter(|p| p.handle.lock().unwrap().store().get(&key(i)).is_some()).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_nodes_survive_failures_and_joins() {
    const KEYS: usize = 1000;
    let mut rng = Rng::new(7);
    let mut peers = vec![start(None).await];
    let first = peers[0].me.addr;
    for _ in 1..16 {
        peers.push(start(Some(first)).await);
    }
    wait_converged(&peers.iter().collect::<Vec<_>>(), "16 nodes").await;

    // Put 1000 keys through random nodes, read each back through another random node.
    let t0 = std::time::Instant::now();
    let mut clients = Vec::new();
    for p in &peers {
        clients.push(Client::connect(p.me.addr, Duration::from_secs(2)).await.expect("connect"));
    }
    let mut hops = 0;
    for i in 0..KEYS {
        let client = &clients[rng.below(clients.len())];
        let (_, lookup) = client.put(&key(i), &value(i)).await.expect("put");
        hops += lookup.hops;
    }
    eprintln!("put {KEYS} keys in {:?}, {hops} hops", t0.elapsed());
    let live: Vec<&Peer> = peers.iter().collect();
    read_all(&live, &mut rng, KEYS).await;
    // Recursive lookups (forwarded node to node) find the same owners as iterative ones.
    for i in 0..50 {
        let client = clients[rng.below(clients.len())].clone();
        let id = client.key_id(&key(i));
        let iterative = client.lookup(id).await.expect("iterative lookup");
        let recursive = client.recursive(true).lookup(id).await.expect("recursive lookup");
        assert_eq!(iterative.succs[0], recursive.succs[0], "owner of key-{i}");
        assert!(recursive.hops <= 8, "{} hops", recursive.hops);
    }
    assert!(hops as usize <= KEYS * 8, "lookups took {hops} hops for {KEYS} puts");

    // Every key on three nodes before anything fails.
    let ok = harness::wait_until(Duration::from_secs(20), Duration::from_millis(50), || async {
        (0..KEYS).all(|i| copies(&live, i) >= 3)
    })
    .await;
    assert!(ok, "keys were not replicated on 3 nodes");

    // Kill two adjacent nodes abruptly.
    let mut order: Vec<usize> = (0..peers.len()).collect();
    order.sort_by_key(|&i| peers[i].me.id);
    let (a, b) = (order[5], order[6]);
    for &k in &[a, b] {
        peers[k].killer.trigger();
        if let Some(r) = peers[k].running.take() {
            let _ = r.stop().await;
        }
    }
    let live: Vec<&Peer> =
        peers.iter().enumerate().filter(|(i, _)| *i != a && *i != b).map(|(_, p)| p).collect();
    wait_converged(&live, "after killing two adjacent nodes").await;
    read_all(&live, &mut rng, KEYS).await;

    // Four nodes join; the keys they are now responsible for move to them.
    let mut joined = Vec::new();
    for _ in 0..4 {
        let via = live[rng.below(live.len())].me.addr;
        joined.push(start(Some(via)).await);
    }
    let mut all = live.clone();
    all.extend(joined.iter());
    wait_converged(&all, "after four joins").await;
    let owned_by_new = |i: usize| {
        let id = Id::hash(&key(i), 160);
        let mut ring: Vec<NodeRef> = all.iter().map(|p| p.me).collect();
        ring.sort_by_key(|n| n.id);
        let owner = ring[ring.partition_point(|n| n.id < id) % ring.len()];
        joined.iter().find(|p| p.me.id == owner.id)
    };
    let moved: Vec<usize> = (0..KEYS).filter(|&i| owned_by_new(i).is_some()).collect();
    assert!(!moved.is_empty(), "no key belongs to the new nodes");
    let ok = harness::wait_until(Duration::from_secs(20), Duration::from_millis(50), || async {
        moved.iter().all(|&i| owned_by_new(i).unwrap().handle.lock().unwrap().store().get(&key(i)).is_some())
    })
    .await;
    assert!(ok, "keys did not move to the joining nodes");
    read_all(&all, &mut rng, KEYS).await;

    for p in peers.iter_mut().chain(joined.iter_mut()) {
        if let Some(r) = p.running.take() {
            let _ = r.stop().await;
        }
    }
}

#[tokio::test]
async fn rejects_a_request_from_another_ring_and_a_bad_version() {
    use appnet_chord::wire::{self, ErrorCode, Request, Response};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let peer = start(None).await;
    let addr = peer.me.addr;
    let resp = appnet_chord::client::rpc(
        addr,
        6,
        &Request::FindSuccessor { id: Id::from_u64(5), avoid: vec![] },
        Duration::from_secs(2),
    )
    .await
    .expect("answer");
    assert!(matches!(resp.1, Response::Error { code: ErrorCode::WrongRing, .. }), "{resp:?}");
    // Version 9 gets a clear error and the node keeps serving.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0, 0, 0, 3, 9, 0, 1]).await.unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await.unwrap();
    match wire::decode_response(&body).unwrap().1 {
        Response::Error { code: ErrorCode::BadVersion, message } => {
            assert!(message.contains("version 9"), "{message}")
        }
        other => panic!("unexpected {other:?}"),
    }
    let client = Client::connect(addr, Duration::from_secs(2)).await.expect("still serving");
    client.put(b"k", b"v").await.expect("put");
    assert_eq!(client.get(b"k").await.unwrap().value.as_deref(), Some(&b"v"[..]));
    // Too-large frames are refused without reading them.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    s.read_exact(&mut len).await.unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await.unwrap();
    assert!(matches!(
        wire::decode_response(&body).unwrap().1,
        Response::Error { code: ErrorCode::TooLarge, .. }
    ));
    drop(peer);
}

/// Counter `name` of a `Stats` answer.
fn counter(stats: &[(String, u64)], name: &str) -> u64 {
    stats.iter().find(|(k, _)| k == name).map(|(_, v)| *v).unwrap_or_else(|| panic!("no counter {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_are_served_and_a_killed_peer_still_fails_fast_through_the_pool() {
    // Six nodes: with r = 3, a ring of r + 1 nodes or fewer can keep relearning a dead node from
    // its own successor lists for seconds (every list wraps around the whole ring).
    let mut peers = vec![start(None).await];
    let first = peers[0].me.addr;
    for _ in 1..6 {
        peers.push(start(Some(first)).await);
    }
    wait_converged(&peers.iter().collect::<Vec<_>>(), "6 nodes").await;
    let client = Client::connect(first, Duration::from_secs(2)).await.expect("connect");
    for i in 0..20 {
        client.put(&key(i), &value(i)).await.expect("put");
    }
    // Every node reuses its pooled connections for its own RPCs and serves its counters. A node
    // that joined last may have opened one connection per peer and reused each only once so far:
    // its stabilization rounds (every 40 ms) reuse them, so wait a bounded time for that.
    let mut items = 0;
    for p in &peers {
        let mut stats = client.stats(p.me.addr).await.expect("stats");
        let t0 = std::time::Instant::now();
        let reuses_more =
            |s: &[(String, u64)]| counter(s, "connections_out_reused") > counter(s, "connections_out_opened");
        while !reuses_more(&stats) && t0.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(40)).await;
            stats = client.stats(p.me.addr).await.expect("stats");
        }
        assert!(reuses_more(&stats), "most RPCs should reuse a connection: {stats:?}");
        assert_eq!(counter(&stats, "successors"), 3);
        items += counter(&stats, "items");
    }
    assert!(items >= 20, "{items} items on the ring");
    // The client holds a pooled connection to the victim; once it is killed, the next RPC finds
    // that connection dead and the fresh one refused: an error at once, not after the client's
    // 2 s timeout (1 s leaves a loaded machine room and still tells the two apart).
    let victim = peers.pop().unwrap();
    client.info(victim.me.addr).await.expect("info before the kill");
    victim.killer.trigger();
    let _ = victim.running.unwrap().stop().await;
    let t0 = std::time::Instant::now();
    assert!(client.info(victim.me.addr).await.is_err());
    assert!(t0.elapsed() < Duration::from_secs(1), "took {:?}", t0.elapsed());
    // The nodes' own pooled connections to it fail the same way: the ring repairs itself.
    wait_converged(&peers.iter().collect::<Vec<_>>(), "after the kill").await;
    let unreachable: u64 = {
        let mut sum = 0;
        for p in &peers {
            sum += counter(&client.stats(p.me.addr).await.expect("stats"), "rpc_unreachable");
        }
        sum
    };
    assert!(unreachable > 0, "no node noticed the dead peer");
    for i in 0..20 {
        assert_eq!(client.get(&key(i)).await.expect("get").value.as_deref(), Some(&value(i)[..]));
    }
    for p in peers.iter_mut() {
        if let Some(r) = p.running.take() {
            let _ = r.stop().await;
        }
    }
}
