//! SIP (RFC 3261): message codec, transaction state machines, registrar with Digest
//! authentication, and a stateful proxy with forwarding, presence and admission control.

pub mod config;
pub mod digest;
pub mod locate;
pub mod proxy;
pub mod registrar;
pub mod rtp;
pub mod server;
pub mod transaction;
pub mod ua;
pub mod users;
pub mod wire;
pub use config::SipConfig;
pub use server::SipServer;
