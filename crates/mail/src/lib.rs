//! Mail: SMTP with MX delivery and a queue, submission, POP3 and IMAP over Maildir.

pub mod error;
pub mod maildir;
pub mod users;

pub use error::MailError;
pub use users::{Users, add_user};
