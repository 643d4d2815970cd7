//! The file-serving core, reusable by the server and (later) the caching proxy: pure functions
//! for path safety, content types, validators and preconditions, ranges, encodings, listings and
//! per-path policy, plus [`store`], which reads files (with a small in-memory cache).

pub mod conditional;
pub mod encoding;
pub mod listing;
pub mod mime;
pub mod path;
pub mod policy;
pub mod range;
pub mod store;
