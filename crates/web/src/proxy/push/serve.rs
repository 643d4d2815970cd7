//! The replica's side of a push: authenticate, parse, then fetch and store each URL as a
//! client's GET for it would be stored, at most `push_concurrency` fetches at once (all
//! pushes together), and answer one line per URL.

use super::super::config::ProxyConfig;
use super::super::fetch::FetchError;
use super::super::handler::Proxy;
use super::super::policy::{CacheControl, strip_hop_by_hop};
use super::super::serve::text;
use super::auth::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use super::wire::{Outcome, ReplyLine, parse_body};
use crate::body::{self, Body};
use futures_util::StreamExt;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

impl Proxy {
    /// Whether `req` is for the push endpoint (an origin-form target in forward mode; any in
    /// reverse mode, where the path is reserved).
    pub(in crate::proxy) fn is_push<B>(&self, req: &Request<B>) -> bool {
        req.uri().path() == super::PUSH_PATH && (self.cfg.is_reverse() || req.uri().authority().is_none())
    }

    /// `POST /.appnet/push`: see the [module](super).
    pub(in crate::proxy) async fn push(
        self: &Arc<Self>,
        req: Request<Body>,
        peer: SocketAddr,
    ) -> Response<Body> {
        let Some(state) = &self.push else {
            return text(
                StatusCode::NOT_FOUND,
                "push is off on this replica (start it with --push-secret-file FILE)",
            );
        };
        if req.method() != Method::POST {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "push with POST");
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
            return r;
        }
        let value = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (ts, sig) = (value(TIMESTAMP_HEADER), value(SIGNATURE_HEADER));
        let limit = self.cfg.push_max_body;
        let read = Limited::new(req.into_body(), limit).collect();
        let body = match tokio::time::timeout(ProxyConfig::secs(self.cfg.header_timeout_secs), read).await {
            Err(_) => return text(StatusCode::REQUEST_TIMEOUT, "the push body did not arrive in time"),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return text(StatusCode::PAYLOAD_TOO_LARGE, format!("a push body is at most {limit} bytes"));
            }
            Ok(Err(_)) => return text(StatusCode::BAD_REQUEST, "the push body could not be read"),
            Ok(Ok(b)) => b.to_bytes(),
        };
        let verdict = state.verifier.lock().unwrap_or_else(|e| e.into_inner()).verify(
            ts.as_deref(),
            sig.as_deref(),
            &body,
            SystemTime::now(),
        );
        if let Err(e) = verdict {
            self.metrics.push_refused.inc();
            tracing::info!(%peer, "push refused: {e}");
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
            let mut r = text(status, format!("push refused: {e}"));
            if status == StatusCode::UNAUTHORIZED {
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Appnet-Push-HMAC-SHA256"));
            }
            return r;
        }
        let urls = match parse_body(&body, self.cfg.push_max_urls) {
            Ok(u) => u,
            Err(e) => {
                let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
                return text(status, format!("push refused: {e}"));
            }
        };
        self.metrics.pushes.inc();
        let lines: Vec<ReplyLine> = futures_util::stream::iter(urls)
            .map(|u| self.push_one(state, u, peer))
            .buffered(self.cfg.push_concurrency.max(1))
            .collect()
            .await;
        let reply: String = lines.iter().map(|l| l.render() + "\n").collect();
        let mut r = text(StatusCode::OK, reply.trim_end().to_string());
        r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }

    /// Fetches one pushed URL and stores it under the key a client's GET for it would use.
    async fn push_one(self: &Arc<Self>, state: &super::PushState, uri: Uri, peer: SocketAddr) -> ReplyLine {
        let url = uri.to_string();
        let line = |outcome, detail: String| ReplyLine { outcome, url: url.clone(), detail };
        let Ok(req) = Request::get(uri.clone()).body(()) else {
            return line(Outcome::Failed, "not a request target".into());
        };
        // In reverse mode the key's scheme is the listener's: another scheme is another site.
        let scheme = if self.cfg.is_tls() { "https" } else { "http" };
        if self.cfg.is_reverse() && uri.scheme_str() != Some(scheme) {
            return line(Outcome::Failed, format!("this replica serves {scheme}:// URLs"));
        }
        let target = match self.target(&req) {
            Ok(t) => t,
            Err(resp) => {
                return line(Outcome::Failed, format!("{} (as a request to this replica)", resp.status()));
            }
        };
        let Ok(_permit) = state.fetches.acquire().await else {
            return line(Outcome::Failed, "shutting down".into());
        };
        let req_headers = HeaderMap::new();
        let request_time = SystemTime::now();
        let up = match self.upstream(Method::GET, &target, &req_headers, peer, body::empty()) {
            Ok(r) => r,
            Err(resp) => return line(Outcome::Failed, format!("{} cannot forward", resp.status())),
        };
        let resp = match self.fetch(&target.origin, up).await {
            Ok(r) => r,
            Err(e) => {
                let why = match &e {
                    FetchError::Timeout => "did not answer in time",
                    FetchError::Failed(_) => "cannot be reached",
                    FetchError::Denied(_) => "is not allowed by the destination policy",
                };
                let status = self.origin_failure(&target, e).status();
                return line(
                    Outcome::Failed,
                    format!("{status}: the origin {} {why}", target.origin.authority),
                );
            }
        };
        let (mut rp, mut incoming) = resp.into_parts();
        strip_hop_by_hop(&mut rp.headers);
        let status = rp.status;
        let why_not = not_stored_reason(status, &rp.headers);
        let stored = self.storable_response(
            &target.key,
            &Method::GET,
            &req_headers,
            &mut rp,
            request_time,
            SystemTime::now(),
        );
        let Some(stored) = stored else {
            return line(Outcome::NotStored, why_not);
        };
        let expected =
            rp.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let max = self.cfg.max_object_size;
        let Some(mut w) = self.store.writer(expected).await else {
            return line(Outcome::NotStored, format!("{status}: larger than max_object_size ({max} bytes)"));
        };
        let idle = ProxyConfig::secs(self.cfg.body_idle_timeout_secs);
        loop {
            match tokio::time::timeout(idle, incoming.frame()).await {
                Err(_) => {
                    w.abort().await;
                    return line(Outcome::Failed, "the origin's body stalled".into());
                }
                Ok(Some(Err(_))) => {
                    w.abort().await;
                    return line(Outcome::Failed, "the origin's body broke off".into());
                }
                Ok(None) => break,
                Ok(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else { continue };
                    self.metrics.bytes_fetched.add(data.len() as u64);
                    w.write(&data).await;
                    if w.failed() {
                        w.abort().await;
                        return line(
                            Outcome::NotStored,
                            format!(
                                "{status}: larger than max_object_size ({max} bytes) or the in-flight budget"
                            ),
                        );
                    }
                }
            }
        }
        let n = w.written();
        if expected.is_some_and(|e| e != n) {
            w.abort().await;
            return line(Outcome::Failed, format!("the origin sent {n} of {} bytes", expected.unwrap_or(0)));
        }
        match self.store.commit(w, stored).await {
            Ok(entry) => {
                self.metrics.pushed.inc();
                let ttl = entry.stored.ttl(SystemTime::now());
                line(Outcome::Stored, format!("{status}, {n} bytes, fresh for {ttl} s, key {}", target.key))
            }
            Err(e) => line(Outcome::Failed, format!("could not store: {e}")),
        }
    }
}

/// Why the origin's answer (`status`, `headers`) may not be stored, for the reply.
fn not_stored_reason(status: StatusCode, headers: &HeaderMap) -> String {
    let cc = CacheControl::parse(headers);
    if cc.has("no-store") {
        format!("{status}: the origin said Cache-Control: no-store")
    } else if cc.has("private") {
        format!("{status}: the origin said Cache-Control: private (not for a shared cache)")
    } else if headers.get(header::VARY).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains('*')) {
        format!("{status}: the origin said Vary: *")
    } else {
        format!("{status}: not storable by RFC 9111 (no freshness information for this status)")
    }
}
