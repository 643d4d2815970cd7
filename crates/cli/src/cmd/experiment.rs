//! `appnet experiment NAME`: reproduce the textbook's and the papers' quantitative claims,
//! printing measured figures next to the published ones and writing SVG plots.

use crate::context::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// The experiments.
#[derive(Subcommand, Debug)]
pub enum ExperimentCmd {
    /// Chord (SIGCOMM 2001, section 6) on the simulator: path length vs N, load balance with
    /// virtual nodes, simultaneous failures with and without replication, lookups under churn.
    #[command(after_help = "Examples:\n  \
        appnet experiment chord                     full run (a few minutes with --release)\n  \
        appnet experiment chord --quick --out /tmp/chord")]
    Chord(ChordArgs),
    /// BitTorrent: client-server vs P2P minimum distribution time for N = 1..32 downloaders,
    /// with real shaped transfers on loopback, against the textbook's bounds.
    #[command(
        name = "p2p-vs-cs",
        after_help = "Examples:\n  \
        appnet experiment p2p-vs-cs                         F = 4 MiB, u = 1 MiB/s, us = 10u\n  \
        appnet experiment p2p-vs-cs --ns 1,2,4 --out /tmp/p2p"
    )]
    P2pVsCs(P2pArgs),
    /// The institutional cache (textbook 2.2.5): 15 req/s of 100 kbit objects over a 1.5 Mbps
    /// access link, without and with an appnet caching proxy at hit rate 0.4.
    #[command(
        name = "web-cache",
        after_help = "Examples:\n  \
        appnet experiment web-cache                   60 s per scenario, run 4x faster (~35 s)\n  \
        appnet experiment web-cache --scale 1         in real time (2 minutes)"
    )]
    WebCache(WebCacheArgs),
    /// Locating content (deck 004): messages per search and the fraction of searches that find
    /// a file with r copies, for the Napster directory, Gnutella flooding at TTL 1..7, the
    /// two-tier ultrapeer overlay and Chord, on simulated overlays of 10^3 to 10^5 peers.
    #[command(after_help = "Examples:\n  \
        appnet experiment search                    10^3, 10^4, 10^5 peers (minutes with --release)\n  \
        appnet experiment search --quick --out /tmp/search")]
    Search(SearchArgs),
    /// HTTP on an emulated link (root; RTT 100 ms, 10 Mbit/s): non-persistent, parallel,
    /// persistent, pipelined, HTTP/2 and HTTP/3 (1-RTT and 0-RTT) page loads against the
    /// textbook's RTT counts, then HTTP/2 vs HTTP/3 under 0-5% loss (head-of-line blocking).
    #[command(after_help = "Examples:\n  \
        sudo appnet experiment http --quick --out /tmp/http     a few minutes\n  \
        sudo appnet experiment http --rtt 40ms --rate 50mbit --losses 0,2,10")]
    Http(HttpArgs),
}

/// Flags for `experiment http`.
#[derive(Args, Debug)]
pub struct HttpArgs {
    /// Directory for the SVG plots (and the served page and lab CA, under http-experiment/).
    #[arg(long, value_name = "DIR", default_value = "experiments")]
    out: PathBuf,
    /// Fewer repetitions (3 page loads per way, 8 per loss rate).
    #[arg(long)]
    quick: bool,
    /// Round-trip time of the emulated link.
    #[arg(long, value_name = "TIME", default_value = "100ms")]
    rtt: String,
    /// Rate of the emulated link.
    #[arg(long, value_name = "RATE", default_value = "10mbit")]
    rate: String,
    /// Objects the base page references.
    #[arg(long, value_name = "N", default_value_t = 10)]
    objects: usize,
    /// Size of each object in KiB.
    #[arg(long, value_name = "KIB", default_value_t = 10)]
    object_kib: usize,
    /// Loss rates in percent for HTTP/2 vs HTTP/3, comma-separated.
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "0,1,2,5")]
    losses: Vec<f64>,
    /// Seed of the emulator's random loss.
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// Congestion controllers for HTTP/2 vs HTTP/3 under loss, each run on both transports
    /// (kernel TCP and QUIC): cubic, new-reno, bbr. The first also serves the scorecard.
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "cubic")]
    cc: Vec<appnet_web::h3::quic::Congestion>,
}

/// Flags for `experiment search`.
#[derive(Args, Debug)]
pub struct SearchArgs {
    /// Directory for the SVG plots.
    #[arg(long, value_name = "DIR", default_value = "experiments")]
    out: PathBuf,
    /// 10^3 and 10^4 peers and fewer searches (under two minutes).
    #[arg(long)]
    quick: bool,
    /// Random seed (runs are reproducible for a seed).
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// Also search real Gnutella nodes on 127.0.61-62.x (tasks of this process, real TCP):
    /// this many nodes in a flat and in a two-tier overlay (8 to 200; 0 = skip).
    #[arg(long, value_name = "N", default_value_t = 24)]
    real_nodes: usize,
}

/// Flags for `experiment web-cache`.
#[derive(Args, Debug)]
pub struct WebCacheArgs {
    /// Seconds measured per scenario (textbook time).
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    duration: f64,
    /// Run this many times faster (rates multiplied, delays divided); figures are rescaled.
    #[arg(long, value_name = "X", default_value_t = 4.0)]
    scale: f64,
    /// Cache hit rate.
    #[arg(long, value_name = "H", default_value_t = 0.4)]
    hit_rate: f64,
    /// Random seed.
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
}

/// Flags for `experiment p2p-vs-cs`.
#[derive(Args, Debug)]
pub struct P2pArgs {
    /// Directory for the SVG plot.
    #[arg(long, value_name = "DIR", default_value = "experiments")]
    out: PathBuf,
    /// File size F in KiB.
    #[arg(long, value_name = "KIB", default_value_t = 4096)]
    file_kib: u64,
    /// Peer upload rate u in KiB/s (the server uploads at 10u).
    #[arg(long, value_name = "KIB", default_value_t = 1024)]
    u_kib: u64,
    /// Numbers of downloaders, comma-separated.
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "1,2,4,8,16,32")]
    ns: Vec<usize>,
    /// Piece size in KiB (one 16 KiB block per piece lets peers re-share soonest).
    #[arg(long, value_name = "KIB", default_value_t = 16)]
    piece_kib: u64,
}

/// Flags for `experiment chord`.
#[derive(Args, Debug)]
pub struct ChordArgs {
    /// Directory for the SVG plots.
    #[arg(long, value_name = "DIR", default_value = "experiments")]
    out: PathBuf,
    /// Smaller networks and fewer samples (seconds instead of minutes).
    #[arg(long)]
    quick: bool,
    /// Random seed (runs are reproducible for a seed).
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// Also measure path length on rings of real TCP nodes on 127.0.0.1, of 8, 16, ... up to N
    /// nodes (at most 256; takes about a minute per size at the top), and the lookup rate on
    /// min(N, 64) nodes with pooled connections against one connection per RPC.
    #[arg(long, value_name = "N")]
    real_nodes: Option<usize>,
}

/// Runs an experiment.
pub async fn run(cmd: ExperimentCmd, _ctx: &Context) -> anyhow::Result<()> {
    match cmd {
        ExperimentCmd::P2pVsCs(a) => {
            anyhow::ensure!(
                a.file_kib > 0 && a.u_kib > 0 && a.piece_kib >= 16,
                "sizes must be positive (pieces >= 16 KiB)"
            );
            anyhow::ensure!(a.ns.iter().all(|&n| (1..=200).contains(&n)), "--ns values must be 1..=200");
            let opts = appnet_lab::experiment::p2p_vs_cs::Options {
                file_size: a.file_kib * 1024,
                u: a.u_kib * 1024,
                ns: a.ns,
                piece_size: a.piece_kib * 1024,
                out: a.out,
                ..Default::default()
            };
            let report =
                appnet_lab::experiment::p2p_vs_cs::run(opts, |step| eprintln!("p2p-vs-cs: {step}")).await?;
            println!("{report}");
            Ok(())
        }
        ExperimentCmd::WebCache(a) => {
            anyhow::ensure!(a.duration > 0.0 && a.duration <= 3600.0, "--duration must be in (0, 3600]");
            anyhow::ensure!((0.1..=50.0).contains(&a.scale), "--scale must be between 0.1 and 50");
            anyhow::ensure!((0.0..1.0).contains(&a.hit_rate), "--hit-rate must be in [0, 1)");
            let opts = appnet_lab::experiment::web_cache::Options {
                duration: std::time::Duration::from_secs_f64(a.duration),
                scale: a.scale,
                hit_rate: a.hit_rate,
                seed: a.seed,
                ..Default::default()
            };
            let report =
                appnet_lab::experiment::web_cache::run(opts, |step| eprintln!("web-cache: {step}")).await?;
            println!("{report}");
            Ok(())
        }
        ExperimentCmd::Http(a) => {
            anyhow::ensure!((1..=100).contains(&a.objects), "--objects must be 1..=100");
            anyhow::ensure!((1..=10_240).contains(&a.object_kib), "--object-kib must be 1..=10240");
            anyhow::ensure!(
                !a.losses.is_empty() && a.losses.iter().all(|l| (0.0..=50.0).contains(l)),
                "--losses must be percentages in [0, 50]"
            );
            let opts = appnet_lab::experiment::http::Options {
                out: a.out,
                quick: a.quick,
                rtt: appnet_link::spec::parse_duration(&a.rtt)?,
                rate_bps: appnet_link::spec::parse_bitrate(&a.rate)?,
                objects: a.objects,
                object_size: a.object_kib * 1024,
                losses: a.losses.iter().map(|l| l / 100.0).collect(),
                seed: a.seed,
                congestion: a.cc,
            };
            let task = tokio::task::spawn_blocking(move || {
                appnet_lab::experiment::http::run(&opts, |step| eprintln!("http experiment: {step}"))
            });
            // Ctrl-C: the measuring threads cannot be cancelled, but the namespaces are removed
            // before the process exits, so nothing is left behind.
            let interrupted = appnet_netkit::Shutdown::new();
            interrupted.trigger_on_signals();
            tokio::select! {
                tables = task => {
                    for t in tables?? {
                        println!("{t}");
                    }
                    Ok(())
                }
                _ = interrupted.wait() => {
                    let name = appnet_lab::experiment::http::LINK_NAME;
                    for ns in [format!("{name}-a"), format!("{name}-b")] {
                        appnet_link::netns::delete(&ns);
                    }
                    anyhow::bail!("interrupted; the emulated link's namespaces were removed")
                }
            }
        }
        ExperimentCmd::Search(args) => {
            anyhow::ensure!(
                args.real_nodes == 0 || (8..=200).contains(&args.real_nodes),
                "--real-nodes must be 0 or between 8 and 200"
            );
            let opts =
                appnet_lab::experiment::search::Options { out: args.out, quick: args.quick, seed: args.seed };
            let sim_opts = opts.clone();
            let tables = tokio::task::spawn_blocking(move || {
                appnet_lab::experiment::search::run(&sim_opts, |step| eprintln!("search experiment: {step}"))
            })
            .await??;
            for t in tables {
                println!("{t}");
            }
            if args.real_nodes > 0 {
                eprintln!(
                    "search experiment: {} real nodes on 127.0.61-62.x, flat and two-tier",
                    args.real_nodes
                );
                println!(
                    "{}",
                    appnet_lab::experiment::search_real::real_nodes(&opts, args.real_nodes).await?
                );
            }
            Ok(())
        }
        ExperimentCmd::Chord(args) => {
            let opts =
                appnet_lab::experiment::chord::Options { out: args.out, quick: args.quick, seed: args.seed };
            let sim_opts = opts.clone();
            let tables = tokio::task::spawn_blocking(move || {
                appnet_lab::experiment::chord::run_all(&sim_opts, |name| {
                    eprintln!("chord experiment: {name}")
                })
            })
            .await??;
            for t in tables {
                println!("{t}");
            }
            if let Some(max) = args.real_nodes {
                anyhow::ensure!((8..=256).contains(&max), "--real-nodes must be between 8 and 256");
                eprintln!("chord experiment: path length on real nodes (8 to {max})");
                println!("{}", appnet_lab::experiment::chord::real_path_length(&opts, max).await?);
                let n = max.min(64);
                eprintln!("chord experiment: lookup rate on {n} real nodes, pooled connections or not");
                println!("{}", appnet_lab::experiment::chord::real_pooling(&opts, n).await?);
            }
            Ok(())
        }
    }
}
