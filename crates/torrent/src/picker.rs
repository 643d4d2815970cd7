//! The piece picker, sans IO: which blocks to request from a peer. Random first pieces until
//! one completes, then rarest first across connected peers; strict priority (finish started
//! pieces before starting new ones); endgame (when every missing block is requested, ask other
//! peers for the same blocks and cancel the duplicates when one arrives).

use crate::bitfield::Bitfield;
use crate::wire::{BLOCK, BlockRef};
use rand::Rng;
use std::collections::BTreeMap;

/// Most peers one block is requested from at once in endgame.
const ENDGAME_COPIES: u16 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Free,
    /// Requested from this many peers (more than one only in endgame).
    Requested(u16),
    Received,
}

#[derive(Debug, Clone)]
struct Partial {
    blocks: Vec<Block>,
    received: u32,
}

/// What a received block meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// New data; `others` is how many other peers still have it requested (cancel those).
    Fresh {
        /// Other outstanding requests for the same block.
        others: u16,
        /// Whether this block completed its piece (verify it now).
        piece_done: bool,
    },
    /// We already had it (endgame duplicate, or unrequested); drop the data.
    Duplicate,
}

/// Block bookkeeping for one torrent.
#[derive(Debug, Clone)]
pub struct Picker {
    piece_length: u64,
    total: u64,
    have: Bitfield,
    availability: Vec<u32>,
    partial: BTreeMap<u32, Partial>,
}

impl Picker {
    /// A picker for `total` bytes in pieces of `piece_length`.
    pub fn new(piece_length: u64, total: u64) -> Self {
        let n = total.div_ceil(piece_length.max(1)) as u32;
        Picker {
            piece_length,
            total,
            have: Bitfield::new(n),
            availability: vec![0; n as usize],
            partial: BTreeMap::new(),
        }
    }

    /// Pieces in the torrent.
    pub fn num_pieces(&self) -> u32 {
        self.have.len()
    }

    /// Length of piece `i`.
    pub fn piece_size(&self, i: u32) -> u32 {
        let start = i as u64 * self.piece_length;
        self.total.saturating_sub(start).min(self.piece_length) as u32
    }

    fn blocks_in(&self, i: u32) -> u32 {
        self.piece_size(i).div_ceil(BLOCK)
    }

    fn block_ref(&self, index: u32, b: u32) -> BlockRef {
        let begin = b * BLOCK;
        BlockRef { index, begin, length: (self.piece_size(index) - begin).min(BLOCK) }
    }

    /// Our pieces.
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// Whether every piece is verified.
    pub fn is_complete(&self) -> bool {
        self.have.is_full()
    }

    /// Bytes still missing.
    pub fn left(&self) -> u64 {
        (0..self.num_pieces()).filter(|&i| !self.have.get(i)).map(|i| self.piece_size(i) as u64).sum()
    }

    /// A peer announced piece `i`.
    pub fn peer_has(&mut self, i: u32) {
        if let Some(a) = self.availability.get_mut(i as usize) {
            *a += 1;
        }
    }

    /// A peer's whole bitfield arrived (or, with `add == false`, the peer left).
    pub fn peer_bitfield(&mut self, bf: &Bitfield, add: bool) {
        for i in bf.ones() {
            if let Some(a) = self.availability.get_mut(i as usize) {
                *a = if add { *a + 1 } else { a.saturating_sub(1) };
            }
        }
    }

    /// How many connected peers have piece `i`.
    pub fn availability(&self, i: u32) -> u32 {
        self.availability.get(i as usize).copied().unwrap_or(0)
    }

    /// Whether `peer` has any piece we lack.
    pub fn wants_from(&self, peer: &Bitfield) -> bool {
        peer.as_bytes().iter().zip(self.have.as_bytes()).any(|(p, h)| p & !h != 0)
    }

    /// Whether every missing block is already requested (the endgame).
    pub fn in_endgame(&self) -> bool {
        let started = self.partial.len() as u32;
        let missing = self.num_pieces() - self.have.count();
        started == missing && self.partial.values().all(|p| p.blocks.iter().all(|b| *b != Block::Free))
    }

    /// Picks up to `max` blocks to request from a peer that has `peer` pieces, skipping blocks
    /// in `pending` (already requested from this peer), and marks them requested.
    pub fn pick(
        &mut self,
        peer: &Bitfield,
        max: usize,
        pending: &impl Fn(&BlockRef) -> bool,
        rng: &mut impl Rng,
    ) -> Vec<BlockRef> {
        let mut out = Vec::new();
        if max == 0 {
            return out;
        }
        // 1. Strict priority: free blocks of pieces already started, most complete first.
        let mut started: Vec<(u32, u32)> =
            self.partial.iter().filter(|(i, _)| peer.get(**i)).map(|(i, p)| (*i, p.received)).collect();
        started.sort_by_key(|&(i, r)| (std::cmp::Reverse(r), i));
        for (i, _) in started {
            self.take_free(i, max, &mut out);
            if out.len() >= max {
                return out;
            }
        }
        // 2. New pieces: random until the first completes, then rarest first.
        while out.len() < max {
            let Some(i) = self.choose_new(peer, rng) else { break };
            let n = self.blocks_in(i);
            self.partial.insert(i, Partial { blocks: vec![Block::Free; n as usize], received: 0 });
            self.take_free(i, max, &mut out);
        }
        // 3. Endgame: request blocks already requested from one other peer (at most two copies
        // in flight, so a large swarm's last blocks do not flood every uploader).
        if out.len() < max && self.in_endgame() {
            let idx: Vec<u32> = self.partial.keys().copied().filter(|i| peer.get(*i)).collect();
            for i in idx {
                let nblocks = self.partial[&i].blocks.len() as u32;
                for b in 0..nblocks {
                    if out.len() >= max {
                        return out;
                    }
                    let r = self.block_ref(i, b);
                    if let Some(Block::Requested(n)) = self.partial.get(&i).map(|p| p.blocks[b as usize])
                        && n < ENDGAME_COPIES
                        && !pending(&r)
                        && !out.contains(&r)
                    {
                        if let Some(p) = self.partial.get_mut(&i) {
                            p.blocks[b as usize] = Block::Requested(n + 1);
                        }
                        out.push(r);
                    }
                }
            }
        }
        out
    }

    fn take_free(&mut self, i: u32, max: usize, out: &mut Vec<BlockRef>) {
        let refs: Vec<u32> = match self.partial.get(&i) {
            Some(p) => p
                .blocks
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == Block::Free)
                .map(|(b, _)| b as u32)
                .collect(),
            None => return,
        };
        for b in refs {
            if out.len() >= max {
                return;
            }
            if let Some(p) = self.partial.get_mut(&i) {
                p.blocks[b as usize] = Block::Requested(1);
            }
            out.push(self.block_ref(i, b));
        }
    }

    fn choose_new(&self, peer: &Bitfield, rng: &mut impl Rng) -> Option<u32> {
        let random_first = self.have.count() == 0;
        let mut best: Option<u32> = None;
        let mut best_avail = u32::MAX;
        let mut ties = 0u32;
        for i in 0..self.num_pieces() {
            if !peer.get(i) || self.have.get(i) || self.partial.contains_key(&i) {
                continue;
            }
            let a = if random_first { 0 } else { self.availability[i as usize] };
            if a < best_avail {
                best_avail = a;
                best = Some(i);
                ties = 1;
            } else if a == best_avail {
                ties += 1;
                if rng.random_range(0..ties) == 0 {
                    best = Some(i);
                }
            }
        }
        best
    }

    /// A request was dropped (choke, reject, disconnect, cancel): the block is free again
    /// unless someone else still has it requested.
    pub fn cancel(&mut self, r: &BlockRef) {
        if let Some(p) = self.partial.get_mut(&r.index)
            && let Some(b) = p.blocks.get_mut((r.begin / BLOCK) as usize)
            && let Block::Requested(n) = *b
        {
            *b = if n > 1 { Block::Requested(n - 1) } else { Block::Free };
        }
    }

    /// Whether `r` is exactly one of the blocks of a piece we are downloading.
    pub fn is_expected(&self, r: &BlockRef) -> bool {
        r.begin.is_multiple_of(BLOCK)
            && self.partial.get(&r.index).is_some_and(|p| (r.begin / BLOCK) < p.blocks.len() as u32)
            && self.block_ref(r.index, r.begin / BLOCK).length == r.length
    }

    /// Records that block `r` arrived.
    pub fn received(&mut self, r: &BlockRef) -> Received {
        if !self.is_expected(r) {
            return Received::Duplicate;
        }
        let Some(p) = self.partial.get_mut(&r.index) else { return Received::Duplicate };
        let b = &mut p.blocks[(r.begin / BLOCK) as usize];
        let others = match *b {
            Block::Received => return Received::Duplicate,
            Block::Requested(n) => n - 1,
            Block::Free => 0,
        };
        *b = Block::Received;
        p.received += 1;
        Received::Fresh { others, piece_done: p.received as usize == p.blocks.len() }
    }

    /// The piece passed its hash check and is on disk.
    pub fn piece_verified(&mut self, i: u32) {
        self.partial.remove(&i);
        self.have.set(i);
    }

    /// The piece failed its hash check: every block is free again.
    pub fn piece_failed(&mut self, i: u32) {
        self.partial.remove(&i);
    }

    /// Marks pieces found on disk at start-up.
    pub fn set_have(&mut self, i: u32) {
        self.have.set(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const P: u64 = 4 * BLOCK as u64;

    fn none(_: &BlockRef) -> bool {
        false
    }

    #[test]
    fn strict_priority_finishes_started_pieces() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut p = Picker::new(P, 10 * P);
        let all = Bitfield::full(10);
        let first = p.pick(&all, 2, &none, &mut rng);
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].index, first[1].index);
        let next = p.pick(&all, 2, &none, &mut rng);
        assert!(next.iter().all(|b| b.index == first[0].index), "continues the started piece");
    }

    #[test]
    fn random_first_then_rarest_first() {
        let mut p = Picker::new(P, 10 * P);
        let all = Bitfield::full(10);
        p.peer_bitfield(&all, true);
        p.peer_bitfield(&all, true);
        // Piece 7 is the rarest: every other piece has one more holder.
        for i in 0..10 {
            if i != 7 {
                p.peer_has(i);
            }
        }
        // Before any piece completes, the choice is random: over many seeds not always 7.
        let firsts: std::collections::HashSet<u32> =
            (0..50).map(|s| p.clone().pick(&all, 1, &none, &mut StdRng::seed_from_u64(s))[0].index).collect();
        assert!(firsts.len() > 3);
        p.set_have(0);
        for s in 0..20 {
            assert_eq!(p.clone().pick(&all, 1, &none, &mut StdRng::seed_from_u64(s))[0].index, 7);
        }
    }

    #[test]
    fn only_pieces_the_peer_has_and_last_block_is_short() {
        let mut rng = StdRng::seed_from_u64(3);
        let total = 2 * P + 100;
        let mut p = Picker::new(P, total);
        let mut bf = Bitfield::new(3);
        bf.set(2);
        let got = p.pick(&bf, 10, &none, &mut rng);
        assert_eq!(got, vec![BlockRef { index: 2, begin: 0, length: 100 }]);
        assert!(p.pick(&bf, 10, &none, &mut rng).is_empty() || p.in_endgame());
    }

    #[test]
    fn endgame_duplicates_and_cancel() {
        let mut rng = StdRng::seed_from_u64(4);
        let mut p = Picker::new(P, P);
        let all = Bitfield::full(1);
        let a = p.pick(&all, 10, &none, &mut rng);
        assert_eq!(a.len(), 4);
        assert!(p.in_endgame());
        let pending_a = |r: &BlockRef| a.contains(r);
        assert!(p.pick(&all, 10, &pending_a, &mut rng).is_empty(), "same peer gets no duplicates");
        let b = p.pick(&all, 10, &none, &mut rng);
        assert_eq!(b.len(), 4, "another peer gets the same blocks");
        assert!(p.pick(&all, 10, &none, &mut rng).is_empty(), "but not a third");
        assert_eq!(p.received(&a[0]), Received::Fresh { others: 1, piece_done: false });
        assert_eq!(p.received(&b[0]), Received::Duplicate);
        for r in &a[1..] {
            p.received(r);
        }
        p.piece_verified(0);
        assert!(p.is_complete());
        assert_eq!(p.left(), 0);
    }

    #[test]
    fn failed_piece_is_requested_again_and_cancel_frees() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut p = Picker::new(P, 2 * P);
        let all = Bitfield::full(2);
        let got = p.pick(&all, 4, &none, &mut rng);
        p.cancel(&got[0]);
        let again = p.pick(&all, 1, &none, &mut rng);
        assert_eq!(again[0], got[0]);
        for r in &got {
            p.received(r);
        }
        p.piece_failed(got[0].index);
        let retry = p.pick(&all, 8, &none, &mut rng);
        assert!(retry.iter().any(|r| r.index == got[0].index));
        assert!(!p.is_expected(&BlockRef { index: 9, begin: 0, length: BLOCK }));
        assert_eq!(
            p.received(&BlockRef { index: got[0].index, begin: 1, length: BLOCK }),
            Received::Duplicate
        );
    }
}
