//! The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2): a header the balancer
//! sends first on each connection to a replica, so the replica learns the real client address
//! that a layer-4 proxy otherwise hides. We only send it; the parser exists so tests (and the
//! fuzz target) can check what we send against the specification, and for replicas in Rust.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// Which header version to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    /// The human-readable line `PROXY TCP4 src dst sport dport\r\n`.
    V1,
    /// The binary header with the 12-byte signature.
    V2,
}

impl std::str::FromStr for Version {
    type Err = String;
    fn from_str(s: &str) -> Result<Version, String> {
        match s {
            "v1" | "1" => Ok(Version::V1),
            "v2" | "2" => Ok(Version::V2),
            other => Err(format!("unknown PROXY protocol version {other:?}: use v1 or v2")),
        }
    }
}

/// The v2 signature: `\r\n\r\n\0\r\nQUIT\n`.
pub const V2_SIGNATURE: [u8; 12] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];

/// The longest v1 line the specification allows, CRLF included.
pub const V1_MAX: usize = 107;

/// Most bytes of v2 address data and TLVs we accept when parsing.
pub const V2_MAX_BODY: usize = 1024;

/// A parsed header: the original connection's addresses, or `None` for `UNKNOWN`/`LOCAL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The version it was written in.
    pub version: Version,
    /// (source, destination) of the client's connection.
    pub addrs: Option<(SocketAddr, SocketAddr)>,
}

/// Why bytes are not a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Neither signature.
    #[error("not a PROXY protocol header")]
    NotProxy,
    /// A v1 line that breaks the grammar or is too long.
    #[error("malformed PROXY v1 line")]
    BadV1,
    /// A v2 header with a bad version, command, family or length.
    #[error("malformed PROXY v2 header")]
    BadV2,
}

/// Both addresses in one family: IPv4 if both are IPv4, else both as IPv6 (v4-mapped).
fn same_family(src: SocketAddr, dst: SocketAddr) -> (SocketAddr, SocketAddr) {
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => (src, dst),
        _ => {
            let six = |a: SocketAddr| match a.ip() {
                IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
                IpAddr::V6(_) => a,
            };
            (six(src), six(dst))
        }
    }
}

/// The header for a TCP connection from `src` to `dst` (our listening address).
pub fn encode(version: Version, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(src, dst);
    match version {
        Version::V1 => {
            let proto = if src.is_ipv4() { "TCP4" } else { "TCP6" };
            format!("PROXY {proto} {} {} {} {}\r\n", src.ip(), dst.ip(), src.port(), dst.port()).into_bytes()
        }
        Version::V2 => {
            let mut out = Vec::with_capacity(16 + 36);
            out.extend_from_slice(&V2_SIGNATURE);
            out.push(0x21); // version 2, command PROXY
            match (src.ip(), dst.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    out.push(0x11); // AF_INET, STREAM
                    out.extend_from_slice(&12u16.to_be_bytes());
                    out.extend_from_slice(&s.octets());
                    out.extend_from_slice(&d.octets());
                }
                (s, d) => {
                    let v6 = |ip: IpAddr| match ip {
                        IpAddr::V6(a) => a,
                        IpAddr::V4(a) => a.to_ipv6_mapped(),
                    };
                    out.push(0x21); // AF_INET6, STREAM
                    out.extend_from_slice(&36u16.to_be_bytes());
                    out.extend_from_slice(&v6(s).octets());
                    out.extend_from_slice(&v6(d).octets());
                }
            }
            out.extend_from_slice(&src.port().to_be_bytes());
            out.extend_from_slice(&dst.port().to_be_bytes());
            out
        }
    }
}

/// The header for a connection the balancer opens itself (a health check): v1 `UNKNOWN`,
/// v2 command LOCAL. Receivers use the connection's real addresses.
pub fn encode_local(version: Version) -> Vec<u8> {
    match version {
        Version::V1 => b"PROXY UNKNOWN\r\n".to_vec(),
        Version::V2 => {
            let mut out = V2_SIGNATURE.to_vec();
            out.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
            out
        }
    }
}

/// Parses a header at the start of `buf`: `Ok(Some((header, length)))`, `Ok(None)` when more
/// bytes are needed, or an error. Never panics, whatever the bytes.
pub fn parse(buf: &[u8]) -> Result<Option<(Header, usize)>, ParseError> {
    if buf.len() < V2_SIGNATURE.len() {
        // Could still become either signature.
        let v1 = b"PROXY ".get(..buf.len().min(6)) == buf.get(..buf.len().min(6));
        let v2 = V2_SIGNATURE.starts_with(buf);
        return if v1 || v2 { Ok(None) } else { Err(ParseError::NotProxy) };
    }
    if buf.starts_with(&V2_SIGNATURE) {
        parse_v2(buf)
    } else if buf.starts_with(b"PROXY ") {
        parse_v1(buf)
    } else {
        Err(ParseError::NotProxy)
    }
}

fn parse_v1(buf: &[u8]) -> Result<Option<(Header, usize)>, ParseError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= V1_MAX { Err(ParseError::BadV1) } else { Ok(None) };
    };
    if lf == 0 || window[lf - 1] != b'\r' {
        return Err(ParseError::BadV1);
    }
    let line = std::str::from_utf8(&window[6..lf - 1]).map_err(|_| ParseError::BadV1)?;
    let parts: Vec<&str> = line.split(' ').collect();
    let header = |addrs| Ok(Some((Header { version: Version::V1, addrs }, lf + 1)));
    match parts.as_slice() {
        ["UNKNOWN", ..] => header(None),
        [proto @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let ip = |s: &str| -> Result<IpAddr, ParseError> {
                let ip: IpAddr = s.parse().map_err(|_| ParseError::BadV1)?;
                if ip.is_ipv4() != (*proto == "TCP4") {
                    return Err(ParseError::BadV1);
                }
                Ok(ip)
            };
            let port = |s: &str| -> Result<u16, ParseError> {
                if s.is_empty()
                    || s.len() > 5
                    || !s.bytes().all(|b| b.is_ascii_digit())
                    || (s.len() > 1 && s.starts_with('0'))
                {
                    return Err(ParseError::BadV1);
                }
                s.parse().map_err(|_| ParseError::BadV1)
            };
            header(Some((SocketAddr::new(ip(src)?, port(sport)?), SocketAddr::new(ip(dst)?, port(dport)?))))
        }
        _ => Err(ParseError::BadV1),
    }
}

fn parse_v2(buf: &[u8]) -> Result<Option<(Header, usize)>, ParseError> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let (ver_cmd, fam) = (buf[12], buf[13]);
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if ver_cmd >> 4 != 2 || len > V2_MAX_BODY {
        return Err(ParseError::BadV2);
    }
    if buf.len() < 16 + len {
        return Ok(None);
    }
    let body = &buf[16..16 + len];
    let header = |addrs| Ok(Some((Header { version: Version::V2, addrs }, 16 + len)));
    match ver_cmd & 0x0F {
        0 => return header(None), // LOCAL: health checks from the proxy itself
        1 => {}
        _ => return Err(ParseError::BadV2),
    }
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    match fam {
        0x11 | 0x12 if len >= 12 => {
            let s = IpAddr::from([body[0], body[1], body[2], body[3]]);
            let d = IpAddr::from([body[4], body[5], body[6], body[7]]);
            header(Some((SocketAddr::new(s, port(&body[8..])), SocketAddr::new(d, port(&body[10..])))))
        }
        0x21 | 0x22 if len >= 36 => {
            let ip = |b: &[u8]| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&b[..16]);
                IpAddr::V6(Ipv6Addr::from(a))
            };
            let (s, d) = (ip(&body[..16]), ip(&body[16..32]));
            header(Some((SocketAddr::new(s, port(&body[32..])), SocketAddr::new(d, port(&body[34..])))))
        }
        0x00 => header(None), // AF_UNSPEC
        _ => Err(ParseError::BadV2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_matches_the_specification_example_and_round_trips() {
        let bytes = encode(Version::V1, a("192.168.0.1:56324"), a("192.168.0.11:443"));
        assert_eq!(bytes, b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
        let (h, n) = parse(&bytes).unwrap().unwrap();
        assert_eq!(n, bytes.len());
        assert_eq!(h.addrs, Some((a("192.168.0.1:56324"), a("192.168.0.11:443"))));
        let six = encode(Version::V1, a("[2001:db8::1]:1"), a("[::1]:80"));
        assert_eq!(six, b"PROXY TCP6 2001:db8::1 ::1 1 80\r\n");
        assert_eq!(parse(&six).unwrap().unwrap().0.addrs, Some((a("[2001:db8::1]:1"), a("[::1]:80"))));
    }

    #[test]
    fn v2_layout_and_round_trip() {
        let bytes = encode(Version::V2, a("10.1.2.3:4000"), a("127.0.0.1:8000"));
        assert_eq!(&bytes[..12], &V2_SIGNATURE);
        assert_eq!(&bytes[12..16], &[0x21, 0x11, 0, 12]);
        assert_eq!(bytes.len(), 28);
        assert_eq!(&bytes[16..20], &[10, 1, 2, 3]);
        assert_eq!(&bytes[24..26], &4000u16.to_be_bytes());
        let (h, n) = parse(&bytes).unwrap().unwrap();
        assert_eq!((h.version, n), (Version::V2, 28));
        assert_eq!(h.addrs, Some((a("10.1.2.3:4000"), a("127.0.0.1:8000"))));
        // Mixed families are sent as IPv6 with the IPv4 address mapped.
        let mixed = encode(Version::V2, a("10.0.0.1:1"), a("[::1]:2"));
        assert_eq!(mixed[13], 0x21);
        let (h, _) = parse(&mixed).unwrap().unwrap();
        assert_eq!(h.addrs.unwrap().0, a("[::ffff:10.0.0.1]:1"));
    }

    #[test]
    fn partial_headers_ask_for_more_and_junk_is_refused() {
        let v2 = encode(Version::V2, a("10.1.2.3:4000"), a("127.0.0.1:8000"));
        for cut in 0..v2.len() {
            assert_eq!(parse(&v2[..cut]), Ok(None), "cut at {cut}");
        }
        let v1 = encode(Version::V1, a("10.1.2.3:4000"), a("127.0.0.1:8000"));
        for cut in 0..v1.len() {
            assert_eq!(parse(&v1[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(ParseError::NotProxy));
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"), Err(ParseError::BadV1));
        assert_eq!(parse(b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n"), Err(ParseError::BadV1));
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 70000\r\n"), Err(ParseError::BadV1));
        assert_eq!(parse(&[b'P', b'R', b'O', b'X', b'Y', b' ', b'A'].repeat(20)), Err(ParseError::BadV1));
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap().0.addrs, None);
        assert_eq!(
            parse(&encode_local(Version::V1)).unwrap().unwrap(),
            (Header { version: Version::V1, addrs: None }, 15)
        );
        assert_eq!(
            parse(&encode_local(Version::V2)).unwrap().unwrap(),
            (Header { version: Version::V2, addrs: None }, 16)
        );
        let mut bad = v2.clone();
        bad[12] = 0x31;
        assert_eq!(parse(&bad), Err(ParseError::BadV2));
        let mut short = v2.clone();
        short[15] = 4; // an AF_INET body too short for its addresses
        assert_eq!(parse(&short), Err(ParseError::BadV2));
    }

    #[test]
    fn random_junk_never_panics() {
        let mut x = 7u64;
        for i in 0..20_000u64 {
            x = crate::maglev::mix64(x ^ i);
            let len = (x % 64) as usize;
            let mut buf: Vec<u8> = (0..len as u64).map(|j| crate::maglev::mix64(x + j) as u8).collect();
            if i % 3 == 0 {
                let sig: &[u8] = if i % 2 == 0 { &V2_SIGNATURE } else { b"PROXY " };
                buf.splice(0..0, sig.iter().copied());
            }
            let _ = parse(&buf);
        }
    }
}
