//! BitTorrent for appnet: .torrent files, a tracker, the peer wire protocol, and a client that
//! trades with real clients (aria2c, libtorrent), plus the client-server vs P2P experiment.
//!
//! - [`bencode`], [`metainfo`], [`create`], [`urlenc`]: .torrent files and magnet links.
//! - [`wire`], [`bitfield`]: the peer wire protocol as pure codecs.
//! - [`picker`], [`choker`], [`admission`], [`meter`], [`metadata`]: the sans-IO cores (rarest first,
//!   tit-for-tat, BEP 9 metadata assembly).
//! - [`magnet`]: fetching a magnet link's metadata from peers (BEP 9/10) before downloading.
//! - [`tracker`]: HTTP and UDP tracker server and client.
//! - [`dht`]: the mainline DHT (BEP 5) for magnet links without trackers.
//! - [`session`]: the tokio client/seeder for one torrent (peer connections in `peer`).
//! - [`storage`]: pieces on plain files.
//! - [`config`]: serde configuration for the tracker and the client.
//! - [`progress`]: the terminal progress bar; [`experiment`]: `appnet experiment p2p-vs-cs`.

pub mod admission;
pub mod bencode;
pub mod bitfield;
pub mod choker;
pub mod config;
pub mod create;
pub mod dht;
pub mod experiment;
pub mod magnet;
pub mod metadata;
pub mod metainfo;
pub mod meter;
mod peer;
mod peer_ext;
pub mod picker;
pub mod progress;
mod safe_fs;
pub mod session;
pub mod storage;
pub mod swarm;
pub mod tracker;
pub mod urlenc;
pub mod wire;

pub use metainfo::{InfoHash, Metainfo};
pub use session::{Progress, Session, TorrentHandle};
