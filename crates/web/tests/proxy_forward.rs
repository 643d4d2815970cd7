//! Forward-proxy mode: absolute-form requests, CONNECT tunnels (not cached), the client ACL,
//! PURGE restricted to admins, and /metrics.

mod proxy_support;

use appnet_web::proxy::ProxyConfig;
use proxy_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn forward() -> ProxyConfig {
    ProxyConfig { listen: "127.0.0.1:0".parse().unwrap(), ..Default::default() }
}

#[tokio::test]
async fn absolute_form_requests_are_fetched_and_cached() {
    let origin =
        Origin::start(|_, n| Reply::ok(&format!("page {n}"), &[("cache-control", "max-age=60")])).await;
    let proxy = run(forward()).await;
    let url = format!("{}/index.html", origin.url());
    let a = send(proxy.addr(), "GET", &url, &[("host", &origin.addr.to_string())]).await;
    let b = send(proxy.addr(), "GET", &url, &[("host", &origin.addr.to_string())]).await;
    assert_eq!((a.x_cache(), b.x_cache(), &b.body[..]), ("MISS", "HIT", &b"page 1"[..]));
    assert_eq!(origin.last().uri, "/index.html");
    // Origin-form requests are not proxied.
    assert_eq!(send(proxy.addr(), "GET", "/index.html", &[]).await.status, 400);
}

#[tokio::test]
async fn connect_tunnels_bytes_and_respects_the_port_list() {
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let mut cfg = forward();
    cfg.connect_ports = vec![echo_addr.port()];
    let proxy = run(cfg).await;
    let mut s = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(format!("CONNECT {echo_addr} HTTP/1.1\r\nHost: {echo_addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        assert_eq!(s.read(&mut byte).await.unwrap(), 1);
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
    s.write_all(b"ping through the tunnel").await.unwrap();
    let mut back = [0u8; 23];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"ping through the tunnel");
    // A port outside the list is refused.
    let mut s = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(b"CONNECT 127.0.0.1:25 HTTP/1.1\r\nHost: 127.0.0.1:25\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 12];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 403");
}

#[tokio::test]
async fn clients_outside_the_allow_list_are_refused() {
    let origin = Origin::start(|_, _| Reply::ok("x", &[])).await;
    let mut cfg = forward();
    cfg.allow = vec!["10.0.0.0/8".into()];
    let proxy = run(cfg).await;
    let g = send(proxy.addr(), "GET", &format!("{}/", origin.url()), &[]).await;
    assert_eq!(g.status, 403);
    assert_eq!(origin.hits(), 0);
}

#[tokio::test]
async fn purge_is_restricted_and_drops_the_object() {
    let origin = Origin::start(|_, n| Reply::ok(&format!("v{n}"), &[("cache-control", "max-age=600")])).await;
    let proxy = reverse(&origin, |_| {}).await;
    send(proxy.addr(), "GET", "/p", &[]).await;
    assert_eq!(send(proxy.addr(), "GET", "/p", &[]).await.x_cache(), "HIT");
    assert_eq!(send(proxy.addr(), "PURGE", "/p", &[]).await.status, 200);
    assert_eq!(send(proxy.addr(), "PURGE", "/p", &[]).await.status, 404);
    assert_eq!(send(proxy.addr(), "GET", "/p", &[]).await.x_cache(), "MISS");
    let strict = reverse(&origin, |c| c.purge_allow = vec!["192.0.2.1".into()]).await;
    send(strict.addr(), "GET", "/p", &[]).await;
    assert_eq!(send(strict.addr(), "PURGE", "/p", &[]).await.status, 403);
    assert_eq!(send(strict.addr(), "GET", "/p", &[]).await.x_cache(), "HIT");
}

#[tokio::test]
async fn metrics_count_hits_misses_revalidations_and_bytes_saved() {
    let origin = Origin::start(|_, _| Reply::ok("0123456789", &[("cache-control", "max-age=60")])).await;
    let proxy = run(forward()).await;
    let url = format!("{}/m", origin.url());
    for _ in 0..4 {
        send(proxy.addr(), "GET", &url, &[]).await;
    }
    let m = String::from_utf8(send(proxy.addr(), "GET", "/metrics", &[]).await.body.to_vec()).unwrap();
    let value = |name: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    };
    assert_eq!(value("appnet_proxy_hits_total"), 3.0);
    assert_eq!(value("appnet_proxy_misses_total"), 1.0);
    assert_eq!(value("appnet_proxy_bytes_saved_total"), 30.0);
    assert_eq!(value("appnet_proxy_hit_ratio"), 0.75);
    assert!(m.contains("appnet_proxy_revalidations_total"));
}

#[tokio::test]
async fn reverse_mode_routes_by_host_to_many_origins() {
    let a = Origin::start(|_, _| Reply::ok("site a", &[("cache-control", "max-age=60")])).await;
    let b = Origin::start(|_, _| Reply::ok("site b", &[("cache-control", "max-age=60")])).await;
    let mut cfg = forward();
    cfg.origins.insert("a.test".into(), a.url());
    cfg.origins.insert("b.test".into(), b.url());
    let proxy = run(cfg).await;
    let ga = send(proxy.addr(), "GET", "/", &[("host", "a.test")]).await;
    let gb = send(proxy.addr(), "GET", "/", &[("host", "b.test:80")]).await;
    assert_eq!((&ga.body[..], &gb.body[..]), (&b"site a"[..], &b"site b"[..]));
    // Same path, different hosts: separate cache entries.
    assert_eq!(send(proxy.addr(), "GET", "/", &[("host", "a.test")]).await.x_cache(), "HIT");
    assert_eq!(send(proxy.addr(), "GET", "/", &[("host", "c.test")]).await.status, 421);
}
