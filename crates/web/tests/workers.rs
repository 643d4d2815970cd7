//! `workers = 2`: the server on two threads of its own, each accepting on the port. Every
//! client is served whichever thread takes it, the per-address cap holds across threads (one
//! connection table), TLS and h2c work on them, and shutdown drains every thread.

mod common;
use common::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn connect_from(src: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((src, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

/// Reads one response to a GET of /digits.txt on a keep-alive connection.
async fn read_digits_response(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !out.ends_with(b"0123456789") {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `requests` keep-alive GETs from `src` on one connection; the statuses.
async fn keep_alive_client(src: [u8; 4], to: SocketAddr, requests: usize) -> Vec<u16> {
    let mut s = connect_from(src, to).await;
    let mut statuses = Vec::new();
    for _ in 0..requests {
        s.write_all(b"GET /digits.txt HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let r = read_digits_response(&mut s).await;
        statuses.push(status(&r));
    }
    statuses
}

fn two_workers(root: &std::path::Path) -> appnet_web::WebConfig {
    let mut cfg = config(root);
    cfg.workers = 2;
    cfg
}

#[tokio::test]
async fn many_clients_are_all_served() {
    let site = site("workers-many");
    let srv = serve(two_workers(site.path())).await;
    let addr = srv.addr();
    let clients: Vec<_> =
        (0..48u8).map(|i| tokio::spawn(keep_alive_client([127, 0, 1, 10 + i], addr, 5))).collect();
    for c in clients {
        assert_eq!(c.await.unwrap(), vec![200; 5]);
    }
    // h2c with prior knowledge on the worker threads too.
    for _ in 0..4 {
        let resp = appnet_web::client::get(
            &format!("http://127.0.0.1:{}/digits.txt", addr.port()),
            appnet_web::client::Proto::Http2,
            None,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!((resp.version(), resp.status().as_u16()), (http::Version::HTTP_2, 200));
        assert_eq!(&resp.body()[..], b"0123456789");
    }
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn the_per_address_cap_holds_across_threads() {
    let site = site("workers-cap");
    let mut cfg = two_workers(site.path());
    cfg.max_per_ip = Some(4);
    let srv = serve(cfg).await;
    let addr = srv.addr();
    // Four connections from one address, each proven admitted by a served request; with two
    // threads accepting they land on both (or on one: the cap must hold either way).
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = connect_from([127, 0, 2, 1], addr).await;
        s.write_all(b"GET /digits.txt HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        assert_eq!(status(&read_digits_response(&mut s).await), 200);
        held.push(s);
    }
    for _ in 0..6 {
        let r = get_from([127, 0, 2, 1], addr).await;
        assert_eq!(status(&r), 503, "over the per-address cap: {r}");
    }
    assert_eq!(status(&get_from([127, 0, 2, 2], addr).await), 200);
    drop(held);
    srv.stop().await.unwrap();
}

/// A file edited between requests on one keep-alive connection is served as it is now by
/// the worker threads' fast path, whose cached answers are checked against the change notices
/// by the event loop's readiness (the first request of a read) or by reading the queue (the
/// requests behind it).
#[tokio::test]
async fn edits_between_requests_are_seen_on_worker_threads() {
    let site = site("workers-edit");
    let srv = serve(two_workers(site.path())).await;
    let path = site.path().join("edit.txt");
    let mut s = TcpStream::connect(srv.addr()).await.unwrap();
    let request = b"GET /edit.txt HTTP/1.1\r\nHost: x\r\n\r\n";
    for round in 0..40u32 {
        // The same length every time: only the notice (or the mtime) tells the versions apart.
        let body = format!("version {round:03}\n");
        std::fs::write(&path, &body).unwrap();
        // Every fourth round, two requests in one write.
        let n = if round % 4 == 3 { 2 } else { 1 };
        s.write_all(&request.repeat(n)).await.unwrap();
        let mut got = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 4096];
        while got.matches("version ").count() < n {
            match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
                Ok(Ok(k)) if k > 0 => got.push_str(&String::from_utf8_lossy(&buf[..k])),
                other => panic!("round {round}: {other:?} after {got:?}"),
            }
        }
        assert_eq!(got.matches(&body).count(), n, "round {round}: {got}");
    }
    srv.stop().await.unwrap();
}

/// One request with `Connection: close` from `src`; the whole response.
async fn get_from(src: [u8; 4], to: SocketAddr) -> String {
    let mut s = connect_from(src, to).await;
    s.write_all(b"GET /digits.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn shutdown_drains_responses_in_flight_on_every_thread() {
    let site = site("workers-drain");
    let srv = serve(two_workers(site.path())).await;
    let addr = srv.addr();
    // Several 5 MB downloads, started and then read slowly while the server stops: each
    // must arrive whole whichever thread serves it.
    let mut streams = Vec::new();
    for i in 0..6u8 {
        let mut s = connect_from([127, 0, 3, 1 + i], addr).await;
        s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut first = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut first)).await.unwrap().unwrap();
        assert!(n > 0 && first.starts_with(b"HTTP/1.1 200"));
        let mut got = first[..n].to_vec();
        streams.push(tokio::spawn(async move {
            // Slow at first, so shutdown begins while every response is still being sent.
            let mut buf = vec![0u8; 64 * 1024];
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                match s.read(&mut buf).await {
                    Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
            got
        }));
    }
    let stopping = tokio::spawn(srv.stop());
    for s in streams {
        let got = s.await.unwrap();
        let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4;
        assert_eq!(got.len() - head_end, 5_000_000, "the whole body arrived");
    }
    stopping.await.unwrap().unwrap();
    // Stopped: the port no longer accepts.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn tls_on_worker_threads() {
    let site = site("workers-tls");
    let ca_dir = TempDir::new("workers-ca");
    let mut cfg = two_workers(site.path());
    cfg.tls = true;
    cfg.ca_dir = Some(ca_dir.path().to_path_buf());
    let srv = serve(cfg).await;
    for proto in [appnet_web::client::Proto::Http11, appnet_web::client::Proto::Http2].repeat(3) {
        let resp = appnet_web::client::get(
            &format!("https://localhost:{}/digits.txt", srv.addr().port()),
            proto,
            Some(&ca_dir.path().join("ca.pem")),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(&resp.body()[..], b"0123456789");
    }
    srv.stop().await.unwrap();
}
