//! `appnet web proxy`: the caching forward/reverse proxy (flags → [`ProxyConfig`]).

use crate::context::Context;
use anyhow::Context as _;
use appnet_netkit::{Service, Shutdown};
use appnet_web::proxy::{ProxyConfig, ProxyServer};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Flags for `web proxy`; each overrides the `[proxy]` table of --config.
#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// Address to listen on [default: 127.0.0.1:3128].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Reverse-proxy (accelerator) mode: every request goes to this origin, http://HOST[:PORT]
    /// or https://HOST[:PORT] (verified against the system's roots, the lab CA and --origin-ca).
    #[arg(long, value_name = "URL")]
    reverse: Option<String>,
    /// Reverse mode, per Host: NAME=URL (repeatable; before --reverse).
    #[arg(long, value_name = "NAME=URL")]
    origin: Vec<String>,
    /// Serve HTTPS to clients (HTTP/2 and HTTP/1.1 by ALPN); without --cert/--key the lab CA
    /// mints a certificate (the curl --cacert line is printed).
    #[arg(long)]
    tls: bool,
    /// PEM certificate chain of the listener (implies --tls).
    #[arg(long, alias = "tls-cert", value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// PEM private key of the listener.
    #[arg(long, alias = "tls-key", value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// Another name for the lab-CA certificate, e.g. the site's public name (repeatable).
    #[arg(long, value_name = "NAME")]
    tls_name: Vec<String>,
    /// The lab CA's directory [default: ~/.local/share/appnet/lab-ca, or $APPNET_CA_DIR].
    #[arg(long, value_name = "DIR")]
    ca_dir: Option<PathBuf>,
    /// Also trust the CA certificates in this PEM file for https:// origins (repeatable).
    #[arg(long, value_name = "FILE")]
    origin_ca: Vec<PathBuf>,
    /// Trust only --origin-ca (and the lab CA) for https:// origins, not the system's roots.
    #[arg(long)]
    no_system_roots: bool,
    /// Keep the cache on disk here (survives restarts); default: memory only.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Memory cache size, e.g. 256MiB, 1GiB [default: 256MiB].
    #[arg(long, value_name = "SIZE", value_parser = appnet_netkit::units::parse_size)]
    memory_size: Option<u64>,
    /// Disk cache size with --cache-dir [default: 4GiB].
    #[arg(long, value_name = "SIZE", value_parser = appnet_netkit::units::parse_size)]
    disk_size: Option<u64>,
    /// Largest object stored; larger ones pass through [default: 64MiB].
    #[arg(long, value_name = "SIZE", value_parser = appnet_netkit::units::parse_size)]
    max_object_size: Option<u64>,
    /// Clients allowed to use the proxy: address or CIDR (repeatable) [default: loopback and
    /// private networks]. `all` allows everyone.
    #[arg(long, value_name = "NET")]
    allow: Vec<String>,
    /// Clients allowed to PURGE and read /metrics (repeatable) [default: loopback].
    #[arg(long, value_name = "NET")]
    purge_allow: Vec<String>,
    /// Ports CONNECT may reach (repeatable) [default: 443].
    #[arg(long, value_name = "PORT")]
    connect_port: Vec<u16>,
    /// Forward mode: let clients reach these internal destinations, address or CIDR
    /// (repeatable), e.g. 127.0.0.0/8 for origins on loopback [default: none; loopback,
    /// private and link-local addresses are refused, and the proxy's own address always is].
    #[arg(long, value_name = "NET")]
    allow_dest: Vec<String>,
    /// Forward the client's X-Forwarded-Host (and X-Host, X-Original-URL, ...) to origins
    /// [default: removed, since they are not part of the cache key].
    #[arg(long)]
    forward_host_overrides: bool,
    /// Bytes of bodies being stored in memory at once by all misses together; a miss that
    /// would exceed it streams through uncached [default: 64MiB].
    #[arg(long, value_name = "SIZE", value_parser = appnet_netkit::units::parse_size)]
    max_inflight: Option<u64>,
    /// Seconds an origin has to start answering before 504 [default: 30].
    #[arg(long, value_name = "SECS")]
    origin_timeout: Option<u64>,
    /// Seconds a client connection with no request in progress stays open [default: 60].
    #[arg(long, alias = "idle-timeout-secs", value_name = "SECS")]
    idle_timeout: Option<u64>,
    /// Seconds a client has to send a whole request head once it started [default: 10].
    #[arg(long, alias = "header-timeout-secs", value_name = "SECS")]
    header_timeout: Option<u64>,
    /// Longest HTTP/1 request line in bytes; longer gets 414 [default: 8192].
    #[arg(long, value_name = "BYTES")]
    max_request_line: Option<usize>,
    /// Largest HTTP/1 request head in bytes; larger gets 431 [default: 65536].
    #[arg(long, value_name = "BYTES")]
    max_header_bytes: Option<usize>,
    /// Most header fields in an HTTP/1 request head; more get 431 [default: 100].
    #[arg(long, value_name = "N")]
    max_headers: Option<usize>,
    /// Seconds to connect to an origin [default: 5].
    #[arg(long, value_name = "SECS")]
    connect_timeout: Option<u64>,
    /// Resolve origin names through this recursive DNS resolver, ADDR:PORT (e.g. the lab's
    /// 127.0.4.1:10053) [default: the system's resolver].
    #[arg(long, value_name = "ADDR")]
    dns: Option<std::net::SocketAddr>,
    /// Cap on heuristic freshness (10% of Last-Modified age), in seconds [default: 86400].
    #[arg(long, value_name = "SECS")]
    heuristic_max: Option<u64>,
    /// Do not collapse concurrent misses into one origin request.
    #[arg(long)]
    no_collapse: bool,
    /// Statistics path (Prometheus text); "" turns it off [default: /metrics].
    #[arg(long, value_name = "PATH")]
    metrics_path: Option<String>,
    /// Most client connections at once; when full, the longest-idle one is closed for a
    /// newcomer [default: 10000].
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Most client connections from one address [default: an eighth of --max-connections].
    #[arg(long, value_name = "N")]
    max_connections_per_ip: Option<usize>,
    /// Log each request's status on stdout.
    #[arg(long)]
    access_log: bool,
}

/// Runs `appnet web proxy`.
pub async fn run(args: ProxyArgs, ctx: &Context) -> anyhow::Result<()> {
    let mut config: ProxyConfig = ctx.section("proxy")?;
    if let Some(a) = args.listen {
        config.listen = a;
    }
    if args.reverse.is_some() {
        config.reverse = args.reverse;
    }
    for o in &args.origin {
        let (name, url) = o.split_once('=').with_context(|| format!("--origin {o}: expected NAME=URL"))?;
        config.origins.insert(name.to_ascii_lowercase(), url.to_string());
    }
    if args.cache_dir.is_some() {
        config.cache_dir = args.cache_dir;
    }
    if let Some(n) = args.memory_size {
        config.memory_size = n;
    }
    if let Some(n) = args.disk_size {
        config.disk_size = n;
    }
    if let Some(n) = args.max_object_size {
        config.max_object_size = n;
    }
    if !args.allow.is_empty() {
        config.allow = if args.allow.iter().any(|a| a == "all") { Vec::new() } else { args.allow };
    }
    if !args.purge_allow.is_empty() {
        config.purge_allow = args.purge_allow;
    }
    if !args.connect_port.is_empty() {
        config.connect_ports = args.connect_port;
    }
    config.allow_dest.extend(args.allow_dest);
    config.forward_host_overrides |= args.forward_host_overrides;
    if let Some(n) = args.max_inflight {
        config.max_inflight_bytes = n;
    }
    if let Some(s) = args.origin_timeout {
        config.origin_timeout_secs = s;
    }
    if let Some(s) = args.connect_timeout {
        config.connect_timeout_secs = s;
    }
    if let Some(s) = args.idle_timeout {
        config.idle_timeout_secs = s;
    }
    if let Some(s) = args.header_timeout {
        config.header_timeout_secs = s;
    }
    if let Some(n) = args.max_request_line {
        config.max_request_line = n;
    }
    if let Some(n) = args.max_header_bytes {
        config.max_header_bytes = n;
    }
    if let Some(n) = args.max_headers {
        config.max_headers = n;
    }
    if args.dns.is_some() {
        config.dns = args.dns;
    }
    if let Some(s) = args.heuristic_max {
        config.heuristic_max_secs = s;
    }
    config.collapse &= !args.no_collapse;
    if let Some(p) = args.metrics_path {
        config.metrics_path = p;
    }
    if let Some(n) = args.max_connections {
        config.max_connections = n;
    }
    if let Some(n) = args.max_connections_per_ip {
        config.max_connections_per_ip = Some(n);
    }
    config.access_log |= args.access_log;
    config.tls |= args.tls || args.cert.is_some();
    if args.cert.is_some() {
        config.cert = args.cert;
        config.key = args.key;
    }
    config.tls_names.extend(args.tls_name);
    if args.ca_dir.is_some() {
        config.ca_dir = args.ca_dir;
    }
    config.origin_ca.extend(args.origin_ca);
    config.origin_system_roots &= !args.no_system_roots;
    let listen = config.listen;
    let mode = match (&config.reverse, config.origins.is_empty()) {
        (Some(url), true) => format!("reverse proxy for {url}"),
        (_, false) => format!("reverse proxy for {} host(s)", config.origins.len()),
        (None, true) => "forward proxy".to_string(),
    };
    let store = match &config.cache_dir {
        Some(d) => format!("disk cache {}", d.display()),
        None => format!("memory cache {} MiB", config.memory_size / (1024 * 1024)),
    };
    let forward = !config.is_reverse();
    let server =
        ProxyServer::bind(config).await.with_context(|| format!("cannot start the proxy on {listen}"))?;
    let scheme = if server.is_tls() { "https" } else { "http" };
    eprintln!("appnet web proxy: {mode} on {scheme}://{} ({store}; Ctrl-C to stop)", server.local_addr());
    if let Some(note) = server.tls_note() {
        eprintln!("appnet web proxy: {note}");
        if forward {
            eprintln!(
                "appnet web proxy: as a proxy: curl -x https://localhost:{} --proxy-cacert CA.pem URL",
                server.local_addr().port()
            );
        }
    }
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    server.run(shutdown).await.map_err(|e| anyhow::anyhow!(e))
}

/// Flags for `web cdn`; each overrides the `[cdn]` table of --config.
#[derive(Args, Debug)]
pub struct CdnArgs {
    /// Address to listen on, UDP and TCP [default: 127.0.0.1:10053].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// The CDN zone this server is authoritative for [default: akamai.net].
    #[arg(long, value_name = "ZONE")]
    zone: Option<String>,
    /// A name answered with the nearest replica (repeatable) [default: a128.g.akamai.net].
    #[arg(long, value_name = "NAME")]
    name: Vec<String>,
    /// A replica: NAME=IP, or NAME=IP@HOST:PORT to health-check another address (repeatable).
    #[arg(long, value_name = "NAME=IP[@CHECK]")]
    replica: Vec<String>,
    /// Resolvers in PREFIX go to these replicas, nearest first: PREFIX=NAME,NAME (repeatable).
    #[arg(long, value_name = "PREFIX=NAMES")]
    network: Vec<String>,
    /// A name server of the zone for its NS records: NAME=IP (repeatable).
    #[arg(long, value_name = "NAME=IP")]
    ns: Vec<String>,
    /// TTL of replica answers in seconds [default: 20].
    #[arg(long, value_name = "SECS")]
    ttl: Option<u32>,
    /// Milliseconds between health checks; 0 turns them off [default: 1000].
    #[arg(long, value_name = "MS")]
    check_interval: Option<u64>,
    /// Path requested by health checks [default: /].
    #[arg(long, value_name = "PATH")]
    check_path: Option<String>,
}

/// Runs `appnet web cdn`.
pub async fn run_cdn(args: CdnArgs, ctx: &Context) -> anyhow::Result<()> {
    use appnet_web::cdn::config::{Network, Replica};
    use appnet_web::cdn::{CdnConfig, CdnDnsServer};
    let mut config: CdnConfig = ctx.section("cdn")?;
    if let Some(a) = args.listen {
        config.listen = a;
    }
    if let Some(z) = args.zone {
        config.zone = z;
    }
    if !args.name.is_empty() {
        config.names = args.name;
    }
    for r in &args.replica {
        let (name, rest) =
            r.split_once('=').with_context(|| format!("--replica {r}: expected NAME=IP[@HOST:PORT]"))?;
        let (ip, check) = match rest.split_once('@') {
            Some((ip, check)) => {
                (ip, Some(check.parse().with_context(|| format!("--replica {r}: bad check address"))?))
            }
            None => (rest, None),
        };
        let addr = ip.parse().with_context(|| format!("--replica {r}: bad address {ip:?}"))?;
        config.replicas.push(Replica { name: name.to_string(), addr, check });
    }
    for n in &args.network {
        let (prefix, names) =
            n.split_once('=').with_context(|| format!("--network {n}: expected PREFIX=NAME,NAME"))?;
        let replicas = names.split(',').map(str::to_string).collect();
        config.networks.push(Network { prefix: prefix.to_string(), replicas });
    }
    for n in &args.ns {
        let (name, ip) = n.split_once('=').with_context(|| format!("--ns {n}: expected NAME=IP"))?;
        config
            .nameservers
            .push((name.to_string(), ip.parse().with_context(|| format!("--ns {n}: bad address"))?));
    }
    if let Some(t) = args.ttl {
        config.ttl = t;
    }
    if let Some(ms) = args.check_interval {
        config.check_interval_ms = ms;
    }
    if let Some(p) = args.check_path {
        config.check_path = p;
    }
    anyhow::ensure!(!config.replicas.is_empty(), "no replicas: give at least one --replica NAME=IP");
    let listen = config.listen;
    let (zone, replicas) = (config.zone.clone(), config.replicas.len());
    let server =
        CdnDnsServer::bind(config).await.with_context(|| format!("cannot start the CDN DNS on {listen}"))?;
    eprintln!(
        "appnet web cdn: authoritative for {zone} on {} (UDP and TCP), {replicas} replica(s); Ctrl-C to stop",
        server.local_addr()
    );
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    server.run(shutdown).await.map_err(|e| anyhow::anyhow!(e))
}
