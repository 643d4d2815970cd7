//! POP3 (RFC 1939 with RFC 2449 CAPA, RFC 2595 STLS and RFC 5034 AUTH PLAIN) over the users'
//! Maildir INBOX: `wire` parses commands and dot-stuffs messages, `session` is the sans-IO
//! state machine, `maildrop` the locked Maildir view, `server` the tokio driver.

pub mod maildrop;
pub mod server;
pub mod session;
pub mod wire;

pub use server::serve_pop3;
