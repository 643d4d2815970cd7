//! HTTP/2: h2c with prior knowledge, h2 over TLS (ALPN) with a lab-CA certificate, multiplexed
//! streams, server push only when the client allows it, and GOAWAY on shutdown.

mod common;
use appnet_web::h2_frames::FrameHeader;
use bytes::Bytes;
use common::*;
use http::Request;
use rustls::pki_types::pem::PemObject;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

async fn body_of(mut body: h2::RecvStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    out
}

fn get(uri: &str) -> Request<()> {
    Request::builder().uri(uri).body(()).unwrap()
}

#[tokio::test]
async fn h2c_multiplexes_and_pushes_linked_resources() {
    let site = site("h2c");
    let srv = serve(config(site.path())).await;
    let tcp = TcpStream::connect(srv.addr()).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.unwrap();
    // Many streams at once on one connection.
    let mut pending = Vec::new();
    for _ in 0..20 {
        let (resp, _) = client.send_request(get(&format!("http://{}/digits.txt", srv.addr())), true).unwrap();
        pending.push(resp);
    }
    for resp in pending {
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(body_of(resp.into_body()).await, b"0123456789");
    }
    // The page comes with PUSH_PROMISEs for its stylesheet and image.
    let (mut resp, _) = client.send_request(get(&format!("http://{}/", srv.addr())), true).unwrap();
    let mut pushes = resp.push_promises();
    let page = resp.await.unwrap();
    assert_eq!(page.status(), 200);
    let mut pushed = Vec::new();
    while let Some(p) = tokio::time::timeout(Duration::from_secs(5), pushes.push_promise()).await.unwrap() {
        let (req, resp) = p.unwrap().into_parts();
        let resp = resp.await.unwrap();
        pushed.push((req.uri().path().to_string(), body_of(resp.into_body()).await.len()));
    }
    pushed.sort();
    assert_eq!(pushed, vec![("/img/a.jpg".to_string(), 3000), ("/style.css".to_string(), 22)]);
    let html = body_of(page.into_body()).await;
    assert!(String::from_utf8_lossy(&html).contains("style.css"));
    // A 5 MB body goes through flow control intact.
    let (resp, _) = client.send_request(get(&format!("http://{}/big.bin", srv.addr())), true).unwrap();
    let big = body_of(resp.await.unwrap().into_body()).await;
    assert_eq!(big.len(), 5_000_000);
    assert!(big.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn no_push_when_the_client_disables_it_and_goaway_on_shutdown() {
    let site = site("h2nopush");
    let srv = serve(config(site.path())).await;
    let tcp = TcpStream::connect(srv.addr()).await.unwrap();
    let (client, mut conn) =
        h2::client::Builder::new().enable_push(false).handshake::<_, Bytes>(tcp).await.unwrap();
    let mut client = client;
    let (resp, _) = client.send_request(get(&format!("http://{}/", srv.addr())), true).unwrap();
    let (resp, conn_result) = {
        let drive = async {
            let r = resp.await.unwrap();
            let b = body_of(r.into_body()).await;
            (b, ())
        };
        tokio::select! {
            r = drive => (r, None),
            c = &mut conn => (Default::default(), Some(c)),
        }
    };
    assert!(conn_result.is_none());
    assert!(String::from_utf8_lossy(&resp.0).contains("<img"));
    // Shutdown sends GOAWAY: the connection ends cleanly from our side's view.
    let stop = tokio::spawn(srv.stop());
    let ended =
        tokio::time::timeout(Duration::from_secs(10), conn).await.expect("connection ends after GOAWAY");
    assert!(ended.is_ok(), "graceful: {ended:?}");
    stop.await.unwrap().unwrap();
}

#[tokio::test]
async fn tls_with_the_lab_ca_speaks_h2_and_http11_by_alpn() {
    let site = site("tls");
    let ca_dir = TempDir::new("ca");
    let mut cfg = config(site.path());
    cfg.tls = true;
    cfg.ca_dir = Some(ca_dir.path().to_path_buf());
    let server = appnet_web::WebServer::bind(cfg).await.unwrap();
    assert!(server.tls_note().unwrap().contains("curl --cacert"));
    let srv = appnet_netkit::harness::start(server);
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca_dir.path().join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    for (alpn, want_h2) in
        [(vec![b"h2".to_vec(), b"http/1.1".to_vec()], true), (vec![b"http/1.1".to_vec()], false)]
    {
        let mut cc = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        cc.alpn_protocols = alpn;
        let tcp = TcpStream::connect(srv.addr()).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cc)).connect(name, tcp).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol() == Some(b"h2"), want_h2);
        if want_h2 {
            let (mut client, conn) = h2::client::handshake(tls).await.unwrap();
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let (resp, _) = client.send_request(get("https://localhost/digits.txt"), true).unwrap();
            let resp = resp.await.unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(body_of(resp.into_body()).await, b"0123456789");
        } else {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut tls = tls;
            tls.write_all(b"GET /digits.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut out = Vec::new();
            let _ = tls.read_to_end(&mut out).await;
            let text = String::from_utf8_lossy(&out);
            assert_eq!(status(&text), 200);
            assert_eq!(body(&text), "0123456789");
        }
    }
    // The cart marks its cookie Secure over TLS (checked through our own client).
    let resp = appnet_web::client::get(
        &format!("https://localhost:{}/cart?add=x", srv.addr().port()),
        appnet_web::client::Proto::Http2,
        Some(&ca_dir.path().join("ca.pem")),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert!(resp.headers()["set-cookie"].to_str().unwrap().contains("Secure"));
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn tls_from_pem_files() {
    let site = site("pem");
    let dir = TempDir::new("pem-files");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert =
        rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().self_signed(&key).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
    let mut cfg = config(site.path());
    cfg.tls = true;
    cfg.cert = Some(dir.path().join("cert.pem"));
    cfg.key = Some(dir.path().join("key.pem"));
    let server = appnet_web::WebServer::bind(cfg).await.unwrap();
    assert!(server.is_tls() && server.tls_note().is_none());
    let srv = appnet_netkit::harness::start(server);
    let resp = appnet_web::client::get(
        &format!("https://localhost:{}/digits.txt", srv.addr().port()),
        appnet_web::client::Proto::Http11,
        Some(&dir.path().join("cert.pem")),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(&resp.body()[..], b"0123456789");
    srv.stop().await.unwrap();
    // A key file that is not PEM is refused with a message naming it.
    std::fs::write(dir.path().join("bad.pem"), "not pem").unwrap();
    let mut cfg = config(site.path());
    cfg.cert = Some(dir.path().join("cert.pem"));
    cfg.key = Some(dir.path().join("bad.pem"));
    let err = appnet_web::WebServer::bind(cfg).await.err().expect("bad key refused");
    assert!(err.to_string().contains("bad.pem"), "{err}");
}

#[tokio::test]
async fn configured_push_list_replaces_the_page_links() {
    let site = site("pushcfg");
    let mut cfg = config(site.path());
    cfg.push_pages.insert("/".into(), vec!["/digits.txt".into()]);
    let srv = serve(cfg).await;
    let tcp = TcpStream::connect(srv.addr()).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.unwrap();
    let (mut resp, _) = client.send_request(get(&format!("http://{}/", srv.addr())), true).unwrap();
    let mut pushes = resp.push_promises();
    let page = resp.await.unwrap();
    let mut pushed = Vec::new();
    while let Some(p) = tokio::time::timeout(Duration::from_secs(5), pushes.push_promise()).await.unwrap() {
        let (req, resp) = p.unwrap().into_parts();
        pushed.push((req.uri().path().to_string(), body_of(resp.await.unwrap().into_body()).await));
    }
    assert_eq!(pushed, vec![("/digits.txt".to_string(), b"0123456789".to_vec())]);
    assert_eq!(page.status(), 200);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn an_invalid_host_gets_400_and_an_unknown_expectation_417_over_h2_too() {
    let site = site("h2host");
    let srv = serve(config(site.path())).await;
    let tcp = TcpStream::connect(srv.addr()).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.unwrap();
    let uri = format!("http://{}/digits.txt", srv.addr());
    let bad = Request::builder().uri(&uri).header("host", "a b").body(()).unwrap();
    let (resp, _) = client.send_request(bad, true).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), resp).await.unwrap().unwrap();
    assert_eq!(resp.status(), 400);
    let mut client = client.ready().await.unwrap();
    let expect = Request::builder().uri(&uri).header("expect", "foo").body(()).unwrap();
    let (resp, _) = client.send_request(expect, true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 417);
    // The connection keeps serving good requests.
    let mut client = client.ready().await.unwrap();
    let (resp, _) = client.send_request(get(&uri), true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
    srv.stop().await.unwrap();
}

/// One HEADERS frame (END_STREAM, END_HEADERS) asking for `path` with RFC 9218 urgency `u`;
/// every field a literal without indexing, so no HPACK state is involved.
fn raw_request(stream: u32, path: &str, u: u8) -> Vec<u8> {
    let urgency = format!("u={u}");
    let fields = [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "x"),
        ("priority", &urgency),
    ];
    let mut block = Vec::new();
    for (name, value) in fields {
        block.push(0);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    frame(1, 0x5, stream, &block)
}

/// One frame: its header (the crate's own [`FrameHeader`]) and `payload`.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = FrameHeader { len: payload.len() as u32, kind, flags, stream }.emit().to_vec();
    out.extend_from_slice(payload);
    out
}

/// The server's socket holds little unsent (TCP_NOTSENT_LOWAT), so a response the RFC 9218
/// scheduler puts first is not stuck behind megabytes of an earlier one that the kernel already
/// took: with the kernel's own limit (an autotuned send buffer), 4.5 of the 5 MB low-urgency
/// body came before the urgent answer here; with the cap, under 1 MB.
#[tokio::test]
async fn an_urgent_answer_waits_behind_little_already_queued_in_the_socket() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let site = site("h2lowat");
    let srv = serve(config(site.path())).await;
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(64 * 1024).unwrap();
    let mut tcp = sock.connect(srv.addr()).await.unwrap();
    // Windows wide open (SETTINGS_INITIAL_WINDOW_SIZE and the connection's WINDOW_UPDATE), so
    // only TCP holds the 5 MB body back; the client reads nothing while the sockets fill.
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    let mut settings = vec![0, 4];
    settings.extend_from_slice(&(i32::MAX as u32).to_be_bytes());
    hello.extend_from_slice(&frame(4, 0, 0, &settings));
    hello.extend_from_slice(&frame(8, 0, 0, &(i32::MAX as u32 - 65_535).to_be_bytes()));
    hello.extend_from_slice(&raw_request(1, "/big.bin", 7));
    tcp.write_all(&hello).await.unwrap();
    // Time for the server to queue all it can (on loopback a few milliseconds); a shorter
    // wait could only make the check easier to pass, never fail it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    tcp.write_all(&raw_request(3, "/digits.txt", 0)).await.unwrap();
    let read = async {
        let (mut buf, mut low) = (Vec::new(), 0usize);
        loop {
            assert!(tcp.read_buf(&mut buf).await.unwrap() > 0, "closed before the urgent answer");
            while let Some(h) = FrameHeader::of(&buf) {
                let end = FrameHeader::LEN + h.payload_len();
                if buf.len() < end {
                    break;
                }
                if h.kind == 1 && h.stream == 3 {
                    let status = buf.get(FrameHeader::LEN);
                    assert_eq!(status, Some(&0x88), "the urgent answer is a 200 (static index 8)");
                }
                buf.drain(..end);
                if h.kind == 0 && h.stream == 1 {
                    low += h.payload_len();
                }
                if h.stream == 3 && h.flags & 1 == 1 {
                    return low;
                }
            }
        }
    };
    let low = tokio::time::timeout(Duration::from_secs(10), read).await.expect("the urgent answer came");
    assert!(low > 0, "the low-urgency body was under way");
    assert!(low < 2 << 20, "{low} bytes of the low-urgency body came before the urgent answer");
    // Closed first: the server need not wait for the rest of the 5 MB to drain.
    drop(tcp);
    srv.stop().await.unwrap();
}
