//! The caching proxy against a real origin on 127.0.0.1:0, one test per RFC 9111 behaviour.

mod proxy_support;

use appnet_netkit::harness::wait_until;
use proxy_support::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[tokio::test]
async fn miss_then_hit_with_age_and_cache_status() {
    let origin = Origin::start(|_, n| Reply::ok(&format!("v{n}"), &[("cache-control", "max-age=60")])).await;
    let proxy = reverse(&origin, |_| {}).await;
    let a = send(proxy.addr(), "GET", "/x", &[]).await;
    assert_eq!((a.status, a.x_cache(), &a.body[..]), (200, "MISS", &b"v1"[..]));
    assert!(a.header("cache-status").contains("fwd=uri-miss; stored"), "{}", a.header("cache-status"));
    let b = send(proxy.addr(), "GET", "/x", &[]).await;
    assert_eq!((b.status, b.x_cache(), &b.body[..]), (200, "HIT", &b"v1"[..]));
    assert!(b.header("cache-status").starts_with("appnet; hit; ttl="), "{}", b.header("cache-status"));
    assert!(b.header("age").parse::<u64>().is_ok());
    assert!(b.header("via").contains("appnet"));
    assert_eq!(origin.hits(), 1);
    // The origin saw a proxied request.
    assert!(origin.last().headers.get("via").is_some());
    assert!(origin.last().headers.get("x-forwarded-for").is_some());
}

#[tokio::test]
async fn no_store_and_private_are_never_served_from_the_cache() {
    let origin = Origin::start(|p, n| {
        let cc = if p.uri.path() == "/ns" { "no-store" } else { "private, max-age=60" };
        Reply::ok(&format!("v{n}"), &[("cache-control", cc)])
    })
    .await;
    let proxy = reverse(&origin, |_| {}).await;
    for path in ["/ns", "/priv"] {
        for _ in 0..2 {
            let g = send(proxy.addr(), "GET", path, &[]).await;
            assert_eq!(g.x_cache(), "MISS", "{path}");
        }
    }
    assert_eq!(origin.hits(), 4);
    // Request no-store: the response is not kept.
    let origin2 = Origin::start(|_, n| Reply::ok(&format!("v{n}"), &[("cache-control", "max-age=60")])).await;
    let proxy2 = reverse(&origin2, |_| {}).await;
    send(proxy2.addr(), "GET", "/a", &[("cache-control", "no-store")]).await;
    assert_eq!(send(proxy2.addr(), "GET", "/a", &[]).await.x_cache(), "MISS");
}

#[tokio::test]
async fn vary_keeps_separate_variants() {
    let origin = Origin::start(|p, _| {
        let lang =
            p.headers.get("accept-language").and_then(|v| v.to_str().ok()).unwrap_or("none").to_string();
        Reply::ok(
            &format!("hello in {lang}"),
            &[("cache-control", "max-age=60"), ("vary", "Accept-Language")],
        )
    })
    .await;
    let proxy = reverse(&origin, |_| {}).await;
    let fr = send(proxy.addr(), "GET", "/v", &[("accept-language", "fr")]).await;
    let en = send(proxy.addr(), "GET", "/v", &[("accept-language", "en")]).await;
    assert_eq!((fr.x_cache(), en.x_cache()), ("MISS", "MISS"));
    assert!(en.header("cache-status").contains("vary-miss"));
    let fr2 = send(proxy.addr(), "GET", "/v", &[("accept-language", "fr")]).await;
    let en2 = send(proxy.addr(), "GET", "/v", &[("accept-language", "en")]).await;
    assert_eq!((fr2.x_cache(), &fr2.body[..]), ("HIT", &b"hello in fr"[..]));
    assert_eq!((en2.x_cache(), &en2.body[..]), ("HIT", &b"hello in en"[..]));
    assert_eq!(origin.hits(), 2);
}

fn etag_origin_script(p: &http::request::Parts, n: usize) -> Reply {
    if p.headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some("\"e1\"") {
        let mut r =
            Reply::ok("", &[("etag", "\"e1\""), ("cache-control", "max-age=0"), ("x-seen", &n.to_string())]);
        r.status = 304;
        return r;
    }
    Reply::ok("the body", &[("etag", "\"e1\""), ("cache-control", "max-age=0"), ("x-seen", &n.to_string())])
}

#[tokio::test]
async fn conditional_get_revalidates_and_304_refreshes() {
    let origin = Origin::start(etag_origin_script).await;
    let proxy = reverse(&origin, |_| {}).await;
    let a = send(proxy.addr(), "GET", "/r", &[]).await;
    assert_eq!(a.x_cache(), "MISS");
    let b = send(proxy.addr(), "GET", "/r", &[]).await;
    assert_eq!((b.status, b.x_cache(), &b.body[..]), (200, "REVALIDATED", &b"the body"[..]));
    assert_eq!(origin.last().headers.get("if-none-match").unwrap(), "\"e1\"");
    // The 304's header fields replaced the stored ones.
    assert_eq!(b.header("x-seen"), "2");
    assert!(b.header("cache-status").contains("fwd-status=304"));
    // A client's own conditional is answered from the cache.
    let c = send(proxy.addr(), "GET", "/r", &[("if-none-match", "\"e1\"")]).await;
    assert_eq!(c.status, 304);
}

#[tokio::test]
async fn client_no_cache_max_age_zero_and_pragma_go_to_the_origin() {
    let origin = Origin::start(|_, n| {
        Reply::ok(&format!("v{n}"), &[("cache-control", "max-age=600"), ("etag", "\"x\"")])
    })
    .await;
    let proxy = reverse(&origin, |_| {}).await;
    send(proxy.addr(), "GET", "/c", &[]).await;
    assert_eq!(send(proxy.addr(), "GET", "/c", &[]).await.x_cache(), "HIT");
    for h in [("cache-control", "no-cache"), ("cache-control", "max-age=0"), ("pragma", "no-cache")] {
        let before = origin.hits();
        let g = send(proxy.addr(), "GET", "/c", &[h]).await;
        assert_ne!(g.x_cache(), "HIT", "{h:?}");
        assert_eq!(origin.hits(), before + 1, "{h:?}");
    }
}

#[tokio::test]
async fn only_if_cached_gives_504_on_a_miss_and_the_stored_copy_otherwise() {
    let origin = Origin::start(|_, _| Reply::ok("x", &[("cache-control", "max-age=60")])).await;
    let proxy = reverse(&origin, |_| {}).await;
    let g = send(proxy.addr(), "GET", "/o", &[("cache-control", "only-if-cached")]).await;
    assert_eq!(g.status, 504);
    assert_eq!(origin.hits(), 0);
    send(proxy.addr(), "GET", "/o", &[]).await;
    let g = send(proxy.addr(), "GET", "/o", &[("cache-control", "only-if-cached")]).await;
    assert_eq!((g.status, g.x_cache()), (200, "HIT"));
}

#[tokio::test]
async fn unsafe_methods_invalidate_the_url_and_its_location() {
    let origin = Origin::start(|p, n| {
        if p.method == http::Method::POST {
            let mut r = Reply::ok("made", &[("location", "/items/1")]);
            r.status = 201;
            return r;
        }
        Reply::ok(&format!("v{n}"), &[("cache-control", "max-age=600")])
    })
    .await;
    let proxy = reverse(&origin, |_| {}).await;
    send(proxy.addr(), "GET", "/items", &[]).await;
    send(proxy.addr(), "GET", "/items/1", &[]).await;
    assert_eq!(send(proxy.addr(), "GET", "/items", &[]).await.x_cache(), "HIT");
    let p = send_body(proxy.addr(), "POST", "/items", &[], bytes::Bytes::from_static(b"new")).await;
    assert_eq!((p.status, p.x_cache()), (201, "PASS"));
    assert_eq!(send(proxy.addr(), "GET", "/items", &[]).await.x_cache(), "MISS");
    assert_eq!(send(proxy.addr(), "GET", "/items/1", &[]).await.x_cache(), "MISS");
}

#[tokio::test]
async fn head_is_answered_from_a_stored_get() {
    let origin = Origin::start(|_, _| Reply::ok("0123456789", &[("cache-control", "max-age=60")])).await;
    let proxy = reverse(&origin, |_| {}).await;
    send(proxy.addr(), "GET", "/h", &[]).await;
    let h = send(proxy.addr(), "HEAD", "/h", &[]).await;
    assert_eq!((h.status, h.x_cache(), h.header("content-length"), h.body.len()), (200, "HIT", "10", 0));
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn heuristic_freshness_from_last_modified() {
    let lm = http_date(-100 * 86_400);
    let origin = Origin::start(move |_, _| Reply::ok("old", &[("last-modified", &lm)])).await;
    let proxy = reverse(&origin, |_| {}).await;
    send(proxy.addr(), "GET", "/lm", &[]).await;
    assert_eq!(send(proxy.addr(), "GET", "/lm", &[]).await.x_cache(), "HIT");
}

#[tokio::test]
async fn stale_if_error_serves_the_stored_copy_when_the_origin_fails() {
    let broken = Arc::new(AtomicBool::new(false));
    let b = broken.clone();
    let origin = Origin::start(move |_, _| {
        if b.load(Ordering::SeqCst) {
            let mut r = Reply::ok("down", &[]);
            r.status = 503;
            return r;
        }
        Reply::ok("good", &[("cache-control", "max-age=0, stale-if-error=600")])
    })
    .await;
    let proxy = reverse(&origin, |_| {}).await;
    send(proxy.addr(), "GET", "/e", &[]).await;
    broken.store(true, Ordering::SeqCst);
    let g = send(proxy.addr(), "GET", "/e", &[]).await;
    assert_eq!((g.status, g.x_cache(), &g.body[..]), (200, "STALE", &b"good"[..]));
    // Once the origin is gone entirely, still stale.
    origin.stop();
    let g = send(proxy.addr(), "GET", "/e", &[]).await;
    assert_eq!((g.status, &g.body[..]), (200, &b"good"[..]));
}

#[tokio::test]
async fn stale_while_revalidate_answers_at_once_and_refreshes_in_the_background() {
    let origin = Origin::start(|_, n| {
        Reply::ok(&format!("v{n}"), &[("cache-control", "max-age=0, stale-while-revalidate=600")])
    })
    .await;
    let proxy = reverse(&origin, |_| {}).await;
    send(proxy.addr(), "GET", "/s", &[]).await;
    let g = send(proxy.addr(), "GET", "/s", &[]).await;
    assert_eq!((g.x_cache(), &g.body[..]), ("STALE", &b"v1"[..]));
    let o = origin.clone();
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(10), || {
            let o = o.clone();
            async move { o.hits() >= 2 }
        })
        .await
    );
    let p = proxy.addr();
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || async move {
            &send(p, "GET", "/s", &[]).await.body[..] == b"v2"
        })
        .await
    );
}

#[tokio::test]
async fn must_revalidate_never_serves_stale_on_error() {
    let origin = Origin::start(|_, n| {
        if n > 1 {
            let mut r = Reply::ok("down", &[]);
            r.status = 500;
            return r;
        }
        Reply::ok("good", &[("cache-control", "max-age=0, must-revalidate")])
    })
    .await;
    let proxy = reverse(&origin, |_| {}).await;
    send(proxy.addr(), "GET", "/m", &[]).await;
    let g = send(proxy.addr(), "GET", "/m", &[("cache-control", "max-stale=600")]).await;
    assert_eq!(g.status, 500);
}

#[tokio::test]
async fn one_hundred_concurrent_misses_make_one_origin_request() {
    let origin = Origin::start(|_, _| {
        let mut r = Reply::ok("popular", &[("cache-control", "max-age=60")]);
        r.delay = Duration::from_millis(300);
        r
    })
    .await;
    let proxy = reverse(&origin, |_| {}).await;
    let addr = proxy.addr();
    let tasks: Vec<_> =
        (0..100).map(|_| tokio::spawn(async move { send(addr, "GET", "/flash", &[]).await })).collect();
    for t in tasks {
        let g = t.await.unwrap();
        assert_eq!((g.status, &g.body[..]), (200, &b"popular"[..]));
    }
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn uncacheable_responses_do_not_serialise_waiting_requests() {
    let origin = Origin::start(|_, _| {
        let mut r = Reply::ok("private", &[("cache-control", "no-store")]);
        r.delay = Duration::from_millis(200);
        r
    })
    .await;
    let proxy = reverse(&origin, |_| {}).await;
    let addr = proxy.addr();
    let started = std::time::Instant::now();
    let tasks: Vec<_> =
        (0..10).map(|_| tokio::spawn(async move { send(addr, "GET", "/u", &[]).await })).collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().status, 200);
    }
    // One leader, then the others in parallel: about two origin delays, not ten.
    assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
}

#[tokio::test]
async fn origin_failures_give_502_and_504_with_clear_bodies() {
    let origin = Origin::start(|_, _| {
        let mut r = Reply::ok("slow", &[]);
        r.delay = Duration::from_secs(4);
        r
    })
    .await;
    let proxy = reverse(&origin, |c| c.origin_timeout_secs = 1).await;
    let g = send(proxy.addr(), "GET", "/slow", &[]).await;
    assert_eq!(g.status, 504);
    assert!(String::from_utf8_lossy(&g.body).contains("did not answer within 1 s"));
    // Nothing listens on a port we just freed.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let cfg = appnet_web::proxy::ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        reverse: Some(format!("http://{dead}")),
        ..Default::default()
    };
    let proxy = run(cfg).await;
    let g = send(proxy.addr(), "GET", "/", &[]).await;
    assert_eq!(g.status, 502);
    assert!(String::from_utf8_lossy(&g.body).contains("cannot reach the origin"), "{:?}", g.body);
}

#[tokio::test]
async fn byte_ranges_are_served_from_a_stored_response() {
    let origin =
        Origin::start(|_, _| Reply::ok("0123456789", &[("cache-control", "max-age=60"), ("etag", "\"r\"")]))
            .await;
    let proxy = reverse(&origin, |_| {}).await;
    send(proxy.addr(), "GET", "/r", &[]).await;
    let g = send(proxy.addr(), "GET", "/r", &[("range", "bytes=2-4")]).await;
    assert_eq!((g.status, &g.body[..], g.header("content-range")), (206, &b"234"[..], "bytes 2-4/10"));
    let g = send(proxy.addr(), "GET", "/r", &[("range", "bytes=-3")]).await;
    assert_eq!(&g.body[..], b"789");
    assert_eq!(send(proxy.addr(), "GET", "/r", &[("range", "bytes=50-")]).await.status, 416);
    // If-Range with another validator: the whole representation.
    let g = send(proxy.addr(), "GET", "/r", &[("range", "bytes=2-4"), ("if-range", "\"old\"")]).await;
    assert_eq!((g.status, g.body.len()), (200, 10));
    assert_eq!(origin.hits(), 1);
}
