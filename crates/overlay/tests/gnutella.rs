//! Gnutella on loopback: a chain of plain nodes floods a Query and the QueryHit comes back
//! along the reverse path; a leaf's file is found through two ultrapeers via its QRP table;
//! a full node answers 503; files come over HTTP (by URN, with ranges) verified by SHA-1.

use appnet_netkit::harness::{self, TempDir, wait_until};
use appnet_overlay::gnutella::client::{get, search};
use appnet_overlay::gnutella::conn::{ConnError, initiate};
use appnet_overlay::gnutella::handshake::Capabilities;
use appnet_overlay::gnutella::node::Node;
use appnet_overlay::gnutella::node_config::NodeConfig;
use appnet_overlay::http::download::DownloadOptions;
use std::net::SocketAddr;
use std::time::Duration;

/// How long a search collects QueryHits: the Query floods up to three hops and each hit comes
/// back along the same path, so a loaded machine needs a margin (TTL 2 reaching nothing is
/// then also a longer look).
const WAIT: Duration = Duration::from_secs(3);

fn share(tag: &str, with_song: bool) -> TempDir {
    let dir = TempDir::new(tag);
    if with_song {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("Hey Jude.mp3"), data).unwrap();
    } else {
        std::fs::write(dir.path().join(format!("{tag}.txt")), tag.as_bytes()).unwrap();
    }
    dir
}

fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

async fn node(
    dir: &TempDir,
    ultrapeer: bool,
    connect: Vec<SocketAddr>,
    max_peers: usize,
) -> harness::Running {
    logs();
    // One outgoing connection to the given candidate, none without one: no extra connections
    // to hosts learnt from Pongs, so the topology is the one the test draws.
    let want_peers = usize::from(!connect.is_empty());
    let mut config = NodeConfig {
        ultrapeer,
        connect,
        max_peers,
        want_peers,
        dial_interval_secs: 1,
        ..NodeConfig::default()
    };
    config.upload.listen = harness::any_loopback();
    harness::start(Node::bind(config, dir.path()).await.unwrap())
}

async fn found(node: SocketAddr, what: &'static str, ttl: u8) -> bool {
    wait_until(Duration::from_secs(15), Duration::from_millis(50), || async move {
        search(node, what, ttl, WAIT).await.map(|h| !h.is_empty()).unwrap_or(false)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_finds_hey_jude_three_hops_away_and_ttl_limits_the_scope() {
    let (da, db, dc) = (share("gn-a", true), share("gn-b", false), share("gn-c", false));
    let a = node(&da, false, vec![], 8).await;
    let b = node(&db, false, vec![a.addr()], 8).await;
    let c = node(&dc, false, vec![b.addr()], 8).await;
    // C → B → A: the Query needs TTL 3 (the searcher's own connection is the first hop).
    assert!(found(c.addr(), "hey jude", 3).await, "found through the chain");
    let hits = search(c.addr(), "hey jude", 3, WAIT).await.unwrap();
    assert_eq!(hits[0].addr, a.addr(), "the QueryHit carries A's listen address");
    assert_eq!(hits[0].hops, 2, "hops counted on the way back");
    assert!(search(c.addr(), "hey jude", 2, WAIT).await.unwrap().is_empty(), "TTL 2 does not reach A");

    let out = TempDir::new("gn-out");
    let (hit, done) = get(
        c.addr(),
        "hey jude",
        3,
        WAIT,
        out.path(),
        DownloadOptions { chunk: 100_000, ..Default::default() },
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(&done.path).unwrap(), std::fs::read(da.path().join("Hey Jude.mp3")).unwrap());
    // By URN too.
    let urn = appnet_overlay::gnutella::base32::sha1_urn(&hit.sha1.unwrap());
    let by_urn = search(c.addr(), Box::leak(urn.into_boxed_str()), 3, WAIT).await.unwrap();
    assert_eq!(by_urn.len(), 1);
    for n in [c, b, a] {
        n.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ultrapeers_reach_a_leaf_through_its_qrp_table() {
    let (d1, d2, dl, dx) =
        (share("up-1", false), share("up-2", false), share("up-leaf", true), share("up-x", false));
    let u1 = node(&d1, true, vec![], 8).await;
    let u2 = node(&d2, true, vec![u1.addr()], 8).await;
    let leaf = node(&dl, false, vec![u1.addr()], 8).await;
    let other = node(&dx, false, vec![u2.addr()], 8).await;
    assert!(found(other.addr(), "hey jude", 4).await, "leaf → ultrapeer → ultrapeer → leaf");
    let hits = search(u2.addr(), "hey jude", 7, WAIT).await.unwrap();
    assert_eq!(hits[0].addr, leaf.addr());
    for n in [other, leaf, u2, u1] {
        n.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_answers_503() {
    let d = share("full", false);
    let n = node(&d, false, vec![], 1).await;
    let caps = Capabilities {
        user_agent: "test".into(),
        ultrapeer: false,
        query_routing: false,
        pong_caching: false,
        listen: None,
    };
    let mut first = tokio::net::TcpStream::connect(n.addr()).await.unwrap();
    initiate(&mut first, &caps, Duration::from_secs(5)).await.unwrap();
    let mut second = tokio::net::TcpStream::connect(n.addr()).await.unwrap();
    match initiate(&mut second, &caps, Duration::from_secs(5)).await {
        Err(ConnError::Refused { code: 503, .. }) => {}
        other => panic!("expected 503, got {other:?}"),
    }
    drop(first);
    // The place frees when the first neighbour goes.
    let addr = n.addr();
    let ok = wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        let caps = caps.clone();
        async move {
            let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else { return false };
            initiate(&mut s, &caps, Duration::from_secs(5)).await.is_ok()
        }
    })
    .await;
    assert!(ok);
    n.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firewalled_servent_uploads_through_push_and_giv() {
    let (dw, dp) = (share("fw-wall", true), share("fw-peer", false));
    logs();
    let mut config = NodeConfig { firewalled: true, ..NodeConfig::default() };
    config.upload.listen = harness::any_loopback();
    let walled = harness::start(Node::bind(config, dw.path()).await.unwrap());
    let peer = node(&dp, false, vec![walled.addr()], 8).await;
    assert!(found(peer.addr(), "hey jude", 2).await, "found through the peer");
    let hits = search(peer.addr(), "hey jude", 2, WAIT).await.unwrap();
    assert!(hits[0].firewalled, "the QueryHit carries the Push flag");

    let out = TempDir::new("fw-out");
    let (hit, done) =
        get(peer.addr(), "hey jude", 2, WAIT, out.path(), DownloadOptions::default()).await.unwrap();
    assert_eq!(std::fs::read(&done.path).unwrap(), std::fs::read(dw.path().join("Hey Jude.mp3")).unwrap());
    assert_eq!(hit.addr, walled.addr());
    // The bytes came over the connection the firewalled servent opened to us (its ephemeral
    // port), not over one we opened to its listening address.
    assert_eq!(done.from.len(), 1);
    assert_ne!(done.from[0].0, walled.addr(), "fetched over the GIV connection");
    assert!(done.from[0].1 > 0);
    for n in [peer, walled] {
        n.stop().await.unwrap();
    }
}

#[test]
fn giv_lines_parse_and_junk_does_not() {
    use appnet_overlay::gnutella::client::parse_giv;
    let guid = "0123456789ABCDEF0123456789ABCDEF";
    assert_eq!(parse_giv(&format!("GIV 7:{guid}/Hey Jude.mp3")), Some((7, guid)));
    assert_eq!(parse_giv("GIV 7:short/x"), None);
    assert_eq!(parse_giv("GET / HTTP/1.1"), None);
    assert_eq!(parse_giv(&format!("GIV x:{guid}/a")), None);
}
