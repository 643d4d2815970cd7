//! The RFC 2136 UPDATE message: zone, prerequisite and update sections, read into plain data.

use super::name::{NameBuf, to_lower};
use super::response::rcode;
use super::rrtype::CLASS_IN;
use domain::base::Message;
use domain::base::iana::Rtype;
use domain::base::name::{ParsedName, ToName};
use domain::base::rdata::ComposeRecordData;
use domain::base::record::ParsedRecord;
use domain::rdata::ZoneRecordData;

/// Most prerequisite plus update records accepted in one message.
pub const MAX_UPDATE_RECORDS: usize = 1000;

/// One record of the prerequisite or update section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateRr {
    /// Lower-cased wire name.
    pub name: NameBuf,
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    /// Uncompressed rdata (empty for the deletes and existence tests).
    pub rdata: Vec<u8>,
}

/// A parsed UPDATE request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateRequest {
    /// The zone (lower-cased wire name).
    pub zone: NameBuf,
    pub prereqs: Vec<UpdateRr>,
    pub updates: Vec<UpdateRr>,
}

fn rr_of(rec: ParsedRecord<'_, &[u8]>) -> Result<UpdateRr, u16> {
    let mut name = Vec::new();
    rec.owner().compose(&mut name).map_err(|_| rcode::FORMERR)?;
    let rdata = if rec.rdlen() == 0 {
        Vec::new()
    } else {
        // Decompress names inside known types; unknown types are copied as they are.
        let data = rec
            .to_record::<ZoneRecordData<&[u8], ParsedName<&[u8]>>>()
            .map_err(|_| rcode::FORMERR)?
            .ok_or(rcode::FORMERR)?;
        let mut out = Vec::new();
        data.data().compose_rdata(&mut out).map_err(|_| rcode::FORMERR)?;
        out
    };
    Ok(UpdateRr {
        name: to_lower(&name),
        rtype: rec.rtype().to_int(),
        class: rec.class().to_int(),
        ttl: rec.ttl().as_secs(),
        rdata,
    })
}

/// Parses an UPDATE message (RFC 2136 §2): ZOCOUNT 1 with type SOA, the prerequisites in the
/// answer section, the updates in the authority section. Errors are the rcode to answer with.
pub fn parse(packet: &[u8]) -> Result<UpdateRequest, u16> {
    let msg = Message::from_octets(packet).map_err(|_| rcode::FORMERR)?;
    let counts = msg.header_counts();
    if counts.qdcount() != 1 {
        return Err(rcode::FORMERR);
    }
    if usize::from(counts.ancount()) + usize::from(counts.nscount()) > MAX_UPDATE_RECORDS {
        return Err(rcode::REFUSED);
    }
    let q = msg.sole_question().map_err(|_| rcode::FORMERR)?;
    if q.qtype() != Rtype::SOA || q.qclass().to_int() != CLASS_IN {
        return Err(rcode::FORMERR);
    }
    let mut zone = Vec::new();
    q.qname().compose(&mut zone).map_err(|_| rcode::FORMERR)?;
    let mut prereqs = Vec::new();
    let answer = msg.answer().map_err(|_| rcode::FORMERR)?;
    for rec in answer {
        prereqs.push(rr_of(rec.map_err(|_| rcode::FORMERR)?)?);
    }
    let mut updates = Vec::new();
    let authority = msg.authority().map_err(|_| rcode::FORMERR)?;
    for rec in authority {
        updates.push(rr_of(rec.map_err(|_| rcode::FORMERR)?)?);
    }
    Ok(UpdateRequest { zone: to_lower(&zone), prereqs, updates })
}

/// Builds an UPDATE request (RFC 2136 §2) for `zone` (wire name), uncompressed; sign it with
/// TSIG afterwards.
pub fn build(id: u16, zone: &[u8], prereqs: &[UpdateRr], updates: &[UpdateRr]) -> Vec<u8> {
    let mut m = Vec::with_capacity(512);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x28, 0x00]); // opcode 5 (UPDATE)
    m.extend_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(&(prereqs.len().min(0xffff) as u16).to_be_bytes());
    m.extend_from_slice(&(updates.len().min(0xffff) as u16).to_be_bytes());
    m.extend_from_slice(&0u16.to_be_bytes());
    m.extend_from_slice(zone);
    m.extend_from_slice(&6u16.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    for rr in prereqs.iter().chain(updates) {
        m.extend_from_slice(&rr.name);
        m.extend_from_slice(&rr.rtype.to_be_bytes());
        m.extend_from_slice(&rr.class.to_be_bytes());
        m.extend_from_slice(&rr.ttl.to_be_bytes());
        m.extend_from_slice(&(rr.rdata.len() as u16).to_be_bytes());
        m.extend_from_slice(&rr.rdata);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::name::from_text;

    #[test]
    fn build_then_parse_round_trips() {
        let zone = from_text("com.").unwrap();
        let rr = |n: &str, t: u16, c: u16, ttl: u32, d: &[u8]| UpdateRr {
            name: from_text(n).unwrap(),
            rtype: t,
            class: c,
            ttl,
            rdata: d.to_vec(),
        };
        let pre = vec![rr("nu.com.", 255, 254, 0, &[])];
        let upd = vec![
            rr("nu.com.", 2, 1, 3600, &from_text("dns1.nu.com.").unwrap()),
            rr("x.com.", 1, 255, 0, &[]),
        ];
        let msg = build(7, &zone, &pre, &upd);
        let back = parse(&msg).unwrap();
        assert_eq!(back, UpdateRequest { zone, prereqs: pre, updates: upd });
    }
}
