//! The mainline DHT (BEP 5): lets a magnet link with no trackers and no peer addresses find
//! peers, and lets a seeder be found the same way.
//!
//! - [`krpc`]: the KRPC message codec (pure, bounded).
//! - [`table`], [`lookup`], [`token`], [`store`]: the pieces of the sans-IO node.
//! - [`node`]: the sans-IO node taking `now`; [`server`]: its tokio driver and handle.
//! - [`state`]: the id and nodes a node keeps across restarts.

pub mod krpc;
pub mod lookup;
pub mod node;
pub mod server;
pub mod state;
pub mod store;
pub mod table;
pub mod token;

pub use krpc::{Id, NodeInfo};
pub use node::{Event, LookupId, Node, Status};
pub use server::{Dht, DhtHandle};
