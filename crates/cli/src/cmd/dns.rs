//! `appnet dns serve|check-zone|query`: the authoritative server, a zone checker, and a small
//! dig-like client.

use super::set;
use crate::context::Context;
use anyhow::{Context as _, bail};
use appnet_dns::client::{self, QueryOpts, Transferred, rcode_name};
use appnet_dns::config::{ZoneSource, server_addr, zone_name_for};
use appnet_dns::wire::message::{dig_text, parse, soa_with_serial};
use appnet_dns::wire::name::{from_text, to_lower};
use appnet_dns::wire::rrtype::{code, type_from_text};
use appnet_dns::wire::tsig::{Key, strip};
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
        TSIG (RFC 8945) for transfers and NOTIFY, keys like BIND's (tsig-keygen) or NAME:ALG:SECRET:\n  \
        appnet dns serve --zone ex.zone --tsig-key xfr:hmac-sha256:c2VjcmV0 \\\n      \
        --allow-transfer '192.0.2.0/24 key xfr' --notify '192.0.2.2:53 key xfr'\n  \
        appnet dns serve --tsig-key-file xfr.key --secondary 'example.com=192.0.2.1:53 key xfr'\n\n\
        Reload: send SIGHUP (kill -HUP PID); broken files keep their old data, zones with a\n\
        higher serial are swapped in and announced to --notify targets.")]
    Serve(ServeArgs),
    /// Check a zone file like named-checkzone: syntax (file:line), SOA, NS, CNAME, glue.
    #[command(after_help = "Examples:\n  \
        appnet dns check-zone example.com.zone\n  \
        appnet dns check-zone example.com.zone --print     the zone as loaded, canonical\n  \
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
    /// Make a DNSSEC key (one per call; BIND's K<zone>+<alg>+<tag>.key/.private files).
    #[command(after_help = "Examples:\n  \
        appnet dns keygen example.com --ksk --keys keys/       key-signing key (flags 257)\n  \
        appnet dns keygen example.com --keys keys/             zone-signing key (flags 256)\n  \
        appnet dns keygen example.com -a ed25519 --keys keys/")]
    Keygen(super::dnssec::KeygenArgs),
    /// Print the DS record (SHA-256) of a key file, for the parent zone.
    #[command(after_help = "Example:\n  appnet dns ds keys/Kexample.com+013+12345.key >> com.zone")]
    Ds(super::dnssec::DsArgs),
    /// Sign a zone file offline (like dnssec-signzone): DNSKEY, RRSIG, NSEC or NSEC3, DS.
    #[command(after_help = "Examples:\n  \
        appnet dns sign example.com.zone --keys keys/            writes example.com.zone.signed\n  \
        appnet dns sign example.com.zone --keys keys/ --nsec3 --expire 14d -o signed.zone")]
    Sign(super::dnssec::SignArgs),
    /// Send an RFC 2136 dynamic update, TSIG-signed (like nsupdate).
    #[command(after_help = "Examples:\n  \
        appnet dns update --server 127.0.0.1:10053 --key registrar.key --zone com. \\\n      \
        --prereq 'nxdomain networkutopia.com' add networkutopia.com NS dns1.networkutopia.com \\\n      \
        add dns1.networkutopia.com A 212.212.212.1\n  \
        appnet dns update --server ns.example --key k.key --zone example.com delete www.example.com A")]
    Update(super::dnssec::UpdateArgs),
}

/// Flags for `dns serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    options: DnsOptions,
    /// Write the process id here (for `appnet dns reload`); removed at exit.
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
}

/// The service flags of `dns serve`; each overrides the `[dns]` table of --config (the
/// repeatable ones add to its lists).
#[derive(Args, Debug, Default)]
pub struct DnsOptions {
    /// Zone file to serve, as FILE or NAME=FILE (repeatable).
    #[arg(long = "zone", value_name = "FILE")]
    zones: Vec<String>,
    /// Address for UDP and TCP [default: 127.0.0.1:10053].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Be secondary for ZONE, transferring from PRIMARY (ADDR:PORT), IXFR first (repeatable);
    /// `ZONE=PRIMARY key NAME` signs our queries with TSIG key NAME and requires it back.
    #[arg(long = "secondary", value_name = "ZONE=PRIMARY")]
    secondaries: Vec<String>,
    /// Directory where secondary zones and every zone's IXFR journal are kept across restarts
    /// (crash-safe writes).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Who may transfer zones (repeatable; others get REFUSED): `PREFIX`, `PREFIX key NAME`
    /// (that address, signed with TSIG key NAME) or `key NAME` (any address, signed).
    #[arg(long = "allow-transfer", value_name = "PREFIX")]
    allow_transfer: Vec<String>,
    /// Secondary to NOTIFY when a reloaded zone has a higher serial (repeatable);
    /// `ADDR key NAME` signs the NOTIFY with TSIG key NAME.
    #[arg(long = "notify", value_name = "ADDR")]
    notify: Vec<String>,
    /// TSIG key NAME:ALGORITHM:BASE64SECRET (hmac-sha256, hmac-sha512, hmac-sha1, ...) (repeatable).
    #[arg(long = "tsig-key", value_name = "NAME:ALG:SECRET")]
    tsig_keys: Vec<String>,
    /// File of TSIG keys in BIND's format, as tsig-keygen prints them (repeatable).
    #[arg(long = "tsig-key-file", value_name = "FILE")]
    tsig_key_files: Vec<PathBuf>,
    /// Zone changes kept per zone for IXFR, e.g. 16MiB [default: 16MiB].
    #[arg(long, value_name = "SIZE", value_parser = appnet_netkit::units::parse_size_usize)]
    journal_max_bytes: Option<usize>,
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
    /// Seconds a TCP connection may take to send each whole query, the first one included
    /// (RFC 7766 idle timeout) [default: 10].
    #[arg(long, value_name = "SECS")]
    tcp_idle_timeout: Option<u64>,
    /// Most TCP connections at once; when full, the longest-idle one makes room [default: 512].
    #[arg(long, value_name = "N")]
    max_tcp_connections: Option<usize>,
    /// Most TCP connections from one address [default: an eighth of --max-tcp-connections, 1-64].
    #[arg(long, value_name = "N")]
    max_tcp_per_ip: Option<usize>,
    /// Seconds between the SOA checks NOTIFYs may start for one secondary zone; NOTIFYs in
    /// between are folded into one check (0: no pacing) [default: 1].
    #[arg(long, value_name = "SECS")]
    notify_min_interval: Option<u64>,
    /// Sign the zone files at load with the keys in DIR (from `appnet dns keygen`), re-sign
    /// after each reload and before signatures expire. Without it zones are served as they are.
    #[arg(long, value_name = "DIR")]
    dnssec_keys: Option<PathBuf>,
    /// Validity of signatures made online (s, m, h, d, w); re-signed with a quarter left
    /// [default: 14d, at least 1h].
    #[arg(long, value_name = "DURATION")]
    dnssec_validity: Option<String>,
    /// Sign online with NSEC3 (RFC 9276: no salt, 0 iterations) instead of NSEC.
    #[arg(long)]
    nsec3: bool,
    /// Accept RFC 2136 updates of ZONE signed with the TSIG key KEYNAME (given with --tsig-key
    /// or --tsig-key-file); repeatable. Others are REFUSED.
    #[arg(long = "allow-update", value_name = "ZONE=KEYNAME")]
    allow_update: Vec<String>,
}

impl DnsOptions {
    /// Puts the flags given over `config` (the `[dns]` table): single values replace, the
    /// repeatable zones, secondaries, NOTIFY targets, keys and transfer rules are added.
    pub fn apply(self, config: &mut DnsConfig) -> anyhow::Result<()> {
        set(&mut config.listen, self.listen);
        config.zones.extend(self.zones.iter().map(|z| ZoneSource::from_arg(z)));
        for spec in &self.secondaries {
            config.add_secondary(spec).map_err(anyhow::Error::msg)?;
        }
        for spec in &self.notify {
            config.add_notify(spec).map_err(anyhow::Error::msg)?;
        }
        config.tsig_keys.extend(self.tsig_keys);
        config.tsig_key_files.extend(self.tsig_key_files);
        set(&mut config.journal_max_bytes, self.journal_max_bytes);
        set(&mut config.state_dir, self.state_dir.map(Some));
        config.allow_transfer.extend(self.allow_transfer);
        set(&mut config.udp_workers, self.workers);
        set(&mut config.max_udp_payload, self.max_udp_payload);
        set(&mut config.rrl.responses_per_second, self.rrl_rate);
        set(&mut config.rrl.slip, self.rrl_slip);
        config.rrl.enabled &= !self.no_rrl;
        config.rrl.exempt_loopback &= !self.rrl_loopback;
        set(&mut config.tcp_idle_timeout_secs, self.tcp_idle_timeout);
        set(&mut config.max_tcp_connections, self.max_tcp_connections);
        set(&mut config.max_tcp_per_ip, self.max_tcp_per_ip);
        set(&mut config.notify_min_interval_secs, self.notify_min_interval);
        set(&mut config.dnssec_keys, self.dnssec_keys.map(Some));
        if let Some(v) = &self.dnssec_validity {
            config.dnssec_validity_secs = super::dnssec::parse_duration_secs(v)?;
        }
        config.dnssec_nsec3 |= self.nsec3;
        config.allow_update.extend(self.allow_update);
        Ok(())
    }
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
    /// Also print the zone as loaded, one record a line with absolute names (like
    /// `named-checkzone -D`), to compare with other servers.
    #[arg(long)]
    print: bool,
}

/// Flags for `dns query`.
#[derive(Args, Debug)]
pub struct QueryArgs {
    /// The name to look up.
    name: String,
    /// Record type (A, AAAA, MX, TXT, NS, SOA, ANY, AXFR, IXFR=SERIAL, TYPE65534, ...).
    #[arg(default_value = "A")]
    qtype: String,
    /// Sign with TSIG (and require a signed answer), as NAME:ALG:SECRET or dig's ALG:NAME:SECRET.
    #[arg(short = 'y', long = "tsig-key", value_name = "KEY")]
    tsig_key: Option<String>,
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
        DnsCmd::Keygen(args) => super::dnssec::keygen(args),
        DnsCmd::Ds(args) => super::dnssec::ds(args),
        DnsCmd::Sign(args) => super::dnssec::sign(args),
        DnsCmd::Update(args) => super::dnssec::update(args).await,
    }
}

/// `FILE.state`, FILE being the zone file of the first zone that accepts updates: where
/// `dns serve --allow-update` keeps its state when no --state-dir is given.
fn default_update_state_dir(config: &DnsConfig) -> Option<PathBuf> {
    let (zone, _) = config.allow_update.first()?.split_once('=')?;
    let zone = to_lower(&from_text(zone).ok()?);
    let source = config.zones.iter().find(|z| {
        zone_name_for(z).ok().and_then(|n| from_text(&n).ok()).is_some_and(|n| to_lower(&n) == zone)
    })?;
    let mut dir = source.file.clone().into_os_string();
    dir.push(".state");
    Some(PathBuf::from(dir))
}

async fn serve(args: ServeArgs, ctx: &Context) -> anyhow::Result<()> {
    let mut config: DnsConfig = ctx.section("dns")?;
    args.options.apply(&mut config)?;
    if config.zones.is_empty() && config.secondaries.is_empty() {
        bail!("nothing to serve: give --zone FILE or --secondary ZONE=PRIMARY");
    }
    if !config.allow_update.is_empty() && config.state_dir.is_none() {
        // Accepted updates are durable by default, beside the zone file (as BIND keeps
        // FILE.jnl), never written into the zone file itself.
        if let Some(dir) = default_update_state_dir(&config) {
            println!("appnet dns: accepted updates are kept in {} (--state-dir to choose)", dir.display());
            config.state_dir = Some(dir);
        }
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
    if args.print {
        print!("{}", zone.to_text());
    }
    println!(
        "zone {}/IN: loaded serial {} ({} records)",
        zone.name(),
        zone.soa().serial,
        zone.record_count()
    );
    println!("OK");
    Ok(())
}

async fn query(args: QueryArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.timeout > 0.0 && args.timeout.is_finite(), "--timeout must be a positive number");
    let server = server_addr(&args.server).map_err(anyhow::Error::msg)?;
    let qname = from_text(&args.name).map_err(anyhow::Error::msg)?;
    let key = match &args.tsig_key {
        Some(spec) => Some(std::sync::Arc::new(Key::parse_spec(spec).map_err(anyhow::Error::msg)?)),
        None => None,
    };
    let ixfr_from = match args.qtype.to_ascii_uppercase().strip_prefix("IXFR=") {
        Some(n) => Some(n.parse::<u32>().with_context(|| format!("IXFR=SERIAL wants a number, got {n:?}"))?),
        None => None,
    };
    let qtype = match ixfr_from {
        Some(_) => code::IXFR,
        None => type_from_text(&args.qtype).map_err(anyhow::Error::msg)?,
    };
    let timeout = Duration::from_secs_f64(args.timeout);
    let started = Instant::now();
    let mut out = std::io::stdout().lock();
    if qtype == code::AXFR || qtype == code::IXFR {
        let ours = ixfr_from.map(|serial| soa_with_serial(&qname, serial));
        let records = match client::transfer(server, &qname, ours.as_ref(), timeout, key.as_ref()).await? {
            Transferred::UpToDate => {
                writeln!(out, ";; zone is up to date (serial {})", ixfr_from.unwrap_or_default())?;
                return Ok(());
            }
            transferred => transferred.into_wire_records(),
        };
        for r in &records {
            writeln!(out, "{}", record_text(&r.owner, r.rtype, r.ttl, &r.rdata))?;
        }
        writeln!(out, ";; {} records transferred from {server} in {:?}", records.len(), started.elapsed())?;
        return Ok(());
    }
    let opts = QueryOpts {
        tcp: args.tcp,
        edns: if args.no_edns { None } else { Some((args.bufsize, args.edns_version)) },
        recursion_desired: args.rd,
        timeout,
        tcp_on_truncation: !args.ignore_tc,
    };
    let answer = client::query_signed(server, &qname, qtype, opts, key.as_ref()).await?;
    let elapsed = started.elapsed();
    if args.short {
        let parsed = parse(&strip(&answer.bytes)).map_err(anyhow::Error::msg)?;
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
    if let Some(k) = &key {
        writeln!(out, ";; TSIG verified (key {}, {})", k.name_text(), k.algorithm.text())?;
    }
    write!(out, "{}", dig_text(&answer.bytes))?;
    writeln!(out, ";; Query time: {} msec", elapsed.as_millis())?;
    writeln!(out, ";; SERVER: {server}({})", if answer.used_tcp { "TCP" } else { "UDP" })?;
    writeln!(out, ";; MSG SIZE  rcvd: {}", answer.bytes.len())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_config_and_absent_flags_keep_it() {
        let mut config = DnsConfig { max_tcp_connections: 99, udp_workers: 2, ..DnsConfig::default() };
        let options = DnsOptions {
            workers: Some(4),
            no_rrl: true,
            journal_max_bytes: Some(1 << 20),
            secondaries: vec!["example.com=192.0.2.1 key xfr".into()],
            ..DnsOptions::default()
        };
        options.apply(&mut config).unwrap();
        assert_eq!((config.udp_workers, config.max_tcp_connections, config.rrl.enabled), (4, 99, false));
        assert_eq!(config.journal_max_bytes, 1 << 20);
        assert_eq!(config.secondaries[0].primary, SocketAddr::from(([192, 0, 2, 1], 53)));
        assert_eq!(config.server_keys, ["192.0.2.1:53 key xfr"]);
        let before = format!("{config:?}");
        DnsOptions::default().apply(&mut config).unwrap();
        assert_eq!(format!("{config:?}"), before);
        let bad = DnsOptions { notify: vec!["nowhere".into()], ..DnsOptions::default() };
        assert!(bad.apply(&mut config).is_err());
    }
}
