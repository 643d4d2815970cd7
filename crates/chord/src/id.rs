//! Identifiers on the Chord circle: m-bit numbers (1 ≤ m ≤ 160), stored big-endian in 20 bytes so
//! that byte order is numeric order. Node ids are SHA-1 of the address (or given explicitly), key
//! ids are SHA-1 of the key, both reduced modulo 2^m.

use sha1::{Digest, Sha1};
use std::fmt;

/// Largest supported identifier width: a whole SHA-1 digest.
pub const MAX_BITS: u8 = 160;

/// Bytes in the fixed in-memory representation of an id.
const LEN: usize = 20;

/// A point on the identifier circle. Always below 2^m for the ring it belongs to.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Id(pub [u8; LEN]);

impl Id {
    /// The id with numeric value `v` (callers keep `v` below 2^m).
    pub fn from_u64(v: u64) -> Id {
        let mut b = [0u8; LEN];
        b[LEN - 8..].copy_from_slice(&v.to_be_bytes());
        Id(b)
    }

    /// The low 64 bits, for printing small rings and for the simulator's bookkeeping.
    pub fn low_u64(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[LEN - 8..]);
        u64::from_be_bytes(b)
    }

    /// SHA-1 of `data`, reduced to `bits` bits: the id of a key, or of a node's address.
    pub fn hash(data: &[u8], bits: u8) -> Id {
        let digest = Sha1::digest(data);
        let mut b = [0u8; LEN];
        b.copy_from_slice(&digest);
        Id(b).masked(bits)
    }

    /// This value modulo 2^bits.
    pub fn masked(mut self, bits: u8) -> Id {
        let bits = bits.min(MAX_BITS) as usize;
        let clear = LEN * 8 - bits; // leading bits to clear
        let (whole, part) = (clear / 8, clear % 8);
        self.0[..whole].fill(0);
        if part != 0 {
            self.0[whole] &= 0xffu8 >> part;
        }
        self
    }

    /// Whether this value fits in `bits` bits (validation of ids from the network).
    pub fn fits(&self, bits: u8) -> bool {
        self.masked(bits) == *self
    }

    /// (self + 2^k) mod 2^bits: the start of finger k.
    pub fn add_pow2(&self, k: u8, bits: u8) -> Id {
        let mut out = self.0;
        let k = k as usize;
        if k < LEN * 8 {
            let mut idx = LEN - 1 - k / 8;
            let mut carry = 1u16 << (k % 8);
            loop {
                let sum = out[idx] as u16 + carry;
                out[idx] = sum as u8;
                carry = sum >> 8;
                if carry == 0 || idx == 0 {
                    break;
                }
                idx -= 1;
            }
        }
        Id(out).masked(bits)
    }

    /// Whether `self` lies in the open arc (a, b) going clockwise. (a, a) is the whole circle
    /// except a.
    pub fn in_open(&self, a: &Id, b: &Id) -> bool {
        if a < b { a < self && self < b } else { self > a || self < b }
    }

    /// Whether `self` lies in the half-open arc (a, b]. (a, a] is the whole circle.
    pub fn in_half_open(&self, a: &Id, b: &Id) -> bool {
        self == b || self.in_open(a, b)
    }

    /// Clockwise distance from `self` to `to`, as a 160-bit number (for sorting by closeness).
    pub fn distance_to(&self, to: &Id, bits: u8) -> Id {
        // to - self mod 2^bits, by two's complement byte subtraction.
        let mut out = [0u8; LEN];
        let mut borrow = 0i16;
        for i in (0..LEN).rev() {
            let mut d = to.0[i] as i16 - self.0[i] as i16 - borrow;
            borrow = 0;
            if d < 0 {
                d += 256;
                borrow = 1;
            }
            out[i] = d as u8;
        }
        Id(out).masked(bits)
    }

    /// The `n` bytes that carry an id of `bits` bits on the wire (big-endian).
    pub fn wire_len(bits: u8) -> usize {
        (bits as usize).div_ceil(8)
    }

    /// The wire form: the low `wire_len(bits)` bytes.
    pub fn wire_bytes(&self, bits: u8) -> &[u8] {
        &self.0[LEN - Id::wire_len(bits)..]
    }

    /// Parses the wire form; `None` if the length is wrong or the value does not fit in `bits`.
    pub fn from_wire(bytes: &[u8], bits: u8) -> Option<Id> {
        if bytes.len() != Id::wire_len(bits) {
            return None;
        }
        let mut b = [0u8; LEN];
        b[LEN - bytes.len()..].copy_from_slice(bytes);
        let id = Id(b);
        id.fits(bits).then_some(id)
    }

    /// Parses a decimal number (small rings) or a 40-digit hex string (SHA-1 sized ids).
    pub fn parse(text: &str, bits: u8) -> Option<Id> {
        let id = if let Ok(v) = text.parse::<u64>() {
            Id::from_u64(v)
        } else {
            let hex = text.strip_prefix("0x").unwrap_or(text);
            if hex.is_empty() || hex.len() > 40 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            let padded = format!("{hex:0>40}");
            let mut b = [0u8; LEN];
            for (i, byte) in b.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&padded[2 * i..2 * i + 2], 16).ok()?;
            }
            Id(b)
        };
        id.fits(bits).then_some(id)
    }

    /// Human form for a ring of `bits` bits: decimal up to 64 bits, hex beyond.
    pub fn display(&self, bits: u8) -> String {
        if bits <= 64 {
            self.low_u64().to_string()
        } else {
            let mut s = String::with_capacity(40);
            for b in self.wire_bytes(bits) {
                s.push_str(&format!("{b:02x}"));
            }
            s
        }
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0[..LEN - 8].iter().all(|&b| b == 0) {
            write!(f, "Id({})", self.low_u64())
        } else {
            write!(f, "Id({})", self.display(MAX_BITS))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arcs_wrap_around() {
        let (a, b, x) = (Id::from_u64(12), Id::from_u64(3), Id::from_u64(1));
        assert!(x.in_open(&a, &b));
        assert!(!Id::from_u64(5).in_open(&a, &b));
        assert!(b.in_half_open(&a, &b));
        assert!(!a.in_half_open(&a, &b));
        // (a, a] is the whole circle.
        assert!(Id::from_u64(7).in_half_open(&a, &a));
        assert!(a.in_half_open(&a, &a));
    }

    #[test]
    fn finger_starts_wrap_modulo_2_pow_m() {
        assert_eq!(Id::from_u64(12).add_pow2(2, 4), Id::from_u64(0));
        assert_eq!(Id::from_u64(1).add_pow2(3, 4), Id::from_u64(9));
        let top = Id([0xff; 20]);
        assert_eq!(top.add_pow2(0, 160), Id::default());
        assert_eq!(Id::from_u64(60).add_pow2(5, 6), Id::from_u64(28));
    }

    #[test]
    fn masking_and_wire_form() {
        let h = Id::hash(b"key", 6);
        assert!(h.low_u64() < 64);
        assert_eq!(Id::wire_len(6), 1);
        assert_eq!(Id::from_wire(&[63], 6), Some(Id::from_u64(63)));
        assert_eq!(Id::from_wire(&[64], 6), None);
        assert_eq!(Id::from_wire(&[1, 2], 6), None);
        assert_eq!(Id::hash(b"key", 160).wire_bytes(160).len(), 20);
        assert_eq!(Id::from_u64(5).distance_to(&Id::from_u64(3), 4), Id::from_u64(14));
    }

    #[test]
    fn parse_decimal_and_hex() {
        assert_eq!(Id::parse("14", 4), Some(Id::from_u64(14)));
        assert_eq!(Id::parse("16", 4), None);
        let h = Id::hash(b"x", 160);
        assert_eq!(Id::parse(&h.display(160), 160), Some(h));
    }
}
