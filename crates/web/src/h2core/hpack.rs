//! HPACK (RFC 7541) for the HTTP/2 core: a decoder (static and dynamic tables, Huffman codes
//! decoded with canonical-code tables built once, no allocation per field but for dynamic table
//! entries; every table entry keeps a slot for what the consumer parsed it into, so a field the
//! client refers to again is not parsed again) and a small encoder that never uses the dynamic
//! table (indexed static entries, literals without indexing), so the peer's
//! SETTINGS_HEADER_TABLE_SIZE never matters.

/// The static table's names (RFC 7541 Appendix A), index 1 first.
pub(super) const STATIC_NAMES: [&str; 61] = [
    ":authority",
    ":method",
    ":method",
    ":path",
    ":path",
    ":scheme",
    ":scheme",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "accept",
    "access-control-allow-origin",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-range",
    "content-type",
    "cookie",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "link",
    "location",
    "max-forwards",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "refresh",
    "retry-after",
    "server",
    "set-cookie",
    "strict-transport-security",
    "transfer-encoding",
    "user-agent",
    "vary",
    "via",
    "www-authenticate",
];

/// The static table's values where they are not empty (RFC 7541 Appendix A).
pub(super) fn static_value(index: usize) -> &'static [u8] {
    match index {
        2 => b"GET",
        3 => b"POST",
        4 => b"/",
        5 => b"/index.html",
        6 => b"http",
        7 => b"https",
        8 => b"200",
        9 => b"204",
        10 => b"206",
        11 => b"304",
        12 => b"400",
        13 => b"404",
        14 => b"500",
        16 => b"gzip, deflate",
        _ => b"",
    }
}

/// The Huffman code (RFC 7541 Appendix B): (code, length in bits) of symbols 0..=256 (EOS).
#[rustfmt::skip]
const HUFFMAN: [(u32, u8); 257] = [
    (0x1ff8, 13), (0x7fffd8, 23), (0xfffffe2, 28), (0xfffffe3, 28), (0xfffffe4, 28), (0xfffffe5, 28),
    (0xfffffe6, 28), (0xfffffe7, 28), (0xfffffe8, 28), (0xffffea, 24), (0x3ffffffc, 30), (0xfffffe9, 28),
    (0xfffffea, 28), (0x3ffffffd, 30), (0xfffffeb, 28), (0xfffffec, 28), (0xfffffed, 28), (0xfffffee, 28),
    (0xfffffef, 28), (0xffffff0, 28), (0xffffff1, 28), (0xffffff2, 28), (0x3ffffffe, 30), (0xffffff3, 28),
    (0xffffff4, 28), (0xffffff5, 28), (0xffffff6, 28), (0xffffff7, 28), (0xffffff8, 28), (0xffffff9, 28),
    (0xffffffa, 28), (0xffffffb, 28), (0x14, 6), (0x3f8, 10), (0x3f9, 10), (0xffa, 12),
    (0x1ff9, 13), (0x15, 6), (0xf8, 8), (0x7fa, 11), (0x3fa, 10), (0x3fb, 10),
    (0xf9, 8), (0x7fb, 11), (0xfa, 8), (0x16, 6), (0x17, 6), (0x18, 6),
    (0x0, 5), (0x1, 5), (0x2, 5), (0x19, 6), (0x1a, 6), (0x1b, 6),
    (0x1c, 6), (0x1d, 6), (0x1e, 6), (0x1f, 6), (0x5c, 7), (0xfb, 8),
    (0x7ffc, 15), (0x20, 6), (0xffb, 12), (0x3fc, 10), (0x1ffa, 13), (0x21, 6),
    (0x5d, 7), (0x5e, 7), (0x5f, 7), (0x60, 7), (0x61, 7), (0x62, 7),
    (0x63, 7), (0x64, 7), (0x65, 7), (0x66, 7), (0x67, 7), (0x68, 7),
    (0x69, 7), (0x6a, 7), (0x6b, 7), (0x6c, 7), (0x6d, 7), (0x6e, 7),
    (0x6f, 7), (0x70, 7), (0x71, 7), (0x72, 7), (0xfc, 8), (0x73, 7),
    (0xfd, 8), (0x1ffb, 13), (0x7fff0, 19), (0x1ffc, 13), (0x3ffc, 14), (0x22, 6),
    (0x7ffd, 15), (0x3, 5), (0x23, 6), (0x4, 5), (0x24, 6), (0x5, 5),
    (0x25, 6), (0x26, 6), (0x27, 6), (0x6, 5), (0x74, 7), (0x75, 7),
    (0x28, 6), (0x29, 6), (0x2a, 6), (0x7, 5), (0x2b, 6), (0x76, 7),
    (0x2c, 6), (0x8, 5), (0x9, 5), (0x2d, 6), (0x77, 7), (0x78, 7),
    (0x79, 7), (0x7a, 7), (0x7b, 7), (0x7ffe, 15), (0x7fc, 11), (0x3ffd, 14),
    (0x1ffd, 13), (0xffffffc, 28), (0xfffe6, 20), (0x3fffd2, 22), (0xfffe7, 20), (0xfffe8, 20),
    (0x3fffd3, 22), (0x3fffd4, 22), (0x3fffd5, 22), (0x7fffd9, 23), (0x3fffd6, 22), (0x7fffda, 23),
    (0x7fffdb, 23), (0x7fffdc, 23), (0x7fffdd, 23), (0x7fffde, 23), (0xffffeb, 24), (0x7fffdf, 23),
    (0xffffec, 24), (0xffffed, 24), (0x3fffd7, 22), (0x7fffe0, 23), (0xffffee, 24), (0x7fffe1, 23),
    (0x7fffe2, 23), (0x7fffe3, 23), (0x7fffe4, 23), (0x1fffdc, 21), (0x3fffd8, 22), (0x7fffe5, 23),
    (0x3fffd9, 22), (0x7fffe6, 23), (0x7fffe7, 23), (0xffffef, 24), (0x3fffda, 22), (0x1fffdd, 21),
    (0xfffe9, 20), (0x3fffdb, 22), (0x3fffdc, 22), (0x7fffe8, 23), (0x7fffe9, 23), (0x1fffde, 21),
    (0x7fffea, 23), (0x3fffdd, 22), (0x3fffde, 22), (0xfffff0, 24), (0x1fffdf, 21), (0x3fffdf, 22),
    (0x7fffeb, 23), (0x7fffec, 23), (0x1fffe0, 21), (0x1fffe1, 21), (0x3fffe0, 22), (0x1fffe2, 21),
    (0x7fffed, 23), (0x3fffe1, 22), (0x7fffee, 23), (0x7fffef, 23), (0xfffea, 20), (0x3fffe2, 22),
    (0x3fffe3, 22), (0x3fffe4, 22), (0x7ffff0, 23), (0x3fffe5, 22), (0x3fffe6, 22), (0x7ffff1, 23),
    (0x3ffffe0, 26), (0x3ffffe1, 26), (0xfffeb, 20), (0x7fff1, 19), (0x3fffe7, 22), (0x7ffff2, 23),
    (0x3fffe8, 22), (0x1ffffec, 25), (0x3ffffe2, 26), (0x3ffffe3, 26), (0x3ffffe4, 26), (0x7ffffde, 27),
    (0x7ffffdf, 27), (0x3ffffe5, 26), (0xfffff1, 24), (0x1ffffed, 25), (0x7fff2, 19), (0x1fffe3, 21),
    (0x3ffffe6, 26), (0x7ffffe0, 27), (0x7ffffe1, 27), (0x3ffffe7, 26), (0x7ffffe2, 27), (0xfffff2, 24),
    (0x1fffe4, 21), (0x1fffe5, 21), (0x3ffffe8, 26), (0x3ffffe9, 26), (0xffffffd, 28), (0x7ffffe3, 27),
    (0x7ffffe4, 27), (0x7ffffe5, 27), (0xfffec, 20), (0xfffff3, 24), (0xfffed, 20), (0x1fffe6, 21),
    (0x3fffe9, 22), (0x1fffe7, 21), (0x1fffe8, 21), (0x7ffff3, 23), (0x3fffea, 22), (0x3fffeb, 22),
    (0x1ffffee, 25), (0x1ffffef, 25), (0xfffff4, 24), (0xfffff5, 24), (0x3ffffea, 26), (0x7ffff4, 23),
    (0x3ffffeb, 26), (0x7ffffe6, 27), (0x3ffffec, 26), (0x3ffffed, 26), (0x7ffffe7, 27), (0x7ffffe8, 27),
    (0x7ffffe9, 27), (0x7ffffea, 27), (0x7ffffeb, 27), (0xffffffe, 28), (0x7ffffec, 27), (0x7ffffed, 27),
    (0x7ffffee, 27), (0x7ffffef, 27), (0x7fffff0, 27), (0x3ffffee, 26), (0x3fffffff, 30),
];

/// Our SETTINGS_HEADER_TABLE_SIZE (the default; we never announce another).
pub(super) const TABLE_SIZE: usize = 4096;
/// Longest string a block may carry (a block is at most 256 KiB anyway).
const MAX_STRING: usize = 256 * 1024;

/// A header block that cannot be decoded (a COMPRESSION_ERROR for the connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("undecodable header block")]
pub struct CompressionError;

/// What the consumer of a table entry made of it (see [`Decoder::decode_with_slots`]).
pub(super) type Slot = Option<super::conn::Prepared>;

/// A dynamic table entry: name and value in one allocation, and its [`Slot`].
struct Entry {
    bytes: Box<[u8]>,
    name_len: usize,
    prepared: Slot,
}

impl Entry {
    fn name(&self) -> &[u8] {
        &self.bytes[..self.name_len]
    }
    fn value(&self) -> &[u8] {
        &self.bytes[self.name_len..]
    }
    /// RFC 7541 §4.1: the entry's size counts 32 octets of overhead.
    fn size(&self) -> usize {
        self.bytes.len() + 32
    }
}

/// The dynamic table (RFC 7541 §2.3.2), newest entry first.
#[derive(Default)]
struct Table {
    entries: std::collections::VecDeque<Entry>,
    size: usize,
    max: usize,
}

impl Table {
    fn get(&self, index: usize) -> Result<(&[u8], &[u8]), CompressionError> {
        match index {
            0 => Err(CompressionError),
            1..=61 => Ok((STATIC_NAMES[index - 1].as_bytes(), static_value(index))),
            _ => self.entries.get(index - 62).map(|e| (e.name(), e.value())).ok_or(CompressionError),
        }
    }

    /// Like [`Table::get`], with the entry's slot (`statics` holds the static table's).
    fn get_with_slot<'t>(
        &'t mut self,
        statics: &'t mut [Slot],
        index: usize,
    ) -> Result<(&'t [u8], &'t [u8], &'t mut Slot), CompressionError> {
        match index {
            0 => Err(CompressionError),
            1..=61 => {
                let slot = statics.get_mut(index).ok_or(CompressionError)?;
                Ok((STATIC_NAMES[index - 1].as_bytes(), static_value(index), slot))
            }
            _ => {
                let e = self.entries.get_mut(index - 62).ok_or(CompressionError)?;
                let (name, value) = e.bytes.split_at(e.name_len);
                Ok((name, value, &mut e.prepared))
            }
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

    /// Adds an entry (§4.4): older ones are evicted first; one larger than the table empties
    /// it and is given back.
    fn insert(&mut self, e: Entry) -> Result<(), Entry> {
        let size = e.size();
        self.evict_to(self.max.saturating_sub(size));
        if size > self.max {
            return Err(e);
        }
        self.size += size;
        self.entries.push_front(e);
        Ok(())
    }
}

/// Decodes header blocks; the dynamic table persists across blocks of one connection.
pub struct Decoder {
    table: Table,
    /// The static entries' slots by index (up to the highest index used so far).
    statics: Vec<Slot>,
    name: Vec<u8>,
    value: Vec<u8>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            table: Table { max: TABLE_SIZE, ..Table::default() },
            statics: Vec::new(),
            name: Vec::with_capacity(64),
            value: Vec::with_capacity(256),
        }
    }
}

impl Decoder {
    /// Decodes one complete header block, calling `field` with each name and value in order.
    /// Errors (truncated or overlong integers and strings, bad Huffman padding, EOS, indexes
    /// beyond the tables, a size update above 4096 or after a field) leave the table in an
    /// unknown state: the connection must end with COMPRESSION_ERROR.
    pub fn decode(
        &mut self,
        block: &[u8],
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), CompressionError> {
        self.decode_with_slots(block, |n, v, _| field(n, v))
    }

    /// Like [`Decoder::decode`], also passing the slot of the table entry a field came from
    /// (`None` for literals not kept in the table): what the consumer stores there is handed
    /// back whenever a later block refers to the same entry, until the entry is evicted. Entries
    /// never change, so whatever was derived from an entry's bytes stays true of them.
    pub(super) fn decode_with_slots(
        &mut self,
        block: &[u8],
        mut field: impl FnMut(&[u8], &[u8], Option<&mut Slot>),
    ) -> Result<(), CompressionError> {
        let mut pos = 0;
        let mut fields = false;
        while let Some(&b) = block.get(pos) {
            if b & 0x80 != 0 {
                // Indexed field (§6.1).
                let index = int(block, &mut pos, 7)?;
                if (1..=61).contains(&index) && self.statics.len() <= index {
                    self.statics.resize_with(index + 1, || None); // only as far as used
                }
                let (n, v, slot) = self.table.get_with_slot(&mut self.statics, index)?;
                field(n, v, Some(slot));
                fields = true;
            } else if b & 0xe0 == 0x20 {
                // Dynamic table size update (§6.3): only before the first field.
                let max = int(block, &mut pos, 5)?;
                if fields || max > TABLE_SIZE {
                    return Err(CompressionError);
                }
                self.table.max = max;
                self.table.evict_to(max);
            } else {
                // Literals (§6.2): with incremental indexing (01), without (0000), never (0001).
                let indexing = b & 0x40 != 0;
                let index = int(block, &mut pos, if indexing { 6 } else { 4 })?;
                let Decoder { table, name, value, .. } = self;
                let name: &[u8] =
                    if index == 0 { string(block, &mut pos, name)? } else { table.get(index)?.0 };
                let value = string(block, &mut pos, value)?;
                fields = true;
                if !indexing {
                    field(name, value, None);
                    continue;
                }
                let mut bytes = Vec::with_capacity(name.len() + value.len());
                bytes.extend_from_slice(name);
                bytes.extend_from_slice(value);
                let e = Entry { bytes: bytes.into_boxed_slice(), name_len: name.len(), prepared: None };
                match table.insert(e) {
                    Ok(()) => {
                        if let Some(e) = table.entries.front_mut() {
                            let (name, value) = e.bytes.split_at(e.name_len);
                            field(name, value, Some(&mut e.prepared));
                        }
                    }
                    // Too large for the table: still a field of this block.
                    Err(e) => field(e.name(), e.value(), None),
                }
            }
        }
        Ok(())
    }
}

/// Decodes an integer with an `prefix`-bit prefix at `*pos` (§5.1); values beyond 2^28 are
/// refused (no field or table is that large).
fn int(block: &[u8], pos: &mut usize, prefix: u8) -> Result<usize, CompressionError> {
    let max = (1usize << prefix) - 1;
    let first = usize::from(*block.get(*pos).ok_or(CompressionError)?) & max;
    *pos += 1;
    if first < max {
        return Ok(first);
    }
    let mut value = max;
    let mut shift = 0;
    loop {
        let b = *block.get(*pos).ok_or(CompressionError)?;
        *pos += 1;
        value += usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
        if shift > 21 {
            return Err(CompressionError);
        }
    }
}

/// Decodes a string literal at `*pos` (§5.2): raw strings are borrowed from the block,
/// Huffman-coded ones decoded into `scratch`.
fn string<'a>(
    block: &'a [u8],
    pos: &mut usize,
    scratch: &'a mut Vec<u8>,
) -> Result<&'a [u8], CompressionError> {
    let huffman = block.get(*pos).ok_or(CompressionError)? & 0x80 != 0;
    let len = int(block, pos, 7)?;
    let end =
        pos.checked_add(len).filter(|&e| e <= block.len() && len <= MAX_STRING).ok_or(CompressionError)?;
    let raw = &block[*pos..end];
    *pos = end;
    if !huffman {
        return Ok(raw);
    }
    scratch.clear();
    huffman_decode(raw, scratch)?;
    Ok(scratch)
}

/// Canonical-code decoding tables: for each code length, the first code, how many symbols
/// have that length, and where they start in `symbols` (sorted by length, then code).
struct HuffmanTables {
    first: [u32; 31],
    count: [u32; 31],
    offset: [u16; 31],
    symbols: [u16; 257],
    /// By the next 9 bits: the symbol whose code is a prefix of them and its length, or length
    /// 0 when the code is longer (decoded bit by bit from the canonical tables).
    fast: [(u8, u8); 1 << FAST_BITS],
}

/// Bits looked up at once by [`huffman_decode`] (the codes of letters, digits and most
/// punctuation are 5 to 8 bits long).
const FAST_BITS: u32 = 9;

fn huffman_tables() -> &'static HuffmanTables {
    static TABLES: std::sync::OnceLock<HuffmanTables> = std::sync::OnceLock::new();
    TABLES.get_or_init(|| {
        let mut order: Vec<u16> = (0..257).collect();
        order.sort_by_key(|&s| (HUFFMAN[usize::from(s)].1, HUFFMAN[usize::from(s)].0));
        let mut t = HuffmanTables {
            first: [0; 31],
            count: [0; 31],
            offset: [0; 31],
            symbols: [0; 257],
            fast: [(0, 0); 1 << FAST_BITS],
        };
        for (i, &s) in order.iter().enumerate() {
            let (code, len) = HUFFMAN[usize::from(s)];
            let len = usize::from(len);
            if t.count[len] == 0 {
                t.first[len] = code;
                t.offset[len] = i as u16;
            }
            t.count[len] += 1;
            t.symbols[i] = s;
            if len <= FAST_BITS as usize
                && let Ok(sym) = u8::try_from(s)
            {
                let shift = FAST_BITS as usize - len;
                let base = (code as usize) << shift;
                for slot in &mut t.fast[base..base + (1 << shift)] {
                    *slot = (sym, len as u8);
                }
            }
        }
        t
    })
}

/// Decodes a Huffman-coded string (§5.2): the padding must be the EOS code's leading ones,
/// shorter than a byte; EOS itself is an error. Codes of up to [`FAST_BITS`] bits take one
/// table lookup, longer ones are decoded bit by bit.
fn huffman_decode(input: &[u8], out: &mut Vec<u8>) -> Result<(), CompressionError> {
    let t = huffman_tables();
    // Unread bits, most significant first; `have` of them are input.
    let mut acc: u64 = 0;
    let mut have: u32 = 0;
    let mut next = input.iter();
    loop {
        while have <= 56 {
            let Some(&b) = next.next() else { break };
            acc |= u64::from(b) << (56 - have);
            have += 8;
        }
        if have == 0 {
            return Ok(());
        }
        let (sym, len) = t.fast[(acc >> (64 - FAST_BITS)) as usize];
        let len = u32::from(len);
        if len != 0 && len <= have {
            out.push(sym);
            acc <<= len;
            have -= len;
            continue;
        }
        // A longer code (at most 30 bits, all here unless the input ends), or the padding.
        let mut code: u32 = 0;
        let mut n = 0usize;
        loop {
            if n as u32 == have {
                // The input ended inside this code: it must be the padding.
                return if n <= 7 && code == (1 << n) - 1 { Ok(()) } else { Err(CompressionError) };
            }
            code = (code << 1) | ((acc >> (63 - n)) & 1) as u32;
            n += 1;
            let i = code.wrapping_sub(t.first[n]);
            if i < t.count[n] {
                let sym = t.symbols[usize::from(t.offset[n]) + i as usize];
                let Ok(sym) = u8::try_from(sym) else { return Err(CompressionError) }; // EOS
                out.push(sym);
                acc <<= n;
                have -= n as u32;
                break;
            } else if n == 30 {
                return Err(CompressionError);
            }
        }
    }
}

/// Appends `:status`.
pub fn encode_status(status: u16, out: &mut Vec<u8>) {
    let index = match status {
        200 => 8,
        204 => 9,
        206 => 10,
        304 => 11,
        400 => 12,
        404 => 13,
        500 => 14,
        _ => 0,
    };
    if index != 0 {
        out.push(0x80 | index);
    } else {
        let mut digits = [0u8; 3];
        let s = status.min(999);
        digits[0] = b'0' + (s / 100) as u8;
        digits[1] = b'0' + (s / 10 % 10) as u8;
        digits[2] = b'0' + (s % 10) as u8;
        // Literal without indexing, name :status (index 8).
        encode_int(8, 4, 0x00, out);
        encode_str(&digits, out);
    }
}

/// Appends a field as a literal without indexing (RFC 7541 §6.2.2), naming a static entry
/// where the name is in the static table. `name` must be lower case.
pub fn encode_field(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    match static_name(name) {
        Some(index) => encode_int(index, 4, 0x00, out),
        None => {
            out.push(0x00);
            encode_str(name, out);
        }
    }
    encode_str(value, out);
}

pub(super) fn static_name(name: &[u8]) -> Option<usize> {
    STATIC_NAMES.iter().position(|n| n.as_bytes() == name).map(|i| i + 1)
}

pub(super) fn encode_str(s: &[u8], out: &mut Vec<u8>) {
    encode_int(s.len(), 7, 0x00, out);
    out.extend_from_slice(s);
}

/// An HPACK integer with an `prefix`-bit prefix, the first byte's high bits from `flags`.
pub(super) fn encode_int(mut value: usize, prefix: u8, flags: u8, out: &mut Vec<u8>) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_encoding_decodes_to_the_same_fields() {
        let mut block = Vec::new();
        encode_status(200, &mut block);
        encode_status(418, &mut block);
        encode_field(b"content-type", b"text/html", &mut block);
        encode_field(b"x-long", &[b'a'; 300], &mut block);
        let mut got = Vec::new();
        Decoder::default().decode(&block, |n, v| got.push((n.to_vec(), v.to_vec()))).unwrap();
        assert_eq!(got[0], (b":status".to_vec(), b"200".to_vec()));
        assert_eq!(got[1], (b":status".to_vec(), b"418".to_vec()));
        assert_eq!(got[2], (b"content-type".to_vec(), b"text/html".to_vec()));
        assert_eq!(got[3], (b"x-long".to_vec(), vec![b'a'; 300]));
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn fields(d: &mut Decoder, block: &[u8]) -> Vec<(String, String)> {
        let mut got = Vec::new();
        d.decode(block, |n, v| {
            got.push((String::from_utf8(n.to_vec()).unwrap(), String::from_utf8(v.to_vec()).unwrap()))
        })
        .unwrap();
        got
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    /// The bit-by-bit decoder the table-driven one replaced, as a reference.
    fn huffman_decode_slow(input: &[u8], out: &mut Vec<u8>) -> Result<(), CompressionError> {
        let t = huffman_tables();
        let (mut code, mut len) = (0u32, 0usize);
        for &byte in input {
            for shift in (0..8).rev() {
                code = (code << 1) | u32::from((byte >> shift) & 1);
                len += 1;
                let i = code.wrapping_sub(t.first[len]);
                if i < t.count[len] {
                    let sym = t.symbols[usize::from(t.offset[len]) + i as usize];
                    let Ok(sym) = u8::try_from(sym) else { return Err(CompressionError) };
                    out.push(sym);
                    (code, len) = (0, 0);
                } else if len == 30 {
                    return Err(CompressionError);
                }
            }
        }
        if len > 7 || code != (1 << len) - 1 {
            return Err(CompressionError);
        }
        Ok(())
    }

    fn huffman_encode(s: &[u8]) -> Vec<u8> {
        let (mut acc, mut bits, mut out) = (0u64, 0u32, Vec::new());
        for &c in s {
            let (code, len) = HUFFMAN[usize::from(c)];
            acc = (acc << len) | u64::from(code);
            bits += u32::from(len);
            while bits >= 8 {
                out.push((acc >> (bits - 8)) as u8);
                bits -= 8;
            }
        }
        if bits > 0 {
            out.push(((acc << (8 - bits)) | ((1 << (8 - bits)) - 1)) as u8);
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn huffman_fast_and_slow_agree(s in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
                                       junk in proptest::collection::vec(proptest::num::u8::ANY, 0..16)) {
            for input in [huffman_encode(&s), junk] {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                let (ra, rb) = (huffman_decode(&input, &mut a), huffman_decode_slow(&input, &mut b));
                proptest::prop_assert_eq!(ra, rb);
                if ra.is_ok() {
                    proptest::prop_assert_eq!(&a, &b);
                }
            }
            let mut a = Vec::new();
            proptest::prop_assert!(huffman_decode(&huffman_encode(&s), &mut a).is_ok());
            proptest::prop_assert_eq!(a, s);
        }
    }

    #[test]
    fn the_code_is_canonical() {
        let t = huffman_tables();
        for len in 1..=30 {
            for k in 0..t.count[len] {
                let s = t.symbols[usize::from(t.offset[len]) + k as usize];
                assert_eq!(HUFFMAN[usize::from(s)], (t.first[len] + k, len as u8));
            }
        }
    }

    #[test]
    fn rfc7541_c4_requests_with_huffman() {
        let mut d = Decoder::default();
        let first = fields(&mut d, &hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"));
        let base =
            [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")];
        assert_eq!(first, pairs(&base));
        let second = fields(&mut d, &hex("8286 84be 5886 a8eb 1064 9cbf"));
        let mut want = base.to_vec();
        want.push(("cache-control", "no-cache"));
        assert_eq!(second, pairs(&want));
        let third = fields(&mut d, &hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"));
        let want = [
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ];
        assert_eq!(third, pairs(&want));
        assert_eq!(d.table.size, 164);
    }

    #[test]
    fn rfc7541_c6_responses_with_huffman_and_eviction() {
        let mut d = Decoder::default();
        d.table.max = 256;
        let a = fields(
            &mut d,
            &hex(
                "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
            ),
        );
        assert_eq!(
            a,
            pairs(&[
                (":status", "302"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                ("location", "https://www.example.com"),
            ])
        );
        let b = fields(&mut d, &hex("4883 640e ffc1 c0bf"));
        assert_eq!(b[0], (":status".into(), "307".into()));
        let c = fields(
            &mut d,
            &hex(
                "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
            ),
        );
        assert_eq!(c[0], (":status".into(), "200".into()));
        assert_eq!(c[4], ("content-encoding".into(), "gzip".into()));
        assert_eq!(c[5].1, "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1");
        assert_eq!(d.table.size, 215);
    }

    #[test]
    fn bad_blocks_are_compression_errors() {
        let mut d = Decoder::default();
        assert_eq!(d.decode(&[0x80], |_, _| {}), Err(CompressionError)); // index 0
        assert_eq!(d.decode(&[0xff, 0x7f], |_, _| {}), Err(CompressionError)); // beyond the tables
        assert_eq!(d.decode(&[0x3f, 0xe2, 0x1f], |_, _| {}), Err(CompressionError)); // size > 4096
        assert_eq!(d.decode(&[0x82, 0x20], |_, _| {}), Err(CompressionError)); // update after a field
        assert_eq!(d.decode(&[0x04, 0x81, 0x00], |_, _| {}), Err(CompressionError)); // bad padding
        assert_eq!(d.decode(&[0x04, 0x84, 0xff, 0xff, 0xff, 0xff], |_, _| {}), Err(CompressionError)); // EOS
        assert_eq!(d.decode(&[0x04, 0x05, b'/'], |_, _| {}), Err(CompressionError)); // truncated
        assert_eq!(d.decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], |_, _| {}), Err(CompressionError));
        let mut ok = Vec::new();
        Decoder::default().decode(&[0x20, 0x82], |n, v| ok.push((n.to_vec(), v.to_vec()))).unwrap();
        assert_eq!(ok, [(b":method".to_vec(), b"GET".to_vec())]);
    }
}
