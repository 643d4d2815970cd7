//! The error of an outgoing Chord RPC and of the client operations built on RPCs. It has its own
//! module because the connection pool, the client and the server's own calls all return it, and
//! none of them should have to import another to name it.

use crate::wire::{AuthError, ErrorCode, WireError};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting, writing or reading failed.
    #[error("cannot talk to {0}: {1}")]
    Io(SocketAddr, io::Error),
    /// No answer within the timeout.
    #[error("{0} did not answer within {1:?}")]
    Timeout(SocketAddr, Duration),
    /// The answer did not decode.
    #[error("{0} sent a malformed answer: {1}")]
    Wire(SocketAddr, WireError),
    /// The ring has a secret and the answer carried no valid HMAC; `.2` is the text of an
    /// unauthenticated error answer, if it was one (the node may have no secret, or another).
    #[error("{0} sent an answer that is not authenticated with the ring secret ({1}){extra}", extra = .2.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Auth(SocketAddr, AuthError, Option<String>),
    /// The node refused the request.
    #[error("{addr} refused the request ({code:?}): {message}")]
    Remote { addr: SocketAddr, code: ErrorCode, message: String },
    /// The answer was of the wrong kind.
    #[error("{0} answered with an unexpected message")]
    Unexpected(SocketAddr),
    /// The lookup ran out of live nodes.
    #[error("lookup failed: no live node could route it (hops {hops}, timeouts {timeouts})")]
    NoRoute { hops: u32, timeouts: u32 },
}
