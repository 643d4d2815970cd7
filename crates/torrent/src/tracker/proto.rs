//! Tracker messages (BEP 3 announce, BEP 23 compact peers, BEP 7 peers6, BEP 48 scrape): parsing
//! announce queries, encoding replies, and the client-side parsing of a tracker's reply.

use crate::InfoHash;
use bt_bencode::{ByteString, Value};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The `event` of an announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A regular re-announce.
    None,
    /// The peer joined.
    Started,
    /// The peer finished downloading.
    Completed,
    /// The peer is leaving.
    Stopped,
}

impl Event {
    /// The query-string word (empty for `None`).
    pub fn as_str(self) -> &'static str {
        match self {
            Event::None => "",
            Event::Started => "started",
            Event::Completed => "completed",
            Event::Stopped => "stopped",
        }
    }
}

/// A parsed announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    /// The torrent.
    pub info_hash: InfoHash,
    /// The announcing peer's id.
    pub peer_id: [u8; 20],
    /// Its listening port.
    pub port: u16,
    /// Bytes uploaded so far.
    pub uploaded: u64,
    /// Bytes downloaded so far.
    pub downloaded: u64,
    /// Bytes still missing (0 = seeder).
    pub left: u64,
    /// What happened.
    pub event: Event,
    /// Peers wanted (`None`: the tracker's default).
    pub numwant: Option<u32>,
    /// Whether the compact format was asked for (BEP 23; the default when absent).
    pub compact: bool,
    /// Leave peer ids out of the non-compact list.
    pub no_peer_id: bool,
    /// BEP 15/7 `key`, which lets a peer prove it is the same peer after an IP change.
    pub key: Option<u32>,
}

fn field<'a>(pairs: &'a [(String, Vec<u8>)], k: &str) -> Option<&'a [u8]> {
    pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_slice())
}

fn number<T: std::str::FromStr>(pairs: &[(String, Vec<u8>)], k: &str) -> Result<Option<T>, String> {
    match field(pairs, k) {
        None => Ok(None),
        Some(v) => std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| format!("invalid {k}")),
    }
}

impl Announce {
    /// Parses the decoded query pairs of `/announce?...`; the error is the failure reason.
    pub fn from_query(pairs: &[(String, Vec<u8>)]) -> Result<Announce, String> {
        let info_hash: InfoHash = field(pairs, "info_hash")
            .ok_or("missing info_hash")?
            .try_into()
            .map_err(|_| "info_hash must be 20 bytes")?;
        let peer_id: [u8; 20] = field(pairs, "peer_id")
            .ok_or("missing peer_id")?
            .try_into()
            .map_err(|_| "peer_id must be 20 bytes")?;
        let port: u16 = number(pairs, "port")?.ok_or("missing port")?;
        if port == 0 {
            return Err("invalid port".into());
        }
        let event = match field(pairs, "event") {
            None | Some(b"") | Some(b"empty") | Some(b"paused") => Event::None,
            Some(b"started") => Event::Started,
            Some(b"completed") => Event::Completed,
            Some(b"stopped") => Event::Stopped,
            Some(_) => return Err("invalid event".into()),
        };
        let key = match field(pairs, "key") {
            None => None,
            Some(k) => std::str::from_utf8(k)
                .ok()
                .and_then(|s| u32::from_str_radix(s, 16).ok().or_else(|| s.parse().ok())),
        };
        Ok(Announce {
            info_hash,
            peer_id,
            port,
            uploaded: number(pairs, "uploaded")?.unwrap_or(0),
            downloaded: number(pairs, "downloaded")?.unwrap_or(0),
            left: number(pairs, "left")?.unwrap_or(0),
            event,
            numwant: number::<i64>(pairs, "numwant")?.map(|n| n.clamp(0, u32::MAX as i64) as u32),
            compact: field(pairs, "compact") != Some(b"0"),
            no_peer_id: field(pairs, "no_peer_id") == Some(b"1"),
            key,
        })
    }

    /// The query string a client sends (without the leading `?`).
    pub fn to_query(&self) -> String {
        use crate::urlenc::encode;
        let mut q = format!(
            "info_hash={}&peer_id={}&port={}&uploaded={}&downloaded={}&left={}&compact={}",
            encode(&self.info_hash),
            encode(&self.peer_id),
            self.port,
            self.uploaded,
            self.downloaded,
            self.left,
            u8::from(self.compact)
        );
        if self.event != Event::None {
            q.push_str("&event=");
            q.push_str(self.event.as_str());
        }
        if let Some(n) = self.numwant {
            q.push_str(&format!("&numwant={n}"));
        }
        if let Some(k) = self.key {
            q.push_str(&format!("&key={k:08x}"));
        }
        q
    }
}

/// A peer in a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its peer id, when known.
    pub peer_id: Option<[u8; 20]>,
}

/// A successful announce reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceReply {
    /// Seconds until the next regular announce.
    pub interval: u32,
    /// Seconds before which the client must not re-announce.
    pub min_interval: Option<u32>,
    /// Seeders.
    pub complete: u32,
    /// Leechers.
    pub incomplete: u32,
    /// Peers for the client to contact.
    pub peers: Vec<PeerAddr>,
}

fn key(s: &str) -> ByteString {
    ByteString::from(s.to_string())
}

fn int(n: u64) -> Value {
    Value::from(n)
}

impl AnnounceReply {
    /// Bencodes the reply; `compact` selects BEP 23 strings (`peers` + `peers6`).
    pub fn encode(&self, compact: bool, no_peer_id: bool) -> Vec<u8> {
        let mut d = BTreeMap::new();
        d.insert(key("interval"), int(self.interval as u64));
        if let Some(m) = self.min_interval {
            d.insert(key("min interval"), int(m as u64));
        }
        d.insert(key("complete"), int(self.complete as u64));
        d.insert(key("incomplete"), int(self.incomplete as u64));
        if compact {
            let (mut v4, mut v6) = (Vec::new(), Vec::new());
            for p in &self.peers {
                match p.addr.ip() {
                    IpAddr::V4(ip) => v4.extend_from_slice(&ip.octets()),
                    IpAddr::V6(ip) => v6.extend_from_slice(&ip.octets()),
                }
                let out = if p.addr.is_ipv4() { &mut v4 } else { &mut v6 };
                out.extend_from_slice(&p.addr.port().to_be_bytes());
            }
            d.insert(key("peers"), Value::ByteStr(ByteString::from(v4)));
            if !v6.is_empty() {
                d.insert(key("peers6"), Value::ByteStr(ByteString::from(v6)));
            }
        } else {
            let list = self
                .peers
                .iter()
                .map(|p| {
                    let mut pd = BTreeMap::new();
                    pd.insert(key("ip"), Value::ByteStr(ByteString::from(p.addr.ip().to_string())));
                    pd.insert(key("port"), int(p.addr.port() as u64));
                    if let (false, Some(id)) = (no_peer_id, p.peer_id) {
                        pd.insert(key("peer id"), Value::ByteStr(ByteString::from(id.to_vec())));
                    }
                    Value::Dict(pd)
                })
                .collect();
            d.insert(key("peers"), Value::List(list));
        }
        bt_bencode::to_vec(&Value::Dict(d)).unwrap_or_default()
    }

    /// Parses a tracker's reply (compact or not). `Err` carries the failure reason.
    pub fn decode(body: &[u8]) -> Result<AnnounceReply, String> {
        // The scanner first: it bounds nesting before bt_bencode recurses, and rejects string
        // lengths past the end (bt_bencode 0.8.2 overflows on a length near usize::MAX).
        match crate::bencode::value_end(body, 0) {
            Ok(end) if end == body.len() => {}
            _ => return Err("tracker reply is not bencode".into()),
        }
        let v: Value =
            bt_bencode::from_slice(body).map_err(|e| format!("tracker reply is not bencode: {e}"))?;
        let d = v.as_dict().ok_or("tracker reply is not a dictionary")?;
        if let Some(reason) = d.get(&b"failure reason"[..]).and_then(Value::as_byte_str) {
            return Err(format!("tracker refused: {}", String::from_utf8_lossy(reason)));
        }
        let num = |k: &str| d.get(k.as_bytes()).and_then(Value::as_u64);
        let mut peers = Vec::new();
        match d.get(&b"peers"[..]) {
            Some(Value::ByteStr(b)) => {
                for c in b.chunks_exact(6) {
                    let ip = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
                    peers.push(PeerAddr {
                        addr: SocketAddr::new(ip.into(), u16::from_be_bytes([c[4], c[5]])),
                        peer_id: None,
                    });
                }
            }
            Some(Value::List(l)) => {
                for p in l.iter().filter_map(Value::as_dict) {
                    let ip = p.get(&b"ip"[..]).and_then(Value::as_str).and_then(|s| s.parse::<IpAddr>().ok());
                    let port =
                        p.get(&b"port"[..]).and_then(Value::as_u64).and_then(|n| u16::try_from(n).ok());
                    let id = p
                        .get(&b"peer id"[..])
                        .and_then(Value::as_byte_str)
                        .and_then(|b| <[u8; 20]>::try_from(b.as_slice()).ok());
                    if let (Some(ip), Some(port)) = (ip, port) {
                        peers.push(PeerAddr { addr: SocketAddr::new(ip, port), peer_id: id });
                    }
                }
            }
            _ => {}
        }
        if let Some(b) = d.get(&b"peers6"[..]).and_then(Value::as_byte_str) {
            for c in b.chunks_exact(18) {
                let ip = Ipv6Addr::from(<[u8; 16]>::try_from(&c[..16]).unwrap_or_default());
                peers.push(PeerAddr {
                    addr: SocketAddr::new(ip.into(), u16::from_be_bytes([c[16], c[17]])),
                    peer_id: None,
                });
            }
        }
        Ok(AnnounceReply {
            interval: num("interval").unwrap_or(1800).min(u32::MAX as u64) as u32,
            min_interval: num("min interval").map(|n| n.min(u32::MAX as u64) as u32),
            complete: num("complete").unwrap_or(0) as u32,
            incomplete: num("incomplete").unwrap_or(0) as u32,
            peers,
        })
    }
}

/// Bencodes a failure reply.
pub fn failure(reason: &str) -> Vec<u8> {
    let mut d = BTreeMap::new();
    d.insert(key("failure reason"), Value::ByteStr(ByteString::from(reason.to_string())));
    bt_bencode::to_vec(&Value::Dict(d)).unwrap_or_default()
}

/// One torrent's scrape counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScrapeEntry {
    /// Seeders.
    pub complete: u32,
    /// Completed downloads ever reported.
    pub downloaded: u32,
    /// Leechers.
    pub incomplete: u32,
}

/// Bencodes a scrape reply.
pub fn encode_scrape(entries: &[(InfoHash, ScrapeEntry)]) -> Vec<u8> {
    let files = entries
        .iter()
        .map(|(h, e)| {
            let mut d = BTreeMap::new();
            d.insert(key("complete"), int(e.complete as u64));
            d.insert(key("downloaded"), int(e.downloaded as u64));
            d.insert(key("incomplete"), int(e.incomplete as u64));
            (ByteString::from(h.to_vec()), Value::Dict(d))
        })
        .collect();
    let mut top = BTreeMap::new();
    top.insert(key("files"), Value::Dict(files));
    bt_bencode::to_vec(&Value::Dict(top)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::urlenc::parse_query;

    fn sample() -> Announce {
        Announce {
            info_hash: [0xAB; 20],
            peer_id: *b"-AN0001-abcdefghijkl",
            port: 6881,
            uploaded: 1,
            downloaded: 2,
            left: 3,
            event: Event::Started,
            numwant: Some(10),
            compact: true,
            no_peer_id: false,
            key: Some(0xdeadbeef),
        }
    }

    #[test]
    fn announce_query_round_trip() {
        let a = sample();
        assert_eq!(Announce::from_query(&parse_query(&a.to_query()).unwrap()).unwrap(), a);
    }

    #[test]
    fn announce_rejects_bad_fields() {
        let q = |s: &str| Announce::from_query(&parse_query(s).unwrap());
        assert!(q("peer_id=aaaaaaaaaaaaaaaaaaaa&port=1").unwrap_err().contains("info_hash"));
        assert!(q("info_hash=short&peer_id=aaaaaaaaaaaaaaaaaaaa&port=1").is_err());
        assert!(q("info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=aaaaaaaaaaaaaaaaaaaa&port=99999").is_err());
        assert!(q("info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=aaaaaaaaaaaaaaaaaaaa&port=1&event=bogus").is_err());
        assert!(q("info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=aaaaaaaaaaaaaaaaaaaa&port=1").is_ok());
    }

    #[test]
    fn reply_with_a_huge_string_length_is_an_error() {
        // Found by fuzzing (torrent_tracker): a string length of u64::MAX overflowed in
        // bt_bencode (minimised input, then the original one with it as a dictionary key).
        for reply in [&b"18446744073709551615:"[..], b"d0000000000000000000018446744073709551615:de0:dee"] {
            assert!(AnnounceReply::decode(reply).unwrap_err().contains("not bencode"));
        }
        let deep = [b"l".repeat(10_000), b"e".repeat(10_000)].concat();
        assert!(AnnounceReply::decode(&deep).is_err());
    }

    #[test]
    fn replies_round_trip_compact_and_not() {
        let reply = AnnounceReply {
            interval: 60,
            min_interval: Some(30),
            complete: 1,
            incomplete: 2,
            peers: vec![
                PeerAddr { addr: "10.0.0.1:6881".parse().unwrap(), peer_id: Some([7; 20]) },
                PeerAddr { addr: "[::1]:6882".parse().unwrap(), peer_id: Some([8; 20]) },
            ],
        };
        let compact = AnnounceReply::decode(&reply.encode(true, false)).unwrap();
        assert_eq!(
            compact.peers.iter().map(|p| p.addr).collect::<Vec<_>>(),
            reply.peers.iter().map(|p| p.addr).collect::<Vec<_>>()
        );
        assert_eq!(AnnounceReply::decode(&reply.encode(false, false)).unwrap(), reply);
        assert!(AnnounceReply::decode(&failure("nope")).unwrap_err().contains("nope"));
    }
}
