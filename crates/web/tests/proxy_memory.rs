//! Memory per miss: large bodies stream to the client and into the store without the proxy
//! buffering whole objects. A slow client of a 40 MB miss keeps the in-flight bytes (parts of
//! bodies being stored in memory, chunks queued for clients: `appnet_proxy_inflight_bytes_peak`)
//! far below the object size; a miss that would exceed the in-flight budget streams through
//! uncached instead of buffering.

mod proxy_support;

use appnet_netkit::harness::wait_until;
use bytes::Bytes;
use proxy_support::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIG: usize = 40 * 1024 * 1024;

fn big_origin_body() -> Bytes {
    Bytes::from((0..BIG).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

async fn big_origin() -> (Origin, Bytes) {
    let body = big_origin_body();
    let b = body.clone();
    let origin = Origin::start(move |_, _| {
        let mut r = Reply::ok("", &[("cache-control", "max-age=600")]);
        r.body = b.clone();
        r
    })
    .await;
    (origin, body)
}

/// GETs `path` over a raw connection, reading the body slowly (64 KiB, then a pause);
/// returns the head and the body.
async fn slow_get(addr: SocketAddr, path: &str) -> (String, Vec<u8>) {
    tokio::time::timeout(Duration::from_secs(120), async {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = c.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let end = got.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
        (String::from_utf8_lossy(&got[..end]).into_owned(), got[end..].to_vec())
    })
    .await
    .expect("the slow download finishes")
}

async fn metric(addr: SocketAddr, name: &str) -> f64 {
    let m = send(addr, "GET", "/metrics", &[]).await;
    let text = String::from_utf8_lossy(&m.body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[tokio::test]
async fn a_slow_reader_of_a_large_miss_keeps_inflight_bytes_bounded() {
    let (origin, body) = big_origin().await;
    let proxy = reverse(&origin, |c| c.max_inflight_bytes = 4 << 20).await;
    let (head, got) = slow_get(proxy.addr(), "/big").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(got.len(), BIG);
    assert!(got == body[..], "the body arrives intact");
    let peak = metric(proxy.addr(), "appnet_proxy_inflight_bytes_peak").await;
    assert!(peak > 0.0 && peak < (8 << 20) as f64, "in-flight peak {peak} for a {BIG}-byte object");
    // Over the budget, the object streamed through uncached rather than being buffered.
    assert_eq!(metric(proxy.addr(), "appnet_proxy_inflight_refused").await, 1.0);
    assert_eq!(send(proxy.addr(), "GET", "/big", &[("cache-control", "only-if-cached")]).await.status, 504);
    let addr = proxy.addr();
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || async move {
            metric(addr, "appnet_proxy_inflight_bytes").await == 0.0
        })
        .await,
        "in-flight bytes return to zero"
    );
}

#[tokio::test]
async fn a_slow_reader_of_a_large_miss_to_disk_buffers_little_and_stores_it() {
    let dir = TempDir::new("slow-disk");
    let (origin, body) = big_origin().await;
    let d = dir.path().to_path_buf();
    let proxy = reverse(&origin, |c| c.cache_dir = Some(d)).await;
    let (head, got) = slow_get(proxy.addr(), "/big").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(got == body[..]);
    let peak = metric(proxy.addr(), "appnet_proxy_inflight_bytes_peak").await;
    assert!(peak < (8 << 20) as f64, "in-flight peak {peak} for a {BIG}-byte object");
    let addr = proxy.addr();
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || async move {
            send(addr, "GET", "/big", &[("cache-control", "only-if-cached")]).await.status == 200
        })
        .await,
        "stored on disk"
    );
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn a_large_object_within_the_budget_is_stored_in_pieces_and_served_whole() {
    let body = Bytes::from((0..3_000_000usize).map(|i| (i % 253) as u8).collect::<Vec<u8>>());
    let b = body.clone();
    let origin = Origin::start(move |_, _| {
        let mut r = Reply::ok("", &[("cache-control", "max-age=600")]);
        r.body = b.clone();
        r
    })
    .await;
    let proxy = reverse(&origin, |_| {}).await;
    assert_eq!(send(proxy.addr(), "GET", "/mid", &[]).await.body, body);
    let addr = proxy.addr();
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(10), || async move {
            send(addr, "GET", "/mid", &[("cache-control", "only-if-cached")]).await.status == 200
        })
        .await
    );
    let hit = send(proxy.addr(), "GET", "/mid", &[]).await;
    assert_eq!((hit.x_cache(), hit.body.len()), ("HIT", body.len()));
    assert!(hit.body == body);
    // A range across the 256 KiB pieces.
    let r = send(proxy.addr(), "GET", "/mid", &[("range", "bytes=262000-1000000")]).await;
    assert_eq!(r.status, 206);
    assert!(r.body[..] == body[262_000..=1_000_000]);
    // Once stored, nothing is in flight any more.
    assert_eq!(metric(proxy.addr(), "appnet_proxy_inflight_bytes").await, 0.0);
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn collapsed_waiters_fetch_for_themselves_when_the_leader_stops_storing() {
    // Larger than what socket buffers can absorb for a stalled client.
    let body = Bytes::from(vec![5u8; 24 * 1024 * 1024]);
    let b = body.clone();
    let origin = Origin::start(move |_, _| {
        let mut r = Reply::ok("", &[("cache-control", "max-age=600")]);
        r.body = b.clone();
        r
    })
    .await;
    // The budget is one piece: the leader gives up storing after its first 256 KiB.
    let proxy = reverse(&origin, |c| {
        c.max_inflight_bytes = 256 * 1024;
        c.origin_timeout_secs = 20;
    })
    .await;
    let addr = proxy.addr();
    // The leader's client reads the start of the body, then stalls.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let mut leader = socket.connect(addr).await.unwrap();
    leader.write_all(b"GET /huge HTTP/1.1\r\nHost: site.test\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), leader.read(&mut buf)).await.unwrap().unwrap();
    assert!(n > 0);
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(10), || async move {
            metric(addr, "appnet_proxy_inflight_refused").await == 1.0
        })
        .await,
        "the leader stopped storing"
    );
    // Others asking for it now are not held behind the stalled leader (until the origin
    // timeout): they fetch for themselves.
    let started = std::time::Instant::now();
    let tasks: Vec<_> =
        (0..3).map(|_| tokio::spawn(async move { send(addr, "GET", "/huge", &[]).await })).collect();
    for t in tasks {
        let g = t.await.unwrap();
        assert_eq!((g.status, g.body.len()), (200, body.len()));
    }
    // Held behind the leader they would wait for the origin timeout (20 s); 15 s leaves three
    // 24 MB transfers room on a loaded machine and still tells the two apart.
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    drop(leader);
}
