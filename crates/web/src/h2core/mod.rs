//! appnet's own HTTP/2 server connection: a sans-IO core ([`conn::Conn`]: frames, HPACK, flow
//! control, stream states, limits, push, RFC 9218 priorities) that [`crate::h2serve`] drives
//! from one task per connection (`h2_engine = "own"`; the `h2` crate stays the default until
//! this core is faster), and the RFC 9218 scheduler ([`priority`]).

pub mod conn;
pub mod frame;
pub mod hpack;
pub mod hpack_enc;
mod idmap;
pub mod priority;

#[cfg(test)]
mod tests;

pub use conn::{Conn, Event, Limits};
pub use priority::Priority;
