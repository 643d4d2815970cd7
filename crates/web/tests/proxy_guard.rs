//! The proxy runs the same HTTP/1 request guard as the web server: request smuggling shapes,
//! bad versions and oversized heads get their status from the proxy and never reach the
//! origin, and a refused head ends the connection after the answers to earlier requests.

mod proxy_support;

use proxy_support::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends raw bytes and reads until the proxy closes (or 5 s pass).
async fn exchange(addr: std::net::SocketAddr, req: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while out.len() < 1 << 20 {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn origin() -> Origin {
    Origin::start(|_, _| Reply::ok("page", &[("cache-control", "max-age=60")])).await
}

#[tokio::test]
async fn smuggling_shapes_get_their_status_from_the_proxy_and_are_not_forwarded() {
    let origin = origin().await;
    let proxy = reverse(&origin, |_| {}).await;
    let smuggled = "GET /admin HTTP/1.1\r\nHost: a.test\r\n\r\n";
    for (fields, want) in [
        ("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", "400"),
        ("Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", "400"),
        ("Content-Length: 4\r\nContent-Length: 5\r\n", "400"),
        ("Content-Length: +4\r\n", "400"),
        ("Transfer-Encoding: chunked, identity\r\n", "501"),
        ("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "400"),
        ("X: y\r\n folded\r\nContent-Length: 4\r\n", "400"),
        ("X: y\rContent-Length: 4\r\n", "400"),
        ("Host: b.test\r\n", "400"),
    ] {
        let req = format!("POST /form HTTP/1.1\r\nHost: a.test\r\n{fields}\r\n0\r\n\r\n{smuggled}");
        let got = exchange(proxy.addr(), req.as_bytes()).await;
        assert!(got.starts_with(&format!("HTTP/1.1 {want} ")), "{fields:?}: {got}");
        assert_eq!(got.matches("HTTP/1.1 ").count(), 1, "{fields:?}: one answer, then close: {got}");
    }
    let long = format!("GET /{} HTTP/1.1\r\nHost: a.test\r\n\r\n", "a".repeat(9000));
    assert!(exchange(proxy.addr(), long.as_bytes()).await.starts_with("HTTP/1.1 414 "));
    assert!(
        exchange(proxy.addr(), b"GET / HTTP/1.2\r\nHost: a.test\r\n\r\n").await.starts_with("HTTP/1.1 505 ")
    );
    assert_eq!(origin.hits(), 0, "nothing refused reached the origin");
    // The same proxy still serves a clean request.
    let got = send(proxy.addr(), "GET", "/page", &[("host", "a.test")]).await;
    assert_eq!(got.status, 200);
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn a_refused_head_is_answered_after_the_requests_before_it() {
    let origin = origin().await;
    let proxy = reverse(&origin, |_| {}).await;
    let req = "GET /one HTTP/1.1\r\nHost: a.test\r\n\r\n\
POST /two HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
GET /three HTTP/1.1\r\nHost: a.test\r\n\r\n";
    let got = exchange(proxy.addr(), req.as_bytes()).await;
    let statuses: Vec<&str> = got.match_indices("HTTP/1.1 ").map(|(i, _)| &got[i + 9..i + 12]).collect();
    assert_eq!(statuses, ["200", "400"], "{got}");
    assert_eq!(origin.hits(), 1, "only /one was forwarded");
    assert!(origin.last().uri.ends_with("/one"), "{}", origin.last().uri);
}
