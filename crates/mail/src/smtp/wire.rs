//! SMTP on the wire: commands parsed with `smtp-proto` (RFC 5321 and its extensions' parameters),
//! replies formatted and parsed here (RFC 5321 §4.2: `CODE SP text` lines, `CODE-text` for all
//! but the last line of a multi-line reply), and dot-stuffing of message data (§4.5.2).

use smtp_proto::{Error as ProtoError, Request};

/// A parsed client command, owned.
pub type Command = Request<String>;

/// Why a command line could not be understood, with the reply it earns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadCommand {
    /// The full reply line (without CRLF), e.g. `500 5.5.2 Syntax error, command unrecognized`.
    pub reply: String,
}

/// Parses one command line (`line` without its CRLF). Never panics on any input; the error
/// carries the RFC 5321 reply to send.
pub fn parse_command(line: &[u8]) -> Result<Command, BadCommand> {
    let mut buf = Vec::with_capacity(line.len() + 2);
    buf.extend_from_slice(line);
    buf.extend_from_slice(b"\r\n");
    let bad = |reply: &str| BadCommand { reply: reply.to_string() };
    match Request::parse(&mut buf.iter()) {
        Ok(req) => Ok(req.into_owned()),
        Err(ProtoError::UnknownCommand) => Err(bad("500 5.5.2 Syntax error, command unrecognized")),
        Err(ProtoError::InvalidSenderAddress) => Err(bad("501 5.1.7 Bad sender address syntax")),
        Err(ProtoError::InvalidRecipientAddress) => Err(bad("501 5.1.3 Bad recipient address syntax")),
        Err(ProtoError::SyntaxError { syntax }) => {
            Err(BadCommand { reply: format!("501 5.5.4 Syntax: {syntax}") })
        }
        Err(ProtoError::InvalidParameter { param }) => {
            Err(BadCommand { reply: format!("501 5.5.4 Invalid parameter {param:?}") })
        }
        Err(ProtoError::UnsupportedParameter { param }) => {
            let param: String = param.chars().filter(|c| !c.is_control()).take(64).collect();
            Err(BadCommand { reply: format!("555 5.5.4 Unsupported parameter {param:?}") })
        }
        Err(_) => Err(bad("500 5.5.2 Syntax error")),
    }
}

/// One complete reply from a server: its code and its text lines (without the code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The text of each line, in order.
    pub lines: Vec<String>,
}

impl Reply {
    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3xx (send more: DATA's 354, AUTH's 334).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// 5xx: do not retry.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// All lines joined with spaces, for logs and bounces.
    pub fn text(&self) -> String {
        format!("{} {}", self.code, self.lines.join(" "))
    }

    /// Whether an EHLO reply advertises `keyword` (case-insensitive, first word of a line).
    pub fn has_extension(&self, keyword: &str) -> bool {
        self.lines
            .iter()
            .skip(1)
            .any(|l| l.split_whitespace().next().is_some_and(|w| w.eq_ignore_ascii_case(keyword)))
    }
}

/// Accumulates reply lines until a reply is complete.
#[derive(Debug, Default)]
pub struct ReplyParser {
    code: Option<u16>,
    lines: Vec<String>,
}

/// Most lines accepted in one multi-line reply.
const MAX_REPLY_LINES: usize = 100;

impl ReplyParser {
    /// Feeds one line (without CRLF); returns the reply when this was its last line.
    pub fn push(&mut self, line: &[u8]) -> Result<Option<Reply>, String> {
        let text = String::from_utf8_lossy(line);
        let bytes = text.as_bytes();
        if bytes.len() < 3 || !bytes[..3].iter().all(u8::is_ascii_digit) {
            return Err(format!("malformed reply line {:?}", truncate(&text, 80)));
        }
        let code: u16 = text[..3].parse().map_err(|_| "malformed reply code".to_string())?;
        if !(200..600).contains(&code) {
            return Err(format!("reply code {code} out of range"));
        }
        if self.code.is_some_and(|c| c != code) {
            return Err("reply lines with different codes".to_string());
        }
        // The separator is checked before the text is cut after it: any other byte there may
        // be inside a multi-byte character (a replaced invalid byte is three).
        let last = match bytes.get(3) {
            Some(b'-') => false,
            None | Some(b' ') => true,
            Some(_) => return Err(format!("malformed reply line {:?}", truncate(&text, 80))),
        };
        self.code = Some(code);
        self.lines.push(text.get(4..).unwrap_or_default().to_string());
        if self.lines.len() > MAX_REPLY_LINES {
            return Err("reply has too many lines".to_string());
        }
        if !last {
            return Ok(None);
        }
        self.code = None;
        Ok(Some(Reply { code, lines: std::mem::take(&mut self.lines) }))
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Formats a (possibly multi-line) reply: every line but the last as `CODE-text`.
pub fn format_reply(code: u16, lines: &[&str]) -> String {
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        out.push_str(&format!("{code}{sep}{l}\r\n"));
    }
    out
}

/// Dot-stuffs a message for DATA (RFC 5321 §4.5.2): a leading "." doubles, bare LF becomes
/// CRLF, and the terminating `.` line is appended.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 8);
    let mut at_line_start = true;
    let mut prev = 0u8;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        at_line_start = b == b'\n';
        prev = b;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Splits `user@domain`; the domain must be non-empty and the local part non-empty.
pub fn split_address(address: &str) -> Option<(&str, &str)> {
    let (user, domain) = address.rsplit_once('@')?;
    if user.is_empty() || domain.is_empty() {
        return None;
    }
    Some((user, domain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_junk_gets_a_reply() {
        match parse_command(b"MAIL FROM:<alice@crepes.fr> SIZE=100 BODY=8BITMIME").unwrap() {
            Request::Mail { from } => {
                assert_eq!(from.address, "alice@crepes.fr");
                assert_eq!(from.size, 100);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_command(b"rcpt to:<bob@hamburger.edu>").unwrap(), Request::Rcpt { .. }));
        assert!(
            matches!(parse_command(b"MAIL FROM:<>").unwrap(), Request::Mail { from } if from.address.is_empty())
        );
        for junk in
            [&b""[..], b"\xff\xfe", b"HELLO", b"MAIL", b"RCPT TO:", b"MAIL FROM:<<<", b"\0\0\0", b"EHLO"]
        {
            let e = parse_command(junk).unwrap_err();
            assert!(e.reply.starts_with('5'), "{junk:?} -> {}", e.reply);
        }
    }

    #[test]
    fn replies_parse_multi_line() {
        let mut p = ReplyParser::default();
        assert_eq!(p.push(b"250-mail.hamburger.edu").unwrap(), None);
        assert_eq!(p.push(b"250-PIPELINING").unwrap(), None);
        let r = p.push(b"250 SIZE 100").unwrap().unwrap();
        assert_eq!(r.code, 250);
        assert!(r.has_extension("pipelining") && r.has_extension("SIZE") && !r.has_extension("STARTTLS"));
        assert!(p.push(b"25").is_err());
        assert!(p.push(b"abc hello").is_err());
        assert!(ReplyParser::default().push(b"999 x").is_err());
        assert_eq!(ReplyParser::default().push(b"220").unwrap().unwrap().code, 220);
        // An invalid byte after the code (found by fuzzing: it became a three-byte
        // replacement character and the text was cut inside it) is a malformed line.
        assert!(ReplyParser::default().push(b"511\xff\xff\xff").is_err());
        let mut p = ReplyParser::default();
        assert!(p.push(b"250-\xffok").unwrap().is_none());
        assert_eq!(p.push(b"250 \xff").unwrap().unwrap().lines, ["\u{fffd}ok", "\u{fffd}"]);
        assert_eq!(format_reply(250, &["a", "b"]), "250-a\r\n250 b\r\n");
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(dot_stuff(b".hi\r\n..x\nend"), b"..hi\r\n...x\r\nend\r\n.\r\n".to_vec());
        assert_eq!(dot_stuff(b""), b".\r\n".to_vec());
    }

    proptest::proptest! {
        #[test]
        fn replies_round_trip(code in 200u16..600, lines in proptest::collection::vec("[ -~]{0,40}", 1..5)) {
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            let text = format_reply(code, &refs);
            let mut p = ReplyParser::default();
            let mut got = None;
            for l in text.split_terminator("\r\n") {
                got = p.push(l.as_bytes()).unwrap();
            }
            let got = got.unwrap();
            proptest::prop_assert_eq!(got.code, code);
            proptest::prop_assert_eq!(got.lines, lines);
        }

        #[test]
        fn dot_stuffing_round_trips(lines in proptest::collection::vec("[.a-z ]{0,20}", 0..8)) {
            let message: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
            let stuffed = dot_stuff(message.as_bytes());
            let mut back = String::new();
            let text = String::from_utf8(stuffed).unwrap();
            let mut it = text.split_terminator("\r\n").peekable();
            while let Some(l) = it.next() {
                if l == "." && it.peek().is_none() {
                    break;
                }
                back.push_str(l.strip_prefix('.').unwrap_or(l));
                back.push_str("\r\n");
            }
            proptest::prop_assert_eq!(back, message);
        }
    }
}
