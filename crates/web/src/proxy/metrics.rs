//! The proxy's counters (Prometheus text at the metrics path) and the per-response cache
//! outcome that becomes the `X-Cache` and `Cache-Status` (RFC 9211) header fields.

use appnet_netkit::metrics::{Counter, Gauge, Registry};
use http::HeaderValue;

/// Counters of one proxy.
#[derive(Clone)]
pub struct ProxyMetrics {
    registry: Registry,
    /// Requests handled.
    pub requests: Counter,
    /// Answered from the cache without asking the origin.
    pub hits: Counter,
    /// Fetched from the origin (nothing usable stored).
    pub misses: Counter,
    /// Stored responses validated by the origin with a 304.
    pub revalidations: Counter,
    /// Stale responses served (stale-while-revalidate, stale-if-error).
    pub stale: Counter,
    /// Not cacheable (methods, CONNECT, no-store...).
    pub passes: Counter,
    /// Body bytes served from the cache (not fetched from the origin).
    pub bytes_saved: Counter,
    /// Body bytes fetched from origins.
    pub bytes_fetched: Counter,
    /// Requests to origins.
    pub origin_requests: Counter,
    /// Origin failures (refused, timeouts, broken).
    pub origin_errors: Counter,
    /// Misses that waited for another request's origin fetch instead of making their own.
    pub collapsed: Counter,
    /// Objects purged or invalidated.
    pub purged: Counter,
    /// CONNECT tunnels opened.
    pub tunnels: Counter,
    /// Requests refused by the client ACL or the destination policy.
    pub denied: Counter,
    /// Idle client connections closed to make room for new ones (the connection cap).
    pub evicted: Counter,
    /// Pushes accepted (signed correctly).
    pub pushes: Counter,
    /// Objects fetched and stored because of a push.
    pub pushed: Counter,
    /// Pushes refused (bad or missing signature, expired timestamp, replay).
    pub push_refused: Counter,
    /// Objects stored now.
    pub objects: Gauge,
    /// Body bytes stored now.
    pub stored_bytes: Gauge,
    /// Body bytes in flight now: parts of bodies being stored in memory, and chunks queued
    /// between an origin and a client.
    pub inflight_bytes: Gauge,
    /// The highest `inflight_bytes` since start.
    pub inflight_peak: Gauge,
    /// Misses that stopped storing because the in-flight budget was exhausted.
    pub inflight_refused: Gauge,
}

impl ProxyMetrics {
    /// Registers the counters.
    pub fn new() -> ProxyMetrics {
        let r = Registry::new();
        let c = |n: &str, h: &str| r.counter(n, h, &[]);
        ProxyMetrics {
            requests: c("appnet_proxy_requests_total", "Requests handled"),
            hits: c("appnet_proxy_hits_total", "Answered from the cache"),
            misses: c("appnet_proxy_misses_total", "Fetched from the origin"),
            revalidations: c("appnet_proxy_revalidations_total", "Stored responses revalidated with a 304"),
            stale: c("appnet_proxy_stale_served_total", "Stale responses served"),
            passes: c("appnet_proxy_passes_total", "Requests not cacheable"),
            bytes_saved: c("appnet_proxy_bytes_saved_total", "Body bytes served from the cache"),
            bytes_fetched: c("appnet_proxy_bytes_fetched_total", "Body bytes fetched from origins"),
            origin_requests: c("appnet_proxy_origin_requests_total", "Requests sent to origins"),
            origin_errors: c("appnet_proxy_origin_errors_total", "Origin failures"),
            collapsed: c("appnet_proxy_collapsed_total", "Misses that waited for a fetch in progress"),
            purged: c("appnet_proxy_purged_total", "Objects purged or invalidated"),
            tunnels: c("appnet_proxy_tunnels_total", "CONNECT tunnels opened"),
            denied: c(
                "appnet_proxy_denied_total",
                "Requests refused by the client ACL or destination policy",
            ),
            evicted: c("appnet_proxy_evicted_total", "Idle client connections closed for new ones"),
            pushes: c("appnet_proxy_pushes_total", "Signed pushes accepted"),
            pushed: c("appnet_proxy_pushed_objects_total", "Objects stored because of a push"),
            push_refused: c("appnet_proxy_push_refused_total", "Pushes refused (signature, time, replay)"),
            objects: r.gauge("appnet_proxy_objects", "Objects stored", &[]),
            stored_bytes: r.gauge("appnet_proxy_stored_bytes", "Body bytes stored", &[]),
            inflight_bytes: r.gauge(
                "appnet_proxy_inflight_bytes",
                "Body bytes in flight (being stored, queued)",
                &[],
            ),
            inflight_peak: r.gauge("appnet_proxy_inflight_bytes_peak", "Highest in-flight body bytes", &[]),
            inflight_refused: r.gauge(
                "appnet_proxy_inflight_refused",
                "Misses served uncached because the in-flight budget was exhausted",
                &[],
            ),
            registry: r,
        }
    }

    /// Hits (fresh and stale) over hits plus misses.
    pub fn hit_ratio(&self) -> f64 {
        let hits = self.hits.get() + self.stale.get() + self.revalidations.get();
        let all = hits + self.misses.get();
        if all == 0 { 0.0 } else { hits as f64 / all as f64 }
    }

    /// Everything in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = self.registry.render();
        out.push_str("# HELP appnet_proxy_hit_ratio Hits (fresh, stale or revalidated) over lookups\n");
        out.push_str("# TYPE appnet_proxy_hit_ratio gauge\n");
        out.push_str(&format!("appnet_proxy_hit_ratio {:.4}\n", self.hit_ratio()));
        out
    }
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// How a response was produced, for `X-Cache` and `Cache-Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Fresh from the cache; `ttl` seconds left.
    Hit { ttl: i64 },
    /// Stale from the cache (stale-while-revalidate or stale-if-error).
    Stale { ttl: i64 },
    /// Validated with the origin (304), then served from the cache.
    Revalidated { ttl: i64 },
    /// Fetched from the origin; `stored` if it was kept; `why` the forward reason.
    Miss { stored: bool, why: Fwd },
    /// Not a cacheable request.
    Pass,
}

/// RFC 9211 `fwd` reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fwd {
    /// Nothing stored for the URL.
    UriMiss,
    /// Stored, but not for this Vary selection.
    VaryMiss,
    /// Stored, stale, and the validation gave a new response.
    Stale,
    /// The client asked to go to the origin (no-cache, max-age=0).
    Request,
}

impl Outcome {
    /// The `X-Cache` value.
    pub fn x_cache(&self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Outcome::Hit { .. } => "HIT",
            Outcome::Stale { .. } => "STALE",
            Outcome::Revalidated { .. } => "REVALIDATED",
            Outcome::Miss { .. } => "MISS",
            Outcome::Pass => "PASS",
        })
    }

    /// This cache's `Cache-Status` list member.
    pub fn cache_status(&self, name: &str) -> String {
        match *self {
            Outcome::Hit { ttl } => format!("{name}; hit; ttl={ttl}"),
            Outcome::Stale { ttl } => format!("{name}; hit; ttl={ttl}; detail=stale"),
            Outcome::Revalidated { ttl } => format!("{name}; fwd=stale; fwd-status=304; ttl={ttl}"),
            Outcome::Miss { stored, why } => {
                let fwd = match why {
                    Fwd::UriMiss => "uri-miss",
                    Fwd::VaryMiss => "vary-miss",
                    Fwd::Stale => "stale",
                    Fwd::Request => "request",
                };
                if stored { format!("{name}; fwd={fwd}; stored") } else { format!("{name}; fwd={fwd}") }
            }
            Outcome::Pass => format!("{name}; fwd=bypass"),
        }
    }
}
