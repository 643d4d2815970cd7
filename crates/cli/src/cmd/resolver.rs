//! `appnet dns resolver` (the recursive resolver service) and `appnet dns query --trace`
//! (iterative resolution done by the command itself, printed step by step).

use super::set;
use crate::context::Context;
use anyhow::Context as _;
use appnet_dns::wire::name::from_text;
use appnet_dns::wire::rrtype::type_from_text;
use appnet_dns::wire::zonefile::record_text;
use appnet_netkit::{Service, Shutdown};
use appnet_resolver::cache::Outcome;
use appnet_resolver::driver::Resolver;
use appnet_resolver::server::settings_from;
use appnet_resolver::transport::NetTransport;
use appnet_resolver::{ResolverConfig, ResolverServer};
use clap::Args;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Flags for `dns resolver`.
#[derive(Args, Debug)]
pub struct ResolverArgs {
    #[command(flatten)]
    options: ResolverOptions,
}

/// The service flags of `dns resolver`; each overrides the `[resolver]` table of --config.
#[derive(Args, Debug, Default)]
pub struct ResolverOptions {
    /// Address for clients, UDP and TCP [default: 127.0.0.1:8053].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Root hints file (named.root format) [default: the real root servers].
    #[arg(long, value_name = "FILE")]
    root_hints: Option<PathBuf>,
    /// Port the authoritative servers listen on [default: 53; the lab uses 10053].
    #[arg(long, value_name = "N")]
    upstream_port: Option<u16>,
    /// Forward all questions to this recursive resolver instead of iterating (like a home router).
    #[arg(long, value_name = "ADDR")]
    forward: Option<SocketAddr>,
    /// Client network allowed to recurse (repeatable) [default: 127.0.0.0/8 and ::1].
    #[arg(long = "allow", value_name = "PREFIX")]
    allow: Vec<String>,
    /// Queries per second per client (0 = unlimited; loopback is exempt) [default: 200].
    #[arg(long, value_name = "QPS")]
    rate_limit: Option<u32>,
    /// Randomise letter case in upstream queries (DNS 0x20) against spoofing.
    #[arg(long)]
    use_0x20: bool,
    /// Extra zone answered NXDOMAIN locally (repeatable), besides the built-in special-use ones.
    #[arg(long = "local-zone", value_name = "ZONE")]
    local_zones: Vec<String>,
    /// Memory for cached answers and delegations, e.g. 32MiB, 512KiB; least recently used
    /// entries go past it [default: 32MiB].
    #[arg(long, value_name = "SIZE", value_parser = appnet_netkit::units::parse_size_usize)]
    cache_size: Option<usize>,
    /// Largest TTL (seconds) kept in the cache and given to clients [default: 86400].
    #[arg(long, value_name = "SECS")]
    max_ttl: Option<u32>,
    /// Largest TTL (seconds) for negative answers (NXDOMAIN, NODATA) [default: 3600].
    #[arg(long, value_name = "SECS")]
    max_negative_ttl: Option<u32>,
    /// Questions being resolved at once in all; more get SERVFAIL [default: 2048].
    #[arg(long, value_name = "N")]
    max_in_flight: Option<usize>,
    /// Upstream queries in flight to one zone at once; more get SERVFAIL (0 = no limit) [default: 64].
    #[arg(long, value_name = "N")]
    max_in_flight_per_zone: Option<usize>,
    /// Questions being resolved at once for one client address (IPv6: per /64); its further
    /// uncached questions get SERVFAIL (0 = no limit) [default: 32].
    #[arg(long, value_name = "N")]
    max_in_flight_per_client: Option<usize>,
    /// Upstream queries one question may cause, name-server lookups and retries included;
    /// past it SERVFAIL [default: 48].
    #[arg(long, value_name = "N")]
    max_queries_per_question: Option<usize>,
    /// Client TCP connections at once [default: 256].
    #[arg(long, value_name = "N")]
    max_tcp_connections: Option<usize>,
    /// Client TCP connections from one address (0 = an eighth of --max-tcp-connections, 1-64) [default: 0].
    #[arg(long, value_name = "N")]
    max_tcp_per_ip: Option<usize>,
    /// Seconds a TCP client has for each whole query [default: 10].
    #[arg(long, value_name = "SECS")]
    tcp_idle_timeout: Option<u64>,
    /// Validate answers with DNSSEC: AD on secure answers, SERVFAIL with an Extended DNS Error
    /// on bogus ones; CD=1 from a client returns the data unvalidated.
    #[arg(long)]
    dnssec: bool,
    /// Trust-anchor file: DS and/or DNSKEY records in zone-file format (repeatable; replaces
    /// the built-in IANA root anchors) [default: root KSK-2017 and KSK-2024].
    #[arg(long = "trust-anchor", value_name = "FILE")]
    trust_anchors: Vec<PathBuf>,
}

impl ResolverOptions {
    /// Puts the flags given over `config` (the `[resolver]` table); absent flags keep its
    /// values. `--allow` replaces the configured list, `--local-zone` adds to it.
    pub fn apply(self, config: &mut ResolverConfig) {
        set(&mut config.listen, self.listen);
        set(&mut config.root_hints, self.root_hints.map(Some));
        set(&mut config.upstream_port, self.upstream_port);
        set(&mut config.forward, self.forward.map(Some));
        if !self.allow.is_empty() {
            config.allow = self.allow;
        }
        set(&mut config.rate_limit_qps, self.rate_limit);
        config.use_0x20 |= self.use_0x20;
        set(&mut config.cache_size, self.cache_size);
        set(&mut config.max_ttl, self.max_ttl);
        set(&mut config.max_negative_ttl, self.max_negative_ttl);
        set(&mut config.max_in_flight, self.max_in_flight);
        set(&mut config.max_in_flight_per_zone, self.max_in_flight_per_zone);
        set(&mut config.max_in_flight_per_client, self.max_in_flight_per_client);
        set(&mut config.max_queries_per_question, self.max_queries_per_question);
        set(&mut config.max_tcp_connections, self.max_tcp_connections);
        set(&mut config.max_tcp_per_ip, self.max_tcp_per_ip);
        set(&mut config.tcp_idle_timeout_secs, self.tcp_idle_timeout);
        config.extra_local_zones.extend(self.local_zones);
        config.dnssec |= self.dnssec || !self.trust_anchors.is_empty();
        if !self.trust_anchors.is_empty() {
            config.trust_anchors = self.trust_anchors;
        }
    }
}

/// Runs the resolver service until Ctrl-C.
pub async fn serve(args: ResolverArgs, ctx: &Context) -> anyhow::Result<()> {
    let mut config: ResolverConfig = ctx.section("resolver")?;
    args.options.apply(&mut config);
    let listen = config.listen;
    let mode = if config.forward.is_some() { "forwarding" } else { "iterative" };
    let server = ResolverServer::bind(config)
        .await
        .with_context(|| format!("cannot start the resolver on {listen}"))?;
    println!("appnet dns resolver: {mode} resolver on {} (UDP and TCP; Ctrl-C to stop)", server.local_addr());
    let _ = std::io::stdout().flush();
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    server.run(shutdown).await.map_err(|e| anyhow::anyhow!(e))
}

/// Resolves `name`/`qtype` iteratively from the root hints and prints each step, numbered.
pub async fn trace(
    name: &str,
    qtype: &str,
    root_hints: Option<PathBuf>,
    upstream_port: u16,
) -> anyhow::Result<()> {
    let qtype_code = type_from_text(qtype).map_err(|e| anyhow::anyhow!(e))?;
    let qname = from_text(name).map_err(|e| anyhow::anyhow!(e))?;
    let config = ResolverConfig { root_hints, upstream_port, ..ResolverConfig::default() };
    let resolver = Resolver::new(settings_from(&config)?, NetTransport::default());
    println!(";; resolving {name} {} iteratively, starting at the root servers", qtype.to_uppercase());
    let (answer, steps) = resolver.resolve_traced(&qname, qtype_code).await;
    for (i, step) in steps.iter().enumerate() {
        println!("{:>2}. {step}", i + 1);
    }
    match answer.outcome {
        Outcome::Positive => {
            println!(";; answer:");
            for r in &answer.records {
                println!("{}", record_text(&r.owner, r.rtype, r.ttl, &r.rdata));
            }
        }
        Outcome::NxDomain => println!(";; NXDOMAIN: {name} does not exist"),
        Outcome::NoData => println!(";; NODATA: {name} has no {} records", qtype.to_uppercase()),
        Outcome::ServFail => anyhow::bail!("SERVFAIL: resolution of {name} failed (see the steps above)"),
    }
    let sent = resolver.counters().upstream_queries.load(std::sync::atomic::Ordering::Relaxed);
    println!(";; {sent} queries sent");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_config_and_absent_flags_keep_it() {
        let mut config = ResolverConfig {
            upstream_port: 10053,
            max_ttl: 60,
            allow: vec!["10.0.0.0/8".into()],
            ..Default::default()
        };
        let zones = config.extra_local_zones.len();
        let options = ResolverOptions {
            cache_size: Some(1 << 20),
            forward: Some(SocketAddr::from(([192, 0, 2, 53], 53))),
            local_zones: vec!["corp.".into()],
            ..ResolverOptions::default()
        };
        options.apply(&mut config);
        assert_eq!((config.cache_size, config.upstream_port, config.max_ttl), (1 << 20, 10053, 60));
        assert_eq!(config.forward, Some(SocketAddr::from(([192, 0, 2, 53], 53))));
        assert_eq!(config.allow, ["10.0.0.0/8"]);
        assert_eq!(config.extra_local_zones.len(), zones + 1);
        let before = format!("{config:?}");
        ResolverOptions::default().apply(&mut config);
        assert_eq!(format!("{config:?}"), before);
    }
}
