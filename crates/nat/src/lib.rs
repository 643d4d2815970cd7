//! STUN (RFC 8489) and TURN (RFC 8656): the wire codec, a sans-IO TURN server core that also
//! answers STUN Binding requests, its tokio driver, a STUN client and NAT behaviour discovery
//! (RFC 5780).

pub mod client;
pub mod config;
pub mod discovery;
pub mod skype;
pub mod stun;
pub mod turn;

pub use config::TurnConfig;
pub use turn::server::TurnServer;
