//! The connection policy (issue 22, item 6): silent and trickling connections are cut after
//! the header timeout, one address cannot take more than its share, and at the global cap a
//! newcomer takes the slot of the connection that waited longest without a request, never of
//! one being served.

mod common;
use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn connect_from(src: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((src, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

/// One request with `Connection: close` from `src`; the whole response.
async fn get_from(src: [u8; 4], to: SocketAddr, path: &str) -> String {
    let mut s = connect_from(src, to).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the server closes `s` (EOF or reset) within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn silent_connections_at_the_cap_make_room_for_a_real_client() {
    let site = site("evict");
    let mut cfg = config(site.path());
    cfg.max_connections = 20;
    cfg.max_per_ip = Some(20);
    let srv = serve(cfg).await;
    let mut silent = Vec::new();
    // From an address the readiness probe did not use: its slot may not be released yet.
    for _ in 0..20 {
        silent.push(connect_from([127, 0, 5, 1], srv.addr()).await);
    }
    // The old server answered 503 for as long as the silent connections stayed.
    let r = get_from([127, 0, 0, 2], srv.addr(), "/digits.txt").await;
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(body(&r), "0123456789");
    // The oldest silent connection was the one closed for it.
    assert!(closed_within(&mut silent[0], Duration::from_secs(5)).await);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn one_address_gets_its_share_and_no_more() {
    let site = site("perip");
    let mut cfg = config(site.path());
    cfg.max_connections = 20;
    cfg.max_per_ip = Some(3);
    let srv = serve(cfg).await;
    let mut held = Vec::new();
    // From an address the readiness probe did not use: its slot may not be released yet.
    for _ in 0..3 {
        held.push(connect_from([127, 0, 5, 2], srv.addr()).await);
    }
    let r = get_from([127, 0, 5, 2], srv.addr(), "/digits.txt").await;
    assert_eq!(status(&r), 503, "over the per-address cap: {r}");
    assert_eq!(header(&r, "retry-after"), Some("1"));
    assert_eq!(status(&get_from([127, 0, 0, 3], srv.addr(), "/digits.txt").await), 200);
    drop(held);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn silent_and_trickling_connections_are_cut_at_the_header_timeout() {
    let site = site("silent");
    let mut cfg = config(site.path());
    cfg.header_timeout_secs = 1;
    cfg.idle_timeout_secs = 60;
    let srv = serve(cfg).await;
    // Silent: the old server kept it for the idle timeout (60 s).
    let started = Instant::now();
    let mut s = TcpStream::connect(srv.addr()).await.unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(5)).await, "silent connection still open");
    assert!(started.elapsed() >= Duration::from_millis(900), "not before the timeout");
    // Trickling the HTTP/2 preface a byte at a time: every byte used to restart the wait.
    let mut s = TcpStream::connect(srv.addr()).await.unwrap();
    let started = Instant::now();
    let mut closed = false;
    for b in b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" {
        if s.write_all(&[*b]).await.is_err() || closed_within(&mut s, Duration::from_millis(200)).await {
            closed = true;
            break;
        }
    }
    assert!(closed, "trickling connection still open after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(4));
    // A real client is served as before.
    assert_eq!(
        status(&raw(srv.addr(), b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await),
        200
    );
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn a_connection_being_served_is_never_evicted() {
    let site = site("busy");
    let mut cfg = config(site.path());
    cfg.max_connections = 2;
    cfg.max_per_ip = Some(2);
    let srv = serve(cfg).await;
    // A download in progress: the 5 MB body cannot be written while we do not read.
    let mut download = connect_from([127, 0, 0, 1], srv.addr()).await;
    download.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut first = [0u8; 64];
    let n = download.read(&mut first).await.unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"));
    let _silent = connect_from([127, 0, 0, 1], srv.addr()).await;
    // Newcomers take the silent connection's slot, then each other's; never the download's.
    for src in [[127, 0, 0, 2], [127, 0, 0, 3], [127, 0, 0, 4]] {
        let r = get_from(src, srv.addr(), "/digits.txt").await;
        assert_eq!(status(&r), 200, "{r}");
    }
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), download.read_to_end(&mut rest)).await.unwrap().unwrap();
    let mut all = first[..n].to_vec();
    all.extend_from_slice(&rest);
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(all.len() - split, 5_000_000, "the download finished intact");
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn an_http2_stream_in_progress_keeps_its_connection() {
    let site = site("h2busy");
    let mut cfg = config(site.path());
    cfg.max_connections = 2;
    cfg.max_per_ip = Some(2);
    let srv = serve(cfg).await;
    let tcp = connect_from([127, 0, 0, 1], srv.addr()).await;
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.unwrap();
    let req = http::Request::builder().uri(format!("http://{}/big.bin", srv.addr())).body(()).unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    // The body stalls on flow control while we do not read it: the stream stays open.
    let mut body = resp.await.unwrap().into_body();
    let _silent = connect_from([127, 0, 0, 1], srv.addr()).await;
    let r = get_from([127, 0, 0, 2], srv.addr(), "/digits.txt").await;
    assert_eq!(status(&r), 200, "{r}");
    let mut got = 0;
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), body.data()).await.unwrap() {
        let chunk = chunk.expect("the HTTP/2 connection was not closed");
        let _ = body.flow_control().release_capacity(chunk.len());
        got += chunk.len();
    }
    assert_eq!(got, 5_000_000);
    srv.stop().await.unwrap();
}
