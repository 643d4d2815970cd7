//! POP3 commands (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH) parsed from one line,
//! and the multi-line answer encoding (CRLF line endings, dot-stuffing, the final `.`).

/// One POP3 command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `USER name`
    User(String),
    /// `PASS secret` (the rest of the line: passwords may hold spaces)
    Pass(String),
    /// `AUTH mechanism [initial-response]`; `AUTH` alone lists mechanisms.
    Auth(Option<String>, Option<String>),
    /// `CAPA`
    Capa,
    /// `STLS`
    Stls,
    /// `STAT`
    Stat,
    /// `LIST [n]`
    List(Option<u32>),
    /// `RETR n`
    Retr(u32),
    /// `TOP n lines`
    Top(u32, u32),
    /// `UIDL [n]`
    Uidl(Option<u32>),
    /// `DELE n`
    Dele(u32),
    /// `RSET`
    Rset,
    /// `NOOP`
    Noop,
    /// `QUIT`
    Quit,
}

/// Why a line is not a command (answered with `-ERR` and this text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadCommand(pub &'static str);

/// Parses one command line (without its CRLF).
pub fn parse_command(line: &[u8]) -> Result<Command, BadCommand> {
    let line = std::str::from_utf8(line).map_err(|_| BadCommand("Command is not UTF-8"))?;
    if line.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(BadCommand("Control characters in command"));
    }
    let (verb, rest) = match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    };
    let args: Vec<&str> = rest.split(' ').filter(|a| !a.is_empty()).collect();
    let none = |c: Command| if args.is_empty() { Ok(c) } else { Err(BadCommand("Too many arguments")) };
    let num = |s: &str| s.parse::<u32>().map_err(|_| BadCommand("Invalid message number"));
    let one_num = || match args.as_slice() {
        [n] => num(n),
        [] => Err(BadCommand("Missing message number")),
        _ => Err(BadCommand("Too many arguments")),
    };
    let opt_num = || match args.as_slice() {
        [] => Ok(None),
        [n] => num(n).map(Some),
        _ => Err(BadCommand("Too many arguments")),
    };
    match verb.to_ascii_uppercase().as_str() {
        "USER" => match args.as_slice() {
            [name] => Ok(Command::User((*name).to_string())),
            _ => Err(BadCommand("Usage: USER name@domain")),
        },
        "PASS" if !rest.is_empty() => Ok(Command::Pass(rest.to_string())),
        "PASS" => Err(BadCommand("Usage: PASS password")),
        "AUTH" => match args.as_slice() {
            [] => Ok(Command::Auth(None, None)),
            [m] => Ok(Command::Auth(Some(m.to_ascii_uppercase()), None)),
            [m, ir] => Ok(Command::Auth(Some(m.to_ascii_uppercase()), Some((*ir).to_string()))),
            _ => Err(BadCommand("Too many arguments")),
        },
        "CAPA" => none(Command::Capa),
        "STLS" => none(Command::Stls),
        "STAT" => none(Command::Stat),
        "LIST" => opt_num().map(Command::List),
        "RETR" => one_num().map(Command::Retr),
        "TOP" => match args.as_slice() {
            [n, l] => Ok(Command::Top(num(n)?, l.parse().map_err(|_| BadCommand("Invalid line count"))?)),
            _ => Err(BadCommand("Usage: TOP msg lines")),
        },
        "UIDL" => opt_num().map(Command::Uidl),
        "DELE" => one_num().map(Command::Dele),
        "RSET" => none(Command::Rset),
        "NOOP" => none(Command::Noop),
        "QUIT" => none(Command::Quit),
        _ => Err(BadCommand("Unknown command")),
    }
}

/// The body of a RETR (`top = None`) or TOP answer: every line ending sent as CRLF, lines
/// starting with `.` doubled, and the terminating `.` line. For TOP, the header and the first
/// `n` body lines.
pub fn encode_message(data: &[u8], top: Option<u32>, out: &mut Vec<u8>) {
    out.reserve(data.len() + data.len() / 32 + 8);
    let mut in_body = false;
    let mut body_lines = 0u32;
    let mut rest = data;
    while !rest.is_empty() {
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(n) = top
            && in_body
        {
            if body_lines >= n {
                break;
            }
            body_lines += 1;
        }
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        if line.is_empty() && !in_body {
            in_body = true;
        }
        rest = next;
    }
    out.extend_from_slice(b".\r\n");
}

/// The fuzz target's body: parses `data` as command lines and encodes it as a message (RETR
/// and TOP); must never panic.
pub fn fuzz(data: &[u8]) {
    for line in data.split(|&b| b == b'\n') {
        let _ = parse_command(line.strip_suffix(b"\r").unwrap_or(line));
    }
    let mut out = Vec::new();
    encode_message(data, None, &mut out);
    out.clear();
    encode_message(data, Some(data.first().copied().unwrap_or(0) as u32 % 5), &mut out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_commands() {
        assert_eq!(parse_command(b"user bob@hamburger.edu"), Ok(Command::User("bob@hamburger.edu".into())));
        assert_eq!(parse_command(b"PASS two words"), Ok(Command::Pass("two words".into())));
        assert_eq!(parse_command(b"LIST"), Ok(Command::List(None)));
        assert_eq!(parse_command(b"LIST 3"), Ok(Command::List(Some(3))));
        assert_eq!(parse_command(b"TOP 1 0"), Ok(Command::Top(1, 0)));
        assert_eq!(
            parse_command(b"AUTH PLAIN AGJvYgBw"),
            Ok(Command::Auth(Some("PLAIN".into()), Some("AGJvYgBw".into())))
        );
        assert!(parse_command(b"RETR").is_err());
        assert!(parse_command(b"RETR x").is_err());
        assert!(parse_command(b"RETR 99999999999").is_err());
        assert!(parse_command(b"STAT 1").is_err());
        assert!(parse_command(b"FROB").is_err());
        assert!(parse_command(b"\xff\xfe").is_err());
        assert!(parse_command(b"USER a\x00b").is_err());
        assert!(parse_command(b"").is_err());
    }

    #[test]
    fn messages_are_dot_stuffed_with_crlf() {
        let mut out = Vec::new();
        encode_message(b"A: b\n\n.hidden\nend", None, &mut out);
        assert_eq!(out, b"A: b\r\n\r\n..hidden\r\nend\r\n.\r\n");
        out.clear();
        encode_message(b"A: b\r\nC: d\r\n\r\none\r\ntwo\r\n", Some(1), &mut out);
        assert_eq!(out, b"A: b\r\nC: d\r\n\r\none\r\n.\r\n");
        out.clear();
        encode_message(b"A: b\n\none\n", Some(0), &mut out);
        assert_eq!(out, b"A: b\r\n\r\n.\r\n");
    }

    #[test]
    fn junk_never_panics() {
        let mut seed = 7u64;
        for _ in 0..2000 {
            let len = (seed % 40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (seed >> 33) as u8
                })
                .collect();
            let _ = parse_command(&bytes);
            fuzz(&bytes);
            let mut out = Vec::new();
            encode_message(&bytes, Some((seed % 3) as u32), &mut out);
            assert!(out.ends_with(b".\r\n"));
        }
    }
}
