//! The UDP tracker protocol (BEP 15) as pure codecs: connect, announce, scrape and error packets,
//! and the stateless connection ids the server hands out.

use super::proto::{Announce, Event, ScrapeEntry};
use crate::InfoHash;
use std::net::{IpAddr, SocketAddr};

/// The magic constant of a connect request.
pub const PROTOCOL_ID: u64 = 0x41727101980;
/// Most info hashes in one scrape (BEP 15's practical limit).
pub const MAX_SCRAPE: usize = 74;

/// A request from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Action 0: ask for a connection id.
    Connect {
        /// Transaction id.
        tx: u32,
    },
    /// Action 1: announce.
    Announce {
        /// Connection id.
        conn: u64,
        /// Transaction id.
        tx: u32,
        /// The announce (`compact` is always true).
        announce: Announce,
    },
    /// Action 2: scrape.
    Scrape {
        /// Connection id.
        conn: u64,
        /// Transaction id.
        tx: u32,
        /// Torrents asked about.
        hashes: Vec<InfoHash>,
    },
}

/// The action number of a connect request.
pub const ACTION_CONNECT: u32 = 0;

/// The fixed header of every request: (connection id, action, transaction id), or `None` for a
/// datagram too short to have one. Lets the server check the connection id before the body.
pub fn header(b: &[u8]) -> Option<(u64, u32, u32)> {
    (b.len() >= 16).then(|| (u64_at(b, 0), u32_at(b, 8), u32_at(b, 12)))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    ((u32_at(b, at) as u64) << 32) | u32_at(b, at + 4) as u64
}

impl Request {
    /// Parses a datagram; `Err((tx, reason))` when it is broken but has a transaction id to answer.
    pub fn decode(b: &[u8]) -> Result<Request, Option<(u32, &'static str)>> {
        if b.len() < 16 {
            return Err(None);
        }
        let conn = u64_at(b, 0);
        let action = u32_at(b, 8);
        let tx = u32_at(b, 12);
        match action {
            0 if conn == PROTOCOL_ID => Ok(Request::Connect { tx }),
            0 => Err(Some((tx, "bad protocol id"))),
            1 => {
                if b.len() < 98 {
                    return Err(Some((tx, "announce too short")));
                }
                let event = match u32_at(b, 80) {
                    0 => Event::None,
                    1 => Event::Completed,
                    2 => Event::Started,
                    3 => Event::Stopped,
                    _ => return Err(Some((tx, "bad event"))),
                };
                let port = u16::from_be_bytes([b[96], b[97]]);
                if port == 0 {
                    return Err(Some((tx, "bad port")));
                }
                let numwant = u32_at(b, 92) as i32;
                let announce = Announce {
                    info_hash: b[16..36].try_into().unwrap_or_default(),
                    peer_id: b[36..56].try_into().unwrap_or_default(),
                    downloaded: u64_at(b, 56),
                    left: u64_at(b, 64),
                    uploaded: u64_at(b, 72),
                    event,
                    key: Some(u32_at(b, 88)),
                    numwant: (numwant >= 0).then_some(numwant as u32),
                    port,
                    compact: true,
                    no_peer_id: true,
                };
                Ok(Request::Announce { conn, tx, announce })
            }
            2 => {
                let body = &b[16..];
                if body.is_empty() || !body.len().is_multiple_of(20) || body.len() / 20 > MAX_SCRAPE {
                    return Err(Some((tx, "bad scrape length")));
                }
                let hashes = body.chunks_exact(20).map(|c| c.try_into().unwrap_or_default()).collect();
                Ok(Request::Scrape { conn, tx, hashes })
            }
            _ => Err(Some((tx, "unknown action"))),
        }
    }

    /// Encodes a request (the client side).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(98);
        match self {
            Request::Connect { tx } => {
                v.extend_from_slice(&PROTOCOL_ID.to_be_bytes());
                v.extend_from_slice(&0u32.to_be_bytes());
                v.extend_from_slice(&tx.to_be_bytes());
            }
            Request::Announce { conn, tx, announce: a } => {
                v.extend_from_slice(&conn.to_be_bytes());
                v.extend_from_slice(&1u32.to_be_bytes());
                v.extend_from_slice(&tx.to_be_bytes());
                v.extend_from_slice(&a.info_hash);
                v.extend_from_slice(&a.peer_id);
                v.extend_from_slice(&a.downloaded.to_be_bytes());
                v.extend_from_slice(&a.left.to_be_bytes());
                v.extend_from_slice(&a.uploaded.to_be_bytes());
                let ev: u32 = match a.event {
                    Event::None => 0,
                    Event::Completed => 1,
                    Event::Started => 2,
                    Event::Stopped => 3,
                };
                v.extend_from_slice(&ev.to_be_bytes());
                v.extend_from_slice(&0u32.to_be_bytes());
                v.extend_from_slice(&a.key.unwrap_or(0).to_be_bytes());
                v.extend_from_slice(
                    &a.numwant.map_or(-1i32, |n| n.min(i32::MAX as u32) as i32).to_be_bytes(),
                );
                v.extend_from_slice(&a.port.to_be_bytes());
            }
            Request::Scrape { conn, tx, hashes } => {
                v.extend_from_slice(&conn.to_be_bytes());
                v.extend_from_slice(&2u32.to_be_bytes());
                v.extend_from_slice(&tx.to_be_bytes());
                for h in hashes {
                    v.extend_from_slice(h);
                }
            }
        }
        v
    }
}

/// Connect reply.
pub fn connect_reply(tx: u32, conn: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    v.extend_from_slice(&0u32.to_be_bytes());
    v.extend_from_slice(&tx.to_be_bytes());
    v.extend_from_slice(&conn.to_be_bytes());
    v
}

/// Announce reply with compact peers of the request's address family.
pub fn announce_reply(
    tx: u32,
    interval: u32,
    leechers: u32,
    seeders: u32,
    peers: &[SocketAddr],
    v6: bool,
) -> Vec<u8> {
    let mut v = Vec::with_capacity(20 + peers.len() * 18);
    for n in [1, tx, interval, leechers, seeders] {
        v.extend_from_slice(&n.to_be_bytes());
    }
    for p in peers {
        match (p.ip(), v6) {
            (IpAddr::V4(ip), false) => v.extend_from_slice(&ip.octets()),
            (IpAddr::V6(ip), true) => v.extend_from_slice(&ip.octets()),
            _ => continue,
        }
        v.extend_from_slice(&p.port().to_be_bytes());
    }
    v
}

/// Scrape reply.
pub fn scrape_reply(tx: u32, entries: &[ScrapeEntry]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + entries.len() * 12);
    v.extend_from_slice(&2u32.to_be_bytes());
    v.extend_from_slice(&tx.to_be_bytes());
    for e in entries {
        for n in [e.complete, e.downloaded, e.incomplete] {
            v.extend_from_slice(&n.to_be_bytes());
        }
    }
    v
}

/// Error reply.
pub fn error_reply(tx: u32, msg: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + msg.len());
    v.extend_from_slice(&3u32.to_be_bytes());
    v.extend_from_slice(&tx.to_be_bytes());
    v.extend_from_slice(msg.as_bytes());
    v
}

/// A parsed reply (the client side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Connection id granted.
    Connect {
        /// Transaction id.
        tx: u32,
        /// The id.
        conn: u64,
    },
    /// Peers.
    Announce {
        /// Transaction id.
        tx: u32,
        /// Re-announce interval.
        interval: u32,
        /// Leechers.
        leechers: u32,
        /// Seeders.
        seeders: u32,
        /// Peer addresses.
        peers: Vec<SocketAddr>,
    },
    /// An error message.
    Error {
        /// Transaction id.
        tx: u32,
        /// Why.
        message: String,
    },
}

impl Reply {
    /// Parses a reply datagram received on a socket of the given family.
    pub fn decode(b: &[u8], v6: bool) -> Option<Reply> {
        if b.len() < 8 {
            return None;
        }
        let tx = u32_at(b, 4);
        match u32_at(b, 0) {
            0 if b.len() >= 16 => Some(Reply::Connect { tx, conn: u64_at(b, 8) }),
            1 if b.len() >= 20 => {
                let step = if v6 { 18 } else { 6 };
                let peers = b[20..]
                    .chunks_exact(step)
                    .map(|c| {
                        let ip: IpAddr = if v6 {
                            <[u8; 16]>::try_from(&c[..16]).unwrap_or_default().into()
                        } else {
                            <[u8; 4]>::try_from(&c[..4]).unwrap_or_default().into()
                        };
                        SocketAddr::new(ip, u16::from_be_bytes([c[step - 2], c[step - 1]]))
                    })
                    .collect();
                Some(Reply::Announce {
                    tx,
                    interval: u32_at(b, 8),
                    leechers: u32_at(b, 12),
                    seeders: u32_at(b, 16),
                    peers,
                })
            }
            3 => Some(Reply::Error { tx, message: String::from_utf8_lossy(&b[8..]).into_owned() }),
            _ => None,
        }
    }
}

/// Stateless connection ids: a keyed hash of the client address and a two-minute epoch, so the
/// server keeps no table and a spoofed source cannot obtain a valid id.
pub fn connection_id(secret: &[u8; 16], addr: &SocketAddr, epoch: u64) -> u64 {
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    h.update(secret);
    h.update(addr.to_string().as_bytes());
    h.update(epoch.to_be_bytes());
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn announce_round_trip() {
        let a = Announce {
            info_hash: [3; 20],
            peer_id: [4; 20],
            port: 51413,
            uploaded: 5,
            downloaded: 6,
            left: 7,
            event: Event::Started,
            numwant: Some(30),
            compact: true,
            no_peer_id: true,
            key: Some(99),
        };
        let req = Request::Announce { conn: 77, tx: 8, announce: a };
        assert_eq!(Request::decode(&req.encode()).unwrap(), req);
        let c = Request::Connect { tx: 5 };
        assert_eq!(Request::decode(&c.encode()).unwrap(), c);
        let peers = vec!["1.2.3.4:5".parse().unwrap()];
        assert_eq!(
            Reply::decode(&announce_reply(8, 60, 1, 2, &peers, false), false),
            Some(Reply::Announce { tx: 8, interval: 60, leechers: 1, seeders: 2, peers })
        );
    }

    proptest! {
        #[test]
        fn garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Request::decode(&b);
            let _ = Reply::decode(&b, false);
            let _ = Reply::decode(&b, true);
        }
    }
}
