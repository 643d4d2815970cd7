//! Building responses: header, question, the three record sections with name compression (via
//! domain's `StaticCompressor`), EDNS(0), and clean truncation (TC set, no partial RRsets).

use super::query::{Edns, Header};
use super::rrtype::{CLASS_IN, code, unpack_rdata};
use domain::base::iana::{Class, Opcode, OptRcode, Rcode, Rtype};
use domain::base::message_builder::{MessageBuilder, PushError, RecordSectionBuilder, StaticCompressor};
use domain::base::name::ParsedName;
use domain::base::rdata::{ParseRecordData, UnknownRecordData};
use domain::base::{Name, Ttl};
use domain::dep::octseq::Parser;
use domain::rdata::ZoneRecordData;

/// Response codes (the extended BADVERS included).
pub mod rcode {
    pub const NOERROR: u16 = 0;
    pub const FORMERR: u16 = 1;
    pub const SERVFAIL: u16 = 2;
    pub const NXDOMAIN: u16 = 3;
    pub const NOTIMP: u16 = 4;
    pub const REFUSED: u16 = 5;
    /// A DNAME substitution made a name longer than 255 bytes (RFC 6672 §2.2).
    pub const YXDOMAIN: u16 = 6;
    pub const NOTAUTH: u16 = 9;
    pub const BADVERS: u16 = 16;
}

/// One RRset to put in a section: owner (wire format), type, TTL and its packed rdatas.
#[derive(Debug, Clone, Copy)]
pub struct RrRef<'a> {
    pub owner: &'a [u8],
    pub rtype: u16,
    pub ttl: u32,
    /// Packed rdatas (`[len:u16][rdata]...`, see [`super::rrtype::pack_rdata`]).
    pub rdata: &'a [u8],
}

impl RrRef<'_> {
    /// Size of the RRset on the wire without compression (an upper bound).
    pub fn wire_size(&self) -> usize {
        unpack_rdata(self.rdata).map(|rd| self.owner.len() + 10 + rd.len()).sum()
    }
}

/// What to send: everything but the header fields echoed from the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reply<'a> {
    /// The (possibly extended) response code.
    pub rcode: u16,
    pub aa: bool,
    pub answer: &'a [RrRef<'a>],
    pub authority: &'a [RrRef<'a>],
    pub additional: &'a [RrRef<'a>],
    /// The first this-many additional RRsets are required (in-zone glue of a referral): if they
    /// do not fit, the reply is marked truncated.
    pub required_additional: usize,
}

/// The question to echo.
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    pub qname: &'a [u8],
    pub qtype: u16,
    pub qclass: u16,
}

/// The OPT record to attach: our payload size (the client asked with EDNS).
#[derive(Debug, Clone, Copy)]
pub struct OptOut {
    pub payload: u16,
}

/// Largest size a UDP reply may have for a request with `edns`, given our own maximum.
pub fn udp_limit(edns: Option<Edns>, our_max: u16) -> usize {
    match edns {
        Some(e) => e.payload.min(our_max).max(512) as usize,
        None => 512,
    }
}

/// Sets the DO bit in a finished message's trailing OPT record (RFC 3225 §3: a DO=1 request's
/// answer echoes it); a message that does not end in an option-less OPT is left alone.
pub fn set_do_bit(msg: &mut [u8]) {
    let n = msg.len();
    if n >= 12 + OPT_LEN && msg[n - 11] == 0 && msg[n - 10..n - 8] == [0, 41] && msg[n - 2..] == [0, 0] {
        msg[n - 4] |= 0x80;
    }
}

/// Size of the OPT record [`append_opt`] adds (RFC 6891 §6.1.2, no options).
pub const OPT_LEN: usize = 11;

/// Appends an OPT record (root owner, our payload size, extended rcode 0, version 0, no
/// options) to a finished message and counts it in ARCOUNT: for replies built elsewhere (an
/// incremental transfer that fits one UDP message) that must still carry EDNS (RFC 6891 §7).
pub fn append_opt(msg: &mut Vec<u8>, opt: OptOut) {
    if msg.len() < 12 {
        return;
    }
    let arcount = u16::from_be_bytes([msg[10], msg[11]]).saturating_add(1);
    msg[10..12].copy_from_slice(&arcount.to_be_bytes());
    msg.push(0); // owner: the root
    msg.extend_from_slice(&41u16.to_be_bytes());
    msg.extend_from_slice(&opt.payload.to_be_bytes());
    msg.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // TTL (ext. rcode, version, flags), RDLEN
}

type Target = StaticCompressor<Vec<u8>>;

/// Writes a complete response into `out` (cleared first) and returns it, never larger than
/// `limit` bytes. `opt` adds an OPT record (when the request had EDNS).
pub fn write(
    header: Header,
    question: Option<Question<'_>>,
    opt: Option<OptOut>,
    reply: &Reply<'_>,
    limit: usize,
    out: Vec<u8>,
) -> Vec<u8> {
    // Appending to a Vec cannot fail (the error type is Infallible).
    let Ok(builder) = MessageBuilder::from_target(StaticCompressor::new(out));
    build(builder, header, question, opt, reply, limit)
}

fn build(
    mut builder: MessageBuilder<Target>,
    header: Header,
    question: Option<Question<'_>>,
    opt: Option<OptOut>,
    reply: &Reply<'_>,
    limit: usize,
) -> Vec<u8> {
    let opt_len = if opt.is_some() { OPT_LEN } else { 0 };
    // The builder refuses a push that reaches the limit, so allow one byte more.
    builder.set_push_limit(limit.saturating_sub(opt_len) + 1);
    {
        let h = builder.header_mut();
        h.set_id(header.id);
        h.set_qr(true);
        h.set_opcode(Opcode::from_int(header.opcode));
        h.set_rd(header.rd);
        h.set_cd(header.cd);
        h.set_aa(reply.aa);
        h.set_rcode(Rcode::masked_from_int((reply.rcode & 0x0f) as u8));
    }
    let mut qb = builder.question();
    if let Some(q) = question
        && let Ok(name) = Name::from_slice(q.qname)
    {
        let _ = qb.push((name, Rtype::from_int(q.qtype), Class::from_int(q.qclass)));
    }
    let mut truncated = false;
    let mut ab = qb.answer();
    for rr in reply.answer {
        if push_rrset(&mut ab, rr).is_err() {
            truncated = true;
            break;
        }
    }
    if truncated {
        ab.rewind();
    }
    let mut nb = ab.authority();
    if !truncated {
        for rr in reply.authority {
            if push_rrset(&mut nb, rr).is_err() {
                truncated = true;
                break;
            }
        }
        if truncated {
            nb.rewind();
        }
    }
    let mut xb = nb.additional();
    if !truncated {
        for (i, rr) in reply.additional.iter().enumerate() {
            // Only whole RRsets: skip one unless it surely fits uncompressed.
            let fits = xb.as_slice().len() + rr.wire_size() < limit.saturating_sub(opt_len);
            if !fits || push_rrset(&mut xb, rr).is_err() {
                if i < reply.required_additional {
                    truncated = true;
                }
                continue;
            }
        }
    }
    if truncated {
        xb.header_mut().set_tc(true);
    }
    if let Some(o) = opt {
        xb.clear_push_limit();
        let ext = OptRcode::masked_from_int(reply.rcode);
        let _ = xb.opt(|ob| {
            ob.set_udp_payload_size(o.payload);
            ob.set_rcode(ext);
            Ok(())
        });
    }
    xb.finish().into_target()
}

/// Pushes every record of one RRset; on failure the caller rewinds the section.
fn push_rrset<B: RecordSectionBuilder<Target>>(b: &mut B, rr: &RrRef<'_>) -> Result<(), PushError> {
    let owner = Name::from_slice(rr.owner).map_err(|_| PushError::ShortBuf)?;
    let ttl = Ttl::from_secs(rr.ttl);
    let class = Class::from_int(CLASS_IN);
    let rtype = Rtype::from_int(rr.rtype);
    for rd in unpack_rdata(rr.rdata) {
        if has_compressible_name(rr.rtype) {
            let mut parser = Parser::from_ref(rd);
            if let Ok(Some(data)) =
                ZoneRecordData::<&[u8], ParsedName<&[u8]>>::parse_rdata(rtype, &mut parser)
            {
                b.push((owner, class, ttl, data))?;
                continue;
            }
        }
        let data = UnknownRecordData::from_octets(rtype, rd).map_err(|_| PushError::ShortBuf)?;
        b.push((owner, class, ttl, data))?;
    }
    Ok(())
}

/// Types whose rdata names are compressed on the wire (RFC 3597 §4: the RFC 1035 types).
fn has_compressible_name(rtype: u16) -> bool {
    matches!(rtype, code::NS | code::CNAME | code::SOA | code::PTR | code::MX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::name::from_text;
    use crate::wire::rrtype::pack_rdata;

    #[test]
    fn compresses_and_truncates_cleanly() {
        let owner = from_text("www.example.com").unwrap();
        let mut blob = Vec::new();
        for i in 0..40u8 {
            pack_rdata(&mut blob, &[192, 0, 2, i]);
        }
        let rrs = [RrRef { owner: &owner, rtype: code::A, ttl: 300, rdata: &blob }];
        let header = Header { id: 7, opcode: 0, rd: true, cd: false };
        let q = Question { qname: &owner, qtype: code::A, qclass: CLASS_IN };
        let reply = Reply { aa: true, answer: &rrs, ..Default::default() };
        let big = write(header, Some(q), None, &reply, 65535, Vec::new());
        // Owner names compress to a 2-byte pointer: 12 header + 21 question + 40 * (2+10+4).
        assert_eq!(big.len(), 12 + 17 + 4 + 40 * 16);
        assert_eq!(big[2] & 0x02, 0, "no TC");
        let small = write(header, Some(q), None, &reply, 512, Vec::new());
        assert!(small.len() <= 512);
        assert_eq!(small[2] & 0x02, 0x02, "TC set");
        assert_eq!(u16::from_be_bytes([small[6], small[7]]), 0, "no partial answer");
    }
}
