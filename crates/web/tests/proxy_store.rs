//! Storage: the disk store survives a restart and never serves a truncated body after a crash;
//! the memory store stays within its bound; large bodies stream through while being stored.

mod proxy_support;

use appnet_netkit::harness::wait_until;
use proxy_support::*;
use std::time::Duration;

async fn wait_stored(proxy: &appnet_netkit::harness::Running, path: &str) {
    let addr = proxy.addr();
    let path = path.to_string();
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(10), || {
            let path = path.clone();
            async move { send(addr, "GET", &path, &[("cache-control", "only-if-cached")]).await.status == 200 }
        })
        .await,
        "{path} was not stored"
    );
}

#[tokio::test]
async fn disk_store_survives_a_restart() {
    let dir = TempDir::new("restart");
    let origin =
        Origin::start(|_, n| Reply::ok(&format!("body {n}"), &[("cache-control", "max-age=600")])).await;
    let d = dir.path().to_path_buf();
    let proxy = reverse(&origin, |c| c.cache_dir = Some(d.clone())).await;
    assert_eq!(send(proxy.addr(), "GET", "/keep", &[]).await.x_cache(), "MISS");
    wait_stored(&proxy, "/keep").await;
    proxy.stop().await.unwrap();
    let proxy = reverse(&origin, |c| c.cache_dir = Some(d.clone())).await;
    let g = send(proxy.addr(), "GET", "/keep", &[]).await;
    assert_eq!((g.x_cache(), &g.body[..]), ("HIT", &b"body 1"[..]));
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn a_crash_mid_write_never_serves_a_truncated_body() {
    let dir = TempDir::new("crash");
    let big = "x".repeat(100_000);
    let b2 = big.clone();
    let origin = Origin::start(move |_, _| Reply::ok(&b2, &[("cache-control", "max-age=600")])).await;
    let d = dir.path().to_path_buf();
    let proxy = reverse(&origin, |c| c.cache_dir = Some(d.clone())).await;
    send(proxy.addr(), "GET", "/a", &[]).await;
    send(proxy.addr(), "GET", "/b", &[]).await;
    wait_stored(&proxy, "/a").await;
    wait_stored(&proxy, "/b").await;
    proxy.stop().await.unwrap();
    // Simulate the crash states: a body cut short under its final name (as if the disk lost
    // the tail), an orphan temporary file, and metadata without a body.
    let mut bodies: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "body"))
        .collect();
    bodies.sort();
    assert_eq!(bodies.len(), 2);
    let f = std::fs::OpenOptions::new().write(true).open(&bodies[0]).unwrap();
    f.set_len(50_000).unwrap();
    std::fs::write(dir.path().join("00000000000000ff.body.tmp"), b"partial").unwrap();
    std::fs::remove_file(&bodies[1]).unwrap();
    let proxy = reverse(&origin, |c| c.cache_dir = Some(d.clone())).await;
    for path in ["/a", "/b"] {
        let g = send(proxy.addr(), "GET", path, &[]).await;
        assert_eq!(g.x_cache(), "MISS", "{path}: a damaged object must not be served");
        assert_eq!(g.body.len(), 100_000);
    }
    assert!(!dir.path().join("00000000000000ff.body.tmp").exists(), "leftover temp file removed");
}

#[tokio::test]
async fn memory_store_stays_within_its_bound_and_keeps_recently_used_objects() {
    let origin =
        Origin::start(|_, _| Reply::ok(&"y".repeat(1000), &[("cache-control", "max-age=600")])).await;
    let running = reverse(&origin, |c| c.memory_size = 4_000).await;
    let addr = running.addr();
    send(addr, "GET", "/hot", &[]).await;
    wait_stored(&running, "/hot").await;
    for i in 0..10 {
        send(addr, "GET", &format!("/cold{i}"), &[]).await;
        // Keep /hot referenced.
        send(addr, "GET", "/hot", &[]).await;
    }
    let metrics = String::from_utf8(send(addr, "GET", "/metrics", &[]).await.body.to_vec()).unwrap();
    let stored: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("appnet_proxy_stored_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .expect("stored bytes gauge");
    assert!(stored <= 4_000, "stored {stored} bytes with a 4000-byte bound");
    assert_eq!(send(addr, "GET", "/hot", &[]).await.x_cache(), "HIT");
}

#[tokio::test]
async fn large_bodies_stream_through_and_are_stored() {
    let big: bytes::Bytes = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into();
    let b2 = big.clone();
    let origin = Origin::start(move |_, _| Reply {
        status: 200,
        headers: vec![("cache-control".into(), "max-age=600".into())],
        body: b2.clone(),
        delay: Duration::ZERO,
    })
    .await;
    let dir = TempDir::new("large");
    let d = dir.path().to_path_buf();
    let proxy = reverse(&origin, |c| c.cache_dir = Some(d.clone())).await;
    let g = send(proxy.addr(), "GET", "/big", &[]).await;
    assert_eq!(g.body, big);
    wait_stored(&proxy, "/big").await;
    let g = send(proxy.addr(), "GET", "/big", &[]).await;
    assert_eq!((g.x_cache(), g.body == big), ("HIT", true));
    // Objects above the size limit pass through uncached.
    let small = reverse(&origin, |c| c.max_object_size = 1024).await;
    assert_eq!(send(small.addr(), "GET", "/big", &[]).await.body.len(), big.len());
    assert_eq!(send(small.addr(), "GET", "/big", &[]).await.x_cache(), "MISS");
}

#[tokio::test]
async fn bodies_reach_the_client_before_the_origin_has_finished() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A raw origin that sends the head and half the body, then waits for a signal.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let oaddr = listener.local_addr().unwrap();
    let go = std::sync::Arc::new(tokio::sync::Notify::new());
    let g2 = go.clone();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await.unwrap();
        let half = vec![b'a'; 64 * 1024];
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 131072\r\nCache-Control: max-age=60\r\n\r\n")
            .await
            .unwrap();
        s.write_all(&half).await.unwrap();
        g2.notified().await;
        s.write_all(&half).await.unwrap();
        let _ = s.read(&mut buf).await;
    });
    let proxy = run(appnet_web::proxy::ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        reverse: Some(format!("http://{oaddr}")),
        ..Default::default()
    })
    .await;
    let mut c = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    c.write_all(b"GET /big HTTP/1.1\r\nHost: site.test\r\n\r\n").await.unwrap();
    // The first half arrives while the origin is still holding back the second.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    let first = tokio::time::timeout(Duration::from_secs(5), async {
        while got.len() < 60 * 1024 {
            let n = c.read(&mut buf).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(first.is_ok(), "the client got nothing until the origin finished");
    go.notify_one();
    tokio::time::timeout(Duration::from_secs(5), async {
        let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        while got.len() - head_end < 131_072 {
            let n = c.read(&mut buf).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the rest arrives");
    wait_stored(&proxy, "/big").await;
}
