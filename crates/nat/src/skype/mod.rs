//! The Skype-style supernode overlay's building blocks: the SN protocol codec, the
//! SCRAM-style authentication of directory entries, the consistent-hashing placement of entries
//! on two SNs, and the SN's sans-IO directory core.

pub mod auth;
pub mod directory;
pub mod placement;
pub mod wire;
