//! DNSSEC verification primitives (RFC 4034, RFC 5155) for a validating resolver: RRSIG and
//! NSEC/NSEC3 record data, the canonical signed data of an RRset, signature checks against a
//! DNSKEY (domain's crypto: RSASHA256, ECDSAP256SHA256, ED25519 and the others ring knows),
//! DS digests and NSEC3 hashes. Pure functions over plain data; the chain-of-trust logic is the
//! resolver's.

use super::message::Record;
use super::name::{self, NameBuf};
use super::rrtype::embedded_name;
use domain::base::iana::{Rtype, SecurityAlgorithm};
use domain::base::name::ParsedName;
use domain::base::rdata::{ComposeRecordData, ParseRecordData};
use domain::crypto::common::PublicKey;
use domain::dep::octseq::Parser;
use domain::rdata::{Dnskey, ZoneRecordData};

/// The RRSIG record type.
pub const RRSIG: u16 = 46;
/// The DS record type.
pub const DS: u16 = 43;

/// The fields of an RRSIG record (RFC 4034 §3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rrsig {
    pub type_covered: u16,
    pub algorithm: u8,
    /// Labels of the signed owner name, the root and a leading `*` not counted: fewer than the
    /// owner has means the answer was expanded from a wildcard.
    pub labels: u8,
    pub original_ttl: u32,
    pub expiration: u32,
    pub inception: u32,
    pub key_tag: u16,
    /// The zone whose DNSKEY made the signature (lower-cased).
    pub signer: NameBuf,
    pub signature: Vec<u8>,
    /// The rdata up to the signature (the start of the signed data).
    head: Vec<u8>,
}

/// Reads RRSIG rdata; `None` when malformed.
pub fn parse_rrsig(rdata: &[u8]) -> Option<Rrsig> {
    let fixed = rdata.get(..18)?;
    let signer = embedded_name(rdata, 18)?;
    let end = 18 + signer.len();
    let signature = rdata.get(end..)?.to_vec();
    if signature.is_empty() {
        return None;
    }
    let u32_at = |i: usize| u32::from_be_bytes([fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]]);
    let signer = name::to_lower(signer);
    let mut head = fixed.to_vec();
    head.extend_from_slice(&signer);
    Some(Rrsig {
        type_covered: u16::from_be_bytes([fixed[0], fixed[1]]),
        algorithm: fixed[2],
        labels: fixed[3],
        original_ttl: u32_at(4),
        expiration: u32_at(8),
        inception: u32_at(12),
        key_tag: u16::from_be_bytes([fixed[16], fixed[17]]),
        signer,
        signature,
        head,
    })
}

/// The type covered by RRSIG rdata (0 when too short).
pub fn rrsig_covers(rdata: &[u8]) -> u16 {
    rdata.get(..2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
}

/// Whether `now` lies in the signature's validity window (RFC 4034 §3.1.5, serial arithmetic
/// of RFC 1982). `Err(true)`: expired; `Err(false)`: not yet valid.
pub fn in_window(sig: &Rrsig, now: u32) -> Result<(), bool> {
    let after = |a: u32, b: u32| (a.wrapping_sub(b) as i32) >= 0;
    if !after(now, sig.inception) {
        return Err(false);
    }
    if !after(sig.expiration, now) {
        return Err(true);
    }
    Ok(())
}

/// Why a signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("algorithm {0} is not supported")]
    Algorithm(u8),
    #[error("malformed record data")]
    Malformed,
    #[error("the signature does not match")]
    BadSignature,
}

/// The algorithms signatures are checked for (RFC 8624 MUST/RECOMMENDED ones).
pub fn algorithm_supported(alg: u8) -> bool {
    matches!(alg, 8 | 10 | 13 | 14 | 15)
}

/// DNSKEY rdata fields: (flags, protocol, algorithm, public key).
pub fn dnskey_fields(rdata: &[u8]) -> Option<(u16, u8, u8, &[u8])> {
    let h = rdata.get(..4)?;
    Some((u16::from_be_bytes([h[0], h[1]]), h[2], h[3], &rdata[4..]))
}

/// Record data in canonical form (RFC 4034 §6.2: names lower-cased where the type says so).
fn canonical_rdata(rtype: u16, rdata: &[u8]) -> Option<Vec<u8>> {
    let mut parser = Parser::from_ref(rdata);
    let parsed = ZoneRecordData::<&[u8], ParsedName<&[u8]>>::parse_rdata(Rtype::from_int(rtype), &mut parser)
        .ok()??;
    let mut out = Vec::new();
    parsed.compose_canonical_rdata(&mut out).ok()?;
    Some(out)
}

/// The data an RRSIG signs (RFC 4034 §3.1.8.1): its rdata without the signature, then the
/// RRset in canonical form and order, with the original TTL and, for a wildcard expansion, the
/// `*` owner.
pub fn signed_data(sig: &Rrsig, rrset: &[Record]) -> Result<Vec<u8>, VerifyError> {
    let first = rrset.first().ok_or(VerifyError::Malformed)?;
    let owner = name::to_lower(&first.owner);
    let owner_labels = name::label_count(&owner);
    let signed_owner: NameBuf = if usize::from(sig.labels) < owner_labels {
        let mut cut: &[u8] = &owner;
        for _ in 0..owner_labels - usize::from(sig.labels) {
            cut = name::parent(cut).ok_or(VerifyError::Malformed)?;
        }
        name::wildcard_of(cut)
    } else if usize::from(sig.labels) == owner_labels {
        owner
    } else {
        return Err(VerifyError::Malformed);
    };
    let mut rdatas: Vec<Vec<u8>> = Vec::with_capacity(rrset.len());
    for r in rrset {
        rdatas.push(canonical_rdata(r.rtype, &r.rdata).ok_or(VerifyError::Malformed)?);
    }
    rdatas.sort();
    rdatas.dedup();
    let mut out = sig.head.clone();
    for rd in &rdatas {
        out.extend_from_slice(&signed_owner);
        out.extend_from_slice(&first.rtype.to_be_bytes());
        out.extend_from_slice(&first.class.to_be_bytes());
        out.extend_from_slice(&sig.original_ttl.to_be_bytes());
        let len = u16::try_from(rd.len()).map_err(|_| VerifyError::Malformed)?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(rd);
    }
    Ok(out)
}

/// Checks `sig` over `rrset` with the DNSKEY `dnskey` (rdata). Tag, algorithm and time window
/// are the caller's to check first (they are cheap; this is not).
pub fn verify(sig: &Rrsig, rrset: &[Record], dnskey: &[u8]) -> Result<(), VerifyError> {
    verify_signed(sig, &signed_data(sig, rrset)?, dnskey)
}

/// [`verify`] over signed data already built with [`signed_data`] (a caller that also needs
/// the data, e.g. for [`fingerprint`], builds it once).
pub fn verify_signed(sig: &Rrsig, data: &[u8], dnskey: &[u8]) -> Result<(), VerifyError> {
    let (flags, protocol, alg, key) = dnskey_fields(dnskey).ok_or(VerifyError::Malformed)?;
    if !algorithm_supported(alg) || alg != sig.algorithm {
        return Err(VerifyError::Algorithm(sig.algorithm));
    }
    let dnskey = Dnskey::new(flags, protocol, SecurityAlgorithm::from_int(alg), key)
        .map_err(|_| VerifyError::Malformed)?;
    let public = PublicKey::from_dnskey(&dnskey).map_err(|_| VerifyError::Malformed)?;
    public.verify(data, &sig.signature).map_err(|_| VerifyError::BadSignature)
}

/// A SHA-256 digest of one signature check's inputs (the DNSKEY rdata, the signature and the
/// signed data, each length-prefixed): equal digests mean the same check with the same result,
/// so a validator may remember the digests of checks that passed and skip the public-key
/// operation when the same RRset, RRSIG and key come again (as Unbound keeps the security
/// status of an RRset it has validated).
pub fn fingerprint(sig: &Rrsig, data: &[u8], dnskey: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [dnskey, &sig.signature, data] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Whether DS rdata `ds` is a digest of DNSKEY rdata `dnskey` owned by `owner` (digest types
/// 1 SHA-1, 2 SHA-256, 4 SHA-384). `None` when the digest type is unknown.
pub fn ds_matches(owner: &[u8], dnskey: &[u8], ds: &[u8]) -> Option<bool> {
    let h = ds.get(..4)?;
    let (tag, alg, digest_type) = (u16::from_be_bytes([h[0], h[1]]), h[2], h[3]);
    let algo = match digest_type {
        1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        2 => &ring::digest::SHA256,
        4 => &ring::digest::SHA384,
        _ => return None,
    };
    let (_, _, key_alg, _) = dnskey_fields(dnskey)?;
    if key_alg != alg || super::dnssec::key_tag(dnskey) != tag {
        return Some(false);
    }
    let mut ctx = ring::digest::Context::new(algo);
    ctx.update(&name::to_lower(owner));
    ctx.update(dnskey);
    Some(ctx.finish().as_ref() == &ds[4..])
}

/// DS rdata fields: (key tag, algorithm, digest type).
pub fn ds_fields(ds: &[u8]) -> Option<(u16, u8, u8)> {
    let h = ds.get(..4)?;
    Some((u16::from_be_bytes([h[0], h[1]]), h[2], h[3]))
}

/// Whether a type bitmap (RFC 4034 §4.1.2 windows) lists `rtype`.
pub fn bitmap_has(bitmap: &[u8], rtype: u16) -> bool {
    let (window, bit) = ((rtype >> 8) as u8, (rtype & 0xff) as usize);
    let mut pos = 0;
    while pos + 2 <= bitmap.len() {
        let (w, len) = (bitmap[pos], bitmap[pos + 1] as usize);
        let Some(bits) = bitmap.get(pos + 2..pos + 2 + len) else { return false };
        if w == window {
            return bits.get(bit / 8).is_some_and(|b| b & (0x80 >> (bit % 8)) != 0);
        }
        pos += 2 + len;
    }
    false
}

/// NSEC rdata: (next owner name, type bitmap).
pub fn parse_nsec(rdata: &[u8]) -> Option<(NameBuf, &[u8])> {
    let next = embedded_name(rdata, 0)?;
    Some((name::to_lower(next), &rdata[next.len()..]))
}

/// The fields of an NSEC3 record (RFC 5155 §3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nsec3<'a> {
    pub hash_algorithm: u8,
    /// Bit 0: opt-out (unsigned delegations may lie in the covered range).
    pub opt_out: bool,
    pub iterations: u16,
    pub salt: &'a [u8],
    pub next_hashed: &'a [u8],
    pub bitmap: &'a [u8],
}

/// Reads NSEC3 rdata; `None` when malformed.
pub fn parse_nsec3(rdata: &[u8]) -> Option<Nsec3<'_>> {
    let h = rdata.get(..5)?;
    let salt_len = usize::from(h[4]);
    let salt = rdata.get(5..5 + salt_len)?;
    let hash_len = usize::from(*rdata.get(5 + salt_len)?);
    let start = 6 + salt_len;
    let next_hashed = rdata.get(start..start + hash_len)?;
    Some(Nsec3 {
        hash_algorithm: h[0],
        opt_out: h[1] & 1 != 0,
        iterations: u16::from_be_bytes([h[2], h[3]]),
        salt,
        next_hashed,
        bitmap: rdata.get(start + hash_len..)?,
    })
}

/// The NSEC3 hash of `owner` (RFC 5155 §5, SHA-1): `iterations` extra rounds with `salt`.
pub fn nsec3_hash(owner: &[u8], iterations: u16, salt: &[u8]) -> Vec<u8> {
    let digest = |data: &[u8]| {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
        ctx.update(data);
        ctx.update(salt);
        ctx.finish().as_ref().to_vec()
    };
    let mut h = digest(&name::to_lower(owner));
    for _ in 0..iterations {
        h = digest(&h);
    }
    h
}

/// Decodes base32hex without padding (RFC 4648 §7, either case): an NSEC3 owner's first label.
pub fn base32hex_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in text {
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'v' => c - b'a' + 10,
            b'A'..=b'V' => c - b'A' + 10,
            _ => return None,
        };
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The hash in an NSEC3 owner name's first label.
pub fn nsec3_owner_hash(owner: &[u8]) -> Option<Vec<u8>> {
    let len = usize::from(*owner.first()?);
    base32hex_decode(owner.get(1..1 + len)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmaps_list_their_types() {
        // Window 0: A (1), NS (2), SOA (6), RRSIG (46); window 1 absent.
        let mut bits = vec![0u8; 6];
        for t in [1usize, 2, 6, 46] {
            bits[t / 8] |= 0x80 >> (t % 8);
        }
        let mut bitmap = vec![0, 6];
        bitmap.extend(bits);
        for t in [1, 2, 6, 46] {
            assert!(bitmap_has(&bitmap, t), "type {t}");
        }
        for t in [5, 43, 257] {
            assert!(!bitmap_has(&bitmap, t), "type {t}");
        }
        assert!(!bitmap_has(&[0, 200, 1], 1), "a truncated window reads as absent");
    }

    #[test]
    fn nsec3_hash_matches_rfc5155_appendix_a() {
        // RFC 5155 Appendix A: H(example) with salt aabbccdd, 12 iterations.
        let owner = name::from_text("example.").unwrap();
        let h = nsec3_hash(&owner, 12, &[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(h, base32hex_decode(b"0p9mhaveqvm6t7vbl5lop2u3t2rp3tom").unwrap());
    }

    #[test]
    fn malformed_rdata_is_refused_not_panicked_on() {
        assert!(parse_rrsig(&[0; 17]).is_none());
        assert!(parse_rrsig(&[0; 19]).is_none());
        assert!(parse_nsec3(&[1, 0, 0, 0, 9]).is_none());
        assert!(parse_nsec(&[63]).is_none());
        assert_eq!(ds_matches(b"\0", &[1], &[0, 0, 8, 2]), None);
        assert!(base32hex_decode(b"zz").is_none());
    }
}
