//! BitTorrent for appnet: .torrent files, a tracker, the peer wire protocol, and a client that
//! trades with real clients (aria2c, libtorrent).
//!
//! - [`bencode`], [`metainfo`], [`create`], [`urlenc`]: .torrent files and magnet links.
//! - [`wire`], [`bitfield`]: the peer wire protocol as pure codecs.
//! - [`swarm`]: the peer-wire state machine of one torrent, sans IO (and its simulator), built
//!   on the cores [`picker`] (rarest first, endgame), [`choker`] (tit-for-tat), [`admission`]
//!   and [`meter`].
//! - [`bep9_metadata`]: the sans-IO assembly of a magnet link's info dictionary (BEP 9);
//!   [`bep9_magnet`]: fetching it from peers (BEP 9 over BEP 10) before downloading.
//! - `bep10_extension`: the session's extension protocol (BEP 10): serving metadata, PEX.
//! - [`discovery`]: peers besides trackers (DHT on the peer port) and BEP 27's private rule.
//! - [`tracker`]: HTTP and UDP tracker server and client.
//! - [`dht`]: the mainline DHT (BEP 5) for magnet links without trackers.
//! - [`session`]: the tokio driver of [`swarm`] for one torrent (peer connections in `peer`).
//! - [`storage`]: pieces on plain files.
//! - [`config`]: serde configuration for the tracker and the client.

pub mod admission;
pub mod bencode;
mod bep10_extension;
pub mod bep9_magnet;
pub mod bep9_metadata;
pub mod bitfield;
pub mod choker;
pub mod config;
pub mod create;
pub mod dht;
pub mod discovery;
pub mod metainfo;
pub mod meter;
mod peer;
pub mod picker;
mod safe_fs;
pub mod session;
pub mod storage;
pub mod swarm;
pub mod tracker;
pub mod urlenc;
pub mod wire;

pub use metainfo::{InfoHash, Metainfo};
pub use session::{Progress, Session, TorrentHandle};
