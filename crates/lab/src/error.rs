//! Why the lab could not start. Its own module because every part that starts services (the
//! run module, the CDN) returns it, and none should have to import another to name it.

use std::net::SocketAddr;
use std::path::PathBuf;
use thiserror::Error;

/// Why the lab could not start.
#[derive(Debug, Error)]
pub enum LabError {
    #[error("the lab topology is invalid: {0}")]
    Topology(String),
    #[error("cannot write the lab's files in {dir}: {source}")]
    Files { dir: PathBuf, source: std::io::Error },
    #[error("cannot start {name} on {addr}: {reason} (is another lab running? try --dns-port)")]
    Start { name: String, addr: SocketAddr, reason: String },
    /// The anycast network (`--netns`) could not be built.
    #[error("anycast (--netns): {0}")]
    Netns(String),
}
