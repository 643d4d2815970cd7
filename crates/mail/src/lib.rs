//! Mail: SMTP with MX delivery and a queue, submission, POP3 and IMAP over Maildir.

pub mod access;
pub mod config;
pub mod error;
pub mod fetch;
pub mod headers;
pub mod imap;
pub mod local;
pub mod maildir;
pub mod pop3;
pub mod queue;
pub mod send;
pub mod server;
pub mod smtp;
pub mod users;

pub use config::MailConfig;
pub use error::MailError;
pub use server::MailServer;
pub use users::{Users, add_user};
