//! KRPC (BEP 5): the DHT's bencoded query/response/error messages over UDP, as a pure codec with
//! limits on everything a remote node controls (packet size, string and list lengths).

use bt_bencode::{ByteString, Value};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use thiserror::Error;

/// A 160-bit DHT node id (or info hash / lookup target, which share its space).
pub type Id = [u8; 20];

/// Largest datagram accepted or produced; real KRPC packets stay well under 1500 bytes.
pub const MAX_PACKET: usize = 2048;
/// Longest transaction id accepted (mainline uses 2 bytes, others up to 4 or 8).
pub const MAX_TID: usize = 16;
/// Longest announce/get_peers token accepted.
pub const MAX_TOKEN: usize = 64;
/// Most compact node entries read from one `nodes` string.
pub const MAX_NODES: usize = 32;
/// Most peer entries read from one `values` list.
pub const MAX_VALUES: usize = 200;
/// Longest error text kept.
pub const MAX_ERROR_TEXT: usize = 256;

/// Error code 201: a generic error.
pub const ERR_GENERIC: i64 = 201;
/// Error code 202: a server error.
pub const ERR_SERVER: i64 = 202;
/// Error code 203: a protocol error (malformed packet, bad arguments, bad token).
pub const ERR_PROTOCOL: i64 = 203;
/// Error code 204: the method is unknown.
pub const ERR_METHOD_UNKNOWN: i64 = 204;

/// A node as the DHT passes it around: its id and UDP address (26-byte compact form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeInfo {
    /// The node's id.
    pub id: Id,
    /// Where it listens.
    pub addr: SocketAddrV4,
}

/// One KRPC message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The transaction id, echoed in the reply.
    pub tid: Vec<u8>,
    /// The sender's client version (`v`), if it sent one.
    pub version: Option<Vec<u8>>,
    /// BEP 42's `ip`: the requester's address as the responder sees it.
    pub ip: Option<SocketAddrV4>,
    /// What the message says.
    pub body: Body,
}

/// The three kinds of KRPC message (`y` = q, r, e).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A query.
    Query(Query),
    /// A response (its method is known only from the transaction it answers).
    Response(Response),
    /// An error reply.
    Error {
        /// 201..=204 (others are passed through).
        code: i64,
        /// Human-readable text.
        message: String,
    },
}

/// The four BEP 5 queries; each carries the querying node's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Are you there?
    Ping {
        /// Querier's id.
        id: Id,
    },
    /// Which nodes do you know closest to `target`?
    FindNode {
        /// Querier's id.
        id: Id,
        /// The id looked for.
        target: Id,
    },
    /// Which peers do you know for `info_hash` (else: closest nodes)?
    GetPeers {
        /// Querier's id.
        id: Id,
        /// The torrent.
        info_hash: Id,
    },
    /// Remember me as a peer of `info_hash`.
    AnnouncePeer {
        /// Querier's id.
        id: Id,
        /// The torrent.
        info_hash: Id,
        /// The peer's port (ignored when `implied_port`).
        port: u16,
        /// The token from an earlier get_peers reply.
        token: Vec<u8>,
        /// Use the UDP source port instead of `port` (for peers behind NAT / uTP).
        implied_port: bool,
    },
}

impl Query {
    /// The querying node's id.
    pub fn id(&self) -> Id {
        match self {
            Query::Ping { id }
            | Query::FindNode { id, .. }
            | Query::GetPeers { id, .. }
            | Query::AnnouncePeer { id, .. } => *id,
        }
    }
}

/// A response: every one has `id`; find_node/get_peers add `nodes`, get_peers adds `token` and
/// maybe `values`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// Responder's id.
    pub id: Id,
    /// Closer nodes.
    pub nodes: Vec<NodeInfo>,
    /// Peers of the torrent asked for.
    pub values: Vec<SocketAddrV4>,
    /// Token for a later announce_peer.
    pub token: Option<Vec<u8>>,
}

/// Why a datagram is not a usable KRPC message. `tid` is set when the transaction id could be
/// read, so a query can still get a 203 error back.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("bad KRPC message: {what}")]
pub struct DecodeError {
    /// The transaction id, when it was readable.
    pub tid: Option<Vec<u8>>,
    /// Whether it was a query (so an error reply is appropriate).
    pub was_query: bool,
    /// The error code to answer with (203 or 204).
    pub code: i64,
    /// What was wrong.
    pub what: &'static str,
}

type Dict = BTreeMap<ByteString, Value>;

fn bytes<'a>(d: &'a Dict, k: &str) -> Option<&'a [u8]> {
    d.get(k.as_bytes()).and_then(Value::as_byte_str).map(|b| &b[..])
}

fn id_of(d: &Dict, k: &str) -> Option<Id> {
    bytes(d, k).and_then(|b| b.try_into().ok())
}

/// Encodes 6-byte compact peer info.
pub fn compact_peer(a: SocketAddrV4) -> [u8; 6] {
    let mut out = [0u8; 6];
    out[..4].copy_from_slice(&a.ip().octets());
    out[4..].copy_from_slice(&a.port().to_be_bytes());
    out
}

/// Decodes 6-byte compact peer info.
pub fn parse_peer(b: &[u8]) -> Option<SocketAddrV4> {
    let b: &[u8; 6] = b.try_into().ok()?;
    Some(SocketAddrV4::new(Ipv4Addr::new(b[0], b[1], b[2], b[3]), u16::from_be_bytes([b[4], b[5]])))
}

/// Decodes a `nodes` string (26 bytes each), keeping at most [`MAX_NODES`] and skipping port 0.
pub fn parse_nodes(b: &[u8]) -> Option<Vec<NodeInfo>> {
    if !b.len().is_multiple_of(26) {
        return None;
    }
    Some(
        b.chunks_exact(26)
            .take(MAX_NODES)
            .filter_map(|c| {
                let addr = parse_peer(&c[20..])?;
                (addr.port() != 0).then(|| NodeInfo { id: c[..20].try_into().expect("20 bytes"), addr })
            })
            .collect(),
    )
}

/// Encodes a `nodes` string.
pub fn encode_nodes(nodes: &[NodeInfo]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nodes.len() * 26);
    for n in nodes {
        out.extend_from_slice(&n.id);
        out.extend_from_slice(&compact_peer(n.addr));
    }
    out
}

fn bs(b: &[u8]) -> Value {
    Value::ByteStr(ByteString::from(b.to_vec()))
}

fn key(k: &str) -> ByteString {
    ByteString::from(k)
}

impl Message {
    /// Decodes one datagram.
    pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
        let fail = |tid: Option<Vec<u8>>, was_query, code, what| DecodeError { tid, was_query, code, what };
        if buf.len() > MAX_PACKET {
            return Err(fail(None, false, ERR_PROTOCOL, "packet too large"));
        }
        // Bound nesting before handing the bytes to the recursive decoder.
        match crate::bencode::value_end(buf, 0) {
            Ok(end) if end == buf.len() => {}
            _ => return Err(fail(None, false, ERR_PROTOCOL, "not a bencoded value")),
        }
        let v: Value =
            bt_bencode::from_slice(buf).map_err(|_| fail(None, false, ERR_PROTOCOL, "not bencode"))?;
        let d = v.as_dict().ok_or(fail(None, false, ERR_PROTOCOL, "not a dictionary"))?;
        let tid = bytes(d, "t").filter(|t| t.len() <= MAX_TID).map(<[u8]>::to_vec).ok_or(fail(
            None,
            false,
            ERR_PROTOCOL,
            "missing transaction id",
        ))?;
        let y = bytes(d, "y").unwrap_or_default();
        let is_q = y == b"q";
        let err = |code, what| fail(Some(tid.clone()), is_q, code, what);
        let version = bytes(d, "v").filter(|v| v.len() <= 16).map(<[u8]>::to_vec);
        let ip = bytes(d, "ip").and_then(parse_peer);
        let body = match y {
            b"q" => {
                let method = bytes(d, "q").ok_or(err(ERR_PROTOCOL, "missing method"))?;
                let a = d
                    .get(&b"a"[..])
                    .and_then(Value::as_dict)
                    .ok_or(err(ERR_PROTOCOL, "missing arguments"))?;
                let id = id_of(a, "id").ok_or(err(ERR_PROTOCOL, "missing or bad id"))?;
                let want = |k| id_of(a, k).ok_or(err(ERR_PROTOCOL, "missing or bad 20-byte argument"));
                Body::Query(match method {
                    b"ping" => Query::Ping { id },
                    b"find_node" => Query::FindNode { id, target: want("target")? },
                    b"get_peers" => Query::GetPeers { id, info_hash: want("info_hash")? },
                    b"announce_peer" => {
                        let info_hash = want("info_hash")?;
                        let implied_port = a
                            .get(&b"implied_port"[..])
                            .and_then(crate::bencode::as_int)
                            .is_some_and(|n| n != 0);
                        let port = a
                            .get(&b"port"[..])
                            .and_then(crate::bencode::as_int)
                            .and_then(|n| u16::try_from(n).ok())
                            .filter(|&p| p != 0 || implied_port);
                        let port = match (port, implied_port) {
                            (Some(p), _) => p,
                            (None, true) => 0,
                            (None, false) => return Err(err(ERR_PROTOCOL, "missing or bad port")),
                        };
                        let token = bytes(a, "token")
                            .filter(|t| t.len() <= MAX_TOKEN)
                            .ok_or(err(ERR_PROTOCOL, "missing or bad token"))?
                            .to_vec();
                        Query::AnnouncePeer { id, info_hash, port, token, implied_port }
                    }
                    _ => return Err(err(ERR_METHOD_UNKNOWN, "method unknown")),
                })
            }
            b"r" => {
                let r = d.get(&b"r"[..]).and_then(Value::as_dict).ok_or(err(ERR_PROTOCOL, "missing r"))?;
                let id = id_of(r, "id").ok_or(err(ERR_PROTOCOL, "missing or bad id"))?;
                let nodes = match bytes(r, "nodes") {
                    None => Vec::new(),
                    Some(b) => parse_nodes(b).ok_or(err(ERR_PROTOCOL, "bad nodes"))?,
                };
                let values = match r.get(&b"values"[..]) {
                    None => Vec::new(),
                    Some(v) => v
                        .as_list()
                        .ok_or(err(ERR_PROTOCOL, "bad values"))?
                        .iter()
                        .take(MAX_VALUES)
                        .filter_map(|p| p.as_byte_str().and_then(|b| parse_peer(b)))
                        .filter(|a| a.port() != 0)
                        .collect(),
                };
                let token = bytes(r, "token").filter(|t| t.len() <= MAX_TOKEN).map(<[u8]>::to_vec);
                Body::Response(Response { id, nodes, values, token })
            }
            b"e" => {
                let l = d.get(&b"e"[..]).and_then(Value::as_list).ok_or(err(ERR_PROTOCOL, "missing e"))?;
                let code =
                    l.first().and_then(crate::bencode::as_int).ok_or(err(ERR_PROTOCOL, "bad error code"))?;
                let message = l
                    .get(1)
                    .and_then(Value::as_byte_str)
                    .map(|b| String::from_utf8_lossy(&b[..b.len().min(MAX_ERROR_TEXT)]).into_owned())
                    .unwrap_or_default();
                Body::Error { code, message }
            }
            _ => return Err(err(ERR_PROTOCOL, "unknown message type")),
        };
        Ok(Message { tid, version, ip, body })
    }

    /// Encodes the message as one datagram.
    pub fn encode(&self) -> Vec<u8> {
        let mut d = Dict::new();
        d.insert(key("t"), bs(&self.tid));
        if let Some(v) = &self.version {
            d.insert(key("v"), bs(v));
        }
        if let Some(ip) = self.ip {
            d.insert(key("ip"), bs(&compact_peer(ip)));
        }
        match &self.body {
            Body::Query(q) => {
                d.insert(key("y"), bs(b"q"));
                let mut a = Dict::new();
                a.insert(key("id"), bs(&q.id()));
                let method = match q {
                    Query::Ping { .. } => "ping",
                    Query::FindNode { target, .. } => {
                        a.insert(key("target"), bs(target));
                        "find_node"
                    }
                    Query::GetPeers { info_hash, .. } => {
                        a.insert(key("info_hash"), bs(info_hash));
                        "get_peers"
                    }
                    Query::AnnouncePeer { info_hash, port, token, implied_port, .. } => {
                        a.insert(key("info_hash"), bs(info_hash));
                        a.insert(key("port"), Value::from(*port));
                        a.insert(key("token"), bs(token));
                        if *implied_port {
                            a.insert(key("implied_port"), Value::from(1u8));
                        }
                        "announce_peer"
                    }
                };
                d.insert(key("q"), bs(method.as_bytes()));
                d.insert(key("a"), Value::Dict(a));
            }
            Body::Response(r) => {
                d.insert(key("y"), bs(b"r"));
                let mut m = Dict::new();
                m.insert(key("id"), bs(&r.id));
                if !r.nodes.is_empty() {
                    m.insert(key("nodes"), bs(&encode_nodes(&r.nodes)));
                }
                if !r.values.is_empty() {
                    m.insert(
                        key("values"),
                        Value::List(r.values.iter().map(|a| bs(&compact_peer(*a))).collect()),
                    );
                }
                if let Some(t) = &r.token {
                    m.insert(key("token"), bs(t));
                }
                d.insert(key("r"), Value::Dict(m));
            }
            Body::Error { code, message } => {
                d.insert(key("y"), bs(b"e"));
                d.insert(key("e"), Value::List(vec![Value::from(*code), bs(message.as_bytes())]));
            }
        }
        bt_bencode::to_vec(&Value::Dict(d)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr() -> impl Strategy<Value = SocketAddrV4> {
        (any::<[u8; 4]>(), 1u16..).prop_map(|(ip, port)| SocketAddrV4::new(ip.into(), port))
    }

    fn query() -> impl Strategy<Value = Query> {
        prop_oneof![
            any::<Id>().prop_map(|id| Query::Ping { id }),
            (any::<Id>(), any::<Id>()).prop_map(|(id, target)| Query::FindNode { id, target }),
            (any::<Id>(), any::<Id>()).prop_map(|(id, info_hash)| Query::GetPeers { id, info_hash }),
            (
                any::<Id>(),
                any::<Id>(),
                1u16..,
                proptest::collection::vec(any::<u8>(), 0..MAX_TOKEN),
                any::<bool>()
            )
                .prop_map(|(id, info_hash, port, token, implied_port)| Query::AnnouncePeer {
                    id,
                    info_hash,
                    port,
                    token,
                    implied_port
                }),
        ]
    }

    fn body() -> impl Strategy<Value = Body> {
        prop_oneof![
            query().prop_map(Body::Query),
            (
                any::<Id>(),
                proptest::collection::vec(
                    (any::<Id>(), addr()).prop_map(|(id, addr)| NodeInfo { id, addr }),
                    0..8
                ),
                proptest::collection::vec(addr(), 0..20),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
            )
                .prop_map(|(id, nodes, values, token)| Body::Response(Response {
                    id,
                    nodes,
                    values,
                    token
                })),
            (201i64..=204, "[a-zA-Z ]{0,40}").prop_map(|(code, message)| Body::Error { code, message }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(tid in proptest::collection::vec(any::<u8>(), 0..MAX_TID),
                      version in proptest::option::of(proptest::collection::vec(any::<u8>(), 4)),
                      ip in proptest::option::of(addr()),
                      body in body()) {
            let m = Message { tid, version, ip, body };
            let wire = m.encode();
            prop_assert!(wire.len() <= MAX_PACKET);
            prop_assert_eq!(Message::decode(&wire), Ok(m));
        }

        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Message::decode(&data);
        }
    }

    #[test]
    fn decodes_bep5_examples() {
        let m = Message::decode(b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe").unwrap();
        assert_eq!(m.tid, b"aa");
        assert_eq!(m.body, Body::Query(Query::Ping { id: *b"abcdefghij0123456789" }));
        let m = Message::decode(
            b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe",
        )
        .unwrap();
        assert_eq!(
            m.body,
            Body::Query(Query::AnnouncePeer {
                id: *b"abcdefghij0123456789",
                info_hash: *b"mnopqrstuvwxyz123456",
                port: 6881,
                token: b"aoeusnth".to_vec(),
                implied_port: false
            })
        );
        let m = Message::decode(b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee").unwrap();
        assert_eq!(m.body, Body::Error { code: 201, message: "A Generic Error Ocurred".into() });
        let r = Message::decode(b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re").unwrap();
        assert!(matches!(r.body, Body::Response(Response { id, .. }) if id == *b"mnopqrstuvwxyz123456"));
    }

    #[test]
    fn errors_carry_the_transaction_and_code() {
        let e = Message::decode(b"d1:ad2:id20:abcdefghij0123456789e1:q4:vote1:t2:xy1:y1:qe").unwrap_err();
        assert_eq!((e.tid.as_deref(), e.was_query, e.code), (Some(&b"xy"[..]), true, ERR_METHOD_UNKNOWN));
        let e = Message::decode(b"d1:ad2:id3:abce1:q4:ping1:t2:xy1:y1:qe").unwrap_err();
        assert_eq!((e.code, e.was_query), (ERR_PROTOCOL, true));
        assert!(Message::decode(&vec![b'l'; 5000]).is_err());
        assert!(Message::decode(b"d1:t2:aa1:y1:rxe").is_err());
    }
}
