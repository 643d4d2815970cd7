//! Helpers shared by the integration tests: scratch directories, deterministic data, a
//! loopback client configuration.

use appnet_netkit::harness::{TempDir, any_loopback};
use appnet_torrent::config::ClientConfig;
use std::path::Path;

/// A fresh scratch directory for test `tag` of this process, removed when dropped.
pub fn tmp(tag: &str) -> TempDir {
    TempDir::new(&format!("torrent-it-{tag}"))
}

/// `len` pseudo-random bytes from `seed` (xorshift: the same every run).
pub fn data(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A client on 127.0.0.1:0 storing under `dir`, seeding until stopped, without fsync.
pub fn client(dir: &Path) -> ClientConfig {
    ClientConfig {
        listen: any_loopback(),
        dir: dir.to_path_buf(),
        seed_time_secs: None,
        fsync: false,
        ..ClientConfig::default()
    }
}
