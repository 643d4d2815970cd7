//! The server side of one SMTP or submission session, sans I/O: lines in, actions out.
//!
//! The driver feeds it complete lines (CRLF removed) and carries out the [`Action`]s: send a
//! reply, start TLS, store a message (then report with [`Session::delivered`]), pause after a
//! failed AUTH, close. It holds the RFC 5321 state (greeting → EHLO → MAIL → RCPT → DATA), the
//! relay policy (own domains to local users, others only for authenticated submission users and
//! relay networks), AUTH PLAIN/LOGIN (RFC 4954) and every per-session limit.

use super::auth;
use super::wire::{Command, format_reply, parse_command, split_address};
use crate::headers;
use std::net::IpAddr;
use std::time::SystemTime;

/// Which service a session belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// MTA-to-MTA SMTP (RFC 5321): mail for our domains, or relay for relay networks.
    Smtp,
    /// Message submission (RFC 6409): authenticated users send anywhere.
    Submission,
}

/// What the session needs to know about users and domains.
pub trait Directory {
    /// Whether we are the final destination for `domain`.
    fn is_local_domain(&self, domain: &str) -> bool;
    /// Whether `address` (at one of our domains) has a mailbox.
    fn user_exists(&self, address: &str) -> bool;
    /// Whether `password` is `address`'s password.
    fn verify(&self, address: &str, password: &str) -> bool;
}

/// The fixed facts and limits of one session.
#[derive(Debug, Clone)]
pub struct SessionParams {
    /// SMTP or submission.
    pub port: Port,
    /// Our name in replies and `Received:`.
    pub hostname: String,
    /// The client's address.
    pub peer: IpAddr,
    /// The client is in a relay network (may send to other domains without AUTH).
    pub relay_allowed: bool,
    /// STARTTLS can be offered.
    pub tls_offered: bool,
    /// AUTH is allowed without TLS.
    pub allow_plain_auth: bool,
    /// Largest message, bytes (SIZE).
    pub max_message_size: usize,
    /// Most recipients per message.
    pub max_recipients: usize,
    /// Errors before disconnect.
    pub max_errors: u32,
    /// Failed AUTHs before disconnect.
    pub max_auth_failures: u32,
    /// A unique prefix for this session's message ids.
    pub session_id: String,
}

/// One recipient of an accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// `user@domain`.
    pub address: String,
    /// At one of our domains (deliver to the Maildir) rather than remote (queue it).
    pub local: bool,
}

/// A complete message to be stored before `250` is sent.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Queue id (also in `Received:`).
    pub id: String,
    /// Reverse-path; empty for bounces.
    pub from: String,
    /// Forward-paths.
    pub rcpts: Vec<Recipient>,
    /// The message as it will be stored (with our added header fields, CRLF line ends).
    pub data: Vec<u8>,
    /// The authenticated user who submitted it, if any.
    pub auth_user: Option<String>,
}

/// What the driver must do, in order.
#[derive(Debug)]
pub enum Action {
    /// Send this text (one or more complete reply lines with CRLF).
    Reply(String),
    /// Reply sent: now do the TLS handshake, then call [`Session::tls_started`].
    StartTls,
    /// Store the message safely (fsync), then call [`Session::delivered`].
    Deliver(Box<Envelope>),
    /// Wait the failed-AUTH delay before the following actions.
    AuthDelay,
    /// Close the connection (after sending what came before).
    Close,
    /// Read exactly this many octets of BDAT chunk (RFC 3030) and hand them to
    /// [`Session::on_chunk`]; `last` is the BDAT LAST flag.
    ReadChunk {
        /// Octets to read.
        size: usize,
        /// The message ends with this chunk.
        last: bool,
    },
    /// Read and drop this many octets (a BDAT chunk that was refused).
    SkipChunk(usize),
}

/// What kind of input the session waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expecting {
    /// A command.
    Command,
    /// A line of message data (after 354).
    Data,
    /// A SASL response line (after 334).
    AuthResponse,
    /// Nothing: a message is being stored.
    Delivery,
}

#[derive(Debug)]
enum Mode {
    Command,
    Data { buf: Vec<u8>, too_big: bool, long_line: bool },
    AuthPlain,
    AuthLoginUser,
    AuthLoginPass { user: String },
    Delivery,
}

#[derive(Debug, Default)]
struct Txn {
    from: String,
    rcpts: Vec<Recipient>,
    /// Octets of BDAT chunks so far, and whether they passed the size limit.
    chunks: Option<(Vec<u8>, bool)>,
}

/// One session's state.
#[derive(Debug)]
pub struct Session {
    params: SessionParams,
    helo: Option<String>,
    esmtp: bool,
    tls: bool,
    auth_user: Option<String>,
    txn: Option<Txn>,
    mode: Mode,
    errors: u32,
    auth_failures: u32,
    messages: u32,
}

impl Session {
    /// A new session (before the greeting).
    pub fn new(params: SessionParams) -> Session {
        Session {
            params,
            helo: None,
            esmtp: false,
            tls: false,
            auth_user: None,
            txn: None,
            mode: Mode::Command,
            errors: 0,
            auth_failures: 0,
            messages: 0,
        }
    }

    /// The 220 greeting.
    pub fn greeting(&self) -> String {
        let kind = match self.params.port {
            Port::Smtp => "ESMTP",
            Port::Submission => "ESMTP submission",
        };
        format!("220 {} {kind} appnet\r\n", self.params.hostname)
    }

    /// What the next input line is.
    pub fn expecting(&self) -> Expecting {
        match self.mode {
            Mode::Command => Expecting::Command,
            Mode::Data { .. } => Expecting::Data,
            Mode::AuthPlain | Mode::AuthLoginUser | Mode::AuthLoginPass { .. } => Expecting::AuthResponse,
            Mode::Delivery => Expecting::Delivery,
        }
    }

    /// Whether the session runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The authenticated user, if any.
    pub fn auth_user(&self) -> Option<&str> {
        self.auth_user.as_deref()
    }

    /// Feeds one complete input line (without CRLF).
    pub fn on_line(&mut self, line: &[u8], now: SystemTime, dir: &dyn Directory) -> Vec<Action> {
        match std::mem::replace(&mut self.mode, Mode::Command) {
            Mode::Data { mut buf, mut too_big, long_line } => {
                if line == b"." {
                    return self.end_of_data(buf, too_big, long_line, now);
                }
                let line = line.strip_prefix(b".").unwrap_or(line);
                if buf.len() + line.len() + 2 > self.params.max_message_size {
                    too_big = true;
                    buf = Vec::new();
                } else if !too_big {
                    buf.extend_from_slice(line);
                    buf.extend_from_slice(b"\r\n");
                }
                self.mode = Mode::Data { buf, too_big, long_line };
                Vec::new()
            }
            Mode::AuthPlain => self.auth_plain(line, dir),
            Mode::AuthLoginUser => match sasl_text(line) {
                Ok(user) => {
                    self.mode = Mode::AuthLoginPass { user };
                    vec![Action::Reply(format!("334 {}\r\n", auth::encode(b"Password:")))]
                }
                Err(reply) => self.error(reply),
            },
            Mode::AuthLoginPass { user } => match sasl_text(line) {
                Ok(password) => self.check_credentials(&user, &password, dir),
                Err(reply) => self.error(reply),
            },
            Mode::Delivery => {
                self.mode = Mode::Delivery;
                Vec::new()
            }
            Mode::Command => self.command(line, dir),
        }
    }

    /// A line longer than the limit arrived (its bytes were dropped).
    pub fn on_long_line(&mut self) -> Vec<Action> {
        match &mut self.mode {
            Mode::Data { long_line, .. } => {
                *long_line = true;
                Vec::new()
            }
            Mode::Command => self.error("500 5.5.2 Line too long"),
            _ => {
                self.mode = Mode::Command;
                self.error("500 5.5.2 Line too long")
            }
        }
    }

    /// The TLS handshake after STARTTLS succeeded: everything learnt before is forgotten
    /// (RFC 3207 §4.2); the client must EHLO again.
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.helo = None;
        self.esmtp = false;
        self.txn = None;
        self.auth_user = None;
        self.mode = Mode::Command;
    }

    /// The driver's report on storing the message of the last [`Action::Deliver`].
    pub fn delivered(&mut self, id: &str, result: Result<(), String>) -> Vec<Action> {
        self.mode = Mode::Command;
        self.txn = None;
        match result {
            Ok(()) => vec![Action::Reply(format!("250 2.0.0 Ok: queued as {id}\r\n"))],
            Err(why) => {
                tracing::warn!("cannot store message {id}: {why}");
                vec![Action::Reply("451 4.3.0 Error: cannot store the message, try again later\r\n".into())]
            }
        }
    }

    fn error(&mut self, reply: impl Into<String>) -> Vec<Action> {
        let mut reply = reply.into();
        if !reply.ends_with("\r\n") {
            reply.push_str("\r\n");
        }
        self.errors += 1;
        let mut out = vec![Action::Reply(reply)];
        if self.errors >= self.params.max_errors.max(1) {
            out.push(Action::Reply(format!("421 4.7.0 {} Error: too many errors\r\n", self.params.hostname)));
            out.push(Action::Close);
        }
        out
    }

    fn ok(reply: &str) -> Vec<Action> {
        vec![Action::Reply(format!("{reply}\r\n"))]
    }

    fn command(&mut self, line: &[u8], dir: &dyn Directory) -> Vec<Action> {
        let cmd = match parse_command(line) {
            Ok(c) => c,
            Err(bad) => return self.error(bad.reply),
        };
        match cmd {
            Command::Ehlo { host } => {
                self.helo = Some(host);
                self.esmtp = true;
                self.txn = None;
                vec![Action::Reply(self.ehlo_reply())]
            }
            Command::Helo { host } => {
                self.helo = Some(host);
                self.esmtp = false;
                self.txn = None;
                Self::ok(&format!("250 {}", self.params.hostname))
            }
            Command::Lhlo { .. } => self.error("500 5.5.1 LHLO is for LMTP"),
            Command::Mail { from } => self.mail(from.address, from.size),
            Command::Rcpt { to } => self.rcpt(to.address, dir),
            Command::Data => self.data(),
            Command::Bdat { chunk_size, is_last } => self.bdat(chunk_size, is_last),
            Command::Auth { mechanism, initial_response } => self.auth(mechanism, &initial_response, dir),
            Command::Noop { .. } => Self::ok("250 2.0.0 Ok"),
            Command::Rset => {
                self.txn = None;
                Self::ok("250 2.0.0 Ok")
            }
            Command::Quit => vec![Action::Reply("221 2.0.0 Bye\r\n".into()), Action::Close],
            Command::Vrfy { .. } => {
                Self::ok("252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery")
            }
            Command::Expn { .. } => self.error("502 5.5.1 EXPN not implemented"),
            Command::Help { .. } => {
                Self::ok("214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY STARTTLS AUTH")
            }
            Command::StartTls => {
                if self.tls {
                    self.error("503 5.5.1 TLS already active")
                } else if !self.params.tls_offered {
                    self.error("502 5.5.1 STARTTLS not available (start the server with --tls)")
                } else {
                    vec![Action::Reply("220 2.0.0 Ready to start TLS\r\n".into()), Action::StartTls]
                }
            }
            Command::Etrn { .. } | Command::Atrn { .. } | Command::Burl { .. } => {
                self.error("502 5.5.1 Command not implemented")
            }
        }
    }

    fn auth_available(&self) -> bool {
        self.params.port == Port::Submission && (self.tls || self.params.allow_plain_auth)
    }

    fn ehlo_reply(&self) -> String {
        let greet = format!("{} Hello {}", self.params.hostname, self.helo.as_deref().unwrap_or(""));
        let size = format!("SIZE {}", self.params.max_message_size);
        let mut lines: Vec<&str> =
            vec![&greet, "PIPELINING", &size, "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING"];
        if self.params.tls_offered && !self.tls {
            lines.push("STARTTLS");
        }
        if self.auth_available() {
            lines.push("AUTH PLAIN LOGIN");
        }
        format_reply(250, &lines)
    }

    fn may_relay(&self) -> bool {
        self.auth_user.is_some() || self.params.relay_allowed
    }

    fn mail(&mut self, from: String, size: usize) -> Vec<Action> {
        if self.helo.is_none() {
            return self.error("503 5.5.1 Error: send HELO/EHLO first");
        }
        if self.txn.is_some() {
            return self.error("503 5.5.1 Error: nested MAIL command");
        }
        if self.params.port == Port::Submission && !self.may_relay() {
            return self.error("530 5.7.0 Authentication required");
        }
        if size > self.params.max_message_size {
            return self.error(format!(
                "552 5.3.4 Message size exceeds fixed maximum message size ({} bytes)",
                self.params.max_message_size
            ));
        }
        self.txn = Some(Txn { from, rcpts: Vec::new(), chunks: None });
        Self::ok("250 2.1.0 Ok")
    }

    fn rcpt(&mut self, to: String, dir: &dyn Directory) -> Vec<Action> {
        let may_relay = self.may_relay();
        let Some(txn) = &mut self.txn else {
            return self.error("503 5.5.1 Error: need MAIL command");
        };
        if txn.rcpts.len() >= self.params.max_recipients {
            return vec![Action::Reply("452 4.5.3 Error: too many recipients\r\n".into())];
        }
        let Some((_, domain)) = split_address(&to) else {
            return self
                .error(format!("501 5.1.3 <{}>: Recipient address must be user@domain", printable(&to)));
        };
        let local = dir.is_local_domain(domain);
        if local && !dir.user_exists(&to) {
            return self
                .error(format!("550 5.1.1 <{}>: Recipient address rejected: User unknown", printable(&to)));
        }
        if !local && !may_relay {
            return self.error(format!("554 5.7.1 <{}>: Relay access denied", printable(&to)));
        }
        if !txn.rcpts.iter().any(|r| r.address.eq_ignore_ascii_case(&to)) {
            txn.rcpts.push(Recipient { address: to, local });
        }
        Self::ok("250 2.1.5 Ok")
    }

    fn bdat(&mut self, size: usize, last: bool) -> Vec<Action> {
        let refusal = match &self.txn {
            None => Some("503 5.5.1 Error: need MAIL command"),
            Some(t) if t.rcpts.is_empty() => Some("554 5.5.1 Error: no valid recipients"),
            Some(_) => None,
        };
        if let Some(reply) = refusal {
            // The chunk's octets follow the command whatever the answer: they must be read.
            let mut out = vec![Action::SkipChunk(size)];
            out.extend(self.error(reply));
            return out;
        }
        vec![Action::ReadChunk { size, last }]
    }

    /// The octets of the BDAT chunk announced by the last [`Action::ReadChunk`]; `too_big` when
    /// the driver dropped them because the chunk alone broke the size limit.
    pub fn on_chunk(&mut self, data: &[u8], too_big: bool, last: bool, now: SystemTime) -> Vec<Action> {
        let max = self.params.max_message_size;
        let Some(txn) = &mut self.txn else {
            return self.error("503 5.5.1 Error: need MAIL command");
        };
        let (buf, big) = txn.chunks.get_or_insert_with(|| (Vec::new(), false));
        if too_big || *big || buf.len() + data.len() > max {
            *big = true;
            *buf = Vec::new();
        } else {
            buf.extend_from_slice(data);
        }
        if !last {
            let n = data.len();
            return Self::ok(&format!("250 2.0.0 Ok: {n} octets received"));
        }
        let (body, big) = txn.chunks.take().unwrap_or_default();
        self.end_of_data(body, big, false, now)
    }

    /// The largest chunk the driver should buffer (larger ones are read and dropped).
    pub fn max_chunk(&self) -> usize {
        self.params.max_message_size
    }

    fn data(&mut self) -> Vec<Action> {
        match &self.txn {
            None => self.error("503 5.5.1 Error: need MAIL command"),
            Some(t) if t.chunks.is_some() => {
                self.error("503 5.5.1 Error: BDAT in progress, DATA not allowed")
            }
            Some(t) if t.rcpts.is_empty() => self.error("554 5.5.1 Error: no valid recipients"),
            Some(_) => {
                self.mode = Mode::Data { buf: Vec::new(), too_big: false, long_line: false };
                Self::ok("354 End data with <CR><LF>.<CR><LF>")
            }
        }
    }

    fn end_of_data(&mut self, body: Vec<u8>, too_big: bool, long_line: bool, now: SystemTime) -> Vec<Action> {
        if too_big {
            self.txn = None;
            return self.error(format!(
                "552 5.3.4 Message size exceeds fixed maximum message size ({} bytes)",
                self.params.max_message_size
            ));
        }
        if long_line {
            self.txn = None;
            return self.error("500 5.5.2 Message has a line longer than 998 octets");
        }
        let Some(txn) = self.txn.take() else {
            return self.error("503 5.5.1 Error: need MAIL command");
        };
        self.messages += 1;
        let id = format!("{}{:02X}", self.params.session_id, self.messages);
        let protocol = match (self.esmtp, self.tls, self.auth_user.is_some()) {
            (false, _, _) => "SMTP",
            (true, false, false) => "ESMTP",
            (true, true, false) => "ESMTPS",
            (true, false, true) => "ESMTPA",
            (true, true, true) => "ESMTPSA",
        };
        let single = (txn.rcpts.len() == 1).then(|| txn.rcpts[0].address.as_str());
        let helo = self.helo.as_deref().unwrap_or("unknown");
        let mut data =
            headers::received(helo, self.params.peer, &self.params.hostname, protocol, &id, single, now)
                .into_bytes();
        if self.params.port == Port::Submission {
            if !headers::has_header(&body, "Date") {
                data.extend_from_slice(format!("Date: {}\r\n", headers::rfc5322_date(now)).as_bytes());
            }
            if !headers::has_header(&body, "Message-ID") {
                data.extend_from_slice(format!("Message-ID: <{id}@{}>\r\n", self.params.hostname).as_bytes());
            }
        }
        data.extend_from_slice(&body);
        self.mode = Mode::Delivery;
        let envelope =
            Envelope { id, from: txn.from, rcpts: txn.rcpts, data, auth_user: self.auth_user.clone() };
        vec![Action::Deliver(Box::new(envelope))]
    }

    fn auth(&mut self, mechanism: u64, initial: &str, dir: &dyn Directory) -> Vec<Action> {
        if self.params.port != Port::Submission {
            return self.error("502 5.5.1 AUTH is offered on the submission port only");
        }
        if !self.tls && !self.params.allow_plain_auth {
            return self.error(
                "538 5.7.11 Encryption required for requested authentication mechanism (STARTTLS first)",
            );
        }
        if self.auth_user.is_some() {
            return self.error("503 5.5.1 Error: already authenticated");
        }
        if self.txn.is_some() {
            return self.error("503 5.5.1 Error: AUTH not allowed during a mail transaction");
        }
        if mechanism == smtp_proto::AUTH_PLAIN {
            if initial.is_empty() {
                self.mode = Mode::AuthPlain;
                return Self::ok("334 ");
            }
            return self.auth_plain(initial.as_bytes(), dir);
        }
        if mechanism == smtp_proto::AUTH_LOGIN {
            if initial.is_empty() {
                self.mode = Mode::AuthLoginUser;
                return vec![Action::Reply(format!("334 {}\r\n", auth::encode(b"Username:")))];
            }
            return match sasl_text(initial.as_bytes()) {
                Ok(user) => {
                    self.mode = Mode::AuthLoginPass { user };
                    vec![Action::Reply(format!("334 {}\r\n", auth::encode(b"Password:")))]
                }
                Err(reply) => self.error(reply),
            };
        }
        self.error("504 5.5.4 Unrecognized authentication type (use PLAIN or LOGIN)")
    }

    fn auth_plain(&mut self, line: &[u8], dir: &dyn Directory) -> Vec<Action> {
        if line == b"*" {
            return self.error("501 5.0.0 Authentication cancelled");
        }
        let decoded = std::str::from_utf8(line).ok().and_then(auth::decode);
        match decoded.as_deref().map(auth::parse_plain) {
            Some(Some((user, password))) => self.check_credentials(&user, &password, dir),
            Some(None) => self.auth_failed(),
            None => self.error("501 5.5.2 Cannot decode the AUTH response"),
        }
    }

    fn check_credentials(&mut self, user: &str, password: &str, dir: &dyn Directory) -> Vec<Action> {
        if dir.verify(user, password) {
            self.auth_user = Some(user.to_string());
            return Self::ok("235 2.7.0 Authentication successful");
        }
        tracing::info!(peer = %self.params.peer, user = %printable(user), "AUTH failed");
        self.auth_failed()
    }

    fn auth_failed(&mut self) -> Vec<Action> {
        self.auth_failures += 1;
        let mut out =
            vec![Action::AuthDelay, Action::Reply("535 5.7.8 Authentication credentials invalid\r\n".into())];
        if self.auth_failures >= self.params.max_auth_failures.max(1) {
            out.push(Action::Reply(format!(
                "421 4.7.0 {} Error: too many failed logins\r\n",
                self.params.hostname
            )));
            out.push(Action::Close);
        }
        out
    }
}

/// A SASL response line decoded to text, or the reply for a cancelled/undecodable one.
fn sasl_text(line: &[u8]) -> Result<String, &'static str> {
    if line == b"*" {
        return Err("501 5.0.0 Authentication cancelled");
    }
    let bytes = std::str::from_utf8(line)
        .ok()
        .and_then(auth::decode)
        .ok_or("501 5.5.2 Cannot decode the AUTH response")?;
    String::from_utf8(bytes).map_err(|_| "501 5.5.2 Cannot decode the AUTH response")
}

/// `s` with control characters removed and at most 256 characters, for replies and logs.
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(256).collect()
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
