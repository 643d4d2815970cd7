//! TLS on both sides of the proxy: `https://` origins (the crate's own web server with a
//! lab-CA certificate) reached over pooled TLS connections with ALPN h2 or http/1.1 and checked
//! against the trusted CAs, and the proxy's own TLS listener serving HTTP/1.1 and HTTP/2.

mod proxy_support;

use appnet_netkit::harness::{Running, any_loopback, start, wait_tcp};
use appnet_web::proxy::ProxyConfig;
use appnet_web::{WebConfig, WebServer};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use proxy_support::*;
use rustls::pki_types::pem::PemObject;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A site whose files are a month old, so the proxy gives them heuristic freshness.
fn site(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    let month_ago = SystemTime::now() - Duration::from_secs(30 * 86_400);
    for (name, body) in [("page.txt", "a page over https\n"), ("other.txt", "another page\n")] {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(month_ago).unwrap();
    }
    dir
}

/// The crate's web server over TLS with a certificate from the lab CA in `ca_dir`; `vhost`
/// gets its own site directory.
async fn https_origin(root: &Path, ca_dir: &Path, vhost: Option<(&str, &Path)>) -> Running {
    let mut cfg = WebConfig {
        listen: any_loopback(),
        root: root.to_path_buf(),
        tls: true,
        ca_dir: Some(ca_dir.to_path_buf()),
        access_log: false,
        ..WebConfig::default()
    };
    if let Some((name, dir)) = vhost {
        cfg.vhosts.insert(name.into(), dir.to_path_buf());
    }
    let running = start(WebServer::bind(cfg).await.expect("origin binds"));
    wait_tcp(running.addr(), Duration::from_secs(5)).await.unwrap();
    running
}

/// A reverse proxy for `origin_url` trusting only the lab CA in `ca_dir` (no system roots, so
/// the test does not depend on the machine's store).
fn tls_reverse(origin_url: String, ca_dir: &Path) -> ProxyConfig {
    ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        reverse: Some(origin_url),
        ca_dir: Some(ca_dir.to_path_buf()),
        origin_system_roots: false,
        ..Default::default()
    }
}

fn text(g: &Got) -> String {
    String::from_utf8_lossy(&g.body).into_owned()
}

#[tokio::test]
async fn https_origin_responses_are_cached_and_hosts_kept_over_h2_and_http11() {
    let (root, vhost_root, ca) = (site("tls-root"), site("tls-vhost"), TempDir::new("tls-ca"));
    std::fs::write(vhost_root.path().join("page.txt"), "the vhost's page\n").unwrap();
    let origin = https_origin(root.path(), ca.path(), Some(("site.test", vhost_root.path()))).await;
    let url = format!("https://localhost:{}", origin.addr().port());
    for h2 in [true, false] {
        let mut cfg = tls_reverse(url.clone(), ca.path());
        cfg.origin_h2 = h2;
        let proxy = run(cfg).await;
        let a = send(proxy.addr(), "GET", "/page.txt", &[("host", "localhost")]).await;
        let b = send(proxy.addr(), "GET", "/page.txt", &[("host", "localhost")]).await;
        assert_eq!((a.status, a.x_cache(), text(&a)), (200, "MISS", "a page over https\n".into()));
        assert_eq!((b.status, b.x_cache(), text(&b)), (200, "HIT", "a page over https\n".into()));
        // The client's Host picks the origin's virtual host (it is :authority over HTTP/2).
        let v = send(proxy.addr(), "GET", "/page.txt", &[("host", "site.test")]).await;
        assert_eq!((v.status, text(&v)), (200, "the vhost's page\n".into()));
        // The origin's echo app shows the protocol the proxy chose by ALPN.
        let echo = text(&send(proxy.addr(), "GET", "/echo", &[("host", "site.test")]).await);
        let want = if h2 { "HTTP/2.0" } else { "HTTP/1.1" };
        assert!(echo.lines().next().unwrap().ends_with(want), "h2={h2}: {echo}");
        assert!(echo.contains("host: site.test"), "{echo}");
        // Request bodies stream through to the TLS origin (POST passes, never cached).
        let posted =
            send_body(proxy.addr(), "POST", "/echo", &[("host", "site.test")], Bytes::from_static(b"form=1"))
                .await;
        assert_eq!((posted.status, posted.x_cache()), (200, "PASS"));
        assert!(
            text(&posted).starts_with("POST ") && text(&posted).ends_with("\n\nform=1"),
            "{}",
            text(&posted)
        );
    }
}

#[tokio::test]
async fn https_origin_connections_are_pooled() {
    let (root, ca) = (site("tls-pool"), TempDir::new("tls-pool-ca"));
    let origin_server = WebServer::bind(WebConfig {
        listen: any_loopback(),
        root: root.path().to_path_buf(),
        tls: true,
        ca_dir: Some(ca.path().to_path_buf()),
        access_log: false,
        ..WebConfig::default()
    })
    .await
    .unwrap();
    let stats = origin_server.stats();
    let origin = start(origin_server);
    wait_tcp(origin.addr(), Duration::from_secs(5)).await.unwrap();
    for h2 in [true, false] {
        let mut cfg = tls_reverse(format!("https://127.0.0.1:{}", origin.addr().port()), ca.path());
        cfg.origin_h2 = h2;
        let proxy = run(cfg).await;
        let mut after_first = 0;
        for i in 0..5 {
            // no-store responses: every request goes to the origin.
            let g = send(proxy.addr(), "GET", &format!("/echo?{i}"), &[]).await;
            assert_eq!(g.status, 200);
            if i == 0 {
                after_first = stats.connections.get();
            }
        }
        // The first request's TLS connection carried the next four (sequential, kept alive).
        assert_eq!(stats.connections.get(), after_first, "h2={h2}");
    }
}

#[tokio::test]
async fn origins_are_verified_against_the_trusted_cas() {
    let (root, ca, other_ca) = (site("tls-verify"), TempDir::new("tls-ca1"), TempDir::new("tls-ca2"));
    let origin = https_origin(root.path(), ca.path(), None).await;
    let url = format!("https://localhost:{}", origin.addr().port());
    // Signed by a CA the proxy does not trust: 502 saying why.
    appnet_web::tls::LabCa::open(other_ca.path()).unwrap();
    let proxy = run(tls_reverse(url.clone(), other_ca.path())).await;
    let g = send(proxy.addr(), "GET", "/page.txt", &[]).await;
    assert_eq!(g.status, 502);
    assert!(text(&g).to_lowercase().contains("certificate"), "{}", text(&g));
    // A name the certificate does not cover fails too.
    let wrong_name = format!("https://127.0.0.2:{}", origin.addr().port());
    let proxy = run(tls_reverse(wrong_name, ca.path())).await;
    assert_eq!(send(proxy.addr(), "GET", "/page.txt", &[]).await.status, 502);
    // --origin-ca: the origin's CA as an extra file, lab CA off.
    let mut cfg = tls_reverse(url, other_ca.path());
    cfg.origin_lab_ca = false;
    cfg.origin_ca = vec![ca.path().join("ca.pem")];
    let proxy = run(cfg).await;
    assert_eq!(send(proxy.addr(), "GET", "/page.txt", &[]).await.status, 200);
    // Nothing trusted at all is a configuration error at start-up.
    let mut cfg = tls_reverse("https://localhost:1".into(), other_ca.path());
    cfg.origin_lab_ca = false;
    assert!(appnet_web::proxy::ProxyServer::bind(cfg).await.is_err());
}

/// A TLS client of the proxy trusting `ca_pem`: one GET over HTTP/2 or HTTP/1.1 (by ALPN).
async fn tls_get(addr: SocketAddr, ca_pem: &Path, h2: bool, path: &str) -> (String, Got) {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca_pem).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cc = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cc.alpn_protocols = if h2 { vec![b"h2".to_vec()] } else { vec![b"http/1.1".to_vec()] };
    let fut = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cc)).connect(name, tcp).await.unwrap();
        let alpn = String::from_utf8_lossy(tls.get_ref().1.alpn_protocol().unwrap_or(b"")).into_owned();
        let authority = format!("localhost:{}", addr.port());
        let resp = if h2 {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
            tokio::spawn(conn);
            let req = Request::get(format!("https://{authority}{path}")).body(Empty::<Bytes>::new()).unwrap();
            sender.send_request(req).await.unwrap()
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
            tokio::spawn(conn);
            let req = Request::get(path).header("host", authority).body(Empty::<Bytes>::new()).unwrap();
            sender.send_request(req).await.unwrap()
        };
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (alpn, Got { status: parts.status.as_u16(), headers: parts.headers, body })
    };
    tokio::time::timeout(Duration::from_secs(10), fut).await.expect("answer within 10 s")
}

#[tokio::test]
async fn the_tls_listener_serves_http11_and_h2_from_one_cache() {
    let origin =
        Origin::start(|_, n| Reply::ok(&format!("copy {n}"), &[("cache-control", "max-age=60")])).await;
    let ca = TempDir::new("listener-ca");
    let proxy = reverse(&origin, |c| {
        c.tls = true;
        c.ca_dir = Some(ca.path().to_path_buf());
    })
    .await;
    let ca_pem = ca.path().join("ca.pem");
    let (alpn, a) = tls_get(proxy.addr(), &ca_pem, false, "/x").await;
    assert_eq!(
        (alpn.as_str(), a.status, a.x_cache(), &a.body[..]),
        ("http/1.1", 200, "MISS", &b"copy 1"[..])
    );
    let (alpn, b) = tls_get(proxy.addr(), &ca_pem, true, "/x").await;
    assert_eq!((alpn.as_str(), b.status, b.x_cache(), &b.body[..]), ("h2", 200, "HIT", &b"copy 1"[..]));
    assert_eq!(origin.hits(), 1);
    // Cleartext clients get no answer from a TLS listener.
    let refused = tokio::time::timeout(Duration::from_secs(5), async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
        s.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 16];
        matches!(s.read(&mut buf).await, Ok(0) | Err(_)) || !buf.starts_with(b"HTTP/1.1 200")
    })
    .await
    .unwrap();
    assert!(refused);
}
