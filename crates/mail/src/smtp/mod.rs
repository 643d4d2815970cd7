//! SMTP (RFC 5321) and submission (RFC 6409): the wire, the sans-IO server session, AUTH, the
//! tokio server driver and the client the queue and `mail send` use.

pub mod auth;
pub mod client;
pub mod fuzz;
pub mod opportunistic;
pub mod server;
pub mod session;
pub mod wire;
