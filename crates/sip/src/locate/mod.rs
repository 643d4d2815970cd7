//! Locating another domain's SIP server (RFC 3263 §4): NAPTR → SRV → A/AAAA.
//!
//! This module is pure: it reads record data and decides what to ask next and in which order
//! to try the answers. The lookups themselves are in [`dns`] (through one resolver, as the
//! mail queue's MX lookup does). The proxy core never waits on them: it queues a
//! [`crate::proxy::Lookup`], the driver runs [`dns::locate`] and feeds the targets back.

pub mod dns;

use crate::wire::SipUri;
use std::net::{IpAddr, SocketAddr};

/// A transport protocol RFC 3263 can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// The NAPTR service field for this transport (RFC 3263 §4.1): `SIP+D2U`, `SIP+D2T`,
    /// `SIPS+D2T`.
    pub fn naptr_service(self) -> &'static str {
        match self {
            Transport::Udp => "SIP+D2U",
            Transport::Tcp => "SIP+D2T",
            Transport::Tls => "SIPS+D2T",
        }
    }

    /// The SRV prefix (`_sip._udp`, `_sip._tcp`, `_sips._tcp`).
    pub fn srv_prefix(self) -> &'static str {
        match self {
            Transport::Udp => "_sip._udp",
            Transport::Tcp => "_sip._tcp",
            Transport::Tls => "_sips._tcp",
        }
    }

    /// The default port (5060, or 5061 for TLS).
    pub fn default_port(self) -> u16 {
        if self == Transport::Tls { 5061 } else { 5060 }
    }

    /// From a `transport=` URI parameter.
    pub fn from_param(p: &str) -> Option<Transport> {
        match p.to_ascii_lowercase().as_str() {
            "udp" => Some(Transport::Udp),
            "tcp" => Some(Transport::Tcp),
            "tls" => Some(Transport::Tls),
            _ => None,
        }
    }
}

/// One place to send the request, in the order to try them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    pub transport: Transport,
}

/// A NAPTR record (RFC 3403 §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naptr {
    pub order: u16,
    pub preference: u16,
    pub flags: String,
    pub services: String,
    pub replacement: String,
}

/// An SRV record (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// What the URI says to do first (RFC 3263 §4.1, §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The host is an address: nothing to look up.
    Literal(Target),
    /// A port is given: only address records of `host` (§4.2).
    Addresses { host: String, port: u16, transport: Transport },
    /// A transport is given, no port: the SRV records of that transport (§4.2).
    Srv { host: String, transport: Transport },
    /// Neither: NAPTR first, then SRV for each supported transport, then A/AAAA (§4.1).
    Naptr { host: String },
}

/// The first step for a request to `uri` (a sips: URI needs TLS).
pub fn plan(uri: &SipUri) -> Plan {
    let sips = uri.scheme == "sips";
    let transport = uri.param("transport").and_then(Transport::from_param);
    let transport = if sips { Some(Transport::Tls) } else { transport };
    let host = uri.host.trim_start_matches('[').trim_end_matches(']').to_string();
    if let Ok(ip) = host.parse::<IpAddr>() {
        let t = transport.unwrap_or(Transport::Udp);
        return Plan::Literal(Target {
            addr: SocketAddr::new(ip, uri.port.unwrap_or(t.default_port())),
            transport: t,
        });
    }
    match (uri.port, transport) {
        (Some(port), t) => Plan::Addresses { host, port, transport: t.unwrap_or(Transport::Udp) },
        (None, Some(t)) => Plan::Srv { host, transport: t },
        (None, None) => Plan::Naptr { host },
    }
}

/// Reads NAPTR record data; `None` when it is malformed.
pub fn parse_naptr(rdata: &[u8]) -> Option<Naptr> {
    let order = u16::from_be_bytes([*rdata.first()?, *rdata.get(1)?]);
    let preference = u16::from_be_bytes([*rdata.get(2)?, *rdata.get(3)?]);
    let mut at = 4;
    let mut strings = Vec::new();
    for _ in 0..3 {
        let len = usize::from(*rdata.get(at)?);
        let s = rdata.get(at + 1..at + 1 + len)?;
        strings.push(String::from_utf8_lossy(s).into_owned());
        at += 1 + len;
    }
    let replacement = name_text(rdata.get(at..)?)?;
    let mut it = strings.into_iter();
    let flags = it.next()?;
    let services = it.next()?;
    Some(Naptr { order, preference, flags, services, replacement })
}

/// Reads SRV record data; `None` when it is malformed.
pub fn parse_srv(rdata: &[u8]) -> Option<Srv> {
    let n = |i: usize| Some(u16::from_be_bytes([*rdata.get(i)?, *rdata.get(i + 1)?]));
    Some(Srv { priority: n(0)?, weight: n(2)?, port: n(4)?, target: name_text(rdata.get(6..)?)? })
}

/// An uncompressed wire-format name as lowercase text without the final dot ("" for the root).
fn name_text(wire: &[u8]) -> Option<String> {
    let mut labels = Vec::new();
    let mut at = 0;
    loop {
        let len = usize::from(*wire.get(at)?);
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(wire.get(at + 1..at + 1 + len)?).to_ascii_lowercase());
        at += 1 + len;
        if at > 255 {
            return None;
        }
    }
    Some(labels.join("."))
}

/// The NAPTR records usable for SIP, best first (§4.1): flag `s`, a service of a transport
/// we `support` (only `SIPS+D2T` for a sips: URI), ordered by order then preference. Each
/// gives the SRV name to look up next and its transport.
pub fn select_naptr(records: &[Naptr], supported: &[Transport], sips: bool) -> Vec<(String, Transport)> {
    let mut usable: Vec<(&Naptr, Transport)> = records
        .iter()
        .filter(|r| r.flags.eq_ignore_ascii_case("s") && !r.replacement.is_empty())
        .filter_map(|r| {
            let t = [Transport::Udp, Transport::Tcp, Transport::Tls]
                .into_iter()
                .find(|t| r.services.eq_ignore_ascii_case(t.naptr_service()))?;
            (supported.contains(&t) && (!sips || t == Transport::Tls)).then_some((r, t))
        })
        .collect();
    usable.sort_by_key(|(r, _)| (r.order, r.preference));
    usable.into_iter().map(|(r, t)| (r.replacement.clone(), t)).collect()
}

/// SRV records in the order to try them (RFC 2782): lowest priority first; within a
/// priority, a weighted random order drawn with `pick(total) -> 0..=total`. A single record
/// with target "." means the service is not offered: empty.
pub fn order_srv(records: &[Srv], mut pick: impl FnMut(u32) -> u32) -> Vec<Srv> {
    if records.len() == 1 && records[0].target.is_empty() {
        return Vec::new();
    }
    let mut rest: Vec<Srv> = records.iter().filter(|r| !r.target.is_empty()).cloned().collect();
    rest.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(rest.len());
    while let Some(first) = rest.first() {
        let prio = first.priority;
        // Zero weights first, as RFC 2782 asks, so they get a small chance.
        let mut group: Vec<Srv> = Vec::new();
        rest.retain(|r| {
            if r.priority == prio {
                group.push(r.clone());
                false
            } else {
                true
            }
        });
        group.sort_by_key(|r| r.weight != 0);
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let draw = pick(total).min(total);
            let mut running = 0u32;
            let mut chosen = group.len() - 1;
            for (i, r) in group.iter().enumerate() {
                running += u32::from(r.weight);
                if running >= draw {
                    chosen = i;
                    break;
                }
            }
            out.push(group.remove(chosen));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire_name(s: &str) -> Vec<u8> {
        let mut v = Vec::new();
        for l in s.split('.').filter(|l| !l.is_empty()) {
            v.push(l.len() as u8);
            v.extend_from_slice(l.as_bytes());
        }
        v.push(0);
        v
    }

    fn naptr_rdata(order: u16, pref: u16, flags: &str, service: &str, repl: &str) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&order.to_be_bytes());
        v.extend_from_slice(&pref.to_be_bytes());
        for s in [flags, service, ""] {
            v.push(s.len() as u8);
            v.extend_from_slice(s.as_bytes());
        }
        v.extend(wire_name(repl));
        v
    }

    #[test]
    fn plans_follow_the_uri() {
        let p = |s: &str| plan(&SipUri::parse(s).unwrap());
        assert!(matches!(p("sip:bob@127.0.0.9"), Plan::Literal(Target { transport: Transport::Udp, .. })));
        assert_eq!(
            p("sip:bob@umass.edu:5070"),
            Plan::Addresses { host: "umass.edu".into(), port: 5070, transport: Transport::Udp }
        );
        assert_eq!(
            p("sip:bob@umass.edu;transport=tcp"),
            Plan::Srv { host: "umass.edu".into(), transport: Transport::Tcp }
        );
        assert_eq!(
            p("sips:bob@umass.edu"),
            Plan::Srv { host: "umass.edu".into(), transport: Transport::Tls }
        );
        assert_eq!(p("sip:bob@umass.edu"), Plan::Naptr { host: "umass.edu".into() });
    }

    #[test]
    fn naptr_selection_by_order_preference_and_support() {
        let recs: Vec<Naptr> = [
            naptr_rdata(20, 10, "s", "SIP+D2U", "_sip._udp.umass.edu"),
            naptr_rdata(10, 20, "s", "SIP+D2T", "_sip._tcp.umass.edu"),
            naptr_rdata(10, 10, "s", "SIPS+D2T", "_sips._tcp.umass.edu"),
            naptr_rdata(5, 10, "s", "E2U+sip", "x.umass.edu"),
            naptr_rdata(5, 10, "u", "SIP+D2U", "y.umass.edu"),
        ]
        .iter()
        .map(|r| parse_naptr(r).unwrap())
        .collect();
        let all = [Transport::Udp, Transport::Tcp, Transport::Tls];
        let sel = select_naptr(&recs, &all, false);
        assert_eq!(
            sel,
            vec![
                ("_sips._tcp.umass.edu".to_string(), Transport::Tls),
                ("_sip._tcp.umass.edu".to_string(), Transport::Tcp),
                ("_sip._udp.umass.edu".to_string(), Transport::Udp),
            ]
        );
        assert_eq!(
            select_naptr(&recs, &[Transport::Udp], false),
            vec![("_sip._udp.umass.edu".into(), Transport::Udp)]
        );
        assert_eq!(select_naptr(&recs, &all, true).len(), 1, "sips: only SIPS+D2T");
        assert!(parse_naptr(&[0, 1, 0]).is_none());
        assert!(parse_naptr(&naptr_rdata(1, 1, "s", "SIP+D2U", "a")[..9]).is_none());
    }

    #[test]
    fn srv_by_priority_then_weight() {
        let srv =
            |priority, weight, target: &str| Srv { priority, weight, port: 5060, target: target.into() };
        let recs = vec![srv(20, 0, "backup"), srv(10, 60, "a"), srv(10, 40, "b"), srv(10, 0, "c")];
        // Always drawing the top of the range picks the last record in the running sum.
        let order: Vec<String> = order_srv(&recs, |total| total).into_iter().map(|s| s.target).collect();
        assert_eq!(order, ["b", "a", "c", "backup"]);
        // Drawing 0 picks the zero-weight record first.
        let order: Vec<String> = order_srv(&recs, |_| 0).into_iter().map(|s| s.target).collect();
        assert_eq!(order, ["c", "a", "b", "backup"]);
        assert!(order_srv(&[srv(0, 0, "")], |t| t).is_empty(), "target . means no service");
        let mut rd = Vec::new();
        rd.extend_from_slice(&[0, 10, 0, 5, 0x13, 0xc4]);
        rd.extend(wire_name("sip.umass.edu"));
        assert_eq!(
            parse_srv(&rd),
            Some(Srv { priority: 10, weight: 5, port: 5060, target: "sip.umass.edu".into() })
        );
        assert!(parse_srv(&rd[..5]).is_none());
    }
}
