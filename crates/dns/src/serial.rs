//! Zone serial numbers and their RFC 1982 arithmetic: serials wrap around at 2^32, so "newer"
//! is a partial order (two serials exactly half the circle apart are not comparable), and
//! only additions below 2^31 are defined.

use std::cmp::Ordering;

/// A zone's SOA serial (RFC 1982 sequence space arithmetic with SERIAL_BITS = 32). Its
/// `PartialOrd` is the RFC's "newer than": `partial_cmp` is `None` for the undefined half-way
/// case, so `a < b` and `a > b` are then both false, which is what transfers need (neither
/// side is newer, nothing moves).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Serial(pub u32);

/// The largest increment RFC 1982 §3.1 defines (2^31 - 1).
pub const MAX_ADD: u32 = 0x7fff_ffff;

impl Serial {
    /// The serial `n` later (RFC 1982 §3.1); `None` when `n` exceeds [`MAX_ADD`] (undefined).
    pub fn checked_add(self, n: u32) -> Option<Serial> {
        (n <= MAX_ADD).then(|| Serial(self.0.wrapping_add(n)))
    }

    /// Whether `self` is strictly newer than `other` (false when they are not comparable).
    pub fn is_newer_than(self, other: Serial) -> bool {
        self > other
    }

    /// Whether `self` is strictly older than `other` (false when they are not comparable).
    pub fn is_older_than(self, other: Serial) -> bool {
        self < other
    }
}

impl From<u32> for Serial {
    fn from(n: u32) -> Serial {
        Serial(n)
    }
}

impl std::fmt::Display for Serial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl PartialOrd for Serial {
    /// RFC 1982 §3.2: `a < b` when `(a < b and b - a < 2^31)` or `(a > b and a - b > 2^31)`.
    fn partial_cmp(&self, other: &Serial) -> Option<Ordering> {
        let (a, b) = (self.0, other.0);
        if a == b {
            return Some(Ordering::Equal);
        }
        match b.wrapping_sub(a) {
            0x8000_0000 => None,
            d if d < 0x8000_0000 => Some(Ordering::Less),
            _ => Some(Ordering::Greater),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1982_ordering() {
        let s = Serial;
        assert!(s(1) < s(2));
        assert!(s(2) > s(1));
        assert_eq!(s(7).partial_cmp(&s(7)), Some(Ordering::Equal));
        // Wrapping: 0xffff_fff0 is older than 5.
        assert!(s(0xffff_fff0) < s(5));
        assert!(s(5) > s(0xffff_fff0));
        // Just under half the circle is still ordered.
        assert!(s(0) < s(0x7fff_ffff));
        assert!(s(0) > s(0x8000_0001));
        // Exactly half: undefined, neither newer.
        assert_eq!(s(0).partial_cmp(&s(0x8000_0000)), None);
        assert_eq!(s(0x8000_0000).partial_cmp(&s(0)), None);
        assert!(!s(0).is_older_than(s(0x8000_0000)) && !s(0x8000_0000).is_older_than(s(0)));
        assert!(!s(0).is_newer_than(s(0x8000_0000)));
        assert!(s(3).is_newer_than(s(2)) && !s(2).is_newer_than(s(2)));
    }

    #[test]
    fn addition_wraps_and_is_bounded() {
        assert_eq!(Serial(1).checked_add(1), Some(Serial(2)));
        assert_eq!(Serial(u32::MAX).checked_add(1), Some(Serial(0)));
        assert_eq!(Serial(5).checked_add(MAX_ADD), Some(Serial(5u32.wrapping_add(MAX_ADD))));
        assert_eq!(Serial(5).checked_add(MAX_ADD + 1), None);
        // Any defined addition gives a newer serial.
        for (base, n) in [(0u32, 1u32), (u32::MAX, 10), (0x8000_0000, MAX_ADD), (12345, 1 << 30)] {
            assert!(Serial(base).checked_add(n).unwrap() > Serial(base), "{base} + {n}");
        }
    }
}
