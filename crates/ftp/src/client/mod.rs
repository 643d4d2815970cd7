//! The FTP client (`appnet ftp ls|get|put`): one control connection for commands and replies,
//! a new data connection per listing or file, passive (PASV/EPSV) or active (PORT/EPRT), and
//! a trace that shows both kinds of connection.
//!
//! - [`reply`]: server replies (multi-line, 227/229 addresses) and PORT/EPRT arguments; pure.
//! - [`url`]: URLs of the form `ftp://[user@]host[:port]/path`.
//! - [`trace`]: the events `--trace` prints.
//! - [`conn`]: the tokio driver ([`FtpClient`]).
//! - [`ops`]: log in from a URL, crash-safe and resumable downloads, uploads.

pub mod conn;
pub mod ops;
pub mod reply;
pub mod trace;
pub mod url;

pub use conn::{ClientConfig, ClientError, FtpClient, ListKind};
pub use reply::{Reply, ReplyParser};
pub use trace::{DataMode, TraceEvent, Tracer};
pub use url::FtpUrl;
