//! Whole messages for the client side: building queries and NOTIFYs, parsing any response
//! into owned records (names decompressed), dig-style text, and zone-transfer messages.

use super::name::NameBuf;
use super::query::{Edns, Header};
use super::response::RrRef;
use super::rrtype::{CLASS_IN, code, unpack_rdata};
use domain::base::iana::{Class, Opcode, Rcode, Rtype};
use domain::base::message_builder::{MessageBuilder, PushError, StaticCompressor};
use domain::base::name::{ParsedName, ToName};
use domain::base::rdata::ComposeRecordData;
use domain::base::{Message, Name, Ttl};
use domain::rdata::ZoneRecordData;

/// A record from a received message, owned, with names decompressed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Record {
    /// Owner name as received (wire format).
    pub owner: NameBuf,
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    /// Uncompressed rdata.
    pub rdata: Vec<u8>,
}

/// A parsed response (or request), for clients, secondaries and tests.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub id: u16,
    pub opcode: u8,
    /// Response code including the EDNS extended bits.
    pub rcode: u16,
    pub qr: bool,
    pub aa: bool,
    pub tc: bool,
    pub rd: bool,
    pub ra: bool,
    pub question: Option<(NameBuf, u16, u16)>,
    pub answer: Vec<Record>,
    pub authority: Vec<Record>,
    /// Additional records without the OPT record.
    pub additional: Vec<Record>,
    pub edns: Option<Edns>,
}

/// Parses a whole message; errors say what was wrong.
pub fn parse(bytes: &[u8]) -> Result<Parsed, String> {
    let msg = Message::from_octets(bytes).map_err(|_| "message shorter than a DNS header".to_string())?;
    let h = msg.header();
    let mut out = Parsed {
        id: h.id(),
        opcode: h.opcode().to_int(),
        rcode: h.rcode().to_int() as u16,
        qr: h.qr(),
        aa: h.aa(),
        tc: h.tc(),
        rd: h.rd(),
        ra: h.ra(),
        ..Default::default()
    };
    for q in msg.question() {
        let q = q.map_err(|e| format!("bad question: {e}"))?;
        let mut n = Vec::new();
        let _ = q.qname().compose(&mut n);
        out.question = Some((n.into_boxed_slice(), q.qtype().to_int(), q.qclass().to_int()));
    }
    let mut section = msg.answer().map_err(|e| format!("bad answer section: {e}"))?;
    for which in 0..3 {
        for rec in &mut section {
            let rec = rec.map_err(|e| format!("bad record: {e}"))?;
            if rec.rtype() == Rtype::OPT {
                let ttl = rec.ttl().as_secs();
                out.edns = Some(Edns {
                    payload: rec.class().to_int(),
                    version: (ttl >> 16) as u8,
                    dnssec_ok: ttl & 0x8000 != 0,
                });
                out.rcode |= ((ttl >> 24) as u16) << 4;
                continue;
            }
            let data = rec
                .to_record::<ZoneRecordData<&[u8], ParsedName<&[u8]>>>()
                .map_err(|e| format!("bad record data: {e}"))?;
            let mut owner = Vec::new();
            let _ = rec.owner().compose(&mut owner);
            let mut rdata = Vec::new();
            match data {
                Some(d) => {
                    let _ = d.data().compose_rdata(&mut rdata);
                }
                None => return Err(format!("record of type {} could not be read", rec.rtype())),
            }
            let r = Record {
                owner: owner.into_boxed_slice(),
                rtype: rec.rtype().to_int(),
                class: rec.class().to_int(),
                ttl: rec.ttl().as_secs(),
                rdata,
            };
            match which {
                0 => out.answer.push(r),
                1 => out.authority.push(r),
                _ => out.additional.push(r),
            }
        }
        match section.next_section() {
            Ok(Some(next)) => section = next,
            Ok(None) => break,
            Err(e) => return Err(format!("bad message: {e}")),
        }
    }
    Ok(out)
}

/// An SOA record for `apex` carrying only `serial` (root MNAME and RNAME, zero timers): what an
/// IXFR request's authority section needs to say "I have this version" (RFC 1995 §3) when the
/// rest of our SOA is unknown, as for `dig IXFR=N`.
pub fn soa_with_serial(apex: &[u8], serial: u32) -> Record {
    let mut rdata = vec![0u8, 0u8];
    rdata.extend_from_slice(&serial.to_be_bytes());
    rdata.extend_from_slice(&[0; 16]);
    Record { owner: apex.into(), rtype: code::SOA, class: CLASS_IN, ttl: 0, rdata }
}

/// Builds a query (or NOTIFY, by opcode) for `qname`/`qtype`; `edns` adds an OPT record with
/// that payload size and version.
pub fn build_query(
    id: u16,
    opcode: u8,
    qname: &[u8],
    qtype: u16,
    rd: bool,
    edns: Option<(u16, u8)>,
) -> Vec<u8> {
    let Ok(mut b) = MessageBuilder::from_target(StaticCompressor::new(Vec::with_capacity(512)));
    {
        let h = b.header_mut();
        h.set_id(id);
        h.set_opcode(Opcode::from_int(opcode));
        h.set_rd(rd);
        if opcode == super::query::opcode::NOTIFY {
            h.set_aa(true);
        }
    }
    let mut q = b.question();
    if let Ok(name) = Name::from_slice(qname) {
        let _ = q.push((name, Rtype::from_int(qtype), Class::IN));
    }
    let mut x = q.additional();
    if let Some((payload, version)) = edns {
        let _ = x.opt(|o| {
            o.set_udp_payload_size(payload);
            o.set_version(version);
            Ok(())
        });
    }
    x.finish().into_target()
}

/// An IXFR request: the question plus our SOA (owner `apex`) in the authority section.
pub fn build_ixfr(id: u16, apex: &[u8], soa_ttl: u32, soa_rdata: &[u8]) -> Vec<u8> {
    let Ok(mut b) = MessageBuilder::from_target(StaticCompressor::new(Vec::with_capacity(512)));
    b.header_mut().set_id(id);
    let mut q = b.question();
    let Ok(name) = Name::from_slice(apex) else { return q.finish().into_target() };
    let _ = q.push((name, Rtype::IXFR, Class::IN));
    let mut a = q.authority();
    let blob = packed(soa_rdata);
    let _ = push_records(&mut a, &RrRef { owner: apex, rtype: code::SOA, ttl: soa_ttl, rdata: &blob }, 0);
    a.finish().into_target()
}

fn packed(rdata: &[u8]) -> Vec<u8> {
    let mut blob = Vec::with_capacity(rdata.len() + 2);
    super::rrtype::pack_rdata(&mut blob, rdata);
    blob
}

fn push_records<B>(b: &mut B, rr: &RrRef<'_>, skip: usize) -> Result<usize, PushError>
where
    B: domain::base::message_builder::RecordSectionBuilder<StaticCompressor<Vec<u8>>>,
{
    let mut done = 0;
    for rd in unpack_rdata(rr.rdata).skip(skip) {
        push_one(b, rr, rd)?;
        done += 1;
    }
    Ok(done)
}

fn push_one<B>(b: &mut B, rr: &RrRef<'_>, rd: &[u8]) -> Result<(), PushError>
where
    B: domain::base::message_builder::RecordSectionBuilder<StaticCompressor<Vec<u8>>>,
{
    let owner = Name::from_slice(rr.owner).map_err(|_| PushError::ShortBuf)?;
    let rtype = Rtype::from_int(rr.rtype);
    let class = Class::from_int(CLASS_IN);
    let ttl = Ttl::from_secs(rr.ttl);
    let mut parser = domain::dep::octseq::Parser::from_ref(rd);
    let data = <ZoneRecordData<&[u8], ParsedName<&[u8]>> as domain::base::rdata::ParseRecordData<'_, [u8]>>::parse_rdata(
        rtype,
        &mut parser,
    );
    match data {
        Ok(Some(d)) => b.push((owner, class, ttl, d)),
        _ => match domain::base::rdata::UnknownRecordData::from_octets(rtype, rd) {
            Ok(d) => b.push((owner, class, ttl, d)),
            Err(_) => Err(PushError::ShortBuf),
        },
    }
}

/// The messages of a zone transfer (AXFR, or an IXFR answered with the full zone): the records
/// of `rrsets` (which must start with the SOA) followed by the SOA again, each message at most
/// `limit` bytes, every message carrying the question.
pub fn xfr_messages<'a>(
    header: Header,
    qname: &[u8],
    qtype: u16,
    rrsets: impl Iterator<Item = RrRef<'a>>,
    limit: usize,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut soa: Option<RrRef<'a>> = None;
    let mut msg = start_xfr(header, qname, qtype, limit);
    let mut rrsets = rrsets.peekable();
    let mut closing_done = false;
    loop {
        let rr = match rrsets.next() {
            Some(rr) => {
                if soa.is_none() && rr.rtype == code::SOA {
                    soa = Some(rr);
                }
                rr
            }
            None if !closing_done => {
                closing_done = true;
                match soa {
                    Some(s) => s,
                    None => break,
                }
            }
            None => break,
        };
        for rd in unpack_rdata(rr.rdata) {
            if push_one(&mut msg, &rr, rd).is_ok() {
                continue;
            }
            if msg.counts().ancount() == 0 {
                continue; // a single record larger than a message: leave it out
            }
            let full = std::mem::replace(&mut msg, start_xfr(header, qname, qtype, limit));
            out.push(full.finish().into_target());
            let _ = push_one(&mut msg, &rr, rd);
        }
    }
    if msg.counts().ancount() > 0 {
        out.push(msg.finish().into_target());
    }
    out
}

type XfrBuilder = domain::base::message_builder::AnswerBuilder<StaticCompressor<Vec<u8>>>;

fn start_xfr(header: Header, qname: &[u8], qtype: u16, limit: usize) -> XfrBuilder {
    let Ok(mut b) = MessageBuilder::from_target(StaticCompressor::new(Vec::with_capacity(limit.min(16384))));
    b.set_push_limit(limit);
    {
        let h = b.header_mut();
        h.set_id(header.id);
        h.set_qr(true);
        h.set_aa(true);
        h.set_opcode(Opcode::QUERY);
        h.set_rcode(Rcode::NOERROR);
    }
    let mut q = b.question();
    if let Ok(name) = Name::from_slice(qname) {
        let _ = q.push((name, Rtype::from_int(qtype), Class::IN));
    }
    q.answer()
}

/// dig-style text of a message, for `appnet dns query`.
pub fn dig_text(bytes: &[u8]) -> String {
    match Message::from_octets(bytes) {
        Ok(m) => m.display_dig_style().to_string(),
        Err(_) => "; message shorter than a DNS header".to_string(),
    }
}
