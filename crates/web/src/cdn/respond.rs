//! DNS request bytes → reply bytes for the CDN zone, sans-IO, on appnet-dns's wire module:
//! replica names get an A (or AAAA) record of the nearest healthy replica with a short TTL,
//! the apex answers SOA and NS (with glue), other names in the zone are NXDOMAIN, names
//! outside it REFUSED. Never panics on any input.

use super::config::CdnConfig;
use super::policy::{Health, Table};
use appnet_dns::wire::name::{NameBuf, from_text, is_at_or_below, to_lower};
use appnet_dns::wire::query::{self, BadQuery, opcode};
use appnet_dns::wire::response::{self, OptOut, Question, Reply, RrRef, rcode, udp_limit};
use appnet_dns::wire::rrtype::{CLASS_ANY, CLASS_IN, code, pack_rdata};
use std::net::IpAddr;

/// Our EDNS UDP payload size.
const PAYLOAD: u16 = 1232;

/// The zone's fixed data, prepared once.
#[derive(Debug, Clone)]
pub struct CdnZone {
    apex: NameBuf,
    names: Vec<NameBuf>,
    soa: Vec<u8>,
    ns: Vec<u8>,
    glue: Vec<(NameBuf, u16, Vec<u8>)>,
    ttl: u32,
}

/// A bad name in the configuration.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ZoneError(String);

impl CdnZone {
    /// Prepares the zone data of `cfg`.
    pub fn new(cfg: &CdnConfig) -> Result<CdnZone, ZoneError> {
        let apex = to_lower(&from_text(&cfg.zone).map_err(ZoneError)?);
        let mut names = Vec::new();
        for n in &cfg.names {
            let n = to_lower(&from_text(n).map_err(ZoneError)?);
            if !is_at_or_below(&n, &apex) {
                return Err(ZoneError(format!("{n:?} is not inside the zone {}", cfg.zone)));
            }
            names.push(n);
        }
        let mut ns = Vec::new();
        let mut glue = Vec::new();
        for (name, addr) in &cfg.nameservers {
            let n = to_lower(&from_text(name).map_err(ZoneError)?);
            pack_rdata(&mut ns, &n);
            let (t, rd) = addr_rdata(*addr);
            let mut packed = Vec::new();
            pack_rdata(&mut packed, &rd);
            glue.push((n, t, packed));
        }
        let mname = match cfg.nameservers.first() {
            Some((n, _)) => to_lower(&from_text(n).map_err(ZoneError)?),
            None => from_text(&format!("ns.{}", cfg.zone)).map_err(ZoneError)?,
        };
        let rname = from_text(&format!("hostmaster.{}", cfg.zone)).map_err(ZoneError)?;
        let mut soa_rd = Vec::new();
        soa_rd.extend_from_slice(&mname);
        soa_rd.extend_from_slice(&rname);
        for v in [1u32, 3600, 600, 86_400, cfg.ttl] {
            soa_rd.extend_from_slice(&v.to_be_bytes());
        }
        let mut soa = Vec::new();
        pack_rdata(&mut soa, &soa_rd);
        Ok(CdnZone { apex, names, soa, ns, glue, ttl: cfg.ttl })
    }

    fn is_replica_name(&self, qname: &[u8]) -> bool {
        if self.names.is_empty() {
            qname != &self.apex[..]
        } else {
            self.names.iter().any(|n| &n[..] == qname)
        }
    }
}

fn addr_rdata(addr: IpAddr) -> (u16, Vec<u8>) {
    match addr {
        IpAddr::V4(v4) => (code::A, v4.octets().to_vec()),
        IpAddr::V6(v6) => (code::AAAA, v6.octets().to_vec()),
    }
}

/// What happened, for counters and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// A replica was handed out (index into the table's replicas).
    Replica(usize),
    /// Every candidate replica is down: SERVFAIL.
    NoReplica,
    /// Any other reply (apex data, NXDOMAIN, NODATA, REFUSED, errors).
    Other,
}

/// Answers one request from `peer` (the querying resolver). `tcp` lifts the UDP size limit.
/// `None`: nothing worth answering.
pub fn answer(
    zone: &CdnZone,
    table: &Table,
    health: &[Health],
    packet: &[u8],
    peer: IpAddr,
    tcp: bool,
) -> Option<(Vec<u8>, Answered)> {
    let q = match query::parse(packet) {
        Ok(q) => q,
        Err(BadQuery::Ignore) => return None,
        Err(BadQuery::FormErr(h)) => {
            let r = Reply { rcode: rcode::FORMERR, ..Default::default() };
            return Some((response::write(h, None, None, &r, 512, Vec::new()), Answered::Other));
        }
        Err(BadQuery::NotImp(h)) => {
            let r = Reply { rcode: rcode::NOTIMP, ..Default::default() };
            return Some((response::write(h, None, None, &r, 512, Vec::new()), Answered::Other));
        }
    };
    let header = q.header();
    let question = Some(Question { qname: q.qname, qtype: q.qtype, qclass: q.qclass });
    let opt = q.edns.map(|_| OptOut { payload: PAYLOAD });
    let limit = if tcp { 65_535 } else { udp_limit(q.edns, PAYLOAD) };
    let reply_with = |reply: &Reply<'_>, what: Answered| {
        Some((response::write(header, question, opt, reply, limit, Vec::new()), what))
    };
    if q.edns.is_some_and(|e| e.version != 0) {
        return reply_with(&Reply { rcode: rcode::BADVERS, ..Default::default() }, Answered::Other);
    }
    if q.opcode != opcode::QUERY {
        return reply_with(&Reply { rcode: rcode::NOTIMP, ..Default::default() }, Answered::Other);
    }
    let qname = to_lower(q.qname);
    if (q.qclass != CLASS_IN && q.qclass != CLASS_ANY) || !is_at_or_below(&qname, &zone.apex) {
        return reply_with(&Reply { rcode: rcode::REFUSED, ..Default::default() }, Answered::Other);
    }
    let soa = [RrRef { owner: &zone.apex, rtype: code::SOA, ttl: zone.ttl, rdata: &zone.soa }];
    let nodata = Reply { aa: true, authority: &soa, ..Default::default() };
    if zone.is_replica_name(&qname) {
        let Some(i) = table.choose(peer, health) else {
            return reply_with(&Reply { rcode: rcode::SERVFAIL, ..Default::default() }, Answered::NoReplica);
        };
        let (rtype, rd) = addr_rdata(table.replicas()[i].addr);
        if q.qtype != rtype && q.qtype != code::ANY {
            return reply_with(&nodata, Answered::Other);
        }
        let mut packed = Vec::new();
        pack_rdata(&mut packed, &rd);
        let ans = [RrRef { owner: q.qname, rtype, ttl: zone.ttl, rdata: &packed }];
        return reply_with(&Reply { aa: true, answer: &ans, ..Default::default() }, Answered::Replica(i));
    }
    if qname[..] == zone.apex[..] {
        let ns = [RrRef { owner: &zone.apex, rtype: code::NS, ttl: 3600, rdata: &zone.ns }];
        let glue: Vec<RrRef<'_>> =
            zone.glue.iter().map(|(n, t, rd)| RrRef { owner: n, rtype: *t, ttl: 3600, rdata: rd }).collect();
        return match q.qtype {
            code::SOA => reply_with(&Reply { aa: true, answer: &soa, ..Default::default() }, Answered::Other),
            code::NS if !zone.ns.is_empty() => reply_with(
                &Reply { aa: true, answer: &ns, additional: &glue, ..Default::default() },
                Answered::Other,
            ),
            _ => reply_with(&nodata, Answered::Other),
        };
    }
    // Glue names of in-zone name servers.
    if let Some((_, t, rd)) = zone.glue.iter().find(|(n, _, _)| n[..] == qname[..]) {
        if q.qtype == *t || q.qtype == code::ANY {
            let ans = [RrRef { owner: q.qname, rtype: *t, ttl: 3600, rdata: rd }];
            return reply_with(&Reply { aa: true, answer: &ans, ..Default::default() }, Answered::Other);
        }
        return reply_with(&nodata, Answered::Other);
    }
    reply_with(
        &Reply { rcode: rcode::NXDOMAIN, aa: true, authority: &soa, ..Default::default() },
        Answered::Other,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdn::config::{Network, Replica};
    use appnet_dns::wire::message;

    fn setup() -> (CdnZone, Table) {
        let cfg = CdnConfig {
            replicas: vec![
                Replica { name: "east".into(), addr: "127.0.20.1".parse().unwrap(), check: None },
                Replica { name: "west".into(), addr: "127.0.20.2".parse().unwrap(), check: None },
            ],
            networks: vec![
                Network { prefix: "127.0.4.1/32".into(), replicas: vec!["east".into()] },
                Network { prefix: "127.0.4.2/32".into(), replicas: vec!["west".into()] },
            ],
            nameservers: vec![("ns1.akamai.net".into(), "127.0.3.50".parse().unwrap())],
            ..CdnConfig::default()
        };
        (CdnZone::new(&cfg).unwrap(), Table::new(&cfg).unwrap())
    }

    fn ask(name: &str, qtype: u16, from: &str, health: &[Health]) -> String {
        let (zone, table) = setup();
        let q =
            message::build_query(7, opcode::QUERY, &from_text(name).unwrap(), qtype, false, Some((1232, 0)));
        let (bytes, _) = answer(&zone, &table, health, &q, from.parse().unwrap(), false).expect("a reply");
        message::dig_text(&bytes)
    }

    #[test]
    fn two_resolvers_get_different_replicas_with_a_short_ttl() {
        let up = [Health::default(); 2];
        let a = ask("a128.g.akamai.net", code::A, "127.0.4.1", &up);
        let b = ask("A128.G.AKAMAI.NET", code::A, "127.0.4.2", &up);
        assert!(a.contains("127.0.20.1") && a.contains("20"), "{a}");
        assert!(b.contains("127.0.20.2"), "{b}");
    }

    #[test]
    fn dead_replica_is_not_handed_out_and_all_dead_is_servfail() {
        let mut h = [Health::default(); 2];
        h[0].record(false, 1, 1);
        assert!(ask("a128.g.akamai.net", code::A, "127.0.4.1", &h).contains("127.0.20.2"));
        h[1].record(false, 1, 1);
        assert!(ask("a128.g.akamai.net", code::A, "127.0.4.1", &h).contains("SERVFAIL"));
    }

    #[test]
    fn apex_other_names_and_outside_names() {
        let up = [Health::default(); 2];
        assert!(ask("akamai.net", code::SOA, "127.0.0.1", &up).contains("SOA"));
        assert!(ask("akamai.net", code::NS, "127.0.0.1", &up).contains("ns1.akamai.net"));
        assert!(ask("nothing.akamai.net", code::A, "127.0.0.1", &up).contains("NXDOMAIN"));
        assert!(ask("www.example.com", code::A, "127.0.0.1", &up).contains("REFUSED"));
        let aaaa = ask("a128.g.akamai.net", code::AAAA, "127.0.4.1", &up);
        assert!(aaaa.contains("NOERROR") && !aaaa.contains("127.0.20.1"), "{aaaa}");
    }

    #[test]
    fn junk_never_panics() {
        let (zone, table) = setup();
        let up = [Health::default(); 2];
        let mut x: u32 = 12345;
        for len in 0..300usize {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = answer(&zone, &table, &up, &bytes, "127.0.0.1".parse().unwrap(), false);
        }
    }
}
