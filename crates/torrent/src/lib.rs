//! BitTorrent for appnet: .torrent files, a tracker, the peer wire protocol, and a client that
//! trades with real clients (aria2c, libtorrent), plus the client-server vs P2P experiment.
//!
//! - [`bencode`], [`metainfo`], [`create`], [`urlenc`]: .torrent files and magnet links.
//! - [`wire`], [`bitfield`]: the peer wire protocol as pure codecs.
//! - [`tracker`]: HTTP and UDP tracker server and client.
//! - [`config`]: serde configuration for the tracker and the client.

pub mod bencode;
pub mod bitfield;
pub mod config;
pub mod create;
pub mod metainfo;
pub mod tracker;
pub mod urlenc;
pub mod wire;

pub use metainfo::{InfoHash, Metainfo};
