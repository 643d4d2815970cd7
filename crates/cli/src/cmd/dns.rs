//! `appnet dns serve|check-zone|query`: the authoritative server, a zone checker, and a small
//! dig-like client.

use crate::context::Context;
use anyhow::{Context as _, bail};
use appnet_dns::client::{self, QueryOpts, rcode_name};
use appnet_dns::config::{SecondaryZone, ZoneSource, zone_name_for};
use appnet_dns::wire::message::{dig_text, parse};
use appnet_dns::wire::name::{from_text, to_lower};
use appnet_dns::wire::rrtype::{code, type_from_text};
use appnet_dns::wire::zonefile::{self, record_text};
use appnet_dns::zone::{Severity, Zone, check};
use appnet_dns::{DnsConfig, DnsServer};
use appnet_netkit::{Service, Shutdown};
use clap::{Args, Subcommand};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The authoritative DNS server, a zone-file checker and a query client.
#[derive(Subcommand, Debug)]
#[command(after_help = "Try it:\n  \
    appnet dns serve --zone example.com.zone --listen 127.0.0.1:10053 &\n  \
    appnet dns query www.example.com A --server 127.0.0.1:10053\n  \
    dig @127.0.0.1 -p 10053 www.example.com")]
pub enum DnsCmd {
    /// Serve zones authoritatively over UDP and TCP (primary for files, secondary by transfer).
    #[command(after_help = "Examples:\n  \
        appnet dns serve --zone example.com.zone                     name from $ORIGIN or the file name\n  \
        appnet dns serve --zone example.com=db.example --zone net.zone --listen 0.0.0.0:53\n  \
        appnet dns serve --zone ex.zone --allow-transfer 192.0.2.0/24 --notify 192.0.2.2:53\n  \
        appnet dns serve --secondary example.com=192.0.2.1:53 --state-dir /var/lib/appnet-dns\n\n\
        Reload: send SIGHUP (kill -HUP PID); broken files keep their old data, zones with a\n\
        higher serial are swapped in and announced to --notify targets.")]
    Serve(ServeArgs),
    /// Check a zone file like named-checkzone: syntax (file:line), SOA, NS, CNAME, glue.
    #[command(after_help = "Examples:\n  \
        appnet dns check-zone example.com.zone\n  \
        appnet dns check-zone db.example --origin example.com")]
    CheckZone(CheckArgs),
    /// Tell a running `dns serve` (started with --pid-file) to reload its zone files (SIGHUP).
    #[command(after_help = "Examples:\n  \
        appnet dns serve --zone example.com.zone --pid-file /run/appnet-dns.pid &\n  \
        appnet dns reload --pid-file /run/appnet-dns.pid")]
    Reload(ReloadArgs),
    /// Ask a DNS server one question and print the answer (dig-style).
    #[command(after_help = "Examples:\n  \
        appnet dns query www.example.com --server 127.0.0.1:10053\n  \
        appnet dns query example.com MX --server 127.0.0.1:10053 --tcp\n  \
        appnet dns query example.com AXFR --server 127.0.0.1:10053")]
    Query(QueryArgs),
    /// Run a recursive resolver (the "local DNS server"): iterative from the root, or forwarding.
    #[command(after_help = "Examples:\n  \
        appnet dns resolver                                   iterate from the real root servers\n  \
        appnet dns resolver --root-hints lab.hints --upstream-port 10053\n  \
        appnet dns resolver --forward 192.0.2.53:53 --listen 0.0.0.0:53 --allow 192.168.0.0/16")]
    Resolver(super::resolver::ResolverArgs),
}

/// Flags for `dns serve`; each overrides the `[dns]` table of --config.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Zone file to serve, as FILE or NAME=FILE (repeatable).
    #[arg(long = "zone", value_name = "FILE")]
    zones: Vec<String>,
    /// Address for UDP and TCP [default: 127.0.0.1:10053].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Be secondary for ZONE, transferring from PRIMARY (ADDR:PORT) (repeatable).
    #[arg(long = "secondary", value_name = "ZONE=PRIMARY")]
    secondaries: Vec<String>,
    /// Directory where secondary zones are stored (crash-safe writes).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Address or prefix allowed to transfer zones (repeatable); others get REFUSED.
    #[arg(long = "allow-transfer", value_name = "PREFIX")]
    allow_transfer: Vec<String>,
    /// Secondary to NOTIFY when a reloaded zone has a higher serial (repeatable).
    #[arg(long = "notify", value_name = "ADDR")]
    notify: Vec<SocketAddr>,
    /// UDP sockets sharing the port (SO_REUSEPORT) [default: one per CPU].
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Largest UDP answer and advertised EDNS payload size [default: 1232].
    #[arg(long, value_name = "BYTES")]
    max_udp_payload: Option<u16>,
    /// Response rate limit per client prefix, responses/second [default: 20].
    #[arg(long, value_name = "N")]
    rrl_rate: Option<u32>,
    /// Every Nth rate-limited response is sent truncated, the rest dropped [default: 2].
    #[arg(long, value_name = "N")]
    rrl_slip: Option<u32>,
    /// Turn response rate limiting off.
    #[arg(long)]
    no_rrl: bool,
    /// Rate-limit loopback clients too (they are exempt by default).
    #[arg(long)]
    rrl_loopback: bool,
    /// Write the process id here (for `appnet dns reload`); removed at exit.
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Close idle TCP connections after this many seconds [default: 10].
    #[arg(long, value_name = "SECS")]
    tcp_idle_timeout: Option<u64>,
    /// Most TCP connections at once [default: 512].
    #[arg(long, value_name = "N")]
    max_tcp_connections: Option<usize>,
}

/// Flags for `dns reload`.
#[derive(Args, Debug)]
pub struct ReloadArgs {
    /// The pid file written by `dns serve --pid-file`.
    #[arg(long, value_name = "FILE", required_unless_present = "pid")]
    pid_file: Option<PathBuf>,
    /// The server's process id.
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,
}

/// Flags for `dns check-zone`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The zone file.
    file: PathBuf,
    /// The zone's name [default: the file's $ORIGIN, else its file name].
    #[arg(long, value_name = "NAME")]
    origin: Option<String>,
}

/// Flags for `dns query`.
#[derive(Args, Debug)]
pub struct QueryArgs {
    /// The name to look up.
    name: String,
    /// Record type (A, AAAA, MX, TXT, NS, SOA, ANY, AXFR, TYPE65534, ...).
    #[arg(default_value = "A")]
    qtype: String,
    /// The server, ADDR:PORT (port 53 if left out).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:10053")]
    server: String,
    /// Ask over TCP.
    #[arg(long)]
    tcp: bool,
    /// Send no EDNS OPT record.
    #[arg(long)]
    no_edns: bool,
    /// EDNS UDP payload size to advertise.
    #[arg(long, value_name = "BYTES", default_value_t = 1232)]
    bufsize: u16,
    /// EDNS version to send (servers answer BADVERS to anything but 0).
    #[arg(long, value_name = "N", default_value_t = 0)]
    edns_version: u8,
    /// Ask for recursion (RD), for resolvers.
    #[arg(long)]
    rd: bool,
    /// Do not retry over TCP when the UDP answer is truncated.
    #[arg(long)]
    ignore_tc: bool,
    /// Print only the answer records' data.
    #[arg(long)]
    short: bool,
    /// Seconds to wait (UDP retries three times within it).
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    timeout: f64,
    /// Resolve iteratively from the root yourself and print every step (like dig +trace).
    #[arg(long)]
    trace: bool,
    /// With --trace: root hints file [default: the real root servers].
    #[arg(long, value_name = "FILE", requires = "trace")]
    root_hints: Option<PathBuf>,
    /// With --trace: the port authoritative servers listen on [default: 53].
    #[arg(long, value_name = "N", default_value_t = 53, requires = "trace")]
    upstream_port: u16,
}

/// Runs a `dns` subcommand.
pub async fn run(cmd: DnsCmd, ctx: &Context) -> anyhow::Result<()> {
    match cmd {
        DnsCmd::Serve(args) => serve(args, ctx).await,
        DnsCmd::CheckZone(args) => check_zone(args),
        DnsCmd::Query(args) if args.trace => {
            super::resolver::trace(&args.name, &args.qtype, args.root_hints, args.upstream_port).await
        }
        DnsCmd::Query(args) => query(args).await,
        DnsCmd::Reload(args) => reload(args),
        DnsCmd::Resolver(args) => super::resolver::serve(args, ctx).await,
    }
}

fn parse_zone_arg(arg: &str) -> ZoneSource {
    // NAME=FILE, unless the whole thing is an existing file (file names may contain '=').
    match arg.split_once('=') {
        Some((name, file)) if !std::path::Path::new(arg).exists() => {
            ZoneSource { name: Some(name.to_string()), file: PathBuf::from(file) }
        }
        _ => ZoneSource { name: None, file: PathBuf::from(arg) },
    }
}

async fn serve(args: ServeArgs, ctx: &Context) -> anyhow::Result<()> {
    let mut config: DnsConfig = ctx.section("dns")?;
    if let Some(l) = args.listen {
        config.listen = l;
    }
    config.zones.extend(args.zones.iter().map(|z| parse_zone_arg(z)));
    for s in &args.secondaries {
        let Some((zone, primary)) = s.split_once('=') else {
            bail!("--secondary wants ZONE=PRIMARY (e.g. example.com=192.0.2.1:53), got {s:?}");
        };
        let primary =
            parse_server(primary).with_context(|| format!("bad primary address in --secondary {s}"))?;
        config.secondaries.push(SecondaryZone { name: zone.to_string(), primary });
    }
    if args.state_dir.is_some() {
        config.state_dir = args.state_dir;
    }
    config.allow_transfer.extend(args.allow_transfer);
    config.notify.extend(args.notify);
    if let Some(n) = args.workers {
        config.udp_workers = n;
    }
    if let Some(n) = args.max_udp_payload {
        config.max_udp_payload = n;
    }
    if let Some(n) = args.rrl_rate {
        config.rrl.responses_per_second = n;
    }
    if let Some(n) = args.rrl_slip {
        config.rrl.slip = n;
    }
    if args.no_rrl {
        config.rrl.enabled = false;
    }
    if args.rrl_loopback {
        config.rrl.exempt_loopback = false;
    }
    if let Some(s) = args.tcp_idle_timeout {
        config.tcp_idle_timeout_secs = s;
    }
    if let Some(n) = args.max_tcp_connections {
        config.max_tcp_connections = n;
    }
    if config.zones.is_empty() && config.secondaries.is_empty() {
        bail!("nothing to serve: give --zone FILE or --secondary ZONE=PRIMARY");
    }
    if !config.secondaries.is_empty() && config.state_dir.is_none() {
        tracing::warn!("no --state-dir: secondary zones are kept in memory only");
    }
    let listen = config.listen;
    let server =
        DnsServer::bind(config).await.with_context(|| format!("cannot start the DNS server on {listen}"))?;
    let control = server.control();
    let catalog = control.catalog();
    let mut names: Vec<String> =
        catalog.zones().map(|z| format!("{} (serial {})", z.name(), z.soa().serial)).collect();
    names.sort();
    println!(
        "appnet dns: serving {} zone(s) on {} udp+tcp: {} (Ctrl-C to stop, SIGHUP to reload)",
        names.len(),
        server.local_addr(),
        names.join(", ")
    );
    let _ = std::io::stdout().flush();
    if let Some(p) = &args.pid_file {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write the pid file {}", p.display()))?;
    }
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let result = server.run(shutdown).await.map_err(|e| anyhow::anyhow!(e));
    if let Some(p) = &args.pid_file {
        let _ = std::fs::remove_file(p);
    }
    result
}

fn reload(args: ReloadArgs) -> anyhow::Result<()> {
    let pid = match (args.pid, &args.pid_file) {
        (Some(pid), _) => pid,
        (None, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the pid file {}", file.display()))?
            .trim()
            .parse()
            .with_context(|| format!("{} does not hold a process id", file.display()))?,
        (None, None) => bail!("give --pid-file FILE or --pid PID"),
    };
    // The server reloads on SIGHUP; `kill` sends it without unsafe code here.
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .context("cannot run kill")?;
    anyhow::ensure!(status.success(), "no appnet dns server with pid {pid}");
    println!("asked the DNS server (pid {pid}) to reload its zone files");
    Ok(())
}

fn check_zone(args: CheckArgs) -> anyhow::Result<()> {
    let source = ZoneSource { name: args.origin.clone(), file: args.file.clone() };
    let origin = zone_name_for(&source).map_err(anyhow::Error::msg)?;
    let apex = to_lower(&from_text(&origin).map_err(anyhow::Error::msg)?);
    let records = match zonefile::read_file(&args.file, &apex) {
        Ok(r) => r,
        Err(e) => {
            println!("{e}");
            bail!("zone {origin}/IN: not loaded due to errors");
        }
    };
    let problems = check(&apex, &records);
    for p in &problems {
        println!("{p}");
    }
    if problems.iter().any(|p| p.severity == Severity::Error) {
        bail!("zone {origin}/IN: not loaded due to errors");
    }
    let zone = Zone::from_records(&apex, records)?;
    println!(
        "zone {}/IN: loaded serial {} ({} records)",
        zone.name(),
        zone.soa().serial,
        zone.record_count()
    );
    println!("OK");
    Ok(())
}

fn parse_server(s: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    bail!("expected ADDR or ADDR:PORT, got {s:?}")
}

async fn query(args: QueryArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.timeout > 0.0 && args.timeout.is_finite(), "--timeout must be a positive number");
    let server = parse_server(&args.server)?;
    let qname = from_text(&args.name).map_err(anyhow::Error::msg)?;
    let qtype = type_from_text(&args.qtype).map_err(anyhow::Error::msg)?;
    let timeout = Duration::from_secs_f64(args.timeout);
    let started = Instant::now();
    let mut out = std::io::stdout().lock();
    if qtype == code::AXFR {
        let records = client::axfr(server, &qname, timeout).await?;
        for r in &records {
            writeln!(out, "{}", record_text(&r.owner, r.rtype, r.ttl, &r.rdata))?;
        }
        if let Some(soa) = records.first() {
            writeln!(out, "{}", record_text(&soa.owner, soa.rtype, soa.ttl, &soa.rdata))?;
        }
        writeln!(
            out,
            ";; {} records transferred from {server} in {:?}",
            records.len() + 1,
            started.elapsed()
        )?;
        return Ok(());
    }
    let opts = QueryOpts {
        tcp: args.tcp,
        edns: if args.no_edns { None } else { Some((args.bufsize, args.edns_version)) },
        recursion_desired: args.rd,
        timeout,
        tcp_on_truncation: !args.ignore_tc,
    };
    let answer = client::query(server, &qname, qtype, opts).await?;
    let elapsed = started.elapsed();
    if args.short {
        let parsed = parse(&answer.bytes).map_err(anyhow::Error::msg)?;
        if parsed.rcode != 0 {
            bail!("{server} answered {}", rcode_name(parsed.rcode));
        }
        for r in parsed.answer {
            let line = record_text(&r.owner, r.rtype, r.ttl, &r.rdata);
            let data = line.splitn(5, ' ').nth(4).unwrap_or_default();
            writeln!(out, "{data}")?;
        }
        return Ok(());
    }
    if answer.retried_over_tcp {
        writeln!(out, ";; Truncated, retrying in TCP mode.")?;
    }
    write!(out, "{}", dig_text(&answer.bytes))?;
    writeln!(out, ";; Query time: {} msec", elapsed.as_millis())?;
    writeln!(out, ";; SERVER: {server}({})", if answer.used_tcp { "TCP" } else { "UDP" })?;
    writeln!(out, ";; MSG SIZE  rcvd: {}", answer.bytes.len())?;
    Ok(())
}
