//! Zero-copy parsing of an incoming request: header, the single question, EDNS(0), and the SOA
//! serial an IXFR request or a NOTIFY carries. The question name is borrowed from the packet.

use super::rrtype::code;
use domain::base::Message;
use domain::base::iana::Rtype;
use domain::base::name::ParsedName;
use domain::rdata::Soa;

/// Opcodes the server handles.
pub mod opcode {
    pub const QUERY: u8 = 0;
    pub const NOTIFY: u8 = 4;
    /// RFC 2136 dynamic update.
    pub const UPDATE: u8 = 5;
}

/// EDNS(0) parameters from the request's OPT record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// The requester's UDP payload size (values below 512 count as 512).
    pub payload: u16,
    /// EDNS version; only 0 exists, anything else gets BADVERS.
    pub version: u8,
    /// The DO bit.
    pub dnssec_ok: bool,
}

/// The parts of a request the answering core needs, borrowed from the packet.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub id: u16,
    pub opcode: u8,
    pub rd: bool,
    pub cd: bool,
    /// The question name as sent (original case, uncompressed wire format).
    pub qname: &'a [u8],
    pub qtype: u16,
    pub qclass: u16,
    pub edns: Option<Edns>,
    /// The SOA serial in the authority (IXFR) or answer (NOTIFY) section, if any.
    pub serial: Option<u32>,
    /// Whether the additional section holds a TSIG record (checked by [`super::tsig`]).
    pub signed: bool,
}

/// Why a request could not be parsed into a [`Query`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadQuery {
    /// Too short for a header, or a response (QR set): not worth an answer.
    Ignore,
    /// Malformed: answer FORMERR with this header echoed.
    FormErr(Header),
    /// An opcode we do not implement: answer NOTIMP.
    NotImp(Header),
}

/// The header fields echoed in an error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub opcode: u8,
    pub rd: bool,
    pub cd: bool,
}

/// Parses a request. Never panics on any input.
pub fn parse(packet: &[u8]) -> Result<Query<'_>, BadQuery> {
    let msg = Message::from_octets(packet).map_err(|_| BadQuery::Ignore)?;
    let h = msg.header();
    if h.qr() {
        return Err(BadQuery::Ignore);
    }
    let header = Header { id: h.id(), opcode: h.opcode().to_int(), rd: h.rd(), cd: h.cd() };
    if header.opcode != opcode::QUERY && header.opcode != opcode::NOTIFY && header.opcode != opcode::UPDATE {
        return Err(BadQuery::NotImp(header));
    }
    let formerr = BadQuery::FormErr(header);
    let counts = msg.header_counts();
    if counts.qdcount() != 1 {
        return Err(formerr);
    }
    let question = msg.sole_question().map_err(|_| formerr)?;
    let qname: &ParsedName<&[u8]> = question.qname();
    if qname.is_compressed() {
        return Err(formerr);
    }
    let qlen: usize = qname.iter().map(|l| l.len() + 1).sum();
    let raw = packet.get(12..12 + qlen).ok_or(formerr)?;
    let qtype = question.qtype().to_int();
    if is_forbidden_qtype(qtype) {
        return Err(formerr);
    }

    // EDNS: at most one OPT, owned by the root.
    let mut edns = None;
    let mut signed = false;
    if counts.arcount() > 0 {
        let additional = msg.additional().map_err(|_| formerr)?;
        for rec in additional {
            let rec = rec.map_err(|_| formerr)?;
            signed |= rec.rtype() == Rtype::from_int(super::tsig::TYPE_TSIG);
            if rec.rtype() == Rtype::OPT {
                if edns.is_some() || !rec.owner().is_root() {
                    return Err(formerr);
                }
                let ttl = rec.ttl().as_secs();
                edns = Some(Edns {
                    payload: rec.class().to_int().max(512),
                    version: (ttl >> 16) as u8,
                    dnssec_ok: ttl & 0x8000 != 0,
                });
            }
        }
    }

    // The SOA serial: IXFR carries the client's in authority, NOTIFY may carry the new one in answer.
    let mut serial = None;
    let section = if qtype == code::IXFR && counts.nscount() > 0 {
        Some(msg.authority().map_err(|_| formerr)?)
    } else if header.opcode == opcode::NOTIFY && counts.ancount() > 0 {
        Some(msg.answer().map_err(|_| formerr)?)
    } else {
        None
    };
    if let Some(section) = section
        && let Some(rec) = section.limit_to::<Soa<ParsedName<&[u8]>>>().next()
    {
        let rec = rec.map_err(|_| formerr)?;
        serial = Some(rec.data().serial().into_int());
    }
    if qtype == code::IXFR && serial.is_none() {
        return Err(formerr);
    }

    Ok(Query {
        id: header.id,
        opcode: header.opcode,
        rd: header.rd,
        cd: header.cd,
        qname: raw,
        qtype,
        qclass: question.qclass().to_int(),
        edns,
        serial,
        signed,
    })
}

/// Types that cannot be asked for (RFC 6895 §3.1): 0 is reserved, and OPT (41), TKEY (249)
/// and TSIG (250) are meta-types that live only in the additional section. Asking for them gets
/// FORMERR, never an answer that looks like data. BIND 9.18 answers the meta-types so; for type 0
/// BIND and NSD 4.6 answer NODATA and Knot 3.2 NOTIMP (checked on loopback; issue 22 asks FORMERR).
pub fn is_forbidden_qtype(qtype: u16) -> bool {
    matches!(qtype, 0 | code::OPT | 249 | 250)
}

impl Query<'_> {
    /// The header fields to echo in any reply.
    pub fn header(&self) -> Header {
        Header { id: self.id, opcode: self.opcode, rd: self.rd, cd: self.cd }
    }
}
