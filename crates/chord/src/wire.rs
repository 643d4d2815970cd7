//! The Chord RPC wire format: pure codecs, no I/O.
//!
//! Every message is one frame: `u32 length` (big-endian, of what follows), then
//! `u8 version` (= 1), `u8 bits` (the ring's m; 0 in a request that carries no ids), `u8 type`,
//! then the type's fields. Integers are big-endian. An id is exactly ceil(m/8) bytes and must be
//! below 2^m. A node is `id, u8 family (4|6), address (4|16 bytes), u16 port`. A list is `u8 count`
//! then its elements; a key is `u16 length` + bytes, a value `u32 length` + bytes, a text
//! `u16 length` + UTF-8. The README's Chord section has the full table.
//!
//! A ring with a secret ([`RingKey`]) authenticates every frame: the message is followed by a
//! 48-byte trailer, `u64 timestamp` (ms since the Unix epoch), `u64 request id` (random per
//! request; a response repeats its request's) and the HMAC-SHA256 of the direction, timestamp,
//! request id and message under the ring secret. A request is refused when its HMAC is wrong,
//! its timestamp is outside a window around the receiver's clock, or its (timestamp, request id)
//! was already seen within that window ([`ReplayGuard`]): a captured frame cannot be replayed
//! later, and a response answers only the request that carries its id.

use crate::id::{Id, MAX_BITS};
use ring::hmac;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The protocol version this code speaks.
pub const VERSION: u8 = 1;
/// Largest frame accepted (after the length prefix): bounds memory per connection.
pub const MAX_FRAME: usize = 4 * 1024 * 1024;
/// Longest key.
pub const MAX_KEY: usize = 1024;
/// Longest value the wire format carries (nodes may enforce a smaller limit).
pub const MAX_VALUE: usize = 1024 * 1024;
/// Most nodes in one list (successor lists, candidates, fingers).
pub const MAX_NODES: usize = 255;
/// Most ids in the avoid list of one `FindSuccessor`.
pub const MAX_AVOID: usize = 32;
/// Most items in one `Store`.
pub const MAX_ITEMS: usize = 65_535;
/// Most counters in one `Stats` answer.
pub const MAX_COUNTERS: usize = 255;
/// Longest counter name in a `Stats` answer.
pub const MAX_COUNTER_NAME: usize = 64;

/// A node on the ring: its identifier and where to reach it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeRef {
    /// Position on the circle.
    pub id: Id,
    /// The node's RPC address.
    pub addr: SocketAddr,
}

/// A stored (key, value) pair as carried by `Store`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// The application key (its id is SHA-1 of it, modulo 2^m).
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
}

/// Requests a node answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Liveness check (check_predecessor, failure detection).
    Ping,
    /// The node's whole routing state, for `appnet chord ring`.
    Info,
    /// One step of an iterative lookup for `id`, leaving out the nodes in `avoid` (found dead
    /// by the asker).
    FindSuccessor { id: Id, avoid: Vec<Id> },
    /// Predecessor and successor list, for stabilize.
    GetNeighbors,
    /// "I might be your predecessor."
    Notify { node: NodeRef },
    /// Read a key stored on this node.
    Get { key: Vec<u8> },
    /// Store a key on this node as its owner; the node replicates it to its successors.
    Put { key: Vec<u8>, value: Vec<u8> },
    /// Delete a key on this node and its replicas.
    Delete { key: Vec<u8> },
    /// Keep these items (replication and hand-over); never forwarded.
    Store { items: Vec<Item> },
    /// Graceful leave: `node` is leaving; here are its predecessor and successors.
    Leaving { node: NodeRef, pred: Option<NodeRef>, succs: Vec<NodeRef> },
    /// Recursive lookup of `id`: the node forwards it hop by hop and answers with `Routed`;
    /// `hops` counts the forwards so far.
    Route { id: Id, hops: u8 },
    /// The node's counters (items, bytes, RPCs, lookups, connections), for `appnet chord stats`.
    Stats,
    /// Garbage collection: the sender holds these items but is not among the owner's replica
    /// holders. Keep each one this node lacks (unless it deleted the key recently), never
    /// overwriting a value it has; `Ok` means the sender may drop them.
    Adopt { items: Vec<Item> },
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ErrorCode {
    /// The request's version is not one this node speaks.
    BadVersion = 1,
    /// The request could not be parsed.
    Malformed = 2,
    /// The request's ids have a different m than this ring.
    WrongRing = 3,
    /// A key, value or frame over the limit.
    TooLarge = 4,
    /// Anything else (the node is leaving, ...).
    Unavailable = 5,
    /// The ring has a secret and the request carried no valid HMAC (or was stale or replayed).
    Unauthenticated = 6,
}

impl ErrorCode {
    fn from_u8(v: u8) -> Option<ErrorCode> {
        Some(match v {
            1 => ErrorCode::BadVersion,
            2 => ErrorCode::Malformed,
            3 => ErrorCode::WrongRing,
            4 => ErrorCode::TooLarge,
            5 => ErrorCode::Unavailable,
            6 => ErrorCode::Unauthenticated,
            _ => return None,
        })
    }
}

/// Answers to requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// Answer to `Ping`: who answered.
    Pong { node: NodeRef },
    /// Answer to `Info`.
    Info {
        node: NodeRef,
        pred: Option<NodeRef>,
        succs: Vec<NodeRef>,
        fingers: Vec<(u8, NodeRef)>,
        items: u64,
    },
    /// Lookup done: the id's successor is `succs[0]` (the rest follow it on the ring).
    Found { succs: Vec<NodeRef> },
    /// Lookup continues: ask these nodes next, best first.
    Closer { nodes: Vec<NodeRef> },
    /// Answer to `GetNeighbors`.
    Neighbors { pred: Option<NodeRef>, succs: Vec<NodeRef> },
    /// Done (Notify, Put, Store, Leaving).
    Ok,
    /// Answer to `Get`.
    Value { value: Option<Vec<u8>> },
    /// Answer to `Delete`.
    Deleted { existed: bool },
    /// Answer to `Route`: the id's successor list and the hops the query travelled.
    Routed { succs: Vec<NodeRef>, hops: u8 },
    /// Answer to `Stats`: named counters, in a stable order.
    Stats { counters: Vec<(String, u64)> },
    /// The request was refused.
    Error { code: ErrorCode, message: String },
}

/// Why bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The frame ended early.
    #[error("message truncated")]
    Truncated,
    /// Bytes after the last field.
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
    /// Version byte other than 1.
    #[error("unsupported protocol version {0} (this node speaks version {VERSION})")]
    Version(u8),
    /// Unknown message type.
    #[error("unknown message type {0:#04x}")]
    UnknownType(u8),
    /// m outside 1..=160, or an id that is not ceil(m/8) bytes below 2^m.
    #[error("bad identifier: {0}")]
    BadId(&'static str),
    /// A size over its limit.
    #[error("{0} too large")]
    TooLarge(&'static str),
    /// Anything else malformed.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// The receiver's memory for frames being read (shared by its connections) is used up.
    #[error("this node is receiving too much at once; try again later")]
    Busy,
}

impl WireError {
    /// The error code a node answers this decoding failure with.
    pub fn code(&self) -> ErrorCode {
        match self {
            WireError::Version(_) => ErrorCode::BadVersion,
            WireError::TooLarge(_) => ErrorCode::TooLarge,
            WireError::Busy => ErrorCode::Unavailable,
            _ => ErrorCode::Malformed,
        }
    }
}

// Message type bytes. Requests are 0x01.., responses 0x81...
const T_PING: u8 = 0x01;
const T_INFO: u8 = 0x02;
const T_FIND: u8 = 0x03;
const T_NEIGHBORS: u8 = 0x04;
const T_NOTIFY: u8 = 0x05;
const T_GET: u8 = 0x06;
const T_PUT: u8 = 0x07;
const T_DELETE: u8 = 0x08;
const T_STORE: u8 = 0x09;
const T_LEAVING: u8 = 0x0a;
const T_ROUTE: u8 = 0x0b;
const T_STATS: u8 = 0x0c;
const T_ADOPT: u8 = 0x0d;
const R_PONG: u8 = 0x81;
const R_INFO: u8 = 0x82;
const R_FOUND: u8 = 0x83;
const R_CLOSER: u8 = 0x84;
const R_NEIGHBORS: u8 = 0x85;
const R_OK: u8 = 0x86;
const R_VALUE: u8 = 0x87;
const R_DELETED: u8 = 0x88;
const R_ROUTED: u8 = 0x89;
const R_STATS: u8 = 0x8a;
const R_ERROR: u8 = 0xff;

/// Appends fields to a frame under construction.
struct Writer {
    buf: Vec<u8>,
    bits: u8,
}

impl Writer {
    fn new(bits: u8, kind: u8) -> Writer {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&[0, 0, 0, 0, VERSION, bits, kind]);
        Writer { buf, bits }
    }
    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    fn id(&mut self, id: &Id) {
        self.buf.extend_from_slice(id.wire_bytes(self.bits));
    }
    fn node(&mut self, n: &NodeRef) {
        self.id(&n.id);
        match n.addr.ip() {
            IpAddr::V4(ip) => {
                self.u8(4);
                self.buf.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                self.u8(6);
                self.buf.extend_from_slice(&ip.octets());
            }
        }
        self.buf.extend_from_slice(&n.addr.port().to_be_bytes());
    }
    fn opt_node(&mut self, n: &Option<NodeRef>) {
        match n {
            None => self.u8(0),
            Some(n) => {
                self.u8(1);
                self.node(n);
            }
        }
    }
    fn nodes(&mut self, nodes: &[NodeRef]) {
        let n = nodes.len().min(MAX_NODES);
        self.u8(n as u8);
        for node in &nodes[..n] {
            self.node(node);
        }
    }
    fn key(&mut self, k: &[u8]) {
        self.buf.extend_from_slice(&(k.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(k);
    }
    fn value(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(&(v.len() as u32).to_be_bytes());
        self.buf.extend_from_slice(v);
    }
    fn items(&mut self, items: &[Item]) {
        let n = items.len().min(MAX_ITEMS);
        self.buf.extend_from_slice(&(n as u16).to_be_bytes());
        for item in &items[..n] {
            self.key(&item.key);
            self.value(&item.value);
        }
    }
    /// UTF-8 text cut (at a character boundary) to at most `max` bytes.
    fn text(&mut self, text: &str, max: usize) {
        let mut end = text.len().min(max);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        self.key(&text.as_bytes()[..end]);
    }
    fn finish(mut self) -> Vec<u8> {
        let len = (self.buf.len() - 4) as u32;
        self.buf[..4].copy_from_slice(&len.to_be_bytes());
        self.buf
    }
}

/// Reads fields from a frame body.
struct Reader<'a> {
    buf: &'a [u8],
    bits: u8,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn id(&mut self) -> Result<Id, WireError> {
        if self.bits == 0 || self.bits > MAX_BITS {
            return Err(WireError::BadId("message carries ids but m is not in 1..=160"));
        }
        let bytes = self.take(Id::wire_len(self.bits))?;
        Id::from_wire(bytes, self.bits).ok_or(WireError::BadId("id does not fit in m bits"))
    }
    fn node(&mut self) -> Result<NodeRef, WireError> {
        let id = self.id()?;
        let ip = match self.u8()? {
            4 => {
                let b = self.take(4)?;
                IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
            }
            6 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(self.take(16)?);
                IpAddr::V6(Ipv6Addr::from(a))
            }
            _ => return Err(WireError::Malformed("address family must be 4 or 6")),
        };
        let port = self.u16()?;
        Ok(NodeRef { id, addr: SocketAddr::new(ip, port) })
    }
    fn opt_node(&mut self) -> Result<Option<NodeRef>, WireError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.node()?)),
            _ => Err(WireError::Malformed("optional node flag must be 0 or 1")),
        }
    }
    fn nodes(&mut self) -> Result<Vec<NodeRef>, WireError> {
        let n = self.u8()? as usize;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.node()?);
        }
        Ok(out)
    }
    fn key(&mut self) -> Result<Vec<u8>, WireError> {
        let n = self.u16()? as usize;
        if n > MAX_KEY {
            return Err(WireError::TooLarge("key"));
        }
        Ok(self.take(n)?.to_vec())
    }
    fn value(&mut self) -> Result<Vec<u8>, WireError> {
        let n = self.u32()? as usize;
        if n > MAX_VALUE {
            return Err(WireError::TooLarge("value"));
        }
        Ok(self.take(n)?.to_vec())
    }
    fn items(&mut self) -> Result<Vec<Item>, WireError> {
        let n = self.u16()? as usize;
        let mut items = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            items.push(Item { key: self.key()?, value: self.value()? });
        }
        Ok(items)
    }
    fn text(&mut self) -> Result<String, WireError> {
        String::from_utf8(self.key()?).map_err(|_| WireError::Malformed("text is not UTF-8"))
    }
    fn end(&self) -> Result<(), WireError> {
        if self.buf.is_empty() { Ok(()) } else { Err(WireError::Trailing(self.buf.len())) }
    }
}

/// Splits a frame body into (bits, type, fields), checking the version.
fn header(body: &[u8]) -> Result<(u8, u8, Reader<'_>), WireError> {
    if body.len() > MAX_FRAME {
        return Err(WireError::TooLarge("frame"));
    }
    if body.len() < 3 {
        return Err(WireError::Truncated);
    }
    if body[0] != VERSION {
        return Err(WireError::Version(body[0]));
    }
    let bits = body[1];
    if bits > MAX_BITS {
        return Err(WireError::BadId("m is larger than 160"));
    }
    Ok((bits, body[2], Reader { buf: &body[3..], bits }))
}

/// Reads the frame length prefix; `Err` when it announces more than [`MAX_FRAME`].
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, WireError> {
    let n = u32::from_be_bytes(prefix) as usize;
    if n > MAX_FRAME { Err(WireError::TooLarge("frame")) } else { Ok(n) }
}

/// Encodes a request as a whole frame (length prefix included). `bits` is the ring's m, or 0
/// when the sender does not know it yet (only for requests without ids).
pub fn encode_request(bits: u8, req: &Request) -> Vec<u8> {
    let kind = match req {
        Request::Ping => T_PING,
        Request::Info => T_INFO,
        Request::FindSuccessor { .. } => T_FIND,
        Request::GetNeighbors => T_NEIGHBORS,
        Request::Notify { .. } => T_NOTIFY,
        Request::Get { .. } => T_GET,
        Request::Put { .. } => T_PUT,
        Request::Delete { .. } => T_DELETE,
        Request::Store { .. } => T_STORE,
        Request::Leaving { .. } => T_LEAVING,
        Request::Route { .. } => T_ROUTE,
        Request::Stats => T_STATS,
        Request::Adopt { .. } => T_ADOPT,
    };
    let mut w = Writer::new(bits, kind);
    match req {
        Request::Ping | Request::Info | Request::GetNeighbors | Request::Stats => {}
        Request::FindSuccessor { id, avoid } => {
            w.id(id);
            let n = avoid.len().min(MAX_AVOID);
            w.u8(n as u8);
            for a in &avoid[..n] {
                w.id(a);
            }
        }
        Request::Notify { node } => w.node(node),
        Request::Get { key } | Request::Delete { key } => w.key(key),
        Request::Put { key, value } => {
            w.key(key);
            w.value(value);
        }
        Request::Store { items } | Request::Adopt { items } => w.items(items),
        Request::Leaving { node, pred, succs } => {
            w.node(node);
            w.opt_node(pred);
            w.nodes(succs);
        }
        Request::Route { id, hops } => {
            w.id(id);
            w.u8(*hops);
        }
    }
    w.finish()
}

/// Decodes a request frame body (without the length prefix): the sender's m and the request.
pub fn decode_request(body: &[u8]) -> Result<(u8, Request), WireError> {
    let (bits, kind, mut r) = header(body)?;
    let req = match kind {
        T_PING => Request::Ping,
        T_INFO => Request::Info,
        T_FIND => {
            let id = r.id()?;
            let n = r.u8()? as usize;
            if n > MAX_AVOID {
                return Err(WireError::TooLarge("avoid list"));
            }
            let mut avoid = Vec::with_capacity(n);
            for _ in 0..n {
                avoid.push(r.id()?);
            }
            Request::FindSuccessor { id, avoid }
        }
        T_NEIGHBORS => Request::GetNeighbors,
        T_NOTIFY => Request::Notify { node: r.node()? },
        T_GET => Request::Get { key: r.key()? },
        T_PUT => Request::Put { key: r.key()?, value: r.value()? },
        T_DELETE => Request::Delete { key: r.key()? },
        T_STORE => Request::Store { items: r.items()? },
        T_ADOPT => Request::Adopt { items: r.items()? },
        T_STATS => Request::Stats,
        T_LEAVING => Request::Leaving { node: r.node()?, pred: r.opt_node()?, succs: r.nodes()? },
        T_ROUTE => Request::Route { id: r.id()?, hops: r.u8()? },
        other => return Err(WireError::UnknownType(other)),
    };
    r.end()?;
    Ok((bits, req))
}

/// Encodes a response as a whole frame, stamped with the answering node's m.
pub fn encode_response(bits: u8, resp: &Response) -> Vec<u8> {
    let kind = match resp {
        Response::Pong { .. } => R_PONG,
        Response::Info { .. } => R_INFO,
        Response::Found { .. } => R_FOUND,
        Response::Closer { .. } => R_CLOSER,
        Response::Neighbors { .. } => R_NEIGHBORS,
        Response::Ok => R_OK,
        Response::Value { .. } => R_VALUE,
        Response::Deleted { .. } => R_DELETED,
        Response::Routed { .. } => R_ROUTED,
        Response::Stats { .. } => R_STATS,
        Response::Error { .. } => R_ERROR,
    };
    let mut w = Writer::new(bits, kind);
    match resp {
        Response::Pong { node } => w.node(node),
        Response::Info { node, pred, succs, fingers, items } => {
            w.node(node);
            w.opt_node(pred);
            w.nodes(succs);
            let n = fingers.len().min(MAX_NODES);
            w.u8(n as u8);
            for (k, f) in &fingers[..n] {
                w.u8(*k);
                w.node(f);
            }
            w.buf.extend_from_slice(&items.to_be_bytes());
        }
        Response::Found { succs } => w.nodes(succs),
        Response::Closer { nodes } => w.nodes(nodes),
        Response::Neighbors { pred, succs } => {
            w.opt_node(pred);
            w.nodes(succs);
        }
        Response::Ok => {}
        Response::Value { value } => match value {
            None => w.u8(0),
            Some(v) => {
                w.u8(1);
                w.value(v);
            }
        },
        Response::Deleted { existed } => w.u8(*existed as u8),
        Response::Routed { succs, hops } => {
            w.nodes(succs);
            w.u8(*hops);
        }
        Response::Stats { counters } => {
            let n = counters.len().min(MAX_COUNTERS);
            w.u8(n as u8);
            for (name, value) in &counters[..n] {
                w.text(name, MAX_COUNTER_NAME);
                w.buf.extend_from_slice(&value.to_be_bytes());
            }
        }
        Response::Error { code, message } => {
            w.u8(*code as u8);
            w.text(message, 1024);
        }
    }
    w.finish()
}

/// Decodes a response frame body: the answering node's m and the response.
pub fn decode_response(body: &[u8]) -> Result<(u8, Response), WireError> {
    let (bits, kind, mut r) = header(body)?;
    let resp = match kind {
        R_PONG => Response::Pong { node: r.node()? },
        R_INFO => {
            let node = r.node()?;
            let pred = r.opt_node()?;
            let succs = r.nodes()?;
            let n = r.u8()? as usize;
            let mut fingers = Vec::with_capacity(n);
            for _ in 0..n {
                let k = r.u8()?;
                if k >= bits {
                    return Err(WireError::Malformed("finger index not below m"));
                }
                fingers.push((k, r.node()?));
            }
            Response::Info { node, pred, succs, fingers, items: r.u64()? }
        }
        R_FOUND => Response::Found { succs: r.nodes()? },
        R_CLOSER => Response::Closer { nodes: r.nodes()? },
        R_NEIGHBORS => Response::Neighbors { pred: r.opt_node()?, succs: r.nodes()? },
        R_OK => Response::Ok,
        R_VALUE => match r.u8()? {
            0 => Response::Value { value: None },
            1 => Response::Value { value: Some(r.value()?) },
            _ => return Err(WireError::Malformed("value flag must be 0 or 1")),
        },
        R_ROUTED => Response::Routed { succs: r.nodes()?, hops: r.u8()? },
        R_DELETED => match r.u8()? {
            0 => Response::Deleted { existed: false },
            1 => Response::Deleted { existed: true },
            _ => return Err(WireError::Malformed("deleted flag must be 0 or 1")),
        },
        R_STATS => {
            let n = r.u8()? as usize;
            let mut counters = Vec::with_capacity(n);
            for _ in 0..n {
                let name = r.text()?;
                if name.len() > MAX_COUNTER_NAME {
                    return Err(WireError::TooLarge("counter name"));
                }
                counters.push((name, r.u64()?));
            }
            Response::Stats { counters }
        }
        R_ERROR => {
            let code = ErrorCode::from_u8(r.u8()?).ok_or(WireError::Malformed("unknown error code"))?;
            Response::Error { code, message: r.text()? }
        }
        other => return Err(WireError::UnknownType(other)),
    };
    r.end()?;
    Ok((bits, resp))
}

/// Bytes an authenticated frame carries after its message: timestamp, request id, HMAC.
pub const AUTH_TRAILER: usize = 8 + 8 + 32;

/// Domain separation of the HMAC input: protocol, then a direction byte.
const AUTH_LABEL: &[u8] = b"appnet-chord-1";
const DIR_REQUEST: u8 = 0;
const DIR_RESPONSE: u8 = 1;

/// Why an authenticated frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Too short to carry the trailer (sent without the ring secret).
    #[error("no authentication trailer (is the sender using the ring's --secret?)")]
    Missing,
    /// The HMAC does not match: another secret, or the frame was altered.
    #[error("bad HMAC (another secret, or the frame was altered)")]
    BadMac,
    /// The timestamp is outside the window around this node's clock (or below the replay
    /// guard's floor).
    #[error("timestamp outside the accepted window (clocks apart, or a replay)")]
    Stale,
    /// This (timestamp, request id) was already accepted.
    #[error("replayed frame")]
    Replayed,
    /// A response carrying another request's id.
    #[error("response to another request")]
    WrongRequest,
}

impl AuthError {
    /// The error code a node answers this failure with.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::Unauthenticated
    }
}

/// When and under which id a request was sent (from its trailer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    /// Milliseconds since the Unix epoch, on the sender's clock.
    pub unix_ms: u64,
    /// Random per request; the response repeats it.
    pub request_id: u64,
}

/// The ring secret as an HMAC-SHA256 key: seals and opens frames. Exists so that nodes of a
/// ring (and its clients) can refuse forged control messages (`Leaving`, `Notify`, `Store`).
pub struct RingKey {
    key: hmac::Key,
}

impl std::fmt::Debug for RingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RingKey(..)")
    }
}

impl RingKey {
    /// The key for `secret` (any bytes; every node of the ring must have the same).
    pub fn new(secret: &[u8]) -> RingKey {
        RingKey { key: hmac::Key::new(hmac::HMAC_SHA256, secret) }
    }

    fn tag(&self, dir: u8, stamp: Stamp, message: &[u8]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(AUTH_LABEL);
        ctx.update(&[dir]);
        ctx.update(&stamp.unix_ms.to_be_bytes());
        ctx.update(&stamp.request_id.to_be_bytes());
        ctx.update(message);
        ctx.sign()
    }

    fn seal(&self, dir: u8, mut frame: Vec<u8>, stamp: Stamp) -> Vec<u8> {
        let tag = self.tag(dir, stamp, frame.get(4..).unwrap_or(&[]));
        frame.extend_from_slice(&stamp.unix_ms.to_be_bytes());
        frame.extend_from_slice(&stamp.request_id.to_be_bytes());
        frame.extend_from_slice(tag.as_ref());
        let len = (frame.len().saturating_sub(4)) as u32;
        frame[..4].copy_from_slice(&len.to_be_bytes());
        frame
    }

    fn open<'a>(&self, dir: u8, body: &'a [u8]) -> Result<(&'a [u8], Stamp), AuthError> {
        let Some(split) = body.len().checked_sub(AUTH_TRAILER) else { return Err(AuthError::Missing) };
        let (message, trailer) = body.split_at(split);
        let word = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&trailer[i..i + 8]);
            u64::from_be_bytes(a)
        };
        let stamp = Stamp { unix_ms: word(0), request_id: word(8) };
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(AUTH_LABEL);
        ctx.update(&[dir]);
        ctx.update(&trailer[..16]);
        ctx.update(message);
        let expected = ctx.sign();
        if !constant_time_eq(expected.as_ref(), &trailer[16..]) {
            return Err(AuthError::BadMac);
        }
        Ok((message, stamp))
    }

    /// Appends the trailer to a whole request frame (as built by [`encode_request`]).
    pub fn seal_request(&self, frame: Vec<u8>, stamp: Stamp) -> Vec<u8> {
        self.seal(DIR_REQUEST, frame, stamp)
    }

    /// Appends the trailer to a whole response frame, answering the request `request_id`.
    pub fn seal_response(&self, frame: Vec<u8>, unix_ms: u64, request_id: u64) -> Vec<u8> {
        self.seal(DIR_RESPONSE, frame, Stamp { unix_ms, request_id })
    }

    /// Checks a request frame body's HMAC: the message (for [`decode_request`]) and its stamp,
    /// which the caller checks against its [`ReplayGuard`].
    pub fn open_request<'a>(&self, body: &'a [u8]) -> Result<(&'a [u8], Stamp), AuthError> {
        self.open(DIR_REQUEST, body)
    }

    /// Checks a response frame body's HMAC and that it answers `request_id`: the message.
    pub fn open_response<'a>(&self, body: &'a [u8], request_id: u64) -> Result<&'a [u8], AuthError> {
        let (message, stamp) = self.open(DIR_RESPONSE, body)?;
        if stamp.request_id != request_id {
            return Err(AuthError::WrongRequest);
        }
        Ok(message)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuses authenticated requests that are stale or replayed: a request is accepted when its
/// timestamp is within `window_ms` of the receiver's clock and its (timestamp, request id) was
/// not seen before. Remembered stamps are dropped once outside the window; when more than
/// `max_entries` are held, the oldest is dropped and timestamps up to it are refused from then
/// on, so the memory is bounded without opening a replay hole.
#[derive(Debug)]
pub struct ReplayGuard {
    window_ms: u64,
    max_entries: usize,
    seen: BTreeSet<Stamp>,
    floor: u64,
}

impl ReplayGuard {
    /// A guard accepting timestamps within `window_ms` of now, remembering at most
    /// `max_entries` stamps.
    pub fn new(window_ms: u64, max_entries: usize) -> ReplayGuard {
        ReplayGuard { window_ms, max_entries: max_entries.max(1), seen: BTreeSet::new(), floor: 0 }
    }

    /// Accepts `stamp` at `now_unix_ms` (and remembers it), or says why not.
    pub fn check(&mut self, stamp: Stamp, now_unix_ms: u64) -> Result<(), AuthError> {
        let oldest = now_unix_ms.saturating_sub(self.window_ms);
        while self.seen.first().is_some_and(|s| s.unix_ms < oldest) {
            self.seen.pop_first();
        }
        if stamp.unix_ms < oldest
            || stamp.unix_ms > now_unix_ms.saturating_add(self.window_ms)
            || (self.floor > 0 && stamp.unix_ms <= self.floor)
        {
            return Err(AuthError::Stale);
        }
        if !self.seen.insert(stamp) {
            return Err(AuthError::Replayed);
        }
        while self.seen.len() > self.max_entries {
            if let Some(old) = self.seen.pop_first() {
                self.floor = self.floor.max(old.unix_ms);
            }
        }
        Ok(())
    }

    /// Stamps remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no stamp is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// Milliseconds since the Unix epoch (the clock authenticated frames are stamped with).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A fresh random request id (from the system's secure random source).
pub fn fresh_request_id() -> u64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        // Unreachable on supported systems; a clock-derived id still differs per request.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return unix_ms().rotate_left(20) ^ n;
    }
    u64::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_node(bits: u8) -> impl Strategy<Value = NodeRef> {
        (any::<[u8; 20]>(), any::<u32>(), any::<u16>(), any::<bool>(), any::<[u8; 16]>()).prop_map(
            move |(b, v4, port, six, v6)| {
                let ip = if six { IpAddr::V6(Ipv6Addr::from(v6)) } else { IpAddr::V4(Ipv4Addr::from(v4)) };
                NodeRef { id: Id(b).masked(bits), addr: SocketAddr::new(ip, port) }
            },
        )
    }

    fn arb_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..max)
    }

    fn arb_request(bits: u8) -> impl Strategy<Value = Request> {
        let nodes = proptest::collection::vec(arb_node(bits), 0..5);
        prop_oneof![
            Just(Request::Ping),
            Just(Request::Info),
            Just(Request::GetNeighbors),
            Just(Request::Stats),
            (any::<[u8; 20]>(), proptest::collection::vec(any::<[u8; 20]>(), 0..4)).prop_map(
                move |(b, a)| {
                    Request::FindSuccessor {
                        id: Id(b).masked(bits),
                        avoid: a.into_iter().map(|x| Id(x).masked(bits)).collect(),
                    }
                }
            ),
            arb_node(bits).prop_map(|node| Request::Notify { node }),
            (any::<[u8; 20]>(), any::<u8>())
                .prop_map(move |(b, hops)| Request::Route { id: Id(b).masked(bits), hops }),
            arb_bytes(40).prop_map(|key| Request::Get { key }),
            arb_bytes(40).prop_map(|key| Request::Delete { key }),
            (arb_bytes(40), arb_bytes(300)).prop_map(|(key, value)| Request::Put { key, value }),
            proptest::collection::vec((arb_bytes(20), arb_bytes(50)), 0..6).prop_map(|v| Request::Store {
                items: v.into_iter().map(|(key, value)| Item { key, value }).collect()
            }),
            proptest::collection::vec((arb_bytes(20), arb_bytes(50)), 0..6).prop_map(|v| Request::Adopt {
                items: v.into_iter().map(|(key, value)| Item { key, value }).collect()
            }),
            (arb_node(bits), proptest::option::of(arb_node(bits)), nodes)
                .prop_map(|(node, pred, succs)| Request::Leaving { node, pred, succs }),
        ]
    }

    fn arb_response(bits: u8) -> impl Strategy<Value = Response> {
        let nodes = || proptest::collection::vec(arb_node(bits), 0..5);
        prop_oneof![
            arb_node(bits).prop_map(|node| Response::Pong { node }),
            (
                arb_node(bits),
                proptest::option::of(arb_node(bits)),
                nodes(),
                proptest::collection::vec((0..bits, arb_node(bits)), 0..5),
                any::<u64>()
            )
                .prop_map(|(node, pred, succs, fingers, items)| Response::Info {
                    node,
                    pred,
                    succs,
                    fingers,
                    items
                }),
            nodes().prop_map(|succs| Response::Found { succs }),
            nodes().prop_map(|nodes| Response::Closer { nodes }),
            (proptest::option::of(arb_node(bits)), nodes())
                .prop_map(|(pred, succs)| Response::Neighbors { pred, succs }),
            Just(Response::Ok),
            proptest::option::of(arb_bytes(100)).prop_map(|value| Response::Value { value }),
            any::<bool>().prop_map(|existed| Response::Deleted { existed }),
            (nodes(), any::<u8>()).prop_map(|(succs, hops)| Response::Routed { succs, hops }),
            proptest::collection::vec(("[a-z_]{1,64}", any::<u64>()), 0..8)
                .prop_map(|counters| Response::Stats { counters }),
            "[a-z é]{0,30}".prop_map(|message| Response::Error { code: ErrorCode::WrongRing, message }),
        ]
    }

    proptest! {
        #[test]
        fn requests_round_trip((bits, req) in (1u8..=160).prop_flat_map(|b| (Just(b), arb_request(b)))) {
            let frame = encode_request(bits, &req);
            prop_assert_eq!(frame_len(frame[..4].try_into().unwrap()).unwrap(), frame.len() - 4);
            prop_assert_eq!(decode_request(&frame[4..]).unwrap(), (bits, req));
        }

        #[test]
        fn responses_round_trip((bits, resp) in (1u8..=160).prop_flat_map(|b| (Just(b), arb_response(b)))) {
            let frame = encode_response(bits, &resp);
            prop_assert_eq!(decode_response(&frame[4..]).unwrap(), (bits, resp));
        }

        #[test]
        fn garbage_never_panics(body in arb_bytes(200)) {
            let _ = decode_request(&body);
            let _ = decode_response(&body);
        }
    }

    #[test]
    fn rejects_bad_versions_ids_and_sizes() {
        let mut f = encode_request(4, &Request::Ping);
        f[4] = 2;
        assert_eq!(decode_request(&f[4..]), Err(WireError::Version(2)));
        assert_eq!(WireError::Version(2).code(), ErrorCode::BadVersion);
        // id 16 does not fit in 4 bits
        let body = [VERSION, 4, T_FIND, 16, 0];
        assert!(matches!(decode_request(&body), Err(WireError::BadId(_))));
        // wrong id length for m = 4 (one byte expected)
        let body = [VERSION, 4, T_FIND, 0, 0, 1];
        assert_eq!(decode_request(&body), Err(WireError::Trailing(1)));
        // avoid list over its limit
        let body = [VERSION, 4, T_FIND, 0, 33];
        assert_eq!(decode_request(&body), Err(WireError::TooLarge("avoid list")));
        // ids in a message with m = 0
        let body = [VERSION, 0, T_FIND, 1, 0];
        assert!(matches!(decode_request(&body), Err(WireError::BadId(_))));
        // an over-long key
        let mut body = vec![VERSION, 0, T_GET];
        body.extend_from_slice(&2000u16.to_be_bytes());
        body.resize(body.len() + 2000, b'k');
        assert_eq!(decode_request(&body), Err(WireError::TooLarge("key")));
        assert!(frame_len((MAX_FRAME as u32 + 1).to_be_bytes()).is_err());
        assert_eq!(decode_request(&[VERSION, 0, 0x77]), Err(WireError::UnknownType(0x77)));
    }
}

#[cfg(test)]
mod auth_tests {
    use super::*;

    fn sealed_ping(key: &RingKey, stamp: Stamp) -> Vec<u8> {
        key.seal_request(encode_request(8, &Request::Ping), stamp)
    }

    #[test]
    fn sealed_frames_round_trip_and_keep_the_length_prefix_right() {
        let key = RingKey::new(b"ring secret");
        let stamp = Stamp { unix_ms: 1_000_000, request_id: 42 };
        let req = Request::Leaving {
            node: NodeRef { id: Id::from_u64(5), addr: "127.0.0.1:9".parse().unwrap() },
            pred: None,
            succs: vec![],
        };
        let frame = key.seal_request(encode_request(8, &req), stamp);
        assert_eq!(frame_len(frame[..4].try_into().unwrap()).unwrap(), frame.len() - 4);
        let (message, got) = key.open_request(&frame[4..]).unwrap();
        assert_eq!(got, stamp);
        assert_eq!(decode_request(message).unwrap(), (8, req));
        let resp = key.seal_response(encode_response(8, &Response::Ok), 1_000_001, 42);
        let message = key.open_response(&resp[4..], 42).unwrap();
        assert_eq!(decode_response(message).unwrap(), (8, Response::Ok));
        assert_eq!(key.open_response(&resp[4..], 43), Err(AuthError::WrongRequest));
    }

    #[test]
    fn tampered_unsigned_or_foreign_frames_are_refused() {
        let key = RingKey::new(b"ring secret");
        let stamp = Stamp { unix_ms: 1_000_000, request_id: 7 };
        let frame = sealed_ping(&key, stamp);
        // Every single flipped bit of the body (message, timestamp, id, tag) is caught.
        for i in 4..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 0x01;
            assert_eq!(key.open_request(&bad[4..]), Err(AuthError::BadMac), "byte {i}");
        }
        // Another secret, an unsigned frame, a response presented as a request.
        assert_eq!(RingKey::new(b"other").open_request(&frame[4..]), Err(AuthError::BadMac));
        let plain = encode_request(8, &Request::Ping);
        assert_eq!(key.open_request(&plain[4..]), Err(AuthError::Missing));
        let resp = key.seal_response(encode_response(8, &Response::Ok), 1, 7);
        assert_eq!(key.open_request(&resp[4..]), Err(AuthError::BadMac));
        assert_eq!(AuthError::BadMac.code(), ErrorCode::Unauthenticated);
        // Error code 6 travels on the wire.
        let err = Response::Error { code: ErrorCode::Unauthenticated, message: "no".into() };
        assert_eq!(decode_response(&encode_response(8, &err)[4..]).unwrap().1, err);
    }

    #[test]
    fn the_replay_guard_refuses_repeats_and_stale_frames_within_bounded_memory() {
        let mut g = ReplayGuard::new(30_000, 3);
        let at = |ms, id| Stamp { unix_ms: ms, request_id: id };
        let now = 1_000_000;
        assert_eq!(g.check(at(now, 1), now), Ok(()));
        assert_eq!(g.check(at(now, 1), now + 10), Err(AuthError::Replayed));
        assert_eq!(g.check(at(now, 2), now + 10), Ok(()), "another id at the same time");
        assert_eq!(g.check(at(now - 30_001, 3), now), Err(AuthError::Stale));
        assert_eq!(g.check(at(now + 30_001, 3), now), Err(AuthError::Stale));
        // Once outside the window the stamp is forgotten, and still refused as stale.
        assert_eq!(g.check(at(now, 1), now + 30_001), Err(AuthError::Stale));
        // At most 3 remembered: the oldest is dropped and its time becomes the floor.
        let mut g = ReplayGuard::new(30_000, 3);
        for (i, ms) in [(1, now), (2, now + 1), (3, now + 2), (4, now + 3)] {
            assert_eq!(g.check(at(ms, i), now + 3), Ok(()));
        }
        assert_eq!(g.len(), 3);
        assert_eq!(g.check(at(now, 1), now + 3), Err(AuthError::Stale), "the dropped stamp");
        assert_eq!(g.check(at(now + 3, 9), now + 3), Ok(()));
    }
}
