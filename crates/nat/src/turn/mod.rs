//! The TURN server (RFC 8656): a sans-IO core and its tokio driver.

pub mod core;
pub mod peers;
pub mod server;

pub use core::{Action, Core, CoreConfig, Origin};
