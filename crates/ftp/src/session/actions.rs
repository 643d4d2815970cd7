//! What the session core says and hears: its fixed policy, the actions it asks the driver to
//! perform (replies, password checks, passive listeners, transfers, file-system operations,
//! TLS), and the outcomes the driver hands back.

use super::path::VPath;
use crate::wire::listing::Entry;
use crate::wire::reply::Reply;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What the session allows, fixed for the server's life.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Anonymous logins (`anonymous`/`ftp`) are accepted.
    pub anonymous: bool,
    /// The anonymous users' root.
    pub anonymous_root: PathBuf,
    /// Logged-in users may change files (STOR, DELE, MKD, ...).
    pub write: bool,
    /// Failed logins after which the connection is closed.
    pub max_login_failures: u32,
    /// Pause before answering a failed login.
    pub login_failure_delay: Duration,
    /// AUTH TLS is offered.
    pub tls: bool,
    /// Login only after AUTH TLS (when `tls`).
    pub require_tls: bool,
}

/// A user who passed PASS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedIn {
    /// The login name (`anonymous` for anonymous users).
    pub name: String,
    /// The directory that is `/` for this user.
    pub home: PathBuf,
    /// Whether this user may change files.
    pub write: bool,
}

/// Where the next data connection comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataTarget {
    /// The client connects to the passive listener the driver opened.
    Passive,
    /// The server connects to the client at this address (already checked: the client's own).
    Active(SocketAddr),
}

/// What a directory transfer sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    /// LIST: `ls -l` lines.
    Long,
    /// NLST: names only.
    Names,
    /// MLSD: RFC 3659 facts.
    Machine,
}

/// How STOR, APPE and STOU write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    /// Write from byte `offset` (0 = a new file; REST n + STOR resumes at n).
    At(u64),
    /// APPE: after the existing (or partial) content.
    Append,
    /// STOU: under a new unique name (the driver picks and reports it).
    Unique,
}

/// A transfer over a data connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transfer {
    /// Send a file from an offset.
    Retr {
        /// The file.
        path: VPath,
        /// REST offset.
        offset: u64,
    },
    /// Receive a file.
    Store {
        /// The file's final name.
        path: VPath,
        /// Where writing starts.
        mode: StoreMode,
    },
    /// Send a directory listing (or, for LIST/NLST on a file, that file's line).
    List {
        /// The directory.
        path: VPath,
        /// Which format.
        format: ListFormat,
    },
}

/// A file-system question or change; the driver performs it and hands the outcome to
/// [`Session::fs_done`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsOp {
    /// CWD: is this a directory we may enter?
    Cwd(VPath),
    /// MKD.
    Mkd(VPath),
    /// RMD.
    Rmd(VPath),
    /// DELE.
    Dele(VPath),
    /// RNFR: does the source exist?
    RenameFrom(VPath),
    /// RNTO.
    Rename(VPath, VPath),
    /// SIZE.
    Size(VPath),
    /// MDTM.
    Mdtm(VPath),
    /// MLST: the facts of one entry.
    Mlst(VPath),
    /// STAT path: a listing on the control connection.
    StatList(VPath),
}

/// What a file-system operation produced.
#[derive(Debug)]
pub enum FsOutcome {
    /// Done, nothing to report.
    Done,
    /// The entry's facts.
    Entry(Entry),
    /// A directory's entries (STAT path).
    Entries(Vec<Entry>),
}

/// Why a file-system operation failed, as the session words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsError {
    /// No such file or directory.
    NotFound,
    /// Exists (MKD of an existing name).
    Exists,
    /// Not a directory / is a directory / a symbolic link: refused.
    WrongKind(&'static str),
    /// RMD of a directory with entries.
    NotEmpty,
    /// Permission denied by the operating system.
    Denied,
    /// Anything else (disk full, I/O error), with its text.
    Other(String),
}

impl FsError {
    /// The 550 text.
    pub fn text(&self) -> String {
        match self {
            FsError::NotFound => "No such file or directory.".into(),
            FsError::Exists => "File exists.".into(),
            FsError::WrongKind(w) => format!("{w}."),
            FsError::NotEmpty => "Directory not empty.".into(),
            FsError::Denied => "Permission denied.".into(),
            FsError::Other(t) => t.clone(),
        }
    }
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this reply.
    Reply(Reply),
    /// Check `password` for `user` against the users file; then call [`Session::login_result`].
    Verify {
        /// The login name.
        user: String,
        /// The password sent.
        password: String,
    },
    /// Wait this long before the next action (after a failed login).
    Delay(Duration),
    /// Open a passive listener (dropping any previous one) and reply 227 (`extended`: 229).
    OpenPassive {
        /// EPSV rather than PASV.
        extended: bool,
    },
    /// Drop any passive listener (PORT replaced it).
    DropPassive,
    /// Run a file-system operation; then call [`Session::fs_done`].
    Fs(FsOp),
    /// Open the data connection, reply 150, run the transfer, reply 226 (or 4xx/5xx).
    Transfer {
        /// What to send or receive.
        transfer: Transfer,
        /// Where the data connection comes from.
        target: DataTarget,
        /// TYPE A: convert line endings.
        ascii: bool,
    },
    /// Reply 234 was queued; now run the TLS handshake on the control connection.
    StartTls,
    /// Close the control connection after the queued replies.
    Close,
    /// The user logged out or in: the driver opens (or forgets) the file tree at this home.
    SetRoot(Option<LoggedIn>),
}
