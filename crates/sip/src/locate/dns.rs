//! The lookups of RFC 3263 §4 through one recursive resolver (`--resolver`), with
//! appnet-dns's stub client: NAPTR, then SRV, then A and AAAA. The decisions are the pure
//! functions of the parent module.

use super::{Plan, Srv, Target, Transport, order_srv, parse_naptr, parse_srv, plan, select_naptr};
use crate::wire::SipUri;
use appnet_dns::client::{QueryOpts, query};
use appnet_dns::wire::message::{Parsed, Record, parse};
use appnet_dns::wire::name::{from_text, to_text};
use appnet_dns::wire::rrtype::code;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

const NAPTR: u16 = 35;
/// At most this many SRV names and address lookups per location (a hostile zone cannot make
/// one request cost hundreds of queries).
const MAX_SRV_NAMES: usize = 4;
const MAX_HOSTS: usize = 8;

/// Why no server was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocateError {
    #[error("not a SIP URI: {0}")]
    BadUri(String),
    /// The domain has no SIP server we can reach (404/604 territory).
    #[error("no SIP server found for {0}")]
    NotFound(String),
    /// The resolver failed or timed out (try later: 503).
    #[error("{0}")]
    Resolver(String),
}

/// The servers to try for `uri`, in order, keeping only transports in `supported`.
pub async fn locate(
    resolver: SocketAddr,
    uri: &str,
    supported: &[Transport],
    timeout: Duration,
) -> Result<Vec<Target>, LocateError> {
    locate_traced(resolver, uri, supported, timeout, &mut Vec::new()).await
}

/// [`locate`], writing each query and its answer to `steps` ("NAPTR umass.edu → ...").
pub async fn locate_traced(
    resolver: SocketAddr,
    uri: &str,
    supported: &[Transport],
    timeout: Duration,
    steps: &mut Vec<String>,
) -> Result<Vec<Target>, LocateError> {
    let trace = std::sync::Mutex::new(std::mem::take(steps));
    let result = locate_inner(resolver, uri, supported, timeout, &trace).await;
    *steps = trace.into_inner().unwrap_or_else(|p| p.into_inner());
    result
}

type Trace = std::sync::Mutex<Vec<String>>;

async fn locate_inner(
    resolver: SocketAddr,
    uri: &str,
    supported: &[Transport],
    timeout: Duration,
    trace: &Trace,
) -> Result<Vec<Target>, LocateError> {
    let parsed = SipUri::parse(uri).ok_or_else(|| LocateError::BadUri(uri.to_string()))?;
    let sips = parsed.scheme == "sips";
    let targets = match plan(&parsed) {
        Plan::Literal(t) => vec![t],
        Plan::Addresses { host, port, transport } => {
            let ips = addresses(resolver, &host, &[], timeout, trace).await?;
            ips.into_iter().map(|ip| Target { addr: SocketAddr::new(ip, port), transport }).collect()
        }
        Plan::Srv { host, transport } => {
            let name = format!("{}.{host}", transport.srv_prefix());
            match srv_targets(resolver, &name, transport, timeout, trace).await? {
                t if !t.is_empty() => t,
                _ => fallback(resolver, &host, transport, timeout, trace).await?,
            }
        }
        Plan::Naptr { host } => {
            let answer = ask(resolver, &host, NAPTR, timeout, trace).await?;
            let naptrs: Vec<_> = answer
                .answer
                .iter()
                .filter(|r| r.rtype == NAPTR)
                .filter_map(|r| parse_naptr(&r.rdata))
                .collect();
            let mut srv_names = select_naptr(&naptrs, supported, sips);
            if naptrs.is_empty() {
                // No NAPTR (§4.1): SRV for each transport we support, in our order.
                srv_names = supported
                    .iter()
                    .filter(|t| !sips || **t == Transport::Tls)
                    .map(|t| (format!("{}.{host}", t.srv_prefix()), *t))
                    .collect();
            }
            let mut out = Vec::new();
            for (name, t) in srv_names.into_iter().take(MAX_SRV_NAMES) {
                out.extend(srv_targets(resolver, &name, t, timeout, trace).await?);
                if !out.is_empty() && !naptrs.is_empty() {
                    break; // the best NAPTR that yields servers decides (§4.1)
                }
            }
            if out.is_empty() && naptrs.is_empty() {
                let t = if sips { Transport::Tls } else { Transport::Udp };
                out = fallback(resolver, &host, t, timeout, trace).await?;
            }
            out
        }
    };
    let targets: Vec<Target> = targets.into_iter().filter(|t| supported.contains(&t.transport)).collect();
    if targets.is_empty() {
        return Err(LocateError::NotFound(parsed.host));
    }
    Ok(targets)
}

/// No SRV records: the host's addresses on the transport's default port (§4.2).
async fn fallback(
    resolver: SocketAddr,
    host: &str,
    transport: Transport,
    timeout: Duration,
    trace: &Trace,
) -> Result<Vec<Target>, LocateError> {
    let ips = addresses(resolver, host, &[], timeout, trace).await?;
    Ok(ips
        .into_iter()
        .map(|ip| Target { addr: SocketAddr::new(ip, transport.default_port()), transport })
        .collect())
}

async fn srv_targets(
    resolver: SocketAddr,
    name: &str,
    transport: Transport,
    timeout: Duration,
    trace: &Trace,
) -> Result<Vec<Target>, LocateError> {
    let answer = ask(resolver, name, code::SRV, timeout, trace).await?;
    let records: Vec<Srv> =
        answer.answer.iter().filter(|r| r.rtype == code::SRV).filter_map(|r| parse_srv(&r.rdata)).collect();
    let ordered = order_srv(&records, |total| rand::random_range(0..=total));
    let mut out = Vec::new();
    for srv in ordered.into_iter().take(MAX_HOSTS) {
        // Addresses from the additional section save a query (RFC 2782).
        let ips =
            addresses(resolver, &srv.target, &answer.additional, timeout, trace).await.unwrap_or_default();
        out.extend(ips.into_iter().map(|ip| Target { addr: SocketAddr::new(ip, srv.port), transport }));
    }
    Ok(out)
}

/// A and AAAA of `host` (from `known` records when present there).
async fn addresses(
    resolver: SocketAddr,
    host: &str,
    known: &[Record],
    timeout: Duration,
    trace: &Trace,
) -> Result<Vec<IpAddr>, LocateError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let from_known = addresses_in(Some(host), known);
    if !from_known.is_empty() {
        return Ok(from_known);
    }
    let mut out = addresses_in(None, &ask(resolver, host, code::A, timeout, trace).await?.answer);
    if let Ok(v6) = ask(resolver, host, code::AAAA, timeout, trace).await {
        out.extend(addresses_in(None, &v6.answer));
    }
    Ok(out)
}

/// Address records in `records`: all of them in a direct answer (`owner` None; the answer
/// may have followed a CNAME), only `owner`'s in an additional section.
fn addresses_in(owner: Option<&str>, records: &[Record]) -> Vec<IpAddr> {
    records
        .iter()
        .filter(|r| owner.is_none_or(|h| to_text(&r.owner).trim_end_matches('.').eq_ignore_ascii_case(h)))
        .filter_map(|r| match (r.rtype, r.rdata.len()) {
            (code::A, 4) => Some(IpAddr::V4(Ipv4Addr::new(r.rdata[0], r.rdata[1], r.rdata[2], r.rdata[3]))),
            (code::AAAA, 16) => <[u8; 16]>::try_from(&r.rdata[..]).ok().map(IpAddr::from),
            _ => None,
        })
        .fold(Vec::new(), |mut v, ip| {
            if !v.contains(&ip) {
                v.push(ip);
            }
            v
        })
}

async fn ask(
    resolver: SocketAddr,
    name: &str,
    qtype: u16,
    timeout: Duration,
    trace: &Trace,
) -> Result<Parsed, LocateError> {
    let result = ask_once(resolver, name, qtype, timeout).await;
    let type_name = match qtype {
        NAPTR => "NAPTR",
        code::SRV => "SRV",
        code::AAAA => "AAAA",
        _ => "A",
    };
    let said = match &result {
        Ok(p) if p.rcode == 3 => "no such name".to_string(),
        Ok(p) => {
            let recs: Vec<String> = p.answer.iter().filter(|r| r.rtype == qtype).map(record_text).collect();
            if recs.is_empty() { "no records".to_string() } else { recs.join("; ") }
        }
        Err(e) => e.to_string(),
    };
    if let Ok(mut t) = trace.lock() {
        t.push(format!("{type_name} {name} → {said}"));
    }
    result
}

/// A record's data as zone-file text, for the trace.
fn record_text(r: &Record) -> String {
    match r.rtype {
        NAPTR => parse_naptr(&r.rdata)
            .map(|n| {
                format!("{} {} \"{}\" \"{}\" {}", n.order, n.preference, n.flags, n.services, n.replacement)
            })
            .unwrap_or_default(),
        code::SRV => parse_srv(&r.rdata)
            .map(|s| format!("{} {} {} {}", s.priority, s.weight, s.port, s.target))
            .unwrap_or_default(),
        _ => addresses_in(None, std::slice::from_ref(r)).iter().map(|ip| ip.to_string()).collect(),
    }
}

async fn ask_once(
    resolver: SocketAddr,
    name: &str,
    qtype: u16,
    timeout: Duration,
) -> Result<Parsed, LocateError> {
    let qname = from_text(name).map_err(|e| LocateError::BadUri(format!("{name}: {e}")))?;
    let opts = QueryOpts { recursion_desired: true, timeout, ..QueryOpts::default() };
    let answer = query(resolver, &qname, qtype, opts).await.map_err(|e| {
        LocateError::Resolver(format!("cannot ask the resolver {resolver} about {name}: {e}"))
    })?;
    let parsed = parse(&answer.bytes)
        .map_err(|e| LocateError::Resolver(format!("bad DNS answer about {name}: {e}")))?;
    match parsed.rcode {
        0 | 3 => Ok(parsed),
        rc => Err(LocateError::Resolver(format!("resolver {resolver} answered rcode {rc} about {name}"))),
    }
}
