//! `appnet lb`: the layer-4 load balancer. Flags override the `[lb]` table of --config; SIGHUP
//! re-reads that file and applies its backend list (removed backends drain gracefully).

use super::set;
use crate::context::Context;
use anyhow::Context as _;
use appnet_lb::proxy_protocol::Version;
use appnet_lb::{HashBy, HealthCheck, LbConfig, LbHandle, LbServer, Policy};
use appnet_netkit::{Service, Shutdown};
use clap::Args;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Flags for `appnet lb`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    appnet lb --listen 127.0.0.1:8000 --backend 127.0.0.1:8081 --backend 127.0.0.1:8082\n  \
    appnet lb --backend 127.0.0.1:8081,127.0.0.1:8082 --health http:/ --balance leastconn\n  \
    appnet lb --udp --listen 127.0.0.1:5300 --backend 127.0.0.1:5301,127.0.0.1:5302   DNS over UDP\n  \
    appnet lb --config lb.toml          backends in [lb]; kill -HUP PID re-reads them\n\n\
    Every connection (every UDP flow) stays on one replica. When a replica goes down, comes\n\
    back, or a reload changes the set, a line says which and what fraction of flows moved.")]
pub struct LbArgs {
    #[command(flatten)]
    options: LbOptions,
}

/// The service flags of `appnet lb`; each overrides the `[lb]` table of --config.
#[derive(Args, Debug, Default, Clone)]
pub struct LbOptions {
    /// Address clients connect to [default: 127.0.0.1:8000].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// A replica's address; repeat the flag or separate with commas. Replaces the [lb] list
    /// (then SIGHUP cannot change it).
    #[arg(long = "backend", value_name = "ADDR", value_delimiter = ',')]
    backends: Vec<SocketAddr>,
    /// Balance UDP flows (client address and port) instead of TCP connections.
    #[arg(long)]
    udp: bool,
    /// maglev (consistent hashing), roundrobin or leastconn [default: maglev].
    #[arg(long, value_name = "POLICY")]
    balance: Option<Policy>,
    /// What Maglev hashes: flow (client address and port) or client-ip [default: flow].
    #[arg(long, value_name = "KEY")]
    hash_by: Option<HashBy>,
    /// Active health check: tcp, http:/path or none [default: tcp].
    #[arg(long, value_name = "CHECK")]
    health: Option<HealthCheck>,
    /// Milliseconds between health checks of a backend [default: 2000].
    #[arg(long, value_name = "MS")]
    health_interval: Option<u64>,
    /// Milliseconds one health check may take [default: 1000].
    #[arg(long, value_name = "MS")]
    health_timeout: Option<u64>,
    /// Passing checks in a row that bring a backend back [default: 2].
    #[arg(long, value_name = "N")]
    rise: Option<u32>,
    /// Failing checks in a row that take a backend out [default: 3].
    #[arg(long, value_name = "N")]
    fall: Option<u32>,
    /// Failed connects in a row (real traffic) that eject a backend at once [default: 3].
    #[arg(long, value_name = "N")]
    eject_after: Option<u32>,
    /// With --health none: seconds an ejected backend stays out [default: 10].
    #[arg(long, value_name = "SECS")]
    eject_secs: Option<u64>,
    /// Seconds a recovered backend ramps up to its full share; 0 for at once [default: 10].
    #[arg(long, value_name = "SECS")]
    slow_start: Option<u64>,
    /// Most client connections at once [default: 10000].
    #[arg(long, value_name = "N")]
    max_conns: Option<usize>,
    /// Most client connections from one address [default: 1000].
    #[arg(long, value_name = "N")]
    max_per_client: Option<usize>,
    /// Milliseconds to connect to a backend before trying another [default: 3000].
    #[arg(long, value_name = "MS")]
    connect_timeout: Option<u64>,
    /// Other backends tried when a connect fails [default: 2].
    #[arg(long, value_name = "N")]
    retries: Option<u32>,
    /// Seconds a connection may pass no byte either way before it is closed [default: 300].
    #[arg(long, value_name = "SECS")]
    idle_timeout: Option<u64>,
    /// Seconds open connections get to finish at shutdown [default: 30].
    #[arg(long, value_name = "SECS")]
    drain: Option<u64>,
    /// Send a PROXY protocol header to the backends: v1 or v2.
    #[arg(long, value_name = "VERSION")]
    proxy_protocol: Option<Version>,
    /// Serve Prometheus metrics over HTTP on this address.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Buffer per direction of a proxied connection, e.g. 16KiB [default: 16KiB].
    #[arg(long, value_name = "SIZE", value_parser = appnet_netkit::units::parse_size_usize)]
    buffer_size: Option<usize>,
    /// Maglev lookup table size, a prime [default: 65537].
    #[arg(long, value_name = "N")]
    table_size: Option<usize>,
    /// Most UDP flows at once [default: 16384].
    #[arg(long, value_name = "N")]
    udp_max_flows: Option<usize>,
    /// Most UDP flows from one client address [default: 1024].
    #[arg(long, value_name = "N")]
    udp_max_flows_per_client: Option<usize>,
    /// Seconds without a datagram after which a UDP flow is forgotten [default: 30].
    #[arg(long, value_name = "SECS")]
    udp_idle_timeout: Option<u64>,
}

impl LbOptions {
    /// Puts the flags given over `config` (the `[lb]` table); absent flags keep its values.
    pub fn apply(self, config: &mut LbConfig) {
        set(&mut config.listen, self.listen);
        if !self.backends.is_empty() {
            config.backends = self.backends;
        }
        config.udp |= self.udp;
        set(&mut config.balance, self.balance);
        set(&mut config.hash_by, self.hash_by);
        set(&mut config.health, self.health);
        set(&mut config.health_interval_ms, self.health_interval);
        set(&mut config.health_timeout_ms, self.health_timeout);
        set(&mut config.rise, self.rise);
        set(&mut config.fall, self.fall);
        set(&mut config.eject_after, self.eject_after);
        set(&mut config.eject_secs, self.eject_secs);
        set(&mut config.slow_start_secs, self.slow_start);
        set(&mut config.max_conns, self.max_conns);
        set(&mut config.max_per_client, self.max_per_client);
        set(&mut config.connect_timeout_ms, self.connect_timeout);
        set(&mut config.retries, self.retries);
        set(&mut config.idle_timeout_secs, self.idle_timeout);
        set(&mut config.drain_secs, self.drain);
        if self.proxy_protocol.is_some() {
            config.proxy_protocol = self.proxy_protocol;
        }
        if self.metrics.is_some() {
            config.metrics = self.metrics;
        }
        set(&mut config.buffer_size, self.buffer_size);
        set(&mut config.table_size, self.table_size);
        set(&mut config.udp_max_flows, self.udp_max_flows);
        set(&mut config.udp_max_flows_per_client, self.udp_max_flows_per_client);
        set(&mut config.udp_idle_timeout_secs, self.udp_idle_timeout);
    }
}

/// Runs `appnet lb`.
pub async fn run(args: LbArgs, ctx: &Context) -> anyhow::Result<()> {
    let mut config: LbConfig = ctx.section("lb")?;
    args.options.clone().apply(&mut config);
    config.validate()?;
    appnet_lb::raise_fd_limit();
    let (proto, n, policy) = (if config.udp { "udp" } else { "tcp" }, config.backends.len(), config.balance);
    let health = config.health.clone();
    let server = LbServer::bind(config).await?;
    println!(
        "appnet lb: balancing {proto} on {} over {n} backend(s), {policy}, health {health} (Ctrl-C to stop)",
        server.local_addr()
    );
    if let Some(m) = server.metrics_addr() {
        println!("appnet lb: metrics on http://{m}/metrics");
    }
    let _ = std::io::stdout().flush();
    let handle = server.handle();
    tokio::spawn(print_events(handle.clone()));
    if let Some(path) = ctx.path() {
        tokio::spawn(reload_on_hangup(path.to_path_buf(), args.options, handle));
    }
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    server.run(shutdown).await.map_err(|e| anyhow::anyhow!(e))
}

/// Prints each backend transition and reload, with the measured fraction of flows moved.
async fn print_events(handle: LbHandle) {
    let mut events = handle.subscribe();
    loop {
        match events.recv().await {
            Ok(event) => {
                println!("appnet lb: {event}");
                let _ = std::io::stdout().flush();
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(_) => return,
        }
    }
}

/// On SIGHUP: re-reads the config file's `[lb]` table (flags still override) and applies its
/// backend list. A file that does not parse is reported and the running set kept.
async fn reload_on_hangup(path: PathBuf, options: LbOptions, handle: LbHandle) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else { return };
    while hup.recv().await.is_some() {
        let reloaded = Context::load(Some(&path)).and_then(|ctx| {
            let mut config: LbConfig = ctx.section("lb")?;
            options.clone().apply(&mut config);
            config.validate().with_context(|| format!("{} [lb]", path.display()))?;
            Ok(config)
        });
        match reloaded {
            Ok(config) => {
                if !options.backends.is_empty() {
                    println!("appnet lb: SIGHUP: --backend flags fix the backend list; nothing to reload");
                    continue;
                }
                handle.reload(&config.backends);
            }
            Err(e) => println!("appnet lb: SIGHUP: keeping the running backends: {e:#}"),
        }
        let _ = std::io::stdout().flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        options: LbOptions,
    }

    #[test]
    fn flags_override_the_table_and_absent_flags_keep_it() {
        let mut config = LbConfig { max_conns: 5, rise: 7, ..LbConfig::default() };
        let cli = Cli::try_parse_from([
            "lb",
            "--backend",
            "127.0.0.1:1,127.0.0.1:2",
            "--backend",
            "127.0.0.1:3",
            "--balance",
            "leastconn",
            "--health",
            "http:/health",
            "--proxy-protocol",
            "v2",
            "--buffer-size",
            "32KiB",
        ])
        .unwrap();
        cli.options.apply(&mut config);
        assert_eq!(config.backends.len(), 3);
        assert_eq!(config.balance, Policy::LeastConn);
        assert_eq!(config.health, HealthCheck::Http("/health".into()));
        assert_eq!(config.proxy_protocol, Some(Version::V2));
        assert_eq!((config.buffer_size, config.max_conns, config.rise), (32 << 10, 5, 7));
        let before = format!("{config:?}");
        LbOptions::default().apply(&mut config);
        assert_eq!(format!("{config:?}"), before);
    }

    #[test]
    fn bad_flags_are_refused() {
        assert!(Cli::try_parse_from(["lb", "--balance", "random"]).is_err());
        assert!(Cli::try_parse_from(["lb", "--health", "icmp"]).is_err());
        assert!(Cli::try_parse_from(["lb", "--proxy-protocol", "v3"]).is_err());
    }
}
