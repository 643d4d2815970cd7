//! Bytes ⇄ typed FTP messages, pure and without I/O: command lines (RFC 959, 2428, 3659, 2389,
//! 4217), replies, the data-connection address forms, and the listing formats clients parse.

pub mod addr;
pub mod command;
pub mod listing;
pub mod reply;
pub mod telnet;

pub use addr::{AddrError, format_epsv, format_pasv, parse_eprt, parse_port};
pub use command::{Command, ParseError, parse_command};
pub use reply::Reply;
pub use telnet::strip_telnet;

/// One control-connection line as the server reads it: Telnet sequences removed, then parsed.
/// The fuzz target `ftp_command` drives this.
pub fn parse_line(raw: &[u8]) -> Result<Command, ParseError> {
    parse_command(&strip_telnet(raw))
}
