//! The NSEC and NSEC3 chains of a signed zone in order (RFC 4034 §6.1 canonical order, RFC 5155
//! hash order), so the answer code can find the record that matches or covers a name without
//! scanning: built once when a zone version is built, read by [`crate::proofs`].

use crate::wire::name::{NameBuf, to_lower};
use crate::zone::Zone;

/// NSEC record type.
pub const NSEC: u16 = 47;
/// NSEC3 record type.
pub const NSEC3: u16 = 50;
/// NSEC3PARAM record type.
pub const NSEC3PARAM: u16 = 51;

/// Most NSEC3 iterations the server hashes names with (RFC 9276 §3.2 says 0; resolvers treat
/// more than 100 as insecure). Above it the zone's NSEC3 proofs are not served.
pub const MAX_NSEC3_ITERATIONS: u16 = 100;

/// A zone's denial chains.
#[derive(Debug, Clone, Default)]
pub struct DenialIndex {
    /// (canonical key, owner) of every NSEC owner, sorted by key.
    nsec: Vec<(Vec<Vec<u8>>, NameBuf)>,
    /// (lower-case base32hex hash label, owner) of every NSEC3 owner, sorted.
    nsec3: Vec<(Vec<u8>, NameBuf)>,
    /// NSEC3PARAM iterations and salt (the chain used for answers).
    params: Option<(u16, Vec<u8>)>,
}

/// RFC 4034 §6.1 canonical order key: the labels right to left, lower-cased.
pub fn canonical_key(name: &[u8]) -> Vec<Vec<u8>> {
    let mut labels = Vec::new();
    let mut i = 0;
    while i < name.len() {
        let len = name[i] as usize;
        if len == 0 || i + 1 + len > name.len() {
            break;
        }
        labels.push(name[i + 1..i + 1 + len].to_ascii_lowercase());
        i += 1 + len;
    }
    labels.reverse();
    labels
}

/// RFC 5155 §5 hash of a name (SHA-1, `iterations` extra rounds, `salt`).
pub fn nsec3_hash(name: &[u8], iterations: u16, salt: &[u8]) -> [u8; 20] {
    let hash_once = |data: &[u8]| {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
        ctx.update(data);
        ctx.update(salt);
        let d = ctx.finish();
        let mut out = [0u8; 20];
        out.copy_from_slice(d.as_ref());
        out
    };
    let mut h = hash_once(&to_lower(name));
    for _ in 0..iterations {
        h = hash_once(&h);
    }
    h
}

/// RFC 4648 §7 base32hex, lower case, no padding (NSEC3 owner labels).
pub fn base32hex(data: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    let mut out = Vec::with_capacity(data.len().div_ceil(5) * 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize]);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize]);
    }
    out
}

impl DenialIndex {
    /// Indexes the chains of `zone` (empty for an unsigned zone).
    pub fn build(zone: &Zone) -> DenialIndex {
        let mut idx = DenialIndex::default();
        for node in zone.nodes() {
            if node.get(NSEC).is_some() {
                idx.nsec.push((canonical_key(node.name()), node.name().into()));
            }
            if node.get(NSEC3).is_some() && node.name().first().is_some_and(|&l| l > 0) {
                let label = node.name()[1..1 + node.name()[0] as usize].to_ascii_lowercase();
                idx.nsec3.push((label, node.name().into()));
            }
        }
        idx.nsec.sort();
        idx.nsec3.sort();
        idx.params = zone.node(zone.apex()).and_then(|n| n.get(NSEC3PARAM)).and_then(|set| {
            let rd = set.rdatas().next()?;
            // Hash algorithm 1 (SHA-1), flags, iterations, salt length, salt.
            if rd.len() < 5 || rd[0] != 1 {
                return None;
            }
            let iterations = u16::from_be_bytes([rd[2], rd[3]]);
            let salt = rd.get(5..5 + rd[4] as usize)?.to_vec();
            (iterations <= MAX_NSEC3_ITERATIONS).then_some((iterations, salt))
        });
        idx
    }

    /// True when the zone has an NSEC chain.
    pub fn has_nsec(&self) -> bool {
        !self.nsec.is_empty()
    }

    /// True when the zone has a usable NSEC3 chain (NSEC3PARAM present and sane).
    pub fn has_nsec3(&self) -> bool {
        !self.nsec3.is_empty() && self.params.is_some()
    }

    /// The NSEC owner that matches or covers `name` (the last one at or before it in canonical
    /// order; the last of the chain when `name` sorts before all, which cannot happen in-zone).
    pub fn nsec_for(&self, name: &[u8]) -> Option<&[u8]> {
        let key = canonical_key(name);
        let pos = self.nsec.partition_point(|(k, _)| *k <= key);
        let i = if pos == 0 { self.nsec.len().checked_sub(1)? } else { pos - 1 };
        Some(&self.nsec[i].1)
    }

    /// The NSEC3 owner that matches or covers the hash of `name`, and whether it matches.
    pub fn nsec3_for(&self, name: &[u8]) -> Option<(&[u8], bool)> {
        let (iterations, salt) = self.params.as_ref()?;
        let label = base32hex(&nsec3_hash(name, *iterations, salt));
        let pos = self.nsec3.partition_point(|(k, _)| *k <= label);
        let i = if pos == 0 { self.nsec3.len().checked_sub(1)? } else { pos - 1 };
        let (k, owner) = &self.nsec3[i];
        Some((owner, *k == label))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::name::from_text;

    #[test]
    fn rfc5155_appendix_a_hash() {
        // RFC 5155 Appendix A: H(example) with 12 iterations, salt aabbccdd.
        let h = nsec3_hash(&from_text("example.").unwrap(), 12, &[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(base32hex(&h), b"0p9mhaveqvm6t7vbl5lop2u3t2rp3tom");
        let h = nsec3_hash(&from_text("a.example.").unwrap(), 12, &[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(base32hex(&h), b"35mthgpgcu1qg68fab165klnsnk3dpvl");
    }

    #[test]
    fn canonical_order_rfc4034() {
        // RFC 4034 §6.1's example order.
        let names = [
            "example.",
            "a.example.",
            "yljkjljk.a.example.",
            "Z.a.example.",
            "zABC.a.EXAMPLE.",
            "z.example.",
            "\\001.z.example.",
            "*.z.example.",
            "\\200.z.example.",
        ];
        let keys: Vec<_> = names.iter().map(|n| canonical_key(&from_text(n).unwrap())).collect();
        for w in keys.windows(2) {
            assert!(w[0] < w[1], "{w:?}");
        }
    }

    #[test]
    fn finds_covering_nsec() {
        let z = Zone::from_text(
            "example.",
            "$ORIGIN example.\n@ 60 SOA a b 1 2 3 4 5\n@ 60 NS a\n@ 60 NSEC a A NS SOA NSEC\na 60 A 192.0.2.1\na 60 NSEC c A NSEC\nc 60 A 192.0.2.1\nc 60 NSEC example. A NSEC\n",
        )
        .unwrap();
        let idx = z.denial();
        assert!(idx.has_nsec() && !idx.has_nsec3());
        assert_eq!(
            idx.nsec_for(&from_text("b.example.").unwrap()).unwrap(),
            &from_text("a.example.").unwrap()[..]
        );
        assert_eq!(
            idx.nsec_for(&from_text("c.example.").unwrap()).unwrap(),
            &from_text("c.example.").unwrap()[..]
        );
        assert_eq!(
            idx.nsec_for(&from_text("zz.example.").unwrap()).unwrap(),
            &from_text("c.example.").unwrap()[..]
        );
        assert_eq!(
            idx.nsec_for(&from_text("x.a.example.").unwrap()).unwrap(),
            &from_text("a.example.").unwrap()[..]
        );
    }
}
