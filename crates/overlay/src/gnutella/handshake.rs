//! The Gnutella 0.6 connection handshake (pure codec and policy, fuzzed as
//! `overlay_handshake`): three header blocks, each ended by an empty line.
//!
//! ```text
//! initiator: GNUTELLA CONNECT/0.6        headers: User-Agent, X-Ultrapeer, X-Query-Routing,
//! acceptor:  GNUTELLA/0.6 200 OK                  Pong-Caching, Listen-IP
//!        or  GNUTELLA/0.6 503 Full       (+ X-Try-Ultrapeers: addresses to try instead)
//! initiator: GNUTELLA/0.6 200 OK
//! ```
//! Each block is bounded ([`MAX_BLOCK`] bytes, [`MAX_HEADERS`] lines); anything else is refused.

use super::router::Role;
use std::fmt::Write as _;
use std::net::SocketAddr;

/// Largest header block accepted, in bytes.
pub const MAX_BLOCK: usize = 4096;
/// Most header lines in one block.
pub const MAX_HEADERS: usize = 32;
/// What the handshake's first line starts with: how the shared port tells Gnutella from HTTP.
pub const CONNECT_PREFIX: &[u8] = b"GNUTELLA CONNECT/";

/// The first line of a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    /// `GNUTELLA CONNECT/<version>`.
    Connect(String),
    /// `GNUTELLA/<version> <code> <reason>`.
    Response { code: u16, reason: String },
}

/// One header block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The first line.
    pub start: StartLine,
    /// Header lines in order, names as sent.
    pub headers: Vec<(String, String)>,
}

/// Why a block was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Over [`MAX_BLOCK`] bytes or [`MAX_HEADERS`] lines.
    #[error("handshake headers too large")]
    TooLarge,
    /// Not a Gnutella handshake line, or a broken header line.
    #[error("malformed handshake: {0}")]
    Malformed(&'static str),
}

/// What one side says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// `User-Agent`.
    pub user_agent: String,
    /// `X-Ultrapeer: True`: it accepts leaves and floods among ultrapeers.
    pub ultrapeer: bool,
    /// `X-Query-Routing: 0.1`: it speaks QRP.
    pub query_routing: bool,
    /// `Pong-Caching: 0.1`: it answers Pings from a pong cache.
    pub pong_caching: bool,
    /// `Listen-IP`: where it accepts connections (its `--listen`, not the TCP source).
    pub listen: Option<SocketAddr>,
}

impl Block {
    /// The value of header `name` (case-insensitive), the first if repeated.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The response code, or `None` for a CONNECT line.
    pub fn code(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Connect(_) => None,
        }
    }

    /// The capabilities its headers announce.
    pub fn capabilities(&self) -> Capabilities {
        let yes = |name| self.header(name).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let listen =
            self.header("Listen-IP").or(self.header("X-My-Address")).and_then(|v| v.trim().parse().ok());
        Capabilities {
            user_agent: self.header("User-Agent").unwrap_or("").to_string(),
            ultrapeer: yes("X-Ultrapeer"),
            query_routing: self.header("X-Query-Routing").is_some(),
            pong_caching: self.header("Pong-Caching").is_some(),
            listen,
        }
    }

    /// The bytes on the wire, ending with the empty line.
    pub fn encode(&self) -> Vec<u8> {
        let mut s = String::new();
        match &self.start {
            StartLine::Connect(v) => {
                let _ = write!(s, "GNUTELLA CONNECT/{v}\r\n");
            }
            StartLine::Response { code, reason } => {
                let _ = write!(s, "GNUTELLA/0.6 {code} {reason}\r\n");
            }
        }
        for (n, v) in &self.headers {
            let _ = write!(s, "{n}: {v}\r\n");
        }
        s.push_str("\r\n");
        s.into_bytes()
    }
}

fn cap_headers(c: &Capabilities) -> Vec<(String, String)> {
    let mut h = vec![
        ("User-Agent".to_string(), c.user_agent.clone()),
        ("X-Ultrapeer".to_string(), if c.ultrapeer { "True" } else { "False" }.to_string()),
    ];
    if c.query_routing {
        h.push(("X-Query-Routing".into(), "0.1".into()));
    }
    if c.pong_caching {
        h.push(("Pong-Caching".into(), "0.1".into()));
    }
    if let Some(a) = c.listen {
        h.push(("Listen-IP".into(), a.to_string()));
    }
    h
}

/// The initiator's first block.
pub fn connect(c: &Capabilities) -> Block {
    Block { start: StartLine::Connect("0.6".into()), headers: cap_headers(c) }
}

/// `200 OK` with our capabilities (the acceptor's answer and the initiator's final block).
pub fn ok(c: &Capabilities) -> Block {
    Block { start: StartLine::Response { code: 200, reason: "OK".into() }, headers: cap_headers(c) }
}

/// The initiator's short final `200 OK`.
pub fn ok_final() -> Block {
    Block { start: StartLine::Response { code: 200, reason: "OK".into() }, headers: Vec::new() }
}

/// `503` with a reason and, if known, other addresses to try (`X-Try-Ultrapeers`).
pub fn refuse(c: &Capabilities, reason: &str, try_instead: &[SocketAddr]) -> Block {
    let mut headers = cap_headers(c);
    if !try_instead.is_empty() {
        let list: Vec<String> = try_instead.iter().map(ToString::to_string).collect();
        headers.push(("X-Try-Ultrapeers".into(), list.join(",")));
    }
    Block { start: StartLine::Response { code: 503, reason: reason.into() }, headers }
}

/// Parses one block from the start of `buf`: `Ok(None)` while it is incomplete (and still
/// under the limits), else the block and the bytes it used.
pub fn parse_block(buf: &[u8]) -> Result<Option<(Block, usize)>, HandshakeError> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let Some(end) = end else {
        if buf.len() >= MAX_BLOCK {
            return Err(HandshakeError::TooLarge);
        }
        return Ok(None);
    };
    if end > MAX_BLOCK {
        return Err(HandshakeError::TooLarge);
    }
    let text = std::str::from_utf8(&buf[..end - 4]).map_err(|_| HandshakeError::Malformed("not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("");
    let start = if let Some(v) = first.strip_prefix("GNUTELLA CONNECT/") {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(HandshakeError::Malformed("bad version"));
        }
        StartLine::Connect(v.to_string())
    } else if let Some(rest) = first.strip_prefix("GNUTELLA/") {
        let mut it = rest.splitn(3, ' ');
        let _version = it.next();
        let code = it.next().and_then(|c| c.parse().ok()).ok_or(HandshakeError::Malformed("bad status"))?;
        StartLine::Response { code, reason: it.next().unwrap_or("").to_string() }
    } else {
        return Err(HandshakeError::Malformed("not a Gnutella handshake"));
    };
    let mut headers = Vec::new();
    for line in lines {
        if headers.len() >= MAX_HEADERS {
            return Err(HandshakeError::TooLarge);
        }
        let (n, v) = line.split_once(':').ok_or(HandshakeError::Malformed("header without ':'"))?;
        let n = n.trim();
        if n.is_empty() || n.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
            return Err(HandshakeError::Malformed("bad header name"));
        }
        if v.chars().any(char::is_control) {
            return Err(HandshakeError::Malformed("control character in a header"));
        }
        headers.push((n.to_string(), v.trim().to_string()));
    }
    Ok(Some((Block { start, headers }, end)))
}

/// The role of a new neighbour, from both sides' `X-Ultrapeer`: two plain nodes flood to
/// each other (`Peer`), two ultrapeers are fellow `Ultrapeer`s, and a plain node meeting an
/// ultrapeer becomes its leaf.
pub fn role(we_ultrapeer: bool, they_ultrapeer: bool) -> Role {
    match (we_ultrapeer, they_ultrapeer) {
        (true, false) => Role::Leaf,
        (_, true) => Role::Ultrapeer,
        (false, false) => Role::Peer,
    }
}

/// Fuzz entry point: parsing arbitrary bytes never panics, and a parsed block encodes and
/// parses back to itself.
pub fn fuzz_handshake(data: &[u8]) {
    if let Ok(Some((block, used))) = parse_block(data) {
        assert!(used <= data.len());
        let again = parse_block(&block.encode());
        assert_eq!(again.map(|b| b.map(|(b, _)| b)), Ok(Some(block)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(ultrapeer: bool) -> Capabilities {
        Capabilities {
            user_agent: "appnet/0.1".into(),
            ultrapeer,
            query_routing: true,
            pong_caching: true,
            listen: Some("127.0.11.10:6346".parse().unwrap()),
        }
    }

    #[test]
    fn the_three_blocks_of_the_specification() {
        // The example from the Gnutella 0.6 draft, section 2.2 (bytes as a servent sends them).
        let spec =
            b"GNUTELLA CONNECT/0.6\r\nUser-Agent: BearShare/1.0\r\nPong-Caching: 0.1\r\nGGEP: 0.5\r\n\r\n";
        let (b, used) = parse_block(spec).unwrap().unwrap();
        assert_eq!(used, spec.len());
        assert_eq!(b.start, StartLine::Connect("0.6".into()));
        assert_eq!(b.header("user-agent"), Some("BearShare/1.0"));
        assert!(b.capabilities().pong_caching);
        let reply = b"GNUTELLA/0.6 200 OK\r\nUser-Agent: BearShare/1.0\r\nPong-Caching: 0.1\r\n\r\n";
        assert_eq!(parse_block(reply).unwrap().unwrap().0.code(), Some(200));
        assert_eq!(parse_block(b"GNUTELLA/0.6 200 OK\r\n\r\n").unwrap().unwrap().0.code(), Some(200));
    }

    #[test]
    fn our_blocks_round_trip_and_announce_roles() {
        for b in [
            connect(&caps(true)),
            ok(&caps(false)),
            ok_final(),
            refuse(&caps(true), "Full", &["1.2.3.4:5".parse().unwrap()]),
        ] {
            let bytes = b.encode();
            assert_eq!(parse_block(&bytes), Ok(Some((b.clone(), bytes.len()))));
        }
        let c = connect(&caps(true)).capabilities();
        assert!(c.ultrapeer && c.query_routing && c.pong_caching);
        assert_eq!(c.listen, Some("127.0.11.10:6346".parse().unwrap()));
        assert_eq!(role(true, false), Role::Leaf);
        assert_eq!(role(false, true), Role::Ultrapeer);
        assert_eq!(role(false, false), Role::Peer);
        assert_eq!(role(true, true), Role::Ultrapeer);
    }

    #[test]
    fn partial_oversized_and_junk_blocks() {
        assert_eq!(parse_block(b"GNUTELLA CONNECT/0.6\r\nUser-Agent: x\r\n"), Ok(None));
        let huge = format!("GNUTELLA CONNECT/0.6\r\nX: {}\r\n\r\n", "y".repeat(MAX_BLOCK));
        assert_eq!(parse_block(huge.as_bytes()), Err(HandshakeError::TooLarge));
        assert_eq!(parse_block(&vec![b'a'; MAX_BLOCK]), Err(HandshakeError::TooLarge));
        let many = format!("GNUTELLA CONNECT/0.6\r\n{}\r\n", "A: b\r\n".repeat(MAX_HEADERS + 1));
        assert_eq!(parse_block(many.as_bytes()), Err(HandshakeError::TooLarge));
        for junk in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"GNUTELLA CONNECT/\r\n\r\n",
            b"GNUTELLA/0.6 abc OK\r\n\r\n",
            b"GNUTELLA CONNECT/0.6\r\nnocolon\r\n\r\n",
            b"GNUTELLA CONNECT/0.6\r\nA: \x01\r\n\r\n",
            b"GNUTELLA CONNECT/0.6\r\n: v\r\n\r\n",
            b"\xff\xff\r\n\r\n",
        ] {
            assert!(parse_block(junk).is_err(), "{junk:?}");
            fuzz_handshake(junk);
        }
    }
}
