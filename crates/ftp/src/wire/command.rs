//! FTP command lines → typed [`Command`]s (RFC 959 §4.1, RFC 2428, RFC 3659, RFC 2389,
//! RFC 4217). The verb is case-insensitive; the argument is everything after the first space.

use super::addr::{AddrError, parse_eprt, parse_port};
use std::net::SocketAddr;

/// Longest command line the server reads (RFC 959 does not bound it; paths are the long part).
pub const MAX_LINE: usize = 4096;

/// The representation type (RFC 959 §3.1.1): TYPE A converts line endings, TYPE I does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferType {
    /// ASCII (with the Non-print format): lines end in CRLF on the wire.
    Ascii,
    /// Image (binary, also `L 8`): bytes as stored.
    Image,
}

/// The argument of EPSV (RFC 2428 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpsvArg {
    /// No argument: a passive port for the control connection's protocol.
    Any,
    /// `EPSV 1` or `EPSV 2`: a network protocol number.
    Proto(u8),
    /// `EPSV ALL`: from now on only EPSV sets up data connections.
    All,
}

/// One parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Command {
    User(String),
    Pass(String),
    Acct,
    Cwd(String),
    Cdup,
    Pwd,
    Mkd(String),
    Rmd(String),
    Dele(String),
    Rnfr(String),
    Rnto(String),
    /// PORT h1,h2,h3,h4,p1,p2: where the client listens for an active data connection.
    Port(SocketAddr),
    /// EPRT |af|addr|port|.
    Eprt(SocketAddr),
    Pasv,
    Epsv(EpsvArg),
    Type(TransferType),
    Stru(String),
    Mode(String),
    Retr(String),
    Stor(String),
    /// STOU: store under a unique name the server picks (the argument, if any, is a hint).
    Stou(Option<String>),
    Appe(String),
    /// LIST [path], with `ls` options such as `-la` removed.
    List(Option<String>),
    Nlst(Option<String>),
    Mlsd(Option<String>),
    Mlst(Option<String>),
    Stat(Option<String>),
    Syst,
    Help(Option<String>),
    Noop,
    Rein,
    Quit,
    Abor,
    Size(String),
    Mdtm(String),
    /// REST n (STREAM mode): the next RETR/STOR starts at byte n.
    Rest(u64),
    Feat,
    Opts(String),
    Allo,
    Auth(String),
    Pbsz(String),
    Prot(String),
    Ccc,
    Site(String),
}

/// Why a line is not a command the server can act on; each maps to a reply code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// An empty line.
    #[error("empty command line")]
    Empty,
    /// A verb the server does not know (500).
    #[error("unknown command {0}")]
    Unknown(String),
    /// A command that needs an argument got none (501).
    #[error("{0} needs an argument")]
    MissingArgument(&'static str),
    /// An argument that does not parse (501).
    #[error("bad argument to {verb}: {why}")]
    BadArgument {
        /// The command.
        verb: &'static str,
        /// What is wrong.
        why: String,
    },
    /// A parameter the server does not implement (504), e.g. TYPE E or MODE B.
    #[error("{verb} {arg} is not implemented")]
    Unsupported {
        /// The command.
        verb: &'static str,
        /// The refused parameter.
        arg: String,
    },
}

impl ParseError {
    /// The reply code RFC 959 gives this error.
    pub fn code(&self) -> u16 {
        match self {
            ParseError::Empty | ParseError::Unknown(_) => 500,
            ParseError::MissingArgument(_) | ParseError::BadArgument { .. } => 501,
            ParseError::Unsupported { .. } => 504,
        }
    }
}

/// Parses one command line (terminator and Telnet sequences already removed).
pub fn parse_command(line: &[u8]) -> Result<Command, ParseError> {
    // Leftover Telnet bytes (a DM delivered inline) and stray blanks before the verb.
    let start = line.iter().position(|b| b.is_ascii_alphabetic()).unwrap_or(line.len());
    let line = &line[start..];
    if line.is_empty() {
        return Err(ParseError::Empty);
    }
    let (verb, arg) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &b""[..]),
    };
    if verb.len() > 8 {
        return Err(ParseError::Unknown(printable(verb)));
    }
    let verb =
        std::str::from_utf8(verb).map_err(|_| ParseError::Unknown(printable(verb)))?.to_ascii_uppercase();
    let arg = String::from_utf8_lossy(arg).into_owned();
    let opt = |a: &str| if a.is_empty() { None } else { Some(a.to_string()) };
    let need = |v: &'static str| -> Result<String, ParseError> {
        if arg.is_empty() { Err(ParseError::MissingArgument(v)) } else { Ok(arg.clone()) }
    };
    Ok(match verb.as_str() {
        "USER" => Command::User(need("USER")?),
        "PASS" => Command::Pass(arg.clone()),
        "ACCT" => Command::Acct,
        "CWD" | "XCWD" => Command::Cwd(need("CWD")?),
        "CDUP" | "XCUP" => Command::Cdup,
        "PWD" | "XPWD" => Command::Pwd,
        "MKD" | "XMKD" => Command::Mkd(need("MKD")?),
        "RMD" | "XRMD" => Command::Rmd(need("RMD")?),
        "DELE" => Command::Dele(need("DELE")?),
        "RNFR" => Command::Rnfr(need("RNFR")?),
        "RNTO" => Command::Rnto(need("RNTO")?),
        "PORT" => Command::Port(parse_port(&need("PORT")?).map_err(|e| bad("PORT", e))?),
        "EPRT" => Command::Eprt(parse_eprt(&need("EPRT")?).map_err(|e| bad("EPRT", e))?),
        "PASV" => Command::Pasv,
        "EPSV" => Command::Epsv(parse_epsv(&arg)?),
        "TYPE" => Command::Type(parse_type(&need("TYPE")?)?),
        "STRU" => {
            let a = need("STRU")?;
            if !a.eq_ignore_ascii_case("F") {
                return Err(ParseError::Unsupported { verb: "STRU", arg: a });
            }
            Command::Stru(a)
        }
        "MODE" => {
            let a = need("MODE")?;
            if !a.eq_ignore_ascii_case("S") {
                return Err(ParseError::Unsupported { verb: "MODE", arg: a });
            }
            Command::Mode(a)
        }
        "RETR" => Command::Retr(need("RETR")?),
        "STOR" => Command::Stor(need("STOR")?),
        "STOU" => Command::Stou(opt(&arg)),
        "APPE" => Command::Appe(need("APPE")?),
        "LIST" => Command::List(strip_ls_options(&arg)),
        "NLST" => Command::Nlst(strip_ls_options(&arg)),
        "MLSD" => Command::Mlsd(opt(&arg)),
        "MLST" => Command::Mlst(opt(&arg)),
        "STAT" => Command::Stat(opt(&arg)),
        "SYST" => Command::Syst,
        "HELP" => Command::Help(opt(&arg)),
        "NOOP" => Command::Noop,
        "REIN" => Command::Rein,
        "QUIT" => Command::Quit,
        "ABOR" => Command::Abor,
        "SIZE" => Command::Size(need("SIZE")?),
        "MDTM" => Command::Mdtm(need("MDTM")?),
        "REST" => {
            let a = need("REST")?;
            let n = a.trim().parse::<u64>().map_err(|_| ParseError::BadArgument {
                verb: "REST",
                why: format!("{:?} is not a byte offset", printable(a.as_bytes())),
            })?;
            Command::Rest(n)
        }
        "FEAT" => Command::Feat,
        "OPTS" => Command::Opts(need("OPTS")?),
        "ALLO" => Command::Allo,
        "AUTH" => Command::Auth(need("AUTH")?),
        "PBSZ" => Command::Pbsz(need("PBSZ")?),
        "PROT" => Command::Prot(need("PROT")?),
        "CCC" => Command::Ccc,
        "SITE" => Command::Site(arg.clone()),
        _ => return Err(ParseError::Unknown(verb)),
    })
}

fn bad(verb: &'static str, e: AddrError) -> ParseError {
    ParseError::BadArgument { verb, why: e.to_string() }
}

fn parse_type(a: &str) -> Result<TransferType, ParseError> {
    let mut parts = a.split_ascii_whitespace();
    let first = parts.next().unwrap_or("").to_ascii_uppercase();
    let second = parts.next().map(|s| s.to_ascii_uppercase());
    match (first.as_str(), second.as_deref()) {
        ("A", None | Some("N")) => Ok(TransferType::Ascii),
        ("I", None) | ("L", Some("8")) => Ok(TransferType::Image),
        _ => Err(ParseError::Unsupported { verb: "TYPE", arg: a.to_string() }),
    }
}

fn parse_epsv(a: &str) -> Result<EpsvArg, ParseError> {
    let a = a.trim();
    if a.is_empty() {
        return Ok(EpsvArg::Any);
    }
    if a.eq_ignore_ascii_case("ALL") {
        return Ok(EpsvArg::All);
    }
    match a.parse::<u8>() {
        Ok(n @ (1 | 2)) => Ok(EpsvArg::Proto(n)),
        _ => Err(ParseError::Unsupported { verb: "EPSV", arg: a.to_string() }),
    }
}

/// `LIST -la dir` → `dir`; `LIST -a` → none. Clients pass `ls` flags; servers ignore them.
fn strip_ls_options(arg: &str) -> Option<String> {
    let mut rest = arg.trim_start();
    while rest.starts_with('-') {
        match rest.find(' ') {
            Some(i) => rest = rest[i + 1..].trim_start(),
            None => rest = "",
        }
    }
    if rest.is_empty() { None } else { Some(rest.to_string()) }
}

/// A verb for an error message: printable ASCII only, at most 16 characters.
fn printable(b: &[u8]) -> String {
    b.iter().take(16).map(|&c| if c.is_ascii_graphic() { c as char } else { '?' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_case_insensitive_and_arguments_keep_spaces() {
        assert_eq!(parse_command(b"user alice"), Ok(Command::User("alice".into())));
        assert_eq!(parse_command(b"RETR my file.txt"), Ok(Command::Retr("my file.txt".into())));
        assert_eq!(parse_command(b"PASS"), Ok(Command::Pass(String::new())));
        assert_eq!(parse_command(b"XPWD"), Ok(Command::Pwd));
        assert_eq!(parse_command(b"\xf2ABOR"), Ok(Command::Abor));
    }

    #[test]
    fn errors_map_to_their_reply_codes() {
        assert_eq!(parse_command(b"").unwrap_err().code(), 500);
        assert_eq!(parse_command(b"FROB x").unwrap_err().code(), 500);
        assert_eq!(parse_command(b"RETR").unwrap_err().code(), 501);
        assert_eq!(parse_command(b"REST x").unwrap_err().code(), 501);
        assert_eq!(parse_command(b"TYPE E").unwrap_err().code(), 504);
        assert_eq!(parse_command(b"MODE B").unwrap_err().code(), 504);
        assert_eq!(parse_command(b"PORT 1,2,3").unwrap_err().code(), 501);
        assert_eq!(parse_command(b"AAAAAAAAAAAAAAAAAAAAA").unwrap_err().code(), 500);
    }

    #[test]
    fn type_list_and_epsv_arguments() {
        assert_eq!(parse_command(b"TYPE L 8"), Ok(Command::Type(TransferType::Image)));
        assert_eq!(parse_command(b"type a n"), Ok(Command::Type(TransferType::Ascii)));
        assert_eq!(parse_command(b"LIST -la"), Ok(Command::List(None)));
        assert_eq!(parse_command(b"LIST -a pub"), Ok(Command::List(Some("pub".into()))));
        assert_eq!(parse_command(b"EPSV ALL"), Ok(Command::Epsv(EpsvArg::All)));
        assert_eq!(parse_command(b"EPSV"), Ok(Command::Epsv(EpsvArg::Any)));
        assert_eq!(parse_command(b"REST 1024"), Ok(Command::Rest(1024)));
    }

    #[test]
    fn junk_never_panics() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 40) as usize;
            let bytes: Vec<u8> = (0..len).map(|i| (seed >> (i % 56)) as u8).collect();
            let _ = parse_command(&bytes);
            let _ = super::super::parse_line(&bytes);
            let mut with_verb = b"PORT ".to_vec();
            with_verb.extend_from_slice(&bytes);
            let _ = parse_command(&with_verb);
            let mut with_verb = b"EPRT ".to_vec();
            with_verb.extend_from_slice(&bytes);
            let _ = parse_command(&with_verb);
        }
    }
}
