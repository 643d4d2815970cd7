//! Which pieces a peer has: the wire's big-endian bit array, with a cached count.

/// A fixed-length set of piece indexes, laid out as in the BITFIELD message (MSB first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitfield {
    bits: Vec<u8>,
    len: u32,
    count: u32,
}

impl Bitfield {
    /// All clear.
    pub fn new(len: u32) -> Self {
        Bitfield { bits: vec![0; len.div_ceil(8) as usize], len, count: 0 }
    }

    /// All set (a seed).
    pub fn full(len: u32) -> Self {
        let mut b = Bitfield::new(len);
        for i in 0..len {
            b.set(i);
        }
        b
    }

    /// From wire bytes; `None` if the length is wrong or a spare trailing bit is set.
    pub fn from_bytes(bytes: &[u8], len: u32) -> Option<Self> {
        if bytes.len() != len.div_ceil(8) as usize {
            return None;
        }
        let spare = (8 - len % 8) % 8;
        if spare > 0 && bytes.last().is_some_and(|b| b & ((1u8 << spare) - 1) != 0) {
            return None;
        }
        let count = bytes.iter().map(|b| b.count_ones()).sum();
        Some(Bitfield { bits: bytes.to_vec(), len, count })
    }

    /// The wire bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    /// Number of pieces the field covers.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether it covers no pieces at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether piece `i` is set (false when out of range).
    pub fn get(&self, i: u32) -> bool {
        i < self.len && self.bits[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
    }

    /// Sets piece `i`; returns whether it was newly set (false when out of range).
    pub fn set(&mut self, i: u32) -> bool {
        if i >= self.len || self.get(i) {
            return false;
        }
        self.bits[(i / 8) as usize] |= 0x80 >> (i % 8);
        self.count += 1;
        true
    }

    /// Number of pieces set.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether every piece is set.
    pub fn is_full(&self) -> bool {
        self.count == self.len
    }

    /// Indexes that are set.
    pub fn ones(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|&i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_layout_and_spare_bits() {
        let mut b = Bitfield::new(10);
        assert!(b.set(0) && b.set(9) && !b.set(9) && !b.set(10));
        assert_eq!(b.as_bytes(), &[0x80, 0x40]);
        assert_eq!(b.count(), 2);
        assert!(Bitfield::from_bytes(&[0x80, 0x40], 10).is_some());
        assert!(Bitfield::from_bytes(&[0x80, 0x20], 10).is_none());
        assert!(Bitfield::from_bytes(&[0x80], 10).is_none());
        assert!(Bitfield::full(10).is_full());
    }
}
