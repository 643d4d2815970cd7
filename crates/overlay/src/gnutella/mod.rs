//! Gnutella 0.6: descriptors on the wire, the sans-IO routing core of one servent, and the Query
//! Routing Protocol that lets ultrapeers forward queries to a leaf only when it may have a match.

pub mod base32;
pub mod client;
pub mod conn;
pub mod guid_table;
pub mod handshake;
pub mod node;
pub mod node_config;
pub mod qrp;
pub mod router;
pub mod wire;
