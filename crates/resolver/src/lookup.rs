//! A stub lookup for clients: which host a URL names (`host`, `host:port`, `1.2.3.4`, `[::1]:8080`)
//! and its IPv4 address asked of a recursive resolver. `appnet web get --resolver` uses it, so the
//! CLI holds no URL or DNS logic of its own.

use appnet_dns::client::{QueryOpts, query};
use appnet_dns::wire::{message, name, rrtype};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The host part of a URL authority: an address literal or a name to look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// `1.2.3.4`, `[::1]` or a bare `::1`.
    Ip(IpAddr),
    /// A DNS name, as written (`www.example.com`).
    Name(String),
}

/// Why a host could not be found or resolved; each message names the input.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The URL or authority is malformed.
    #[error("{0}")]
    BadAuthority(String),
    /// The resolver could not be asked (timeout, network error).
    #[error("cannot ask {server} for {host}: {reason}")]
    Query { server: SocketAddr, host: String, reason: String },
    /// The resolver answered, but with no A record.
    #[error("{server} has no address for {host} (rcode {rcode})")]
    NoAddress { server: SocketAddr, host: String, rcode: u16 },
}

/// Splits an authority (`[user@]host[:port]`) into its host and optional port. IPv6 literals
/// come in brackets (`[::1]:5353`, RFC 3986); a bare `::1` (more than one colon, no brackets) is
/// read as an IPv6 address without a port rather than split at its last colon.
pub fn parse_authority(authority: &str) -> Result<(Host, Option<u16>), LookupError> {
    let bad = |why: &str| LookupError::BadAuthority(format!("{authority:?}: {why}"));
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let port = |p: &str| p.parse::<u16>().map_err(|_| bad("the port is not a number from 0 to 65535"));
    if let Some(rest) = hostport.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or_else(|| bad("no ']' after the IPv6 address"))?;
        let ip: Ipv6Addr = inside.parse().map_err(|_| bad("not an IPv6 address in brackets"))?;
        let port = match after {
            "" => None,
            _ => Some(port(after.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?)?),
        };
        return Ok((Host::Ip(IpAddr::V6(ip)), port));
    }
    if hostport.matches(':').count() > 1 {
        let ip: Ipv6Addr = hostport.parse().map_err(|_| bad("not an IPv6 address (write [addr]:port)"))?;
        return Ok((Host::Ip(IpAddr::V6(ip)), None));
    }
    let (host, port) = match hostport.split_once(':') {
        Some((h, p)) => (h, Some(port(p)?)),
        None => (hostport, None),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok((Host::Ip(IpAddr::V4(ip)), port));
    }
    if !host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_') {
        return Err(bad("the host name has characters a DNS name cannot have"));
    }
    Ok((Host::Name(host.to_string()), port))
}

/// The host of a URL (`http://host:port/path`; the scheme may be left out).
pub fn url_host(url: &str) -> Result<Host, LookupError> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    parse_authority(authority).map(|(host, _)| host).map_err(|e| match e {
        LookupError::BadAuthority(why) => {
            LookupError::BadAuthority(format!("no usable host in {url}: {why}"))
        }
        other => other,
    })
}

/// The first IPv4 address among an answer's A records, if any.
pub fn first_a(answer: &message::Parsed) -> Option<Ipv4Addr> {
    answer
        .answer
        .iter()
        .rev()
        .filter(|r| r.rtype == rrtype::code::A)
        .find_map(|r| <[u8; 4]>::try_from(&r.rdata[..]).ok())
        .map(Ipv4Addr::from)
}

/// The address of a URL's host, asked of the recursive resolver `server` (an A query with RD
/// set); a host that is already an address is returned as it is, without a query.
pub async fn lookup_url(url: &str, server: SocketAddr) -> Result<IpAddr, LookupError> {
    let host = match url_host(url)? {
        Host::Ip(ip) => return Ok(ip),
        Host::Name(host) => host,
    };
    let qname = name::from_text(&host).map_err(|e| LookupError::BadAuthority(format!("{host:?}: {e}")))?;
    let opts = QueryOpts { recursion_desired: true, ..QueryOpts::default() };
    let failed = |reason: String| LookupError::Query { server, host: host.clone(), reason };
    let answer = query(server, &qname, rrtype::code::A, opts).await.map_err(|e| failed(e.to_string()))?;
    let parsed = message::parse(&answer.bytes).map_err(failed)?;
    first_a(&parsed).map(IpAddr::V4).ok_or(LookupError::NoAddress {
        server,
        host: host.clone(),
        rcode: parsed.rcode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> Host {
        Host::Name(n.into())
    }

    #[test]
    fn authorities_with_and_without_ports() {
        let v6 = Host::Ip("::1".parse().unwrap());
        assert_eq!(parse_authority("example.com").unwrap(), (name("example.com"), None));
        assert_eq!(parse_authority("example.com:8080").unwrap(), (name("example.com"), Some(8080)));
        assert_eq!(parse_authority("1.2.3.4").unwrap(), (Host::Ip("1.2.3.4".parse().unwrap()), None));
        assert_eq!(parse_authority("1.2.3.4:53").unwrap(), (Host::Ip("1.2.3.4".parse().unwrap()), Some(53)));
        assert_eq!(parse_authority("[::1]").unwrap(), (v6.clone(), None));
        assert_eq!(parse_authority("[::1]:5353").unwrap(), (v6.clone(), Some(5353)));
        assert_eq!(parse_authority("::1").unwrap(), (v6, None));
        assert_eq!(parse_authority("user:pw@host:1").unwrap(), (name("host"), Some(1)));
    }

    #[test]
    fn bad_authorities_are_errors_that_quote_the_input() {
        for bad in [
            "",
            ":80",
            "host:",
            "host:http",
            "host:65536",
            "[::1",
            "[::1]x",
            "[example.com]",
            "[::1]:x",
            "a b",
            "1::2::3",
            "h/st",
        ] {
            let err = parse_authority(bad).expect_err(bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }

    #[test]
    fn url_hosts() {
        assert_eq!(url_host("http://www.example.com/index.html").unwrap(), name("www.example.com"));
        assert_eq!(url_host("https://h.example:8443?q#f").unwrap(), name("h.example"));
        assert_eq!(url_host("http://[::1]:8080/").unwrap(), Host::Ip("::1".parse().unwrap()));
        assert_eq!(url_host("127.0.0.1:80/x").unwrap(), Host::Ip("127.0.0.1".parse().unwrap()));
        assert!(url_host("http:///path").is_err());
    }

    #[test]
    fn the_a_record_is_picked_from_the_answer() {
        let rec = |rtype, rdata: &[u8]| message::Record {
            owner: name::from_text("x.example").unwrap(),
            rtype,
            class: 1,
            ttl: 60,
            rdata: rdata.to_vec(),
        };
        let mut parsed = message::Parsed::default();
        assert_eq!(first_a(&parsed), None);
        parsed.answer.push(rec(rrtype::code::CNAME, &[0]));
        parsed.answer.push(rec(rrtype::code::A, &[192, 0, 2, 7]));
        assert_eq!(first_a(&parsed), Some(Ipv4Addr::new(192, 0, 2, 7)));
    }

    #[tokio::test]
    async fn address_literals_need_no_query() {
        // Port 9 (discard) would time out if a query were sent.
        let server = SocketAddr::from(([127, 0, 0, 1], 9));
        assert_eq!(lookup_url("http://127.0.0.1:8080/", server).await.unwrap(), IpAddr::from([127, 0, 0, 1]));
        assert_eq!(lookup_url("http://[::1]/", server).await.unwrap(), "::1".parse::<IpAddr>().unwrap());
    }
}
