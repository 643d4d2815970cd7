//! HTTP/3: the quinn/h3 client against `web serve --tls --http3` — the same files, vhosts,
//! conditional and range semantics as HTTP/1.1 and HTTP/2, Alt-Svc on the TCP side, a malformed
//! request resetting only its stream, 0-RTT resumption, and connection migration.

mod common;
use appnet_web::client::{self, Proto};
use appnet_web::h3::client::{Http3Client, Roots};
use common::*;
use http::{HeaderMap, HeaderValue, Method, header};
use std::net::SocketAddr;
use std::time::Duration;

struct H3Site {
    _site: TempDir,
    /// The vhost's directory, removed with the site (also when a test fails).
    _vhost: Option<TempDir>,
    ca: TempDir,
    srv: appnet_netkit::harness::Running,
}

impl H3Site {
    fn roots(&self) -> Roots {
        Roots::CaFile(self.ca.path().join("ca.pem"))
    }

    fn addr(&self) -> SocketAddr {
        self.srv.addr()
    }

    async fn client(&self, name: &str) -> Http3Client {
        Http3Client::connect(self.addr(), name, self.roots(), None).await.expect("HTTP/3 connect")
    }
}

async fn h3_site(tag: &str) -> H3Site {
    let site = site(tag);
    let other = TempDir::new(&format!("{tag}-vhost"));
    std::fs::write(other.path().join("index.html"), "the other site\n").unwrap();
    let ca = TempDir::new(&format!("{tag}-ca"));
    let mut cfg = config(site.path());
    cfg.tls = true;
    cfg.http3 = true;
    cfg.ca_dir = Some(ca.path().to_path_buf());
    cfg.vhosts.insert("www.other.test".into(), other.path().to_path_buf());
    let srv = serve(cfg).await;
    H3Site { _site: site, _vhost: Some(other), ca, srv }
}

#[tokio::test]
async fn get_conditional_range_and_vhost_over_h3() {
    let s = h3_site("h3-get").await;
    let c = s.client("localhost").await;
    let (status, body) = c.get("/digits.txt").await.unwrap();
    assert_eq!((status, body.as_slice()), (200, &b"0123456789"[..]));

    let (head, _) = c.request(Method::GET, "/digits.txt", HeaderMap::new()).await.unwrap();
    let etag = head.headers().get(header::ETAG).expect("ETag").clone();
    assert!(head.headers().get(header::ALT_SVC).is_none(), "no Alt-Svc over HTTP/3 itself");
    let mut h = HeaderMap::new();
    h.insert(header::IF_NONE_MATCH, etag);
    let (head, body) = c.request(Method::GET, "/digits.txt", h).await.unwrap();
    assert_eq!(head.status(), 304);
    assert!(body.is_empty());

    let mut h = HeaderMap::new();
    h.insert(header::RANGE, HeaderValue::from_static("bytes=2-4"));
    let (head, body) = c.request(Method::GET, "/digits.txt", h).await.unwrap();
    assert_eq!(head.status(), 206);
    assert_eq!(&body[..], b"234");

    // A 5 MB file arrives whole, next to small ones on the same connection.
    let (big, small) = tokio::join!(c.get("/big.bin"), c.get("/style.css"));
    let big = big.unwrap();
    assert_eq!(big.0, 200);
    assert_eq!(big.1.len(), 5_000_000);
    assert!(big.1.iter().enumerate().all(|(i, b)| *b == (i as u32 % 251) as u8));
    assert_eq!(small.unwrap().0, 200);

    let other = s.client("www.other.test").await;
    let (status, body) = other.get("/").await.unwrap();
    assert_eq!((status, body.as_slice()), (200, &b"the other site\n"[..]));
    assert_eq!(c.get("/missing").await.unwrap().0, 404);
}

#[tokio::test]
async fn tcp_responses_advertise_h3_with_alt_svc() {
    let s = h3_site("h3-altsvc").await;
    let url = format!("https://localhost:{}/digits.txt", s.addr().port());
    let ca = s.ca.path().join("ca.pem");
    for proto in [Proto::Http11, Proto::Http2] {
        let resp = client::get_at(&url, proto, Some(&ca), Duration::from_secs(10), Some(s.addr().ip()))
            .await
            .unwrap();
        let alt = resp.headers().get(header::ALT_SVC).expect("Alt-Svc").to_str().unwrap();
        assert!(alt.starts_with(&format!("h3=\":{}\"", s.addr().port())), "{proto:?}: {alt}");
    }
}

#[tokio::test]
async fn a_malformed_request_resets_only_its_stream() {
    let s = h3_site("h3-malformed").await;
    let c = s.client("localhost").await;
    let mut bad = HeaderMap::new();
    bad.insert(header::CONNECTION, HeaderValue::from_static("close"));
    let (bad, good) = tokio::join!(c.request(Method::GET, "/digits.txt", bad), c.get("/index.html"));
    assert!(bad.is_err(), "a request with Connection: must be reset (RFC 9114 §4.2)");
    assert_eq!(good.unwrap().0, 200);
    // The connection itself goes on.
    assert_eq!(c.get("/digits.txt").await.unwrap().1, b"0123456789");
}

#[tokio::test]
async fn zero_rtt_resumption_is_accepted_for_get() {
    let s = h3_site("h3-0rtt").await;
    let tickets = s.ca.path().join("tickets");
    let first = Http3Client::connect(s.addr(), "localhost", s.roots(), Some(&tickets)).await.unwrap();
    assert_eq!(first.get("/digits.txt").await.unwrap().0, 200);
    assert!(!first.used_0rtt());
    first.close().await;
    let second = Http3Client::connect(s.addr(), "localhost", s.roots(), Some(&tickets)).await.unwrap();
    let (status, body) = second.get("/digits.txt").await.unwrap();
    assert_eq!((status, body.as_slice()), (200, &b"0123456789"[..]));
    assert!(second.used_0rtt(), "the resumed connection's early data was accepted");
}

#[tokio::test]
async fn a_client_that_changes_address_keeps_its_connection() {
    let s = h3_site("h3-migrate").await;
    let c = s.client("localhost").await;
    assert_eq!(c.get("/digits.txt").await.unwrap().0, 200);
    let before = c.local_addr().unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    c.rebind(socket).unwrap();
    assert_ne!(c.local_addr().unwrap().port(), before.port());
    let (status, body) = c.get("/digits.txt").await.unwrap();
    assert_eq!((status, body.as_slice()), (200, &b"0123456789"[..]));
}

#[tokio::test]
async fn http3_without_tls_is_refused_at_bind() {
    let site = site("h3-notls");
    let mut cfg = config(site.path());
    cfg.http3 = true;
    let err = appnet_web::WebServer::bind(cfg).await.err().expect("no HTTP/3 without TLS");
    assert!(err.to_string().contains("--tls"), "{err}");
}

async fn limited_site(tag: &str, max_connections: usize, max_per_ip: usize) -> H3Site {
    let site = site(tag);
    let ca = TempDir::new(&format!("{tag}-ca"));
    let mut cfg = config(site.path());
    cfg.tls = true;
    cfg.http3 = true;
    cfg.ca_dir = Some(ca.path().to_path_buf());
    cfg.max_connections = max_connections;
    cfg.max_per_ip = Some(max_per_ip);
    cfg.header_timeout_secs = 1;
    let srv = serve(cfg).await;
    H3Site { _site: site, _vhost: None, ca, srv }
}

#[tokio::test]
async fn one_address_holds_at_most_its_share_and_silent_connections_are_cut() {
    let s = limited_site("h3-caps", 100, 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(s.client("localhost").await);
    }
    // The fourth from the same address is refused (CONNECTION_REFUSED), not queued.
    let fourth = Http3Client::connect(s.addr(), "localhost", s.roots(), None).await;
    let refused = match fourth {
        Err(_) => true,
        Ok(c) => c.get("/digits.txt").await.is_err(),
    };
    assert!(refused, "a fourth connection from one address must be refused");
    // Connections that never send a request are closed at the header timeout (1 s), which
    // frees the address's slots for a client that does.
    let freed =
        appnet_netkit::harness::wait_until(Duration::from_secs(10), Duration::from_millis(200), || async {
            match Http3Client::connect(s.addr(), "localhost", s.roots(), None).await {
                Ok(c) => c.get("/digits.txt").await.is_ok_and(|(st, _)| st == 200),
                Err(_) => false,
            }
        })
        .await;
    assert!(freed, "silent connections must be cut and their slots reused");
    for c in held {
        assert!(c.get("/digits.txt").await.is_err(), "a silent connection was left open");
    }
}

#[tokio::test]
async fn past_half_the_slots_newcomers_are_validated_by_retry_and_still_served() {
    // max_connections 4: from the third connection on, unvalidated newcomers get a Retry;
    // a real client answers it and is served.
    let s = limited_site("h3-retry", 4, 4).await;
    let a = s.client("localhost").await;
    let b = s.client("localhost").await;
    assert_eq!(a.get("/digits.txt").await.unwrap().0, 200);
    assert_eq!(b.get("/digits.txt").await.unwrap().0, 200);
    let c = s.client("localhost").await;
    assert_eq!(c.get("/digits.txt").await.unwrap().0, 200);
}

#[tokio::test]
async fn junk_datagrams_and_a_handshake_burst_leave_the_server_serving() {
    let s = limited_site("h3-flood", 16, 64).await;
    // 2000 datagrams of junk, some shaped like long-header Initials.
    let junk = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..2000u32 {
        let mut d = vec![0u8; 1200];
        for (j, b) in d.iter_mut().enumerate() {
            *b = (i.wrapping_mul(2654435761).wrapping_add(j as u32 * 40503) >> 13) as u8;
        }
        if i % 2 == 0 {
            d[0] = 0xc0;
            d[1..5].copy_from_slice(&1u32.to_be_bytes());
        }
        let _ = junk.send_to(&d, s.addr()).await;
    }
    // 48 handshakes at once against 16 slots: the surplus is evicted or refused, nobody hangs.
    let burst = (0..48).map(|_| Http3Client::connect(s.addr(), "localhost", s.roots(), None));
    let clients: Vec<_> = futures_util::future::join_all(burst).await;
    drop(clients);
    let served =
        appnet_netkit::harness::wait_until(Duration::from_secs(10), Duration::from_millis(100), || async {
            match Http3Client::connect(s.addr(), "localhost", s.roots(), None).await {
                Ok(c) => c.get("/digits.txt").await.is_ok_and(|(st, _)| st == 200),
                Err(_) => false,
            }
        })
        .await;
    assert!(served);
}
