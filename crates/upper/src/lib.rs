//! The classic socket-programming example: a server that reads a line, upper-cases it and sends
//! it back, over TCP (one line per request, many per connection) or UDP (one datagram each).
//!
//! - [`transform`]: the pure upper-casing rule (UTF-8 aware, byte-safe for anything else).
//! - [`config`]: serde config shared by the CLI, TOML files and the lab.
//! - [`server`]: the tokio server (TCP and UDP), with limits and graceful shutdown.
//! - [`client`]: the matching client.

pub mod client;
pub mod config;
pub mod server;
pub mod transform;

pub use config::UpperConfig;
pub use server::UpperServer;
