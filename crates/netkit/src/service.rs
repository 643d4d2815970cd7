//! The contract every appnet service follows: an inherent `bind(config).await?` that returns a
//! bound service (port 0 allowed), then `run(shutdown)`. Tests and the lab start any number of
//! services in one process through this trait.

use crate::Shutdown;
use std::future::Future;
use std::net::SocketAddr;

/// The error type services return from `run`: whatever stopped them, for the log.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A bound, not yet running service.
pub trait Service: Send + 'static {
    /// The main address the service listens on (with the real port when bound to port 0).
    fn local_addr(&self) -> SocketAddr;

    /// Serves until `shutdown` is triggered, then finishes in-flight work and returns.
    fn run(self, shutdown: Shutdown) -> impl Future<Output = Result<(), BoxError>> + Send;
}
