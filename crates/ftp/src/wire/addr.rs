//! The address forms of the data connection: PORT and the PASV reply (RFC 959 §4.1.2,
//! `h1,h2,h3,h4,p1,p2`), EPRT (RFC 2428 §2, `|af|address|port|`) and the EPSV reply
//! (RFC 2428 §3, `(|||port|)`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Why an address argument does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// PORT needs six decimal numbers 0-255 separated by commas.
    #[error("expected h1,h2,h3,h4,p1,p2 with six numbers 0-255")]
    BadPort,
    /// EPRT needs `<d>af<d>address<d>port<d>`.
    #[error("expected |1|a.b.c.d|port| or |2|ipv6|port|")]
    BadEprt,
    /// EPRT named an address family other than 1 (IPv4) and 2 (IPv6).
    #[error("network protocol not supported, use (1,2)")]
    Family,
}

/// Parses PORT's `h1,h2,h3,h4,p1,p2`.
pub fn parse_port(arg: &str) -> Result<SocketAddr, AddrError> {
    let mut n = [0u8; 6];
    let mut parts = arg.trim().split(',');
    for slot in n.iter_mut() {
        let p = parts.next().ok_or(AddrError::BadPort)?.trim();
        if p.is_empty() || p.len() > 3 {
            return Err(AddrError::BadPort);
        }
        *slot = p.parse::<u8>().map_err(|_| AddrError::BadPort)?;
    }
    if parts.next().is_some() {
        return Err(AddrError::BadPort);
    }
    let ip = Ipv4Addr::new(n[0], n[1], n[2], n[3]);
    Ok(SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([n[4], n[5]])))
}

/// Formats an IPv4 address and port the PASV way (`127,0,0,1,117,48`).
pub fn format_pasv(ip: Ipv4Addr, port: u16) -> String {
    let [a, b, c, d] = ip.octets();
    let [p1, p2] = port.to_be_bytes();
    format!("{a},{b},{c},{d},{p1},{p2}")
}

/// Parses EPRT's `<d>af<d>address<d>port<d>` (any printable delimiter, usually `|`).
pub fn parse_eprt(arg: &str) -> Result<SocketAddr, AddrError> {
    let arg = arg.trim();
    let delim = arg.chars().next().ok_or(AddrError::BadEprt)?;
    if !(33..=126).contains(&(delim as u32)) {
        return Err(AddrError::BadEprt);
    }
    let parts: Vec<&str> = arg.split(delim).collect();
    // "", af, addr, port, "" — exactly five pieces.
    if parts.len() != 5 || !parts[0].is_empty() || !parts[4].is_empty() {
        return Err(AddrError::BadEprt);
    }
    let port: u16 = parts[3].parse().map_err(|_| AddrError::BadEprt)?;
    let ip: IpAddr = match parts[1] {
        "1" => IpAddr::V4(parts[2].parse().map_err(|_| AddrError::BadEprt)?),
        "2" => IpAddr::V6(parts[2].parse().map_err(|_| AddrError::BadEprt)?),
        _ => return Err(AddrError::Family),
    };
    Ok(SocketAddr::new(ip, port))
}

/// Formats an EPRT argument (for clients and tests).
pub fn format_eprt(addr: SocketAddr) -> String {
    let af = if addr.is_ipv4() { 1 } else { 2 };
    format!("|{af}|{}|{}|", addr.ip(), addr.port())
}

/// The EPSV reply's `(|||port|)`.
pub fn format_epsv(port: u16) -> String {
    format!("(|||{port}|)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_round_trips_and_rejects_junk() {
        let a = parse_port("127,0,0,1,117,48").unwrap();
        assert_eq!(a, "127.0.0.1:30000".parse().unwrap());
        assert_eq!(parse_port(&format_pasv(Ipv4Addr::new(10, 1, 2, 3), 65535)).unwrap().port(), 65535);
        for bad in
            ["", "1,2,3,4,5", "1,2,3,4,5,6,7", "256,0,0,1,1,1", "a,b,c,d,e,f", "1,2,3,4,5,-1", "1,,3,4,5,6"]
        {
            assert_eq!(parse_port(bad), Err(AddrError::BadPort), "{bad}");
        }
    }

    #[test]
    fn eprt_round_trips_both_families() {
        for a in ["127.0.0.1:2121", "[::1]:40000"] {
            let addr: SocketAddr = a.parse().unwrap();
            assert_eq!(parse_eprt(&format_eprt(addr)), Ok(addr));
        }
        assert_eq!(parse_eprt("!1!10.0.0.1!21!"), Ok("10.0.0.1:21".parse().unwrap()));
        assert_eq!(parse_eprt("|3|x|1|"), Err(AddrError::Family));
        assert_eq!(parse_eprt("|1|::1|1|"), Err(AddrError::BadEprt));
        assert_eq!(parse_eprt("|1|1.2.3.4|70000|"), Err(AddrError::BadEprt));
        assert_eq!(parse_eprt("|1|1.2.3.4|"), Err(AddrError::BadEprt));
        assert_eq!(format_epsv(30001), "(|||30001|)");
    }
}
