//! Forward-proxy mode: absolute-form requests, CONNECT tunnels (not cached), the client ACL,
//! PURGE restricted to admins, and /metrics.

mod proxy_support;

use appnet_web::proxy::ProxyConfig;
use proxy_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A forward proxy that may reach the test origins on loopback.
fn forward() -> ProxyConfig {
    ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        allow_dest: vec!["127.0.0.0/8".into()],
        ..Default::default()
    }
}

/// A forward proxy with the default destination rules (no internal addresses).
fn strict_forward() -> ProxyConfig {
    ProxyConfig { listen: "127.0.0.1:0".parse().unwrap(), ..Default::default() }
}

/// Sends raw bytes, returns the response head (up to the blank line, the peer closing, or 5 s).
async fn raw(addr: std::net::SocketAddr, req: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !out.windows(4).any(|w| w == b"\r\n\r\n") && out.len() < 65536 {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_client_host_header_cannot_poison_the_cache() {
    // The origin serves a different page per virtual host, and reflects X-Forwarded-Host.
    let origin = Origin::start(|req, _| {
        let host = req.headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or("");
        let body = if host == "evil.test" { "EVIL".to_string() } else { format!("good page for {host}") };
        let xfh = req.headers.get("x-forwarded-host").and_then(|v| v.to_str().ok()).unwrap_or("-");
        Reply::ok(&format!("{body} xfh={xfh}"), &[("cache-control", "max-age=60")])
    })
    .await;
    let proxy = run(forward()).await;
    let url = format!("{}/page.html", origin.url());
    let host = origin.addr.to_string();
    let poison =
        send(proxy.addr(), "GET", &url, &[("host", "evil.test"), ("x-forwarded-host", "evil.test")]).await;
    assert_eq!(origin.last().headers["host"], host.as_str(), "the absolute-form authority is the Host");
    assert!(origin.last().headers.get("x-forwarded-host").is_none());
    let clean = send(proxy.addr(), "GET", &url, &[("host", &host)]).await;
    assert_eq!(clean.x_cache(), "HIT");
    assert_eq!(clean.body, poison.body);
    assert_eq!(String::from_utf8_lossy(&clean.body), format!("good page for {host} xfh=-"));
    // Userinfo in the target is not part of the key nor of the Host sent.
    let with_user = format!("http://someone@{host}/page.html");
    let g = send(proxy.addr(), "GET", &with_user, &[("host", "evil.test")]).await;
    assert_eq!((g.x_cache(), &g.body[..]), ("HIT", &clean.body[..]));
    // Configured on, X-Forwarded-Host goes through.
    let mut cfg = forward();
    cfg.forward_host_overrides = true;
    let open = run(cfg).await;
    send(open.addr(), "GET", &format!("{}/other", origin.url()), &[("x-forwarded-host", "x.test")]).await;
    assert_eq!(origin.last().headers["x-forwarded-host"], "x.test");
}

#[tokio::test]
async fn reverse_mode_keys_and_forwards_the_absolute_form_authority() {
    let a = Origin::start(|req, _| {
        let host = req.headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        Reply::ok(&format!("for {host}"), &[("cache-control", "max-age=60")])
    })
    .await;
    let mut cfg = forward();
    cfg.origins.insert("a.test".into(), a.url());
    let proxy = run(cfg).await;
    let g = send(proxy.addr(), "GET", "http://a.test/x", &[("host", "evil.test")]).await;
    assert_eq!(String::from_utf8_lossy(&g.body), "for a.test");
    let h = send(proxy.addr(), "GET", "/x", &[("host", "a.test")]).await;
    assert_eq!((h.x_cache(), &h.body[..]), ("HIT", &b"for a.test"[..]));
}

#[tokio::test]
async fn internal_destinations_are_refused_unless_allowed() {
    let origin = Origin::start(|_, _| Reply::ok("secret", &[])).await;
    let proxy = run(strict_forward()).await;
    let port = origin.addr.port();
    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://0.0.0.0:{port}/"),
    ] {
        let g = send(proxy.addr(), "GET", &url, &[]).await;
        assert_eq!(g.status, 403, "{url}");
    }
    assert_eq!(origin.hits(), 0);
    // CONNECT only to 443 by default, and not to internal addresses on 443 either.
    let r =
        raw(proxy.addr(), &format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"))
            .await;
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    let r = raw(proxy.addr(), "CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    let mut cfg = strict_forward();
    cfg.connect_ports = vec![port];
    let open_port = run(cfg).await;
    let r = raw(
        open_port.addr(),
        &format!("CONNECT localhost:{port} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n"),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    assert_eq!(origin.hits(), 0);
}

#[tokio::test]
async fn the_proxy_never_forwards_to_itself() {
    let origin = Origin::start(|_, _| Reply::ok("x", &[("cache-control", "no-store")])).await;
    let proxy = run(forward()).await;
    // Its own metrics through itself (which would bypass purge_allow): refused.
    let g = send(proxy.addr(), "GET", &format!("http://{}/metrics", proxy.addr()), &[]).await;
    assert_eq!(g.status, 403);
    assert!(!String::from_utf8_lossy(&g.body).contains("appnet_proxy_requests_total"));
    let g =
        send(proxy.addr(), "GET", &format!("http://localhost:{}/metrics", proxy.addr().port()), &[]).await;
    assert_eq!(g.status, 403);
    // A request carrying this proxy's own Via token is a loop.
    send(proxy.addr(), "GET", &format!("{}/v", origin.url()), &[]).await;
    let via = origin.last().headers["via"].to_str().unwrap().to_string();
    let g = send(proxy.addr(), "GET", &format!("{}/v", origin.url()), &[("via", &via)]).await;
    assert_eq!(g.status, 403);
    assert_eq!(origin.hits(), 1);
    // Another proxy's Via is fine.
    let g = send(proxy.addr(), "GET", &format!("{}/v", origin.url()), &[("via", "1.1 other")]).await;
    assert_eq!(g.status, 200);
}

#[tokio::test]
async fn origin_errors_do_not_say_which_ports_are_open() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    // An open port that is not HTTP: accepts, says something else, closes.
    let junk = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let junk_port = junk.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = junk.accept().await {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await;
        }
    });
    let proxy = run(forward()).await;
    let a = send(proxy.addr(), "GET", &format!("http://127.0.0.1:{closed_port}/"), &[]).await;
    let b = send(proxy.addr(), "GET", &format!("http://127.0.0.1:{junk_port}/"), &[]).await;
    assert_eq!((a.status, b.status), (502, 502));
    let strip = |g: &Got, port: u16| String::from_utf8_lossy(&g.body).replace(&port.to_string(), "PORT");
    assert_eq!(strip(&a, closed_port), strip(&b, junk_port));
    assert!(!strip(&a, closed_port).to_lowercase().contains("refused"));
}

#[tokio::test]
async fn malformed_host_and_unknown_expectations_are_refused() {
    let origin = Origin::start(|_, _| Reply::ok("x", &[])).await;
    let proxy = run(forward()).await;
    let url = format!("{}/", origin.url());
    assert_eq!(send(proxy.addr(), "GET", &url, &[("host", "a b")]).await.status, 400);
    assert_eq!(send(proxy.addr(), "GET", &url, &[("expect", "something-else")]).await.status, 417);
    let r =
        raw(proxy.addr(), &format!("GET {url} HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n"))
            .await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let r = raw(proxy.addr(), &format!("GET {url} HTTP/1.1\r\nConnection: close\r\n\r\n")).await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert_eq!(origin.hits(), 0);
    let rev = reverse(&origin, |_| {}).await;
    assert_eq!(send(rev.addr(), "GET", "/", &[("host", "a b")]).await.status, 400);
    assert_eq!(origin.hits(), 0);
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
