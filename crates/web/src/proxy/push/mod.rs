//! CDN push: the content provider pre-positions objects on the replicas before anyone asks
//! ("expectation of high access rate"). A signed `POST /.appnet/push` lists URLs; the replica
//! fetches each from its origin and stores it exactly as a client's request for that URL
//! would (same cache key, same RFC 9111 storability), so the first real request is a HIT.
//!
//! - [`auth`]: HMAC-SHA256 signature, timestamp window and replay memory (sans-IO).
//! - [`wire`]: the request body (URLs) and the reply lines (pure, fuzzed).
//! - `serve`: the replica's side, on the proxy's listener.
//! - [`client`]: `appnet web push`, signing one push and sending it to each replica.

pub mod auth;
pub mod client;
mod serve;
pub mod wire;

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// The path of the push endpoint on a replica's listener.
pub const PUSH_PATH: &str = "/.appnet/push";

/// A replica's push state: the verifier and the bound on concurrent push fetches.
pub struct PushState {
    pub(crate) verifier: Mutex<auth::Verifier>,
    pub(crate) fetches: tokio::sync::Semaphore,
}

impl PushState {
    /// Reads the secret file and sets up the verifier.
    pub fn new(
        secret_file: &Path,
        window: Duration,
        max_seen: usize,
        concurrency: usize,
    ) -> Result<PushState, String> {
        let secret = read_secret(secret_file)?;
        Ok(PushState {
            verifier: Mutex::new(auth::Verifier::new(secret, window, max_seen)),
            fetches: tokio::sync::Semaphore::new(concurrency.max(1)),
        })
    }
}

/// Reads a push secret file (at least [`auth::MIN_SECRET`] bytes once trimmed).
pub fn read_secret(path: &Path) -> Result<auth::Secret, String> {
    let raw = std::fs::read(path).map_err(|e| format!("push secret file {}: {e}", path.display()))?;
    auth::Secret::new(&raw).ok_or_else(|| {
        format!(
            "push secret file {}: the secret must be at least {} bytes (e.g. head -c 32 /dev/urandom | base64 > FILE)",
            path.display(),
            auth::MIN_SECRET
        )
    })
}
