//! The proxy's admin endpoints, for `purge_allow` clients only: the Prometheus metrics page
//! (`metrics_path`) and `PURGE` of a URL's stored variants.

use super::fetch::Target;
use super::handler::Proxy;
use super::serve::text;
use crate::body::Body;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use std::net::SocketAddr;

impl Proxy {
    /// Whether `peer` may purge and read metrics.
    pub fn admin(&self, peer: SocketAddr) -> bool {
        self.purge_allow.contains(peer.ip())
    }

    /// Renders the metrics (with store usage).
    pub fn render_metrics(&self) -> String {
        let (objects, bytes) = self.store.usage();
        self.metrics.objects.set(objects as i64);
        self.metrics.stored_bytes.set(bytes as i64);
        let inflight = self.store.inflight();
        self.metrics.inflight_bytes.set(inflight.current() as i64);
        self.metrics.inflight_peak.set(inflight.peak() as i64);
        self.metrics.inflight_refused.set(inflight.refused() as i64);
        self.metrics.render()
    }

    /// The metrics page when `req` asks for it (forward mode: an origin-form GET of
    /// `metrics_path`; reverse mode: that path from a `purge_allow` client), else `None`.
    pub(super) fn metrics_page<B>(&self, req: &Request<B>, peer: SocketAddr) -> Option<Response<Body>> {
        let origin_form = req.uri().authority().is_none();
        if self.cfg.metrics_path.is_empty()
            || req.method() != Method::GET
            || req.uri().path() != self.cfg.metrics_path
            || !((origin_form && !self.cfg.is_reverse()) || (self.cfg.is_reverse() && self.admin(peer)))
        {
            return None;
        }
        if !self.admin(peer) {
            return Some(text(StatusCode::FORBIDDEN, "metrics are for purge_allow clients"));
        }
        let mut r = text(StatusCode::OK, self.render_metrics());
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
        Some(r)
    }

    /// `PURGE`: removes every stored variant of the target's key.
    pub(super) fn purge(&self, target: &Target, peer: SocketAddr) -> Response<Body> {
        if !self.admin(peer) {
            return text(StatusCode::FORBIDDEN, format!("{} may not purge", peer.ip()));
        }
        let n = self.store.remove(&target.key);
        self.metrics.purged.add(n as u64);
        if n == 0 {
            text(StatusCode::NOT_FOUND, format!("{} is not in the cache", target.key))
        } else {
            text(StatusCode::OK, format!("purged {} ({n} variant(s))", target.key))
        }
    }
}
