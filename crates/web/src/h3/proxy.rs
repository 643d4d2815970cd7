//! The caching proxy behind HTTP/3 (`appnet web proxy --tls --http3`): each request, its body
//! read in full, goes to the same [`Proxy::handle`] as over HTTP/1.1 and HTTP/2, so the CDN
//! replicas and reverse proxies answer h3 clients from the same cache.

use super::server::{H3Limits, H3Service};
use crate::body::{self, Body};
use crate::proxy::ProxyConfig;
use crate::proxy::handler::Proxy;
use crate::site::ConnInfo;
use crate::stats::Stats;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use std::future::Future;
use std::sync::Arc;

/// Largest request body an HTTP/3 client may send through the proxy (it is read in full
/// before forwarding).
pub const MAX_BODY: u64 = 16 * 1024 * 1024;

/// Concurrent request streams per HTTP/3 connection (as for the proxy's HTTP/2).
const MAX_STREAMS: u32 = 128;

impl H3Service for Proxy {
    fn limits(&self) -> H3Limits {
        let cfg = self.config();
        H3Limits {
            max_connections: cfg.max_connections.max(1),
            max_per_ip: cfg.max_connections_per_ip.unwrap_or(cfg.max_connections / 8).max(1),
            header_timeout: ProxyConfig::secs(cfg.header_timeout_secs),
            idle_timeout: ProxyConfig::secs(cfg.idle_timeout_secs),
            max_streams: MAX_STREAMS,
            max_headers: cfg.max_headers,
            max_target: cfg.max_request_line,
            max_field_section: cfg.max_header_bytes as u64,
            max_body: MAX_BODY,
            congestion: super::quic::Congestion::default(),
        }
    }

    fn stats(&self) -> Option<&Stats> {
        None
    }

    fn serve(
        this: &Arc<Self>,
        req: Request<Bytes>,
        conn: ConnInfo,
    ) -> impl Future<Output = Response<Body>> + Send {
        let this = this.clone();
        async move {
            let resp = if req.method() == Method::CONNECT {
                crate::proxy::server::refused(&this, 501, "CONNECT is not tunnelled over HTTP/3", conn.peer)
            } else {
                this.handle(req.map(body::full), conn.peer).await
            };
            if this.config().access_log {
                println!("{} {}", conn.peer.ip(), resp.status().as_u16());
            }
            resp
        }
    }

    fn refuse(&self, status: u16, why: &'static str, conn: &ConnInfo) -> Response<Body> {
        let status = StatusCode::from_u16(status).map_or(400, |s| s.as_u16());
        crate::proxy::server::refused(self, status, why, conn.peer)
    }
}
