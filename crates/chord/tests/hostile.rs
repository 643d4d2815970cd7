//! Real nodes against hostile peers: a ring secret refuses unauthenticated and replayed frames
//! (and the ring still works), frames are read within a shared memory budget, a connection
//! that does not deliver a whole frame in time is closed, one address cannot take every
//! connection, a forged `Leaving` does not remove a live node from a ring without a secret,
//! and nodes on their own loopback addresses still pass the address checks.

use appnet_chord::client::Client;
use appnet_chord::error::ClientError;
use appnet_chord::pool::{Pool, PoolLimits};
use appnet_chord::wire::{self, ErrorCode, NodeRef, Request, Response, RingKey, Stamp};
use appnet_chord::{ChordConfig, ChordServer};
use appnet_netkit::harness::{self, Running, TempDir, any_loopback};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &[u8] = b"a ring secret of enough bytes";

fn config(join: Option<SocketAddr>, secret: Option<&TempDir>) -> ChordConfig {
    ChordConfig {
        listen: any_loopback(),
        join,
        bits: 16,
        stabilize_ms: 40,
        fix_fingers_ms: 50,
        check_predecessor_ms: 40,
        rpc_timeout_ms: 400,
        secret_file: secret.map(|d| d.path().join("secret")),
        ..ChordConfig::default()
    }
}

async fn start(config: ChordConfig) -> (NodeRef, appnet_chord::server::NodeHandle, Running) {
    let server = ChordServer::bind(config).await.expect("bind");
    let (me, handle) = (server.node_ref(), server.handle());
    let running = harness::start(server);
    harness::wait_tcp(running.addr(), Duration::from_secs(5)).await.expect("listening");
    (me, handle, running)
}

/// Sends one raw frame on a fresh connection and reads the answer's body.
async fn raw(addr: SocketAddr, frame: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(frame).await.unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await.unwrap();
    body
}

fn error_code(body: &[u8]) -> Option<ErrorCode> {
    match wire::decode_response(body) {
        Ok((_, Response::Error { code, .. })) => Some(code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_secret_unauthenticated_and_replayed_frames_are_refused_and_the_ring_works() {
    let dir = TempDir::new("chord-secret");
    std::fs::write(dir.path().join("secret"), [SECRET, b"\n"].concat()).unwrap();
    let (a, _, _ra) = start(config(None, Some(&dir))).await;
    let (_b, hb, _rb) = start(config(Some(a.addr), Some(&dir))).await;
    let (_c, hc, _rc) = start(config(Some(a.addr), Some(&dir))).await;
    let joined = harness::wait_until(Duration::from_secs(20), Duration::from_millis(20), || async {
        [&hb, &hc].iter().all(|h| h.lock().unwrap().routing().succs.len() >= 2)
    })
    .await;
    assert!(joined, "the ring with a secret did not form");

    // A client with the secret stores and reads.
    let key = Arc::new(RingKey::new(SECRET));
    let pool = Pool::with_auth(PoolLimits::default(), Some(key.clone()));
    let client = Client::connect_with(a.addr, Duration::from_secs(2), pool).await.unwrap();
    client.put(b"alice", b"12 Elm St").await.unwrap();
    assert_eq!(client.get(b"alice").await.unwrap().value.as_deref(), Some(&b"12 Elm St"[..]));

    // Unsigned: refused with error 6, also the forged Leaving of the hostile tester.
    let leaving = Request::Leaving { node: a, pred: None, succs: vec![] };
    let body = raw(a.addr, &wire::encode_request(16, &leaving)).await;
    assert_eq!(error_code(&body), Some(ErrorCode::Unauthenticated));
    let plain = Client::connect_with(a.addr, Duration::from_secs(2), Pool::disabled()).await;
    assert!(matches!(plain, Err(ClientError::Remote { code: ErrorCode::Unauthenticated, .. })), "{plain:?}");
    // Another secret: refused.
    let wrong =
        Pool::with_auth(PoolLimits::default(), Some(Arc::new(RingKey::new(b"another secret, long enough"))));
    assert!(Client::connect_with(a.addr, Duration::from_secs(2), wrong).await.is_err());

    // A captured valid frame is answered once, then refused as a replay.
    let stamp = Stamp { unix_ms: wire::unix_ms(), request_id: wire::fresh_request_id() };
    let frame = key.seal_request(wire::encode_request(16, &Request::Ping), stamp);
    let first = raw(a.addr, &frame).await;
    let message = key.open_response(&first, stamp.request_id).expect("a signed answer");
    assert!(matches!(wire::decode_response(message), Ok((_, Response::Pong { .. }))));
    assert_eq!(error_code(&raw(a.addr, &frame).await), Some(ErrorCode::Unauthenticated));
    // So is one stamped long ago (outside the 30 s window).
    let old = Stamp { unix_ms: wire::unix_ms() - 120_000, request_id: 1 };
    let frame = key.seal_request(wire::encode_request(16, &Request::Ping), old);
    assert_eq!(error_code(&raw(a.addr, &frame).await), Some(ErrorCode::Unauthenticated));

    // The ring still works, and the node is still in its neighbours' lists.
    assert_eq!(client.get(b"alice").await.unwrap().value.as_deref(), Some(&b"12 Elm St"[..]));
    assert!(
        hb.lock()
            .unwrap()
            .routing()
            .succs
            .iter()
            .chain(hc.lock().unwrap().routing().succs.iter())
            .any(|n| *n == a)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_leaving_without_a_secret_does_not_remove_a_live_node() {
    let (a, ha, _ra) = start(config(None, None)).await;
    let (b, hb, _rb) = start(config(Some(a.addr), None)).await;
    let (c, hc, _rc) = start(config(Some(a.addr), None)).await;
    let all = [(&a, &ha), (&b, &hb), (&c, &hc)];
    let knows = |h: &appnet_chord::server::NodeHandle, n: &NodeRef| {
        let node = h.lock().unwrap();
        node.routing().succs.contains(n) || node.routing().pred == Some(*n)
    };
    let formed = harness::wait_until(Duration::from_secs(20), Duration::from_millis(20), || async {
        all.iter().all(|(me, h)| all.iter().all(|(n, _)| n == me || knows(h, n)))
    })
    .await;
    assert!(formed, "ring did not form");
    // The forger names c to both its neighbours, 20 times over 1 s; c stays in every view.
    let leaving = wire::encode_request(16, &Request::Leaving { node: c, pred: None, succs: vec![] });
    for _ in 0..20 {
        for to in [a.addr, b.addr] {
            assert_eq!(wire::decode_response(&raw(to, &leaving).await).unwrap().1, Response::Ok);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(knows(&ha, &c) && knows(&hb, &c), "a forged Leaving removed a live node");
    }
    // Each Leaving is answered at once and refuted by a probe of c after that: wait for one.
    let refuted = harness::wait_until(Duration::from_secs(10), Duration::from_millis(20), || async {
        ha.lock().unwrap().counters().claims_refused + hb.lock().unwrap().counters().claims_refused > 0
    })
    .await;
    assert!(refuted, "the probes should have refuted the Leavings");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_frames_share_a_bounded_buffer_and_must_arrive_whole_in_time() {
    let (a, _, _ra) = start(ChordConfig {
        max_frame_buffer_bytes: 1024 * 1024,
        request_timeout_secs: 1,
        ..config(None, None)
    })
    .await;
    // Connections announce 4 MiB frames and send 600 KiB each: the buffers grow with the
    // bytes, and once 1 MiB is held in all, the next growth is refused as "busy".
    let mut conns = Vec::new();
    let mut busy = 0;
    for _ in 0..4 {
        let mut s = TcpStream::connect(a.addr).await.unwrap();
        s.write_all(&(wire::MAX_FRAME as u32).to_be_bytes()).await.unwrap();
        let chunk = vec![0u8; 600 * 1024];
        // The node may close the connection mid-write once it refused the frame.
        let _ = s.write_all(&chunk).await;
        let mut len = [0u8; 4];
        match tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut len)).await {
            Ok(Ok(_)) => {
                let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
                s.read_exact(&mut body).await.unwrap();
                assert_eq!(error_code(&body), Some(ErrorCode::Unavailable));
                busy += 1;
            }
            _ => conns.push(s),
        }
    }
    assert!(busy >= 2, "only {} connections may hold 600 KiB of 1 MiB; {busy} refused", conns.len());
    // Meanwhile whole frames are still served.
    let pong = raw(a.addr, &wire::encode_request(0, &Request::Ping)).await;
    assert!(matches!(wire::decode_response(&pong), Ok((_, Response::Pong { .. }))));
    // The unfinished frames are cut off at the request deadline (1 s), not the idle one (30 s).
    for mut s in conns {
        let mut buf = [0u8; 16];
        let end = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
        assert!(matches!(end, Ok(Ok(0)) | Ok(Err(_))), "a partial frame kept its connection: {end:?}");
    }
    let client = Client::connect(a.addr, Duration::from_secs(2)).await.unwrap();
    let stats = client.stats(a.addr).await.unwrap();
    let get = |name: &str| stats.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
    assert!(get("frames_over_budget") >= Some(busy), "{stats:?}");
    assert!(get("connections_in_timed_out") >= Some(1), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_their_own_loopback_addresses_pass_the_address_checks() {
    // Each node on its own 127.x address (as in the lab): its RPCs must come from that
    // address, or its Notify claims would not match the connection's.
    let on = |ip: [u8; 4], join| ChordConfig { listen: SocketAddr::from((ip, 0)), ..config(join, None) };
    let (a, ha, _ra) = start(on([127, 0, 0, 2], None)).await;
    let (b, hb, _rb) = start(on([127, 0, 0, 3], Some(a.addr))).await;
    let (c, hc, _rc) = start(on([127, 0, 0, 4], Some(a.addr))).await;
    let all = [(&a, &ha), (&b, &hb), (&c, &hc)];
    let formed = harness::wait_until(Duration::from_secs(20), Duration::from_millis(20), || async {
        all.iter().all(|(_, h)| {
            let node = h.lock().unwrap();
            node.routing().pred.is_some() && node.routing().succs.len() == 2
        })
    })
    .await;
    assert!(formed, "the ring did not form");
    let refused: u64 = all.iter().map(|(_, h)| h.lock().unwrap().counters().claims_refused).sum();
    assert_eq!(refused, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_connection() {
    let (a, _, _ra) = start(ChordConfig { max_connections_per_ip: 4, ..config(None, None) }).await;
    let from = |ip: [u8; 4]| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((ip, 0))).unwrap();
        socket.connect(a.addr).await.unwrap()
    };
    // Four silent connections from 127.0.0.9 hold its share; a fifth is told so and closed.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(from([127, 0, 0, 9]).await);
    }
    let mut fifth = from([127, 0, 0, 9]).await;
    let mut len = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), fifth.read_exact(&mut len)).await.unwrap().unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    fifth.read_exact(&mut body).await.unwrap();
    assert_eq!(error_code(&body), Some(ErrorCode::Unavailable));
    // Another address is served meanwhile.
    let mut other = from([127, 0, 0, 10]).await;
    other.write_all(&wire::encode_request(0, &Request::Ping)).await.unwrap();
    other.read_exact(&mut len).await.unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    other.read_exact(&mut body).await.unwrap();
    assert!(matches!(wire::decode_response(&body), Ok((_, Response::Pong { .. }))));
    drop(held);
}
