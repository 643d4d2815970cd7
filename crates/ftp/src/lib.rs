//! FTP (RFC 959): a server with separate control and data connections, and a client that traces both.

pub mod client;
pub mod config;
pub mod fs;
mod passive;
pub mod server;
pub mod session;
pub mod throttle;
mod transfer;
pub mod users;
pub mod wire;

pub use config::FtpConfig;
pub use server::FtpServer;
