//! The tracker: HTTP (BEP 3/23/48) and UDP (BEP 15) announce and scrape, a status page, and the
//! client side used by `torrent get`/`seed`.

pub mod client;
pub mod core;
pub mod proto;
pub mod server;
pub mod udp;

pub use server::TrackerServer;
