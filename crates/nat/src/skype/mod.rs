//! The Skype-style supernode overlay's building blocks: the SN protocol codec, the
//! SCRAM-style authentication of directory entries, the consistent-hashing placement of entries
//! on two SNs, the SN's sans-IO directory core and its UDP driver, and the peer's side
//! (register, lookup).

pub mod auth;
pub mod candidacy;
pub mod checks;
pub mod client;
pub mod directory;
pub mod media;
pub mod node;
pub mod overlay;
pub mod peer;
pub mod placement;
pub mod promotion;
pub mod sealing;
pub mod supernode;
pub mod wire;

pub use supernode::Supernode;
