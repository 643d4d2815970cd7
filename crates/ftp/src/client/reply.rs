//! Server replies as a client reads them (RFC 959 §4.2): a three-digit code, one line or a
//! multi-line reply (`123-first` … `123 last`), and the addresses inside 227 (PASV) and 229
//! (EPSV) replies; plus the PORT/EPRT arguments a client sends for active mode. Pure: no I/O.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Longest reply line the client holds (a hostile server cannot grow its memory).
pub const MAX_REPLY_LINE: usize = 8 * 1024;
/// Most lines in one multi-line reply (FEAT and HELP need a few dozen).
pub const MAX_REPLY_LINES: usize = 1000;

/// One complete server reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code (100..=599).
    pub code: u16,
    /// Every line as received (terminators stripped), the code included.
    pub lines: Vec<String>,
}

impl Reply {
    /// The reply class: 1 preliminary, 2 completion, 3 intermediate, 4 transient, 5 permanent.
    pub fn class(&self) -> u16 {
        self.code / 100
    }

    /// 1xx: more replies follow for this command (e.g. 150 before a transfer).
    pub fn is_preliminary(&self) -> bool {
        self.class() == 1
    }

    /// 2xx: the command completed.
    pub fn is_completion(&self) -> bool {
        self.class() == 2
    }

    /// 3xx: the server waits for another command (331 after USER, 350 after REST or RNFR).
    pub fn is_intermediate(&self) -> bool {
        self.class() == 3
    }

    /// The text after the code of the first line (where 227 and 229 carry their address).
    pub fn first_text(&self) -> &str {
        self.lines.first().map_or("", |l| l.get(4..).unwrap_or(""))
    }

    /// The reply's text lines without the codes, joined by newlines.
    pub fn text(&self) -> String {
        let code = self.code.to_string();
        self.lines
            .iter()
            .map(|l| match l.strip_prefix(code.as_str()) {
                Some(rest) => rest.strip_prefix(['-', ' ']).unwrap_or(rest),
                None => l.as_str(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines.join(" / "))
    }
}

/// Why a reply could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReplyError {
    /// The line does not start with a three-digit code (100..=599) followed by space, `-` or end.
    #[error("not an FTP reply line: {0:?}")]
    BadLine(String),
    /// A multi-line reply went on past [`MAX_REPLY_LINES`].
    #[error("a multi-line reply longer than {MAX_REPLY_LINES} lines")]
    TooManyLines,
}

/// Assembles replies from lines: feed each received line (without its CR LF) to [`push`];
/// it returns the reply once its last line has arrived.
///
/// [`push`]: ReplyParser::push
#[derive(Debug, Default)]
pub struct ReplyParser {
    pending: Option<Reply>,
}

/// Splits `123-text` / `123 text` / `123` into the code and whether the line continues.
fn code_of(line: &str) -> Option<(u16, bool)> {
    let b = line.as_bytes();
    if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) || !(b'1'..=b'5').contains(&b[0]) {
        return None;
    }
    let code = (b[0] - b'0') as u16 * 100 + (b[1] - b'0') as u16 * 10 + (b[2] - b'0') as u16;
    match b.get(3) {
        None | Some(b' ') => Some((code, false)),
        Some(b'-') => Some((code, true)),
        Some(_) => None,
    }
}

impl ReplyParser {
    /// A parser between replies.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a multi-line reply has begun and not ended.
    pub fn in_reply(&self) -> bool {
        self.pending.is_some()
    }

    /// Takes one line; returns the reply it completes, if any.
    pub fn push(&mut self, raw: &[u8]) -> Result<Option<Reply>, ReplyError> {
        let line = String::from_utf8_lossy(raw).into_owned();
        match self.pending.as_mut() {
            None => {
                let (code, more) = code_of(&line).ok_or_else(|| ReplyError::BadLine(line.clone()))?;
                let reply = Reply { code, lines: vec![line] };
                if more {
                    self.pending = Some(reply);
                    Ok(None)
                } else {
                    Ok(Some(reply))
                }
            }
            Some(reply) => {
                // The last line repeats the code followed by a space (or nothing); lines in
                // between may be anything, including other codes followed by '-'.
                let last = code_of(&line).is_some_and(|(code, more)| code == reply.code && !more);
                if reply.lines.len() >= MAX_REPLY_LINES {
                    self.pending = None;
                    return Err(ReplyError::TooManyLines);
                }
                reply.lines.push(line);
                if last { Ok(self.pending.take()) } else { Ok(None) }
            }
        }
    }
}

/// Parses one complete reply from text (lines separated by LF or CR LF): for tests and tools.
pub fn parse_reply(text: &[u8]) -> Result<Reply, ReplyError> {
    let mut parser = ReplyParser::new();
    for line in text.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() && !parser.in_reply() {
            continue;
        }
        if let Some(reply) = parser.push(line)? {
            return Ok(reply);
        }
    }
    Err(ReplyError::BadLine(String::from_utf8_lossy(text).into_owned()))
}

/// Everything the client reads out of one reply received as bytes: the reply and, for a 227
/// or 229, the data address or port it names (the fuzz target's one entry point).
pub fn read_reply_and_address(text: &[u8]) -> Result<(Reply, Option<SocketAddr>, Option<u16>), ReplyError> {
    let reply = parse_reply(text)?;
    let pasv = if reply.code == 227 { parse_227(reply.first_text()) } else { None };
    let epsv = if reply.code == 229 { parse_229(reply.first_text()) } else { None };
    Ok((reply, pasv, epsv))
}

/// The address in a 227 reply: `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)`. The six
/// numbers are found anywhere in the text (some servers leave out the parentheses).
pub fn parse_227(text: &str) -> Option<SocketAddr> {
    let bytes = text.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        if bytes[start].is_ascii_digit() {
            let end = bytes[start..]
                .iter()
                .position(|b| !(b.is_ascii_digit() || *b == b','))
                .map_or(bytes.len(), |p| start + p);
            let nums: Vec<&str> = text[start..end].split(',').collect();
            if nums.len() == 6 {
                let mut n = [0u8; 6];
                let mut ok = true;
                for (slot, s) in n.iter_mut().zip(&nums) {
                    match s.parse::<u8>() {
                        Ok(v) => *slot = v,
                        Err(_) => ok = false,
                    }
                }
                if ok {
                    let ip = Ipv4Addr::new(n[0], n[1], n[2], n[3]);
                    return Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([n[4], n[5]])));
                }
            }
            start = end;
        } else {
            start += 1;
        }
    }
    None
}

/// The port in a 229 reply: `229 Entering Extended Passive Mode (|||port|)` (RFC 2428 §3:
/// the delimiter is whatever character follows the parenthesis; address fields are empty).
pub fn parse_229(text: &str) -> Option<u16> {
    let open = text.find('(')?;
    let inner = &text[open + 1..];
    let delim = inner.chars().next()?;
    if !(33..=126).contains(&(delim as u32)) || delim.is_ascii_digit() {
        return None;
    }
    let fields: Vec<&str> = inner.split(delim).collect();
    // "|||port|)" splits into ["", "", "", "port", ")..."]
    if fields.len() < 5 || !fields[4].starts_with(')') {
        return None;
    }
    fields[3].parse::<u16>().ok().filter(|p| *p != 0)
}

/// The argument of PORT for `addr` (RFC 959: h1,h2,h3,h4,p1,p2); None for IPv6 (use EPRT).
pub fn port_argument(addr: SocketAddr) -> Option<String> {
    match addr.ip() {
        IpAddr::V4(ip) => {
            let o = ip.octets();
            let p = addr.port().to_be_bytes();
            Some(format!("{},{},{},{},{},{}", o[0], o[1], o[2], o[3], p[0], p[1]))
        }
        IpAddr::V6(_) => None,
    }
}

/// The argument of EPRT for `addr` (RFC 2428: `|1|ip|port|` or `|2|ip|port|`).
pub fn eprt_argument(addr: SocketAddr) -> String {
    let proto = if addr.is_ipv4() { 1 } else { 2 };
    format!("|{proto}|{}|{}|", addr.ip(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(lines: &[&str]) -> Vec<Reply> {
        let mut p = ReplyParser::new();
        lines.iter().filter_map(|l| p.push(l.as_bytes()).unwrap()).collect()
    }

    #[test]
    fn single_and_multi_line_replies() {
        let got =
            feed(&["220 ready", "211-Features:", " MDTM", "211-not the end", " SIZE", "211 End", "200"]);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].code, 220);
        assert_eq!(got[0].first_text(), "ready");
        assert_eq!(got[1].code, 211);
        assert_eq!(got[1].lines.len(), 5);
        assert_eq!(got[1].text(), "Features:\n MDTM\nnot the end\n SIZE\nEnd");
        assert_eq!((got[2].code, got[2].first_text()), (200, ""));
        assert!(got[2].is_completion());
    }

    #[test]
    fn another_code_inside_a_multi_line_reply_does_not_end_it() {
        let got = feed(&["150-first", "226 not mine", "150 done"]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].lines, vec!["150-first", "226 not mine", "150 done"]);
    }

    #[test]
    fn junk_is_an_error_not_a_panic() {
        let mut p = ReplyParser::new();
        for junk in ["", "2", "20", "abc def", "600 too big", "099 small", "2000 four digits", "22x"] {
            assert!(p.push(junk.as_bytes()).is_err(), "{junk:?}");
        }
        assert!(p.push(&[0xff, 0xfe, 0x00]).is_err());
        assert!(parse_reply(b"").is_err());
        assert!(parse_reply(b"211-never ends\r\nmore\r\n").is_err());
        assert_eq!(parse_reply(b"\r\n331 Password\r\n").unwrap().code, 331);
    }

    #[test]
    fn replies_with_addresses_and_junk_through_the_fuzz_entry_point() {
        let (r, pasv, epsv) =
            read_reply_and_address(b"227 Entering Passive Mode (10,0,0,1,4,1)\r\n").unwrap();
        assert_eq!((r.code, pasv, epsv), (227, Some("10.0.0.1:1025".parse().unwrap()), None));
        let (_, pasv, epsv) = read_reply_and_address(b"229-x\r\n229 (|||2121|)\r\n").unwrap();
        assert_eq!((pasv, epsv), (None, None), "the port is read from the first line only");
        let (_, _, epsv) = read_reply_and_address(b"229 Extended (|||2121|)\n").unwrap();
        assert_eq!(epsv, Some(2121));
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for len in 0..400 {
            let junk: Vec<u8> = (0..len)
                .map(|i| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    [b'2', b'7', b'(', b',', b'|', b'-', b' ', b'\n', b'9', seed as u8]
                        [(seed as usize + i) % 10]
                })
                .collect();
            let _ = read_reply_and_address(&junk);
        }
    }

    #[test]
    fn a_reply_without_end_is_bounded() {
        let mut p = ReplyParser::new();
        assert_eq!(p.push(b"211-start"), Ok(None));
        let mut err = None;
        for _ in 0..MAX_REPLY_LINES + 1 {
            if let Err(e) = p.push(b" line") {
                err = Some(e);
                break;
            }
        }
        assert_eq!(err, Some(ReplyError::TooManyLines));
        assert!(!p.in_reply());
    }

    #[test]
    fn pasv_addresses() {
        let a = parse_227("Entering Passive Mode (127,0,0,1,117,49).").unwrap();
        assert_eq!(a, "127.0.0.1:30001".parse().unwrap());
        assert_eq!(parse_227("=10,1,2,3,4,5").unwrap(), "10.1.2.3:1029".parse().unwrap());
        assert_eq!(parse_227("Entering Passive Mode (256,0,0,1,1,1)"), None);
        assert_eq!(parse_227("Entering Passive Mode (1,2,3,4,5)"), None);
        assert_eq!(parse_227("nothing"), None);
        assert_eq!(parse_227(",,,,,"), None);
    }

    #[test]
    fn epsv_ports() {
        assert_eq!(parse_229("Entering Extended Passive Mode (|||30001|)"), Some(30001));
        assert_eq!(parse_229("ok (!!!6446!)"), Some(6446));
        assert_eq!(parse_229("(|||0|)"), None);
        assert_eq!(parse_229("(|||70000|)"), None);
        assert_eq!(parse_229("(|||12|"), None);
        assert_eq!(parse_229("(1112)"), None);
        assert_eq!(parse_229("no parenthesis"), None);
        assert_eq!(parse_229("("), None);
    }

    #[test]
    fn port_and_eprt_arguments_round_trip() {
        let v4: SocketAddr = "127.0.10.4:40001".parse().unwrap();
        let arg = port_argument(v4).unwrap();
        assert_eq!(arg, "127,0,10,4,156,65");
        assert_eq!(parse_227(&format!("({arg})")), Some(v4));
        assert_eq!(eprt_argument(v4), "|1|127.0.10.4|40001|");
        let v6: SocketAddr = "[::1]:2121".parse().unwrap();
        assert_eq!(port_argument(v6), None);
        assert_eq!(eprt_argument(v6), "|2|::1|2121|");
    }
}
