//! The crate's error type: what went wrong with users, mailboxes or configuration, in words
//! that say what to do.

use std::path::PathBuf;

/// Errors of the mail crate's library functions (the CLI wraps them with anyhow).
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// An address is not `user@domain` with characters safe as Maildir path components.
    #[error(
        "invalid mail address {0:?}: use user@domain (letters, digits and .-_+ in the user; a DNS name as domain)"
    )]
    BadAddress(String),
    /// A password that cannot be stored.
    #[error("invalid password: {0}")]
    BadPassword(&'static str),
    /// A line of the users file that cannot be parsed.
    #[error("{path} line {line}: {why}")]
    BadUsersLine {
        /// The users file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        why: String,
    },
    /// A password hash could not be computed.
    #[error("password hashing failed: {0}")]
    Hash(String),
}

impl MailError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> MailError {
        MailError::Io { path: path.into(), source }
    }
}
