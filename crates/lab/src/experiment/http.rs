//! `appnet experiment http`: the textbook's HTTP round-trip scorecard and QUIC's head-of-line
//! claim, measured on an emulated link (`appnet link`: default RTT 100 ms, 10 Mbit/s, a
//! 100-packet drop-tail queue) instead of loopback, where every RTT is microseconds.
//!
//! The page is the textbook's: a base HTML file referencing N objects (default 10 of 10 KiB),
//! served by appnet's web server in namespace B (cleartext on port 80, TLS with HTTP/2 and
//! HTTP/3 on port 443) and fetched from namespace A by real clients over kernel TCP or QUIC.
//!
//! 1. Page-load time per way of fetching it, next to the textbook's count: non-persistent
//!    serial `2R` per object, non-persistent with parallel connections, persistent `R` per
//!    object, pipelined (one `R` for all objects), HTTP/2 over TLS 1.3 (one connection,
//!    multiplexed), HTTP/3 with a 1-RTT handshake and with 0-RTT resumption; each plus the
//!    transmission time of the bytes at the link rate. A second theory column adds the extra
//!    round trips TCP's (and QUIC's) slow start needs for a burst larger than the initial window.
//! 2. With loss 0, 1, 2, 5 %: HTTP/2 (one TCP connection: a lost segment stalls every stream
//!    behind it) against HTTP/3 (a lost packet stalls only its own stream): time to the first
//!    complete object and to the whole page, median and 10th–90th percentiles over repetitions.
//!
//! It needs root (namespaces, TUN); without it, it refuses rather than measure loopback.

use super::plot::{Series, line_chart};
use super::{Table, quantile};
use crate::http_scene::{self, Mode};
use appnet_link::{Link, LinkSpec};
use appnet_netkit::{Service, Shutdown};
use appnet_web::h3::quic::Congestion;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The experiment's knobs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the SVG plots, the site and the lab CA go.
    pub out: PathBuf,
    /// Fewer repetitions (a couple of minutes).
    pub quick: bool,
    /// Round-trip propagation delay of the link.
    pub rtt: Duration,
    /// Link rate in bits per second.
    pub rate_bps: u64,
    /// Objects the base page references.
    pub objects: usize,
    /// Size of each object in bytes.
    pub object_size: usize,
    /// Loss rates (fractions) for the HTTP/2 vs HTTP/3 comparison.
    pub losses: Vec<f64>,
    /// Seed of the emulator's random loss.
    pub seed: u64,
    /// The congestion controllers compared under loss, each on both transports: kernel TCP
    /// (set per socket) and QUIC run the same algorithm. The first also serves part 1.
    pub congestion: Vec<Congestion>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            out: PathBuf::from("experiments"),
            quick: false,
            rtt: Duration::from_millis(100),
            rate_bps: 10_000_000,
            objects: 10,
            object_size: 10 * 1024,
            losses: vec![0.0, 0.01, 0.02, 0.05],
            seed: 1,
            congestion: vec![Congestion::Cubic],
        }
    }
}

/// Why the experiment could not run.
#[derive(Debug, thiserror::Error)]
pub enum HttpExperimentError {
    /// Namespaces and TUN devices need root; nothing is measured without them.
    #[error(
        "appnet experiment http needs root (it builds an emulated link between two network namespaces); \
         run it with sudo. Loopback has no RTT worth measuring, so it does not fall back to it"
    )]
    NotRoot,
    /// The emulated link could not be built.
    #[error(transparent)]
    Link(#[from] appnet_link::LinkError),
    /// Files, servers or threads.
    #[error("{0}")]
    Setup(String),
    /// A plot could not be written.
    #[error(transparent)]
    Write(#[from] super::ExperimentError),
}

/// The emulated link's name (namespaces `appnet-exp-http-a` and `-b`).
pub const LINK_NAME: &str = "appnet-exp-http";
const PAGE: &str = "/page/base.html";
/// Bytes a TCP or QUIC sender may send in its first round trip (10 segments, RFC 6928; quinn's
/// initial window is the same order).
const INITIAL_WINDOW: f64 = 10.0 * 1448.0;
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// The ways of fetching the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Serial,
    Parallel,
    Persistent,
    Pipelined,
    Http2,
    Http3,
    Http3ZeroRtt,
}

impl Way {
    const ALL: [Way; 7] = [
        Way::Serial,
        Way::Parallel,
        Way::Persistent,
        Way::Pipelined,
        Way::Http2,
        Way::Http3,
        Way::Http3ZeroRtt,
    ];

    fn label(self) -> &'static str {
        match self {
            Way::Serial => "non-persistent, serial (HTTP/1.0 style)",
            Way::Parallel => "non-persistent, parallel connections",
            Way::Persistent => "persistent, no pipelining",
            Way::Pipelined => "persistent, pipelined",
            Way::Http2 => "HTTP/2 over TLS 1.3",
            Way::Http3 => "HTTP/3, 1-RTT handshake",
            Way::Http3ZeroRtt => "HTTP/3, 0-RTT resumption",
        }
    }

    /// The textbook's round-trip count for a base page and `n` objects.
    fn rtts(self, n: usize) -> f64 {
        let n = n as f64;
        match self {
            Way::Serial => 2.0 * (1.0 + n),
            Way::Parallel => 4.0,
            Way::Persistent => 2.0 + n,
            Way::Pipelined => 3.0,
            Way::Http2 => 4.0,
            Way::Http3 => 3.0,
            Way::Http3ZeroRtt => 2.0,
        }
    }

    /// The formula, as printed.
    fn formula(self) -> &'static str {
        match self {
            Way::Serial => "2R(1+N)+T",
            Way::Parallel => "2R+2R+T",
            Way::Persistent => "2R+NR+T",
            Way::Pipelined => "2R+R+T",
            Way::Http2 => "R(TCP)+R(TLS)+R+R+T",
            Way::Http3 => "R(QUIC+TLS)+R+R+T",
            Way::Http3ZeroRtt => "R(0-RTT base)+R+T",
        }
    }

    /// Bytes one connection must send back to back in one go (what slow start paces).
    fn burst(self, n: usize, size: usize) -> f64 {
        match self {
            Way::Serial | Way::Parallel | Way::Persistent => size as f64,
            _ => (n * size) as f64,
        }
    }
}

/// Extra round trips slow start needs for `bytes` sent at once, from the initial window
/// doubling every RTT (until the link's bandwidth-delay product takes over).
fn slow_start_rounds(bytes: f64, bdp: f64) -> f64 {
    let (mut window, mut sent, mut rounds) = (INITIAL_WINDOW, 0.0, 0.0);
    while sent + window < bytes && window < bdp {
        sent += window;
        window *= 2.0;
        rounds += 1.0;
    }
    rounds
}

/// One page load.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Seconds from the start to the first complete object after the base page.
    first: f64,
    /// Seconds from the start to the last object.
    total: f64,
    /// Whether 0-RTT early data was accepted (HTTP/3 only).
    zero_rtt: bool,
}

/// Runs the experiment (blocking: it owns threads in both namespaces) and returns its tables.
pub fn run(opts: &Options, progress: impl Fn(&str) + Sync) -> Result<Vec<Table>, HttpExperimentError> {
    if !appnet_link::netns::is_root() {
        return Err(HttpExperimentError::NotRoot);
    }
    let setup = |e: std::io::Error| HttpExperimentError::Setup(e.to_string());
    std::fs::create_dir_all(&opts.out).map_err(setup)?;
    let work = opts.out.join("http-experiment");
    let site = work.join("site");
    write_site(&site, opts.objects, opts.object_size).map_err(setup)?;
    let ca_dir = work.join("ca");
    let mut spec = link_spec(opts, 0.0)?;
    progress(&format!("link {LINK_NAME}: {}", spec.a2b));
    if opts.congestion.is_empty() {
        return Err(HttpExperimentError::Setup("no congestion controller to compare".into()));
    }
    let link = Link::up(LINK_NAME, &spec, opts.seed)?;
    // The namespaces inherit the host's TCP congestion control, which may be BBR while quinn
    // runs CUBIC: HTTP/2 and HTTP/3 must run the same algorithm, or the comparison is of
    // controllers, not protocols. So every TCP socket gets it explicitly.
    progress(&format!(
        "kernel TCP's default in the namespaces: {}; set per socket to the controller compared",
        link.tcp_congestion().unwrap_or_else(|e| e.to_string())
    ));
    let shutdown = Shutdown::new();
    let server = start_servers(&link.ns_b(), &site, &ca_dir, &opts.congestion, shutdown.clone())?;
    let result = std::thread::scope(|scope| {
        let ns_a = link.ns_a();
        let link = &link;
        let progress = &progress;
        let ca_dir = &ca_dir;
        let spec = &mut spec;
        scope
            .spawn(move || -> Result<Vec<Table>, HttpExperimentError> {
                appnet_link::netns::enter_named(&ns_a)?;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| HttpExperimentError::Setup(e.to_string()))?;
                rt.block_on(measure(opts, link, spec, ca_dir, progress))
            })
            .join()
            .map_err(|_| HttpExperimentError::Setup("the client thread panicked".into()))?
    });
    shutdown.trigger();
    let _ = server.join();
    let _ = link.down();
    result
}

fn link_spec(opts: &Options, loss: f64) -> Result<LinkSpec, HttpExperimentError> {
    let mut spec = LinkSpec::default();
    spec.set("rtt", &format!("{}us", opts.rtt.as_micros()))?;
    spec.set("rate", &format!("{}bit", opts.rate_bps))?;
    spec.set("queue", "100")?;
    spec.set("loss", &format!("{loss}"))?;
    spec.validate()?;
    Ok(spec)
}

/// The textbook page: `page/base.html` with `<img>` references to `objects` files.
fn write_site(dir: &Path, objects: usize, size: usize) -> std::io::Result<()> {
    let page = dir.join("page");
    std::fs::create_dir_all(&page)?;
    let mut html = String::from("<!doctype html>\n<html><body>\n<h1>The textbook's page</h1>\n");
    for i in 1..=objects {
        // Incompressible bytes, so every transfer costs its size.
        let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ i as u64;
        let body: Vec<u8> = (0..size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(page.join(format!("obj{i}.jpg")), body)?;
        html.push_str(&format!("<img src=\"obj{i}.jpg\">\n"));
    }
    html.push_str("</body></html>\n");
    std::fs::write(page.join("base.html"), html)
}

/// Starts the cleartext (port 80) and the TLS + HTTP/3 (port 443) servers in namespace `ns`.
fn start_servers(
    ns: &str,
    site: &Path,
    ca_dir: &Path,
    congestion: &[Congestion],
    shutdown: Shutdown,
) -> Result<std::thread::JoinHandle<()>, HttpExperimentError> {
    let (tx, rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let (ns, site, ca_dir) = (ns.to_string(), site.to_path_buf(), ca_dir.to_path_buf());
    let congestion = congestion.to_vec();
    let handle = std::thread::Builder::new()
        .name("exp-http-server".into())
        .spawn(move || {
            let started = (|| -> Result<tokio::runtime::Runtime, String> {
                appnet_link::netns::enter_named(&ns).map_err(|e| e.to_string())?;
                tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())
            })();
            let rt = match started {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let config = |port: u16, tls: bool, cc: Congestion| appnet_web::WebConfig {
                    listen: SocketAddr::new(IpAddr::V4(appnet_link::emulator::ADDR_B), port),
                    root: site.clone(),
                    tls,
                    http3: tls,
                    ca_dir: Some(ca_dir.clone()),
                    access_log: false,
                    tcp_congestion: Some(cc.linux_tcp().to_string()),
                    h3_congestion: cc,
                    ..appnet_web::WebConfig::default()
                };
                // Port 80 in cleartext; one TLS + HTTP/3 server per controller (443, 444, ...).
                let mut servers = Vec::new();
                let plain = (80, false, congestion[0]);
                let tls = congestion.iter().enumerate().map(|(i, cc)| (tls_port(i), true, *cc));
                for (port, tls, cc) in std::iter::once(plain).chain(tls) {
                    match appnet_web::WebServer::bind(config(port, tls, cc)).await {
                        Ok(s) => servers.push(s),
                        Err(e) => {
                            let _ = tx.send(Err(format!("web server in the link's namespace: {e}")));
                            return;
                        }
                    }
                }
                let _ = tx.send(Ok(()));
                let runs = servers.into_iter().map(|s| s.run(shutdown.clone()));
                let _ = futures_util::future::join_all(runs).await;
            });
        })
        .map_err(|e| HttpExperimentError::Setup(e.to_string()))?;
    match rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(HttpExperimentError::Setup(e)),
        Err(_) => Err(HttpExperimentError::Setup("the server thread ended before it was ready".into())),
    }
}

/// The TLS + HTTP/3 port of the `i`th congestion controller.
fn tls_port(i: usize) -> u16 {
    443 + i as u16
}

fn server_addr(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(appnet_link::emulator::ADDR_B), port)
}

fn client_addr() -> IpAddr {
    IpAddr::V4(appnet_link::emulator::ADDR_A)
}

async fn measure(
    opts: &Options,
    link: &Link,
    spec: &mut LinkSpec,
    ca_dir: &Path,
    progress: &(impl Fn(&str) + Sync),
) -> Result<Vec<Table>, HttpExperimentError> {
    let ca = ca_dir.join("ca.pem");
    let tickets = ca_dir.join("tickets");
    let r = opts.rtt.as_secs_f64();
    let n = opts.objects;
    let total_bytes = (n * opts.object_size) as f64 + 300.0;
    let t_total = total_bytes * 8.0 / opts.rate_bps as f64;
    let bdp = opts.rate_bps as f64 / 8.0 * r;
    let reps = if opts.quick { 3 } else { 10 };

    // Part 1: the scorecard on the clean link.
    let mut t1 = Table::new(
        &format!(
            "HTTP page-load time on an emulated link (RTT {:.0} ms, {:.1} Mbit/s): base page + {n} objects of {} bytes, median of {reps}",
            r * 1e3,
            opts.rate_bps as f64 / 1e6,
            opts.object_size
        ),
        &["way", "formula", "theory ms", "+slow start ms", "measured ms", "RTTs measured"],
    );
    let (mut measured_pts, mut theory_pts) = (Vec::new(), Vec::new());
    for (i, way) in Way::ALL.iter().enumerate() {
        progress(&format!("{} ({reps} page loads)", way.label()));
        let mut totals = Vec::new();
        let mut zero_rtt_used = 0;
        for _ in 0..reps {
            match load(*way, &ca, &tickets, 0, opts.congestion[0]).await {
                Ok(s) => {
                    totals.push(s.total);
                    zero_rtt_used += usize::from(s.zero_rtt);
                }
                Err(e) => progress(&format!("  {}: {e}", way.label())),
            }
        }
        if totals.is_empty() {
            t1.rows.push(vec![
                way.label().into(),
                way.formula().into(),
                "-".into(),
                "-".into(),
                "failed".into(),
                "-".into(),
            ]);
            continue;
        }
        totals.sort_by(f64::total_cmp);
        let med = quantile(&totals, 0.5);
        let theory = way.rtts(n) * r + t_total;
        let slow = theory + slow_start_rounds(way.burst(n, opts.object_size), bdp) * r;
        t1.rows.push(vec![
            way.label().into(),
            way.formula().into(),
            format!("{:.0}", theory * 1e3),
            format!("{:.0}", slow * 1e3),
            format!("{:.0}", med * 1e3),
            format!("{:.1}", (med - t_total) / r),
        ]);
        if *way == Way::Http3ZeroRtt {
            t1.notes.push(format!("0-RTT early data accepted in {zero_rtt_used} of {} loads", totals.len()));
        }
        measured_pts.push(((i + 1) as f64, med * 1e3));
        theory_pts.push(((i + 1) as f64, theory * 1e3));
    }
    t1.notes.push(format!(
        "R = RTT, N = {n} objects, T = {:.1} ms to transmit the page's bytes at the link rate; theory counts no header bytes",
        t_total * 1e3
    ));
    t1.notes.push("parallel: all N objects on N connections at once; HTTP/2 and HTTP/3 on one connection, all N requests at once".into());
    let scorecard = opts.out.join("http-scorecard.svg");
    line_chart(
        &scorecard,
        "Page-load time: 1 serial, 2 parallel, 3 persistent, 4 pipelined, 5 HTTP/2, 6 HTTP/3, 7 HTTP/3 0-RTT",
        "way of fetching",
        "page-load time (ms)",
        &[Series::measured("measured (median)", measured_pts), Series::theory("textbook count", theory_pts)],
    )?;
    t1.notes.push(format!("plot: {}", scorecard.display()));

    // Part 2: HTTP/2 vs HTTP/3 under loss.
    let reps2 = if opts.quick { 8 } else { 30 };
    let mut t2 = Table::new(
        &format!(
            "Head-of-line blocking: HTTP/2 (TCP) vs HTTP/3 (QUIC) under random loss, {reps2} page loads each"
        ),
        &[
            "loss %",
            "congestion control",
            "protocol",
            "first object ms (p10-p90)",
            "whole page ms (p10-p90)",
            "failed",
        ],
    );
    // Per controller and protocol: (name, median first object by loss, median page by loss).
    let mut series: Vec<(String, Points, Points)> = opts
        .congestion
        .iter()
        .flat_map(|cc| ["HTTP/2", "HTTP/3"].map(|p| (format!("{p} {cc}"), Vec::new(), Vec::new())))
        .collect();
    for &loss in &opts.losses {
        *spec = link_spec(opts, loss)?;
        link.set(spec)?;
        progress(&format!("loss {:.1}%: HTTP/2 and HTTP/3, {reps2} page loads each", loss * 100.0));
        for (c, &cc) in opts.congestion.iter().enumerate() {
            // Interleaved, so a busy moment of the machine hits both protocols alike.
            let mut runs: [(Vec<f64>, Vec<f64>, usize); 2] = Default::default();
            for _ in 0..reps2 {
                for (k, way) in [Way::Http2, Way::Http3].into_iter().enumerate() {
                    match load(way, &ca, &tickets, c, cc).await {
                        Ok(s) => {
                            runs[k].0.push(s.first);
                            runs[k].1.push(s.total);
                        }
                        Err(_) => runs[k].2 += 1,
                    }
                }
            }
            for (k, (mut first, mut total, failed)) in runs.into_iter().enumerate() {
                first.sort_by(f64::total_cmp);
                total.sort_by(f64::total_cmp);
                let spread = |v: &[f64]| {
                    if v.is_empty() {
                        "-".to_string()
                    } else {
                        format!(
                            "{:.0} ({:.0}-{:.0})",
                            quantile(v, 0.5) * 1e3,
                            quantile(v, 0.1) * 1e3,
                            quantile(v, 0.9) * 1e3
                        )
                    }
                };
                t2.rows.push(vec![
                    format!("{:.0}", loss * 100.0),
                    cc.to_string(),
                    ["HTTP/2", "HTTP/3"][k].to_string(),
                    spread(&first),
                    spread(&total),
                    failed.to_string(),
                ]);
                let line = &mut series[2 * c + k];
                if !total.is_empty() {
                    line.1.push((loss * 100.0, quantile(&first, 0.5) * 1e3));
                    line.2.push((loss * 100.0, quantile(&total, 0.5) * 1e3));
                }
            }
        }
    }
    *spec = link_spec(opts, 0.0)?;
    link.set(spec)?;
    let first_plot = opts.out.join("http-loss-first-object.svg");
    let page_plot = opts.out.join("http-loss-page.svg");
    line_chart(
        &first_plot,
        "Time to the first complete object vs loss (median)",
        "loss (%)",
        "ms",
        &series.iter().map(|(name, f, _)| Series::measured(name, f.clone())).collect::<Vec<_>>(),
    )?;
    line_chart(
        &page_plot,
        "Page-load time vs loss (median)",
        "loss (%)",
        "ms",
        &series.iter().map(|(name, _, p)| Series::measured(name, p.clone())).collect::<Vec<_>>(),
    )?;
    t2.notes.push(
        "both on TLS 1.3, fresh connection per load; HTTP/3 saves one handshake RTT at any loss".into(),
    );
    t2.notes.push(
        "each controller runs on both transports: kernel TCP set per socket (the namespaces' default may differ), quinn for QUIC"
            .into(),
    );
    t2.notes.push(format!("plots: {}, {}", first_plot.display(), page_plot.display()));
    Ok(vec![t1, t2])
}

/// One page load in `way`, with a deadline, from the TLS server of the `server`th controller
/// (`cc`, which the client's TCP socket uses too).
async fn load(way: Way, ca: &Path, tickets: &Path, server: usize, cc: Congestion) -> Result<Sample, String> {
    tokio::time::timeout(FETCH_TIMEOUT, load_inner(way, ca, tickets, tls_port(server), cc))
        .await
        .map_err(|_| format!("no page within {FETCH_TIMEOUT:?}"))?
}

async fn load_inner(
    way: Way,
    ca: &Path,
    tickets: &Path,
    port: u16,
    cc: Congestion,
) -> Result<Sample, String> {
    let host = appnet_link::emulator::ADDR_B.to_string();
    let started = Instant::now();
    let mode = match way {
        Way::Serial => Some(Mode::NonPersistent),
        Way::Persistent => Some(Mode::Persistent),
        Way::Pipelined => Some(Mode::Pipelined),
        _ => None,
    };
    if let Some(mode) = mode {
        let f = http_scene::fetch_page(client_addr(), server_addr(80), &host, PAGE, mode).await?;
        let total = f.elapsed.as_secs_f64();
        return Ok(Sample { first: total, total, zero_rtt: false });
    }
    match way {
        Way::Parallel => {
            let (_, page) = http_scene::get_once(client_addr(), server_addr(80), &host, PAGE, "").await?;
            let images = http_scene::image_paths(PAGE, &String::from_utf8_lossy(&page));
            let gets = images.iter().map(|p| {
                let host = host.clone();
                async move {
                    http_scene::get_once(client_addr(), server_addr(80), &host, p, "").await?;
                    Ok::<f64, String>(started.elapsed().as_secs_f64())
                }
            });
            finish(started, futures_util::future::join_all(gets).await, false)
        }
        Way::Http2 => {
            let send = h2_connect(ca, port, cc).await?;
            let page = h2_get(&send, PAGE).await?;
            let images = http_scene::image_paths(PAGE, &String::from_utf8_lossy(&page));
            let gets = images.iter().map(|p| {
                let send = send.clone();
                async move {
                    h2_get(&send, p).await?;
                    Ok::<f64, String>(started.elapsed().as_secs_f64())
                }
            });
            finish(started, futures_util::future::join_all(gets).await, false)
        }
        Way::Http3 | Way::Http3ZeroRtt => {
            let ticket = if way == Way::Http3ZeroRtt {
                // A first connection leaves a session ticket; it is not timed.
                let c =
                    appnet_web::h3::client::Http3Client::connect(server_addr(port), &host, ca, Some(tickets))
                        .await
                        .map_err(|e| e.to_string())?;
                c.get(PAGE).await.map_err(|e| e.to_string())?;
                c.close().await;
                Some(tickets)
            } else {
                None
            };
            let started = Instant::now();
            let client = Arc::new(
                appnet_web::h3::client::Http3Client::connect(server_addr(port), &host, ca, ticket)
                    .await
                    .map_err(|e| e.to_string())?,
            );
            let (status, page) = client.get(PAGE).await.map_err(|e| e.to_string())?;
            if status != 200 {
                return Err(format!("HTTP/3 base page: status {status}"));
            }
            let images = http_scene::image_paths(PAGE, &String::from_utf8_lossy(&page));
            let gets = images.iter().map(|p| {
                let client = client.clone();
                async move {
                    let (status, _) = client.get(p).await.map_err(|e| e.to_string())?;
                    if status != 200 {
                        return Err(format!("HTTP/3 {p}: status {status}"));
                    }
                    Ok::<f64, String>(started.elapsed().as_secs_f64())
                }
            });
            let done = futures_util::future::join_all(gets).await;
            let zero_rtt = client.used_0rtt();
            let sample = finish(started, done, zero_rtt);
            if let Ok(c) = Arc::try_unwrap(client) {
                c.close().await;
            }
            sample
        }
        _ => Err("unreachable way".into()),
    }
}

/// The sample from the completion times of the objects.
fn finish(started: Instant, done: Vec<Result<f64, String>>, zero_rtt: bool) -> Result<Sample, String> {
    let mut times = Vec::with_capacity(done.len());
    for d in done {
        times.push(d?);
    }
    let total = started.elapsed().as_secs_f64();
    let first = times.iter().copied().fold(f64::INFINITY, f64::min);
    Ok(Sample { first: if first.is_finite() { first } else { total }, total, zero_rtt })
}

/// (x, y) points of a plot line.
type Points = Vec<(f64, f64)>;

type H2Sender = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

/// A TLS 1.3 connection to `port` negotiating h2 by ALPN, trusting the experiment's lab CA,
/// over a TCP socket running `cc`.
async fn h2_connect(ca: &Path, port: u16, cc: Congestion) -> Result<H2Sender, String> {
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    appnet_netkit::listen::set_tcp_congestion(&socket, cc.linux_tcp()).map_err(|e| e.to_string())?;
    let tcp = socket.connect(server_addr(port)).await.map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let trust = appnet_netkit::tls_client::Trust { extra: vec![ca.to_path_buf()], ..Default::default() };
    let config = appnet_netkit::tls_client::client_config(&trust, &[b"h2"]).map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::from(IpAddr::V4(appnet_link::emulator::ADDR_B));
    let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.map_err(|e| e.to_string())?;
    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err("the server did not negotiate h2".into());
    }
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(send)
}

async fn h2_get(send: &H2Sender, path: &str) -> Result<Bytes, String> {
    let uri = format!("https://{}{path}", appnet_link::emulator::ADDR_B);
    let req = http::Request::get(uri).body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
    let resp = send.clone().send_request(req).await.map_err(|e| e.to_string())?;
    if resp.status() != http::StatusCode::OK {
        return Err(format!("HTTP/2 {path}: status {}", resp.status()));
    }
    Ok(resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_textbook_counts() {
        assert_eq!(Way::Serial.rtts(10), 22.0);
        assert_eq!(Way::Persistent.rtts(10), 12.0);
        assert_eq!(Way::Pipelined.rtts(10), 3.0);
        assert_eq!(Way::Http3ZeroRtt.rtts(10), 2.0);
    }

    #[test]
    fn slow_start_needs_rounds_only_beyond_the_initial_window() {
        let bdp = 125_000.0;
        assert_eq!(slow_start_rounds(10_000.0, bdp), 0.0);
        // 100 KiB: 14.5 KB, then 29 KB, then 58 KB sent; the rest goes in the fourth round.
        assert_eq!(slow_start_rounds(102_400.0, bdp), 3.0);
        assert_eq!(slow_start_rounds(1e9, bdp), 4.0);
    }
}
