//! The Query Routing Protocol (QRP, LimeWire's "Query Routing for the Gnutella Network" v1.0):
//! a leaf hashes every keyword of its shared file names (and their `urn:sha1:` URNs) into a
//! table of 2^N slots and sends it to its ultrapeers in ROUTE_TABLE_UPDATE (0x30) messages — one
//! RESET, then PATCH fragments of 4-bit signed deltas. The ultrapeer forwards a Query to that leaf
//! only when every keyword of the query hashes to a present slot.
//!
//! This implementation sends patches uncompressed (compressor 0) and accepts only uncompressed
//! patches with 4- or 8-bit entries; a zlib-compressed patch is refused with
//! [`QrpError::Unsupported`] (the router then treats the leaf as having no table).

use super::wire::{Query, RouteTableUpdate};
use crate::index::keywords;
use thiserror::Error;

/// The multiplier of the QRP hash: ⌊2^32 · (√5 − 1)/2⌋ (Knuth's multiplicative hashing).
pub const HASH_MULTIPLIER: u32 = 0x4F1B_BCDC;
/// The "infinity" (absent) value every servent uses.
pub const INFINITY: u8 = 7;
/// Default table size exponent (65536 slots), as LimeWire.
pub const DEFAULT_BITS: u8 = 16;
/// Largest table accepted from a leaf: 2^20 slots (512 KiB in memory).
pub const DEFAULT_MAX_BITS: u8 = 20;
/// Default size of one PATCH fragment's data.
pub const DEFAULT_FRAGMENT: usize = 4096;

/// The QRP hash of `word` into `bits` bits (1..=32): the characters (lower-cased, UTF-16 code
/// units, low byte) are XORed into a 32-bit word little-endian in rotating positions, which is
/// multiplied by [`HASH_MULTIPLIER`] and the top `bits` bits of the low 32 bits kept.
pub fn hash(word: &str, bits: u8) -> u32 {
    let mut xor: u32 = 0;
    let mut j = 0;
    for unit in word.encode_utf16() {
        let lower = char::from_u32(u32::from(unit))
            .map(|c| {
                let mut l = c.to_lowercase();
                match (l.next(), l.next()) {
                    (Some(one), None) => one as u32,
                    _ => c as u32,
                }
            })
            .unwrap_or(u32::from(unit));
        xor ^= (lower & 0xFF) << (j * 8);
        j = (j + 1) % 4;
    }
    hash_fast(xor, bits)
}

/// The multiplicative step of [`hash`].
pub fn hash_fast(x: u32, bits: u8) -> u32 {
    let bits = bits.clamp(1, 32);
    let prod = x.wrapping_mul(HASH_MULTIPLIER);
    if bits == 32 { prod } else { prod >> (32 - bits) }
}

/// Why a route table update was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QrpError {
    /// A RESET with a size that is not a power of two in the accepted range, or a bad infinity.
    #[error("QRP reset with a bad table size {0} or infinity")]
    BadReset(u32),
    /// A PATCH before any RESET, out of sequence, or longer than the table.
    #[error("QRP patch out of sequence or too long: {0}")]
    BadPatch(&'static str),
    /// Compression or an entry size this implementation does not accept.
    #[error(
        "QRP patch with compressor {compressor} / {entry_bits}-bit entries is not supported (send uncompressed 4- or 8-bit patches)"
    )]
    Unsupported {
        /// Compressor byte.
        compressor: u8,
        /// Entry bits.
        entry_bits: u8,
    },
}

/// A QRP table: 2^bits slots, each a distance (0..=15) where `infinity` means absent.
/// Stored two slots per byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrpTable {
    bits: u8,
    infinity: u8,
    nibbles: Vec<u8>,
}

impl QrpTable {
    /// An empty table (every slot `infinity`) of 2^bits slots (bits clamped to 3..=24).
    pub fn new(bits: u8, infinity: u8) -> QrpTable {
        let bits = bits.clamp(3, 24);
        let infinity = infinity.clamp(1, 15);
        let fill = infinity | (infinity << 4);
        QrpTable { bits, infinity, nibbles: vec![fill; (1usize << bits) / 2] }
    }

    /// A leaf's table: every keyword of `names` and every URN in `urns` at distance 1.
    pub fn from_names<'a>(
        bits: u8,
        names: impl IntoIterator<Item = &'a str>,
        urns: impl IntoIterator<Item = String>,
    ) -> QrpTable {
        let mut t = QrpTable::new(bits, INFINITY);
        for n in names {
            for k in keywords(n) {
                t.insert(&k);
            }
        }
        for u in urns {
            t.insert(&u);
        }
        t
    }

    /// Table size exponent.
    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        1 << self.bits
    }

    fn get(&self, i: usize) -> u8 {
        let b = self.nibbles[i / 2];
        if i.is_multiple_of(2) { b >> 4 } else { b & 0x0F }
    }

    fn set(&mut self, i: usize, v: u8) {
        let b = &mut self.nibbles[i / 2];
        if i.is_multiple_of(2) {
            *b = (*b & 0x0F) | (v << 4);
        } else {
            *b = (*b & 0xF0) | (v & 0x0F);
        }
    }

    /// Marks `word` present at distance 1.
    pub fn insert(&mut self, word: &str) {
        let i = hash(word, self.bits) as usize;
        self.set(i, 1);
    }

    /// Whether `word`'s slot is present.
    pub fn contains(&self, word: &str) -> bool {
        self.get(hash(word, self.bits) as usize) < self.infinity
    }

    /// Number of present slots (how full the table is).
    pub fn present(&self) -> usize {
        (0..self.slots()).filter(|&i| self.get(i) < self.infinity).count()
    }

    /// Whether a query should be routed to the owner of this table: any of its `urn:sha1:`
    /// URNs is present, or (without URNs) every keyword is present. A query with neither
    /// matches nothing.
    pub fn matches_query(&self, q: &Query) -> bool {
        let urns = q.sha1_urns();
        if !urns.is_empty() {
            return urns.iter().any(|d| self.contains(&super::base32::sha1_urn(d)));
        }
        self.matches_keywords(&q.criteria)
    }

    /// Whether every keyword of `criteria` is present (false when there are none).
    pub fn matches_keywords(&self, criteria: &str) -> bool {
        let k = keywords(criteria);
        !k.is_empty() && k.iter().all(|w| self.contains(w))
    }

    /// The messages that install this table at an ultrapeer from scratch: RESET, then PATCH
    /// fragments (uncompressed, 4-bit deltas from an all-infinity table) of at most
    /// `fragment` data bytes each.
    pub fn update_messages(&self, fragment: usize) -> Vec<RouteTableUpdate> {
        let fragment = fragment.clamp(16, 60 * 1024);
        let inf = self.infinity as i8;
        let deltas: Vec<u8> = (0..self.slots() / 2)
            .map(|p| {
                let hi = (self.get(2 * p) as i8 - inf) as u8 & 0x0F;
                let lo = (self.get(2 * p + 1) as i8 - inf) as u8 & 0x0F;
                (hi << 4) | lo
            })
            .collect();
        let chunks: Vec<&[u8]> = deltas.chunks(fragment).collect();
        let total = chunks.len().min(255) as u8;
        let mut out =
            vec![RouteTableUpdate::Reset { table_len: self.slots() as u32, infinity: self.infinity }];
        // Tables larger than 255 fragments cannot be sent with this fragment size; the ones we
        // build (2^16 slots, 4 KiB fragments) need 8.
        for (i, c) in chunks.into_iter().take(255).enumerate() {
            out.push(RouteTableUpdate::Patch {
                seq_no: i as u8 + 1,
                seq_size: total,
                compressor: 0,
                entry_bits: 4,
                data: c.to_vec(),
            });
        }
        out
    }
}

/// The receiving side of ROUTE_TABLE_UPDATE for one leaf connection.
#[derive(Debug, Clone)]
pub struct QrpReceiver {
    max_bits: u8,
    current: Option<QrpTable>,
    pending: Option<(QrpTable, usize, u8, u8)>, // table, next slot, next seq_no, seq_size
}

impl QrpReceiver {
    /// A receiver that accepts tables of up to 2^max_bits slots.
    pub fn new(max_bits: u8) -> QrpReceiver {
        QrpReceiver { max_bits: max_bits.clamp(3, 24), current: None, pending: None }
    }

    /// The last complete table, if any.
    pub fn table(&self) -> Option<&QrpTable> {
        self.current.as_ref()
    }

    /// Applies one update. On error the state is unchanged except that a patch in progress
    /// is abandoned.
    pub fn on_update(&mut self, u: &RouteTableUpdate) -> Result<(), QrpError> {
        match u {
            RouteTableUpdate::Reset { table_len, infinity } => {
                let n = *table_len;
                let ok =
                    n.is_power_of_two() && n >= 8 && n <= 1 << self.max_bits && (1..=15).contains(infinity);
                if !ok {
                    return Err(QrpError::BadReset(n));
                }
                self.current = Some(QrpTable::new(n.trailing_zeros() as u8, *infinity));
                self.pending = None;
                Ok(())
            }
            RouteTableUpdate::Patch { seq_no, seq_size, compressor, entry_bits, data } => {
                if *compressor != 0 || !matches!(entry_bits, 4 | 8) {
                    self.pending = None;
                    return Err(QrpError::Unsupported { compressor: *compressor, entry_bits: *entry_bits });
                }
                if *seq_no == 1 {
                    let Some(cur) = &self.current else {
                        return Err(QrpError::BadPatch("patch before reset"));
                    };
                    if *seq_size == 0 {
                        return Err(QrpError::BadPatch("sequence size 0"));
                    }
                    self.pending = Some((cur.clone(), 0, 1, *seq_size));
                }
                let Some((table, pos, next, size)) = self.pending.as_mut() else {
                    return Err(QrpError::BadPatch("fragment without its first"));
                };
                if *seq_no != *next || *seq_size != *size {
                    self.pending = None;
                    return Err(QrpError::BadPatch("fragment out of order"));
                }
                let per_byte = if *entry_bits == 4 { 2 } else { 1 };
                if *pos + data.len() * per_byte > table.slots() {
                    self.pending = None;
                    return Err(QrpError::BadPatch("patch longer than the table"));
                }
                for &b in data {
                    let deltas: [i8; 2] = if *entry_bits == 4 {
                        [((b as i8) >> 4), (((b << 4) as i8) >> 4)]
                    } else {
                        [b as i8, 0]
                    };
                    for d in &deltas[..per_byte] {
                        let v = (table.get(*pos) as i16 + *d as i16).clamp(0, 15) as u8;
                        table.set(*pos, v);
                        *pos += 1;
                    }
                }
                *next = next.wrapping_add(1);
                if *seq_no == *size {
                    let (t, ..) = self.pending.take().expect("pending patch");
                    self.current = Some(t);
                }
                Ok(())
            }
        }
    }
}

/// Feeds arbitrary bytes to a [`QrpReceiver`] as a sequence of ROUTE_TABLE_UPDATE payloads
/// (each prefixed by a one-byte length): the fuzz target's body. Returns how many were applied.
pub fn fuzz_updates(data: &[u8]) -> usize {
    let mut r = QrpReceiver::new(12);
    let mut applied = 0;
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let n = (len as usize).min(tail.len());
        let (payload, next) = tail.split_at(n);
        rest = next;
        if let Ok(super::wire::Payload::RouteTable(u)) =
            super::wire::decode_payload(super::wire::ptype::ROUTE_TABLE_UPDATE, payload)
            && r.on_update(&u).is_ok()
        {
            applied += 1;
        }
    }
    if let Some(t) = r.table() {
        // Whatever was applied, lookups stay in bounds.
        let _ = t.matches_keywords("hey jude");
        let _ = t.present();
    }
    applied
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gnutella::wire::Extension;

    #[test]
    fn spec_hash_values() {
        // The QRP specification's / LimeWire's HashFunctionTest vectors.
        let cases: &[(&str, u8, u32)] = &[
            ("", 13, 0),
            ("eb", 13, 6791),
            ("ebc", 13, 7082),
            ("ebck", 13, 6698),
            ("ebckl", 13, 3179),
            ("ebcklm", 13, 3235),
            ("ebcklme", 13, 6438),
            ("ebcklmen", 13, 1062),
            ("ebcklmenq", 13, 3527),
            ("", 16, 0),
            ("n", 16, 65003),
            ("nd", 16, 54193),
            ("ndf", 16, 4953),
            ("ndfl", 16, 58201),
            ("ndfla", 16, 34830),
            ("ndflal", 16, 36910),
            ("ndflale", 16, 34586),
            ("ndflalem", 16, 37658),
            ("NDFLalem", 16, 37658),
            ("ndflaleme", 16, 45559),
            ("ol2j34lj", 10, 318),
            ("asdfas23", 10, 503),
            ("9um3o34fd", 10, 758),
            ("a234d", 10, 281),
            ("a3f", 10, 767),
            ("3nja9", 10, 581),
            ("3NJA9", 10, 581),
            ("2459345938032343", 10, 146),
            ("7777a88a8a8a8", 10, 342),
            ("asdfjklkj3k", 10, 861),
            ("adfk32l", 10, 1011),
            ("zzzzzzzzzzz", 10, 944),
        ];
        for &(w, bits, want) in cases {
            assert_eq!(hash(w, bits), want, "hash({w:?}, {bits})");
        }
    }

    fn query(criteria: &str) -> Query {
        Query { flags: 0, criteria: criteria.into(), ext: vec![] }
    }

    #[test]
    fn table_matches_all_keywords() {
        let urn = crate::gnutella::base32::sha1_urn(&[
            3, 14, 15, 92, 65, 35, 89, 79, 32, 38, 46, 26, 43, 38, 32, 79, 50, 28, 84, 19,
        ]);
        let t = QrpTable::from_names(DEFAULT_BITS, ["Hey Jude.mp3", "Let It Be.ogg"], [urn.clone()]);
        assert!(t.matches_query(&query("hey jude")));
        assert!(t.matches_query(&query("JUDE")));
        assert!(!t.matches_query(&query("hey yesterday")));
        assert!(!t.matches_query(&query("")));
        let by_urn = Query { flags: 0, criteria: String::new(), ext: vec![Extension::Urn(urn)] };
        assert!(t.matches_query(&by_urn));
        let other = Query {
            flags: 0,
            criteria: "hey".into(),
            ext: vec![Extension::Urn(crate::gnutella::base32::sha1_urn(&[
                27, 18, 28, 18, 28, 45, 90, 45, 23, 53, 60, 28, 74, 71, 35, 26, 62, 49, 77, 57,
            ]))],
        };
        assert!(!t.matches_query(&other), "a URN query is routed by its URN");
        assert!(t.present() >= 5);
    }

    #[test]
    fn update_messages_round_trip_through_receiver() {
        let t = QrpTable::from_names(DEFAULT_BITS, ["Hey Jude.mp3", "Yesterday.mp3"], []);
        let msgs = t.update_messages(DEFAULT_FRAGMENT);
        assert_eq!(msgs.len(), 1 + 8, "RESET + 8 fragments of 4 KiB for 65536 4-bit slots");
        assert!(matches!(msgs[0], RouteTableUpdate::Reset { table_len: 65536, infinity: 7 }));
        let mut r = QrpReceiver::new(DEFAULT_MAX_BITS);
        for m in &msgs {
            r.on_update(m).unwrap();
        }
        assert_eq!(r.table(), Some(&t));
        assert!(r.table().unwrap().matches_keywords("yesterday"));
        // A second full update replaces the table.
        let t2 = QrpTable::from_names(DEFAULT_BITS, ["Other.mp3"], []);
        for m in &t2.update_messages(1000) {
            r.on_update(m).unwrap();
        }
        assert_eq!(r.table(), Some(&t2));
    }

    #[test]
    fn four_bit_patch_from_spec_layout() {
        // 16 slots; slot 0 present (-6 = 0xA), slot 3 present, the rest unchanged.
        let mut r = QrpReceiver::new(DEFAULT_MAX_BITS);
        r.on_update(&RouteTableUpdate::Reset { table_len: 16, infinity: 7 }).unwrap();
        let patch = RouteTableUpdate::Patch {
            seq_no: 1,
            seq_size: 1,
            compressor: 0,
            entry_bits: 4,
            data: vec![0xA0, 0x0A, 0, 0, 0, 0, 0, 0],
        };
        r.on_update(&patch).unwrap();
        let t = r.table().unwrap();
        assert_eq!(t.present(), 2);
        assert_eq!((t.get(0), t.get(1), t.get(2), t.get(3)), (1, 7, 7, 1));
        // 8-bit entries: slot 1 goes from 7 to 2.
        let patch8 = RouteTableUpdate::Patch {
            seq_no: 1,
            seq_size: 1,
            compressor: 0,
            entry_bits: 8,
            data: vec![0, 0xFB],
        };
        r.on_update(&patch8).unwrap();
        assert_eq!(r.table().unwrap().get(1), 2);
    }

    #[test]
    fn fuzz_body_survives_junk() {
        assert_eq!(fuzz_updates(&[]), 0);
        // RESET to 64 slots, then a one-fragment 4-bit patch: both applied.
        let ok = [6, 0, 64, 0, 0, 0, 7, 7, 1, 1, 1, 0, 4, 0xA0, 0x0A];
        assert_eq!(fuzz_updates(&ok), 2);
        let mut x: u64 = 99;
        for _ in 0..3000 {
            let mut buf = Vec::new();
            for _ in 0..(x % 120) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(x as u8);
            }
            fuzz_updates(&buf);
        }
    }

    #[test]
    fn bad_updates_are_refused() {
        let mut r = QrpReceiver::new(10);
        let p = |seq_no, seq_size, data: Vec<u8>| RouteTableUpdate::Patch {
            seq_no,
            seq_size,
            compressor: 0,
            entry_bits: 4,
            data,
        };
        assert_eq!(r.on_update(&p(1, 1, vec![0])), Err(QrpError::BadPatch("patch before reset")));
        assert!(r.on_update(&RouteTableUpdate::Reset { table_len: 1000, infinity: 7 }).is_err());
        assert!(r.on_update(&RouteTableUpdate::Reset { table_len: 1 << 11, infinity: 7 }).is_err());
        assert!(r.on_update(&RouteTableUpdate::Reset { table_len: 64, infinity: 0 }).is_err());
        r.on_update(&RouteTableUpdate::Reset { table_len: 64, infinity: 7 }).unwrap();
        assert!(r.on_update(&p(2, 2, vec![0])).is_err(), "second fragment first");
        assert!(r.on_update(&p(1, 1, vec![0; 33])).is_err(), "longer than the table");
        r.on_update(&p(1, 2, vec![0xA0])).unwrap();
        assert!(r.on_update(&p(3, 2, vec![0])).is_err(), "skipped fragment");
        let z = RouteTableUpdate::Patch {
            seq_no: 1,
            seq_size: 1,
            compressor: 1,
            entry_bits: 4,
            data: vec![0x78],
        };
        assert_eq!(r.on_update(&z), Err(QrpError::Unsupported { compressor: 1, entry_bits: 4 }));
        // The empty table from the reset is still in place; nothing half-applied.
        assert_eq!(r.table().unwrap().present(), 0);
    }
}
