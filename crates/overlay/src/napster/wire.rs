//! The directory protocol's lines (our own design, documented in docs/overlay.md): one command
//! or reply per line, words separated by one space, the file name always last so it may hold
//! spaces. Pure codec: no I/O, fuzzed (`overlay_napster`).
//!
//! ```text
//! peer → directory                      directory → peer
//! HELLO <ip:port>                       OK <text>
//! ADD <size> urn:sha1:<base32> <name>   ERR <code> <text>
//! SEARCH <keywords>                     HIT <ip:port> <size> urn:sha1:<base32> <name>
//! PING                                  END <hits>
//! QUIT                                  PONG
//! ```

use std::fmt;
use std::net::SocketAddr;

/// Longest name accepted in an `ADD` (bytes); longer names are refused with `ERR 400`.
pub const MAX_NAME: usize = 255;

/// A SHA-1 digest, the content's identity in the directory and on the HTTP side.
pub type Sha1 = [u8; 20];

/// What a peer sends the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Become a sharing peer whose files are fetched from `addr` (its HTTP `--listen`
    /// address; an unspecified IP means "the address I connect from").
    Hello(SocketAddr),
    /// Announce one shared file.
    Add { size: u64, sha1: Sha1, name: String },
    /// Find entries whose names hold every keyword.
    Search(String),
    /// Keep-alive; answered with `PONG`.
    Ping,
    /// Close the connection (the peer's entries go with it).
    Quit,
}

/// What the directory answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The command was done.
    Ok(String),
    /// The command was refused: an HTTP-like code (400 syntax, 403 order, 413 cap, 503 busy).
    Err(u16, String),
    /// One search result.
    Hit(Hit),
    /// The end of a search's results.
    End(usize),
    /// Answer to `PING`.
    Pong,
}

/// One directory entry as a search returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Where the file is fetched over HTTP.
    pub addr: SocketAddr,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-1.
    pub sha1: Sha1,
    /// Its file name.
    pub name: String,
}

/// Why a line is not a valid command or reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Not UTF-8, an unknown verb, or missing or malformed fields.
    #[error("malformed line: {0}")]
    Malformed(&'static str),
}

fn bad(why: &'static str) -> WireError {
    WireError::Malformed(why)
}

/// `urn:sha1:<base32>`, the form both the directory and Gnutella use for a file's identity.
pub fn urn(sha1: &Sha1) -> String {
    crate::gnutella::base32::sha1_urn(sha1)
}

/// Parses `urn:sha1:<32 base32 chars>` (case-insensitive).
pub fn parse_urn(text: &str) -> Option<Sha1> {
    crate::gnutella::base32::parse_sha1_urn(text)
}

/// A name fit for the directory: non-empty, at most [`MAX_NAME`] bytes, no control characters.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && !name.chars().any(char::is_control)
}

impl Command {
    /// Parses one line (terminator already stripped).
    pub fn parse(line: &[u8]) -> Result<Command, WireError> {
        let line = std::str::from_utf8(line).map_err(|_| bad("not UTF-8"))?;
        let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
        match verb.to_ascii_uppercase().as_str() {
            "HELLO" => rest.trim().parse().map(Command::Hello).map_err(|_| bad("HELLO needs ip:port")),
            "ADD" => {
                let mut it = rest.splitn(3, ' ');
                let size = it.next().and_then(|s| s.parse().ok()).ok_or(bad("ADD needs a size"))?;
                let sha1 = it.next().and_then(parse_urn).ok_or(bad("ADD needs urn:sha1:<base32>"))?;
                let name = it.next().unwrap_or("");
                if !valid_name(name) {
                    return Err(bad("ADD needs a name (1-255 bytes, no control characters)"));
                }
                Ok(Command::Add { size, sha1, name: name.to_string() })
            }
            "SEARCH" => {
                let words = rest.trim();
                if words.is_empty() || words.chars().any(char::is_control) {
                    return Err(bad("SEARCH needs keywords"));
                }
                Ok(Command::Search(words.to_string()))
            }
            "PING" if rest.is_empty() => Ok(Command::Ping),
            "QUIT" if rest.is_empty() => Ok(Command::Quit),
            _ => Err(bad("unknown command")),
        }
    }
}

impl fmt::Display for Command {
    /// The line to send, without its terminator.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Hello(addr) => write!(f, "HELLO {addr}"),
            Command::Add { size, sha1, name } => write!(f, "ADD {size} {} {name}", urn(sha1)),
            Command::Search(words) => write!(f, "SEARCH {words}"),
            Command::Ping => f.write_str("PING"),
            Command::Quit => f.write_str("QUIT"),
        }
    }
}

impl Reply {
    /// Parses one line (terminator already stripped).
    pub fn parse(line: &[u8]) -> Result<Reply, WireError> {
        let line = std::str::from_utf8(line).map_err(|_| bad("not UTF-8"))?;
        let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
        match verb {
            "OK" => Ok(Reply::Ok(rest.to_string())),
            "ERR" => {
                let (code, text) = rest.split_once(' ').unwrap_or((rest, ""));
                let code = code.parse().map_err(|_| bad("ERR needs a code"))?;
                Ok(Reply::Err(code, text.to_string()))
            }
            "HIT" => {
                let mut it = rest.splitn(4, ' ');
                let addr = it.next().and_then(|s| s.parse().ok()).ok_or(bad("HIT needs ip:port"))?;
                let size = it.next().and_then(|s| s.parse().ok()).ok_or(bad("HIT needs a size"))?;
                let sha1 = it.next().and_then(parse_urn).ok_or(bad("HIT needs urn:sha1"))?;
                let name = it.next().unwrap_or("");
                if !valid_name(name) {
                    return Err(bad("HIT needs a name"));
                }
                Ok(Reply::Hit(Hit { addr, size, sha1, name: name.to_string() }))
            }
            "END" => rest.parse().map(Reply::End).map_err(|_| bad("END needs a count")),
            "PONG" if rest.is_empty() => Ok(Reply::Pong),
            _ => Err(bad("unknown reply")),
        }
    }
}

impl fmt::Display for Reply {
    /// The line to send, without its terminator.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Ok(text) => write!(f, "OK {text}"),
            Reply::Err(code, text) => write!(f, "ERR {code} {text}"),
            Reply::Hit(h) => write!(f, "HIT {} {} {} {}", h.addr, h.size, urn(&h.sha1), h.name),
            Reply::End(n) => write!(f, "END {n}"),
            Reply::Pong => f.write_str("PONG"),
        }
    }
}

/// Fuzz entry point: parses `data` as a command and as a reply; whatever parses must print
/// and parse back to the same value.
pub fn fuzz_line(data: &[u8]) {
    if let Ok(c) = Command::parse(data) {
        assert_eq!(Command::parse(c.to_string().as_bytes()).as_ref(), Ok(&c));
    }
    if let Ok(r) = Reply::parse(data) {
        assert_eq!(Reply::parse(r.to_string().as_bytes()).as_ref(), Ok(&r));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: Sha1 = [7; 20];

    #[test]
    fn commands_round_trip() {
        for c in [
            Command::Hello("127.0.0.1:6699".parse().unwrap()),
            Command::Add { size: 12345, sha1: SHA, name: "Hey Jude.mp3".into() },
            Command::Search("hey jude".into()),
            Command::Ping,
            Command::Quit,
        ] {
            assert_eq!(Command::parse(c.to_string().as_bytes()), Ok(c));
        }
    }

    #[test]
    fn replies_round_trip() {
        let hit = Hit { addr: "[::1]:80".parse().unwrap(), size: 0, sha1: SHA, name: "a b  c".into() };
        for r in [
            Reply::Ok("hi".into()),
            Reply::Err(413, "too many".into()),
            Reply::Hit(hit),
            Reply::End(3),
            Reply::Pong,
        ] {
            assert_eq!(Reply::parse(r.to_string().as_bytes()), Ok(r));
        }
    }

    #[test]
    fn junk_is_refused_without_panicking() {
        for junk in [
            &b""[..],
            b"ADD",
            b"ADD 12 urn:sha1:XYZ name",
            b"ADD -1 urn:sha1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA x",
            b"ADD 1 urn:sha1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA ",
            b"HELLO nowhere",
            b"SEARCH ",
            b"SEARCH a\x01b",
            b"\xff\xfe",
            b"PING extra",
            b"HIT 1.2.3.4:5 x urn:sha1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA n",
            b"END many",
            "ADD 1 urn:sha1:\u{e9}AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA x".as_bytes(),
        ] {
            assert!(Command::parse(junk).is_err() || Reply::parse(junk).is_err(), "{junk:?}");
            fuzz_line(junk);
        }
        let long = format!("ADD 1 {} {}", urn(&SHA), "x".repeat(MAX_NAME + 1));
        assert!(Command::parse(long.as_bytes()).is_err());
    }

    #[test]
    fn verbs_are_case_insensitive_for_commands() {
        assert_eq!(Command::parse(b"search hey"), Ok(Command::Search("hey".into())));
        assert_eq!(Command::parse(b"ping"), Ok(Command::Ping));
    }
}
