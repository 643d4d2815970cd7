//! Origin I/O for the request flow: where a request goes ([`Target`]), the request sent
//! upstream, the bounded wait for the origin's response head, and the 502 / 504 / 403 a failed
//! fetch becomes; plus the TLS clients of `https://` origins.

use super::config::ProxyConfig;
use super::dest::{DestDenied, Refusal};
use super::handler::{Proxy, SetupError};
use super::origin::{self, Origin, OriginClient};
use super::serve::text;
use crate::body::Body;
use http::header::HeaderMap;
use http::{Method, Request, Response, StatusCode};
use std::collections::HashMap;
use std::net::SocketAddr;

/// Where a request goes and under which cache key.
#[derive(Clone)]
pub(super) struct Target {
    pub(super) origin: Origin,
    pub(super) key: String,
    /// The `Host` sent upstream: always the authority inside `key`, so what is fetched is what
    /// is stored under it.
    pub(super) host: String,
    pub(super) path_and_query: String,
}

/// Why no response head came from the origin.
pub(super) enum FetchError {
    Timeout,
    Failed(String),
    /// The destination is refused by the forward proxy's policy.
    Denied(Refusal),
}

impl Proxy {
    /// The request to the origin for `target` (see [`origin::upstream_request`]); a 400 when
    /// the client's request cannot be forwarded.
    pub(super) fn upstream(
        &self,
        method: Method,
        target: &Target,
        headers: &HeaderMap,
        peer: SocketAddr,
        body: Body,
    ) -> Result<Request<Body>, Box<Response<Body>>> {
        origin::upstream_request(
            method,
            &target.origin,
            &target.host,
            &target.path_and_query,
            headers,
            peer.ip(),
            &self.upstream_added,
            &self.strip_upstream,
            body,
        )
        .map_err(|e| Box::new(text(StatusCode::BAD_REQUEST, format!("cannot forward this request: {e}"))))
    }

    /// Sends `req` to `origin` and waits (at most `origin_timeout_secs`) for the head.
    pub(super) async fn fetch(
        &self,
        origin: &Origin,
        req: Request<Body>,
    ) -> Result<Response<hyper::body::Incoming>, FetchError> {
        self.metrics.origin_requests.inc();
        let limit = ProxyConfig::secs(self.cfg.origin_timeout_secs);
        let client = match origin.https {
            false => &self.client,
            true => match self.tls_clients.get(&origin.authority) {
                Some(c) => c,
                None => {
                    self.metrics.origin_errors.inc();
                    return Err(FetchError::Failed("no TLS client for this origin".into()));
                }
            },
        };
        match tokio::time::timeout(limit, client.request(req)).await {
            Err(_) => {
                self.metrics.origin_errors.inc();
                Err(FetchError::Timeout)
            }
            Ok(Err(e)) => {
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    if let Some(DestDenied(r)) = s.downcast_ref::<DestDenied>() {
                        self.metrics.denied.inc();
                        return Err(FetchError::Denied(*r));
                    }
                    msg = format!("{msg}: {s}");
                    src = s.source();
                }
                self.metrics.origin_errors.inc();
                if msg.contains("invalid peer certificate") {
                    msg.push_str(" (is the origin's CA trusted? add it with --origin-ca FILE)");
                }
                Err(FetchError::Failed(msg))
            }
            Ok(Ok(r)) => Ok(r),
        }
    }

    /// The answer to the client when the origin could not be asked.
    pub(super) fn origin_failure(&self, target: &Target, err: FetchError) -> Response<Body> {
        match err {
            FetchError::Timeout => text(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "504 gateway timeout: the origin {} did not answer within {} s",
                    target.origin.authority,
                    self.cfg.origin_timeout_secs.max(1)
                ),
            ),
            FetchError::Failed(why) => {
                // The details (OS error text) go to the log only: in a body they would tell a
                // client which ports of the origin's host are open.
                match self.cfg.is_reverse() {
                    true => tracing::info!(origin = %target.origin.authority, "origin failed: {why}"),
                    // Forward mode: any client can name any origin; keep it out of the default log.
                    false => tracing::debug!(origin = %target.origin.authority, "origin failed: {why}"),
                }
                let hint = if why.contains("invalid peer certificate") {
                    " (its certificate is not trusted: see --origin-ca)"
                } else {
                    ""
                };
                text(
                    StatusCode::BAD_GATEWAY,
                    format!("502 bad gateway: cannot reach the origin {}{hint}", target.origin.authority),
                )
            }
            FetchError::Denied(r) => text(
                StatusCode::FORBIDDEN,
                format!("403 forbidden: {} is {r}; this proxy does not go there", target.origin.authority),
            ),
        }
    }
}

/// The clients of the `https://` origins among `origins`, sharing one rustls config that trusts
/// the system's roots, the lab CA and the configured CA files (as configured).
pub(super) fn tls_clients<'a>(
    cfg: &ProxyConfig,
    origins: impl Iterator<Item = &'a Origin>,
    opts: &origin::ClientOpts,
) -> Result<HashMap<String, OriginClient>, SetupError> {
    let https: Vec<&Origin> = origins.filter(|o| o.https).collect();
    let mut out = HashMap::new();
    if https.is_empty() {
        return Ok(out);
    }
    let trust = crate::tls_client::Trust {
        system: cfg.origin_system_roots,
        lab_ca_dir: cfg
            .origin_lab_ca
            .then(|| cfg.ca_dir.clone().unwrap_or_else(crate::tls::LabCa::default_dir)),
        extra: cfg.origin_ca.clone(),
    };
    let alpn: &[&[u8]] = if cfg.origin_h2 { &[b"h2", b"http/1.1"] } else { &[b"http/1.1"] };
    let tls = crate::tls_client::client_config(&trust, alpn)?;
    for o in https {
        if !out.contains_key(&o.authority) {
            let client = origin::tls_client(o, tls.clone(), opts).map_err(SetupError::Origin)?;
            out.insert(o.authority.clone(), client);
        }
    }
    Ok(out)
}
