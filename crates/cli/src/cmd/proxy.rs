//! `appnet web proxy`: the caching forward/reverse proxy (flags → [`ProxyConfig`]).

use super::set;
use crate::context::Context;
use anyhow::Context as _;
use appnet_netkit::{Service, Shutdown};
use appnet_web::cdn::CdnConfig;
use appnet_web::cdn::config::{Network, Replica};
use appnet_web::proxy::{ProxyConfig, ProxyServer};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Flags for `web proxy`.
#[derive(Args, Debug)]
pub struct ProxyArgs {
    #[command(flatten)]
    options: ProxyOptions,
}

/// The service flags of `web proxy`; each overrides the `[proxy]` table of --config.
#[derive(Args, Debug, Default)]
pub struct ProxyOptions {
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
    /// Also serve clients over HTTP/3 (QUIC) on the same IP and port (UDP), with the same
    /// certificate (needs --tls); TCP responses advertise it with Alt-Svc.
    #[arg(long)]
    http3: bool,
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
    /// Longest HTTP/1 request line, e.g. 8192, 16KiB; longer gets 414 [default: 8KiB].
    #[arg(long, value_name = "SIZE", value_parser = appnet_netkit::units::parse_size_usize)]
    max_request_line: Option<usize>,
    /// Largest HTTP/1 request head, e.g. 64KiB; larger gets 431 [default: 64KiB].
    #[arg(long, value_name = "SIZE", value_parser = appnet_netkit::units::parse_size_usize)]
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
    /// CDN push: accept signed `POST /.appnet/push` with the secret in this file (at least 16
    /// bytes; the same file as `appnet web push --secret-file`) [default: push off].
    #[arg(long, value_name = "FILE")]
    push_secret_file: Option<PathBuf>,
    /// Seconds a push's timestamp may differ from this replica's clock [default: 300].
    #[arg(long, value_name = "SECS")]
    push_window: Option<u64>,
    /// Most URLs in one push [default: 1000].
    #[arg(long, value_name = "N")]
    push_max_urls: Option<usize>,
    /// Largest push body, e.g. 1MiB [default: 1MiB].
    #[arg(long, value_name = "SIZE", value_parser = appnet_netkit::units::parse_size_usize)]
    push_max_body: Option<usize>,
    /// Most push fetches to origins at once, all pushes together [default: 8].
    #[arg(long, value_name = "N")]
    push_concurrency: Option<usize>,
    /// Most push signatures remembered against replays within the window [default: 10000].
    #[arg(long, value_name = "N")]
    push_max_remembered: Option<usize>,
}

impl ProxyOptions {
    /// Puts the flags given over `config` (the `[proxy]` table); absent flags keep its values,
    /// repeatable list flags replace (`--allow`, `--purge-allow`, `--connect-port`) or extend
    /// (`--allow-dest`, `--tls-name`, `--origin-ca`, `--origin`) the configured lists.
    pub fn apply(self, config: &mut ProxyConfig) -> anyhow::Result<()> {
        set(&mut config.listen, self.listen);
        set(&mut config.reverse, self.reverse.map(Some));
        for o in &self.origin {
            let (name, url) =
                o.split_once('=').with_context(|| format!("--origin {o}: expected NAME=URL"))?;
            config.origins.insert(name.to_ascii_lowercase(), url.to_string());
        }
        set(&mut config.cache_dir, self.cache_dir.map(Some));
        set(&mut config.memory_size, self.memory_size);
        set(&mut config.disk_size, self.disk_size);
        set(&mut config.max_object_size, self.max_object_size);
        if !self.allow.is_empty() {
            config.allow = if self.allow.iter().any(|a| a == "all") { Vec::new() } else { self.allow };
        }
        if !self.purge_allow.is_empty() {
            config.purge_allow = self.purge_allow;
        }
        if !self.connect_port.is_empty() {
            config.connect_ports = self.connect_port;
        }
        config.allow_dest.extend(self.allow_dest);
        config.forward_host_overrides |= self.forward_host_overrides;
        set(&mut config.max_inflight_bytes, self.max_inflight);
        set(&mut config.origin_timeout_secs, self.origin_timeout);
        set(&mut config.connect_timeout_secs, self.connect_timeout);
        set(&mut config.idle_timeout_secs, self.idle_timeout);
        set(&mut config.header_timeout_secs, self.header_timeout);
        set(&mut config.max_request_line, self.max_request_line);
        set(&mut config.max_header_bytes, self.max_header_bytes);
        set(&mut config.max_headers, self.max_headers);
        set(&mut config.dns, self.dns.map(Some));
        set(&mut config.heuristic_max_secs, self.heuristic_max);
        config.collapse &= !self.no_collapse;
        set(&mut config.metrics_path, self.metrics_path);
        set(&mut config.max_connections, self.max_connections);
        set(&mut config.max_connections_per_ip, self.max_connections_per_ip.map(Some));
        config.access_log |= self.access_log;
        set(&mut config.push_secret_file, self.push_secret_file.map(Some));
        set(&mut config.push_window_secs, self.push_window);
        set(&mut config.push_max_urls, self.push_max_urls);
        set(&mut config.push_max_body, self.push_max_body);
        set(&mut config.push_concurrency, self.push_concurrency);
        set(&mut config.push_max_remembered, self.push_max_remembered);
        config.tls |= self.tls || self.cert.is_some();
        config.http3 |= self.http3;
        anyhow::ensure!(!config.http3 || config.is_tls(), "--http3 needs --tls (QUIC always encrypts)");
        if self.cert.is_some() {
            config.cert = self.cert;
            config.key = self.key;
        }
        config.tls_names.extend(self.tls_name);
        set(&mut config.ca_dir, self.ca_dir.map(Some));
        config.origin_ca.extend(self.origin_ca);
        config.origin_system_roots &= !self.no_system_roots;
        Ok(())
    }
}

/// Runs `appnet web proxy`.
pub async fn run(args: ProxyArgs, ctx: &Context) -> anyhow::Result<()> {
    let mut config: ProxyConfig = ctx.section("proxy")?;
    args.options.apply(&mut config)?;
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
    let push = config.push_secret_file.is_some();
    let server =
        ProxyServer::bind(config).await.with_context(|| format!("cannot start the proxy on {listen}"))?;
    let scheme = if server.is_tls() { "https" } else { "http" };
    eprintln!("appnet web proxy: {mode} on {scheme}://{} ({store}; Ctrl-C to stop)", server.local_addr());
    if let Some(udp) = server.http3_addr() {
        eprintln!("appnet web proxy: HTTP/3 on udp {udp}");
    }
    if push {
        eprintln!("appnet web proxy: CDN push on {scheme}://{}/.appnet/push (signed)", server.local_addr());
    }
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

/// Flags for `web push`.
#[derive(Args, Debug)]
pub struct PushArgs {
    /// The URLs to pre-position, exactly as clients will ask for them (http://NAME[:PORT]/PATH).
    #[arg(required = true, value_name = "URL")]
    urls: Vec<String>,
    /// A replica to push to, HOST:PORT or http://HOST:PORT (repeatable).
    #[arg(long, required = true, value_name = "ADDR")]
    replica: Vec<String>,
    /// The file holding the secret shared with the replicas (their --push-secret-file).
    #[arg(long, value_name = "FILE")]
    secret_file: PathBuf,
    /// Seconds to wait for each replica (it fetches every URL before answering).
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    timeout: f64,
}

/// Runs `appnet web push`: one signed push per replica (all at once), then one line per
/// replica and URL. Fails when a replica refused the push or an object could not be fetched.
pub async fn run_push(args: PushArgs) -> anyhow::Result<()> {
    use appnet_web::proxy::push::{client, read_secret, wire::Outcome};
    anyhow::ensure!(args.timeout > 0.0 && args.timeout.is_finite(), "--timeout must be a positive number");
    let secret = read_secret(&args.secret_file).map_err(anyhow::Error::msg)?;
    let body = client::body(&args.urls);
    let timeout = std::time::Duration::from_secs_f64(args.timeout);
    let tasks: Vec<_> = args
        .replica
        .iter()
        .map(|r| {
            let (r, body, secret) = (r.clone(), body.clone(), secret.clone());
            tokio::spawn(async move { client::push(&r, &body, &secret, timeout).await })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await?);
    }
    let (mut failed, mut stored) = (0usize, 0usize);
    for (replica, result) in args.replica.iter().zip(results) {
        match result {
            Err(e) => {
                failed += 1;
                println!("{replica}\tfailed\t(all)\t{e}");
            }
            Ok(lines) => {
                for l in lines {
                    match l.outcome {
                        Outcome::Stored => stored += 1,
                        Outcome::Failed => failed += 1,
                        Outcome::NotStored => {}
                    }
                    println!("{replica}\t{}\t{}\t{}", l.outcome.word(), l.url, l.detail);
                }
            }
        }
    }
    eprintln!(
        "appnet web push: {stored} object(s) stored on {} replica(s), {failed} failure(s)",
        args.replica.len()
    );
    anyhow::ensure!(failed == 0, "{failed} push(es) failed");
    Ok(())
}

/// Flags for `web cdn`.
#[derive(Args, Debug)]
pub struct CdnArgs {
    #[command(flatten)]
    options: CdnOptions,
}

/// The service flags of `web cdn`; each overrides the `[cdn]` table of --config (replicas,
/// networks and name servers are added to its lists).
#[derive(Args, Debug, Default)]
pub struct CdnOptions {
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

impl CdnOptions {
    /// Puts the flags given over `config` (the `[cdn]` table); absent flags keep its values.
    pub fn apply(self, config: &mut CdnConfig) -> anyhow::Result<()> {
        set(&mut config.listen, self.listen);
        set(&mut config.zone, self.zone);
        if !self.name.is_empty() {
            config.names = self.name;
        }
        for r in &self.replica {
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
        for n in &self.network {
            let (prefix, names) =
                n.split_once('=').with_context(|| format!("--network {n}: expected PREFIX=NAME,NAME"))?;
            let replicas = names.split(',').map(str::to_string).collect();
            config.networks.push(Network { prefix: prefix.to_string(), replicas });
        }
        for n in &self.ns {
            let (name, ip) = n.split_once('=').with_context(|| format!("--ns {n}: expected NAME=IP"))?;
            config
                .nameservers
                .push((name.to_string(), ip.parse().with_context(|| format!("--ns {n}: bad address"))?));
        }
        set(&mut config.ttl, self.ttl);
        set(&mut config.check_interval_ms, self.check_interval);
        set(&mut config.check_path, self.check_path);
        Ok(())
    }
}

/// Runs `appnet web cdn`.
pub async fn run_cdn(args: CdnArgs, ctx: &Context) -> anyhow::Result<()> {
    use appnet_web::cdn::CdnDnsServer;
    let mut config: CdnConfig = ctx.section("cdn")?;
    args.options.apply(&mut config)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_config_and_absent_flags_keep_it() {
        let mut config = ProxyConfig { max_headers: 50, ..ProxyConfig::default() };
        let options = ProxyOptions {
            memory_size: Some(1 << 20),
            max_header_bytes: Some(16 << 10),
            origin: vec!["WWW.Example=http://127.0.0.1:8080".into()],
            allow: vec!["all".into()],
            ..ProxyOptions::default()
        };
        options.apply(&mut config).unwrap();
        assert_eq!(
            (config.memory_size, config.max_header_bytes, config.max_headers),
            (1 << 20, 16 << 10, 50)
        );
        assert_eq!(config.origins.get("www.example").map(String::as_str), Some("http://127.0.0.1:8080"));
        assert!(config.allow.is_empty());
        let before = format!("{config:?}");
        ProxyOptions::default().apply(&mut config).unwrap();
        assert_eq!(format!("{config:?}"), before);
        let bad = ProxyOptions { origin: vec!["no-equals".into()], ..ProxyOptions::default() };
        assert!(bad.apply(&mut config).is_err());
    }

    #[test]
    fn push_flags_set_the_push_fields_and_absent_ones_keep_them() {
        let mut config = ProxyConfig { push_window_secs: 60, ..ProxyConfig::default() };
        let options = ProxyOptions {
            push_secret_file: Some("push.secret".into()),
            push_max_urls: Some(5),
            push_max_body: Some(4096),
            push_concurrency: Some(2),
            ..ProxyOptions::default()
        };
        options.apply(&mut config).unwrap();
        assert_eq!(config.push_secret_file.as_deref(), Some(std::path::Path::new("push.secret")));
        assert_eq!(
            (config.push_window_secs, config.push_max_urls, config.push_max_body, config.push_concurrency),
            (60, 5, 4096, 2)
        );
        assert_eq!(config.push_max_remembered, ProxyConfig::default().push_max_remembered);
    }

    #[test]
    fn cdn_flags_add_replicas_and_keep_the_rest() {
        let mut config = CdnConfig { ttl: 7, ..CdnConfig::default() };
        let replicas = config.replicas.len();
        let options = CdnOptions {
            replica: vec!["east=127.0.20.1@127.0.20.1:8080".into()],
            network: vec!["127.0.4.0/24=east".into()],
            check_interval: Some(0),
            ..CdnOptions::default()
        };
        options.apply(&mut config).unwrap();
        assert_eq!((config.ttl, config.check_interval_ms, config.replicas.len()), (7, 0, replicas + 1));
        let before = format!("{config:?}");
        CdnOptions::default().apply(&mut config).unwrap();
        assert_eq!(format!("{config:?}"), before);
        let bad = CdnOptions { replica: vec!["east=not-an-ip".into()], ..CdnOptions::default() };
        assert!(bad.apply(&mut config).is_err());
    }
}
