//! The outbound queue: a crash-safe spool under `DIR/queue/`, the retry schedule, MX lookup,
//! delivery with the SMTP client, and RFC 3464 bounces.

pub mod dsn;
pub mod mx;
pub mod runner;
pub mod schedule;
pub mod spool;

pub use runner::{Queue, run};
pub use spool::{QueuedEnvelope, Spool};
