//! Gnutella 0.6 descriptors, byte-compatible with the specification (rfc-gnutella.sourceforge.net)
//! and the LimeWire / GTK-Gnutella conventions: the 23-byte header, Ping, Pong, Bye, Push, Query,
//! QueryHit (with its EQHD trailer) and the QRP ROUTE_TABLE_UPDATE, plus GGEP blocks and HUGE
//! `urn:sha1:` extensions. Pure: no I/O; every decoder returns an error (never panics) on input
//! that does not fit its length.
//!
//! All multi-byte integers are little-endian except IPv4 addresses, which are in network order.

use std::fmt;
use std::net::Ipv4Addr;
use thiserror::Error;

/// Size of the descriptor header: GUID (16), payload type, TTL, hops, payload length (u32 LE).
pub const HEADER_LEN: usize = 23;
/// Default largest payload accepted from a neighbour (LimeWire's limit is of the same order).
pub const DEFAULT_MAX_PAYLOAD: usize = 64 * 1024;
/// Descriptor IDs are 16 bytes.
pub const GUID_LEN: usize = 16;
/// First byte of a GGEP block.
pub const GGEP_MAGIC: u8 = 0xC3;
/// Separator between extensions in a Query or QueryHit result (ASCII FS).
pub const EXT_SEPARATOR: u8 = 0x1C;

/// Payload type codes of the descriptor header.
pub mod ptype {
    /// Ping: discover hosts.
    pub const PING: u8 = 0x00;
    /// Pong: a host's address and shared totals.
    pub const PONG: u8 = 0x01;
    /// Bye: the sender is closing the connection (0.6).
    pub const BYE: u8 = 0x02;
    /// QRP ROUTE_TABLE_UPDATE: a leaf's keyword table for its ultrapeer.
    pub const ROUTE_TABLE_UPDATE: u8 = 0x30;
    /// Push: ask a firewalled servent to connect out and send a file.
    pub const PUSH: u8 = 0x40;
    /// Query: a keyword search.
    pub const QUERY: u8 = 0x80;
    /// QueryHit: matches for a Query, routed back along its path.
    pub const QUERY_HIT: u8 = 0x81;
}

/// Why bytes are not a valid descriptor. The connection that sent them should be closed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// The header announces a payload above the configured maximum.
    #[error("payload of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    /// A payload is shorter than its fixed fields or runs out inside a field.
    #[error("payload type {ptype:#04x}: {what}")]
    Malformed { ptype: u8, what: &'static str },
}

fn malformed(ptype: u8, what: &'static str) -> WireError {
    WireError::Malformed { ptype, what }
}

/// A 16-byte descriptor or servent identifier.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// A GUID from 16 random bytes, marked as a "modern" (0.6) servent's: byte 8 is 0xFF and
    /// byte 15 is 0x00, as the 0.6 specification asks.
    pub fn modern(mut bytes: [u8; 16]) -> Guid {
        bytes[8] = 0xFF;
        bytes[15] = 0x00;
        Guid(bytes)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

/// The fixed 23-byte header in front of every descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Descriptor ID: duplicate suppression and reverse-path routing key.
    pub guid: Guid,
    /// Payload type (see [`ptype`]).
    pub ptype: u8,
    /// Remaining hops the descriptor may travel.
    pub ttl: u8,
    /// Hops travelled so far.
    pub hops: u8,
    /// Payload length in bytes.
    pub len: u32,
}

impl Header {
    /// Parses a header; never fails (every 23 bytes are a header, the length is checked later).
    pub fn parse(b: &[u8; HEADER_LEN]) -> Header {
        let mut guid = [0u8; 16];
        guid.copy_from_slice(&b[..16]);
        Header {
            guid: Guid(guid),
            ptype: b[16],
            ttl: b[17],
            hops: b[18],
            len: u32::from_le_bytes([b[19], b[20], b[21], b[22]]),
        }
    }

    /// Appends the 23 header bytes.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.guid.0);
        out.push(self.ptype);
        out.push(self.ttl);
        out.push(self.hops);
        out.extend_from_slice(&self.len.to_le_bytes());
    }
}

/// One extension of a GGEP block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgepItem {
    /// Extension ID, 1–15 bytes, no NUL (e.g. `H` for a hash, `DU` for daily uptime).
    pub id: Vec<u8>,
    /// The data exactly as on the wire (COBS-encoded / deflated when the flags say so).
    pub data: Vec<u8>,
    /// The data is COBS-encoded (so it contains no NUL).
    pub cobs: bool,
    /// The data is deflate-compressed.
    pub deflate: bool,
}

/// One item of an extension block (Query payload tail, QueryHit result tail): HUGE URNs,
/// a GGEP block, or anything else (XML metadata, legacy plain text) kept as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extension {
    /// A HUGE URN such as `urn:sha1:<base32>` (or a bare `urn:` asking for URNs in hits).
    Urn(String),
    /// A GGEP block.
    Ggep(Vec<GgepItem>),
    /// Any other item (up to the next separator), kept verbatim.
    Other(Vec<u8>),
}

/// Ping: a request for Pongs. The payload is normally empty; anything present (GGEP) is kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ping {
    /// Optional extension bytes (GGEP), verbatim.
    pub ext: Vec<u8>,
}

/// Pong: the address of a servent that accepts connections and what it shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pong {
    /// Listening port (the `--listen` port, not the TCP source port).
    pub port: u16,
    /// Listening IPv4 address.
    pub ip: Ipv4Addr,
    /// Number of shared files.
    pub files: u32,
    /// Kilobytes shared.
    pub kbytes: u32,
    /// Optional extension bytes (GGEP), verbatim.
    pub ext: Vec<u8>,
}

/// Bye: sent before closing a connection, with an HTTP-like code and a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bye {
    /// Status code (200 normal close, 4xx/5xx errors).
    pub code: u16,
    /// Human-readable reason (possibly followed by headers).
    pub message: String,
}

/// Push: asks the servent `servent` to open a connection to `ip:port` and send file `index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// The firewalled servent's GUID (from its QueryHit trailer).
    pub servent: Guid,
    /// File index from the QueryHit result.
    pub index: u32,
    /// Where the firewalled servent should connect to.
    pub ip: Ipv4Addr,
    /// Port to connect to.
    pub port: u16,
    /// Optional extension bytes (GGEP), verbatim.
    pub ext: Vec<u8>,
}

/// Query: a keyword search flooded through the overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// "Minimum speed" in 0.4; in 0.6 a flags word when bit 15 is set.
    pub flags: u16,
    /// Search criteria (keywords), without the terminating NUL.
    pub criteria: String,
    /// Extensions after the criteria: HUGE URNs (search by hash), GGEP, XML.
    pub ext: Vec<Extension>,
}

impl Query {
    /// The SHA-1 digests this query asks for by `urn:sha1:` extension.
    pub fn sha1_urns(&self) -> Vec<[u8; 20]> {
        self.ext
            .iter()
            .filter_map(|e| match e {
                Extension::Urn(u) => super::base32::parse_sha1_urn(u),
                _ => None,
            })
            .collect()
    }
}

/// One file in a QueryHit's result set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HitResult {
    /// File index, used in `GET /get/<index>/<name>` and Push.
    pub index: u32,
    /// File size in bytes (files over 4 GiB are not represented; see docs).
    pub size: u32,
    /// File name.
    pub name: String,
    /// Extensions: normally `urn:sha1:<base32>`.
    pub ext: Vec<Extension>,
}

impl HitResult {
    /// The SHA-1 this result carries, if any.
    pub fn sha1(&self) -> Option<[u8; 20]> {
        self.ext.iter().find_map(|e| match e {
            Extension::Urn(u) => super::base32::parse_sha1_urn(u),
            _ => None,
        })
    }
}

/// The optional Extended QueryHit Descriptor (EQHD / QHD) between the results and the servent ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qhd {
    /// Four-letter vendor code (`LIME`, `GTKG`, ours: `APNT`).
    pub vendor: [u8; 4],
    /// Open data: usually two flag bytes (see [`Qhd::flags`]).
    pub open: Vec<u8>,
    /// Private data (vendor-specific, often GGEP), verbatim.
    pub private: Vec<u8>,
}

/// Open-data flag bits of the EQHD (byte 0 = which flags are meaningful, byte 1 = the values;
/// the push flag is the exception: its meaningful bit lives in byte 1 and value in byte 0).
pub mod qhd_flag {
    /// The servent is firewalled: use Push to reach it.
    pub const PUSH: u8 = 0x01;
    /// All upload slots are busy.
    pub const BUSY: u8 = 0x04;
    /// The servent has uploaded at least one file.
    pub const UPLOADED: u8 = 0x08;
    /// The speed field is a measured value.
    pub const SPEED: u8 = 0x10;
    /// A GGEP block is in the private area.
    pub const GGEP: u8 = 0x20;
}

impl Qhd {
    /// An EQHD with the standard two open-data flag bytes.
    pub fn with_flags(vendor: [u8; 4], push: bool, busy: bool, uploaded: bool) -> Qhd {
        use qhd_flag::*;
        let mut b0 = BUSY | UPLOADED; // which of busy/uploaded are meaningful; value of push
        let mut b1 = PUSH; // push is meaningful; values of busy/uploaded
        if push {
            b0 |= PUSH;
        }
        if busy {
            b1 |= BUSY;
        }
        if uploaded {
            b1 |= UPLOADED;
        }
        Qhd { vendor, open: vec![b0, b1], private: Vec::new() }
    }

    /// Reads a flag: `Some(value)` when the open data says it is meaningful.
    pub fn flag(&self, bit: u8) -> Option<bool> {
        if self.open.len() < 2 {
            return None;
        }
        let (b0, b1) = (self.open[0], self.open[1]);
        if bit == qhd_flag::PUSH {
            (b1 & bit != 0).then_some(b0 & bit != 0)
        } else {
            (b0 & bit != 0).then_some(b1 & bit != 0)
        }
    }
}

/// QueryHit: results for a Query, sent back along the Query's reverse path (same GUID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryHit {
    /// Port of the responding servent's HTTP/Gnutella listener.
    pub port: u16,
    /// Its IPv4 address.
    pub ip: Ipv4Addr,
    /// Speed in kbit/s.
    pub speed: u32,
    /// The matching files (at most 255 are encoded: the count is one byte).
    pub results: Vec<HitResult>,
    /// Optional extended trailer.
    pub qhd: Option<Qhd>,
    /// The responding servent's GUID (the Push target).
    pub servent: Guid,
}

/// A QRP ROUTE_TABLE_UPDATE message (payload type 0x30).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTableUpdate {
    /// Variant 0: clear the table and set its size (slots) and the "infinity" value.
    Reset {
        /// Number of slots (a power of two).
        table_len: u32,
        /// The value meaning "absent" (7 in practice).
        infinity: u8,
    },
    /// Variant 1: one fragment of a patch of the whole table.
    Patch {
        /// This fragment's number, 1-based.
        seq_no: u8,
        /// Number of fragments in the patch.
        seq_size: u8,
        /// 0 = none, 1 = zlib.
        compressor: u8,
        /// Bits per entry: 4 or 8 (1 in QRP 2).
        entry_bits: u8,
        /// Fragment bytes.
        data: Vec<u8>,
    },
}

/// The typed payload of a descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// 0x00
    Ping(Ping),
    /// 0x01
    Pong(Pong),
    /// 0x02
    Bye(Bye),
    /// 0x30
    RouteTable(RouteTableUpdate),
    /// 0x40
    Push(Push),
    /// 0x80
    Query(Query),
    /// 0x81
    QueryHit(QueryHit),
    /// Any other type, kept so the router can count and drop it.
    Unknown {
        /// The payload type byte.
        ptype: u8,
        /// Payload bytes.
        data: Vec<u8>,
    },
}

impl Payload {
    /// The payload type byte of this payload.
    pub fn ptype(&self) -> u8 {
        match self {
            Payload::Ping(_) => ptype::PING,
            Payload::Pong(_) => ptype::PONG,
            Payload::Bye(_) => ptype::BYE,
            Payload::RouteTable(_) => ptype::ROUTE_TABLE_UPDATE,
            Payload::Push(_) => ptype::PUSH,
            Payload::Query(_) => ptype::QUERY,
            Payload::QueryHit(_) => ptype::QUERY_HIT,
            Payload::Unknown { ptype, .. } => *ptype,
        }
    }
}

/// A whole descriptor: header fields plus typed payload (the length is derived on encoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Descriptor ID.
    pub guid: Guid,
    /// Remaining hops.
    pub ttl: u8,
    /// Hops travelled.
    pub hops: u8,
    /// The message.
    pub payload: Payload,
}

impl Descriptor {
    /// A fresh descriptor (hops 0).
    pub fn new(guid: Guid, ttl: u8, payload: Payload) -> Descriptor {
        Descriptor { guid, ttl, hops: 0, payload }
    }

    /// Appends header and payload to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        Header { guid: self.guid, ptype: self.payload.ptype(), ttl: self.ttl, hops: self.hops, len: 0 }
            .write(out);
        encode_payload(&self.payload, out);
        let len = (out.len() - start - HEADER_LEN) as u32;
        out[start + 19..start + 23].copy_from_slice(&len.to_le_bytes());
    }

    /// Header and payload as a new buffer.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + 32);
        self.encode_into(&mut out);
        out
    }

    /// Decodes one descriptor from the start of `bytes`: `Ok(None)` if more bytes are needed,
    /// otherwise the descriptor and how many bytes it used.
    pub fn decode(bytes: &[u8], max_payload: usize) -> Result<Option<(Descriptor, usize)>, WireError> {
        let Some(hb) = bytes.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let h = Header::parse(hb);
        let len = h.len as usize;
        if len > max_payload {
            return Err(WireError::TooLarge { len, max: max_payload });
        }
        let Some(body) = bytes.get(HEADER_LEN..HEADER_LEN + len) else {
            return Ok(None);
        };
        let payload = decode_payload(h.ptype, body)?;
        Ok(Some((Descriptor { guid: h.guid, ttl: h.ttl, hops: h.hops, payload }, HEADER_LEN + len)))
    }
}

/// A small cursor over a payload that reports truncation as [`WireError::Malformed`].
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    ptype: u8,
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8], ptype: u8) -> Self {
        Reader { b, pos: 0, ptype }
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.ok_or(malformed(self.ptype, what))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        let s = self.take(2, what)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        let s = self.take(4, what)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn ip(&mut self, what: &'static str) -> Result<Ipv4Addr, WireError> {
        let s = self.take(4, what)?;
        Ok(Ipv4Addr::new(s[0], s[1], s[2], s[3]))
    }
    fn guid(&mut self, what: &'static str) -> Result<Guid, WireError> {
        let mut g = [0u8; 16];
        g.copy_from_slice(self.take(16, what)?);
        Ok(Guid(g))
    }
    /// Bytes up to a NUL (consumed, not returned); error if there is none.
    fn cstr(&mut self, what: &'static str) -> Result<&'a [u8], WireError> {
        let rest = &self.b[self.pos..];
        let n = rest.iter().position(|&c| c == 0).ok_or(malformed(self.ptype, what))?;
        self.pos += n + 1;
        Ok(&rest[..n])
    }
    fn rest(&mut self) -> &'a [u8] {
        let s = &self.b[self.pos..];
        self.pos = self.b.len();
        s
    }
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }
}

/// Decodes the payload of type `ptype`.
pub fn decode_payload(ptype: u8, b: &[u8]) -> Result<Payload, WireError> {
    let mut r = Reader::new(b, ptype);
    Ok(match ptype {
        ptype::PING => Payload::Ping(Ping { ext: b.to_vec() }),
        ptype::PONG => Payload::Pong(Pong {
            port: r.u16("pong shorter than 14 bytes")?,
            ip: r.ip("pong shorter than 14 bytes")?,
            files: r.u32("pong shorter than 14 bytes")?,
            kbytes: r.u32("pong shorter than 14 bytes")?,
            ext: r.rest().to_vec(),
        }),
        ptype::BYE => {
            let code = r.u16("bye shorter than 2 bytes")?;
            let rest = r.rest();
            let text = rest.split(|&c| c == 0).next().unwrap_or_default();
            Payload::Bye(Bye { code, message: String::from_utf8_lossy(text).into_owned() })
        }
        ptype::ROUTE_TABLE_UPDATE => Payload::RouteTable(match r.u8("empty route table update")? {
            0 => {
                let table_len = r.u32("QRP reset shorter than 6 bytes")?;
                let infinity = r.u8("QRP reset shorter than 6 bytes")?;
                if r.peek().is_some() {
                    return Err(malformed(ptype, "QRP reset longer than 6 bytes"));
                }
                RouteTableUpdate::Reset { table_len, infinity }
            }
            1 => RouteTableUpdate::Patch {
                seq_no: r.u8("QRP patch shorter than 5 bytes")?,
                seq_size: r.u8("QRP patch shorter than 5 bytes")?,
                compressor: r.u8("QRP patch shorter than 5 bytes")?,
                entry_bits: r.u8("QRP patch shorter than 5 bytes")?,
                data: r.rest().to_vec(),
            },
            _ => return Err(malformed(ptype, "unknown QRP variant")),
        }),
        ptype::PUSH => Payload::Push(Push {
            servent: r.guid("push shorter than 26 bytes")?,
            index: r.u32("push shorter than 26 bytes")?,
            ip: r.ip("push shorter than 26 bytes")?,
            port: r.u16("push shorter than 26 bytes")?,
            ext: r.rest().to_vec(),
        }),
        ptype::QUERY => {
            let flags = r.u16("query shorter than 3 bytes")?;
            let criteria = r.cstr("query criteria without NUL")?;
            let criteria = String::from_utf8_lossy(criteria).into_owned();
            let ext = parse_extensions(&mut r, false)?;
            Payload::Query(Query { flags, criteria, ext })
        }
        ptype::QUERY_HIT => Payload::QueryHit(decode_query_hit(b)?),
        _ => Payload::Unknown { ptype, data: b.to_vec() },
    })
}

fn decode_query_hit(b: &[u8]) -> Result<QueryHit, WireError> {
    let pt = ptype::QUERY_HIT;
    if b.len() < 11 + GUID_LEN {
        return Err(malformed(pt, "query hit shorter than 27 bytes"));
    }
    let (body, servent) = b.split_at(b.len() - GUID_LEN);
    let mut r = Reader::new(body, pt);
    let count = r.u8("hit count")?;
    let port = r.u16("hit port")?;
    let ip = r.ip("hit address")?;
    let speed = r.u32("hit speed")?;
    let mut results = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let index = r.u32("result runs past the payload")?;
        let size = r.u32("result runs past the payload")?;
        let name = r.cstr("result name without NUL")?;
        let name = String::from_utf8_lossy(name).into_owned();
        let ext = parse_extensions(&mut r, true)?;
        results.push(HitResult { index, size, name, ext });
    }
    let qhd = if r.peek().is_none() {
        None
    } else {
        let mut vendor = [0u8; 4];
        vendor.copy_from_slice(r.take(4, "QHD shorter than 5 bytes")?);
        let open_len = r.u8("QHD shorter than 5 bytes")?;
        let open = r.take(open_len as usize, "QHD open data runs past the payload")?.to_vec();
        Some(Qhd { vendor, open, private: r.rest().to_vec() })
    };
    let mut g = [0u8; 16];
    g.copy_from_slice(servent);
    Ok(QueryHit { port, ip, speed, results, qhd, servent: Guid(g) })
}

/// Parses extension items separated by 0x1C. With `nul_terminated` (QueryHit results) a NUL at
/// an item boundary ends the block and is required; otherwise the block runs to the end of the
/// payload (a NUL at an item boundary, LimeWire's trailer, also ends it).
fn parse_extensions(r: &mut Reader<'_>, nul_terminated: bool) -> Result<Vec<Extension>, WireError> {
    let mut out = Vec::new();
    loop {
        match r.peek() {
            None if nul_terminated => return Err(malformed(r.ptype, "result extensions without NUL")),
            None => return Ok(out),
            Some(0) => {
                r.pos += 1;
                if !nul_terminated {
                    r.rest(); // trailing bytes after the block are ignored
                }
                return Ok(out);
            }
            Some(EXT_SEPARATOR) => r.pos += 1,
            Some(GGEP_MAGIC) => {
                r.pos += 1;
                out.push(Extension::Ggep(parse_ggep(r)?));
            }
            Some(_) => {
                let rest = &r.b[r.pos..];
                let n = rest.iter().position(|&c| c == 0 || c == EXT_SEPARATOR).unwrap_or(rest.len());
                let item = &rest[..n];
                r.pos += n;
                let is_urn = item.len() >= 4 && item[..4].eq_ignore_ascii_case(b"urn:");
                match (is_urn, std::str::from_utf8(item)) {
                    (true, Ok(s)) => out.push(Extension::Urn(s.to_string())),
                    _ => out.push(Extension::Other(item.to_vec())),
                }
            }
        }
    }
}

/// Parses GGEP extensions after the magic byte, up to the one flagged "last".
fn parse_ggep(r: &mut Reader<'_>) -> Result<Vec<GgepItem>, WireError> {
    let mut items = Vec::new();
    loop {
        let flags = r.u8("GGEP block truncated")?;
        if flags & 0x10 != 0 {
            return Err(malformed(r.ptype, "GGEP reserved flag bit set"));
        }
        let id_len = (flags & 0x0F) as usize;
        if id_len == 0 {
            return Err(malformed(r.ptype, "GGEP extension ID of length 0"));
        }
        let id = r.take(id_len, "GGEP ID truncated")?.to_vec();
        if id.contains(&0) {
            return Err(malformed(r.ptype, "GGEP ID contains NUL"));
        }
        let mut len = 0usize;
        for i in 0..3 {
            let b = r.u8("GGEP length truncated")?;
            len = (len << 6) | (b & 0x3F) as usize;
            match (b & 0x80 != 0, b & 0x40 != 0) {
                (false, true) => break,
                (true, false) if i < 2 => continue,
                _ => return Err(malformed(r.ptype, "GGEP length encoding invalid")),
            }
        }
        let data = r.take(len, "GGEP data runs past the payload")?.to_vec();
        items.push(GgepItem { id, data, cobs: flags & 0x40 != 0, deflate: flags & 0x20 != 0 });
        if flags & 0x80 != 0 {
            return Ok(items);
        }
    }
}

fn write_ggep(items: &[GgepItem], out: &mut Vec<u8>) {
    if items.is_empty() {
        return;
    }
    out.push(GGEP_MAGIC);
    for (i, it) in items.iter().enumerate() {
        let id: Vec<u8> = it.id.iter().copied().filter(|&c| c != 0).take(15).collect();
        let id = if id.is_empty() { vec![b'X'] } else { id };
        let mut flags = id.len() as u8;
        if i + 1 == items.len() {
            flags |= 0x80;
        }
        if it.cobs {
            flags |= 0x40;
        }
        if it.deflate {
            flags |= 0x20;
        }
        out.push(flags);
        out.extend_from_slice(&id);
        let data = &it.data[..it.data.len().min((1 << 18) - 1)];
        let n = data.len();
        if n < 1 << 6 {
            out.push(0x40 | n as u8);
        } else if n < 1 << 12 {
            out.extend_from_slice(&[0x80 | (n >> 6) as u8, 0x40 | (n & 0x3F) as u8]);
        } else {
            out.extend_from_slice(&[
                0x80 | (n >> 12) as u8,
                0x80 | ((n >> 6) & 0x3F) as u8,
                0x40 | (n & 0x3F) as u8,
            ]);
        }
        out.extend_from_slice(data);
    }
}

fn write_extensions(ext: &[Extension], out: &mut Vec<u8>) {
    for (i, e) in ext.iter().enumerate() {
        if i > 0 {
            out.push(EXT_SEPARATOR);
        }
        match e {
            Extension::Urn(u) => out.extend(u.bytes().filter(|&c| c != 0 && c != EXT_SEPARATOR)),
            Extension::Ggep(items) => write_ggep(items, out),
            Extension::Other(b) => out.extend(b.iter().copied().filter(|&c| c != 0 && c != EXT_SEPARATOR)),
        }
    }
}

fn push_cstr(s: &str, out: &mut Vec<u8>) {
    out.extend(s.bytes().filter(|&c| c != 0));
    out.push(0);
}

/// Appends the payload bytes of `p` (no header).
pub fn encode_payload(p: &Payload, out: &mut Vec<u8>) {
    match p {
        Payload::Ping(p) => out.extend_from_slice(&p.ext),
        Payload::Pong(p) => {
            out.extend_from_slice(&p.port.to_le_bytes());
            out.extend_from_slice(&p.ip.octets());
            out.extend_from_slice(&p.files.to_le_bytes());
            out.extend_from_slice(&p.kbytes.to_le_bytes());
            out.extend_from_slice(&p.ext);
        }
        Payload::Bye(b) => {
            out.extend_from_slice(&b.code.to_le_bytes());
            push_cstr(&b.message, out);
        }
        Payload::RouteTable(RouteTableUpdate::Reset { table_len, infinity }) => {
            out.push(0);
            out.extend_from_slice(&table_len.to_le_bytes());
            out.push(*infinity);
        }
        Payload::RouteTable(RouteTableUpdate::Patch { seq_no, seq_size, compressor, entry_bits, data }) => {
            out.extend_from_slice(&[1, *seq_no, *seq_size, *compressor, *entry_bits]);
            out.extend_from_slice(data);
        }
        Payload::Push(p) => {
            out.extend_from_slice(&p.servent.0);
            out.extend_from_slice(&p.index.to_le_bytes());
            out.extend_from_slice(&p.ip.octets());
            out.extend_from_slice(&p.port.to_le_bytes());
            out.extend_from_slice(&p.ext);
        }
        Payload::Query(q) => {
            out.extend_from_slice(&q.flags.to_le_bytes());
            push_cstr(&q.criteria, out);
            if !q.ext.is_empty() {
                write_extensions(&q.ext, out);
                out.push(0);
            }
        }
        Payload::QueryHit(h) => {
            let results = &h.results[..h.results.len().min(255)];
            out.push(results.len() as u8);
            out.extend_from_slice(&h.port.to_le_bytes());
            out.extend_from_slice(&h.ip.octets());
            out.extend_from_slice(&h.speed.to_le_bytes());
            for res in results {
                out.extend_from_slice(&res.index.to_le_bytes());
                out.extend_from_slice(&res.size.to_le_bytes());
                push_cstr(&res.name, out);
                write_extensions(&res.ext, out);
                out.push(0);
            }
            if let Some(q) = &h.qhd {
                out.extend_from_slice(&q.vendor);
                let open = &q.open[..q.open.len().min(255)];
                out.push(open.len() as u8);
                out.extend_from_slice(open);
                out.extend_from_slice(&q.private);
            }
            out.extend_from_slice(&h.servent.0);
        }
        Payload::Unknown { data, .. } => out.extend_from_slice(data),
    }
}

/// Streaming framer: bytes from a connection in, whole descriptors out. Any error means the
/// connection is speaking something else (or lying about lengths) and should be dropped.
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    start: usize,
    max_payload: usize,
}

impl Framer {
    /// A framer that rejects payloads over `max_payload` bytes.
    pub fn new(max_payload: usize) -> Framer {
        Framer { buf: Vec::new(), start: 0, max_payload }
    }

    /// Adds received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes received but not yet returned as descriptors.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete descriptor, `Ok(None)` if more bytes are needed. After an error the
    /// offending descriptor (when its length was acceptable) has been consumed.
    pub fn next_descriptor(&mut self) -> Result<Option<Descriptor>, WireError> {
        let avail = &self.buf[self.start..];
        match Descriptor::decode(avail, self.max_payload) {
            Ok(Some((d, used))) => {
                self.start += used;
                Ok(Some(d))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                if let Some(hb) = avail.first_chunk::<HEADER_LEN>() {
                    let len = Header::parse(hb).len as usize;
                    if len <= self.max_payload && avail.len() >= HEADER_LEN + len {
                        self.start += HEADER_LEN + len;
                    }
                }
                Err(e)
            }
        }
    }
}

/// Feeds arbitrary bytes through a [`Framer`] and re-encodes what decodes: the fuzz target's body.
/// Returns the number of descriptors decoded before the first error.
pub fn fuzz_descriptors(data: &[u8]) -> usize {
    let mut f = Framer::new(DEFAULT_MAX_PAYLOAD);
    let mut n = 0;
    for chunk in data.chunks(7) {
        f.push(chunk);
        loop {
            match f.next_descriptor() {
                Ok(Some(d)) => {
                    let bytes = d.encode();
                    // Re-decoding our own encoding must succeed.
                    let again = Descriptor::decode(&bytes, usize::MAX).ok().flatten();
                    assert!(again.is_some(), "re-encoded descriptor does not decode");
                    n += 1;
                }
                Ok(None) => break,
                Err(_) => return n,
            }
        }
    }
    n
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
