//! IMAP4rev1 (RFC 3501) over Maildir++, with LITERAL+, SASL-IR, IDLE (RFC 2177), NAMESPACE,
//! UIDPLUS (RFC 4315), MOVE (RFC 6851), UNSELECT and CHILDREN. `wire` decodes commands with
//! imap-codec and encodes strings; `mime` gives ENVELOPE, BODYSTRUCTURE and sections from
//! mail-parser; `mailboxes` maps names to Maildir++ folders; `session` runs the states;
//! `server` is the tokio driver (fragments and literals, STARTTLS, AUTHENTICATE, IDLE).

pub mod mailboxes;
pub mod mime;
pub mod server;
pub mod session;
pub mod wire;

pub use server::serve_imap;
