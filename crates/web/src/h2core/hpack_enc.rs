//! The HPACK encoder of our response heads (RFC 7541) with a dynamic table: a field seen
//! before on the connection goes out as one index byte instead of its literal bytes, which
//! the client then neither parses nor copies (a static file's answer shrinks from ~140 header
//! bytes to ~10). A block encoded without touching the table stays valid while the table does
//! not change, so the driver keeps such blocks ([`HeadCache`]) and resends their bytes.

use super::hpack::{STATIC_NAMES, TABLE_SIZE, encode_int, encode_str, static_value};
use std::collections::VecDeque;

/// RFC 7541 §4.1: every entry counts 32 octets besides its name and value.
const ENTRY_OVERHEAD: usize = 32;

/// One dynamic table entry, name and value in one allocation.
struct Entry {
    bytes: Box<[u8]>,
    name_len: usize,
}

impl Entry {
    fn is(&self, name: &[u8], value: &[u8]) -> bool {
        self.bytes.len() == name.len() + value.len()
            && self.bytes[..self.name_len] == *name
            && self.bytes[self.name_len..] == *value
    }
    fn has_name(&self, name: &[u8]) -> bool {
        self.bytes[..self.name_len] == *name
    }
    fn size(&self) -> usize {
        self.bytes.len() + ENTRY_OVERHEAD
    }
}

/// A response head's encoded block and the table state it was encoded against.
#[derive(Debug, Clone, Default)]
pub struct HeadCache {
    block: Vec<u8>,
    /// The [`Encoder::epoch`] the block is valid for; 0 is never valid.
    epoch: u64,
}

/// The connection's HPACK encoder (its dynamic table mirrors the client's decoder's).
pub struct Encoder {
    /// Newest first, as the decoder numbers them (index 62 is the front).
    entries: VecDeque<Entry>,
    size: usize,
    max: usize,
    /// A table size update owed at the start of the next block: the smallest size since the
    /// last block and the final one (RFC 7541 §4.2).
    pending: Option<(usize, usize)>,
    /// Bumped on every change of the table, so a cached block is reused only while every
    /// index in it still names the same field.
    epoch: u64,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder { entries: VecDeque::new(), size: 0, max: TABLE_SIZE, pending: None, epoch: 1 }
    }
}

impl Encoder {
    /// The client's SETTINGS_HEADER_TABLE_SIZE: we use at most that (and at most 4096).
    pub fn set_peer_max(&mut self, peer: usize) {
        let max = peer.min(TABLE_SIZE);
        if max == self.max {
            return;
        }
        self.max = max;
        self.evict_to(max);
        self.pending = Some(match self.pending {
            Some((least, _)) => (least.min(max), max),
            None => (max, max),
        });
        self.epoch += 1;
    }

    /// The table's version (see [`HeadCache`]).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Starts a header block: any owed table size update goes first.
    pub fn begin(&mut self, out: &mut Vec<u8>) {
        if let Some((least, last)) = self.pending.take() {
            if least < last {
                encode_int(least, 5, 0x20, out);
            }
            encode_int(last, 5, 0x20, out);
            self.epoch += 1;
        }
    }

    /// Appends `:status`.
    pub fn status(&mut self, status: u16, out: &mut Vec<u8>) {
        super::hpack::encode_status(status, out);
    }

    /// Appends one field (lower-case name): an index when the table has it, else a literal
    /// that enters the table (or, for fields that must not be kept, one never indexed).
    pub fn field(&mut self, name: &[u8], value: &[u8], out: &mut Vec<u8>) {
        let mut name_index = static_index(name);
        if let Some(i) = name_index
            && static_value(i) == value
            && !value.is_empty()
        {
            return encode_int(i, 7, 0x80, out);
        }
        for (i, e) in self.entries.iter().enumerate() {
            if e.is(name, value) {
                return encode_int(62 + i, 7, 0x80, out);
            }
            if name_index.is_none() && e.has_name(name) {
                name_index = Some(62 + i);
            }
        }
        if matches!(name, b"set-cookie" | b"authorization" | b"cookie" | b"proxy-authenticate") {
            // Never indexed (§6.2.3): secrets stay out of the table, here and in proxies.
            literal(name_index, 4, 0x10, name, value, out);
            return;
        }
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        if size > self.max / 2 {
            // Would push most of the table out for one field: sent as it is.
            literal(name_index, 4, 0x00, name, value, out);
            return;
        }
        literal(name_index, 6, 0x40, name, value, out);
        self.evict_to(self.max - size);
        let mut bytes = Vec::with_capacity(name.len() + value.len());
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(value);
        self.entries.push_front(Entry { bytes: bytes.into_boxed_slice(), name_len: name.len() });
        self.size += size;
        self.epoch += 1;
    }

    /// Appends a head's block: the cached bytes when the table is as it was when they were
    /// encoded, else the fields encoded now (kept in `cache` when encoding them changed
    /// nothing in the table, the usual case from the second answer on).
    pub fn head<'a>(
        &mut self,
        status: u16,
        fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
        cache: &mut HeadCache,
        out: &mut Vec<u8>,
    ) {
        if cache.epoch == self.epoch && self.pending.is_none() {
            out.extend_from_slice(&cache.block);
            return;
        }
        self.begin(out);
        let before = self.epoch;
        let start = out.len();
        self.status(status, out);
        for (n, v) in fields {
            self.field(n, v, out);
        }
        if self.epoch == before {
            cache.block.clear();
            cache.block.extend_from_slice(&out[start..]);
            cache.epoch = before;
        } else {
            cache.epoch = 0;
        }
    }

    fn evict_to(&mut self, max: usize) {
        while self.size > max {
            match self.entries.pop_back() {
                Some(e) => self.size -= e.size(),
                None => break,
            }
        }
    }
}

/// A literal field (§6.2) with the given representation bits, naming an entry when one has
/// the name.
fn literal(index: Option<usize>, prefix: u8, flags: u8, name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    match index {
        Some(i) => encode_int(i, prefix, flags, out),
        None => {
            out.push(flags);
            encode_str(name, out);
        }
    }
    encode_str(value, out);
}

/// The static table index of a name: a match for the names responses use, the table's scan
/// for the rest.
fn static_index(name: &[u8]) -> Option<usize> {
    let i = match name {
        b"date" => 33,
        b"etag" => 34,
        b"server" => 54,
        b"content-type" => 31,
        b"content-length" => 28,
        b"last-modified" => 44,
        b"accept-ranges" => 18,
        b"cache-control" => 24,
        b"content-encoding" => 26,
        b"vary" => 59,
        b"location" => 46,
        _ => return STATIC_NAMES.iter().position(|n| n.as_bytes() == name).map(|i| i + 1),
    };
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::super::hpack::Decoder;
    use super::*;
    use proptest::prelude::*;

    fn decode(d: &mut Decoder, block: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut got = Vec::new();
        d.decode(block, |n, v| got.push((n.to_vec(), v.to_vec()))).unwrap();
        got
    }

    #[test]
    fn static_indexes_match_the_table() {
        for name in ["date", "etag", "server", "content-type", "content-length", "last-modified"] {
            let i = static_index(name.as_bytes()).unwrap();
            assert_eq!(STATIC_NAMES[i - 1], name);
        }
        for name in ["accept-ranges", "cache-control", "content-encoding", "vary", "location"] {
            let i = static_index(name.as_bytes()).unwrap();
            assert_eq!(STATIC_NAMES[i - 1], name);
        }
        assert_eq!(static_index(b"x-custom"), None);
    }

    #[test]
    fn a_repeated_head_becomes_indexes_and_its_cache_is_reused() {
        let fields: [(&[u8], &[u8]); 4] = [
            (b"etag", b"\"264-abc\""),
            (b"content-type", b"text/html; charset=utf-8"),
            (b"server", b"appnet"),
            (b"date", b"Sun, 06 Dec 2026 21:48:15 GMT"),
        ];
        let mut e = Encoder::default();
        let mut d = Decoder::default();
        let mut cache = HeadCache::default();
        let mut want = vec![(b":status".to_vec(), b"200".to_vec())];
        want.extend(fields.iter().map(|(n, v)| (n.to_vec(), v.to_vec())));
        let mut first = Vec::new();
        e.head(200, fields.iter().copied(), &mut cache, &mut first);
        assert_eq!(decode(&mut d, &first), want);
        assert_eq!(cache.epoch, 0, "the first block changed the table");
        let mut second = Vec::new();
        e.head(200, fields.iter().copied(), &mut cache, &mut second);
        assert_eq!(second.len(), 5, "status and four indexes");
        assert_eq!(decode(&mut d, &second), want);
        let mut third = Vec::new();
        e.head(200, fields.iter().copied(), &mut cache, &mut third);
        assert_eq!(third, second);
        // Another field enters the table: the cached indexes are stale and re-encoded.
        let mut other = Vec::new();
        e.head(200, [(&b"x-other"[..], &b"1"[..])].into_iter(), &mut HeadCache::default(), &mut other);
        decode(&mut d, &other);
        let mut fourth = Vec::new();
        e.head(200, fields.iter().copied(), &mut cache, &mut fourth);
        assert_ne!(fourth, second);
        assert_eq!(decode(&mut d, &fourth), want);
    }

    #[test]
    fn secrets_are_never_indexed_and_a_smaller_table_is_announced() {
        let mut e = Encoder::default();
        let mut d = Decoder::default();
        let mut b = Vec::new();
        e.field(b"set-cookie", b"id=1", &mut b);
        assert_eq!(b[0] & 0xf0, 0x10);
        assert!(e.entries.is_empty());
        e.field(b"x-a", b"1", &mut b);
        decode(&mut d, &b);
        e.set_peer_max(0);
        e.set_peer_max(100);
        let mut b = Vec::new();
        e.begin(&mut b);
        e.field(b"x-a", b"1", &mut b);
        assert_eq!(&b[..2], &[0x20, 0x3f]); // 0, then 100 (5-bit prefix: 31 + 69)
        assert_eq!(decode(&mut d, &b), [(b"x-a".to_vec(), b"1".to_vec())]);
    }

    proptest! {
        #[test]
        fn blocks_decode_to_their_fields(
            heads in proptest::collection::vec(
                (
                    proptest::collection::vec((0usize..12, 0usize..6), 0..8),
                    proptest::option::of(0usize..5000),
                ),
                1..40,
            )
        ) {
            let names: [&[u8]; 12] = [
                b"date", b"etag", b"server", b"content-length", b"x-a", b"x-b", b"set-cookie",
                b"vary", b"content-type", b"x-long", b"cache-control", b"location",
            ];
            let values: [&[u8]; 6] = [b"", b"1", b"gzip, deflate", b"text/html", b"abcdefghijklmnopqrstuvwxyz", b"/"];
            let mut e = Encoder::default();
            let mut d = Decoder::default();
            // A cache belongs to one head (one list of fields).
            let mut caches: std::collections::HashMap<Vec<(usize, usize)>, HeadCache> = Default::default();
            for (fields, resize) in &heads {
                if let Some(size) = resize {
                    e.set_peer_max(*size);
                }
                let long = vec![b'v'; 1500];
                let list: Vec<(&[u8], &[u8])> = fields
                    .iter()
                    .map(|&(n, v)| (names[n], if names[n] == b"x-long" { &long[..] } else { values[v] }))
                    .collect();
                let mut block = Vec::new();
                e.head(200, list.iter().copied(), caches.entry(fields.clone()).or_default(), &mut block);
                let mut want = vec![(b":status".to_vec(), b"200".to_vec())];
                want.extend(list.iter().map(|(n, v)| (n.to_vec(), v.to_vec())));
                prop_assert_eq!(decode(&mut d, &block), want);
            }
        }
    }
}
