//! The DHT over real UDP sockets: nodes join through a first node, one announces a torrent, and
//! another finds that peer with get_peers; garbage datagrams get a KRPC error and the node keeps
//! serving.

use appnet_netkit::harness;
use appnet_torrent::config::DhtConfig;
use appnet_torrent::dht::krpc::{Body, Message, Query};
use appnet_torrent::dht::{Dht, DhtHandle};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

async fn node(bootstrap: Option<SocketAddr>) -> (harness::Running, DhtHandle) {
    node_with(bootstrap.into_iter().map(|a| a.to_string()).collect(), None).await
}

async fn node_with(bootstrap: Vec<String>, state_file: Option<PathBuf>) -> (harness::Running, DhtHandle) {
    let cfg = DhtConfig { listen: "127.0.0.1:0".parse().unwrap(), bootstrap, status_secs: 0, state_file };
    let dht = Dht::bind(&cfg).await.unwrap();
    let h = dht.handle();
    (harness::start(dht), h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announce_then_get_peers_across_nodes() {
    let (first, h0) = node(None).await;
    let mut others = Vec::new();
    for _ in 0..4 {
        others.push(node(Some(first.addr())).await);
    }
    let joined = harness::wait_until(Duration::from_secs(10), Duration::from_millis(100), || async {
        h0.status().await.is_some_and(|s| s.nodes >= 4)
    })
    .await;
    assert!(joined, "nodes did not join: {:?}", h0.status().await);
    let info_hash = [0x5a; 20];
    // Announce from node 1 (port 4242), then look the torrent up from node 3.
    let mut rx = others[1].1.lookup(info_hash, Some(4242)).await;
    tokio::time::timeout(Duration::from_secs(10), async { while rx.recv().await.is_some() {} })
        .await
        .unwrap();
    let want: SocketAddr = "127.0.0.1:4242".parse().unwrap();
    let found = harness::wait_until(Duration::from_secs(10), Duration::from_millis(200), || async {
        let mut rx = others[3].1.lookup(info_hash, None).await;
        let mut peers = Vec::new();
        while let Ok(Some(b)) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            peers.extend(b);
        }
        peers.contains(&want)
    })
    .await;
    assert!(found, "announced peer not found");
    // The announce_peer queries go out as the lookup ends, unacknowledged: node 3 may have found
    // the peer on another node before the first one has stored it.
    let stored = harness::wait_until(Duration::from_secs(10), Duration::from_millis(50), || async {
        h0.status().await.is_some_and(|s| s.torrents >= 1)
    })
    .await;
    assert!(stored, "the first node stores the announce: {:?}", h0.status().await);

    // Garbage and unknown methods: KRPC errors, and the node still answers a ping.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = [0u8; 2048];
    sock.send_to(b"d1:ad2:id20:abcdefghij0123456789e1:q4:vote1:t2:xy1:y1:qe", first.addr()).await.unwrap();
    let (n, _) =
        tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf)).await.unwrap().unwrap();
    assert!(matches!(Message::decode(&buf[..n]).unwrap().body, Body::Error { code: 204, .. }));
    sock.send_to(&[0xff; 3000], first.addr()).await.unwrap();
    let ping = Message {
        tid: b"pp".to_vec(),
        version: None,
        ip: None,
        body: Body::Query(Query::Ping { id: [1; 20] }),
    };
    sock.send_to(&ping.encode(), first.addr()).await.unwrap();
    let reply = loop {
        let (n, _) =
            tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf)).await.unwrap().unwrap();
        let m = Message::decode(&buf[..n]).unwrap();
        if m.tid == b"pp" {
            break m;
        }
    };
    assert!(matches!(reply.body, Body::Response(_)));

    for (r, _) in others {
        r.stop().await.unwrap();
    }
    first.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_name_that_does_not_resolve_holds_back_neither_the_node_nor_the_other_routers() {
    let (first, h0) = node(None).await;
    // `.invalid` never resolves (RFC 6761); with no DNS reachable the lookup may also hang.
    let routers = vec!["router.invalid:6881".to_string(), first.addr().to_string()];
    let (second, h1) = node_with(routers, None).await;
    let joined = harness::wait_until(Duration::from_secs(10), Duration::from_millis(100), || async {
        h0.status().await.is_some_and(|s| s.nodes >= 1)
    })
    .await;
    assert!(joined, "bootstrapped through the router that resolves: {:?}", h0.status().await);
    // The node answers at once while names are being looked up (held back by a hanging lookup,
    // it would wait for the system resolver's timeout, 5 s or more, or the node's 10 s limit:
    // 2 s still tells the two apart on a loaded machine).
    let status = tokio::time::timeout(Duration::from_secs(2), h1.status()).await;
    assert!(status.is_ok_and(|s| s.is_some()), "status answered promptly");
    second.stop().await.unwrap();
    first.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_keeps_its_id_and_rejoins_without_routers() {
    let dir = harness::TempDir::new("dht-restart");
    let state = dir.join("dht.dat");
    let (first, _) = node(None).await;
    let (second, h1) = node_with(vec![first.addr().to_string()], Some(state.clone())).await;
    let joined = harness::wait_until(Duration::from_secs(10), Duration::from_millis(100), || async {
        h1.status().await.is_some_and(|s| s.good >= 1)
    })
    .await;
    assert!(joined, "joined through the router: {:?}", h1.status().await);
    let id = h1.status().await.unwrap().id;
    second.stop().await.unwrap();
    let saved = appnet_torrent::dht::state::SavedState::load(&state).unwrap().expect("saved at shutdown");
    assert_eq!(saved.id, id);
    assert!(saved.nodes.iter().any(|n| SocketAddr::V4(n.addr) == first.addr()), "{saved:?}");

    // Back with no routers at all: the same id, and the first node answers again.
    let (again, h2) = node_with(Vec::new(), Some(state.clone())).await;
    assert_eq!(h2.status().await.unwrap().id, id);
    let rejoined = harness::wait_until(Duration::from_secs(10), Duration::from_millis(100), || async {
        h2.status().await.is_some_and(|s| s.good >= 1)
    })
    .await;
    assert!(rejoined, "rejoined through the saved nodes: {:?}", h2.status().await);
    again.stop().await.unwrap();

    // A corrupt state file: a new id, and the node still starts.
    std::fs::write(&state, b"not bencode").unwrap();
    let (fresh, h3) = node_with(Vec::new(), Some(state.clone())).await;
    assert_ne!(h3.status().await.unwrap().id, id);
    fresh.stop().await.unwrap();
    first.stop().await.unwrap();
}
