//! What `--trace` shows: the control dialogue line by line and each data connection opening
//! and closing with both ends, so a learner sees one long-lived control connection and one new
//! data connection per transfer (FTP's "out-of-band" control).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// Who opened a data connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataMode {
    /// The client connected to the port the server named (PASV/EPSV).
    Passive,
    /// The server connected to the port the client named (PORT/EPRT).
    Active,
}

impl fmt::Display for DataMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataMode::Passive => "passive: the client connected",
            DataMode::Active => "active: the server connected",
        })
    }
}

/// One thing the client did or saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceEvent {
    /// The control connection is up (client end, server end).
    ControlOpen { local: SocketAddr, remote: SocketAddr },
    /// A command line sent on the control connection (a password shown as `****`).
    Sent(String),
    /// A reply line received on the control connection.
    Received(String),
    /// AUTH TLS succeeded: the control connection is encrypted from here on.
    TlsStarted { local: SocketAddr, remote: SocketAddr, version: String },
    /// A data connection opened (client end, server end).
    DataOpen { local: SocketAddr, remote: SocketAddr, mode: DataMode },
    /// The data connection's TLS handshake completed (PROT P).
    DataTls { local: SocketAddr, remote: SocketAddr },
    /// A data connection closed after carrying `bytes`.
    DataClose { local: SocketAddr, remote: SocketAddr, bytes: u64 },
    /// An active-mode connection from an address other than the server's was turned away.
    DataRefused { from: SocketAddr },
    /// The control connection closed.
    ControlClose { local: SocketAddr, remote: SocketAddr },
}

impl fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceEvent::ControlOpen { local, remote } => {
                write!(f, "== control connection open: {local} → {remote}")
            }
            TraceEvent::Sent(line) => write!(f, "C: {line}"),
            TraceEvent::Received(line) => write!(f, "S: {line}"),
            TraceEvent::DataOpen { local, remote, mode } => {
                write!(f, "== data connection open: {local} ⇄ {remote} ({mode})")
            }
            TraceEvent::TlsStarted { local, remote, version } => {
                write!(
                    f,
                    "== control connection {local} → {remote} is TLS now ({version}): commands and replies encrypted"
                )
            }
            TraceEvent::DataTls { local, remote } => {
                write!(f, "== data connection {local} ⇄ {remote} is TLS now (PROT P)")
            }
            TraceEvent::DataClose { local, remote, bytes } => {
                write!(f, "== data connection closed: {local} ⇄ {remote} ({bytes} bytes)")
            }
            TraceEvent::DataRefused { from } => {
                write!(f, "== data connection from {from} refused: not the server's address")
            }
            TraceEvent::ControlClose { local, remote } => {
                write!(f, "== control connection closed: {local} → {remote}")
            }
        }
    }
}

/// Where trace events go (stderr for the CLI, a list for the lab's tour).
pub type Tracer = Arc<dyn Fn(&TraceEvent) + Send + Sync>;

/// A tracer that prints each event on stderr.
pub fn stderr_tracer() -> Tracer {
    Arc::new(|e| eprintln!("{e}"))
}
