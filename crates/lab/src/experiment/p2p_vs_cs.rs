//! `appnet experiment p2p-vs-cs`: the textbook's client-server vs P2P minimum distribution
//! time, with real shaped transfers on loopback, scaled in time.
//!
//! One file of F bytes goes to N peers. Client-server: one server uploading at `us` to N
//! clients that upload nothing; bound `max(N·F/us, F/dmin)`. P2P: the same server plus N peers
//! each uploading at `u`, all found through the tracker; bound `max(F/us, F/dmin,
//! N·F/(us + N·u))`. The textbook's figure uses `us = 10u` and `dmin ≥ us`, so `F/dmin` never
//! decides either bound; downloads are left unshaped (loopback is far faster than `us`) and the
//! bounds are computed with `dmin = us`. Every upload is a netkit token bucket.

use super::plot::{Series, line_chart};
use appnet_netkit::Service;
use appnet_netkit::harness::{self, any_loopback};
use appnet_torrent::Metainfo;
use appnet_torrent::config::{ClientConfig, TrackerConfig};
use appnet_torrent::create::{CreateOptions, create};
use appnet_torrent::session::Session;
use appnet_torrent::tracker::TrackerServer;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The experiment's knobs.
#[derive(Debug, Clone)]
pub struct Options {
    /// File size F in bytes.
    pub file_size: u64,
    /// Peer upload rate u, bytes/s.
    pub u: u64,
    /// Server upload rate as a multiple of u (the textbook's 10).
    pub us_over_u: u64,
    /// Numbers of downloaders.
    pub ns: Vec<usize>,
    /// Piece size (small pieces let peers re-share sooner).
    pub piece_size: u64,
    /// Where the SVG goes.
    pub out: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            file_size: 4 << 20,
            u: 1 << 20,
            us_over_u: 10,
            ns: vec![1, 2, 4, 8, 16, 32],
            piece_size: 16 * 1024,
            out: PathBuf::from("experiments"),
        }
    }
}

/// One N's figures, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// Downloaders.
    pub n: usize,
    /// Client-server lower bound.
    pub cs_bound: f64,
    /// Client-server measured.
    pub cs: f64,
    /// P2P lower bound.
    pub p2p_bound: f64,
    /// P2P measured.
    pub p2p: f64,
}

/// The results and where the plot went.
#[derive(Debug, Clone)]
pub struct Report {
    /// The options used.
    pub opts: Options,
    /// One row per N.
    pub rows: Vec<Row>,
    /// The SVG file.
    pub svg: PathBuf,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.opts;
        let fu = o.file_size as f64 / o.u as f64;
        writeln!(
            f,
            "p2p-vs-cs: F = {} KiB, u = {} KiB/s (F/u = {fu:.2} s), us = {}u, dmin >= us, pieces of {} KiB",
            o.file_size / 1024,
            o.u / 1024,
            o.us_over_u,
            o.piece_size / 1024
        )?;
        writeln!(
            f,
            "{:>4} | {:>9} {:>9} {:>7} | {:>9} {:>9} {:>7}",
            "N", "CS bound", "CS meas.", "ratio", "P2P bound", "P2P meas.", "ratio"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:>4} | {:>8.2}s {:>8.2}s {:>7.3} | {:>8.2}s {:>8.2}s {:>7.3}",
                r.n,
                r.cs_bound,
                r.cs,
                r.cs / r.cs_bound,
                r.p2p_bound,
                r.p2p,
                r.p2p / r.p2p_bound
            )?;
        }
        write!(f, "plot: {}", self.svg.display())
    }
}

/// Client-server bound `max(N·F/us, F/dmin)`.
pub fn cs_bound(n: usize, f: f64, us: f64, dmin: f64) -> f64 {
    (n as f64 * f / us).max(f / dmin)
}

/// P2P bound `max(F/us, F/dmin, N·F/(us + N·u))`.
pub fn p2p_bound(n: usize, f: f64, us: f64, dmin: f64, u: f64) -> f64 {
    (f / us).max(f / dmin).max(n as f64 * f / (us + n as f64 * u))
}

fn peer_config(dir: &Path, up: Option<u64>, no_upload: bool, slots: usize) -> ClientConfig {
    ClientConfig {
        listen: any_loopback(),
        dir: dir.to_path_buf(),
        upload_rate: up,
        download_rate: None,
        rate_burst: Some(32 * 1024),
        seed_time_secs: None,
        fsync: false,
        no_upload,
        // Everyone interested is unchoked: the bound assumes every upload link is busy.
        unchoke_slots: slots,
        rechoke_secs: 0.5,
        rate_window_secs: 2.0,
        // Short request queues: blocks queued at a busy uploader are blocks nobody else serves.
        request_queue_secs: 0.25,
        min_requests: 1,
        max_requests: 64,
        max_peers: slots + 8,
        // Every peer of the experiment is on 127.0.0.1.
        max_peers_per_ip: slots + 8,
        max_announce_secs: 1,
        ..ClientConfig::default()
    }
}

/// Distributes the file to `n` peers; returns seconds until the last one has it.
async fn distribute(
    meta: &Metainfo,
    src: &Path,
    work: &Path,
    n: usize,
    o: &Options,
    p2p: bool,
) -> io::Result<f64> {
    let us = o.u * o.us_over_u;
    let seeder = Session::bind(meta.clone(), peer_config(src, Some(us), false, n + 1), true).await?;
    let seeder = harness::start(seeder);
    let mut sessions = Vec::new();
    for i in 0..n {
        let dir = work.join(format!("{}-{n}-{i}", if p2p { "p2p" } else { "cs" }));
        let _ = std::fs::remove_dir_all(&dir);
        let up = if p2p { Some(o.u) } else { None };
        let mut s = Session::bind(meta.clone(), peer_config(&dir, up, !p2p, n + 1), false).await?;
        // The server's address is known (as a web client knows the server); peers find each
        // other through the tracker.
        s.add_peers([seeder.addr()]);
        sessions.push(s);
    }
    let handles: Vec<_> = sessions.iter().map(Session::handle).collect();
    let t0 = Instant::now();
    let running: Vec<_> = sessions.into_iter().map(harness::start).collect();
    let limit = Duration::from_secs_f64(60.0 + 10.0 * cs_bound(n, o.file_size as f64, us as f64, us as f64));
    let mut last = 0.0f64;
    for h in &handles {
        tokio::time::timeout(limit.saturating_sub(t0.elapsed()), h.wait_complete()).await.map_err(|_| {
            io::Error::new(io::ErrorKind::TimedOut, format!("N={n}: a peer did not finish in {limit:?}"))
        })?;
        last = last.max(t0.elapsed().as_secs_f64());
    }
    for r in running {
        let _ = r.stop().await;
    }
    let _ = seeder.stop().await;
    for i in 0..n {
        let _ = std::fs::remove_dir_all(work.join(format!("{}-{n}-{i}", if p2p { "p2p" } else { "cs" })));
    }
    Ok(last)
}

/// Runs the experiment (calls `progress` before each run) and writes the SVG.
pub async fn run(opts: Options, mut progress: impl FnMut(&str)) -> io::Result<Report> {
    let work = std::env::temp_dir().join(format!("appnet-p2p-vs-cs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("src"))?;
    let file = work.join("src/file.bin");
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let data: Vec<u8> = (0..opts.file_size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&file, &data)?;
    let tracker = TrackerServer::bind(TrackerConfig {
        listen: any_loopback(),
        udp: false,
        interval_secs: 1,
        min_interval_secs: 1,
        announces_per_ip_per_sec: 10_000,
        max_peers_per_ip: 10_000,
        default_numwant: 200,
        ..TrackerConfig::default()
    })
    .await?;
    let url = format!("http://{}/announce", tracker.local_addr());
    let tracker = harness::start(tracker);
    let copts =
        CreateOptions { piece_length: opts.piece_size, trackers: vec![url], ..CreateOptions::default() };
    let meta = create(&file, &copts).map_err(io::Error::other)?;
    let (f, u, us) = (opts.file_size as f64, opts.u as f64, (opts.u * opts.us_over_u) as f64);
    let mut rows = Vec::new();
    for &n in &opts.ns {
        progress(&format!("N = {n}: client-server"));
        let cs = distribute(&meta, &work.join("src"), &work, n, &opts, false).await?;
        progress(&format!("N = {n}: P2P"));
        let p2p = distribute(&meta, &work.join("src"), &work, n, &opts, true).await?;
        rows.push(Row {
            n,
            cs_bound: cs_bound(n, f, us, us),
            cs,
            p2p_bound: p2p_bound(n, f, us, us, u),
            p2p,
        });
    }
    let _ = tracker.stop().await;
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&opts.out)?;
    let svg = opts.out.join("p2p-vs-cs.svg");
    plot(&svg, &rows, f / u).map_err(io::Error::other)?;
    Ok(Report { opts, rows, svg })
}

/// The textbook's figure: distribution time (in units of F/u) against N.
fn plot(path: &Path, rows: &[Row], fu: f64) -> Result<(), String> {
    let points = |f: &dyn Fn(&Row) -> f64| rows.iter().map(|r| (r.n as f64, f(r) / fu)).collect::<Vec<_>>();
    let series = [
        Series::theory("client-server bound", points(&|r| r.cs_bound)),
        Series::measured("client-server measured", points(&|r| r.cs)),
        Series::theory("P2P bound", points(&|r| r.p2p_bound)),
        Series::measured("P2P measured", points(&|r| r.p2p)),
    ];
    line_chart(
        path,
        "Distribution time: client-server vs P2P (us = 10u)",
        "N (downloaders)",
        "minimum distribution time (units of F/u)",
        &series,
    )
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_match_the_textbook_figure() {
        // F/u = 1 hour, us = 10u: client-server grows linearly, P2P levels off below 1 hour.
        let (f, u) = (3600.0, 1.0);
        let us = 10.0 * u;
        assert_eq!(cs_bound(30, f, us, us), 3.0 * 3600.0);
        assert_eq!(p2p_bound(1, f, us, us, u), 360.0);
        let p30 = p2p_bound(30, f, us, us, u);
        assert!((p30 - 30.0 * 3600.0 / 40.0).abs() < 1e-9 && p30 < 3600.0);
    }
}
