//! The HTTP/1.1 fast path answers byte for byte as the hyper path does (the Date and the random
//! multipart boundary aside): the same server with `http1_fast_path` on and off gets the same
//! requests, plain, pipelined, mixed with requests the fast path hands to hyper, and late.

mod common;
use common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Blanks what legitimately differs between two runs: Date values and multipart boundaries.
fn normalize(text: &str) -> String {
    let mut out = String::new();
    for line in text.split_inclusive("\r\n") {
        if line.to_ascii_lowercase().starts_with("date: ") {
            out.push_str("date: -\r\n");
        } else {
            out.push_str(line);
        }
    }
    let mut from = 0;
    while let Some(at) = out[from..].find("appnet").map(|i| i + from) {
        let hex = out.get(at + 6..at + 22).is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        if hex {
            out.replace_range(at..at + 22, "BOUNDARY");
        }
        from = at + 6;
    }
    out
}

const REQUESTS: &[&str] = &[
    "GET /style.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "HEAD /style.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "GET /docs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "GET /docs?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "GET /docs/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "GET /missing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "HEAD /missing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "GET /%2e%2e/etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "GET /.hidden HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "GET /style.css HTTP/1.1\r\nHost: x\r\nIf-None-Match: *\r\nConnection: close\r\n\r\n",
    "GET /style.css HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT\r\nConnection: close\r\n\r\n",
    "GET /style.css HTTP/1.1\r\nHost: x\r\nIf-Match: \"nope\"\r\nConnection: close\r\n\r\n",
    "GET /digits.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=2-4\r\nConnection: close\r\n\r\n",
    "GET /digits.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1,8-\r\nConnection: close\r\n\r\n",
    "GET /digits.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=50-\r\nConnection: close\r\n\r\n",
    "GET /digits.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=2-4\r\nIf-Range: \"old\"\r\nConnection: close\r\n\r\n",
    "GET /big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=4999990-\r\nConnection: close\r\n\r\n",
    "GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "HEAD /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "GET /digits.txt HTTP/1.0\r\n\r\n",
    "HEAD /digits.txt HTTP/1.0\r\n\r\n",
    "GET /digits.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /style.css HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /digits.txt HTTP/1.0\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: WWW.B.COM:8080\r\nConnection: close\r\n\r\n",
    "GET http://www.b.com/ HTTP/1.1\r\nHost: www.b.com\r\nConnection: close\r\n\r\n",
    "GET * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "GET /echo?q=1 HTTP/1.1\r\nHost: x\r\nX-Test: a\r\nX-Test: b\r\nConnection: close\r\n\r\n",
    "GET /server-metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: close\r\n\r\n",
    "GET /digits.txt HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
    "GET /digits.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    // Refused by the guard: the fast path hands them to hyper, which answers as before.
    "GET / HTTP/1.1\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "GET / HTTP/2.0\r\nHost: x\r\n\r\n",
    "GET /digits.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    // Pipelined: served fast, then a request with a body is handed off mid-stream.
    "GET /digits.txt HTTP/1.1\r\nHost: x\r\n\r\nHEAD /style.css HTTP/1.1\r\nHost: x\r\n\r\nGET /missing HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\npingGET /digits.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    // A bad head after good ones: the good ones are answered first, then the guard's status.
    "GET /digits.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /x HTTP/9.9\r\nHost: x\r\n\r\nGET /digits.txt HTTP/1.1\r\nHost: x\r\n\r\n",
];

#[tokio::test]
async fn the_fast_path_answers_as_hyper_does() {
    let site = site("fast-eq");
    std::fs::write(site.path().join(".hidden"), "secret").unwrap();
    let b = TempDir::new("fast-eq-b");
    std::fs::write(b.path().join("index.html"), "site b\n").unwrap();
    let mut servers = Vec::new();
    for fast in [true, false] {
        let mut cfg = config(site.path());
        cfg.vhosts.insert("www.b.com".into(), b.path().to_path_buf());
        cfg.metrics_path = Some("/server-metrics".into());
        cfg.http1_fast_path = fast;
        servers.push(serve(cfg).await);
    }
    for req in REQUESTS {
        let fast = raw(servers[0].addr(), req.as_bytes()).await;
        let hyper = raw(servers[1].addr(), req.as_bytes()).await;
        if req.contains("server-metrics") {
            assert_eq!(status(&fast), status(&hyper), "{req:?}");
            continue;
        }
        assert!(!fast.is_empty(), "{req:?}");
        assert_eq!(normalize(&fast), normalize(&hyper), "{req:?}");
    }
    for s in servers {
        s.stop().await.unwrap();
    }
}

#[tokio::test]
async fn the_same_answers_whatever_the_reads_look_like() {
    // Pipelined heads split at every few bytes: partial heads wait for their rest.
    let site = site("fast-split");
    let srv = serve(config(site.path())).await;
    let mut reqs = String::new();
    for i in 0..20 {
        let close = if i == 19 { "Connection: close\r\n" } else { "" };
        reqs.push_str(&format!("GET /digits.txt?{i} HTTP/1.1\r\nHost: x\r\n{close}\r\n"));
    }
    let mut s = TcpStream::connect(srv.addr()).await.unwrap();
    for piece in reqs.as_bytes().chunks(7) {
        s.write_all(piece).await.unwrap();
        s.flush().await.unwrap();
    }
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await.unwrap().unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 20);
    assert_eq!(text.matches("0123456789").count(), 20);
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn a_late_head_after_fast_answers_gets_408() {
    let site = site("fast-late");
    let mut cfg = config(site.path());
    cfg.header_timeout_secs = 1;
    let srv = serve(cfg).await;
    let mut s = TcpStream::connect(srv.addr()).await.unwrap();
    s.write_all(b"GET /digits.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /digits.txt HT").await.unwrap();
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await.unwrap().unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("HTTP/1.1 408 Request Timeout\r\n"), "{text}");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(3), "{took:?}");
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn repeated_requests_on_one_connection_answer_as_hyper_does_and_see_file_changes() {
    let site = site("fast-repeat");
    let (mut servers, mut stats) = (Vec::new(), Vec::new());
    for fast in [true, false] {
        let mut cfg = config(site.path());
        cfg.http1_fast_path = fast;
        let server = appnet_web::WebServer::bind(cfg).await.unwrap();
        stats.push(server.stats());
        let running = appnet_netkit::harness::start(server);
        appnet_netkit::harness::wait_tcp(running.addr(), Duration::from_secs(5)).await.unwrap();
        servers.push(running);
    }
    let mut reqs = String::new();
    for _ in 0..3 {
        reqs.push_str(
            "GET /style.css HTTP/1.1\r\nHost: x\r\n\r\nHEAD /style.css HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        reqs.push_str(
            "GET /digits.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        reqs.push_str("GET /digits.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=1-2\r\n\r\n");
    }
    reqs.push_str("GET /style.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let fast = raw(servers[0].addr(), reqs.as_bytes()).await;
    let hyper = raw(servers[1].addr(), reqs.as_bytes()).await;
    assert_eq!(fast.matches("HTTP/1.").count(), 16);
    assert_eq!(normalize(&fast), normalize(&hyper));
    assert_eq!(stats[0].responses(200), 13, "cached answers are counted");
    assert_eq!(stats[0].responses(200), stats[1].responses(200));

    // A file edited between two requests on one connection is served as it is now.
    let mut s = TcpStream::connect(servers[0].addr()).await.unwrap();
    let mut answers = Vec::new();
    for content in ["first\n", "second, longer\n"] {
        std::fs::write(site.path().join("edit.txt"), content).unwrap();
        s.write_all(b"GET /edit.txt HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut got = Vec::new();
        while !String::from_utf8_lossy(&got).ends_with(content) {
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await.unwrap().unwrap();
            assert!(n > 0, "closed early");
            got.extend_from_slice(&chunk[..n]);
        }
        answers.push(String::from_utf8(got).unwrap());
    }
    assert!(answers[1].contains("content-length: 15\r\n"), "{}", answers[1]);
    for s in servers {
        s.stop().await.unwrap();
    }
}
