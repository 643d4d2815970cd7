//! The directory's core (sans-IO): which peer shares which files, keyword search, and the caps
//! that keep one peer from filling it. The driver (`server.rs`) calls it per command; a
//! peer's entries go when `remove_peer` is called for its closed connection.

use super::wire::{Hit, Sha1};
use crate::index::keywords;
use std::collections::HashMap;
use std::net::SocketAddr;

/// The driver's handle for one connection.
pub type PeerId = u64;

/// The directory's caps.
#[derive(Debug, Clone, Copy)]
pub struct DirectoryLimits {
    /// Entries one peer may announce.
    pub max_entries_per_peer: usize,
    /// Entries in the whole directory.
    pub max_entries: usize,
    /// Hits one search returns.
    pub max_results: usize,
}

/// Why the directory refused an announcement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// `ADD` before `HELLO`.
    #[error("send HELLO with your listen address first")]
    NotRegistered,
    /// `HELLO` twice on one connection.
    #[error("already registered")]
    AlreadyRegistered,
    /// The peer's cap is reached.
    #[error("at most {0} entries per peer")]
    PeerFull(usize),
    /// The directory's cap is reached.
    #[error("the directory is full ({0} entries)")]
    Full(usize),
}

#[derive(Debug)]
struct Entry {
    size: u64,
    sha1: Sha1,
    name: String,
    /// The name's keywords, for search.
    words: Vec<String>,
}

#[derive(Debug)]
struct Peer {
    addr: SocketAddr,
    entries: Vec<Entry>,
}

/// Who shares what.
#[derive(Debug)]
pub struct Directory {
    limits: DirectoryLimits,
    peers: HashMap<PeerId, Peer>,
    total: usize,
}

impl Directory {
    /// An empty directory with these caps.
    pub fn new(limits: DirectoryLimits) -> Directory {
        Directory { limits, peers: HashMap::new(), total: 0 }
    }

    /// Registers `id` as a sharing peer reachable at `addr` (step 1: "a peer informs the
    /// server of its IP address").
    pub fn register(&mut self, id: PeerId, addr: SocketAddr) -> Result<(), DirectoryError> {
        if self.peers.contains_key(&id) {
            return Err(DirectoryError::AlreadyRegistered);
        }
        self.peers.insert(id, Peer { addr, entries: Vec::new() });
        Ok(())
    }

    /// Adds one of `id`'s files ("... and of its content"). Re-announcing a file it already
    /// listed (same SHA-1 and name) is accepted and changes nothing.
    pub fn add(&mut self, id: PeerId, size: u64, sha1: Sha1, name: String) -> Result<(), DirectoryError> {
        let limits = self.limits;
        let total = self.total;
        let peer = self.peers.get_mut(&id).ok_or(DirectoryError::NotRegistered)?;
        if peer.entries.iter().any(|e| e.sha1 == sha1 && e.name == name) {
            return Ok(());
        }
        if peer.entries.len() >= limits.max_entries_per_peer {
            return Err(DirectoryError::PeerFull(limits.max_entries_per_peer));
        }
        if total >= limits.max_entries {
            return Err(DirectoryError::Full(limits.max_entries));
        }
        let words = keywords(&name);
        peer.entries.push(Entry { size, sha1, name, words });
        self.total += 1;
        Ok(())
    }

    /// Forgets `id` and all its entries (its connection went). Returns how many entries went.
    pub fn remove_peer(&mut self, id: PeerId) -> usize {
        let gone = self.peers.remove(&id).map_or(0, |p| p.entries.len());
        self.total -= gone;
        gone
    }

    /// Entries whose name has every keyword of `query` as a word (case-insensitive), at most
    /// `max_results` of them (step 2: "Alice queries for Hey Jude").
    pub fn search(&self, query: &str) -> Vec<Hit> {
        let words = keywords(query);
        if words.is_empty() {
            return Vec::new();
        }
        let mut hits = Vec::new();
        for peer in self.peers.values() {
            for e in &peer.entries {
                if words.iter().all(|w| e.words.contains(w)) {
                    hits.push(Hit { addr: peer.addr, size: e.size, sha1: e.sha1, name: e.name.clone() });
                    if hits.len() >= self.limits.max_results {
                        return hits;
                    }
                }
            }
        }
        hits
    }

    /// Peers registered now.
    pub fn peers(&self) -> usize {
        self.peers.len()
    }

    /// Entries held now.
    pub fn entries(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> Directory {
        Directory::new(DirectoryLimits { max_entries_per_peer: 2, max_entries: 3, max_results: 10 })
    }

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 11, 2], p))
    }

    #[test]
    fn search_finds_every_keyword_in_any_case_and_forgets_a_gone_peer() {
        let mut d = dir();
        d.register(1, addr(1)).unwrap();
        d.register(2, addr(2)).unwrap();
        d.add(1, 10, [1; 20], "Hey Jude.mp3".into()).unwrap();
        d.add(2, 11, [1; 20], "The Beatles - Hey Jude.mp3".into()).unwrap();
        d.add(2, 12, [2; 20], "Let It Be.mp3".into()).unwrap();
        let mut hits = d.search("hey JUDE");
        hits.sort_by_key(|h| h.size);
        assert_eq!(
            hits.iter().map(|h| (h.addr, h.size)).collect::<Vec<_>>(),
            vec![(addr(1), 10), (addr(2), 11)]
        );
        assert!(d.search("jude yesterday").is_empty());
        assert!(d.search("  ").is_empty());
        assert_eq!(d.remove_peer(2), 2);
        assert_eq!(d.search("jude").len(), 1);
        assert_eq!((d.peers(), d.entries()), (1, 1));
    }

    #[test]
    fn caps_and_order_are_enforced() {
        let mut d = dir();
        assert_eq!(d.add(1, 1, [0; 20], "x".into()), Err(DirectoryError::NotRegistered));
        d.register(1, addr(1)).unwrap();
        assert_eq!(d.register(1, addr(1)), Err(DirectoryError::AlreadyRegistered));
        d.add(1, 1, [0; 20], "a".into()).unwrap();
        d.add(1, 1, [0; 20], "a".into()).unwrap(); // repeat: no new entry
        d.add(1, 1, [1; 20], "b".into()).unwrap();
        assert_eq!(d.add(1, 1, [2; 20], "c".into()), Err(DirectoryError::PeerFull(2)));
        d.register(2, addr(2)).unwrap();
        d.add(2, 1, [3; 20], "d".into()).unwrap();
        assert_eq!(d.add(2, 1, [4; 20], "e".into()), Err(DirectoryError::Full(3)));
        assert_eq!(d.entries(), 3);
    }

    #[test]
    fn results_are_capped() {
        let mut d =
            Directory::new(DirectoryLimits { max_entries_per_peer: 100, max_entries: 100, max_results: 5 });
        d.register(1, addr(1)).unwrap();
        for i in 0..50u8 {
            d.add(1, 1, [i; 20], format!("song {i}")).unwrap();
        }
        assert_eq!(d.search("song").len(), 5);
    }
}
