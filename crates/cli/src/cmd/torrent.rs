//! `appnet torrent create|info|tracker|seed|get|dht`: BitTorrent metainfo, tracker and client.

use super::set;
use crate::context::Context;
use anyhow::Context as _;
use appnet_netkit::listen::{ListenOpts, bind_tcp};
use appnet_netkit::{Service, Shutdown};
use appnet_torrent::bep9_magnet::{FetchOptions, FetchStatus, fetch};
use appnet_torrent::config::{ClientConfig, DhtConfig, TrackerConfig};
use appnet_torrent::create::{CreateOptions, create};
use appnet_torrent::dht::{Dht, DhtHandle};
use appnet_torrent::discovery;
use appnet_torrent::metainfo::Magnet;
use appnet_torrent::session::new_peer_id;
use appnet_torrent::tracker::TrackerServer;
use appnet_torrent::{Metainfo, Session, urlenc};
use clap::{Args, Subcommand};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// BitTorrent: make .torrent files, run a tracker, seed and download.
#[derive(Subcommand, Debug)]
#[command(after_help = "A swarm on one machine:\n  \
    appnet torrent tracker &\n  \
    appnet torrent create big.iso --tracker http://127.0.0.1:6969/announce\n  \
    appnet torrent seed big.iso.torrent --data big.iso --listen 127.0.0.1:6881 &\n  \
    appnet torrent get big.iso.torrent -o downloads/")]
pub enum TorrentCmd {
    /// Make a .torrent for a file or a directory (multi-file).
    #[command(after_help = "Examples:\n  \
        appnet torrent create song.mp3 --tracker http://127.0.0.1:6969/announce\n  \
        appnet torrent create album/ -o album.torrent --piece-size 1MiB --private\n  \
        appnet torrent create f --tracker http://a/announce --tracker udp://b:6969   (BEP 12 tiers)")]
    Create(CreateArgs),
    /// Show what a .torrent file or a magnet link holds.
    #[command(after_help = "Examples:\n  \
        appnet torrent info ubuntu.iso.torrent\n  \
        appnet torrent info 'magnet:?xt=urn:btih:...&dn=name'")]
    Info(InfoArgs),
    /// Run a tracker: HTTP announce/scrape and a status page, UDP (BEP 15) on the same port.
    #[command(after_help = "Examples:\n  \
        appnet torrent tracker                               127.0.0.1:6969, HTTP and UDP\n  \
        appnet torrent tracker --listen 0.0.0.0:6969 --allow 0123...abcd\n  \
        curl http://127.0.0.1:6969/stats                     the status page")]
    Tracker(TrackerArgs),
    /// Seed: serve a torrent's data to peers.
    #[command(after_help = "Examples:\n  \
        appnet torrent seed big.iso.torrent --data big.iso\n  \
        appnet torrent seed album.torrent --data ~/music/album --upload-rate 1MiB")]
    Seed(SeedArgs),
    /// Download a torrent or a magnet link (resumes from data already in the output directory).
    #[command(after_help = "Examples:\n  \
        appnet torrent get big.iso.torrent -o downloads/\n  \
        appnet torrent get 'magnet:?xt=urn:btih:<hash>&tr=http://127.0.0.1:6969/announce'\n  \
        appnet torrent get 'magnet:?xt=urn:btih:<hash>&x.pe=127.0.0.1:6881' --save-torrent x.torrent\n  \
        appnet torrent get big.iso.torrent --seed-time 600     stay 10 minutes to seed\n  \
        appnet torrent get big.iso.torrent --download-rate 2MiB --max-peers 20")]
    Get(GetArgs),
    /// Run a standalone mainline DHT node (BEP 5): answers other nodes, stores announced peers.
    #[command(after_help = "Examples:\n  \
        appnet torrent dht --listen 0.0.0.0:6881                    joins via router.bittorrent.com etc.\n  \
        appnet torrent dht --listen 127.0.0.1:7000 --bootstrap none   a first node for a lab\n  \
        appnet torrent dht --listen 127.0.0.1:7001 --bootstrap 127.0.0.1:7000 --status-secs 5
  \
        appnet torrent dht --state ~/.appnet-dht.dat      same id and known nodes after a restart")]
    Dht(DhtArgs),
}

/// Flags for `torrent dht`.
#[derive(Args, Debug)]
pub struct DhtArgs {
    #[command(flatten)]
    options: DhtOptions,
}

/// The service flags of `torrent dht`; each overrides the `[torrent-dht]` table of --config.
#[derive(Args, Debug, Default)]
pub struct DhtOptions {
    /// UDP address of the node [default: 0.0.0.0:6881].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Node to join through, HOST:PORT (repeat; "none" for no bootstrap) [default: the public
    /// routers].
    #[arg(long, value_name = "HOST:PORT")]
    bootstrap: Vec<String>,
    /// Seconds between status lines (node id, routing table size, stored torrents; 0: none)
    /// [default: 60].
    #[arg(long, value_name = "SECS")]
    status_secs: Option<u64>,
    /// Keep the node id and the nodes that answered in FILE (read at start, written every 5
    /// minutes and at exit), so a restart rejoins through them [default: nowhere].
    #[arg(long, value_name = "FILE")]
    state: Option<std::path::PathBuf>,
}

/// Flags for `torrent create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The file or directory to share.
    path: PathBuf,
    /// Where to write the .torrent [default: PATH.torrent in the current directory].
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Tracker announce URL (repeat for backup tiers).
    #[arg(long = "tracker", value_name = "URL")]
    trackers: Vec<String>,
    /// Bytes per piece: 256KiB (the default), 1MiB, 16384, ...
    #[arg(long, value_name = "SIZE", default_value = "256KiB", value_parser = positive_size)]
    piece_size: u64,
    /// Mark the torrent private (BEP 27: peers from the tracker only).
    #[arg(long)]
    private: bool,
    /// A comment stored in the torrent.
    #[arg(long)]
    comment: Option<String>,
    /// Leave out the creation date (byte-identical output for the same input).
    #[arg(long)]
    no_date: bool,
}

/// Flags for `torrent info`.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// A .torrent file or a magnet link.
    what: String,
}

/// Flags for `torrent tracker`.
#[derive(Args, Debug)]
pub struct TrackerArgs {
    #[command(flatten)]
    options: TrackerOptions,
}

/// The service flags of `torrent tracker`; each overrides the `[torrent-tracker]` table of
/// --config (`--allow` adds to its list).
#[derive(Args, Debug, Default)]
pub struct TrackerOptions {
    /// Address for HTTP and UDP [default: 127.0.0.1:6969].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Serve HTTP only (no BEP 15 UDP tracker).
    #[arg(long)]
    no_udp: bool,
    /// Seconds between announces asked of clients [default: 1800].
    #[arg(long, value_name = "SECS")]
    interval: Option<u32>,
    /// Minimum seconds between announces [default: 60].
    #[arg(long, value_name = "SECS")]
    min_interval: Option<u32>,
    /// Only track this info hash (40 hex digits; repeat).
    #[arg(long, value_name = "HASH")]
    allow: Vec<String>,
    /// Most peer entries per client IP address [default: 256].
    #[arg(long, value_name = "N")]
    max_peers_per_ip: Option<usize>,
    /// Most torrents tracked [default: 100000].
    #[arg(long, value_name = "N")]
    max_torrents: Option<usize>,
    /// New torrents one address (IPv6: one /64) may add per minute [default: 30].
    #[arg(long, value_name = "N")]
    new_torrents_per_ip: Option<u32>,
}

/// The service flags shared by `seed` and `get`; each overrides the `[torrent]` table of
/// --config (`--dht-bootstrap` and `--dht-state` the `[torrent-dht]` table).
#[derive(Args, Debug, Default)]
pub struct PeerOptions {
    /// Address to accept peers on [default: 127.0.0.1, any free port].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Upload cap for all peers together, e.g. 500KiB (per second).
    #[arg(long, value_name = "RATE", value_parser = positive_rate)]
    upload_rate: Option<u64>,
    /// Download cap for all peers together, e.g. 2MiB (per second).
    #[arg(long, value_name = "RATE", value_parser = positive_rate)]
    download_rate: Option<u64>,
    /// Most connected peers; when full, a newcomer replaces the oldest peer that never became
    /// useful (not interested, no block either way) [default: 50].
    #[arg(long, value_name = "N")]
    max_peers: Option<usize>,
    /// Most connected peers from one IP address [default: 4].
    #[arg(long, value_name = "N")]
    max_peers_per_ip: Option<usize>,
    /// Also connect to this peer (repeat; for swarms without a tracker).
    #[arg(long = "peer", value_name = "ADDR")]
    peers: Vec<SocketAddr>,
    /// Regular unchoke slots (tit-for-tat) [default: 4].
    #[arg(long, value_name = "N")]
    unchoke_slots: Option<usize>,
    /// Do not fsync each piece before announcing it (faster, less crash-safe).
    #[arg(long)]
    no_fsync: bool,
    /// Do not use the mainline DHT (BEP 5) to find peers and announce; private torrents never
    /// use it.
    #[arg(long)]
    no_dht: bool,
    /// DHT node to join through, HOST:PORT (repeat) [default: the `[torrent-dht]` bootstrap
    /// list, i.e. router.bittorrent.com:6881 and friends].
    #[arg(long, value_name = "HOST:PORT")]
    dht_bootstrap: Vec<String>,
    /// Keep the DHT node's id and known nodes in FILE across runs (like `torrent dht --state`).
    #[arg(long, value_name = "FILE")]
    dht_state: Option<std::path::PathBuf>,
}

impl TrackerOptions {
    /// Puts the flags given over `config` (the `[torrent-tracker]` table); absent flags keep
    /// its values.
    pub fn apply(self, config: &mut TrackerConfig) {
        set(&mut config.listen, self.listen);
        config.udp &= !self.no_udp;
        set(&mut config.interval_secs, self.interval);
        set(&mut config.min_interval_secs, self.min_interval);
        set(&mut config.max_peers_per_ip, self.max_peers_per_ip);
        set(&mut config.max_torrents, self.max_torrents);
        set(&mut config.new_torrents_per_ip_per_min, self.new_torrents_per_ip);
        config.allow.extend(self.allow);
    }
}

impl DhtOptions {
    /// Puts the flags given over `config` (the `[torrent-dht]` table); `--bootstrap none`
    /// empties the bootstrap list.
    pub fn apply(self, config: &mut DhtConfig) {
        set(&mut config.listen, self.listen);
        if !self.bootstrap.is_empty() {
            config.bootstrap = self.bootstrap.into_iter().filter(|b| b != "none").collect();
        }
        set(&mut config.status_secs, self.status_secs);
        set(&mut config.state_file, self.state.map(Some));
    }
}

impl PeerOptions {
    /// Puts the flags given over `config` (the `[torrent]` table); absent flags keep its values.
    pub fn apply(&self, config: &mut ClientConfig) {
        set(&mut config.listen, self.listen);
        set(&mut config.upload_rate, self.upload_rate.map(Some));
        set(&mut config.download_rate, self.download_rate.map(Some));
        set(&mut config.max_peers, self.max_peers);
        set(&mut config.max_peers_per_ip, self.max_peers_per_ip);
        set(&mut config.unchoke_slots, self.unchoke_slots);
        config.fsync &= !self.no_fsync;
        config.dht &= !self.no_dht;
    }

    /// Puts `--dht-bootstrap` and `--dht-state` over the `[torrent-dht]` table, for the DHT
    /// node of a `seed`/`get`.
    pub fn apply_dht(&self, config: &mut DhtConfig) {
        if !self.dht_bootstrap.is_empty() {
            config.bootstrap = self.dht_bootstrap.clone();
        }
        set(&mut config.state_file, self.dht_state.clone().map(Some));
    }
}

/// Flags for `torrent seed`.
#[derive(Args, Debug)]
pub struct SeedArgs {
    /// The .torrent file.
    torrent: PathBuf,
    /// The data: the torrent's file or directory itself, or the directory that holds it.
    #[arg(long, value_name = "PATH")]
    data: PathBuf,
    /// Stop after this many seconds [default: seed until Ctrl-C].
    #[arg(long, value_name = "SECS")]
    seed_time: Option<u64>,
    #[command(flatten)]
    peer: PeerOptions,
}

/// Flags for `torrent get`.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// The .torrent file, or a magnet link (hex or base32 btih; `tr` trackers, `x.pe` peers):
    /// the metadata is then fetched from peers first (BEP 9).
    torrent: String,
    /// With a magnet link: also write the fetched metadata as a .torrent file.
    #[arg(long, value_name = "FILE")]
    save_torrent: Option<PathBuf>,
    /// Directory to download into [default: current directory].
    #[arg(short, long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Keep seeding this many seconds after completing [default: 0, leave at once]; "forever"
    /// seeds until Ctrl-C.
    #[arg(long, value_name = "SECS|forever")]
    seed_time: Option<String>,
    /// No progress bar (a summary line at the end only).
    #[arg(long, short)]
    quiet: bool,
    /// Reserve the files' whole size on disk before downloading (fails at once if it does not
    /// fit; files are otherwise sparse until their pieces arrive).
    #[arg(long)]
    preallocate: bool,
    /// Take over files already in the output directory even when they are not this torrent's
    /// partial download (without it such a file is an error, never truncated or overwritten).
    #[arg(long)]
    overwrite: bool,
    #[command(flatten)]
    peer: PeerOptions,
}

/// Runs a `torrent` subcommand.
pub async fn run(cmd: TorrentCmd, ctx: &Context) -> anyhow::Result<()> {
    match cmd {
        TorrentCmd::Create(a) => create_cmd(a).await,
        TorrentCmd::Info(a) => info_cmd(a),
        TorrentCmd::Tracker(a) => tracker_cmd(a, ctx).await,
        TorrentCmd::Seed(a) => seed_cmd(a, ctx).await,
        TorrentCmd::Get(a) => get_cmd(a, ctx).await,
        TorrentCmd::Dht(a) => dht_cmd(a, ctx).await,
    }
}

/// A piece size for `--piece-size` ([`appnet_netkit::units::parse_size`]; zero is refused).
fn positive_size(s: &str) -> Result<u64, String> {
    match appnet_netkit::units::parse_size(s) {
        Ok(0) => Err(format!("{s:?} must be positive")),
        r => r.map_err(|e| e.to_string()),
    }
}

/// A rate cap for `--upload-rate`/`--download-rate` ([`appnet_netkit::units::parse_rate`];
/// zero is refused: leave the flag out for no cap).
fn positive_rate(s: &str) -> Result<u64, String> {
    match appnet_netkit::units::parse_rate(s) {
        Ok(0) => Err(format!("{s:?} must be positive (leave the flag out for no cap)")),
        r => r.map_err(|e| e.to_string()),
    }
}

fn read_torrent(path: &Path) -> anyhow::Result<Metainfo> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Metainfo::from_bytes(&bytes).with_context(|| format!("{} is not a valid .torrent file", path.display()))
}

async fn create_cmd(a: CreateArgs) -> anyhow::Result<()> {
    let piece_length = a.piece_size;
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).ok();
    let opts = CreateOptions {
        piece_length,
        trackers: a.trackers,
        private: a.private,
        comment: a.comment,
        creation_date: if a.no_date { None } else { now },
    };
    let path = a.path.clone();
    let meta = tokio::task::spawn_blocking(move || create(&path, &opts)).await??;
    let out = a.output.unwrap_or_else(|| PathBuf::from(format!("{}.torrent", meta.info.name)));
    appnet_netkit::files::write_atomic(&out, &meta.to_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "{}: {} in {} pieces of {}, info hash {}",
        out.display(),
        human(meta.info.total_length()),
        meta.info.num_pieces(),
        human(meta.info.piece_length),
        urlenc::hex(&meta.info_hash)
    );
    Ok(())
}

fn human(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.2} {}", units[u]) }
}

fn info_cmd(a: InfoArgs) -> anyhow::Result<()> {
    if a.what.starts_with("magnet:") {
        let m = Magnet::parse(&a.what)?;
        println!("info hash: {}", urlenc::hex(&m.info_hash));
        println!("name:      {}", m.name.as_deref().unwrap_or("(none)"));
        for t in &m.trackers {
            println!("tracker:   {t}");
        }
        for p in &m.peers {
            println!("peer:      {p}");
        }
        return Ok(());
    }
    let m = read_torrent(Path::new(&a.what))?;
    println!("name:         {}", m.info.name);
    println!("info hash:    {}", urlenc::hex(&m.info_hash));
    println!("size:         {} ({} bytes)", human(m.info.total_length()), m.info.total_length());
    println!("pieces:       {} of {}", m.info.num_pieces(), human(m.info.piece_length));
    println!("private:      {}", if m.info.private { "yes" } else { "no" });
    if let Some(c) = &m.comment {
        println!("comment:      {c}");
    }
    if let Some(c) = &m.created_by {
        println!("created by:   {c}");
    }
    if let Some(d) = m.creation_date {
        println!("created:      {d} (Unix time)");
    }
    for (i, tier) in m.announce_list.iter().enumerate() {
        println!("tier {i}:       {}", tier.join(" "));
    }
    if m.announce_list.is_empty()
        && let Some(a) = &m.announce
    {
        println!("tracker:      {a}");
    }
    println!("magnet:       {}", m.magnet());
    if m.info.multi_file {
        for f in &m.info.files {
            println!("  {:>12}  {}{}", f.length, f.path.join("/"), if f.pad { "  (padding)" } else { "" });
        }
    }
    Ok(())
}

async fn tracker_cmd(a: TrackerArgs, ctx: &Context) -> anyhow::Result<()> {
    let mut config: TrackerConfig = ctx.section("torrent-tracker")?;
    a.options.apply(&mut config);
    let (listen, udp) = (config.listen, config.udp);
    let server = TrackerServer::bind(config).await.with_context(|| format!("cannot listen on {listen}"))?;
    let addr = server.local_addr();
    println!(
        "appnet torrent tracker: http://{addr}/announce{} — status page http://{addr}/stats (Ctrl-C to stop)",
        if udp { format!(" and udp://{addr}/announce") } else { String::new() }
    );
    let _ = std::io::stdout().flush();
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    server.run(shutdown).await.map_err(|e| anyhow::anyhow!(e))
}

async fn dht_cmd(a: DhtArgs, ctx: &Context) -> anyhow::Result<()> {
    let mut config: DhtConfig = ctx.section("torrent-dht")?;
    a.options.apply(&mut config);
    let dht = Dht::bind(&config).await.with_context(|| format!("cannot listen on {}", config.listen))?;
    let (addr, id, handle) = (dht.local_addr(), urlenc::hex(&dht.id()), dht.handle());
    println!("appnet torrent dht: node {id} on udp {addr} (Ctrl-C to stop)");
    let _ = std::io::stdout().flush();
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    if config.status_secs > 0 {
        let every = std::time::Duration::from_secs(config.status_secs);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.wait() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                let Some(s) = handle.status().await else { return };
                println!(
                    "appnet torrent dht: node {} — {} nodes ({} good) in {} buckets, {} torrents stored, {} lookups",
                    urlenc::hex(&s.id),
                    s.nodes,
                    s.good,
                    s.buckets,
                    s.torrents,
                    s.lookups
                );
                let _ = std::io::stdout().flush();
            }
        });
    }
    dht.run(shutdown).await.map_err(|e| anyhow::anyhow!(e))
}

/// The `[torrent-dht]` table with --dht-bootstrap and --dht-state applied, for the DHT node
/// of a `seed`/`get` (where it runs and whether at all is the library's policy:
/// [`appnet_torrent::discovery::start_dht`]).
fn session_dht_config(p: &PeerOptions, ctx: &Context) -> anyhow::Result<DhtConfig> {
    let mut cfg: DhtConfig = ctx.section("torrent-dht")?;
    p.apply_dht(&mut cfg);
    Ok(cfg)
}

/// Starts the DHT node of a `seed`/`get` (see [`discovery::start_dht`]).
async fn start_dht(
    c: &ClientConfig,
    p: &PeerOptions,
    ctx: &Context,
    listen: SocketAddr,
    private: Option<bool>,
    shutdown: &Shutdown,
) -> anyhow::Result<Option<DhtHandle>> {
    discovery::start_dht(c, session_dht_config(p, ctx)?, listen, private, shutdown)
        .await
        .with_context(|| format!("cannot start the DHT on {listen} or another port"))
}

fn client_config(p: &PeerOptions, ctx: &Context) -> anyhow::Result<ClientConfig> {
    let mut c: ClientConfig = ctx.section("torrent")?;
    p.apply(&mut c);
    Ok(c)
}

async fn seed_cmd(a: SeedArgs, ctx: &Context) -> anyhow::Result<()> {
    let meta = read_torrent(&a.torrent)?;
    let mut c = client_config(&a.peer, ctx)?;
    // --data may name the torrent's file/directory itself or the directory holding it.
    c.dir = if a.data.file_name().is_some_and(|n| n.to_string_lossy() == meta.info.name) && a.data.exists() {
        a.data.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
    } else {
        a.data.clone()
    };
    if c.dir.as_os_str().is_empty() {
        c.dir = PathBuf::from(".");
    }
    c.seed_time_secs = a.seed_time;
    let name = meta.info.name.clone();
    let hash = urlenc::hex(&meta.info_hash);
    let mut session = Session::bind(meta, c, true).await.context("cannot start seeding")?;
    session.add_peers(a.peer.peers.iter().copied());
    println!("appnet torrent: seeding {name} ({hash}) on {} (Ctrl-C to stop)", session.local_addr());
    let _ = std::io::stdout().flush();
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let h = session.handle();
    let listen = session.local_addr();
    let dht = start_dht(h.config(), &a.peer, ctx, listen, Some(h.metainfo().info.private), &shutdown).await?;
    discovery::find_peers_for(dht, &h, &shutdown);
    session.run(shutdown).await.map_err(|e| anyhow::anyhow!(e))?;
    let p = h.progress();
    println!("appnet torrent: stopped seeding after uploading {}", human(p.uploaded));
    Ok(())
}

async fn get_cmd(a: GetArgs, ctx: &Context) -> anyhow::Result<()> {
    let mut c = client_config(&a.peer, ctx)?;
    // An output directory this run creates is removed again if the download cannot start.
    let mut made_output = None;
    if let Some(o) = &a.output {
        if !o.exists() {
            made_output = Some(o.clone());
        }
        std::fs::create_dir_all(o).with_context(|| format!("cannot create {}", o.display()))?;
        c.dir = o.clone();
    }
    c.preallocate |= a.preallocate;
    c.overwrite |= a.overwrite;
    c.seed_time_secs = match a.seed_time.as_deref() {
        None => Some(0),
        Some("forever") => None,
        Some(s) => Some(s.parse().with_context(|| format!("--seed-time {s:?}: seconds or \"forever\""))?),
    };
    let started = std::time::Instant::now();
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let listener = bind_tcp(c.listen, &ListenOpts::default())
        .with_context(|| format!("cannot listen on {}", c.listen))?;
    let peer_id = new_peer_id();
    let listen = listener.local_addr()?;
    let dht;
    let (meta, found) = if a.torrent.starts_with("magnet:") {
        let m = Magnet::parse(&a.torrent)?;
        anyhow::ensure!(
            !a.peer.no_dht || !m.trackers.is_empty() || !m.peers.is_empty() || !a.peer.peers.is_empty(),
            "the magnet link names no tracker (tr=) and no peer (x.pe=), and --no-dht is set; add --peer ADDR"
        );
        dht = start_dht(&c, &a.peer, ctx, listen, None, &shutdown).await?;
        let opts = FetchOptions {
            peer_id,
            listen_port: listener.local_addr()?.port(),
            peers: a.peer.peers.clone(),
            max_peers: c.max_peers,
            numwant: c.numwant,
            announce_every: std::time::Duration::from_secs(10),
            dht: dht.clone(),
        };
        let quiet = a.quiet;
        let show = move |s: FetchStatus| {
            if !quiet {
                eprint!(
                    "\rfetching metadata: {} peers known, {} connected, {}/{} pieces   ",
                    s.known, s.connected, s.have, s.pieces
                );
            }
        };
        let fetched = fetch(&m, opts, &shutdown, show).await;
        if !a.quiet {
            eprintln!();
        }
        let f = fetched.context("no metadata")?;
        println!(
            "appnet torrent: metadata for {} ({}, {} pieces) fetched from peers",
            f.meta.info.name,
            human(f.meta.info.total_length()),
            f.meta.info.num_pieces()
        );
        if f.hash_failures > 0 {
            println!(
                "appnet torrent: discarded {} forged or corrupt copies of the metadata",
                f.hash_failures
            );
        }
        if let Some(path) = &a.save_torrent {
            appnet_netkit::files::write_atomic(path, &f.meta.to_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        (f.meta, f.peers)
    } else {
        anyhow::ensure!(a.save_torrent.is_none(), "--save-torrent is for magnet links");
        let meta = read_torrent(Path::new(&a.torrent))?;
        dht = start_dht(&c, &a.peer, ctx, listen, Some(meta.info.private), &shutdown).await?;
        (meta, Vec::new())
    };
    let mut session = match Session::bind_on(meta, c, false, listener, peer_id).await {
        Ok(s) => s,
        Err(e) => {
            if let Some(o) = made_output {
                let _ = std::fs::remove_dir(o); // only if still empty
            }
            return Err(anyhow::Error::new(e).context("cannot start the download"));
        }
    };
    session.add_peers(a.peer.peers.iter().copied());
    session.add_peers(found);
    let h = session.handle();
    discovery::find_peers_for(dht, &h, &shutdown);
    let run = tokio::spawn(session.run(shutdown.clone()));
    if a.quiet {
        tokio::select! {
            _ = h.wait_complete() => {}
            _ = shutdown.wait() => {}
        }
    } else {
        super::torrent_progress::show(&h).await;
    }
    let complete = h.is_complete();
    let took = started.elapsed().as_secs_f64();
    let p = h.progress();
    if complete {
        println!(
            "appnet torrent: {} complete in {took:.1} s ({}/s), uploaded {}",
            h.metainfo().info.name,
            human((p.downloaded as f64 / took.max(1e-3)) as u64),
            human(p.uploaded)
        );
        let _ = std::io::stdout().flush();
    }
    run.await?.map_err(|e| anyhow::anyhow!(e))?;
    anyhow::ensure!(complete, "download stopped at {} of {} pieces; run again to resume", p.have, p.pieces);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{positive_rate, positive_size};

    #[test]
    fn sizes_and_rates_use_the_shared_parser_and_refuse_zero() {
        assert_eq!(positive_size("256KiB"), Ok(262_144));
        assert_eq!(positive_size("16384"), Ok(16384));
        assert_eq!(positive_size("2.5MB"), Ok(2_500_000));
        assert_eq!(positive_rate("1MiB/s"), Ok(1 << 20));
        assert!(positive_size("0").is_err());
        assert!(positive_rate("0KiB/s").is_err());
        assert!(positive_size("12 parsecs").is_err());
    }

    use super::*;

    #[test]
    fn flags_override_the_config_and_absent_flags_keep_it() {
        let mut config = ClientConfig { max_peers: 7, upload_rate: Some(1000), ..ClientConfig::default() };
        let options = PeerOptions { download_rate: Some(2 << 20), no_dht: true, ..PeerOptions::default() };
        options.apply(&mut config);
        assert_eq!(
            (config.max_peers, config.upload_rate, config.download_rate),
            (7, Some(1000), Some(2 << 20))
        );
        assert!(!config.dht);
        let before = format!("{config:?}");
        PeerOptions::default().apply(&mut config);
        assert_eq!(format!("{config:?}"), before);

        let mut tracker = TrackerConfig { interval_secs: 60, ..TrackerConfig::default() };
        let options = TrackerOptions {
            max_torrents: Some(10),
            allow: vec!["ab".repeat(20)],
            ..TrackerOptions::default()
        };
        options.apply(&mut tracker);
        assert_eq!((tracker.interval_secs, tracker.max_torrents, tracker.allow.len()), (60, 10, 1));

        let mut dht = DhtConfig::default();
        DhtOptions { bootstrap: vec!["none".into()], ..DhtOptions::default() }.apply(&mut dht);
        assert!(dht.bootstrap.is_empty());
    }
}
