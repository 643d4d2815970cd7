//! Finished UDP answers kept per worker, so a repeated question skips parsing, the lookup, the
//! DNSSEC additions and the message builder (name compression included): the cached bytes are
//! copied and only the fields that differ between two such requests are patched (ID, RD, CD).
//! Sans-IO; the driver clears it whenever it picks up a new zone set (reload, transfer, update,
//! re-signing), so an entry never outlives the data it was built from.
//!
//! Only plain requests are cached: opcode QUERY, one uncompressed question, no answer or
//! authority records, at most one OPT (version 0, well-formed options) and nothing after it, and
//! no transfer or meta type. Everything such a request's answer depends on besides the ID, RD
//! and CD bits is in the key: the question name byte for byte (case included), type, class,
//! whether EDNS was used, DO, and the size limit the reply was built for.

use crate::answer::Kind;
use crate::wire::name::MAX_NAME;
use crate::wire::query::Edns;
use crate::wire::response::udp_limit;
use crate::zone::Fnv;

/// Most bytes (answers, keys and a few bytes each besides) one cache holds; when full it starts
/// over empty. Per UDP worker: 16 MiB holds some 100,000 small answers or 25,000 DO=1 answers.
pub const MAX_BYTES: usize = 16 << 20;

/// Arena size from which the cache reserves [`MAX_BYTES`] at once on huge pages (small caches
/// stay small).
const HUGE_FROM: usize = 2 << 20;

/// Flags byte, question type and class, and the size limit, before the name.
const KEY_FIXED: usize = 7;

/// What identifies a cacheable request's answer, built from the request bytes without the
/// full parser.
#[derive(Clone)]
pub struct CacheKey {
    buf: [u8; KEY_FIXED + MAX_NAME],
    len: usize,
}

impl CacheKey {
    /// The key of `packet` when it is a plain request whose answer can be cached (see the
    /// module doc), for a server whose largest UDP reply is `max_udp_payload`; `None` otherwise
    /// (the full path answers it).
    pub fn of(packet: &[u8], max_udp_payload: u16) -> Option<CacheKey> {
        let header = packet.get(..12)?;
        // QR clear, opcode QUERY.
        if header[2] & 0xf8 != 0 {
            return None;
        }
        let count = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
        if count(4) != 1 || count(6) != 0 || count(8) != 0 || count(10) > 1 {
            return None;
        }
        let mut at = 12;
        loop {
            let len = usize::from(*packet.get(at)?);
            if len >= 64 {
                return None; // a compression pointer or an extended label type
            }
            at += 1 + len;
            if at - 12 > MAX_NAME {
                return None;
            }
            if len == 0 {
                break;
            }
        }
        let qname = packet.get(12..at)?;
        let fixed = packet.get(at..at + 4)?;
        let (qtype, qclass) = ([fixed[0], fixed[1]], [fixed[2], fixed[3]]);
        let code = u16::from_be_bytes(qtype);
        // Reserved and meta types, transfers, MAILA/MAILB: the full path decides.
        if code == 0 || code == 41 || (249..=254).contains(&code) {
            return None;
        }
        at += 4;
        let mut edns = None;
        if count(10) == 1 {
            let opt = packet.get(at..at + 11)?;
            if opt[0] != 0 || opt[1..3] != [0, 41] || opt[6] != 0 {
                return None; // not an OPT at the root, or an EDNS version other than 0
            }
            let rdlen = usize::from(u16::from_be_bytes([opt[9], opt[10]]));
            at += 11;
            let mut options = packet.get(at..at + rdlen)?;
            while !options.is_empty() {
                let head = options.get(..4)?;
                let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
                options = options.get(4 + len..)?;
            }
            at += rdlen;
            edns = Some(Edns {
                payload: u16::from_be_bytes([opt[3], opt[4]]).max(512),
                version: 0,
                dnssec_ok: opt[7] & 0x80 != 0,
            });
        }
        if at != packet.len() {
            return None;
        }
        let limit = u16::try_from(udp_limit(edns, max_udp_payload)).unwrap_or(u16::MAX);
        let flags = match edns {
            None => 0,
            Some(e) => 1 | if e.dnssec_ok { 2 } else { 0 },
        };
        let mut key = CacheKey { buf: [0; KEY_FIXED + MAX_NAME], len: KEY_FIXED + qname.len() };
        key.buf[0] = flags;
        key.buf[1..3].copy_from_slice(&qtype);
        key.buf[3..5].copy_from_slice(&qclass);
        key.buf[5..7].copy_from_slice(&limit.to_be_bytes());
        key.buf[KEY_FIXED..key.len].copy_from_slice(qname);
        Some(key)
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Bytes before an entry's key in the arena: key length, reply length, kind, rate-limit key.
const ENTRY_HEAD: usize = 2 + 2 + 1 + 8;

const KINDS: [Kind; 6] =
    [Kind::Answer, Kind::NoData, Kind::NxDomain, Kind::Referral, Kind::Refused, Kind::Error];

/// Finished answers by [`CacheKey`], at most [`MAX_BYTES`] of them. Entries are appended to one
/// arena (so remembering an answer allocates nothing once the arena has grown, and forgetting
/// them all frees nothing) and found through an open-addressing index of the key's hash and the
/// entry's offset: one memory access to the slot, one to the entry (big zones make both cache
/// misses, so there are no more than these two). The stored key is compared on every hit, so a
/// hash collision is only a miss.
#[derive(Default)]
pub struct AnswerCache {
    /// (upper 32 bits of the key's hash << 32) | (arena offset + 1); 0 = empty. A power of two
    /// long and at most half full.
    slots: Vec<u64>,
    entries: usize,
    arena: Vec<u8>,
}

/// An index slot for the entry at arena offset `at` (below [`MAX_BYTES`], so it fits 32 bits).
fn slot(h: u64, at: usize) -> u64 {
    (h >> 32 << 32) | (at as u64 + 1)
}

fn hash(key: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = Fnv::default();
    h.write(key);
    h.finish()
}

impl AnswerCache {
    /// An empty cache.
    pub fn new() -> AnswerCache {
        AnswerCache::default()
    }

    /// Writes the cached answer for `key` into `out` (replacing its contents) with the ID, RD
    /// and CD of `packet` (the request `key` was made from); returns the answer's kind and
    /// rate-limit key, or `None` when nothing is cached.
    pub fn answer(&self, key: &CacheKey, packet: &[u8], out: &mut Vec<u8>) -> Option<(Kind, u64)> {
        let key = key.bytes();
        let (at, _) = self.find(key, hash(key))?;
        let head = self.arena.get(at..at + ENTRY_HEAD)?;
        let key_len = usize::from(u16::from_be_bytes([head[0], head[1]]));
        let reply_len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let kind = *KINDS.get(usize::from(head[4]))?;
        let rrl_key = u64::from_be_bytes(head[5..13].try_into().ok()?);
        let body = at + ENTRY_HEAD + key_len;
        let reply = self.arena.get(body..body + reply_len)?;
        let (id, rd, cd) = (packet.get(..2)?, *packet.get(2)? & 0x01, *packet.get(3)? & 0x10);
        out.clear();
        out.extend_from_slice(reply);
        if out.len() >= 12 {
            out[..2].copy_from_slice(id);
            out[2] = (out[2] & !0x01) | rd;
            out[3] = (out[3] & !0x10) | cd;
        }
        Some((kind, rrl_key))
    }

    /// Remembers `reply`, the full path's answer to the request `key` was made from. When the
    /// cache is full it starts over empty.
    pub fn insert(&mut self, key: &CacheKey, reply: &[u8], kind: Kind, rrl_key: u64) {
        let key = key.bytes();
        let Ok(reply_len) = u16::try_from(reply.len()) else { return };
        let size = ENTRY_HEAD + key.len() + reply.len();
        if self.arena.len() + size > MAX_BYTES {
            self.clear();
        }
        let at = self.arena.len();
        if u32::try_from(at).is_err() {
            return;
        }
        if at + size > self.arena.capacity() && at >= HUGE_FROM {
            // A big cache: take the whole budget at once, on huge pages where the kernel
            // allows (random reads over megabytes otherwise miss the TLB as well).
            self.arena.reserve_exact(MAX_BYTES - at);
            crate::memory::prefer_huge_pages(&self.arena);
        }
        self.arena.extend_from_slice(&(key.len() as u16).to_be_bytes());
        self.arena.extend_from_slice(&reply_len.to_be_bytes());
        self.arena.push(kind as u8);
        self.arena.extend_from_slice(&rrl_key.to_be_bytes());
        self.arena.extend_from_slice(key);
        self.arena.extend_from_slice(reply);
        let h = hash(key);
        match self.find(key, h) {
            // The same key again (not looked up first): the newer entry wins.
            Some((_, pos)) => self.slots[pos] = slot(h, at),
            None => {
                if (self.entries + 1) * 2 > self.slots.len() {
                    self.grow();
                }
                self.place(slot(h, at), h);
                self.entries += 1;
            }
        }
    }

    /// The arena offset of `key`'s entry and its slot position.
    fn find(&self, key: &[u8], h: u64) -> Option<(usize, usize)> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut pos = h as usize & mask;
        // Bounded: the table is at most half full, so an empty slot comes within its length.
        for _ in 0..self.slots.len() {
            let s = self.slots[pos];
            if s == 0 {
                return None;
            }
            if s >> 32 == h >> 32 {
                let at = (s as u32) as usize - 1;
                if self.key_at(at) == Some(key) {
                    return Some((at, pos));
                }
            }
            pos = (pos + 1) & mask;
        }
        None
    }

    /// The key stored in the entry at `at`.
    fn key_at(&self, at: usize) -> Option<&[u8]> {
        let head = self.arena.get(at..at + 2)?;
        let key_len = usize::from(u16::from_be_bytes([head[0], head[1]]));
        self.arena.get(at + ENTRY_HEAD..at + ENTRY_HEAD + key_len)
    }

    /// Puts `s` in the first free slot from `h`'s position (there is one: at most half full).
    fn place(&mut self, s: u64, h: u64) {
        let mask = self.slots.len() - 1;
        let mut pos = h as usize & mask;
        while self.slots[pos] != 0 {
            pos = (pos + 1) & mask;
        }
        self.slots[pos] = s;
    }

    /// Doubles the index and re-places every entry (their hashes recomputed from the arena).
    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(1024);
        self.slots = vec![0; size];
        let mut at = 0;
        while let Some(head) = self.arena.get(at..at + ENTRY_HEAD) {
            let key_len = usize::from(u16::from_be_bytes([head[0], head[1]]));
            let reply_len = usize::from(u16::from_be_bytes([head[2], head[3]]));
            let Some(key) = self.arena.get(at + ENTRY_HEAD..at + ENTRY_HEAD + key_len) else { break };
            let h = hash(key);
            // A key inserted twice: only its latest entry is indexed.
            if let Some((_, pos)) = self.find(key, h) {
                self.slots[pos] = slot(h, at);
            } else {
                self.place(slot(h, at), h);
            }
            at += ENTRY_HEAD + key_len + reply_len;
        }
    }

    /// Forgets everything (the zone set changed). The index keeps its size.
    pub fn clear(&mut self) {
        self.slots.fill(0);
        self.entries = 0;
        self.arena.clear();
    }

    /// Number of answers held.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Bytes of answers and keys held (at most [`MAX_BYTES`]).
    pub fn bytes(&self) -> usize {
        self.arena.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::respond::{Outcome, Policy, Transport, handle};
    use crate::served::ServedZones;
    use crate::wire::dnssec::{Algorithm, SignOptions, generate_key, load_key, sign_zone};
    use crate::wire::name::from_text;
    use crate::wire::rrtype::code;
    use crate::wire::zonefile::{Includes, parse_text};
    use crate::zone::Zone;
    use std::net::IpAddr;
    use std::sync::Arc;

    const ZONE: &str = "$ORIGIN example.\n$TTL 3600\n@ SOA ns1 host 1 7200 3600 1209600 300\n@ NS ns1\n\
ns1 A 192.0.2.1\nwww A 192.0.2.2\nwww AAAA 2001:db8::2\n@ MX 10 mail\nmail A 192.0.2.25\n\
alias CNAME www\n*.wild A 192.0.2.99\nsub NS ns.sub\nns.sub A 192.0.2.3\n\
big TXT \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\n\
big TXT \"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"\n\
big TXT \"cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc\"\n\
big TXT \"dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd\"\n\
big TXT \"eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee\"\n";

    fn signed_catalog() -> ServedZones {
        let apex = from_text("example.").unwrap();
        let g = generate_key(&apex, Algorithm::Ed25519, true, 0).unwrap();
        let keys = vec![load_key(&g.public, Some(&g.private)).unwrap()];
        let recs = parse_text(ZONE, "t", &apex, &Includes::Forbidden).unwrap();
        let opts = SignOptions { nsec3: false, inception: 1, expiration: 2_000_000_000 };
        let signed = sign_zone(&apex, &recs, &keys, opts).unwrap();
        ServedZones::new([Arc::new(Zone::from_records(&apex, signed).unwrap())])
    }

    /// A request: `flags` is the header's third and fourth byte, `opt` (payload, DO, options).
    fn request(
        id: u16,
        flags: [u8; 2],
        qname: &[u8],
        qtype: u16,
        opt: Option<(u16, bool, &[u8])>,
    ) -> Vec<u8> {
        let mut p = id.to_be_bytes().to_vec();
        p.extend_from_slice(&flags);
        p.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(opt.is_some())]);
        p.extend_from_slice(qname);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&1u16.to_be_bytes());
        if let Some((payload, dnssec_ok, options)) = opt {
            p.extend_from_slice(&[0, 0, 41]);
            p.extend_from_slice(&payload.to_be_bytes());
            p.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0]);
            p.extend_from_slice(&(options.len() as u16).to_be_bytes());
            p.extend_from_slice(options);
        }
        p
    }

    fn full_path(cat: &ServedZones, packet: &[u8]) -> (Vec<u8>, Kind, u64) {
        let peer: IpAddr = "192.0.2.200".parse().unwrap();
        match handle(cat, &Policy::default(), packet, Transport::Udp, peer, Vec::new()) {
            Outcome::Reply { bytes, kind, key } => (bytes, kind, key),
            other => panic!("not a reply: {other:?}"),
        }
    }

    #[test]
    fn cached_answers_equal_the_full_path_byte_for_byte() {
        let cat = signed_catalog();
        let max = Policy::default().max_udp_payload;
        let mut cache = AnswerCache::new();
        let names = [
            "www.example.",
            "WwW.ExAmple.",
            "example.",
            "alias.example.",
            "x.wild.example.",
            "a.sub.example.",
            "nope.example.",
            "big.example.",
            "nope.elsewhere.",
        ];
        let types = [code::A, code::AAAA, code::MX, code::SOA, code::TXT, code::NS, code::ANY, code::DS];
        let cookie: &[u8] = &[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        let opts =
            [None, Some((512, false, &[][..])), Some((1232, true, &[][..])), Some((4096, true, cookie))];
        let flag_sets = [[0x00, 0x00], [0x01, 0x00], [0x01, 0x10], [0x00, 0x30]];
        let mut hits = 0;
        for name in names {
            let qname = from_text(name).unwrap();
            // from_text keeps the case it was given.
            for qtype in types {
                for opt in opts {
                    for (round, flags) in flag_sets.iter().enumerate() {
                        let id = 0x1234 + round as u16;
                        let packet = request(id, *flags, &qname, qtype, opt);
                        let key = CacheKey::of(&packet, max).expect("a plain request is cacheable");
                        let (want, kind, rrl) = full_path(&cat, &packet);
                        let mut out = vec![0xaa; 3];
                        match cache.answer(&key, &packet, &mut out) {
                            Some(got) => {
                                hits += 1;
                                assert_eq!(out, want, "{name} {qtype} {opt:?} {flags:?}");
                                assert_eq!(got, (kind, rrl));
                            }
                            None => cache.insert(&key, &want, kind, rrl),
                        }
                    }
                }
            }
        }
        // One miss per distinct key: the last two EDNS variants share theirs (payloads above
        // our maximum are capped to it).
        assert_eq!(hits, names.len() * types.len() * (opts.len() * flag_sets.len() - 3));
    }

    #[test]
    fn the_key_tells_apart_what_changes_the_answer() {
        let max = 1232;
        let q = from_text("www.example.").unwrap();
        let key = |p: Vec<u8>| CacheKey::of(&p, max).map(|k| k.bytes().to_vec());
        let base = key(request(1, [0, 0], &q, code::A, Some((1232, false, &[])))).unwrap();
        let upper = from_text("WWW.example.").unwrap();
        assert_ne!(Some(base.clone()), key(request(1, [0, 0], &upper, code::A, Some((1232, false, &[])))));
        assert_ne!(Some(base.clone()), key(request(1, [0, 0], &q, code::AAAA, Some((1232, false, &[])))));
        assert_ne!(Some(base.clone()), key(request(1, [0, 0], &q, code::A, Some((1232, true, &[])))));
        assert_ne!(Some(base.clone()), key(request(1, [0, 0], &q, code::A, Some((512, false, &[])))));
        assert_ne!(Some(base.clone()), key(request(1, [0, 0], &q, code::A, None)));
        // Payloads above our maximum are capped to it, so they share the entry.
        assert_eq!(Some(base.clone()), key(request(9, [1, 0x10], &q, code::A, Some((4096, false, &[])))));
    }

    #[test]
    fn only_plain_requests_are_cacheable() {
        let q = from_text("www.example.").unwrap();
        let ok = request(1, [0, 0], &q, code::A, Some((1232, false, &[])));
        assert!(CacheKey::of(&ok, 1232).is_some());
        let of = |p: &[u8]| CacheKey::of(p, 1232);
        // A response, NOTIFY, UPDATE.
        for flags in [[0x80, 0], [4 << 3, 0], [5 << 3, 0]] {
            assert!(of(&request(1, flags, &q, code::A, None)).is_none());
        }
        // Transfers, meta and reserved types.
        for qtype in [0, 41, 249, 250, code::IXFR, code::AXFR, 253, 254] {
            assert!(of(&request(1, [0, 0], &q, qtype, None)).is_none(), "type {qtype}");
        }
        // Trailing bytes, a cut packet, a compression pointer, two questions.
        let mut trailing = ok.clone();
        trailing.push(0);
        assert!(of(&trailing).is_none());
        for cut in 0..ok.len() {
            assert!(of(&ok[..cut]).is_none(), "cut at {cut}");
        }
        let mut pointer = request(1, [0, 0], &[], code::A, None);
        pointer.splice(12..12, [0xc0, 0x0c]);
        pointer.truncate(pointer.len() - 1 - 4);
        pointer.extend_from_slice(&[0, 1, 0, 1]);
        assert!(of(&pointer).is_none());
        let mut two = ok.clone();
        two[5] = 2;
        assert!(of(&two).is_none());
        // EDNS version 1, a bad option list, a TSIG instead of an OPT.
        let mut v1 = ok.clone();
        let n = v1.len();
        v1[n - 5] = 1;
        assert!(of(&v1).is_none());
        assert!(of(&request(1, [0, 0], &q, code::A, Some((1232, false, &[0, 10, 0, 9, 1])))).is_none());
        let mut tsig = ok.clone();
        tsig[n - 9] = 250;
        assert!(of(&tsig).is_none());
    }

    #[test]
    fn every_entry_is_found_after_the_index_grows_and_the_newest_wins() {
        let q = from_text("example.").unwrap();
        let mut cache = AnswerCache::new();
        let packet = |i: u32| {
            let mut name = vec![8];
            name.extend_from_slice(format!("{i:08}").as_bytes());
            name.extend_from_slice(&q);
            request(i as u16, [0, 0], &name, code::A, None)
        };
        let reply = |i: u32| [&[0u8; 12][..], &i.to_be_bytes()].concat();
        for i in 0..5000 {
            cache.insert(&CacheKey::of(&packet(i), 1232).unwrap(), &reply(i), Kind::Answer, u64::from(i));
        }
        assert_eq!(cache.len(), 5000);
        for i in 0..5000 {
            let mut out = Vec::new();
            let p = packet(i);
            let got = cache.answer(&CacheKey::of(&p, 1232).unwrap(), &p, &mut out);
            assert_eq!(got, Some((Kind::Answer, u64::from(i))));
            assert_eq!(out[12..], i.to_be_bytes());
        }
        let p = packet(7);
        cache.insert(&CacheKey::of(&p, 1232).unwrap(), &reply(70), Kind::NoData, 1);
        assert_eq!(cache.len(), 5000);
        let mut out = Vec::new();
        assert_eq!(cache.answer(&CacheKey::of(&p, 1232).unwrap(), &p, &mut out), Some((Kind::NoData, 1)));
        assert_eq!(out[12..], 70u32.to_be_bytes());
        assert!(cache.answer(&CacheKey::of(&packet(5000), 1232).unwrap(), &packet(5000), &mut out).is_none());
    }

    #[test]
    fn the_cache_stays_within_its_bounds() {
        let q = from_text("www.example.").unwrap();
        let mut cache = AnswerCache::new();
        let reply = vec![0u8; 600];
        for i in 0..(2 * MAX_BYTES / reply.len()) as u32 {
            let mut name = vec![8];
            name.extend_from_slice(format!("{i:08}").as_bytes());
            name.extend_from_slice(&q);
            let key = CacheKey::of(&request(1, [0, 0], &name, code::A, None), 1232).unwrap();
            cache.insert(&key, &reply, Kind::NxDomain, 0);
            assert!(cache.bytes() <= MAX_BYTES);
            let mut out = Vec::new();
            assert!(cache.answer(&key, &request(1, [0, 0], &name, code::A, None), &mut out).is_some());
        }
        cache.clear();
        assert!(cache.is_empty());
    }
}
