//! Client-connection timers: an idle keep-alive connection outlives the header timeout and
//! closes at the idle timeout; a request head that stalls is cut at the header timeout; the
//! connection cap closes an idle connection for a newcomer, and one address gets only its share.

mod proxy_support;

use proxy_support::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads one response (head and a Content-Length body) from `s`.
async fn read_response(s: &mut TcpStream) -> String {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&data).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if data.len() >= end + 4 + len {
                return text;
            }
        }
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed before a whole response: {text}");
        data.extend_from_slice(&buf[..n]);
    }
}

/// Waits (at most `limit`) for the peer to close `s`; returns how long that took.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 256];
    tokio::time::timeout(limit, async {
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
    .expect("the proxy closes the connection");
    started.elapsed()
}

#[tokio::test]
async fn idle_keep_alive_connections_outlive_the_header_timeout() {
    let origin = Origin::start(|_, _| Reply::ok("fresh", &[("cache-control", "max-age=60")])).await;
    let proxy = reverse(&origin, |c| {
        c.header_timeout_secs = 1;
        c.idle_timeout_secs = 3;
    })
    .await;
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    let req = b"GET /a HTTP/1.1\r\nHost: site.test\r\n\r\n";
    s.write_all(req).await.unwrap();
    assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200"));
    // Idle for longer than the header timeout: the connection still serves.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    s.write_all(req).await.unwrap();
    let second = read_response(&mut s).await;
    assert!(second.starts_with("HTTP/1.1 200") && second.contains("HIT"), "{second}");
    // Then it closes at the idle timeout (3 s after the last response).
    let took = closed_within(&mut s, Duration::from_secs(10)).await;
    assert!(took >= Duration::from_millis(2500), "closed after {took:?}");
}

#[tokio::test]
async fn a_stalled_request_head_is_cut_at_the_header_timeout() {
    let origin = Origin::start(|_, _| Reply::ok("x", &[])).await;
    let proxy = reverse(&origin, |c| {
        c.header_timeout_secs = 1;
        c.idle_timeout_secs = 30;
    })
    .await;
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: site").await.unwrap();
    let started = Instant::now();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut reply))
        .await
        .expect("the proxy closes the connection")
        .unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 408 "), "the client is told why: {reply:?}");
    assert_eq!(origin.hits(), 0);
}

#[tokio::test]
async fn idle_http2_connections_get_goaway_then_close() {
    let origin = Origin::start(|_, _| Reply::ok("x", &[])).await;
    let proxy = reverse(&origin, |c| c.idle_timeout_secs = 2).await;
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    // h2c with prior knowledge: the preface and an empty SETTINGS frame, then silence.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    let started = Instant::now();
    let mut data = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), async {
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
            data.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the proxy closes the idle connection");
    assert!(started.elapsed() >= Duration::from_millis(1500), "closed after {:?}", started.elapsed());
    // Walk the frames (9-byte headers): a GOAWAY (type 7) came before the close.
    let (mut at, mut types) = (0, Vec::new());
    while at + 9 <= data.len() {
        let len = u32::from_be_bytes([0, data[at], data[at + 1], data[at + 2]]) as usize;
        types.push(data[at + 3]);
        at += 9 + len;
    }
    assert!(types.contains(&7), "frame types {types:?}");
}

#[tokio::test]
async fn a_full_proxy_closes_an_idle_connection_for_a_newcomer() {
    let origin = Origin::start(|_, _| Reply::ok("x", &[("cache-control", "max-age=60")])).await;
    let proxy = reverse(&origin, |c| {
        c.max_connections = 2;
        c.max_connections_per_ip = Some(8);
    })
    .await;
    // Two connections that have sent nothing hold both slots.
    let mut idle_a = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut idle_b = TcpStream::connect(proxy.addr()).await.unwrap();
    // A newcomer is served (the oldest idle one is evicted) instead of getting 503.
    let g = send(proxy.addr(), "GET", "/x", &[]).await;
    assert_eq!(g.status, 200);
    // The evicted connection's task closes it once it runs: a bounded wait, not a race with it.
    let mut closed = 0;
    for s in [&mut idle_a, &mut idle_b] {
        let mut buf = [0u8; 64];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
            closed += 1;
        }
    }
    assert!(closed >= 1, "an idle connection made room");
}

#[tokio::test]
async fn one_address_cannot_hold_more_than_its_connection_share() {
    let origin = Origin::start(|_, _| Reply::ok("x", &[])).await;
    let proxy = reverse(&origin, |c| c.max_connections_per_ip = Some(2)).await;
    // From an address the readiness probe did not use: its slot may not be released yet.
    let from = |_| async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(([127, 0, 5, 3], 0).into()).unwrap();
        socket.connect(proxy.addr()).await.unwrap()
    };
    let mut held = Vec::new();
    for i in 0..2 {
        held.push(from(i).await);
    }
    let mut third = from(2).await;
    third.write_all(b"GET /x HTTP/1.1\r\nHost: site.test\r\n\r\n").await.unwrap();
    let reply = read_response(&mut third).await;
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
}

#[tokio::test]
async fn a_request_in_progress_is_neither_timed_out_nor_evicted() {
    let origin = Origin::start(|_, _| {
        let mut r = Reply::ok("slow", &[]);
        r.delay = Duration::from_millis(3500);
        r
    })
    .await;
    // A fresh connection has 2 s (header timeout + 1) for its request; the origin takes 3.5.
    let proxy = reverse(&origin, |c| {
        c.header_timeout_secs = 1;
        c.max_connections = 1;
        c.max_connections_per_ip = Some(8);
    })
    .await;
    let addr = proxy.addr();
    let slow = tokio::spawn(async move { send(addr, "GET", "/slow", &[]).await });
    assert!(
        appnet_netkit::harness::wait_until(Duration::from_secs(5), Duration::from_millis(10), || async {
            origin.hits() == 1
        })
        .await
    );
    // The only slot is busy: a newcomer is refused, the request in progress is kept.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: site.test\r\n\r\n").await.unwrap();
    let reply = read_response(&mut s).await;
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    let g = slow.await.unwrap();
    assert_eq!((g.status, &g.body[..]), (200, &b"slow"[..]));
}
