//! What a DHT node keeps across restarts, as libtorrent and Transmission do: its own id (so the
//! nodes that knew it keep their entries valid) and the nodes it had heard answer, so the next
//! start rejoins through them instead of depending on the bootstrap routers alone.
//!
//! The file is a bencoded dictionary `{"id": 20 bytes, "nodes": 26 bytes per node}` (the
//! compact node form of BEP 5), written crash-safely.

use super::krpc::{Id, NodeInfo, encode_nodes, parse_peer};
use crate::bencode::{dict_value, value_end};
use std::io;
use std::path::Path;

/// The most nodes saved (and read back).
pub const MAX_SAVED: usize = 256;

/// A node's saved state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedState {
    /// Our node id.
    pub id: Id,
    /// Nodes that answered us, closest buckets first as the table lists them.
    pub nodes: Vec<NodeInfo>,
}

impl SavedState {
    /// The file's bytes (at most [`MAX_SAVED`] nodes).
    pub fn encode(&self) -> Vec<u8> {
        let nodes = encode_nodes(&self.nodes[..self.nodes.len().min(MAX_SAVED)]);
        let mut out = Vec::with_capacity(40 + nodes.len());
        out.extend_from_slice(b"d2:id20:");
        out.extend_from_slice(&self.id);
        out.extend_from_slice(format!("5:nodes{}:", nodes.len()).as_bytes());
        out.extend_from_slice(&nodes);
        out.push(b'e');
        out
    }

    /// Reads the file's bytes back; `None` when they are not a saved state.
    pub fn decode(buf: &[u8]) -> Option<SavedState> {
        if value_end(buf, 0).ok()? != buf.len() {
            return None;
        }
        let id = string(dict_value(buf, b"id").ok()??)?;
        let id: Id = id.try_into().ok()?;
        let nodes = string(dict_value(buf, b"nodes").ok()??)?;
        if !nodes.len().is_multiple_of(26) {
            return None;
        }
        let nodes = nodes
            .chunks_exact(26)
            .take(MAX_SAVED)
            .filter_map(|c| {
                let addr = parse_peer(&c[20..])?;
                (addr.port() != 0).then(|| NodeInfo { id: c[..20].try_into().expect("20 bytes"), addr })
            })
            .collect();
        Some(SavedState { id, nodes })
    }

    /// Loads `path`: `Ok(None)` when it does not exist yet; an error when it is unreadable or
    /// not a saved state (the caller starts afresh and says why).
    pub fn load(path: &Path) -> io::Result<Option<SavedState>> {
        match std::fs::read(path) {
            Ok(buf) => SavedState::decode(&buf)
                .map(Some)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not a saved DHT state")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes `path` crash-safely.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        appnet_netkit::files::write_atomic(path, &self.encode())
    }
}

/// The contents of a bencoded byte string (`LEN:BYTES`), given exactly its raw bytes.
fn string(raw: &[u8]) -> Option<&[u8]> {
    let colon = raw.iter().position(|&b| b == b':')?;
    let len: usize = std::str::from_utf8(&raw[..colon]).ok()?.parse().ok()?;
    let body = &raw[colon + 1..];
    (body.len() == len).then_some(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};

    fn state(n: usize) -> SavedState {
        SavedState {
            id: [7; 20],
            nodes: (0..n)
                .map(|i| NodeInfo {
                    id: [i as u8; 20],
                    addr: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, i as u8), 6881 + i as u16),
                })
                .collect(),
        }
    }

    #[test]
    fn round_trips_and_caps_the_node_count() {
        for n in [0, 1, 5] {
            assert_eq!(SavedState::decode(&state(n).encode()), Some(state(n)));
        }
        let big = state(300);
        assert_eq!(SavedState::decode(&big.encode()).unwrap().nodes.len(), MAX_SAVED);
    }

    #[test]
    fn rejects_what_is_not_a_saved_state() {
        let good = state(2).encode();
        assert!(SavedState::decode(&good[..good.len() - 1]).is_none(), "truncated");
        assert!(SavedState::decode(b"d2:id3:abc5:nodes0:e").is_none(), "short id");
        assert!(SavedState::decode(b"de").is_none(), "empty");
        assert!(SavedState::decode(b"garbage").is_none());
        let mut odd = b"d2:id20:".to_vec();
        odd.extend_from_slice(&[1; 20]);
        odd.extend_from_slice(b"5:nodes3:abce");
        assert!(SavedState::decode(&odd).is_none(), "nodes not a multiple of 26 bytes");
    }

    #[test]
    fn load_and_save() {
        let dir = appnet_netkit::harness::TempDir::new("dht-state");
        let path = dir.join("dht.dat");
        assert_eq!(SavedState::load(&path).unwrap(), None);
        state(3).save(&path).unwrap();
        assert_eq!(SavedState::load(&path).unwrap(), Some(state(3)));
        std::fs::write(&path, b"d2:id").unwrap();
        assert!(SavedState::load(&path).is_err());
    }
}
