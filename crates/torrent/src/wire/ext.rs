//! The extension protocol (BEP 10) and the extensions carried over it: metadata exchange
//! (BEP 9, `ut_metadata`) and peer exchange (BEP 11, `ut_pex`). Pure codecs for the payload of
//! an EXTENDED message (id 20): the handshake (id 0) and the bencoded extension messages.

use crate::bencode::{self, as_int};
use bt_bencode::{ByteString, Value};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use thiserror::Error;

/// Message id of every BEP 10 message on the peer wire.
pub const EXTENDED: u8 = 20;
/// Extended message id of the extension handshake.
pub const HANDSHAKE_ID: u8 = 0;
/// The id we ask peers to use when they send us `ut_metadata` messages.
pub const OUR_UT_METADATA: u8 = 1;
/// The id we ask peers to use when they send us `ut_pex` messages.
pub const OUR_UT_PEX: u8 = 2;
/// Metadata is exchanged in pieces of this size (the last may be shorter).
pub const METADATA_PIECE: usize = 16 * 1024;
/// Largest info dictionary we fetch or believe a peer about (real ones are far smaller).
pub const MAX_METADATA_SIZE: u64 = 8 * 1024 * 1024;
/// Most peers read from one PEX message (BEP 11 asks senders for at most 50).
pub const MAX_PEX_PEERS: usize = 200;

/// An EXTENDED message carrying `payload` under extended id `id`.
pub fn message(id: u8, payload: Vec<u8>) -> crate::wire::Message {
    crate::wire::Message::Extended { id, payload: Bytes::from(payload) }
}

/// Why an extension payload is not valid.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ExtError {
    /// Not well-formed bencode, or not a dictionary where one is required.
    #[error("malformed extension message: {0}")]
    Malformed(&'static str),
    /// A well-formed message with a value out of range.
    #[error("extension message out of range: {0}")]
    OutOfRange(&'static str),
}

fn dict_of(buf: &[u8]) -> Result<BTreeMap<ByteString, Value>, ExtError> {
    // The scanner bounds nesting before bt_bencode recurses.
    let end = bencode::value_end(buf, 0).map_err(|_| ExtError::Malformed("bad bencode"))?;
    if end != buf.len() {
        return Err(ExtError::Malformed("trailing bytes"));
    }
    match bt_bencode::from_slice::<Value>(buf) {
        Ok(Value::Dict(d)) => Ok(d),
        Ok(_) => Err(ExtError::Malformed("not a dictionary")),
        Err(_) => Err(ExtError::Malformed("bad bencode")),
    }
}

fn int(d: &BTreeMap<ByteString, Value>, k: &str) -> Option<i64> {
    d.get(k.as_bytes()).and_then(as_int)
}

fn bytes_of<'a>(d: &'a BTreeMap<ByteString, Value>, k: &str) -> Option<&'a [u8]> {
    d.get(k.as_bytes()).and_then(Value::as_byte_str).map(|b| &b[..])
}

fn key(k: &str) -> ByteString {
    ByteString::from(k)
}

/// The BEP 10 extension handshake: which extensions the sender speaks (and under which ids it
/// wants to receive them), plus facts about itself. Unknown keys are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtHandshake {
    /// Extension name → the id the sender wants it sent under (0 = disabled, left out).
    pub m: BTreeMap<String, u8>,
    /// Size of the info dictionary in bytes (BEP 9), when the sender has it.
    pub metadata_size: Option<u64>,
    /// Client name and version (`v`).
    pub client: Option<String>,
    /// The sender's listening TCP port (`p`).
    pub listen_port: Option<u16>,
    /// How many outstanding requests the sender queues (`reqq`).
    pub reqq: Option<u32>,
}

impl ExtHandshake {
    /// The id the sender wants `name` messages sent under, if it supports them.
    pub fn id_of(&self, name: &str) -> Option<u8> {
        self.m.get(name).copied().filter(|&i| i != 0)
    }

    /// Bencoded payload (without the extended id byte).
    pub fn encode(&self) -> Vec<u8> {
        let mut d = BTreeMap::new();
        let m: BTreeMap<ByteString, Value> = self.m.iter().map(|(k, v)| (key(k), Value::from(*v))).collect();
        d.insert(key("m"), Value::Dict(m));
        if let Some(s) = self.metadata_size {
            d.insert(key("metadata_size"), Value::from(s));
        }
        if let Some(v) = &self.client {
            d.insert(key("v"), Value::from(v.clone()));
        }
        if let Some(p) = self.listen_port {
            d.insert(key("p"), Value::from(p));
        }
        if let Some(q) = self.reqq {
            d.insert(key("reqq"), Value::from(q));
        }
        bt_bencode::to_vec(&Value::Dict(d)).unwrap_or_default()
    }

    /// Parses a payload; out-of-range values are dropped rather than fatal (clients differ).
    pub fn decode(buf: &[u8]) -> Result<ExtHandshake, ExtError> {
        let d = dict_of(buf)?;
        let mut h = ExtHandshake::default();
        if let Some(m) = d.get(&b"m"[..]).and_then(Value::as_dict) {
            for (k, v) in m.iter().take(64) {
                if let (Ok(name), Some(id)) = (std::str::from_utf8(k), as_int(v))
                    && let Ok(id) = u8::try_from(id)
                {
                    h.m.insert(name.to_string(), id);
                }
            }
        }
        h.metadata_size = int(&d, "metadata_size").and_then(|s| u64::try_from(s).ok());
        h.client = bytes_of(&d, "v").map(|v| {
            let mut name = String::from_utf8_lossy(v).into_owned();
            let mut cut = name.len().min(64);
            while !name.is_char_boundary(cut) {
                cut -= 1;
            }
            name.truncate(cut);
            name
        });
        h.listen_port = int(&d, "p").and_then(|p| u16::try_from(p).ok()).filter(|&p| p != 0);
        h.reqq = int(&d, "reqq").and_then(|q| u32::try_from(q).ok());
        Ok(h)
    }
}

/// A BEP 9 `ut_metadata` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataMsg {
    /// msg_type 0: send me metadata piece `piece`.
    Request(u32),
    /// msg_type 1: metadata piece `piece` of an info dict of `total_size` bytes.
    Data {
        /// Piece index.
        piece: u32,
        /// Size of the whole info dictionary.
        total_size: u64,
        /// The piece's bytes (after the bencoded dictionary).
        data: Bytes,
    },
    /// msg_type 2: I will not send piece `piece`.
    Reject(u32),
}

impl MetadataMsg {
    /// Bencoded payload (without the extended id byte); data follows the dictionary.
    pub fn encode(&self) -> Vec<u8> {
        let (ty, piece) = match self {
            MetadataMsg::Request(p) => (0u8, *p),
            MetadataMsg::Data { piece, .. } => (1, *piece),
            MetadataMsg::Reject(p) => (2, *p),
        };
        let mut d = BTreeMap::new();
        d.insert(key("msg_type"), Value::from(ty));
        d.insert(key("piece"), Value::from(piece));
        if let MetadataMsg::Data { total_size, .. } = self {
            d.insert(key("total_size"), Value::from(*total_size));
        }
        let mut out = bt_bencode::to_vec(&Value::Dict(d)).unwrap_or_default();
        if let MetadataMsg::Data { data, .. } = self {
            out.extend_from_slice(data);
        }
        out
    }

    /// Parses a payload: a bencoded dictionary, then (for data) the piece bytes.
    pub fn decode(buf: &Bytes) -> Result<MetadataMsg, ExtError> {
        let end = bencode::value_end(buf, 0).map_err(|_| ExtError::Malformed("bad bencode"))?;
        let d = dict_of(&buf[..end])?;
        let piece = int(&d, "piece").ok_or(ExtError::Malformed("no piece"))?;
        let piece = u32::try_from(piece).map_err(|_| ExtError::OutOfRange("piece"))?;
        if piece as u64 * METADATA_PIECE as u64 >= MAX_METADATA_SIZE {
            return Err(ExtError::OutOfRange("piece"));
        }
        let rest = buf.slice(end..);
        match int(&d, "msg_type") {
            Some(0) | Some(2) if !rest.is_empty() => Err(ExtError::Malformed("bytes after the dictionary")),
            Some(0) => Ok(MetadataMsg::Request(piece)),
            Some(2) => Ok(MetadataMsg::Reject(piece)),
            Some(1) => {
                let total = int(&d, "total_size").ok_or(ExtError::Malformed("data without total_size"))?;
                let total_size = u64::try_from(total).map_err(|_| ExtError::OutOfRange("total_size"))?;
                if rest.len() > METADATA_PIECE {
                    return Err(ExtError::OutOfRange("metadata piece longer than 16 KiB"));
                }
                Ok(MetadataMsg::Data { piece, total_size, data: rest })
            }
            _ => Err(ExtError::Malformed("unknown msg_type")),
        }
    }
}

/// A BEP 11 `ut_pex` message: peers the sender connected to or dropped since its last one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pex {
    /// Newly connected peers (listening addresses).
    pub added: Vec<SocketAddr>,
    /// Peers no longer connected.
    pub dropped: Vec<SocketAddr>,
}

fn compact(addrs: &[SocketAddr], v4: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for a in addrs {
        match (a.ip(), v4) {
            (IpAddr::V4(ip), true) => out.extend_from_slice(&ip.octets()),
            (IpAddr::V6(ip), false) => out.extend_from_slice(&ip.octets()),
            _ => continue,
        }
        out.extend_from_slice(&a.port().to_be_bytes());
    }
    out
}

fn uncompact(d: &BTreeMap<ByteString, Value>, k4: &str, k6: &str, out: &mut Vec<SocketAddr>) {
    if let Some(b) = bytes_of(d, k4) {
        for c in b.chunks_exact(6).take(MAX_PEX_PEERS) {
            let ip = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
            out.push(SocketAddr::new(ip.into(), u16::from_be_bytes([c[4], c[5]])));
        }
    }
    if let Some(b) = bytes_of(d, k6) {
        for c in b.chunks_exact(18).take(MAX_PEX_PEERS.saturating_sub(out.len())) {
            let ip: [u8; 16] = c[..16].try_into().unwrap_or([0; 16]);
            out.push(SocketAddr::new(Ipv6Addr::from(ip).into(), u16::from_be_bytes([c[16], c[17]])));
        }
    }
    out.retain(|a| a.port() != 0);
}

impl Pex {
    /// Bencoded payload (without the extended id byte): `added`/`added.f`/`added6`/`dropped`...
    pub fn encode(&self) -> Vec<u8> {
        let mut d = BTreeMap::new();
        let v4 = compact(&self.added, true);
        d.insert(key("added.f"), Value::ByteStr(vec![0u8; v4.len() / 6].into()));
        d.insert(key("added"), Value::ByteStr(v4.into()));
        let v6 = compact(&self.added, false);
        d.insert(key("added6.f"), Value::ByteStr(vec![0u8; v6.len() / 18].into()));
        d.insert(key("added6"), Value::ByteStr(v6.into()));
        d.insert(key("dropped"), Value::ByteStr(compact(&self.dropped, true).into()));
        d.insert(key("dropped6"), Value::ByteStr(compact(&self.dropped, false).into()));
        bt_bencode::to_vec(&Value::Dict(d)).unwrap_or_default()
    }

    /// Parses a payload, keeping at most [`MAX_PEX_PEERS`] of each list.
    pub fn decode(buf: &[u8]) -> Result<Pex, ExtError> {
        let d = dict_of(buf)?;
        let mut p = Pex::default();
        uncompact(&d, "added", "added6", &mut p.added);
        uncompact(&d, "dropped", "dropped6", &mut p.dropped);
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn handshake_round_trip_and_real_bytes() {
        let mut h = ExtHandshake {
            metadata_size: Some(31_337),
            client: Some("appnet 0.1".into()),
            listen_port: Some(6881),
            reqq: Some(500),
            ..Default::default()
        };
        h.m.insert("ut_metadata".into(), OUR_UT_METADATA);
        h.m.insert("ut_pex".into(), OUR_UT_PEX);
        assert_eq!(ExtHandshake::decode(&h.encode()), Ok(h.clone()));
        assert_eq!(h.id_of("ut_metadata"), Some(1));
        // As libtorrent sends it: extra keys, a disabled extension (0), yourip.
        let lt = b"d12:complete_agoi-1e1:md11:lt_donthavei7e11:ut_metadatai2e6:ut_pexi0ee13:metadata_sizei900e4:reqqi500e1:v16:libtorrent 2.0.96:yourip4:\x7f\0\0\x01e";
        let d = ExtHandshake::decode(lt).unwrap();
        assert_eq!(d.id_of("ut_metadata"), Some(2));
        assert_eq!(d.id_of("ut_pex"), None);
        assert_eq!(d.metadata_size, Some(900));
        assert_eq!(d.client.as_deref(), Some("libtorrent 2.0.9"));
        assert!(ExtHandshake::decode(b"li1ee").is_err());
        assert!(ExtHandshake::decode(b"d1:md").is_err());
    }

    #[test]
    fn metadata_messages() {
        for m in [
            MetadataMsg::Request(3),
            MetadataMsg::Reject(0),
            MetadataMsg::Data { piece: 1, total_size: 20000, data: Bytes::from(vec![7u8; 3616]) },
        ] {
            assert_eq!(MetadataMsg::decode(&Bytes::from(m.encode())), Ok(m.clone()));
        }
        let bad: &[&[u8]] = &[
            b"d8:msg_typei0ee",
            b"d8:msg_typei9e5:piecei0ee",
            b"d8:msg_typei0e5:piecei-1ee",
            b"d8:msg_typei0e5:piecei99999999ee",
            b"d8:msg_typei1e5:piecei0ee",
            b"d8:msg_typei0e5:piecei0eexx",
        ];
        for b in bad {
            assert!(MetadataMsg::decode(&Bytes::from_static(b)).is_err(), "{b:?}");
        }
        let long = MetadataMsg::Data { piece: 0, total_size: 1, data: vec![0; METADATA_PIECE + 1].into() };
        assert!(MetadataMsg::decode(&Bytes::from(long.encode())).is_err());
    }

    #[test]
    fn pex_round_trip() {
        let p = Pex {
            added: vec!["127.0.0.1:6881".parse().unwrap(), "[::1]:7000".parse().unwrap()],
            dropped: vec!["10.0.0.2:51413".parse().unwrap()],
        };
        assert_eq!(Pex::decode(&p.encode()), Ok(p));
        // Trailing partial entries and port 0 are skipped.
        let odd = b"d5:added9:\x7f\0\0\x01\x1a\xe1\x7f\0\x007:dropped6:\x7f\0\0\x01\0\0e";
        let d = Pex::decode(odd).unwrap();
        assert_eq!(d.added, vec!["127.0.0.1:6881".parse::<SocketAddr>().unwrap()]);
        assert!(d.dropped.is_empty());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = ExtHandshake::decode(&bytes);
            let _ = MetadataMsg::decode(&Bytes::from(bytes.clone()));
            let _ = Pex::decode(&bytes);
        }

        #[test]
        fn metadata_round_trip(piece in 0u32..512, total in any::<u64>(), data in proptest::collection::vec(any::<u8>(), 0..100)) {
            let m = MetadataMsg::Data { piece, total_size: total >> 1, data: data.into() };
            prop_assert_eq!(MetadataMsg::decode(&Bytes::from(m.encode())), Ok(m));
        }
    }
}
