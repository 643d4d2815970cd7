//! Fetching a torrent's info dictionary from peers (BEP 9) for magnet links, sans IO: which
//! peer to ask for which 16 KiB piece, assembling the pieces, and checking the SHA-1 of the
//! whole against the magnet's info hash. A failed check discards everything, blames every peer
//! that contributed, and starts over with the others. Time is passed in as `now`.

use crate::metainfo::InfoHash;
use crate::wire::ext::{MAX_METADATA_SIZE, METADATA_PIECE};
use sha1::{Digest, Sha1};
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// What became of a piece of metadata a peer sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataOutcome<P> {
    /// Stored; more pieces are missing.
    Stored,
    /// Already had it, or not for the size we are assembling; nothing changed.
    Ignored,
    /// The peer sent something impossible (wrong length, index or total size): drop it.
    Bad,
    /// All pieces are in and their SHA-1 is the info hash: the info dictionary.
    Done(Vec<u8>),
    /// All pieces are in but the hash is wrong: everything was discarded and these peers, which
    /// contributed, will not be asked again.
    HashMismatch(Vec<P>),
}

/// The metadata assembly for one info hash; `P` names a peer (its address, a connection id).
#[derive(Debug)]
pub struct MetadataFetch<P> {
    info_hash: InfoHash,
    timeout: Duration,
    size: Option<u64>,
    buf: Vec<u8>,
    from: Vec<Option<P>>,
    inflight: HashMap<u32, (P, Instant)>,
    sizes: HashMap<P, u64>,
    bad: HashSet<P>,
    failures: u32,
    done: bool,
}

impl<P: Copy + Eq + Hash> MetadataFetch<P> {
    /// A fetch for `info_hash`; an unanswered request is given to another peer after `timeout`.
    pub fn new(info_hash: InfoHash, timeout: Duration) -> Self {
        MetadataFetch {
            info_hash,
            timeout,
            size: None,
            buf: Vec::new(),
            from: Vec::new(),
            inflight: HashMap::new(),
            sizes: HashMap::new(),
            bad: HashSet::new(),
            failures: 0,
            done: false,
        }
    }

    /// A peer's extension handshake announced `metadata_size`. False when the peer cannot help:
    /// an absurd size (0 or over [`MAX_METADATA_SIZE`]), or a peer already blamed.
    pub fn offer(&mut self, peer: P, metadata_size: u64) -> bool {
        if metadata_size == 0 || metadata_size > MAX_METADATA_SIZE || self.bad.contains(&peer) {
            return false;
        }
        self.sizes.insert(peer, metadata_size);
        if self.size.is_none() {
            self.adopt(metadata_size);
        }
        true
    }

    fn adopt(&mut self, size: u64) {
        let pieces = (size as usize).div_ceil(METADATA_PIECE);
        self.size = Some(size);
        self.buf = vec![0; size as usize];
        self.from = vec![None; pieces];
        self.inflight.clear();
    }

    /// Number of pieces of the size being assembled (0 before any peer offered one).
    pub fn num_pieces(&self) -> u32 {
        self.from.len() as u32
    }

    /// Pieces received so far.
    pub fn have(&self) -> u32 {
        self.from.iter().filter(|f| f.is_some()).count() as u32
    }

    /// Whether the info dictionary has been assembled and verified.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// How many assemblies failed their hash check.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Whether `peer` was blamed for a bad assembly or bad data.
    pub fn is_bad(&self, peer: &P) -> bool {
        self.bad.contains(peer)
    }

    fn piece_len(&self, piece: u32) -> usize {
        let size = self.size.unwrap_or(0) as usize;
        (size - (piece as usize * METADATA_PIECE).min(size)).min(METADATA_PIECE)
    }

    /// The next piece to ask `peer` for, marked as in flight to it; `None` when the peer has
    /// nothing we need now (or announced another size, or is blamed).
    pub fn next_request(&mut self, peer: P, now: Instant) -> Option<u32> {
        if self.done || self.bad.contains(&peer) {
            return None;
        }
        let theirs = *self.sizes.get(&peer)?;
        // Nobody left offers the size being assembled (its peers went away): switch to this one.
        if self.size != Some(theirs) && !self.sizes.values().any(|s| Some(*s) == self.size) {
            self.adopt(theirs);
        }
        if self.size != Some(theirs) {
            return None;
        }
        let timeout = self.timeout;
        let free = |i: u32, inflight: &HashMap<u32, (P, Instant)>| match inflight.get(&i) {
            None => true,
            Some((_, at)) => now.saturating_duration_since(*at) >= timeout,
        };
        let i =
            (0..self.num_pieces()).find(|&i| self.from[i as usize].is_none() && free(i, &self.inflight))?;
        self.inflight.insert(i, (peer, now));
        Some(i)
    }

    /// Pieces in flight to `peer`.
    pub fn inflight_to(&self, peer: &P) -> usize {
        self.inflight.values().filter(|(p, _)| p == peer).count()
    }

    /// The peer refused piece `piece`: someone else may be asked.
    pub fn on_reject(&mut self, peer: P, piece: u32) {
        if self.inflight.get(&piece).is_some_and(|(p, _)| *p == peer) {
            self.inflight.remove(&piece);
        }
    }

    /// The peer went away: its requests are free again.
    pub fn peer_gone(&mut self, peer: &P) {
        self.inflight.retain(|_, (p, _)| p != peer);
        self.sizes.remove(peer);
    }

    /// Metadata piece `piece` of an info dictionary of `total_size` bytes arrived from `peer`.
    pub fn on_data(&mut self, peer: P, piece: u32, total_size: u64, data: &[u8]) -> DataOutcome<P> {
        if self.done {
            return DataOutcome::Ignored;
        }
        let Some(size) = self.size else { return DataOutcome::Ignored };
        if self.sizes.get(&peer) != Some(&total_size) {
            // A size other than the one it announced: a confused or lying peer.
            return DataOutcome::Bad;
        }
        if total_size != size {
            return DataOutcome::Ignored;
        }
        if piece >= self.num_pieces() || data.len() != self.piece_len(piece) {
            return DataOutcome::Bad;
        }
        if self.from[piece as usize].is_some() {
            return DataOutcome::Ignored;
        }
        let at = piece as usize * METADATA_PIECE;
        self.buf[at..at + data.len()].copy_from_slice(data);
        self.from[piece as usize] = Some(peer);
        self.inflight.remove(&piece);
        if self.from.iter().any(Option::is_none) {
            return DataOutcome::Stored;
        }
        let digest: [u8; 20] = Sha1::digest(&self.buf).into();
        if digest == self.info_hash {
            self.done = true;
            self.inflight.clear();
            return DataOutcome::Done(std::mem::take(&mut self.buf));
        }
        self.failures += 1;
        let mut blamed: Vec<P> = Vec::new();
        for p in self.from.iter().flatten() {
            if !blamed.contains(p) {
                blamed.push(*p);
            }
        }
        for p in &blamed {
            self.bad.insert(*p);
            self.sizes.remove(p);
        }
        // Start over with a size some remaining peer announced (the blamed one may have lied).
        self.size = None;
        self.buf = Vec::new();
        self.from.clear();
        self.inflight.clear();
        if let Some(&s) = self.sizes.values().next() {
            self.adopt(s);
        }
        DataOutcome::HashMismatch(blamed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(len: usize) -> (Vec<u8>, InfoHash) {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let h = Sha1::digest(&data).into();
        (data, h)
    }

    fn piece(data: &[u8], i: u32) -> &[u8] {
        let at = i as usize * METADATA_PIECE;
        &data[at..(at + METADATA_PIECE).min(data.len())]
    }

    #[test]
    fn assembles_from_two_peers() {
        let (data, hash) = info(40_000); // 3 pieces, the last 7232 bytes
        let now = Instant::now();
        let mut f = MetadataFetch::new(hash, Duration::from_secs(5));
        assert_eq!(f.next_request(1u8, now), None, "no offer yet");
        assert!(f.offer(1u8, 40_000));
        assert!(f.offer(2u8, 40_000));
        assert_eq!(f.num_pieces(), 3);
        assert_eq!(f.next_request(1, now), Some(0));
        assert_eq!(f.next_request(2, now), Some(1));
        assert_eq!(f.next_request(2, now), Some(2));
        assert_eq!(f.next_request(1, now), None, "everything is in flight");
        assert_eq!(f.on_data(1, 0, 40_000, piece(&data, 0)), DataOutcome::Stored);
        assert_eq!(f.on_data(2, 2, 40_000, piece(&data, 2)), DataOutcome::Stored);
        assert_eq!(f.on_data(2, 2, 40_000, piece(&data, 2)), DataOutcome::Ignored);
        assert_eq!(f.on_data(2, 1, 40_000, piece(&data, 1)), DataOutcome::Done(data));
        assert!(f.is_done());
        assert_eq!(f.next_request(1, now), None);
    }

    #[test]
    fn wrong_hash_discards_blames_and_retries_from_another_peer() {
        let (data, hash) = info(20_000);
        let now = Instant::now();
        let mut f = MetadataFetch::new(hash, Duration::from_secs(5));
        assert!(f.offer("liar", 20_000));
        assert!(f.offer("honest", 20_000));
        let mut forged = data.clone();
        forged[5] ^= 1;
        assert_eq!(f.next_request("liar", now), Some(0));
        assert_eq!(f.next_request("liar", now), Some(1));
        assert_eq!(f.on_data("liar", 0, 20_000, piece(&forged, 0)), DataOutcome::Stored);
        assert_eq!(f.on_data("liar", 1, 20_000, piece(&forged, 1)), DataOutcome::HashMismatch(vec!["liar"]));
        assert!(f.is_bad(&"liar") && !f.is_done() && f.failures() == 1);
        assert_eq!(f.have(), 0);
        assert_eq!(f.next_request("liar", now), None);
        assert!(!f.offer("liar", 20_000));
        assert_eq!(f.next_request("honest", now), Some(0));
        assert_eq!(f.next_request("honest", now), Some(1));
        assert_eq!(f.on_data("honest", 0, 20_000, piece(&data, 0)), DataOutcome::Stored);
        assert_eq!(f.on_data("honest", 1, 20_000, piece(&data, 1)), DataOutcome::Done(data));
    }

    #[test]
    fn a_lying_size_is_replaced_after_the_mismatch() {
        let (data, hash) = info(1000);
        let now = Instant::now();
        let mut f = MetadataFetch::new(hash, Duration::from_secs(5));
        assert!(f.offer(1, 500)); // adopted first: wrong
        assert!(f.offer(2, 1000));
        assert_eq!(f.next_request(2, now), None, "peer 2 announced another size");
        assert_eq!(f.next_request(1, now), Some(0));
        assert!(matches!(f.on_data(1, 0, 500, &data[..500]), DataOutcome::HashMismatch(_)));
        assert_eq!(f.next_request(2, now), Some(0));
        assert_eq!(f.on_data(2, 0, 1000, &data), DataOutcome::Done(data));
    }

    #[test]
    fn the_size_follows_the_peers_that_are_left() {
        let (data, hash) = info(1000);
        let now = Instant::now();
        let mut f = MetadataFetch::new(hash, Duration::from_secs(5));
        assert!(f.offer(1, 500)); // adopted, then its only source leaves
        assert!(f.offer(2, 1000));
        assert_eq!(f.next_request(1, now), Some(0));
        f.peer_gone(&1);
        assert_eq!(f.next_request(2, now), Some(0));
        assert_eq!(f.num_pieces(), 1);
        assert_eq!(f.on_data(2, 0, 1000, &data), DataOutcome::Done(data));
    }

    #[test]
    fn limits_and_bad_data() {
        let (data, hash) = info(20_000);
        let now = Instant::now();
        let mut f = MetadataFetch::new(hash, Duration::from_secs(5));
        assert!(!f.offer(1, 0));
        assert!(!f.offer(1, MAX_METADATA_SIZE + 1));
        assert!(f.offer(1, MAX_METADATA_SIZE));
        assert_eq!(f.num_pieces(), 512);
        let mut f = MetadataFetch::new(hash, Duration::from_secs(5));
        assert!(f.offer(1, 20_000));
        assert_eq!(f.next_request(1, now), Some(0));
        assert_eq!(f.on_data(1, 0, 20_000, &data[..100]), DataOutcome::Bad, "short piece");
        assert_eq!(f.on_data(1, 2, 20_000, &data[..100]), DataOutcome::Bad, "piece out of range");
        assert_eq!(f.on_data(1, 0, 30_000, piece(&data, 0)), DataOutcome::Bad, "size changed");
        assert_eq!(f.on_data(9, 0, 20_000, piece(&data, 0)), DataOutcome::Bad, "never offered");
        assert_eq!(f.have(), 0);
    }

    #[test]
    fn rejects_timeouts_and_departures_free_requests() {
        let (_, hash) = info(40_000);
        let t0 = Instant::now();
        let mut f = MetadataFetch::new(hash, Duration::from_secs(5));
        f.offer(1, 40_000);
        f.offer(2, 40_000);
        assert_eq!(f.next_request(1, t0), Some(0));
        f.on_reject(2, 0); // not 2's request: no effect
        assert_eq!(f.next_request(2, t0), Some(1));
        f.on_reject(1, 0);
        assert_eq!(f.next_request(2, t0), Some(0));
        assert_eq!(f.inflight_to(&2), 2);
        f.peer_gone(&2);
        assert_eq!(f.inflight_to(&2), 0);
        assert_eq!(f.next_request(1, t0), Some(0));
        assert_eq!(f.next_request(1, t0), Some(1));
        assert_eq!(f.next_request(1, t0), Some(2));
        f.offer(3, 40_000);
        assert_eq!(f.next_request(3, t0 + Duration::from_secs(1)), None);
        assert_eq!(f.next_request(3, t0 + Duration::from_secs(6)), Some(0), "timed out in flight");
    }
}
