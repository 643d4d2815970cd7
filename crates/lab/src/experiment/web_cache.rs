//! `appnet experiment web-cache`: the textbook's institutional-cache example (§2.2.5) with real
//! traffic. Clients on a fast LAN request 100 kbit objects at 15 requests/s from origins behind
//! a 1.5 Mbps access link (shaped with netkit's shared token bucket) and an Internet delay of
//! 2 s; first without a cache (link intensity 1.0: the queue grows without bound), then through
//! an appnet caching proxy on the LAN at hit rate 0.4 (intensity 0.6). Prints access-link
//! utilisation and mean delay against the textbook's figures. `scale` speeds everything up
//! (rates × scale, delays ÷ scale) for shorter runs.

use appnet_netkit::harness::{Running, start};
use appnet_netkit::rate::{Limited, Limiter};
use appnet_web::body::{self, Body};
use appnet_web::proxy::{ProxyConfig, ProxyServer};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::{Rng, SeedableRng};
use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// The experiment's parameters (the textbook's by default).
#[derive(Debug, Clone)]
pub struct Options {
    /// Requests per second from the institution.
    pub rate: f64,
    /// Object size in bits.
    pub object_bits: u64,
    /// Access-link capacity in bits per second.
    pub link_bps: u64,
    /// Round trip from the institution's router to an origin and back.
    pub internet_delay: Duration,
    /// Fraction of requests for objects the cache holds.
    pub hit_rate: f64,
    /// Measured period per scenario.
    pub duration: Duration,
    /// Speed-up: rates × scale, delays and duration ÷ scale.
    pub scale: f64,
    /// Random seed.
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rate: 15.0,
            object_bits: 100_000,
            link_bps: 1_500_000,
            internet_delay: Duration::from_secs(2),
            hit_rate: 0.4,
            duration: Duration::from_secs(60),
            scale: 4.0,
            seed: 1,
        }
    }
}

/// One scenario's measurements.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Requests issued in the measured period.
    pub requests: usize,
    /// Requests that finished (the rest were still queued at the cut-off).
    pub completed: usize,
    /// Mean response time of completed requests, in unscaled seconds.
    pub mean_delay: f64,
    /// Mean response time of the last quarter of the requests (growth shows saturation).
    pub late_delay: f64,
    /// Bytes over the access link ÷ (capacity × period).
    pub utilisation: f64,
    /// Hits ÷ lookups at the proxy (with the cache).
    pub hit_ratio: Option<f64>,
}

/// Both scenarios and the textbook's predictions.
#[derive(Debug, Clone)]
pub struct Report {
    /// The parameters.
    pub opts: Options,
    /// Without a cache.
    pub no_cache: Measured,
    /// With the institutional cache.
    pub cache: Measured,
}

impl Report {
    /// Transmission time of one object on the access link (Δ = L/R), seconds.
    fn delta(&self) -> f64 {
        self.opts.object_bits as f64 / self.opts.link_bps as f64
    }

    /// Traffic intensity on the link with a cache hit rate `h`.
    fn intensity(&self, h: f64) -> f64 {
        self.opts.rate * (1.0 - h) * self.delta()
    }

    /// The textbook's mean delay: hits ≈ 0 (LAN), misses Internet delay + access delay
    /// Δ/(1 − Δβ); infinite at intensity ≥ 1.
    fn theory_delay(&self, h: f64) -> f64 {
        let i = self.intensity(h);
        if i >= 1.0 {
            return f64::INFINITY;
        }
        (1.0 - h) * (self.opts.internet_delay.as_secs_f64() + self.delta() / (1.0 - i))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.opts;
        writeln!(
            f,
            "Institutional cache (textbook 2.2.5): {} req/s of {} kbit objects, {} Mbps access link, \
             Internet delay {:.1} s, {:.0} s measured per scenario{}",
            o.rate,
            o.object_bits / 1000,
            o.link_bps as f64 / 1e6,
            o.internet_delay.as_secs_f64(),
            o.duration.as_secs_f64(),
            if o.scale != 1.0 {
                format!(" (run {}x faster, figures rescaled)", o.scale)
            } else {
                String::new()
            }
        )?;
        writeln!(
            f,
            "{:<22} {:>10} {:>11} {:>13} {:>12} {:>13} {:>10} {:>10}",
            "scenario",
            "intensity",
            "link util.",
            "delay theory",
            "delay meas.",
            "last quarter",
            "hit ratio",
            "completed"
        )?;
        for (name, h, m) in
            [("no cache", 0.0, &self.no_cache), ("cache, hit rate 0.4", o.hit_rate, &self.cache)]
        {
            let theory = self.theory_delay(h);
            let theory = if theory.is_finite() { format!("{theory:.2} s") } else { "grows, ∞".into() };
            writeln!(
                f,
                "{:<22} {:>10.2} {:>11.2} {:>13} {:>10.2} s {:>11.2} s {:>10} {:>6}/{}",
                name,
                self.intensity(h),
                m.utilisation,
                theory,
                m.mean_delay,
                m.late_delay,
                m.hit_ratio.map(|r| format!("{r:.2}")).unwrap_or_else(|| "-".into()),
                m.completed,
                m.requests
            )?;
        }
        write!(
            f,
            "Without a cache the link is saturated and delays keep growing with the run; with the cache \
             the link carries 60% of the traffic and the mean delay drops to about the textbook's figure."
        )
    }
}

/// The origins "on the Internet": every path is a distinct object of `size` bytes, answered
/// after `delay`, cacheable for an hour.
async fn origin(size: usize, delay: Duration) -> io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let body = Bytes::from(vec![b'x'; size]);
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                    let body = body.clone();
                    async move {
                        tokio::time::sleep(delay).await;
                        let mut r = Response::new(body::full(body));
                        r.headers_mut()
                            .insert("cache-control", http::HeaderValue::from_static("max-age=3600"));
                        Ok::<Response<Body>, Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((addr, task))
}

/// The access link: a TCP relay to the origin whose downstream bytes (origin → institution)
/// all pass one shared token bucket of the link's capacity.
async fn access_link(
    to: SocketAddr,
    bytes_per_sec: u64,
    carried: Arc<AtomicU64>,
) -> io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let link = Limiter::new(bytes_per_sec, (bytes_per_sec / 20).max(1500));
    let task = tokio::spawn(async move {
        while let Ok((inside, _)) = listener.accept().await {
            let (link, carried) = (link.clone(), carried.clone());
            tokio::spawn(async move {
                let Ok(outside) = TcpStream::connect(to).await else { return };
                let _ = outside.set_nodelay(true);
                let _ = inside.set_nodelay(true);
                let mut inside =
                    Counting { inner: Limited::new(inside, Limiter::unlimited(), link), carried };
                let mut outside = outside;
                let _ = tokio::io::copy_bidirectional(&mut inside, &mut outside).await;
            });
        }
    });
    Ok((addr, task))
}

/// Counts the bytes written (downstream over the link) as they go.
struct Counting<S> {
    inner: S,
    carried: Arc<AtomicU64>,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Counting<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Counting<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = r {
            self.carried.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Runs both scenarios. `progress` gets a line per phase.
pub async fn run(opts: Options, progress: impl Fn(&str)) -> io::Result<Report> {
    let s = opts.scale.max(0.01);
    let size = (opts.object_bits / 8) as usize;
    let delay = opts.internet_delay.div_f64(s);
    let link_bytes = ((opts.link_bps as f64 / 8.0) * s) as u64;
    let rate = opts.rate * s;
    let period = opts.duration.div_f64(s);
    let (origin_addr, origin_task) = origin(size, delay).await?;

    progress("no cache: clients fetch over the access link");
    let carried = Arc::new(AtomicU64::new(0));
    let (link_addr, link_task) = access_link(origin_addr, link_bytes, carried.clone()).await?;
    let mut no_cache = load(link_addr, rate, period, opts.hit_rate, opts.seed, &carried, link_bytes).await;
    link_task.abort();

    progress("with the institutional cache on the LAN");
    let carried = Arc::new(AtomicU64::new(0));
    let (link_addr, link_task) = access_link(origin_addr, link_bytes, carried.clone()).await?;
    let cfg = ProxyConfig {
        listen: "127.0.0.1:0".parse().map_err(io::Error::other)?,
        reverse: Some(format!("http://{link_addr}")),
        origin_timeout_secs: 3600,
        body_idle_timeout_secs: 3600,
        ..ProxyConfig::default()
    };
    let server = ProxyServer::bind(cfg).await?;
    let proxy = server.proxy();
    let running: Running = start(server);
    // Warm the cache with the popular objects (the 40% that will hit).
    let client: Client<_, Body> = Client::builder(TokioExecutor::new()).build_http();
    let warm: Vec<_> =
        (0..POPULAR).map(|i| fetch(&client, running.addr(), format!("/popular/{i}"))).collect();
    futures_util::future::join_all(warm).await;
    let hits0 = proxy.metrics().hits.get();
    let misses0 = proxy.metrics().misses.get();
    let mut cache =
        load(running.addr(), rate, period, opts.hit_rate, opts.seed + 1, &carried, link_bytes).await;
    let hits = proxy.metrics().hits.get() - hits0;
    let misses = proxy.metrics().misses.get() - misses0;
    cache.hit_ratio = Some(if hits + misses == 0 { 0.0 } else { hits as f64 / (hits + misses) as f64 });
    let _ = running.stop().await;
    link_task.abort();
    origin_task.abort();
    // Report in the textbook's (unscaled) seconds.
    for m in [&mut no_cache, &mut cache] {
        m.mean_delay *= s;
        m.late_delay *= s;
    }
    Ok(Report { opts, no_cache, cache })
}

/// Objects in the popular (cached) set.
const POPULAR: usize = 20;

async fn fetch(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Body>,
    to: SocketAddr,
    path: String,
) -> bool {
    let Ok(uri) = format!("http://{to}{path}").parse::<http::Uri>() else { return false };
    let Ok(resp) = client.get(uri).await else { return false };
    resp.into_body().collect().await.is_ok()
}

/// Poisson arrivals at `rate` for `period` towards `to`; a `hit_rate` share asks for popular
/// objects, the rest for objects never seen before. Waits for completions up to a cut-off.
async fn load(
    to: SocketAddr,
    rate: f64,
    period: Duration,
    hit_rate: f64,
    seed: u64,
    carried: &AtomicU64,
    link_bytes: u64,
) -> Measured {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let client: Client<_, Body> =
        Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1024).build_http();
    let start = Instant::now();
    let carried0 = carried.load(Ordering::Relaxed);
    let mut tasks = Vec::new();
    let mut next = Duration::ZERO;
    let mut n = 0u64;
    while next < period {
        tokio::time::sleep_until((start + next).into()).await;
        let path = if rng.random::<f64>() < hit_rate {
            format!("/popular/{}", rng.random_range(0..POPULAR))
        } else {
            n += 1;
            format!("/object/{seed}-{n}")
        };
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            fetch(&client, to, path).await.then(|| t.elapsed())
        }));
        // Exponential inter-arrival times.
        let u: f64 = rng.random::<f64>().max(1e-9);
        next += Duration::from_secs_f64(-u.ln() / rate);
    }
    let elapsed = start.elapsed();
    let carried_bytes = carried.load(Ordering::Relaxed) - carried0;
    let requests = tasks.len();
    let cutoff = period * 3;
    let mut delays = Vec::new();
    let mut late = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        let left = cutoff.saturating_sub(start.elapsed());
        if let Ok(Ok(Some(d))) = tokio::time::timeout(left, t).await {
            delays.push(d.as_secs_f64());
            if i >= requests * 3 / 4 {
                late.push(d.as_secs_f64());
            }
        }
    }
    let mean = |v: &[f64]| if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 };
    let mean_delay = mean(&delays);
    let late_delay = mean(&late);
    Measured {
        requests,
        completed: delays.len(),
        mean_delay,
        late_delay,
        utilisation: carried_bytes as f64 / (link_bytes as f64 * elapsed.as_secs_f64()),
        hit_ratio: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let m = Measured {
            requests: 0,
            completed: 0,
            mean_delay: 0.0,
            late_delay: 0.0,
            utilisation: 0.0,
            hit_ratio: None,
        };
        Report { opts: Options::default(), no_cache: m.clone(), cache: m }
    }

    #[test]
    fn textbook_figures() {
        let r = report();
        // 15 req/s × 100 kbit on 1.5 Mbps: intensity 1 without a cache, 0.6 at hit rate 0.4.
        assert!((r.intensity(0.0) - 1.0).abs() < 1e-9);
        assert!((r.intensity(0.4) - 0.6).abs() < 1e-9);
        assert!(r.theory_delay(0.0).is_infinite());
        // 0.6 × (2 s + 0.0667 s / 0.4) ≈ 1.30 s.
        assert!((r.theory_delay(0.4) - 1.3).abs() < 0.01, "{}", r.theory_delay(0.4));
    }
}
