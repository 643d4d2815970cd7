//! The POP3 session (RFC 1939): AUTHORIZATION → TRANSACTION → UPDATE, as a sans-IO state
//! machine. It is fed one command line at a time with the current time and answers with
//! [`Action`]s; storage and login checks come through the [`Backend`] trait, so tests drive it
//! with an in-memory maildrop.

use std::time::Instant;

use super::wire::{self, Command};

/// One message of a maildrop as POP3 shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropMessage {
    /// Size with CRLF line endings (what RETR sends before dot-stuffing).
    pub size: u64,
    /// The unique-id listing (RFC 1939 §7).
    pub uidl: String,
}

/// A locked maildrop (one session at a time).
pub trait Maildrop: Send {
    /// The messages, in maildrop order (message n is index n-1).
    fn messages(&self) -> &[DropMessage];
    /// The stored message `index` (LF or CRLF line endings); `None` when it vanished.
    fn retrieve(&mut self, index: usize) -> std::io::Result<Option<Vec<u8>>>;
    /// The UPDATE state: removes `deleted`, marks `retrieved` as seen.
    fn commit(&mut self, deleted: &[usize], retrieved: &[usize]) -> std::io::Result<()>;
}

/// Why a maildrop could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// Another POP3 session holds it.
    InUse,
    /// A storage failure.
    Io(std::io::Error),
}

/// Logins and maildrops for the session.
pub trait Backend {
    /// The maildrop type.
    type Drop: Maildrop;
    /// Checks a password; `Ok(canonical user)` or `Err(Some(seconds))` when the client address
    /// is locked out, `Err(None)` for bad credentials.
    fn login(&self, user: &str, password: &str, now: Instant) -> Result<String, Option<u64>>;
    /// Opens and locks `user`'s maildrop.
    fn open(&self, user: &str) -> Result<Self::Drop, OpenError>;
}

/// What the driver does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes.
    Send(Vec<u8>),
    /// Send these bytes after the failed-login delay.
    SendDelayed(Vec<u8>),
    /// Send these bytes, then start TLS (STLS accepted).
    StartTls(Vec<u8>),
    /// Send these bytes and close the connection.
    Close(Vec<u8>),
}

enum State<D> {
    Authorization {
        user: Option<String>,
    },
    /// `AUTH PLAIN` without an initial response: the next line is the response.
    AuthPlain,
    Transaction(Transaction<D>),
    Done,
}

struct Transaction<D> {
    user: String,
    drop: D,
    deleted: Vec<bool>,
    retrieved: Vec<bool>,
}

/// Settings of one session.
#[derive(Clone, Debug)]
pub struct Params {
    /// TLS can be started (STLS offered).
    pub tls_available: bool,
    /// The connection is already TLS.
    pub tls_active: bool,
    /// Passwords may be sent without TLS.
    pub allow_plain_auth: bool,
    /// Bad commands before disconnecting.
    pub max_errors: u32,
    /// Failed logins before disconnecting.
    pub max_auth_failures: u32,
    /// The server's name in the greeting.
    pub hostname: String,
}

/// One POP3 session.
pub struct Session<D> {
    params: Params,
    state: State<D>,
    errors: u32,
    auth_failures: u32,
}

fn ok(text: &str) -> Vec<u8> {
    format!("+OK {text}\r\n").into_bytes()
}

fn err(text: &str) -> Vec<u8> {
    format!("-ERR {text}\r\n").into_bytes()
}

impl<D: Maildrop> Session<D> {
    /// A new session in the AUTHORIZATION state.
    pub fn new(params: Params) -> Session<D> {
        Session { params, state: State::Authorization { user: None }, errors: 0, auth_failures: 0 }
    }

    /// The greeting line.
    pub fn greeting(&self) -> Vec<u8> {
        ok(&format!("{} POP3 server (appnet) ready.", self.params.hostname))
    }

    /// Whether the session is logged in (the driver then uses the longer idle timeout).
    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, State::Transaction(_))
    }

    /// The logged-in user, if any.
    pub fn user(&self) -> Option<&str> {
        match &self.state {
            State::Transaction(t) => Some(&t.user),
            _ => None,
        }
    }

    /// The connection is now TLS (after STLS).
    pub fn tls_started(&mut self) {
        self.params.tls_active = true;
        self.params.tls_available = false;
    }

    fn plain_allowed(&self) -> bool {
        self.params.tls_active || self.params.allow_plain_auth
    }

    /// The answer to a command line longer than the limit.
    pub fn on_long_line(&mut self) -> Action {
        self.error("Command line too long")
    }

    fn error(&mut self, text: &str) -> Action {
        self.errors += 1;
        if self.errors >= self.params.max_errors.max(1) {
            self.state = State::Done;
            return Action::Close(err(&format!("{text}; too many errors, closing")));
        }
        Action::Send(err(text))
    }

    /// Handles one line (without CRLF).
    pub fn on_line<B: Backend<Drop = D>>(&mut self, line: &[u8], backend: &B, now: Instant) -> Action {
        if matches!(self.state, State::AuthPlain) {
            self.state = State::Authorization { user: None };
            let text = String::from_utf8_lossy(line).into_owned();
            if text == "*" {
                return Action::Send(err("[AUTH] Authentication aborted"));
            }
            return self.auth_plain(&text, backend, now);
        }
        let cmd = match wire::parse_command(line) {
            Ok(c) => c,
            Err(wire::BadCommand(why)) => return self.error(why),
        };
        match cmd {
            Command::Capa => return Action::Send(self.capa()),
            Command::Noop => {
                return if self.is_authenticated() {
                    Action::Send(ok(""))
                } else {
                    self.error("Not logged in")
                };
            }
            Command::Quit => return self.quit(),
            _ => {}
        }
        if matches!(self.state, State::Transaction(_)) {
            return self.transaction(cmd);
        }
        match cmd {
            Command::Stls if self.params.tls_available && !self.params.tls_active => {
                Action::StartTls(ok("Begin TLS negotiation now."))
            }
            Command::Stls => self.error("TLS not available or already active"),
            Command::User(name) => {
                if !self.plain_allowed() {
                    return self.error(
                        "[AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections",
                    );
                }
                self.state = State::Authorization { user: Some(name) };
                Action::Send(ok(""))
            }
            Command::Pass(password) => {
                let user = match &mut self.state {
                    State::Authorization { user } => user.take(),
                    _ => None,
                };
                match user {
                    None => self.error("No USER given"),
                    Some(user) => self.authenticate(&user, &password, backend, now),
                }
            }
            Command::Auth(None, _) => Action::Send(b"+OK\r\nPLAIN\r\n.\r\n".to_vec()),
            Command::Auth(Some(m), _) if m != "PLAIN" => self.error("Unsupported authentication mechanism"),
            Command::Auth(Some(_), _) if !self.plain_allowed() => {
                self.error("[AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections")
            }
            Command::Auth(Some(_), Some(ir)) => self.auth_plain(&ir, backend, now),
            Command::Auth(Some(_), None) => {
                self.state = State::AuthPlain;
                Action::Send(b"+ \r\n".to_vec())
            }
            _ => self.error("Unknown command in AUTHORIZATION state (log in first)"),
        }
    }

    fn capa(&self) -> Vec<u8> {
        let mut s = String::from(
            "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n",
        );
        if !self.is_authenticated() {
            if self.plain_allowed() {
                s.push_str("USER\r\nSASL PLAIN\r\n");
            }
            if self.params.tls_available && !self.params.tls_active {
                s.push_str("STLS\r\n");
            }
        }
        s.push_str("IMPLEMENTATION appnet\r\n.\r\n");
        s.into_bytes()
    }

    fn auth_plain<B: Backend<Drop = D>>(&mut self, b64: &str, backend: &B, now: Instant) -> Action {
        match crate::access::sasl_plain(b64) {
            Some((user, password)) => self.authenticate(&user, &password, backend, now),
            None => self.error("[AUTH] Invalid PLAIN response"),
        }
    }

    fn authenticate<B: Backend<Drop = D>>(
        &mut self,
        user: &str,
        password: &str,
        backend: &B,
        now: Instant,
    ) -> Action {
        match backend.login(user, password, now) {
            Ok(user) => match backend.open(&user) {
                Ok(drop) => {
                    let n = drop.messages().len();
                    let total: u64 = drop.messages().iter().map(|m| m.size).sum();
                    self.state = State::Transaction(Transaction {
                        user,
                        drop,
                        deleted: vec![false; n],
                        retrieved: vec![false; n],
                    });
                    Action::Send(ok(&format!("Logged in. {n} messages ({total} octets)")))
                }
                Err(OpenError::InUse) => {
                    self.state = State::Authorization { user: None };
                    Action::Send(err("[IN-USE] Mailbox is locked by another POP3 session"))
                }
                Err(OpenError::Io(e)) => {
                    tracing::warn!(user, "pop3: cannot open the maildrop: {e}");
                    Action::Send(err("[SYS/TEMP] Cannot open the mailbox"))
                }
            },
            Err(locked) => {
                self.auth_failures += 1;
                self.state = State::Authorization { user: None };
                let text = match locked {
                    Some(secs) => {
                        format!("[AUTH] Too many failed logins from your address; try again in {secs} s")
                    }
                    None => "[AUTH] Authentication failed".to_string(),
                };
                if self.auth_failures >= self.params.max_auth_failures.max(1) {
                    self.state = State::Done;
                    return Action::Close(err(&format!("{text}; closing")));
                }
                Action::SendDelayed(err(&text))
            }
        }
    }

    fn quit(&mut self) -> Action {
        let state = std::mem::replace(&mut self.state, State::Done);
        let State::Transaction(mut t) = state else {
            return Action::Close(ok("Logging out."));
        };
        let deleted: Vec<usize> = t.deleted.iter().enumerate().filter(|(_, d)| **d).map(|(i, _)| i).collect();
        let retrieved: Vec<usize> =
            t.retrieved.iter().enumerate().filter(|(i, r)| **r && !t.deleted[*i]).map(|(i, _)| i).collect();
        match t.drop.commit(&deleted, &retrieved) {
            Ok(()) => Action::Close(ok(&format!("Logging out, {} messages deleted.", deleted.len()))),
            Err(e) => {
                tracing::warn!(user = t.user, "pop3: update failed: {e}");
                Action::Close(err("[SYS/TEMP] Some deleted messages were not removed"))
            }
        }
    }

    fn transaction(&mut self, cmd: Command) -> Action {
        let State::Transaction(t) = &mut self.state else { return self.error("Not logged in") };
        // Resolves a message number to an index that exists and is not deleted.
        let pick = |t: &Transaction<D>, n: u32| -> Result<usize, &'static str> {
            let i = (n as usize).checked_sub(1).ok_or("No such message")?;
            match t.deleted.get(i) {
                None => Err("No such message"),
                Some(true) => Err("Message is deleted"),
                Some(false) => Ok(i),
            }
        };
        let result: Result<Action, &'static str> = (|| match cmd {
            Command::Stat => {
                let (n, size) = live(t).fold((0u64, 0u64), |(n, s), (_, m)| (n + 1, s + m.size));
                Ok(Action::Send(ok(&format!("{n} {size}"))))
            }
            Command::List(None) | Command::Uidl(None) => {
                let uidl = matches!(cmd, Command::Uidl(_));
                let mut out = b"+OK\r\n".to_vec();
                for (i, m) in live(t) {
                    let v = if uidl { m.uidl.clone() } else { m.size.to_string() };
                    out.extend_from_slice(format!("{} {v}\r\n", i + 1).as_bytes());
                }
                out.extend_from_slice(b".\r\n");
                Ok(Action::Send(out))
            }
            Command::List(Some(n)) => {
                let i = pick(t, n)?;
                Ok(Action::Send(ok(&format!("{n} {}", t.drop.messages()[i].size))))
            }
            Command::Uidl(Some(n)) => {
                let i = pick(t, n)?;
                Ok(Action::Send(ok(&format!("{n} {}", t.drop.messages()[i].uidl))))
            }
            Command::Retr(n) | Command::Top(n, _) => {
                let i = pick(t, n)?;
                let top = if let Command::Top(_, l) = cmd { Some(l) } else { None };
                let size = t.drop.messages()[i].size;
                match t.drop.retrieve(i) {
                    Ok(Some(data)) => {
                        if top.is_none() {
                            t.retrieved[i] = true;
                        }
                        let mut out = ok(&format!("{size} octets")).to_vec();
                        wire::encode_message(&data, top, &mut out);
                        Ok(Action::Send(out))
                    }
                    Ok(None) => Err("Message was removed by another client"),
                    Err(e) => {
                        tracing::warn!("pop3: read failed: {e}");
                        Err("[SYS/TEMP] Cannot read the message")
                    }
                }
            }
            Command::Dele(n) => {
                let i = pick(t, n)?;
                t.deleted[i] = true;
                Ok(Action::Send(ok("Marked to be deleted.")))
            }
            Command::Rset => {
                t.deleted.iter_mut().for_each(|d| *d = false);
                Ok(Action::Send(ok("")))
            }
            Command::Stls => Err("TLS cannot start after login"),
            Command::User(_) | Command::Pass(_) | Command::Auth(..) => Err("Already logged in"),
            Command::Capa | Command::Noop | Command::Quit => Ok(Action::Send(ok(""))),
        })();
        match result {
            Ok(a) => a,
            Err(why) => self.error(why),
        }
    }
}

fn live<D: Maildrop>(t: &Transaction<D>) -> impl Iterator<Item = (usize, &DropMessage)> {
    t.drop.messages().iter().enumerate().filter(|(i, _)| !t.deleted[*i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// What UPDATE was asked to do: (deleted, retrieved).
    type Committed = Arc<Mutex<Option<(Vec<usize>, Vec<usize>)>>>;

    struct MemDrop {
        messages: Vec<DropMessage>,
        data: Vec<Vec<u8>>,
        committed: Committed,
    }

    impl Maildrop for MemDrop {
        fn messages(&self) -> &[DropMessage] {
            &self.messages
        }
        fn retrieve(&mut self, index: usize) -> std::io::Result<Option<Vec<u8>>> {
            Ok(self.data.get(index).cloned())
        }
        fn commit(&mut self, deleted: &[usize], retrieved: &[usize]) -> std::io::Result<()> {
            *self.committed.lock().unwrap() = Some((deleted.to_vec(), retrieved.to_vec()));
            Ok(())
        }
    }

    struct Mem {
        in_use: bool,
        committed: Committed,
    }

    impl Backend for Mem {
        type Drop = MemDrop;
        fn login(&self, user: &str, password: &str, _now: Instant) -> Result<String, Option<u64>> {
            if user == "bob@x.org" && password == "pw" { Ok(user.to_string()) } else { Err(None) }
        }
        fn open(&self, _user: &str) -> Result<MemDrop, OpenError> {
            if self.in_use {
                return Err(OpenError::InUse);
            }
            let data = vec![b"A: 1\n\nbody\n.dot\n".to_vec(), b"B: 2\n\nx\n".to_vec()];
            let messages = data
                .iter()
                .enumerate()
                .map(|(i, d)| DropMessage {
                    size: crate::maildir::deliver::crlf_size(d),
                    uidl: format!("u{i}"),
                })
                .collect();
            Ok(MemDrop { messages, data, committed: self.committed.clone() })
        }
    }

    fn params() -> Params {
        Params {
            tls_available: false,
            tls_active: false,
            allow_plain_auth: true,
            max_errors: 3,
            max_auth_failures: 2,
            hostname: "h".into(),
        }
    }

    fn text(a: Action) -> String {
        match a {
            Action::Send(b) | Action::SendDelayed(b) | Action::Close(b) | Action::StartTls(b) => {
                String::from_utf8(b).unwrap()
            }
        }
    }

    #[test]
    fn transaction_and_update_states() {
        let committed = Arc::new(Mutex::new(None));
        let b = Mem { in_use: false, committed: committed.clone() };
        let now = Instant::now();
        let mut s: Session<MemDrop> = Session::new(params());
        assert!(text(s.on_line(b"STAT", &b, now)).starts_with("-ERR"));
        assert!(text(s.on_line(b"USER bob@x.org", &b, now)).starts_with("+OK"));
        assert!(text(s.on_line(b"PASS pw", &b, now)).starts_with("+OK Logged in. 2 messages (31 octets)"));
        assert_eq!(text(s.on_line(b"STAT", &b, now)), "+OK 2 31\r\n");
        assert_eq!(
            text(s.on_line(b"RETR 1", &b, now)),
            "+OK 20 octets\r\nA: 1\r\n\r\nbody\r\n..dot\r\n.\r\n"
        );
        assert!(text(s.on_line(b"DELE 2", &b, now)).starts_with("+OK"));
        assert!(text(s.on_line(b"LIST 2", &b, now)).starts_with("-ERR"));
        assert_eq!(text(s.on_line(b"UIDL", &b, now)), "+OK\r\n1 u0\r\n.\r\n");
        assert!(committed.lock().unwrap().is_none(), "nothing changes before QUIT");
        assert!(matches!(s.on_line(b"QUIT", &b, now), Action::Close(_)));
        assert_eq!(*committed.lock().unwrap(), Some((vec![1], vec![0])));
    }

    #[test]
    fn errors_locks_and_failures() {
        let committed = Arc::new(Mutex::new(None));
        let now = Instant::now();
        let busy = Mem { in_use: true, committed: committed.clone() };
        let mut s: Session<MemDrop> = Session::new(params());
        s.on_line(b"USER bob@x.org", &busy, now);
        assert!(text(s.on_line(b"PASS pw", &busy, now)).starts_with("-ERR [IN-USE]"));
        assert!(!s.is_authenticated());
        // Failed logins: delayed, then the session ends.
        let b = Mem { in_use: false, committed };
        let mut s: Session<MemDrop> = Session::new(params());
        s.on_line(b"USER bob@x.org", &b, now);
        assert!(matches!(s.on_line(b"PASS no", &b, now), Action::SendDelayed(_)));
        s.on_line(b"USER bob@x.org", &b, now);
        assert!(matches!(s.on_line(b"PASS no", &b, now), Action::Close(_)));
        // Bad commands: -ERR until the limit.
        let mut s: Session<MemDrop> = Session::new(params());
        assert!(matches!(s.on_line(b"FROB", &b, now), Action::Send(_)));
        assert!(matches!(s.on_line(b"\xff", &b, now), Action::Send(_)));
        assert!(matches!(s.on_line(b"RETR", &b, now), Action::Close(_)));
        // Without TLS and without --allow-plain-auth, USER is refused and CAPA does not offer it.
        let mut s: Session<MemDrop> = Session::new(Params { allow_plain_auth: false, ..params() });
        assert!(!text(s.on_line(b"CAPA", &b, now)).contains("USER"));
        assert!(text(s.on_line(b"USER bob@x.org", &b, now)).starts_with("-ERR [AUTH]"));
    }
}
