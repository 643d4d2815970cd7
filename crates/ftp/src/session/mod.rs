//! The control connection's state machine, without I/O (RFC 959 §5.4 sequencing): login state,
//! current directory, rename-from, REST offset, TYPE, PROT, and the pending data-connection
//! request. Input: a parsed command (or the outcome of an action) and `now`; output: replies
//! and [`Action`]s the driver performs (verify a password, open a passive listener, run a
//! transfer, touch the file system, start TLS, close).

mod actions;
pub mod path;

pub use actions::{
    Action, DataTarget, FsError, FsOp, FsOutcome, ListFormat, LoggedIn, Policy, StoreMode, Transfer,
};

use crate::wire::command::{Command, EpsvArg, ParseError, TransferType};
use crate::wire::listing::{Kind, list_line, mlsx_facts, timeval};
use crate::wire::reply::{Reply, quote_path};
use path::{PathError, VPath, display, resolve};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Instant;

/// The session.
#[derive(Debug)]
pub struct Session {
    policy: Policy,
    peer: IpAddr,
    pending_user: Option<String>,
    user: Option<LoggedIn>,
    failures: u32,
    cwd: VPath,
    rename_from: Option<VPath>,
    rest: u64,
    ttype: TransferType,
    data: Option<DataTarget>,
    epsv_all: bool,
    tls_active: bool,
    pbsz: bool,
    prot_private: bool,
    last_command: Option<Instant>,
}

fn reply(code: u16, text: impl Into<String>) -> Action {
    Action::Reply(Reply::new(code, text))
}

/// The 220 greeting.
pub fn greeting() -> Reply {
    Reply::new(220, "appnet FTP server ready.")
}

/// The FEAT list (RFC 2389), also used by HELP.
pub fn features(tls: bool) -> Vec<String> {
    let mut f = vec![
        " EPRT",
        " EPSV",
        " MDTM",
        " MLST type*;size*;modify*;perm*;UNIX.mode*;",
        " PASV",
        " REST STREAM",
        " SIZE",
        " TVFS",
        " UTF8",
    ];
    if tls {
        f.splice(0..0, [" AUTH TLS", " PBSZ", " PROT"]);
    }
    f.into_iter().map(String::from).collect()
}

impl Session {
    /// A new session for a client at `peer`.
    pub fn new(policy: Policy, peer: IpAddr) -> Session {
        Session {
            policy,
            peer,
            pending_user: None,
            user: None,
            failures: 0,
            cwd: Vec::new(),
            rename_from: None,
            rest: 0,
            ttype: TransferType::Ascii,
            data: None,
            epsv_all: false,
            tls_active: false,
            pbsz: false,
            prot_private: false,
            last_command: None,
        }
    }

    /// The logged-in user, if any.
    pub fn user(&self) -> Option<&LoggedIn> {
        self.user.as_ref()
    }

    /// The current directory.
    pub fn cwd(&self) -> &[String] {
        &self.cwd
    }

    /// Whether data connections must be TLS (PROT P).
    pub fn prot_private(&self) -> bool {
        self.prot_private
    }

    /// Whether the control connection runs TLS.
    pub fn tls_active(&self) -> bool {
        self.tls_active
    }

    /// The current representation type.
    pub fn transfer_type(&self) -> TransferType {
        self.ttype
    }

    /// A line that did not parse.
    pub fn parse_error(&mut self, e: &ParseError) -> Vec<Action> {
        let text = match e {
            ParseError::Empty | ParseError::Unknown(_) => "Unknown command.".to_string(),
            other => format!("{}.", capitalise(&other.to_string())),
        };
        vec![reply(e.code(), text)]
    }

    /// Handles one command received at `now`.
    pub fn handle(&mut self, cmd: Command, now: Instant) -> Vec<Action> {
        self.last_command = Some(now);
        // Commands allowed before login.
        match &cmd {
            Command::User(_) | Command::Pass(_) => {}
            Command::Quit => return vec![reply(221, "Goodbye."), Action::Close],
            Command::Feat => {
                return vec![Action::Reply(Reply::multi(211, "Features:", features(self.policy.tls), "End"))];
            }
            Command::Syst => return vec![reply(215, "UNIX Type: L8")],
            Command::Noop => return vec![reply(200, "NOOP ok.")],
            Command::Help(_) => {
                let body = vec![
                    " ABOR ACCT ALLO APPE AUTH CCC CDUP CWD DELE EPRT EPSV FEAT HELP LIST MDTM MKD".into(),
                    " MLSD MLST MODE NLST NOOP OPTS PASS PASV PBSZ PORT PROT PWD QUIT REIN REST RETR".into(),
                    " RMD RNFR RNTO SITE SIZE STAT STOR STOU STRU SYST TYPE USER XCUP XCWD XMKD XPWD XRMD"
                        .into(),
                ];
                return vec![Action::Reply(Reply::multi(
                    214,
                    "The following commands are recognized.",
                    body,
                    "Help OK.",
                ))];
            }
            Command::Opts(o) => return vec![self.opts(o)],
            Command::Auth(a) => return self.auth(a),
            Command::Pbsz(_) => {
                if !self.tls_active {
                    return vec![reply(503, "PBSZ needs a secure control connection (AUTH TLS first).")];
                }
                self.pbsz = true;
                return vec![reply(200, "PBSZ=0")];
            }
            Command::Prot(p) => return vec![self.prot(p)],
            Command::Ccc => {
                return vec![reply(534, "CCC is not allowed: the control connection stays protected.")];
            }
            Command::Abor => return vec![reply(225, "No transfer to abort.")],
            Command::Rein => {
                let keep_tls = self.tls_active;
                *self = Session::new(self.policy.clone(), self.peer);
                self.tls_active = keep_tls;
                return vec![Action::SetRoot(None), reply(220, "Service ready for new user.")];
            }
            Command::Stat(None) => return vec![Action::Reply(self.status())],
            _ if self.user.is_none() => return vec![reply(530, "Please login with USER and PASS.")],
            _ => {}
        }
        // A command other than RNTO drops a pending RNFR.
        if !matches!(cmd, Command::Rnto(_)) {
            self.rename_from.take_if(|_| !matches!(cmd, Command::Rnfr(_)));
        }
        // REST holds until the next transfer command uses it (clients send PASV in between).
        let rest = match cmd {
            Command::Retr(_)
            | Command::Stor(_)
            | Command::Appe(_)
            | Command::Stou(_)
            | Command::List(_)
            | Command::Nlst(_)
            | Command::Mlsd(_) => std::mem::take(&mut self.rest),
            _ => self.rest,
        };
        match cmd {
            Command::User(name) => self.user_cmd(name),
            Command::Pass(pw) => self.pass(pw),
            Command::Acct => vec![reply(502, "ACCT is not implemented.")],
            Command::Cwd(p) => self.fs_path(&p, FsOp::Cwd),
            Command::Cdup => {
                let mut up = self.cwd.clone();
                up.pop();
                vec![Action::Fs(FsOp::Cwd(up))]
            }
            Command::Pwd => {
                vec![reply(257, format!("{} is the current directory.", quote_path(&display(&self.cwd))))]
            }
            Command::Mkd(p) => self.write_op(&p, FsOp::Mkd),
            Command::Rmd(p) => self.write_op(&p, FsOp::Rmd),
            Command::Dele(p) => self.write_op(&p, FsOp::Dele),
            Command::Rnfr(p) => self.write_op(&p, FsOp::RenameFrom),
            Command::Rnto(p) => match self.rename_from.take() {
                None => vec![reply(503, "RNFR first.")],
                Some(from) => self.write_op(&p, |to| FsOp::Rename(from, to)),
            },
            Command::Port(addr) | Command::Eprt(addr) => self.port(addr),
            Command::Pasv if self.epsv_all => vec![reply(503, "EPSV ALL was sent: use EPSV.")],
            Command::Pasv => {
                if !self.peer.is_ipv4() && !is_mapped_v4(self.peer) {
                    return vec![reply(522, "PASV is IPv4 only; use EPSV (2).")];
                }
                self.data = Some(DataTarget::Passive);
                vec![Action::OpenPassive { extended: false }]
            }
            Command::Epsv(EpsvArg::All) => {
                self.epsv_all = true;
                vec![reply(200, "EPSV ALL ok.")]
            }
            Command::Epsv(_) => {
                self.data = Some(DataTarget::Passive);
                vec![Action::OpenPassive { extended: true }]
            }
            Command::Type(t) => {
                self.ttype = t;
                let name = if t == TransferType::Ascii { "ASCII" } else { "Binary" };
                vec![reply(200, format!("Switching to {name} mode."))]
            }
            Command::Stru(_) => vec![reply(200, "Structure set to F.")],
            Command::Mode(_) => vec![reply(200, "Mode set to S.")],
            Command::Allo => vec![reply(202, "ALLO is not needed.")],
            Command::Rest(n) => {
                self.rest = n;
                vec![reply(350, format!("Restarting at {n}. Send STOR or RETR to start the transfer."))]
            }
            Command::Retr(p) => match resolve(&self.cwd, &p) {
                Ok(path) => self.transfer(Transfer::Retr { path, offset: rest }),
                Err(e) => path_error(e),
            },
            Command::Stor(p) => self.store(&p, StoreMode::At(rest)),
            Command::Appe(p) => self.store(&p, StoreMode::Append),
            Command::Stou(hint) => {
                let p = hint.unwrap_or_else(|| "upload".to_string());
                self.store(&p, StoreMode::Unique)
            }
            Command::List(p) => self.list(p, ListFormat::Long),
            Command::Nlst(p) => self.list(p, ListFormat::Names),
            Command::Mlsd(p) => self.list(p, ListFormat::Machine),
            Command::Mlst(p) => self.fs_path(p.as_deref().unwrap_or("."), FsOp::Mlst),
            Command::Stat(Some(p)) => self.fs_path(&p, FsOp::StatList),
            Command::Size(p) => self.fs_path(&p, FsOp::Size),
            Command::Mdtm(p) => self.fs_path(&p, FsOp::Mdtm),
            Command::Site(_) => vec![reply(502, "SITE commands are not implemented.")],
            // Handled above.
            Command::Quit
            | Command::Feat
            | Command::Syst
            | Command::Noop
            | Command::Help(_)
            | Command::Opts(_)
            | Command::Auth(_)
            | Command::Pbsz(_)
            | Command::Prot(_)
            | Command::Ccc
            | Command::Abor
            | Command::Rein
            | Command::Stat(None) => vec![reply(500, "Unexpected command.")],
        }
    }

    fn user_cmd(&mut self, name: String) -> Vec<Action> {
        if self.user.is_some() {
            return vec![reply(530, "Already logged in; send REIN first to change user.")];
        }
        if self.policy.tls && self.policy.require_tls && !self.tls_active {
            return vec![reply(530, "Login only over TLS: send AUTH TLS first.")];
        }
        let anon = is_anonymous(&name);
        if anon && !self.policy.anonymous {
            self.pending_user = None;
            return vec![reply(530, "This server does not allow anonymous logins.")];
        }
        self.pending_user = Some(name);
        if anon {
            vec![reply(331, "Anonymous login ok, send your e-mail address as password.")]
        } else {
            vec![reply(331, "Please specify the password.")]
        }
    }

    fn pass(&mut self, password: String) -> Vec<Action> {
        if self.user.is_some() {
            return vec![reply(230, "Already logged in.")];
        }
        let Some(user) = self.pending_user.take() else {
            return vec![reply(503, "Login with USER first.")];
        };
        if is_anonymous(&user) {
            let who = LoggedIn {
                name: "anonymous".into(),
                home: self.policy.anonymous_root.clone(),
                write: self.policy.write,
            };
            return self.logged_in(who);
        }
        vec![Action::Verify { user, password }]
    }

    /// The outcome of [`Action::Verify`]: the user's home, or `None` for a wrong name or password.
    pub fn login_result(&mut self, user: String, home: Option<PathBuf>, _now: Instant) -> Vec<Action> {
        match home {
            Some(home) => self.logged_in(LoggedIn { name: user, home, write: self.policy.write }),
            None => {
                self.failures += 1;
                let mut out = vec![Action::Delay(self.policy.login_failure_delay)];
                if self.failures >= self.policy.max_login_failures.max(1) {
                    out.push(reply(421, "Too many failed logins; closing the connection."));
                    out.push(Action::Close);
                } else {
                    out.push(reply(530, "Login incorrect."));
                }
                out
            }
        }
    }

    fn logged_in(&mut self, who: LoggedIn) -> Vec<Action> {
        let text = if who.write { "Login successful." } else { "Login successful (read-only)." };
        self.user = Some(who.clone());
        self.cwd.clear();
        vec![Action::SetRoot(Some(who)), reply(230, text)]
    }

    fn opts(&self, o: &str) -> Action {
        let upper = o.trim().to_ascii_uppercase();
        if upper == "UTF8 ON" || upper == "UTF8" {
            reply(200, "Always in UTF8 mode.")
        } else if upper.starts_with("MLST") {
            reply(200, "MLST OPTS type;size;modify;perm;UNIX.mode;")
        } else {
            reply(501, "Option not understood.")
        }
    }

    fn auth(&mut self, a: &str) -> Vec<Action> {
        if !self.policy.tls {
            return vec![reply(502, "TLS is not enabled on this server (start it with --tls).")];
        }
        if self.tls_active {
            return vec![reply(503, "Already using TLS.")];
        }
        let a = a.trim().to_ascii_uppercase();
        if a != "TLS" && a != "SSL" && a != "TLS-C" {
            return vec![reply(504, "Only AUTH TLS is supported.")];
        }
        self.tls_active = true;
        vec![reply(234, "Proceed with TLS negotiation."), Action::StartTls]
    }

    fn prot(&mut self, p: &str) -> Action {
        if !self.tls_active {
            return reply(503, "PROT needs a secure control connection (AUTH TLS first).");
        }
        if !self.pbsz {
            return reply(503, "PBSZ first.");
        }
        match p.trim().to_ascii_uppercase().as_str() {
            "P" => {
                self.prot_private = true;
                reply(200, "PROT now Private.")
            }
            "C" => {
                self.prot_private = false;
                reply(200, "PROT now Clear.")
            }
            "S" | "E" => reply(536, "PROT level not supported."),
            _ => reply(504, "Unknown PROT level."),
        }
    }

    fn port(&mut self, addr: SocketAddr) -> Vec<Action> {
        if self.epsv_all {
            return vec![reply(503, "EPSV ALL was sent: use EPSV.")];
        }
        // The FTP bounce attack (RFC 2577): data connections go only back to the client.
        if canonical(addr.ip()) != canonical(self.peer) {
            return vec![reply(500, "Illegal PORT command: the address is not yours.")];
        }
        if addr.port() < 1024 {
            return vec![reply(500, "Illegal PORT command: privileged port.")];
        }
        self.data = Some(DataTarget::Active(addr));
        vec![Action::DropPassive, reply(200, "PORT command successful. Consider using PASV.")]
    }

    fn fs_path(&mut self, p: &str, op: impl FnOnce(VPath) -> FsOp) -> Vec<Action> {
        match resolve(&self.cwd, p) {
            Ok(path) => vec![Action::Fs(op(path))],
            Err(e) => path_error(e),
        }
    }

    fn may_write(&self) -> bool {
        self.user.as_ref().is_some_and(|u| u.write)
    }

    fn write_op(&mut self, p: &str, op: impl FnOnce(VPath) -> FsOp) -> Vec<Action> {
        if !self.may_write() {
            return vec![reply(550, "Permission denied: this server is read-only (start it with --write).")];
        }
        match resolve(&self.cwd, p) {
            Ok(path) if path.is_empty() => vec![reply(550, "Permission denied: that is the root.")],
            Ok(path) => vec![Action::Fs(op(path))],
            Err(e) => path_error(e),
        }
    }

    fn store(&mut self, p: &str, mode: StoreMode) -> Vec<Action> {
        if !self.may_write() {
            self.data = None;
            return vec![reply(550, "Permission denied: this server is read-only (start it with --write).")];
        }
        match resolve(&self.cwd, p) {
            Ok(path) if path.is_empty() => vec![reply(553, "Not a file name.")],
            Ok(path) => self.transfer(Transfer::Store { path, mode }),
            Err(e) => path_error(e),
        }
    }

    fn list(&mut self, p: Option<String>, format: ListFormat) -> Vec<Action> {
        match resolve(&self.cwd, p.as_deref().unwrap_or(".")) {
            Ok(path) => self.transfer(Transfer::List { path, format }),
            Err(e) => path_error(e),
        }
    }

    fn transfer(&mut self, transfer: Transfer) -> Vec<Action> {
        let Some(target) = self.data.take() else {
            return vec![reply(425, "Use PORT, PASV, EPRT or EPSV first.")];
        };
        // RFC 4217 §9: a server that requires TLS may refuse clear data connections.
        if self.policy.tls && self.policy.require_tls && !self.prot_private {
            if target == DataTarget::Passive {
                return vec![
                    Action::DropPassive,
                    reply(521, "Data connections must be encrypted: send PBSZ 0 and PROT P."),
                ];
            }
            return vec![reply(521, "Data connections must be encrypted: send PBSZ 0 and PROT P.")];
        }
        let ascii = self.ttype == TransferType::Ascii;
        vec![Action::Transfer { transfer, target, ascii }]
    }

    /// The outcome of an [`Action::Fs`].
    pub fn fs_done(&mut self, op: FsOp, result: Result<FsOutcome, FsError>, now_secs: i64) -> Vec<Action> {
        let r = match (op, result) {
            (_, Err(e)) => reply(550, e.text()),
            (FsOp::Cwd(p), Ok(_)) => {
                self.cwd = p;
                reply(250, "Directory successfully changed.")
            }
            (FsOp::Mkd(p), Ok(_)) => reply(257, format!("{} created.", quote_path(&display(&p)))),
            (FsOp::Rmd(_), Ok(_)) => reply(250, "Remove directory operation successful."),
            (FsOp::Dele(_), Ok(_)) => reply(250, "Delete operation successful."),
            (FsOp::RenameFrom(p), Ok(_)) => {
                self.rename_from = Some(p);
                reply(350, "Ready for RNTO.")
            }
            (FsOp::Rename(..), Ok(_)) => reply(250, "Rename successful."),
            (FsOp::Size(_), Ok(FsOutcome::Entry(e))) => match e.kind {
                Kind::File => reply(213, e.size.to_string()),
                _ => reply(550, "Could not get file size: not a plain file."),
            },
            (FsOp::Mdtm(_), Ok(FsOutcome::Entry(e))) => reply(213, timeval(e.mtime)),
            (FsOp::Mlst(p), Ok(FsOutcome::Entry(e))) => {
                let facts = mlsx_facts(&e, &display(&p), false, self.may_write());
                Action::Reply(Reply::multi(250, "Listing", vec![format!(" {facts}")], "End"))
            }
            (FsOp::StatList(p), Ok(FsOutcome::Entries(list))) => {
                let body = list.iter().map(|e| list_line(e, now_secs)).collect();
                Action::Reply(Reply::multi(213, format!("Status of {}:", display(&p)), body, "End of status"))
            }
            (FsOp::StatList(p), Ok(FsOutcome::Entry(e))) => {
                let body = vec![list_line(&e, now_secs)];
                Action::Reply(Reply::multi(213, format!("Status of {}:", display(&p)), body, "End of status"))
            }
            (_, Ok(_)) => reply(451, "Internal error: unexpected result."),
        };
        vec![r]
    }

    /// STAT without an argument and no transfer running (RFC 959: 211).
    fn status(&self) -> Reply {
        let mut body = vec![format!(" Connected to {}", self.peer)];
        match &self.user {
            Some(u) => body.push(format!(" Logged in as {}", u.name)),
            None => body.push(" Not logged in".into()),
        }
        let t = if self.ttype == TransferType::Ascii { "ASCII" } else { "BINARY" };
        body.push(format!(" TYPE: {t}, STRUcture: File, MODE: Stream"));
        body.push(format!(" Control connection: {}", if self.tls_active { "TLS" } else { "plain text" }));
        body.push(" No data connection".into());
        Reply::multi(211, "appnet FTP server status:", body, "End of status")
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn path_error(e: PathError) -> Vec<Action> {
    vec![reply(553, format!("Bad path: {e}."))]
}

/// `anonymous` and `ftp` are the anonymous login names (RFC 1635).
pub fn is_anonymous(name: &str) -> bool {
    name.eq_ignore_ascii_case("anonymous") || name.eq_ignore_ascii_case("ftp")
}

fn is_mapped_v4(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some())
}

/// An IPv4-mapped IPv6 address compares as its IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests;
