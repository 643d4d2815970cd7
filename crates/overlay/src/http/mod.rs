//! HTTP file transfers between servents, shared by Napster peers and Gnutella nodes: the
//! upload side (with the KaZaA tricks: upload slots, a queue, priority for uploaders) and the
//! download side (one or several sources by byte ranges, verified by SHA-1).

pub mod config;
pub mod download;
pub mod request;
pub mod slots;
pub mod upload;

pub use config::UploadConfig;
pub use download::{DownloadError, Source, download};
pub use upload::{UploadCtx, UploadServer};
