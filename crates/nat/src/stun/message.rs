//! The STUN message: a 20-byte header (type, length, magic cookie, transaction id) and
//! attributes padded to 4 bytes (RFC 8489 §5, §14), MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT;
//! and the TURN ChannelData frame (RFC 8656 §12.4) that shares the port with it.

use super::attr::{Attr, code};
use super::crc::crc32;
use md5::{Digest, Md5};
use ring::hmac;

/// The fixed value that tells STUN from other traffic on the same port.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// Why a datagram is not a valid STUN message or ChannelData frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("too short")]
    Short,
    #[error("not a STUN message (first bits or magic cookie)")]
    NotStun,
    #[error("length field disagrees with the datagram")]
    BadLength,
    #[error("malformed attribute 0x{0:04x}")]
    BadAttribute(u16),
    #[error("FINGERPRINT does not match")]
    BadFingerprint,
}

/// The message class (RFC 8489 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

/// Methods.
pub mod method {
    pub const BINDING: u16 = 0x001;
    pub const ALLOCATE: u16 = 0x003;
    pub const REFRESH: u16 = 0x004;
    pub const SEND: u16 = 0x006;
    pub const DATA: u16 = 0x007;
    pub const CREATE_PERMISSION: u16 = 0x008;
    pub const CHANNEL_BIND: u16 = 0x009;
}

/// A STUN message. After decoding, `integrity` remembers where MESSAGE-INTEGRITY(-SHA256)
/// was so [`Message::verify`] can check it against the raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub class: Class,
    pub method: u16,
    pub tid: [u8; 12],
    pub attrs: Vec<Attr>,
    /// Offset of the integrity attribute, whether it is the SHA-256 one, and its value.
    pub integrity: Option<(usize, bool, Vec<u8>)>,
}

/// Either a STUN message or a ChannelData frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    Stun(Message),
    ChannelData { channel: u16, data: &'a [u8] },
}

/// The long-term credential key: MD5(username ":" realm ":" password) (RFC 8489 §9.2.2).
pub fn long_term_key(user: &str, realm: &str, password: &str) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(user.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    h.update(b":");
    h.update(password.as_bytes());
    h.finalize().into()
}

/// Decodes a datagram: ChannelData when the first two bits are 01, else a STUN message.
pub fn decode_datagram(buf: &[u8]) -> Result<Decoded<'_>, WireError> {
    if buf.len() < 4 {
        return Err(WireError::Short);
    }
    if buf[0] & 0xC0 == 0x40 {
        let channel = u16::from_be_bytes([buf[0], buf[1]]);
        let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        let data = buf.get(4..4 + len).ok_or(WireError::BadLength)?;
        return Ok(Decoded::ChannelData { channel, data });
    }
    Message::decode(buf).map(Decoded::Stun)
}

/// Encodes a ChannelData frame (padded to 4 bytes, as over TCP; harmless over UDP).
pub fn encode_channel_data(channel: u16, data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

impl Message {
    /// A new message with a fresh random transaction id.
    pub fn new(class: Class, method: u16) -> Message {
        Message { class, method, tid: rand::random(), attrs: Vec::new(), integrity: None }
    }

    /// A response of `class` to `self` (same method and transaction id).
    pub fn reply(&self, class: Class) -> Message {
        Message { class, method: self.method, tid: self.tid, attrs: Vec::new(), integrity: None }
    }

    /// The first attribute with `code`.
    pub fn get(&self, code: u16) -> Option<&Attr> {
        self.attrs.iter().find(|a| a.code() == code)
    }

    /// Decodes a STUN message; checks the header, the attribute lengths and FINGERPRINT.
    pub fn decode(buf: &[u8]) -> Result<Message, WireError> {
        if buf.len() < 20 {
            return Err(WireError::Short);
        }
        let ty = u16::from_be_bytes([buf[0], buf[1]]);
        let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        if ty & 0xC000 != 0 || u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) != MAGIC_COOKIE {
            return Err(WireError::NotStun);
        }
        if !len.is_multiple_of(4) || buf.len() != 20 + len {
            return Err(WireError::BadLength);
        }
        let class = match ((ty >> 7) & 0x2) | ((ty >> 4) & 0x1) {
            0 => Class::Request,
            1 => Class::Indication,
            2 => Class::Success,
            _ => Class::Error,
        };
        let method = (ty & 0x000F) | ((ty >> 1) & 0x0070) | ((ty >> 2) & 0x0F80);
        let mut tid = [0u8; 12];
        tid.copy_from_slice(&buf[8..20]);
        let mut msg = Message { class, method, tid, attrs: Vec::new(), integrity: None };
        let mut pos = 20;
        while pos < buf.len() {
            let head = buf.get(pos..pos + 4).ok_or(WireError::BadLength)?;
            let code = u16::from_be_bytes([head[0], head[1]]);
            let alen = u16::from_be_bytes([head[2], head[3]]) as usize;
            let value = buf.get(pos + 4..pos + 4 + alen).ok_or(WireError::BadLength)?;
            let next = pos + 4 + alen.div_ceil(4) * 4;
            if next > buf.len() {
                return Err(WireError::BadLength);
            }
            match code {
                code::FINGERPRINT => {
                    if alen != 4 || next != buf.len() {
                        return Err(WireError::BadAttribute(code));
                    }
                    let want = crc32(&buf[..pos]) ^ FINGERPRINT_XOR;
                    if u32::from_be_bytes([value[0], value[1], value[2], value[3]]) != want {
                        return Err(WireError::BadFingerprint);
                    }
                }
                code::MESSAGE_INTEGRITY | code::MESSAGE_INTEGRITY_SHA256 => {
                    let sha256 = code == code::MESSAGE_INTEGRITY_SHA256;
                    let ok =
                        if sha256 { (16..=32).contains(&alen) && alen.is_multiple_of(4) } else { alen == 20 };
                    if !ok {
                        return Err(WireError::BadAttribute(code));
                    }
                    // Only the first integrity attribute counts; what follows it is ignored
                    // except FINGERPRINT (§14.5).
                    if msg.integrity.is_none() {
                        msg.integrity = Some((pos, sha256, value.to_vec()));
                    }
                }
                _ if msg.integrity.is_some() => {}
                _ => msg.attrs.push(Attr::decode(code, value, &tid)?),
            }
            pos = next;
        }
        Ok(msg)
    }

    /// Checks MESSAGE-INTEGRITY(-SHA256) of the decoded `raw` bytes against `key`, in constant time.
    pub fn verify(&self, raw: &[u8], key: &[u8]) -> bool {
        let Some((pos, sha256, value)) = &self.integrity else { return false };
        let Some(covered) = raw.get(..*pos) else { return false };
        let mut head = covered.to_vec();
        let len = (*pos + 4 + value.len() - 20) as u16;
        head[2..4].copy_from_slice(&len.to_be_bytes());
        let alg = if *sha256 { hmac::HMAC_SHA256 } else { hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY };
        let tag = hmac::sign(&hmac::Key::new(alg, key), &head);
        // ring::hmac::verify compares in constant time but needs the full tag; SHA-256 may be truncated.
        let full = tag.as_ref();
        value.len() <= full.len() && constant_eq(&full[..value.len()], value)
    }

    /// Encodes the message; with `key`, appends MESSAGE-INTEGRITY (or -SHA256 when `sha256`);
    /// with `fingerprint`, appends FINGERPRINT.
    pub fn encode(&self, key: Option<(&[u8], bool)>, fingerprint: bool) -> Vec<u8> {
        let m = self.method & 0x0FFF;
        let c = match self.class {
            Class::Request => 0,
            Class::Indication => 1,
            Class::Success => 2,
            Class::Error => 3,
        };
        let ty = (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 1) << 4) | ((c & 2) << 7);
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&ty.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        out.extend_from_slice(&self.tid);
        for a in &self.attrs {
            let start = out.len();
            out.extend_from_slice(&a.code().to_be_bytes());
            out.extend_from_slice(&[0, 0]);
            a.encode_value(&self.tid, &mut out);
            let vlen = out.len() - start - 4;
            out[start + 2..start + 4].copy_from_slice(&(vlen as u16).to_be_bytes());
            out.resize(out.len() + (4 - vlen % 4) % 4, 0);
        }
        let set_len = |out: &mut Vec<u8>, extra: usize| {
            let len = (out.len() + extra - 20) as u16;
            out[2..4].copy_from_slice(&len.to_be_bytes());
        };
        if let Some((key, sha256)) = key {
            let (code, alg, size) = if sha256 {
                (code::MESSAGE_INTEGRITY_SHA256, hmac::HMAC_SHA256, 32)
            } else {
                (code::MESSAGE_INTEGRITY, hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, 20)
            };
            set_len(&mut out, 4 + size);
            let tag = hmac::sign(&hmac::Key::new(alg, key), &out);
            out.extend_from_slice(&code.to_be_bytes());
            out.extend_from_slice(&(size as u16).to_be_bytes());
            out.extend_from_slice(tag.as_ref());
        }
        if fingerprint {
            set_len(&mut out, 8);
            let crc = crc32(&out) ^ FINGERPRINT_XOR;
            out.extend_from_slice(&code::FINGERPRINT.to_be_bytes());
            out.extend_from_slice(&4u16.to_be_bytes());
            out.extend_from_slice(&crc.to_be_bytes());
        }
        set_len(&mut out, 0);
        out
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn sample() -> Message {
        let mut m = Message::new(Class::Success, method::ALLOCATE);
        let v4: SocketAddr = "192.0.2.1:32853".parse().unwrap();
        let v6: SocketAddr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853".parse().unwrap();
        m.attrs = vec![
            Attr::XorMappedAddress(v4),
            Attr::XorRelayedAddress(v6),
            Attr::XorPeerAddress(v4),
            Attr::MappedAddress(v6),
            Attr::Username("evtj:h6vY".into()),
            Attr::Realm("example.org".into()),
            Attr::Nonce("f//499k954d6OL34oL9FSTvy64sA".into()),
            Attr::ErrorCode(438, "Stale Nonce".into()),
            Attr::ChannelNumber(0x4001),
            Attr::Lifetime(600),
            Attr::Data(vec![1, 2, 3, 4, 5]),
            Attr::RequestedTransport(17),
            Attr::EvenPort(true),
            Attr::ReservationToken(*b"abcdefgh"),
            Attr::DontFragment,
            Attr::ChangeRequest { ip: true, port: false },
            Attr::ChangeRequest { ip: false, port: true },
            Attr::ResponseOrigin(v4),
            Attr::OtherAddress(v6),
            Attr::Other(0x8055, vec![9]),
        ];
        m
    }

    #[test]
    fn round_trips_every_attribute_with_integrity_and_fingerprint() {
        let m = sample();
        for sha256 in [false, true] {
            let raw = m.encode(Some((b"key", sha256)), true);
            let back = Message::decode(&raw).unwrap();
            assert_eq!(back.attrs, m.attrs);
            assert_eq!((back.class, back.method, back.tid), (m.class, m.method, m.tid));
            assert!(back.verify(&raw, b"key"));
            assert!(!back.verify(&raw, b"other"));
        }
        let plain = m.encode(None, false);
        assert_eq!(Message::decode(&plain).unwrap().attrs, m.attrs);
    }

    /// RFC 5769 §2.1: the sample request, checked with its short-term password.
    #[test]
    fn rfc5769_sample_request() {
        let hex = concat!(
            "000100582112a442b7e7a701bc34d686fa87dfae",
            "802200105354554e207465737420636c69656e74",
            "002400046e0001ff",
            "802900089 32ff9b151263b36",
            "000600096576746a3a68367659202020",
            "000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2",
            "80280004e57a3bcf"
        )
        .replace(' ', "");
        let raw: Vec<u8> =
            (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        let m = Message::decode(&raw).unwrap();
        assert_eq!(m.class, Class::Request);
        assert_eq!(m.get(code::USERNAME), Some(&Attr::Username("evtj:h6vY".into())));
        assert!(m.verify(&raw, b"VOkJxbRl1RmTxUk/WvJxBt"));
    }

    #[test]
    fn long_term_key_is_md5_of_user_realm_password() {
        // RFC 5769 §2.4 with a plain ASCII user.
        let k = long_term_key("user", "realm", "pass");
        assert_eq!(k.len(), 16);
        assert_ne!(k, long_term_key("user", "realm", "pasS"));
    }

    #[test]
    fn junk_and_truncations_are_errors_not_panics() {
        let raw = sample().encode(Some((b"k", false)), true);
        for n in 0..raw.len() {
            let _ = decode_datagram(&raw[..n]);
        }
        let mut flipped = raw.clone();
        flipped[30] ^= 0xff;
        assert!(Message::decode(&flipped).is_err());
        for seed in 0u32..2000 {
            let junk: Vec<u8> = (0..(seed % 90))
                .map(|i| (seed.wrapping_mul(2654435761).wrapping_add(i * 97) >> 7) as u8)
                .collect();
            let _ = decode_datagram(&junk);
        }
        assert_eq!(
            decode_datagram(&[0x40, 0x00, 0x00, 0x02, 7, 8]),
            Ok(Decoded::ChannelData { channel: 0x4000, data: &[7, 8] })
        );
        assert_eq!(decode_datagram(&[0x40, 0x00, 0x00, 0x09, 7]), Err(WireError::BadLength));
    }
}
