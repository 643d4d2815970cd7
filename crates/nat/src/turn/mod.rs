//! TURN (RFC 8656): the server's sans-IO core and its tokio driver, and a sans-IO client.

pub mod client;
pub mod core;
pub mod peers;
pub mod server;

pub use core::{Action, Core, CoreConfig, Origin};
