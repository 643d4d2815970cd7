//! Napster: one directory server that knows which peer shares which file (step 1, peers
//! inform it; step 2, a search asks it; step 3, the file comes from the peer over HTTP).

pub mod client;
pub mod config;
pub mod directory;
pub mod server;
pub mod share;
pub mod wire;

pub use config::{DirectoryConfig, ShareConfig};
pub use server::DirectoryServer;
pub use share::Sharer;
