//! The TSIG resource record (RFC 8945 §4.2): finding and parsing the one a message carries,
//! emitting it, and removing it again.

use super::key::Key;
use crate::wire::name::NameBuf;
use domain::base::Message;
use domain::base::iana::Rtype;
use domain::base::name::ToName;

/// The TSIG record type.
pub const TYPE_TSIG: u16 = 250;
/// Class ANY, which TSIG records carry.
pub(super) const CLASS_ANY: u16 = 255;
/// TSIG error codes (in the record's Error field; the header RCODE is NOTAUTH).
pub mod error {
    pub const BADSIG: u16 = 16;
    pub const BADKEY: u16 = 17;
    pub const BADTIME: u16 = 18;
    pub const BADTRUNC: u16 = 22;
}

/// The TSIG record of a received message, borrowed from it.
#[derive(Debug, Clone)]
pub struct TsigRecord<'a> {
    /// Where the record starts (the message without it is `msg[..start]`).
    pub start: usize,
    /// The key name (wire format, as sent).
    pub key_name: NameBuf,
    /// The algorithm name (wire format).
    pub algorithm: &'a [u8],
    pub time_signed: u64,
    pub fudge: u16,
    pub mac: &'a [u8],
    pub original_id: u16,
    pub error: u16,
    pub other: &'a [u8],
}

/// A message whose TSIG record is broken or misplaced (answer FORMERR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// The TSIG record of `msg` if it has one. It must be the last record of the additional
/// section and the only one (RFC 8945 §5.1); otherwise the message is malformed.
pub fn find(msg: &[u8]) -> Result<Option<TsigRecord<'_>>, Malformed> {
    let m = Message::from_octets(msg).map_err(|_| Malformed)?;
    if m.header_counts().arcount() == 0 {
        return Ok(None);
    }
    let mut section = m.additional().map_err(|_| Malformed)?;
    let mut found = None;
    loop {
        let start = section.pos();
        let Some(rec) = section.next() else { break };
        let rec = rec.map_err(|_| Malformed)?;
        if found.is_some() {
            return Err(Malformed); // TSIG not last
        }
        if rec.rtype() == Rtype::from_int(TYPE_TSIG) {
            let mut owner = Vec::new();
            let _ = rec.owner().compose(&mut owner);
            found = Some((start, owner.into_boxed_slice()));
        }
    }
    let Some((start, key_name)) = found else { return Ok(None) };
    read_record(msg, start, key_name).map(Some).ok_or(Malformed)
}

fn read_record(msg: &[u8], start: usize, key_name: NameBuf) -> Option<TsigRecord<'_>> {
    let mut p = skip_name(msg, start)?;
    let fixed = msg.get(p..p + 10)?;
    let class = u16::from_be_bytes([fixed[2], fixed[3]]);
    let rdlen = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
    p += 10;
    let rdata = msg.get(p..p + rdlen)?;
    if class != CLASS_ANY || p + rdlen != msg.len() {
        return None;
    }
    // Algorithm name, uncompressed.
    let mut q = 0;
    loop {
        let len = *rdata.get(q)? as usize;
        if len > 63 {
            return None;
        }
        q += 1 + len;
        if len == 0 {
            break;
        }
    }
    let algorithm = &rdata[..q];
    let rest = rdata.get(q..q + 10)?;
    let time_signed = rest[..6].iter().fold(0u64, |acc, &b| (acc << 8) | b as u64);
    let fudge = u16::from_be_bytes([rest[6], rest[7]]);
    let mac_len = u16::from_be_bytes([rest[8], rest[9]]) as usize;
    q += 10;
    let mac = rdata.get(q..q + mac_len)?;
    q += mac_len;
    let tail = rdata.get(q..q + 6)?;
    let original_id = u16::from_be_bytes([tail[0], tail[1]]);
    let error = u16::from_be_bytes([tail[2], tail[3]]);
    let other_len = u16::from_be_bytes([tail[4], tail[5]]) as usize;
    q += 6;
    let other = rdata.get(q..q + other_len)?;
    if q + other_len != rdata.len() {
        return None;
    }
    Some(TsigRecord { start, key_name, algorithm, time_signed, fudge, mac, original_id, error, other })
}

/// Skips a (possibly compressed) name starting at `pos`; returns the position after it.
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *msg.get(pos)?;
        match len {
            0 => return Some(pos + 1),
            l if l & 0xc0 == 0xc0 => return Some(pos + 2).filter(|&e| e <= msg.len()),
            l if l > 63 => return None,
            l => pos += 1 + l as usize,
        }
    }
}

/// The fields of the TSIG record being signed or checked.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fields<'a> {
    pub time: u64,
    pub fudge: u16,
    pub error: u16,
    pub other: &'a [u8],
}

/// Appends a TSIG record with `mac` to `msg` (bumping ARCOUNT).
pub(super) fn append(msg: &mut Vec<u8>, key: &Key, mac: &[u8], f: &Fields<'_>) {
    let original_id = u16::from_be_bytes([msg[0], msg[1]]);
    let alg = key.algorithm.wire_name();
    msg.extend_from_slice(&key.name);
    msg.extend_from_slice(&TYPE_TSIG.to_be_bytes());
    msg.extend_from_slice(&CLASS_ANY.to_be_bytes());
    msg.extend_from_slice(&0u32.to_be_bytes());
    let rdlen = alg.len() + 16 + mac.len() + f.other.len();
    msg.extend_from_slice(&(rdlen as u16).to_be_bytes());
    msg.extend_from_slice(&alg);
    msg.extend_from_slice(&f.time.to_be_bytes()[2..]);
    msg.extend_from_slice(&f.fudge.to_be_bytes());
    msg.extend_from_slice(&(mac.len() as u16).to_be_bytes());
    msg.extend_from_slice(mac);
    msg.extend_from_slice(&original_id.to_be_bytes());
    msg.extend_from_slice(&f.error.to_be_bytes());
    msg.extend_from_slice(&(f.other.len() as u16).to_be_bytes());
    msg.extend_from_slice(f.other);
    let ar = u16::from_be_bytes([msg[10], msg[11]]).wrapping_add(1);
    msg[10..12].copy_from_slice(&ar.to_be_bytes());
}

/// Bytes a TSIG record with `key` adds to a message (for leaving room when building it).
pub fn record_size(key: &Key) -> usize {
    key.name.len() + 10 + key.algorithm.wire_name().len() + 16 + key.algorithm.mac_len() + 6
}

/// Appends an unsigned TSIG record carrying `error` (BADKEY, BADSIG: RFC 8945 §5.3.2), naming
/// the key and algorithm the request used.
pub fn append_unsigned_error(msg: &mut Vec<u8>, request: &TsigRecord<'_>, now: u64, error: u16) {
    let original_id = u16::from_be_bytes([msg[0], msg[1]]);
    msg.extend_from_slice(&request.key_name);
    msg.extend_from_slice(&TYPE_TSIG.to_be_bytes());
    msg.extend_from_slice(&CLASS_ANY.to_be_bytes());
    msg.extend_from_slice(&0u32.to_be_bytes());
    let rdlen = request.algorithm.len() + 16;
    msg.extend_from_slice(&(rdlen as u16).to_be_bytes());
    msg.extend_from_slice(request.algorithm);
    msg.extend_from_slice(&now.to_be_bytes()[2..]);
    msg.extend_from_slice(&request.fudge.to_be_bytes());
    msg.extend_from_slice(&0u16.to_be_bytes());
    msg.extend_from_slice(&original_id.to_be_bytes());
    msg.extend_from_slice(&error.to_be_bytes());
    msg.extend_from_slice(&0u16.to_be_bytes());
    let ar = u16::from_be_bytes([msg[10], msg[11]]).wrapping_add(1);
    msg[10..12].copy_from_slice(&ar.to_be_bytes());
}

/// Removes the TSIG record from a verified message (so it parses as the plain message).
pub fn strip(msg: &[u8]) -> Vec<u8> {
    match find(msg) {
        Ok(Some(t)) => {
            let mut out = msg[..t.start].to_vec();
            out[..2].copy_from_slice(&t.original_id.to_be_bytes());
            let ar = u16::from_be_bytes([out[10], out[11]]).saturating_sub(1);
            out[10..12].copy_from_slice(&ar.to_be_bytes());
            out
        }
        _ => msg.to_vec(),
    }
}
