//! The caching proxy over HTTP/3 (`web proxy --tls --http3`): an h3 client is answered from the
//! same cache as TCP clients (a miss, then a hit without asking the origin), and TCP responses
//! advertise h3 with Alt-Svc.

mod proxy_support;
use appnet_netkit::harness::TempDir;
use appnet_web::h3::client::{Http3Client, Roots};
use http::{HeaderMap, Method};
use proxy_support::*;

#[tokio::test]
async fn a_reverse_proxy_serves_h3_clients_from_its_cache() {
    let origin = Origin::start(|_, _| Reply::ok("cached body", &[("cache-control", "max-age=60")])).await;
    let ca = TempDir::new("proxy-h3-ca");
    let ca_dir = ca.path().to_path_buf();
    let proxy = reverse(&origin, |c| {
        c.tls = true;
        c.http3 = true;
        c.ca_dir = Some(ca_dir);
    })
    .await;
    let client =
        Http3Client::connect(proxy.addr(), "localhost", Roots::CaFile(ca.path().join("ca.pem")), None)
            .await
            .unwrap();
    let (first, body) = client.request(Method::GET, "/page", HeaderMap::new()).await.unwrap();
    assert_eq!((first.status().as_u16(), &body[..]), (200, &b"cached body"[..]));
    let (second, body) = client.request(Method::GET, "/page", HeaderMap::new()).await.unwrap();
    assert_eq!((second.status().as_u16(), &body[..]), (200, &b"cached body"[..]));
    assert!(
        second.headers().get("x-cache").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("HIT"))
    );
    assert_eq!(origin.hits(), 1, "the second h3 request was a cache hit");

    let url = format!("https://localhost:{}/page", proxy.addr().port());
    let tcp = appnet_web::client::get_at(
        &url,
        appnet_web::client::Proto::Http11,
        Some(&ca.path().join("ca.pem")),
        std::time::Duration::from_secs(10),
        Some(proxy.addr().ip()),
    )
    .await
    .unwrap();
    let alt = tcp.headers().get(http::header::ALT_SVC).expect("Alt-Svc").to_str().unwrap();
    assert!(alt.starts_with(&format!("h3=\":{}\"", proxy.addr().port())), "{alt}");
}
