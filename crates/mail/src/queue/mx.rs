//! Where mail for a domain goes (RFC 5321 §5.1): its MX records by preference (all of them,
//! equal preferences in random order), else the domain's own address records; a "null MX"
//! (RFC 7505) or a domain that does not exist fails for good. Questions go to one resolver.

use appnet_dns::client::{QueryOpts, query};
use appnet_dns::wire::message::{Parsed, parse};
use appnet_dns::wire::name::{from_text, to_text};
use appnet_dns::wire::rrtype::code;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Why no destination was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MxError {
    /// Try later (the resolver failed or timed out).
    #[error("{0}")]
    Temporary(String),
    /// The domain cannot receive mail.
    #[error("{0}")]
    Permanent(String),
}

/// What an MX answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxAnswer {
    /// Exchangers, best preference first, with any addresses the answer carried.
    Exchangers(Vec<(String, Vec<IpAddr>)>),
    /// No MX records: use the domain's address records (the "implicit MX").
    Implicit,
    /// The domain does not exist, or publishes a null MX.
    NoMail(String),
}

/// Reads an MX response (pure).
pub fn read_mx(domain: &str, answer: &Parsed) -> MxAnswer {
    if answer.rcode == 3 {
        return MxAnswer::NoMail(format!("domain {domain} does not exist"));
    }
    let mut mx: Vec<(u16, String)> = answer
        .answer
        .iter()
        .filter(|r| r.rtype == code::MX && r.rdata.len() > 2)
        .map(|r| {
            (
                u16::from_be_bytes([r.rdata[0], r.rdata[1]]),
                to_text(&r.rdata[2..]).trim_end_matches('.').to_ascii_lowercase(),
            )
        })
        .collect();
    if mx.is_empty() {
        return MxAnswer::Implicit;
    }
    if mx.len() == 1 && mx[0].1.is_empty() {
        return MxAnswer::NoMail(format!("domain {domain} accepts no mail (null MX)"));
    }
    mx.retain(|(_, h)| !h.is_empty());
    // Equal preferences are shuffled (RFC 5321 §5.1) by a stable key per lookup.
    let salt: u64 = rand::random();
    mx.sort_by_key(|(pref, host)| (*pref, hash(host, salt)));
    mx.dedup_by(|a, b| a.1 == b.1);
    MxAnswer::Exchangers(
        mx.into_iter()
            .map(|(_, host)| {
                let addrs = addresses_in(&host, &answer.additional);
                (host, addrs)
            })
            .collect(),
    )
}

fn hash(s: &str, salt: u64) -> u64 {
    s.bytes().fold(salt ^ 0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

fn addresses_in(host: &str, records: &[appnet_dns::wire::message::Record]) -> Vec<IpAddr> {
    records
        .iter()
        .filter(|r| to_text(&r.owner).trim_end_matches('.').eq_ignore_ascii_case(host))
        .filter_map(|r| match (r.rtype, r.rdata.len()) {
            (code::A, 4) => Some(IpAddr::V4(Ipv4Addr::new(r.rdata[0], r.rdata[1], r.rdata[2], r.rdata[3]))),
            (code::AAAA, 16) => <[u8; 16]>::try_from(&r.rdata[..]).ok().map(IpAddr::from),
            _ => None,
        })
        .collect()
}

async fn ask(resolver: SocketAddr, name: &str, qtype: u16, timeout: Duration) -> Result<Parsed, MxError> {
    let qname = from_text(name).map_err(MxError::Permanent)?;
    let opts = QueryOpts { recursion_desired: true, timeout, ..QueryOpts::default() };
    let answer = query(resolver, &qname, qtype, opts)
        .await
        .map_err(|e| MxError::Temporary(format!("cannot ask the resolver {resolver} about {name}: {e}")))?;
    let parsed =
        parse(&answer.bytes).map_err(|e| MxError::Temporary(format!("bad DNS answer about {name}: {e}")))?;
    if parsed.rcode != 0 && parsed.rcode != 3 {
        return Err(MxError::Temporary(format!(
            "resolver {resolver} answered rcode {} about {name}",
            parsed.rcode
        )));
    }
    Ok(parsed)
}

async fn host_addresses(resolver: SocketAddr, host: &str, timeout: Duration) -> Result<Vec<IpAddr>, MxError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let parsed = ask(resolver, host, code::A, timeout).await?;
    if parsed.rcode == 3 {
        return Ok(Vec::new());
    }
    Ok(addresses_in(host, &parsed.answer)
        .into_iter()
        .chain(
            parsed
                .answer
                .iter()
                .filter(|r| r.rtype == code::A && r.rdata.len() == 4)
                .map(|r| IpAddr::V4(Ipv4Addr::new(r.rdata[0], r.rdata[1], r.rdata[2], r.rdata[3]))),
        )
        .fold(Vec::new(), |mut v, ip| {
            if !v.contains(&ip) {
                v.push(ip);
            }
            v
        }))
}

/// The addresses to try for `domain`, in order, each with the exchanger's name, on `port`.
/// A domain written as an address literal (`[192.0.2.1]`) is used as it is.
pub async fn destinations(
    resolver: SocketAddr,
    domain: &str,
    port: u16,
    timeout: Duration,
) -> Result<Vec<(String, SocketAddr)>, MxError> {
    if let Some(lit) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        let ip: IpAddr =
            lit.parse().map_err(|_| MxError::Permanent(format!("bad address literal {domain}")))?;
        return Ok(vec![(domain.to_string(), SocketAddr::new(ip, port))]);
    }
    let parsed = ask(resolver, domain, code::MX, timeout).await?;
    let exchangers = match read_mx(domain, &parsed) {
        MxAnswer::NoMail(why) => return Err(MxError::Permanent(why)),
        MxAnswer::Implicit => vec![(domain.to_string(), Vec::new())],
        MxAnswer::Exchangers(list) => list,
    };
    let mut out = Vec::new();
    let mut last_err = None;
    for (host, known) in exchangers {
        let addrs = if known.is_empty() {
            match host_addresses(resolver, &host, timeout).await {
                Ok(a) => a,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            }
        } else {
            known
        };
        out.extend(addrs.into_iter().map(|ip| (host.clone(), SocketAddr::new(ip, port))));
    }
    if out.is_empty() {
        return Err(last_err.unwrap_or_else(|| {
            MxError::Temporary(format!("no address found for the mail exchangers of {domain}"))
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use appnet_dns::wire::message::Record;

    fn mx(pref: u16, host: &str) -> Record {
        let mut rdata = pref.to_be_bytes().to_vec();
        rdata.extend_from_slice(&from_text(host).unwrap());
        Record { owner: from_text("x.example.").unwrap(), rtype: code::MX, class: 1, ttl: 60, rdata }
    }

    #[test]
    fn exchangers_by_preference_then_implicit_and_null_mx() {
        let p = Parsed {
            answer: vec![mx(20, "b.x.example."), mx(10, "a.x.example."), mx(20, "c.x.example.")],
            additional: vec![Record {
                owner: from_text("a.x.example.").unwrap(),
                rtype: code::A,
                class: 1,
                ttl: 60,
                rdata: vec![127, 0, 10, 12],
            }],
            ..Parsed::default()
        };
        let MxAnswer::Exchangers(list) = read_mx("x.example", &p) else { panic!() };
        assert_eq!(list[0], ("a.x.example".to_string(), vec![IpAddr::from([127, 0, 10, 12])]));
        let rest: std::collections::BTreeSet<&str> = list[1..].iter().map(|(h, _)| h.as_str()).collect();
        assert_eq!(rest, ["b.x.example", "c.x.example"].into());
        assert_eq!(read_mx("x.example", &Parsed::default()), MxAnswer::Implicit);
        let null = Parsed { answer: vec![mx(0, ".")], ..Parsed::default() };
        assert!(matches!(read_mx("x.example", &null), MxAnswer::NoMail(_)));
        let nx = Parsed { rcode: 3, ..Parsed::default() };
        assert!(matches!(read_mx("x.example", &nx), MxAnswer::NoMail(_)));
        let junk = Parsed { answer: vec![Record { rdata: vec![1], ..mx(1, "a.") }], ..Parsed::default() };
        assert_eq!(read_mx("x.example", &junk), MxAnswer::Implicit);
    }
}
