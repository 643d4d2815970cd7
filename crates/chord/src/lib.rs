//! Chord (Stoica et al., SIGCOMM 2001): a distributed hash table whose peers and keys share one
//! identifier circle. Each key lives on its successor (and the next r-1 nodes, as replicas);
//! finger tables make lookups take O(log N) hops; stabilization repairs the ring under churn.
//!
//! - [`id`]: m-bit identifiers, SHA-1 hashing, arcs of the circle.
//! - [`wire`]: the versioned, length-prefixed binary RPC format (pure codecs).
//! - [`routing`], [`lookup`], [`store`], [`node`], [`stats`], [`suspects`], [`time`]: the sans-IO
//!   node core.
//! - [`server`] and [`client`]: the tokio driver over TCP, and the client used by the CLI; [`pool`],
//!   [`frame`] and [`error`] beneath both (pooled connections, framing, the RPC error).
//! - [`sim`]: a discrete-event simulator that runs the same core with virtual time.
//!
//! The paper's experiments (path length, load balance, failures, churn) live in appnet-lab.

pub mod client;
pub mod config;
pub mod error;
pub mod frame;
pub mod id;
pub mod lookup;
pub mod node;
pub mod pool;
pub mod routing;
pub mod server;
pub mod sim;
pub mod stats;
pub mod store;
pub mod suspects;
pub mod time;
pub mod wire;

pub use config::ChordConfig;
pub use id::Id;
pub use node::{Node, Params};
pub use server::ChordServer;
pub use wire::NodeRef;
