//! STUN messages (RFC 8489) and the TURN attributes and ChannelData framing (RFC 8656).

pub mod attr;
pub mod crc;
pub mod message;

pub use attr::Attr;
pub use message::{Class, Decoded, Message, WireError, decode_datagram, long_term_key};
