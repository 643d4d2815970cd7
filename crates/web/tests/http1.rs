//! HTTP/1.0 and 1.1 behaviour over real sockets: files, conditional and range requests, vhosts,
//! keep-alive, pipelining, uploads, the apps, and every limit and smuggling case.

mod common;
use common::*;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[tokio::test]
async fn files_conditionals_and_ranges() {
    let site = site("files");
    let srv = serve(config(site.path())).await;
    let a = srv.addr();
    let r = raw(a, b"GET /style.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&r), 200);
    assert_eq!(header(&r, "content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(header(&r, "content-length"), Some("22"));
    assert_eq!(body(&r), "body { color: black }\n");
    let etag = header(&r, "etag").unwrap().to_string();
    let lm = header(&r, "last-modified").unwrap().to_string();
    assert!(etag.starts_with('"'), "strong etag: {etag}");

    let req =
        format!("GET /style.css HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n");
    let r = raw(a, req.as_bytes()).await;
    assert_eq!(status(&r), 304);
    assert_eq!(body(&r), "");
    let req =
        format!("GET /style.css HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: {lm}\r\nConnection: close\r\n\r\n");
    assert_eq!(status(&raw(a, req.as_bytes()).await), 304);
    let r = raw(a, b"GET /style.css HTTP/1.1\r\nHost: x\r\nIf-Match: \"nope\"\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(status(&r), 412);
    let r = raw(a, b"GET /style.css HTTP/1.1\r\nHost: x\r\nIf-Unmodified-Since: Thu, 01 Jan 1998 00:00:00 GMT\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&r), 412);

    let r =
        raw(a, b"GET /digits.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=2-4\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&r), 206);
    assert_eq!(header(&r, "content-range"), Some("bytes 2-4/10"));
    assert_eq!(body(&r), "234");
    let r =
        raw(a, b"GET /digits.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1,8-\r\nConnection: close\r\n\r\n")
            .await;
    assert_eq!(status(&r), 206);
    assert!(header(&r, "content-type").unwrap().starts_with("multipart/byteranges; boundary="));
    let b = body(&r);
    assert!(
        b.contains("Content-Range: bytes 0-1/10\r\n\r\n01\r\n")
            && b.contains("Content-Range: bytes 8-9/10\r\n\r\n89\r\n")
    );
    assert_eq!(header(&r, "content-length").unwrap().parse::<usize>().unwrap(), b.len());
    let r =
        raw(a, b"GET /digits.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=50-\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&r), 416);
    assert_eq!(header(&r, "content-range"), Some("bytes */10"));
    let r = raw(a, b"GET /digits.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=2-4\r\nIf-Range: \"old\"\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&r), 200, "a stale If-Range gets the whole file");

    // A big file streams intact, ranges inside it too.
    let r = raw(a, b"GET /big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=4999990-\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(
        body(&r).as_bytes(),
        &(4_999_990u32..5_000_000).map(|i| (i % 251) as u8).collect::<Vec<_>>()[..]
    );
    let mut s = TcpStream::connect(a).await.unwrap();
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).await.unwrap();
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(all.len() - split, 5_000_000);
    assert!(all[split..].iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));

    // HEAD: the same headers, no body.
    let r = raw(a, b"HEAD /style.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&r), 200);
    assert_eq!(header(&r, "content-length"), Some("22"));
    assert_eq!(body(&r), "");

    // Directories: redirect without the slash, index file, generated listing.
    let r = raw(a, b"GET /docs?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&r), 301);
    assert_eq!(header(&r, "location"), Some("/docs/?x=1"));
    let r = raw(a, b"GET /docs/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(status(&r) == 200 && body(&r).contains("readme.txt"));
    let r = raw(a, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(body(&r).contains("style.css"));
    for bad in ["/../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/a%00b"] {
        let r =
            raw(a, format!("GET {bad} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await;
        assert_eq!(status(&r), 400, "{bad}");
    }
    let r = raw(a, b"GET /missing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&r), 404);
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("/etc", site.path().join("etc")).unwrap();
        let r = raw(a, b"GET /etc/hostname HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        assert!(matches!(status(&r), 403 | 404), "symlink out of the root");
    }
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn precompressed_siblings_and_cache_rules() {
    let site = site("gz");
    std::fs::write(site.path().join("digits.txt.gz"), b"not really gzip").unwrap();
    let mut cfg = config(site.path());
    cfg.cache = vec![appnet_web::files::policy::CacheRule {
        suffix: ".txt".into(),
        max_age: Some(600),
        directives: vec!["public".into()],
        ..Default::default()
    }];
    let srv = serve(cfg).await;
    let r = raw(
        srv.addr(),
        b"GET /digits.txt HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip, br\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(header(&r, "content-encoding"), Some("gzip"));
    assert_eq!(header(&r, "vary"), Some("Accept-Encoding"));
    assert_eq!(body(&r), "not really gzip");
    assert_eq!(header(&r, "cache-control"), Some("public, max-age=600"));
    assert!(header(&r, "expires").is_some());
    let r = raw(srv.addr(), b"GET /digits.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(header(&r, "content-encoding"), None);
    assert_eq!(header(&r, "vary"), Some("Accept-Encoding"));
    assert_eq!(body(&r), "0123456789");
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let site = site("pipe");
    for i in 0..10 {
        std::fs::write(site.path().join(format!("f{i}.txt")), format!("file {i}\n")).unwrap();
    }
    let srv = serve(config(site.path())).await;
    let mut reqs = String::new();
    for i in 0..10 {
        let close = if i == 9 { "Connection: close\r\n" } else { "" };
        reqs.push_str(&format!("GET /f{i}.txt HTTP/1.1\r\nHost: x\r\n{close}\r\n"));
    }
    let r = raw(srv.addr(), reqs.as_bytes()).await;
    let bodies: Vec<&str> = r.matches("file ").collect();
    assert_eq!(bodies.len(), 10);
    let mut at = 0;
    for i in 0..10 {
        let pos = r[at..].find(&format!("file {i}\n")).expect("in order") + at;
        at = pos;
    }
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn keep_alive_rules_for_1_0_and_1_1() {
    let site = site("ka");
    let srv = serve(config(site.path())).await;
    // HTTP/1.0 with keep-alive: two answers on one connection.
    let mut s = TcpStream::connect(srv.addr()).await.unwrap();
    let mut rd = BufReader::new(&mut s);
    for _ in 0..2 {
        rd.get_mut().write_all(b"GET /digits.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").await.unwrap();
        let mut line = String::new();
        rd.read_line(&mut line).await.unwrap();
        assert!(line.starts_with("HTTP/1.0 200"), "{line}");
        let mut len = 0;
        loop {
            line.clear();
            rd.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            if line.to_ascii_lowercase().starts_with("connection:") {
                assert!(line.to_ascii_lowercase().contains("keep-alive"));
            }
        }
        let mut b = vec![0; len];
        rd.read_exact(&mut b).await.unwrap();
    }
    // Plain HTTP/1.0 closes after one answer.
    let r = raw(srv.addr(), b"GET /digits.txt HTTP/1.0\r\n\r\n").await;
    assert_eq!(status(&r), 200);
    assert_eq!(body(&r), "0123456789");
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn virtual_hosts() {
    let a = site("vh-a");
    let b = TempDir::new("vh-b");
    std::fs::write(b.path().join("index.html"), "site b\n").unwrap();
    let mut cfg = config(a.path());
    cfg.vhosts.insert("www.b.com".into(), b.path().to_path_buf());
    let srv = serve(cfg).await;
    let r = raw(srv.addr(), b"GET / HTTP/1.1\r\nHost: WWW.B.COM:8080\r\nConnection: close\r\n\r\n").await;
    assert_eq!(body(&r), "site b\n");
    let r = raw(srv.addr(), b"GET / HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n").await;
    assert!(body(&r).contains("style.css"), "unknown hosts get the default site");
    let r =
        raw(srv.addr(), b"GET http://www.b.com/ HTTP/1.1\r\nHost: www.b.com\r\nConnection: close\r\n\r\n")
            .await;
    assert_eq!(body(&r), "site b\n", "absolute-form target");
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn bad_requests_get_their_status_and_others_are_still_served() {
    let site = site("bad");
    let mut cfg = config(site.path());
    cfg.max_request_line = 1024;
    cfg.max_header_bytes = 4096;
    cfg.max_headers = 20;
    cfg.max_body = 1000;
    let server = appnet_web::WebServer::bind(cfg).await.unwrap();
    let stats = server.stats();
    let srv = appnet_netkit::harness::start(server);
    let a = srv.addr();
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(2000));
    let many: String = (0..30).map(|i| format!("X-{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let big = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(5000));
    let cases: Vec<(&str, String, u16)> = vec![
        ("HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: x\r\n\r\n".into(), 505),
        ("HTTP/1.2", "GET / HTTP/1.2\r\nHost: x\r\n\r\n".into(), 505),
        ("garbage", "\x01\x02 nonsense\r\n\r\n".into(), 400),
        ("no Host in 1.1", "GET / HTTP/1.1\r\n\r\n".into(), 400),
        ("two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".into(), 400),
        ("Host with a space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n".into(), 400),
        ("Host with userinfo", "GET / HTTP/1.1\r\nHost: u@x\r\n\r\n".into(), 400),
        ("Expect: foo", "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: foo\r\nContent-Length: 4\r\n\r\nabcd".into(), 417),
        ("long request line", long_uri, 414),
        ("too many headers", many, 431),
        ("header too large", big, 431),
        ("CL and TE", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), 400),
        ("duplicate CL", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd".into(), 400),
        ("obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n".into(), 400),
        ("TE in 1.0", "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), 400),
        ("unknown coding", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n".into(), 501),
        ("body too large", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n".into(), 413),
        ("unknown method", "BREW / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(), 501),
        ("POST to a file", "POST /style.css HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(), 405),
        ("PUT without --allow-write", "PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(), 405),
    ];
    for (name, req, want) in cases {
        let r = raw(a, req.as_bytes()).await;
        assert_eq!(status(&r), want, "{name}: {r}");
        // ... and the server still answers everyone else.
        let ok = raw(a, b"GET /digits.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        assert_eq!(status(&ok), 200, "after {name}");
    }
    // A chunked body over the cap also gets 413.
    let chunk = format!("{:x}\r\n{}\r\n", 1500, "z".repeat(1500));
    let r = raw(
        a,
        format!("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}0\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert_eq!(status(&r), 413);
    // Per-status counters saw all of it.
    assert_eq!(stats.responses(505), 2);
    assert_eq!(stats.responses(431), 2);
    assert!(stats.responses(200) >= 17);
    assert!(stats.registry.render().contains("web_responses_total{code=\"414\"} 1"));
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn slow_heads_and_idle_connections_are_closed() {
    let site = site("slow");
    let mut cfg = config(site.path());
    cfg.header_timeout_secs = 1;
    cfg.idle_timeout_secs = 1;
    let srv = serve(cfg).await;
    // Slowloris: a head that never finishes gets 408 and the connection closes.
    let mut s = TcpStream::connect(srv.addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "closed by the server");
    assert_eq!(status(&String::from_utf8_lossy(&out)), 408);
    // Idle keep-alive: closed without a word.
    let mut s = TcpStream::connect(srv.addr()).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(read.is_ok() && out.is_empty());
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn uploads_deletes_expect_continue_and_chunked_bodies() {
    let site = site("write");
    let mut cfg = config(site.path());
    cfg.allow_write = true;
    cfg.max_body = 100_000;
    let srv = serve(cfg).await;
    let a = srv.addr();
    let r =
        raw(a, b"PUT /up/new.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
            .await;
    assert_eq!(status(&r), 201);
    assert_eq!(std::fs::read(site.path().join("up/new.txt")).unwrap(), b"hello");
    let r = raw(a, b"PUT /up/new.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").await;
    assert_eq!(status(&r), 204);
    assert_eq!(std::fs::read(site.path().join("up/new.txt")).unwrap(), b"abcde");
    let r = raw(a, b"PUT /up/new.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: *\r\nContent-Length: 1\r\nConnection: close\r\n\r\nz").await;
    assert_eq!(status(&r), 412, "create-only PUT on an existing file");
    let r =
        raw(a, b"PUT /../escape.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nz")
            .await;
    assert_eq!(status(&r), 400);
    let r =
        raw(a, b"PUT /huge HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&r), 413);

    // Expect: 100-continue: the interim answer comes before we send the body.
    let mut s = TcpStream::connect(a).await.unwrap();
    s.write_all(b"PUT /up/cont.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100 Continue"));
    s.write_all(b"body").await.unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    assert_eq!(status(&String::from_utf8_lossy(&rest)), 201);

    let r = raw(a, b"DELETE /up/new.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&r), 204);
    assert!(!site.path().join("up/new.txt").exists());
    let r = raw(a, b"DELETE /up/new.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&r), 404);
    let r = raw(a, b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status(&r), 204);
    assert_eq!(header(&r, "allow"), Some("GET, HEAD, OPTIONS, PUT, DELETE"));
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn cart_keeps_state_behind_a_cookie_and_echo_returns_the_request() {
    let site = site("apps");
    let mut cfg = config(site.path());
    cfg.metrics_path = Some("/server-metrics".into());
    let srv = serve(cfg).await;
    let a = srv.addr();
    let r = raw(a, b"GET /cart?add=book HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    let cookie = header(&r, "set-cookie").unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Max-Age="));
    let pair = cookie.split(';').next().unwrap();
    let req = format!(
        "POST /cart HTTP/1.1\r\nHost: x\r\nCookie: {pair}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 12\r\nConnection: close\r\n\r\nadd=blue+pen"
    );
    let r = raw(a, req.as_bytes()).await;
    assert!(header(&r, "set-cookie").is_none(), "known session keeps its cookie");
    assert!(body(&r).contains("2 item(s)") && body(&r).contains("- book\n- blue pen\n"), "{r}");
    let r = raw(a, b"GET /cart HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(body(&r).contains("0 item(s)"), "another client has its own cart");

    let r = raw(a, b"POST /echo?q=1 HTTP/1.1\r\nHost: x\r\nX-Test: yes\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\nping\r\n0\r\n\r\n").await;
    let b = body(&r);
    assert!(b.starts_with("POST /echo?q=1 HTTP/1.1\n"), "{b}");
    assert!(b.contains("x-test: yes\n") && b.ends_with("\n\nping"));
    // The counters, in the Prometheus text format.
    let r = raw(a, b"GET /server-metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(body(&r).contains("web_responses_total{code=\"200\"} 4"), "{r}");
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn cart_sessions_start_at_the_first_item_and_are_rate_limited_per_client() {
    let site = site("cartlimits");
    let mut cfg = config(site.path());
    cfg.cart_new_burst = 2;
    cfg.cart_new_per_sec = 1;
    let srv = serve(cfg).await;
    let a = srv.addr();
    for _ in 0..5 {
        let r = raw(a, b"GET /cart HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        assert_eq!(status(&r), 200);
        assert!(header(&r, "set-cookie").is_none(), "looking creates no session: {r}");
    }
    let add = b"GET /cart?add=pen HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    for _ in 0..2 {
        assert!(header(&raw(a, add).await, "set-cookie").is_some());
    }
    let r = raw(a, add).await;
    assert_eq!(status(&r), 429, "{r}");
    assert_eq!(header(&r, "retry-after"), Some("1"));
    assert!(header(&r, "set-cookie").is_none());
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_does_not_wait_for_idle_connections() {
    let site = site("stop");
    let srv = serve(config(site.path())).await;
    // One connection that never says anything, one idle keep-alive connection after a request.
    let _silent = TcpStream::connect(srv.addr()).await.unwrap();
    let mut ka = TcpStream::connect(srv.addr()).await.unwrap();
    ka.write_all(b"GET /digits.txt HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 512];
    let n = ka.read(&mut buf).await.unwrap();
    assert_eq!(status(&String::from_utf8_lossy(&buf[..n])), 200);
    let started = std::time::Instant::now();
    srv.stop().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "stopped in {:?}", started.elapsed());
    // The keep-alive connection was closed by the server.
    let n = tokio::time::timeout(Duration::from_secs(2), ka.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0);
}
