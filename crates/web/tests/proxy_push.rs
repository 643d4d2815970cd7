//! CDN push: a signed push makes the replica fetch and store objects, so their very first
//! request is a HIT; pushes that are unsigned, badly signed, expired or replayed are refused
//! and change nothing; the limits answer with their status codes.

mod proxy_support;

use appnet_web::proxy::push::auth::{SIGNATURE_HEADER, Secret, TIMESTAMP_HEADER, unix};
use appnet_web::proxy::push::client;
use appnet_web::proxy::push::wire::Outcome;
use bytes::Bytes;
use proxy_support::*;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

const SECRET: &[u8] = b"a-shared-secret-of-the-provider\n";

fn secret_file(dir: &TempDir) -> PathBuf {
    let f = dir.path().join("push.secret");
    std::fs::write(&f, SECRET).unwrap();
    f
}

async fn origin() -> Origin {
    Origin::start(|req, n| match req.uri.path() {
        "/nostore" => Reply::ok("secret", &[("cache-control", "no-store")]),
        p => Reply::ok(&format!("{p} #{n}"), &[("cache-control", "max-age=600")]),
    })
    .await
}

/// A raw push with the given timestamp and secret.
async fn raw_push(addr: std::net::SocketAddr, body: &str, ts: u64, secret: &[u8]) -> Got {
    let sig = Secret::new(secret).unwrap().sign(ts, body.as_bytes());
    let ts = ts.to_string();
    let headers = [(TIMESTAMP_HEADER, ts.as_str()), (SIGNATURE_HEADER, sig.as_str())];
    send_body(addr, "POST", "/.appnet/push", &headers, Bytes::copy_from_slice(body.as_bytes())).await
}

#[tokio::test]
async fn a_pushed_object_is_a_hit_on_its_very_first_request() {
    let dir = TempDir::new("push-hit");
    let origin = origin().await;
    let file = secret_file(&dir);
    let proxy = reverse(&origin, |c| {
        c.push_secret_file = Some(file);
        c.origins.insert("gone.test".into(), "http://127.0.0.1:1".into());
    })
    .await;
    let secret = Secret::new(SECRET).unwrap();
    let urls = ["http://site.test/logo.png", "http://site.test/nostore"].map(String::from);
    let lines =
        client::push(&proxy.addr().to_string(), &client::body(&urls), &secret, Duration::from_secs(10))
            .await
            .unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        (lines[0].outcome.clone(), lines[0].url.as_str()),
        (Outcome::Stored, "http://site.test/logo.png")
    );
    assert!(lines[0].detail.contains("key http://site.test/logo.png"), "{}", lines[0].detail);
    assert_eq!(lines[1].outcome, Outcome::NotStored);
    assert!(lines[1].detail.contains("no-store"), "{}", lines[1].detail);
    assert_eq!(origin.hits(), 2);
    // The first request for the pushed object: a HIT, the origin is not asked.
    let got = send(proxy.addr(), "GET", "/logo.png", &[]).await;
    assert_eq!((got.x_cache(), &got.body[..]), ("HIT", &b"/logo.png #1"[..]));
    assert_eq!(origin.hits(), 2);
    // The no-store object was not kept.
    let got = send(proxy.addr(), "GET", "/nostore", &[]).await;
    assert_eq!(got.x_cache(), "MISS");
    assert_eq!(origin.hits(), 3);
    // An origin that cannot be reached is reported per URL.
    let lines = client::push(
        &proxy.addr().to_string(),
        &client::body(&["http://gone.test/x".into(), "http://site.test/later".into()]),
        &secret,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(lines[0].outcome, Outcome::Failed);
    assert!(lines[0].detail.starts_with("502"), "{}", lines[0].detail);
    assert_eq!(lines[1].outcome, Outcome::Stored);
    origin.stop();
    proxy.stop().await.unwrap();
}

#[tokio::test]
async fn bad_expired_and_replayed_pushes_are_refused_and_change_nothing() {
    let dir = TempDir::new("push-refused");
    let origin = origin().await;
    let file = secret_file(&dir);
    let proxy = reverse(&origin, |c| c.push_secret_file = Some(file)).await;
    let now = unix(SystemTime::now());
    let body = "http://site.test/a\n";
    // Unsigned.
    let got =
        send_body(proxy.addr(), "POST", "/.appnet/push", &[], Bytes::from_static(b"http://site.test/a\n"))
            .await;
    assert_eq!(got.status, 401);
    // Signed with another secret.
    assert_eq!(raw_push(proxy.addr(), body, now, b"not-the-shared-secret").await.status, 401);
    // Signed correctly, but ten minutes old (the window is five).
    let got = raw_push(proxy.addr(), body, now - 600, SECRET).await;
    assert_eq!(got.status, 401, "{:?}", got.body);
    assert_eq!(origin.hits(), 0);
    let cached = send(proxy.addr(), "GET", "/a", &[("cache-control", "only-if-cached")]).await;
    assert_eq!(cached.status, 504, "nothing was stored");
    // A good push, then the very same request (same timestamp, same signature) again: a replay.
    let other = "http://site.test/b\n";
    let first = raw_push(proxy.addr(), other, now, SECRET).await;
    assert_eq!(first.status, 200);
    assert_eq!(origin.hits(), 1);
    let again = raw_push(proxy.addr(), other, now, SECRET).await;
    assert_eq!(again.status, 403);
    assert_eq!(origin.hits(), 1, "a replay fetches nothing");
    let got = send(proxy.addr(), "GET", "/metrics", &[]).await;
    let metrics = String::from_utf8_lossy(&got.body);
    assert!(metrics.contains("appnet_proxy_push_refused_total 4"), "{metrics}");
    assert!(metrics.contains("appnet_proxy_pushed_objects_total 1"), "{metrics}");
    proxy.stop().await.unwrap();
}

#[tokio::test]
async fn push_limits_and_push_off() {
    let dir = TempDir::new("push-limits");
    let origin = origin().await;
    let file = secret_file(&dir);
    let proxy = reverse(&origin, |c| {
        c.push_secret_file = Some(file);
        c.push_max_urls = 2;
        c.push_max_body = 64;
    })
    .await;
    let now = unix(SystemTime::now());
    let three = "http://site.test/1\nhttp://site.test/2\nhttp://site.test/3\n";
    assert_eq!(raw_push(proxy.addr(), three, now, SECRET).await.status, 413);
    let big = format!("http://site.test/{}\n", "x".repeat(100));
    assert_eq!(raw_push(proxy.addr(), &big, now, SECRET).await.status, 413);
    assert_eq!(raw_push(proxy.addr(), "not a url\n", now, SECRET).await.status, 400);
    assert_eq!(send(proxy.addr(), "GET", "/.appnet/push", &[]).await.status, 405);
    // A URL of another scheme than the replica's is another site: it fails alone.
    let got = raw_push(proxy.addr(), "http://site.test/ok\nhttps://site.test/ok\n", now + 1, SECRET).await;
    assert_eq!(got.status, 200);
    let text = String::from_utf8_lossy(&got.body).to_string();
    assert!(text.starts_with("stored\thttp://site.test/ok\t200 OK"), "{text}");
    assert!(text.contains("failed\thttps://site.test/ok\tthis replica serves http://"), "{text}");
    assert_eq!(origin.hits(), 1, "{text}");
    proxy.stop().await.unwrap();
    // Without a secret file push is off (and never unauthenticated).
    let off = reverse(&origin, |_| {}).await;
    let got = raw_push(off.addr(), "http://site.test/z\n", now, SECRET).await;
    assert_eq!(got.status, 404);
    assert_eq!(origin.hits(), 1);
    off.stop().await.unwrap();
}

#[tokio::test]
async fn a_forward_proxy_stores_a_push_under_the_absolute_url() {
    let dir = TempDir::new("push-forward");
    let origin = origin().await;
    let file = secret_file(&dir);
    let proxy = run(appnet_web::proxy::ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        allow_dest: vec!["127.0.0.0/8".into()],
        push_secret_file: Some(file),
        ..Default::default()
    })
    .await;
    let url = format!("{}/fwd.css", origin.url());
    let secret = Secret::new(SECRET).unwrap();
    let lines = client::push(
        &proxy.addr().to_string(),
        &client::body(std::slice::from_ref(&url)),
        &secret,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(lines[0].outcome, Outcome::Stored, "{}", lines[0].detail);
    assert_eq!(origin.hits(), 1);
    // A client of the forward proxy asks for the absolute URL: a HIT.
    let got = send(proxy.addr(), "GET", &url, &[]).await;
    assert_eq!((got.x_cache(), &got.body[..]), ("HIT", &b"/fwd.css #1"[..]));
    assert_eq!(origin.hits(), 1);
    proxy.stop().await.unwrap();
}
