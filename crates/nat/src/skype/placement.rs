//! Which supernodes hold a user's entry: consistent hashing (each SN at [`POINTS`] positions,
//! SHA-256 of its address and an index, on a 64-bit ring; a user at SHA-256 of the name) and the
//! first [`REPLICAS`] distinct SNs clockwise from the user. An SN joining or leaving moves only
//! the entries next to its positions.

use ring::digest;
use std::net::SocketAddr;

/// How many SNs keep each entry.
pub const REPLICAS: usize = 2;
/// Positions per SN on the ring (virtual nodes), so shares stay even with few SNs.
pub const POINTS: usize = 32;

fn point(bytes: &[u8]) -> u64 {
    let d = digest::digest(&digest::SHA256, bytes);
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_ref()[..8]);
    u64::from_be_bytes(b)
}

/// The SNs on the ring, sorted by position.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    ring: Vec<(u64, SocketAddr)>,
}

impl Placement {
    /// A ring of `sns` (duplicates ignored).
    pub fn new(sns: impl IntoIterator<Item = SocketAddr>) -> Placement {
        let mut p = Placement::default();
        sns.into_iter().for_each(|sn| p.add(sn));
        p
    }

    /// Puts `sn` on the ring.
    pub fn add(&mut self, sn: SocketAddr) {
        if self.ring.iter().any(|(_, a)| *a == sn) {
            return;
        }
        for v in 0..POINTS {
            let at = point(format!("{sn}#{v}").as_bytes());
            let i = self.ring.partition_point(|(p, a)| (*p, *a) < (at, sn));
            self.ring.insert(i, (at, sn));
        }
    }

    /// Takes `sn` off the ring.
    pub fn remove(&mut self, sn: SocketAddr) {
        self.ring.retain(|(_, a)| *a != sn);
    }

    /// How many SNs are on the ring.
    pub fn len(&self) -> usize {
        self.ring.len() / POINTS
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// The SNs that hold `user`'s entry, the primary first.
    pub fn owners(&self, user: &str) -> Vec<SocketAddr> {
        let at = point(user.as_bytes());
        let start = self.ring.partition_point(|(p, _)| *p < at);
        let mut owners = Vec::with_capacity(REPLICAS);
        for i in 0..self.ring.len() {
            if owners.len() == REPLICAS {
                break;
            }
            if let Some((_, a)) = self.ring.get((start + i) % self.ring.len())
                && !owners.contains(a)
            {
                owners.push(*a);
            }
        }
        owners
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sn(i: u16) -> SocketAddr {
        SocketAddr::from(([100, 64, 0, 1], 4000 + i))
    }

    #[test]
    fn two_distinct_owners_and_little_movement_on_join() {
        let mut p = Placement::new((0..8).map(sn));
        let users: Vec<String> = (0..500).map(|i| format!("user{i}")).collect();
        let before: Vec<Vec<SocketAddr>> = users.iter().map(|u| p.owners(u)).collect();
        assert!(before.iter().all(|o| o.len() == 2 && o[0] != o[1]));
        p.add(sn(8));
        let moved = users.iter().zip(&before).filter(|(u, b)| p.owners(u)[0] != b[0]).count();
        // About 1/9 of the primaries (55 of 500) move to the newcomer; nothing else changes hands.
        assert!((20..110).contains(&moved), "{moved} primaries moved");
        assert!(users.iter().zip(&before).all(|(u, b)| p.owners(u)[0] == b[0] || p.owners(u)[0] == sn(8)));
        assert_eq!(Placement::new([sn(1)]).owners("alice"), vec![sn(1)]);
        assert!(Placement::default().owners("alice").is_empty());
    }
}
