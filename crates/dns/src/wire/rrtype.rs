//! Record types as plain `u16` codes, their mnemonics, and the packed form an RRset's record data
//! is stored in (`[len:u16][rdata]...`), shared by the zone store and the response writer.

use std::str::FromStr;

/// Record type codes the server treats specially.
pub mod code {
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const CNAME: u16 = 5;
    pub const SOA: u16 = 6;
    pub const PTR: u16 = 12;
    pub const MX: u16 = 15;
    pub const TXT: u16 = 16;
    pub const AAAA: u16 = 28;
    pub const SRV: u16 = 33;
    pub const DNAME: u16 = 39;
    pub const OPT: u16 = 41;
    pub const DS: u16 = 43;
    pub const RRSIG: u16 = 46;
    pub const CAA: u16 = 257;
    pub const IXFR: u16 = 251;
    pub const AXFR: u16 = 252;
    pub const ANY: u16 = 255;
}

/// Class IN.
pub const CLASS_IN: u16 = 1;
/// Class ANY (QCLASS *).
pub const CLASS_ANY: u16 = 255;

/// The mnemonic for a type (`MX`, or `TYPE65534` for unknown ones, RFC 3597).
pub fn type_name(rtype: u16) -> String {
    domain::base::iana::Rtype::from_int(rtype).to_string()
}

/// Parses `MX`, `mx` or `TYPE15`.
pub fn type_from_text(text: &str) -> Result<u16, String> {
    domain::base::iana::Rtype::from_str(&text.to_ascii_uppercase())
        .map(|t| t.to_int())
        .map_err(|_| format!("unknown record type {text:?}"))
}

/// Appends one rdata to a packed rdata blob.
pub fn pack_rdata(blob: &mut Vec<u8>, rdata: &[u8]) {
    blob.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    blob.extend_from_slice(rdata);
}

/// Iterates over the rdatas of a packed blob (stops at the first malformed entry).
pub fn unpack_rdata(blob: &[u8]) -> impl Iterator<Item = &[u8]> + Clone {
    let mut rest = blob;
    std::iter::from_fn(move || {
        if rest.len() < 2 {
            return None;
        }
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        let item = rest.get(2..2 + len)?;
        rest = &rest[2 + len..];
        Some(item)
    })
}

/// Offset of the domain name inside an rdata whose target needs additional-section addresses
/// (NS host, MX exchange, SRV target); `None` for other types.
pub fn target_name_offset(rtype: u16) -> Option<usize> {
    match rtype {
        code::NS | code::CNAME => Some(0),
        code::MX => Some(2),
        code::SRV => Some(6),
        _ => None,
    }
}

/// The wire-format name embedded at `offset` in `rdata`, if well formed.
pub fn embedded_name(rdata: &[u8], offset: usize) -> Option<&[u8]> {
    let rest = rdata.get(offset..)?;
    let mut pos = 0;
    loop {
        let len = *rest.get(pos)? as usize;
        if len > 63 {
            return None;
        }
        pos += 1 + len;
        if len == 0 {
            return Some(&rest[..pos]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_blobs() {
        assert_eq!(type_name(15), "MX");
        assert_eq!(type_name(65534), "TYPE65534");
        assert_eq!(type_from_text("aaaa").unwrap(), 28);
        assert_eq!(type_from_text("TYPE65534").unwrap(), 65534);
        assert!(type_from_text("NOPE").is_err());
        let mut blob = Vec::new();
        pack_rdata(&mut blob, &[1, 2, 3, 4]);
        pack_rdata(&mut blob, &[]);
        let items: Vec<&[u8]> = unpack_rdata(&blob).collect();
        assert_eq!(items, vec![&[1u8, 2, 3, 4][..], &[][..]]);
        let mx = [0, 10, 4, b'm', b'a', b'i', b'l', 0];
        assert_eq!(embedded_name(&mx, target_name_offset(code::MX).unwrap()).unwrap(), &mx[2..]);
    }
}
