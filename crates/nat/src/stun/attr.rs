//! STUN and TURN attributes: their type codes and typed values (RFC 8489 §14, RFC 8656 §18).

use super::message::{MAGIC_COOKIE, WireError};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Attribute type codes.
pub mod code {
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    /// RFC 5780 §7.2: asks the server to answer from its other IP and/or port.
    pub const CHANGE_REQUEST: u16 = 0x0003;
    pub const USERNAME: u16 = 0x0006;
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    pub const ERROR_CODE: u16 = 0x0009;
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    pub const CHANNEL_NUMBER: u16 = 0x000C;
    pub const LIFETIME: u16 = 0x000D;
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    pub const DATA: u16 = 0x0013;
    pub const REALM: u16 = 0x0014;
    pub const NONCE: u16 = 0x0015;
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
    pub const EVEN_PORT: u16 = 0x0018;
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    pub const DONT_FRAGMENT: u16 = 0x001A;
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    pub const USERHASH: u16 = 0x001E;
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    pub const RESERVATION_TOKEN: u16 = 0x0022;
    pub const SOFTWARE: u16 = 0x8022;
    pub const FINGERPRINT: u16 = 0x8028;
    pub const RESPONSE_ORIGIN: u16 = 0x802B;
    pub const OTHER_ADDRESS: u16 = 0x802C;
}

/// One decoded attribute. MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT are not here: the message
/// codec writes and checks them, since they cover the bytes before them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attr {
    MappedAddress(SocketAddr),
    XorMappedAddress(SocketAddr),
    XorPeerAddress(SocketAddr),
    XorRelayedAddress(SocketAddr),
    ResponseOrigin(SocketAddr),
    OtherAddress(SocketAddr),
    Username(String),
    Realm(String),
    Nonce(String),
    Software(String),
    /// Error class*100 + number, and the reason phrase.
    ErrorCode(u16, String),
    UnknownAttributes(Vec<u16>),
    ChannelNumber(u16),
    Lifetime(u32),
    Data(Vec<u8>),
    /// The IANA protocol number (17 = UDP).
    RequestedTransport(u8),
    /// The R bit: also reserve the next port.
    EvenPort(bool),
    ReservationToken([u8; 8]),
    DontFragment,
    /// RFC 5780 CHANGE-REQUEST: answer from the other IP (`ip`) and/or the other port (`port`).
    ChangeRequest {
        ip: bool,
        port: bool,
    },
    /// Any other attribute, kept as its type and value.
    Other(u16, Vec<u8>),
}

impl Attr {
    /// The attribute's type code.
    pub fn code(&self) -> u16 {
        use code::*;
        match self {
            Attr::MappedAddress(_) => MAPPED_ADDRESS,
            Attr::XorMappedAddress(_) => XOR_MAPPED_ADDRESS,
            Attr::XorPeerAddress(_) => XOR_PEER_ADDRESS,
            Attr::XorRelayedAddress(_) => XOR_RELAYED_ADDRESS,
            Attr::ResponseOrigin(_) => RESPONSE_ORIGIN,
            Attr::OtherAddress(_) => OTHER_ADDRESS,
            Attr::Username(_) => USERNAME,
            Attr::Realm(_) => REALM,
            Attr::Nonce(_) => NONCE,
            Attr::Software(_) => SOFTWARE,
            Attr::ErrorCode(..) => ERROR_CODE,
            Attr::UnknownAttributes(_) => UNKNOWN_ATTRIBUTES,
            Attr::ChannelNumber(_) => CHANNEL_NUMBER,
            Attr::Lifetime(_) => LIFETIME,
            Attr::Data(_) => DATA,
            Attr::RequestedTransport(_) => REQUESTED_TRANSPORT,
            Attr::EvenPort(_) => EVEN_PORT,
            Attr::ReservationToken(_) => RESERVATION_TOKEN,
            Attr::DontFragment => DONT_FRAGMENT,
            Attr::ChangeRequest { .. } => CHANGE_REQUEST,
            Attr::Other(c, _) => *c,
        }
    }

    /// Appends the value bytes (without header or padding).
    pub(crate) fn encode_value(&self, tid: &[u8; 12], out: &mut Vec<u8>) {
        match self {
            Attr::MappedAddress(a) | Attr::ResponseOrigin(a) | Attr::OtherAddress(a) => plain_addr(*a, out),
            Attr::XorMappedAddress(a) | Attr::XorPeerAddress(a) | Attr::XorRelayedAddress(a) => {
                xor_addr(*a, tid, out)
            }
            Attr::Username(s) | Attr::Realm(s) | Attr::Nonce(s) | Attr::Software(s) => {
                out.extend_from_slice(s.as_bytes())
            }
            Attr::ErrorCode(code, reason) => {
                out.extend_from_slice(&[0, 0, (code / 100) as u8 & 0x07, (code % 100) as u8]);
                out.extend_from_slice(reason.as_bytes());
            }
            Attr::UnknownAttributes(codes) => {
                codes.iter().for_each(|c| out.extend_from_slice(&c.to_be_bytes()))
            }
            Attr::ChannelNumber(n) => {
                out.extend_from_slice(&n.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
            }
            Attr::Lifetime(s) => out.extend_from_slice(&s.to_be_bytes()),
            Attr::Data(d) | Attr::Other(_, d) => out.extend_from_slice(d),
            Attr::RequestedTransport(p) => out.extend_from_slice(&[*p, 0, 0, 0]),
            Attr::EvenPort(r) => out.push(if *r { 0x80 } else { 0 }),
            Attr::ReservationToken(t) => out.extend_from_slice(t),
            Attr::DontFragment => {}
            Attr::ChangeRequest { ip, port } => {
                out.extend_from_slice(&[0, 0, 0, (*ip as u8) << 2 | (*port as u8) << 1]);
            }
        }
    }

    /// Decodes one attribute's value.
    pub(crate) fn decode(code: u16, v: &[u8], tid: &[u8; 12]) -> Result<Attr, WireError> {
        use code::*;
        let text = |v: &[u8]| String::from_utf8(v.to_vec()).map_err(|_| WireError::BadAttribute(code));
        Ok(match code {
            MAPPED_ADDRESS => Attr::MappedAddress(parse_addr(v, None, code)?),
            RESPONSE_ORIGIN => Attr::ResponseOrigin(parse_addr(v, None, code)?),
            OTHER_ADDRESS => Attr::OtherAddress(parse_addr(v, None, code)?),
            XOR_MAPPED_ADDRESS => Attr::XorMappedAddress(parse_addr(v, Some(tid), code)?),
            XOR_PEER_ADDRESS => Attr::XorPeerAddress(parse_addr(v, Some(tid), code)?),
            XOR_RELAYED_ADDRESS => Attr::XorRelayedAddress(parse_addr(v, Some(tid), code)?),
            USERNAME if v.len() <= 513 => Attr::Username(text(v)?),
            REALM if v.len() <= 763 => Attr::Realm(text(v)?),
            NONCE if v.len() <= 763 => Attr::Nonce(text(v)?),
            SOFTWARE if v.len() <= 763 => Attr::Software(text(v)?),
            ERROR_CODE if v.len() >= 4 => {
                let class = (v[2] & 0x07) as u16;
                let number = v[3] as u16;
                if !(3..=6).contains(&class) || number > 99 {
                    return Err(WireError::BadAttribute(code));
                }
                Attr::ErrorCode(class * 100 + number, text(&v[4..])?)
            }
            UNKNOWN_ATTRIBUTES if v.len().is_multiple_of(2) => {
                Attr::UnknownAttributes(v.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect())
            }
            CHANNEL_NUMBER if v.len() == 4 => Attr::ChannelNumber(u16::from_be_bytes([v[0], v[1]])),
            LIFETIME if v.len() == 4 => Attr::Lifetime(u32::from_be_bytes([v[0], v[1], v[2], v[3]])),
            DATA => Attr::Data(v.to_vec()),
            REQUESTED_TRANSPORT if v.len() == 4 => Attr::RequestedTransport(v[0]),
            EVEN_PORT if v.len() == 1 => Attr::EvenPort(v[0] & 0x80 != 0),
            RESERVATION_TOKEN if v.len() == 8 => {
                let mut t = [0; 8];
                t.copy_from_slice(v);
                Attr::ReservationToken(t)
            }
            DONT_FRAGMENT if v.is_empty() => Attr::DontFragment,
            CHANGE_REQUEST if v.len() == 4 => Attr::ChangeRequest { ip: v[3] & 4 != 0, port: v[3] & 2 != 0 },
            USERNAME | REALM | NONCE | SOFTWARE | ERROR_CODE | UNKNOWN_ATTRIBUTES | CHANNEL_NUMBER
            | LIFETIME | REQUESTED_TRANSPORT | EVEN_PORT | RESERVATION_TOKEN | DONT_FRAGMENT
            | CHANGE_REQUEST => {
                return Err(WireError::BadAttribute(code));
            }
            _ => Attr::Other(code, v.to_vec()),
        })
    }
}

fn plain_addr(a: SocketAddr, out: &mut Vec<u8>) {
    out.push(0);
    match a.ip() {
        IpAddr::V4(ip) => {
            out.push(1);
            out.extend_from_slice(&a.port().to_be_bytes());
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(2);
            out.extend_from_slice(&a.port().to_be_bytes());
            out.extend_from_slice(&ip.octets());
        }
    }
}

fn xor_addr(a: SocketAddr, tid: &[u8; 12], out: &mut Vec<u8>) {
    let start = out.len();
    plain_addr(a, out);
    xor_in_place(&mut out[start..], tid);
}

/// XORs port and address with the magic cookie (and, for IPv6, the transaction id).
fn xor_in_place(v: &mut [u8], tid: &[u8; 12]) {
    let mut mask = [0u8; 16];
    mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    mask[4..].copy_from_slice(tid);
    v[2] ^= mask[0];
    v[3] ^= mask[1];
    for (i, b) in v[4..].iter_mut().enumerate() {
        *b ^= mask[i];
    }
}

fn parse_addr(v: &[u8], tid: Option<&[u8; 12]>, code: u16) -> Result<SocketAddr, WireError> {
    let len = match v.get(1) {
        Some(1) => 8,
        Some(2) => 20,
        _ => return Err(WireError::BadAttribute(code)),
    };
    if v.len() != len {
        return Err(WireError::BadAttribute(code));
    }
    let mut v = v.to_vec();
    if let Some(tid) = tid {
        xor_in_place(&mut v, tid);
    }
    let port = u16::from_be_bytes([v[2], v[3]]);
    let ip = if len == 8 {
        IpAddr::V4(Ipv4Addr::new(v[4], v[5], v[6], v[7]))
    } else {
        let mut o = [0u8; 16];
        o.copy_from_slice(&v[4..20]);
        IpAddr::V6(Ipv6Addr::from(o))
    };
    Ok(SocketAddr::new(ip, port))
}
