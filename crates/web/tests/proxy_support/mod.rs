//! Helpers for the proxy tests: a programmable origin on 127.0.0.1:0 that counts and records
//! requests, a proxy started with the netkit harness, and a one-request HTTP/1.1 client that
//! sends whatever request-target it is given (origin- or absolute-form).
#![allow(dead_code)]

use appnet_netkit::harness::{Running, start, wait_tcp};
use appnet_web::proxy::{ProxyConfig, ProxyServer};
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// What the origin answers: status, headers, body, and an optional delay.
#[derive(Clone, Default)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub delay: Duration,
}

impl Reply {
    pub fn ok(body: &str, headers: &[(&str, &str)]) -> Reply {
        Reply {
            status: 200,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: Bytes::copy_from_slice(body.as_bytes()),
            delay: Duration::ZERO,
        }
    }
}

type Script = dyn Fn(&http::request::Parts, usize) -> Reply + Send + Sync;

/// A recorded request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
}

/// The programmable origin.
#[derive(Clone)]
pub struct Origin {
    pub addr: SocketAddr,
    pub count: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<tokio::sync::Notify>,
}

impl Origin {
    /// Starts an origin answering with `script(request, n)` (n = this request's number, from 1).
    pub async fn start(
        script: impl Fn(&http::request::Parts, usize) -> Reply + Send + Sync + 'static,
    ) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(tokio::sync::Notify::new());
        let script: Arc<Script> = Arc::new(script);
        let (c, s, st) = (count.clone(), seen.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = st.notified() => break,
                    r = listener.accept() => match r { Ok(p) => p, Err(_) => continue },
                };
                let (c, s, script) = (c.clone(), s.clone(), script.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (c, s, script) = (c.clone(), s.clone(), script.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let _ = body.collect().await;
                            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                            s.lock().unwrap().push(Seen {
                                method: parts.method.to_string(),
                                uri: parts.uri.to_string(),
                                headers: parts.headers.clone(),
                            });
                            let reply = script(&parts, n);
                            if !reply.delay.is_zero() {
                                tokio::time::sleep(reply.delay).await;
                            }
                            let mut resp = Response::new(Full::new(reply.body));
                            *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap();
                            for (k, v) in &reply.headers {
                                resp.headers_mut().append(
                                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                                    http::HeaderValue::from_str(v).unwrap(),
                                );
                            }
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Origin { addr, count, seen, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    pub fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().expect("the origin saw a request")
    }

    pub fn stop(&self) {
        self.stop.notify_one();
    }
}

/// A proxy in reverse mode in front of `origin`, with `tweak` applied to its config.
pub async fn reverse(origin: &Origin, tweak: impl FnOnce(&mut ProxyConfig)) -> Running {
    let mut cfg = ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        reverse: Some(origin.url()),
        ..Default::default()
    };
    tweak(&mut cfg);
    run(cfg).await
}

/// A proxy with this config.
pub async fn run(cfg: ProxyConfig) -> Running {
    let server = ProxyServer::bind(cfg).await.expect("proxy binds");
    let running = start(server);
    wait_tcp(running.addr(), Duration::from_secs(5)).await.unwrap();
    running
}

/// A response as the tests look at it.
pub struct Got {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
    }
    pub fn x_cache(&self) -> &str {
        self.header("x-cache")
    }
}

/// Sends one request (target as given) with `headers` over a fresh connection; 10 s limit.
pub async fn send(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Got {
    send_body(addr, method, target, headers, Bytes::new()).await
}

pub async fn send_body(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Got {
    tokio::time::timeout(Duration::from_secs(10), async {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let mut req = Request::builder().method(method).uri(target);
        let mut has_host = false;
        for (k, v) in headers {
            has_host |= k.eq_ignore_ascii_case("host");
            req = req.header(*k, *v);
        }
        if !has_host {
            req = req.header("host", "site.test");
        }
        let resp = sender.send_request(req.body(Full::new(body)).unwrap()).await.unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Got { status: parts.status.as_u16(), headers: parts.headers, body }
    })
    .await
    .expect("response within 10 s")
}

#[allow(unused_imports)] // not every test binary that includes this module needs it
pub use appnet_netkit::harness::TempDir;

pub fn http_date(offset_secs: i64) -> String {
    let now = std::time::SystemTime::now();
    let t = if offset_secs >= 0 {
        now + Duration::from_secs(offset_secs as u64)
    } else {
        now - Duration::from_secs((-offset_secs) as u64)
    };
    httpdate::fmt_http_date(t)
}
