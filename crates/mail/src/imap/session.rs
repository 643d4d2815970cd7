//! One IMAP session (RFC 3501 states: not authenticated → authenticated → selected → logout)
//! over the user's Maildir++. It takes decoded commands and returns the bytes to send; the
//! driver (`server.rs`) owns the socket, literals, TLS and IDLE timing. Storage calls are
//! blocking file operations: the driver runs this on tokio's blocking pool.

use std::collections::HashSet;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::fetch::{Macro, MacroOrMessageDataItemNames, MessageDataItemName, Part, Section};
use imap_codec::imap_types::flag::{StoreResponse, StoreType};
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use imap_codec::imap_types::status::StatusDataItemName;

use super::mailboxes;
use super::mime;
use super::wire::{self, string};
use crate::access::{AccessContext, LoginRefused};
use crate::maildir::flags::{self, Keywords, Mode};
use crate::maildir::folder::{Entry, Folder};

/// What the driver does with a command's answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Send the bytes; go on.
    Send(Vec<u8>),
    /// Send the bytes after the failed-login delay.
    Delayed(Vec<u8>),
    /// Send the bytes, then run the TLS handshake.
    StartTls(Vec<u8>),
    /// Send the bytes, then read one SASL response line (AUTHENTICATE without initial
    /// response).
    SaslContinue(Vec<u8>),
    /// Send the bytes (`+ idling`), then wait for `DONE`, polling [`Session::idle_poll`].
    Idle(Vec<u8>),
    /// Send the bytes and close.
    Close(Vec<u8>),
}

struct Selected {
    name: String,
    folder: Folder,
    read_only: bool,
    msgs: Vec<Entry>,
    recent: HashSet<u32>,
    validity: u32,
    next_uid: u32,
    keywords: Keywords,
}

/// One IMAP session.
pub struct Session {
    ctx: Arc<AccessContext>,
    ip: IpAddr,
    tls_active: bool,
    user: Option<String>,
    root: PathBuf,
    selected: Option<Selected>,
    errors: u32,
    auth_failures: u32,
    pending_tag: Option<String>,
    logged_out: bool,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(user) = &self.user
            && let Ok(mut s) = self.ctx.sessions.lock()
            && let Some(n) = s.get_mut(user)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.remove(user);
            }
        }
    }
}

fn tagged(tag: &str, status: &str, text: &str) -> Vec<u8> {
    format!("{tag} {status} {text}\r\n").into_bytes()
}

const SYSTEM_FLAGS: &str = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";

impl Session {
    /// A new session for a client at `ip` (`tls_active` for implicit TLS).
    pub fn new(ctx: Arc<AccessContext>, ip: IpAddr, tls_active: bool) -> Session {
        Session {
            ctx,
            ip,
            tls_active,
            user: None,
            root: PathBuf::new(),
            selected: None,
            errors: 0,
            auth_failures: 0,
            pending_tag: None,
            logged_out: false,
        }
    }

    /// The greeting.
    pub fn greeting(&self) -> Vec<u8> {
        format!(
            "* OK [CAPABILITY {}] {} IMAP4rev1 server (appnet) ready.\r\n",
            self.capabilities(),
            self.ctx.hostname
        )
        .into_bytes()
    }

    /// Whether a user is logged in (the driver then uses the autologout timer).
    pub fn is_authenticated(&self) -> bool {
        self.user.is_some()
    }

    /// TLS is now active.
    pub fn tls_started(&mut self) {
        self.tls_active = true;
    }

    fn plain_allowed(&self) -> bool {
        self.tls_active || self.ctx.allow_plain_auth
    }

    fn capabilities(&self) -> String {
        let mut caps = String::from("IMAP4rev1 LITERAL+ SASL-IR");
        if self.user.is_none() {
            if self.ctx.tls.is_some() && !self.tls_active {
                caps.push_str(" STARTTLS");
            }
            if self.plain_allowed() {
                caps.push_str(" AUTH=PLAIN");
            } else {
                caps.push_str(" LOGINDISABLED");
            }
        } else {
            caps.push_str(" IDLE NAMESPACE UIDPLUS MOVE UNSELECT CHILDREN");
        }
        caps
    }

    /// A command that could not be decoded: `BAD` (tagged when the tag was readable).
    pub fn on_bad(&mut self, tag: Option<&str>, why: &str) -> Outcome {
        self.errors += 1;
        let text = match tag {
            Some(t) => tagged(t, "BAD", why),
            None => format!("* BAD {why}\r\n").into_bytes(),
        };
        if self.errors >= self.ctx.limits.max_errors.max(1) {
            let mut out = text;
            out.extend_from_slice(b"* BYE Too many invalid commands.\r\n");
            return Outcome::Close(out);
        }
        Outcome::Send(text)
    }

    /// Handles one decoded command.
    pub fn on_command(&mut self, cmd: Command<'_>, now: Instant) -> Outcome {
        let tag = cmd.tag.as_ref().to_string();
        let mut out = Vec::new();
        let outcome = self.dispatch(&tag, cmd.body, now, &mut out);
        match outcome {
            Ok(Some(o)) => o,
            Ok(None) => Outcome::Send(out),
            Err(resp) => {
                out.extend_from_slice(&resp);
                Outcome::Send(out)
            }
        }
    }

    fn dispatch(
        &mut self,
        tag: &str,
        body: CommandBody<'_>,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<Option<Outcome>, Vec<u8>> {
        let no = |text: &str| Err(tagged(tag, "NO", text));
        let bad = |text: &str| Err(tagged(tag, "BAD", text));
        // Any state.
        match &body {
            CommandBody::Capability => {
                out.extend_from_slice(format!("* CAPABILITY {}\r\n", self.capabilities()).as_bytes());
                out.extend_from_slice(&tagged(tag, "OK", "CAPABILITY completed"));
                return Ok(None);
            }
            CommandBody::Noop => {
                self.refresh(out, true);
                out.extend_from_slice(&tagged(tag, "OK", "NOOP completed"));
                return Ok(None);
            }
            CommandBody::Logout => {
                self.logged_out = true;
                out.extend_from_slice(b"* BYE Logging out\r\n");
                out.extend_from_slice(&tagged(tag, "OK", "LOGOUT completed"));
                return Ok(Some(Outcome::Close(std::mem::take(out))));
            }
            _ => {}
        }
        if self.user.is_none() {
            return match body {
                CommandBody::StartTLS if self.ctx.tls.is_some() && !self.tls_active => {
                    Ok(Some(Outcome::StartTls(tagged(tag, "OK", "Begin TLS negotiation now"))))
                }
                CommandBody::StartTLS => bad("TLS not available or already active"),
                CommandBody::Login { username, password } => {
                    if !self.plain_allowed() {
                        return no(
                            "[PRIVACYREQUIRED] Plaintext authentication disallowed without TLS (use STARTTLS)",
                        );
                    }
                    let user = String::from_utf8_lossy(username.as_ref()).into_owned();
                    let pass = String::from_utf8_lossy(password.declassify().as_ref()).into_owned();
                    Ok(Some(self.login(tag, &user, &pass, now)))
                }
                CommandBody::Authenticate { mechanism, initial_response } => {
                    if !mechanism.as_ref().eq_ignore_ascii_case("PLAIN") {
                        return no("Unsupported authentication mechanism");
                    }
                    if !self.plain_allowed() {
                        return no(
                            "[PRIVACYREQUIRED] Plaintext authentication disallowed without TLS (use STARTTLS)",
                        );
                    }
                    match initial_response {
                        Some(ir) => {
                            use base64::Engine;
                            let b64 =
                                base64::engine::general_purpose::STANDARD.encode(ir.declassify().as_ref());
                            Ok(Some(self.sasl_response(tag, &b64, now)))
                        }
                        None => {
                            self.pending_tag = Some(tag.to_string());
                            Ok(Some(Outcome::SaslContinue(b"+ \r\n".to_vec())))
                        }
                    }
                }
                _ => bad("Log in first (LOGIN or AUTHENTICATE)"),
            };
        }
        let selected_only = matches!(
            body,
            CommandBody::Check
                | CommandBody::Close
                | CommandBody::Unselect
                | CommandBody::Expunge
                | CommandBody::ExpungeUid { .. }
                | CommandBody::Search { .. }
                | CommandBody::Fetch { .. }
                | CommandBody::Store { .. }
                | CommandBody::Copy { .. }
                | CommandBody::Move { .. }
        );
        if selected_only && self.selected.is_none() {
            return bad("No mailbox selected");
        }
        // Expunges may not be announced during FETCH, STORE and SEARCH (RFC 3501 §7.4.1).
        let allow_expunge = !matches!(
            body,
            CommandBody::Fetch { uid: false, .. }
                | CommandBody::Store { uid: false, .. }
                | CommandBody::Search { uid: false, .. }
        );
        let result = self.authenticated(tag, body, out);
        if !matches!(result, Ok(Some(_))) && self.selected.is_some() {
            // Other sessions' changes, announced before the tagged response.
            let mut updates = Vec::new();
            self.refresh(&mut updates, allow_expunge);
            if !updates.is_empty() {
                // Put updates right before the tagged line already in `out` or the error.
                match result {
                    Err(resp) => {
                        out.extend_from_slice(&updates);
                        return Err(resp);
                    }
                    Ok(r) => {
                        let cut = last_line_start(out);
                        let tail = out.split_off(cut);
                        out.extend_from_slice(&updates);
                        out.extend_from_slice(&tail);
                        return Ok(r);
                    }
                }
            }
        }
        result
    }

    fn login(&mut self, tag: &str, user: &str, pass: &str, now: Instant) -> Outcome {
        match self.ctx.login(self.ip, user, pass, now) {
            Ok(canonical) => {
                let Some(root) = self.ctx.maildir_of(&canonical) else {
                    return Outcome::Send(tagged(tag, "NO", "[UNAVAILABLE] Invalid user"));
                };
                {
                    let Ok(mut sessions) = self.ctx.sessions.lock() else {
                        return Outcome::Send(tagged(tag, "NO", "[UNAVAILABLE] Try again"));
                    };
                    let n = sessions.entry(canonical.clone()).or_insert(0);
                    if *n >= self.ctx.limits.max_sessions_per_user {
                        return Outcome::Send(tagged(tag, "NO", "[LIMIT] Too many sessions for this user"));
                    }
                    *n += 1;
                }
                if !root.join("cur").is_dir()
                    && let Err(e) = crate::maildir::create(&root)
                {
                    tracing::warn!(user = canonical, "imap: cannot create the Maildir: {e}");
                }
                self.user = Some(canonical);
                self.root = root;
                let text = format!("[CAPABILITY {}] Logged in", self.capabilities());
                Outcome::Send(tagged(tag, "OK", &text))
            }
            Err(refused) => {
                self.auth_failures += 1;
                let text = match refused {
                    LoginRefused::BadCredentials => {
                        "[AUTHENTICATIONFAILED] Authentication failed.".to_string()
                    }
                    LoginRefused::LockedOut(left) => format!(
                        "[AUTHENTICATIONFAILED] Too many failed logins from your address; try again in {} s",
                        left.as_secs().max(1)
                    ),
                };
                let resp = tagged(tag, "NO", &text);
                if self.auth_failures >= self.ctx.limits.max_auth_failures.max(1) {
                    let mut out = resp;
                    out.extend_from_slice(b"* BYE Too many failed logins.\r\n");
                    return Outcome::Close(out);
                }
                Outcome::Delayed(resp)
            }
        }
    }

    /// The SASL PLAIN response line after `+ ` (or `*` to cancel).
    pub fn on_sasl_line(&mut self, line: &[u8], now: Instant) -> Outcome {
        let tag = self.pending_tag.take().unwrap_or_else(|| "*".to_string());
        let text = String::from_utf8_lossy(line).trim().to_string();
        if text == "*" {
            return Outcome::Send(tagged(&tag, "BAD", "Authentication cancelled"));
        }
        self.sasl_response(&tag, &text, now)
    }

    fn sasl_response(&mut self, tag: &str, b64: &str, now: Instant) -> Outcome {
        match crate::access::sasl_plain(b64) {
            Some((user, pass)) => self.login(tag, &user, &pass, now),
            None => {
                self.errors += 1;
                Outcome::Send(tagged(tag, "BAD", "Invalid SASL PLAIN response"))
            }
        }
    }

    fn mailbox_name(m: &Mailbox<'_>) -> String {
        match m {
            Mailbox::Inbox => "INBOX".to_string(),
            Mailbox::Other(o) => {
                let s = String::from_utf8_lossy(o.as_ref()).into_owned();
                if s.eq_ignore_ascii_case("INBOX") { "INBOX".to_string() } else { s }
            }
        }
    }

    fn open_folder(&self, name: &str) -> Option<Folder> {
        let dir = mailboxes::dir_of(&self.root, name)?;
        Folder::open(&dir).ok()
    }

    fn authenticated(
        &mut self,
        tag: &str,
        body: CommandBody<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Option<Outcome>, Vec<u8>> {
        let no = |text: &str| -> Result<Option<Outcome>, Vec<u8>> { Err(tagged(tag, "NO", text)) };
        let bad = |text: &str| -> Result<Option<Outcome>, Vec<u8>> { Err(tagged(tag, "BAD", text)) };
        let ok = |out: &mut Vec<u8>, text: &str| -> Result<Option<Outcome>, Vec<u8>> {
            out.extend_from_slice(&tagged(tag, "OK", text));
            Ok(None)
        };
        let (is_subscribe, is_lsub, is_move) = (
            matches!(body, CommandBody::Subscribe { .. }),
            matches!(body, CommandBody::Lsub { .. }),
            matches!(body, CommandBody::Move { .. }),
        );
        match body {
            CommandBody::StartTLS | CommandBody::Login { .. } | CommandBody::Authenticate { .. } => {
                bad("Already logged in")
            }
            CommandBody::Namespace => {
                out.extend_from_slice(b"* NAMESPACE ((\"\" \".\")) NIL NIL\r\n");
                ok(out, "NAMESPACE completed")
            }
            CommandBody::Select { mailbox, .. } => {
                self.select_mode(tag, &Self::mailbox_name(&mailbox), false, out)
            }
            CommandBody::Examine { mailbox, .. } => {
                self.select_mode(tag, &Self::mailbox_name(&mailbox), true, out)
            }
            CommandBody::Unselect | CommandBody::Close => {
                let closing = matches!(body, CommandBody::Close);
                if closing
                    && let Some(sel) = &self.selected
                    && !sel.read_only
                {
                    for e in sel.msgs.iter().filter(|e| e.info.contains('T')) {
                        let _ = sel.folder.expunge(e);
                    }
                }
                self.selected = None;
                ok(out, if closing { "CLOSE completed" } else { "UNSELECT completed" })
            }
            CommandBody::Check => ok(out, "CHECK completed"),
            CommandBody::Create { mailbox } => {
                let name = Self::mailbox_name(&mailbox);
                let name = name.trim_end_matches(mailboxes::DELIMITER).to_string();
                if name.eq_ignore_ascii_case("INBOX") {
                    return no("[ALREADYEXISTS] INBOX exists");
                }
                if !mailboxes::valid_name(&name) {
                    return no("[CANNOT] Invalid mailbox name");
                }
                match mailboxes::create(&self.root, &name) {
                    Ok(()) => ok(out, "CREATE completed"),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        no("[ALREADYEXISTS] Mailbox exists")
                    }
                    Err(e) => {
                        tracing::warn!("imap create: {e}");
                        no("[SERVERBUG] Cannot create the mailbox")
                    }
                }
            }
            CommandBody::Delete { mailbox } => {
                let name = Self::mailbox_name(&mailbox);
                if self.selected.as_ref().is_some_and(|s| s.name == name) {
                    self.selected = None;
                }
                match mailboxes::delete(&self.root, &name) {
                    Ok(()) => ok(out, "DELETE completed"),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => no("[NONEXISTENT] No such mailbox"),
                    Err(_) => no("[CANNOT] Cannot delete this mailbox"),
                }
            }
            CommandBody::Rename { from, to } => {
                let (from, to) = (Self::mailbox_name(&from), Self::mailbox_name(&to));
                match mailboxes::rename(&self.root, &from, &to) {
                    Ok(()) => ok(out, "RENAME completed"),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => no("[NONEXISTENT] No such mailbox"),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        no("[ALREADYEXISTS] Target exists")
                    }
                    Err(_) => no("[CANNOT] Cannot rename this mailbox"),
                }
            }
            CommandBody::Subscribe { mailbox } | CommandBody::Unsubscribe { mailbox } => {
                let on = is_subscribe;
                let name = Self::mailbox_name(&mailbox);
                match mailboxes::set_subscribed(&self.root, &name, on) {
                    Ok(()) => ok(out, if on { "SUBSCRIBE completed" } else { "UNSUBSCRIBE completed" }),
                    Err(_) => no("[SERVERBUG] Cannot save subscriptions"),
                }
            }
            CommandBody::List { reference, mailbox_wildcard }
            | CommandBody::Lsub { reference, mailbox_wildcard } => {
                let lsub = is_lsub;
                let reference = Self::mailbox_name(&reference);
                let pattern = match &mailbox_wildcard {
                    ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).into_owned(),
                    ListMailbox::String(s) => String::from_utf8_lossy(s.as_ref()).into_owned(),
                };
                let word = if lsub { "LSUB" } else { "LIST" };
                if pattern.is_empty() && !lsub {
                    out.extend_from_slice(b"* LIST (\\Noselect) \".\" \"\"\r\n");
                    return ok(out, "LIST completed");
                }
                let full = format!("{reference}{pattern}");
                let all = mailboxes::list(&self.root);
                let names: Vec<String> =
                    if lsub { mailboxes::subscriptions(&self.root) } else { all.clone() };
                for name in names.iter().filter(|n| mailboxes::matches(&full, n)) {
                    let children =
                        if mailboxes::has_children(&all, name) { "\\HasChildren" } else { "\\HasNoChildren" };
                    let attrs = if lsub && !all.contains(name) {
                        "\\Noselect".to_string()
                    } else {
                        children.to_string()
                    };
                    out.extend_from_slice(format!("* {word} ({attrs}) \".\" ").as_bytes());
                    string(out, name.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                ok(out, &format!("{word} completed"))
            }
            CommandBody::Status { mailbox, item_names } => {
                let name = Self::mailbox_name(&mailbox);
                let Some(mut folder) = self.open_folder(&name) else {
                    return no("[NONEXISTENT] No such mailbox");
                };
                let Ok((snap, _)) = folder.scan(false) else {
                    return no("[SERVERBUG] Cannot read the mailbox");
                };
                let mut items = Vec::new();
                for item in item_names.iter() {
                    let v = match item {
                        StatusDataItemName::Messages => format!("MESSAGES {}", snap.messages.len()),
                        StatusDataItemName::Recent => {
                            format!("RECENT {}", snap.messages.iter().filter(|m| m.in_new).count())
                        }
                        StatusDataItemName::UidNext => format!("UIDNEXT {}", snap.next_uid),
                        StatusDataItemName::UidValidity => format!("UIDVALIDITY {}", snap.validity),
                        StatusDataItemName::Unseen => format!(
                            "UNSEEN {}",
                            snap.messages.iter().filter(|m| !m.info.contains('S')).count()
                        ),
                        StatusDataItemName::Deleted => format!(
                            "DELETED {}",
                            snap.messages.iter().filter(|m| m.info.contains('T')).count()
                        ),
                        _ => continue,
                    };
                    items.push(v);
                }
                out.extend_from_slice(b"* STATUS ");
                string(out, name.as_bytes());
                out.extend_from_slice(format!(" ({})\r\n", items.join(" ")).as_bytes());
                ok(out, "STATUS completed")
            }
            CommandBody::Append { mailbox, flags: fl, date, message } => {
                let name = Self::mailbox_name(&mailbox);
                let Some(mut folder) = self.open_folder(&name) else {
                    return no("[TRYCREATE] No such mailbox");
                };
                let data = match &message {
                    imap_codec::imap_types::extensions::binary::LiteralOrLiteral8::Literal(l) => {
                        l.data().to_vec()
                    }
                    imap_codec::imap_types::extensions::binary::LiteralOrLiteral8::Literal8(l) => {
                        l.data.to_vec()
                    }
                };
                let mut keywords = Keywords::load(&folder.dir);
                let before = keywords.clone();
                let letters: Vec<u8> =
                    fl.iter().filter_map(|f| flags::letter(&f.to_string(), &mut keywords, true)).collect();
                if keywords != before {
                    let _ = folder.save_keywords(&keywords);
                }
                let info = flags::apply("", &letters, Mode::Add);
                let when = date.map(|d| {
                    let ts = d.as_ref().timestamp();
                    if ts >= 0 {
                        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(ts as u64)
                    } else {
                        SystemTime::UNIX_EPOCH
                    }
                });
                let stored = crate::maildir::deliver::to_lf(&data);
                match folder.append(&stored, &info, when) {
                    Ok(uid) => {
                        let validity = folder.scan(false).map(|(s, _)| s.validity).unwrap_or(0);
                        ok(out, &format!("[APPENDUID {validity} {uid}] APPEND completed"))
                    }
                    Err(e) => {
                        tracing::warn!("imap append: {e}");
                        no("[SERVERBUG] Cannot store the message")
                    }
                }
            }
            CommandBody::Idle => {
                self.pending_tag = Some(tag.to_string());
                Ok(Some(Outcome::Idle(b"+ idling\r\n".to_vec())))
            }
            CommandBody::Expunge | CommandBody::ExpungeUid { .. } => {
                let only = match &body {
                    CommandBody::ExpungeUid { sequence_set } => Some(self.resolve(sequence_set, true)),
                    _ => None,
                };
                let Some(sel) = self.selected.as_mut() else { return bad("No mailbox selected") };
                if sel.read_only {
                    return no("[READ-ONLY] Mailbox is read-only");
                }
                let mut gone = Vec::new();
                for (i, e) in sel.msgs.iter().enumerate() {
                    if e.info.contains('T')
                        && only.as_ref().is_none_or(|o| o.contains(&i))
                        && sel.folder.expunge(e).is_ok()
                    {
                        gone.push(i);
                    }
                }
                for &i in gone.iter().rev() {
                    out.extend_from_slice(format!("* {} EXPUNGE\r\n", i + 1).as_bytes());
                    let e = sel.msgs.remove(i);
                    sel.recent.remove(&e.uid);
                }
                sel.folder.invalidate();
                ok(out, "EXPUNGE completed")
            }
            CommandBody::Search { charset, criteria, uid } => {
                if let Some(cs) = &charset {
                    let c = cs.as_ref().to_ascii_uppercase();
                    if c != "US-ASCII" && c != "UTF-8" {
                        return no("[BADCHARSET (US-ASCII UTF-8)] Unsupported charset");
                    }
                }
                let key = SearchKey::And(criteria);
                let hits = self.search(&key, uid);
                out.extend_from_slice(b"* SEARCH");
                for h in hits {
                    out.extend_from_slice(format!(" {h}").as_bytes());
                }
                out.extend_from_slice(b"\r\n");
                ok(out, "SEARCH completed")
            }
            CommandBody::Fetch { sequence_set, macro_or_item_names, uid, .. } => {
                let items: Vec<MessageDataItemName> = match macro_or_item_names {
                    MacroOrMessageDataItemNames::Macro(m) => match m {
                        Macro::All => vec![
                            MessageDataItemName::Flags,
                            MessageDataItemName::InternalDate,
                            MessageDataItemName::Rfc822Size,
                            MessageDataItemName::Envelope,
                        ],
                        Macro::Fast => vec![
                            MessageDataItemName::Flags,
                            MessageDataItemName::InternalDate,
                            MessageDataItemName::Rfc822Size,
                        ],
                        _ => vec![
                            MessageDataItemName::Flags,
                            MessageDataItemName::InternalDate,
                            MessageDataItemName::Rfc822Size,
                            MessageDataItemName::Envelope,
                            MessageDataItemName::Body,
                        ],
                    },
                    MacroOrMessageDataItemNames::MessageDataItemNames(v) => v,
                };
                let targets = self.resolve(&sequence_set, uid);
                let mut missing = false;
                for i in targets {
                    if !self.fetch_one(i, &items, uid, out) {
                        missing = true;
                    }
                }
                if missing {
                    return no("Some messages were expunged by another session");
                }
                ok(out, "FETCH completed")
            }
            CommandBody::Store { sequence_set, kind, response, flags: fl, uid, .. } => {
                let targets = self.resolve(&sequence_set, uid);
                let Some(sel) = self.selected.as_mut() else { return bad("No mailbox selected") };
                if sel.read_only {
                    // As Dovecot: the client is told, the session goes on.
                    return ok(out, "Store ignored with read-only mailbox");
                }
                let before = sel.keywords.clone();
                let letters: Vec<u8> = fl
                    .iter()
                    .filter_map(|f| flags::letter(&f.to_string(), &mut sel.keywords, true))
                    .collect();
                if sel.keywords != before {
                    let kw = sel.keywords.clone();
                    let _ = sel.folder.save_keywords(&kw);
                    out.extend_from_slice(
                        format!("* FLAGS ({SYSTEM_FLAGS}{})\r\n", keyword_list(&sel.keywords)).as_bytes(),
                    );
                }
                let mode = match kind {
                    StoreType::Add => Mode::Add,
                    StoreType::Remove => Mode::Remove,
                    StoreType::Replace => Mode::Replace,
                };
                for i in targets {
                    let e = sel.msgs[i].clone();
                    let info = flags::apply(&e.info, &letters, mode);
                    if let Ok(Some(now)) = sel.folder.set_info(&e, &info) {
                        sel.msgs[i] = Entry { uid: e.uid, ..now };
                    }
                    if response == StoreResponse::Answer {
                        let e = &sel.msgs[i];
                        out.extend_from_slice(
                            format!(
                                "* {} FETCH (FLAGS ({})",
                                i + 1,
                                flag_text(&e.info, &sel.keywords, sel.recent.contains(&e.uid))
                            )
                            .as_bytes(),
                        );
                        if uid {
                            out.extend_from_slice(format!(" UID {}", e.uid).as_bytes());
                        }
                        out.extend_from_slice(b")\r\n");
                    }
                }
                ok(out, "STORE completed")
            }
            CommandBody::Copy { sequence_set, mailbox, uid }
            | CommandBody::Move { sequence_set, mailbox, uid } => {
                let moving = is_move;
                let targets = self.resolve(&sequence_set, uid);
                let name = Self::mailbox_name(&mailbox);
                let Some(mut dest) = self.open_folder(&name) else {
                    return no("[TRYCREATE] No such mailbox");
                };
                let Some(sel) = self.selected.as_mut() else { return bad("No mailbox selected") };
                if moving && sel.read_only {
                    return no("[READ-ONLY] Mailbox is read-only");
                }
                let mut src_uids = Vec::new();
                let mut dst_uids = Vec::new();
                let mut dest_kw = Keywords::load(&dest.dir);
                let dest_kw_before = dest_kw.clone();
                for &i in &targets {
                    let e = &sel.msgs[i];
                    // Keyword letters are per folder: map them by name.
                    let names = flags::imap_flags(&e.info, &sel.keywords);
                    let letters: Vec<u8> =
                        names.iter().filter_map(|n| flags::letter(n, &mut dest_kw, true)).collect();
                    let mut info = flags::apply("", &letters, Mode::Add);
                    if e.info.contains('P') {
                        info = flags::apply(&info, b"P", Mode::Add);
                    }
                    match dest.copy_from(&sel.folder, e, &info) {
                        Ok(Some(new_uid)) => {
                            src_uids.push(e.uid);
                            dst_uids.push(new_uid);
                        }
                        Ok(None) => {}
                        Err(err) => {
                            tracing::warn!("imap copy: {err}");
                            return no("[SERVERBUG] Copy failed");
                        }
                    }
                }
                if dest_kw != dest_kw_before {
                    let _ = dest.save_keywords(&dest_kw);
                }
                let validity = dest.scan(false).map(|(s, _)| s.validity).unwrap_or(0);
                let code = if src_uids.is_empty() {
                    String::new()
                } else {
                    format!("[COPYUID {validity} {} {}] ", uid_set(&src_uids), uid_set(&dst_uids))
                };
                if moving {
                    if !code.is_empty() {
                        out.extend_from_slice(format!("* OK {code}Moved\r\n").as_bytes());
                    }
                    let mut done: Vec<usize> = targets.clone();
                    done.sort_unstable();
                    for &i in done.iter().rev() {
                        let e = sel.msgs[i].clone();
                        if sel.folder.expunge(&e).is_ok() {
                            out.extend_from_slice(format!("* {} EXPUNGE\r\n", i + 1).as_bytes());
                            sel.msgs.remove(i);
                            sel.recent.remove(&e.uid);
                        }
                    }
                    sel.folder.invalidate();
                    ok(out, "MOVE completed")
                } else {
                    ok(out, &format!("{code}COPY completed"))
                }
            }
            CommandBody::Enable { .. } => ok(out, "ENABLE completed"),
            _ => bad("Command not supported"),
        }
    }

    /// SELECT (`read_only` false) or EXAMINE.
    fn select_mode(
        &mut self,
        tag: &str,
        name: &str,
        read_only: bool,
        out: &mut Vec<u8>,
    ) -> Result<Option<Outcome>, Vec<u8>> {
        self.selected = None;
        let Some(mut folder) = self.open_folder(name) else {
            return Err(tagged(tag, "NO", "[NONEXISTENT] No such mailbox"));
        };
        let (snap, recent) = match folder.scan(!read_only) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("imap select: {e}");
                return Err(tagged(tag, "NO", "[SERVERBUG] Cannot read the mailbox"));
            }
        };
        let recent: HashSet<u32> = recent.into_iter().collect();
        let kw = keyword_list(&snap.keywords);
        out.extend_from_slice(format!("* FLAGS ({SYSTEM_FLAGS}{kw})\r\n").as_bytes());
        out.extend_from_slice(
            format!("* OK [PERMANENTFLAGS ({SYSTEM_FLAGS}{kw} \\*)] Flags permitted.\r\n").as_bytes(),
        );
        out.extend_from_slice(
            format!("* {} EXISTS\r\n* {} RECENT\r\n", snap.messages.len(), recent.len()).as_bytes(),
        );
        if let Some(first) = snap.messages.iter().position(|m| !m.info.contains('S')) {
            out.extend_from_slice(format!("* OK [UNSEEN {}] First unseen.\r\n", first + 1).as_bytes());
        }
        out.extend_from_slice(
            format!(
                "* OK [UIDVALIDITY {}] UIDs valid\r\n* OK [UIDNEXT {}] Predicted next UID\r\n",
                snap.validity, snap.next_uid
            )
            .as_bytes(),
        );
        let mode = if read_only { "[READ-ONLY] EXAMINE completed" } else { "[READ-WRITE] SELECT completed" };
        out.extend_from_slice(&tagged(tag, "OK", mode));
        self.selected = Some(Selected {
            name: name.to_string(),
            folder,
            read_only,
            msgs: snap.messages.clone(),
            recent,
            validity: snap.validity,
            next_uid: snap.next_uid,
            keywords: snap.keywords.clone(),
        });
        Ok(None)
    }

    /// Announces what changed in the selected mailbox since the last look: new messages
    /// (EXISTS/RECENT), flag changes (FETCH FLAGS) and, when allowed, removals (EXPUNGE).
    fn refresh(&mut self, out: &mut Vec<u8>, allow_expunge: bool) {
        let Some(sel) = self.selected.as_mut() else { return };
        let Ok((snap, recent)) = sel.folder.scan(!sel.read_only) else { return };
        if snap.validity != sel.validity {
            // The UID list was rebuilt underneath us: the client must resynchronise.
            out.extend_from_slice(b"* BYE Mailbox UIDVALIDITY changed, please reconnect\r\n");
            return;
        }
        sel.recent.extend(recent);
        let now: std::collections::HashMap<u32, &Entry> = snap.messages.iter().map(|m| (m.uid, m)).collect();
        if allow_expunge {
            for i in (0..sel.msgs.len()).rev() {
                if !now.contains_key(&sel.msgs[i].uid) {
                    out.extend_from_slice(format!("* {} EXPUNGE\r\n", i + 1).as_bytes());
                    let e = sel.msgs.remove(i);
                    sel.recent.remove(&e.uid);
                }
            }
        }
        if snap.keywords != sel.keywords {
            sel.keywords = snap.keywords.clone();
            out.extend_from_slice(
                format!("* FLAGS ({SYSTEM_FLAGS}{})\r\n", keyword_list(&sel.keywords)).as_bytes(),
            );
        }
        for (i, m) in sel.msgs.iter_mut().enumerate() {
            if let Some(n) = now.get(&m.uid)
                && (n.info != m.info || n.in_new != m.in_new)
            {
                let changed = n.info != m.info;
                *m = (*n).clone();
                if changed {
                    out.extend_from_slice(
                        format!(
                            "* {} FETCH (FLAGS ({}))\r\n",
                            i + 1,
                            flag_text(&m.info, &sel.keywords, sel.recent.contains(&m.uid))
                        )
                        .as_bytes(),
                    );
                }
            }
        }
        let max_uid = sel.msgs.last().map(|m| m.uid).unwrap_or(0);
        let added: Vec<Entry> = snap.messages.iter().filter(|m| m.uid > max_uid).cloned().collect();
        if !added.is_empty() {
            sel.msgs.extend(added);
            out.extend_from_slice(
                format!("* {} EXISTS\r\n* {} RECENT\r\n", sel.msgs.len(), sel.recent.len()).as_bytes(),
            );
        }
        sel.next_uid = snap.next_uid;
    }

    /// New-mail and change announcements while idling (RFC 2177).
    pub fn idle_poll(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.refresh(&mut out, true);
        out
    }

    /// `DONE` ends IDLE.
    pub fn idle_done(&mut self, line: &[u8]) -> Outcome {
        let tag = self.pending_tag.take().unwrap_or_else(|| "*".to_string());
        if line.trim_ascii().eq_ignore_ascii_case(b"DONE") {
            Outcome::Send(tagged(&tag, "OK", "IDLE terminated"))
        } else {
            self.errors += 1;
            Outcome::Send(tagged(&tag, "BAD", "Expected DONE"))
        }
    }

    /// Indexes into the selected mailbox named by a sequence set (sequence numbers or UIDs).
    fn resolve(&self, set: &SequenceSet, uid: bool) -> Vec<usize> {
        let Some(sel) = &self.selected else { return Vec::new() };
        let n = sel.msgs.len();
        if n == 0 {
            return Vec::new();
        }
        let largest = if uid { sel.msgs[n - 1].uid } else { n as u32 };
        let value = |s: &SeqOrUid| match s {
            SeqOrUid::Value(v) => v.get(),
            SeqOrUid::Asterisk => largest,
        };
        let ranges: Vec<(u32, u32)> = set
            .0
            .as_ref()
            .iter()
            .map(|s| match s {
                Sequence::Single(a) => (value(a), value(a)),
                Sequence::Range(a, b) => {
                    let (a, b) = (value(a), value(b));
                    (a.min(b), a.max(b))
                }
            })
            .collect();
        let inside = |v: u32| ranges.iter().any(|&(a, b)| a <= v && v <= b);
        (0..n).filter(|&i| inside(if uid { sel.msgs[i].uid } else { i as u32 + 1 })).collect()
    }

    /// Writes one FETCH response; `false` when the message's file is gone.
    fn fetch_one(&mut self, i: usize, items: &[MessageDataItemName], uid: bool, out: &mut Vec<u8>) -> bool {
        let Some(sel) = self.selected.as_mut() else { return false };
        let needs_data = items.iter().any(|it| {
            matches!(
                it,
                MessageDataItemName::Envelope
                    | MessageDataItemName::Body
                    | MessageDataItemName::BodyStructure
                    | MessageDataItemName::BodyExt { .. }
                    | MessageDataItemName::Rfc822
                    | MessageDataItemName::Rfc822Header
                    | MessageDataItemName::Rfc822Text
                    | MessageDataItemName::Binary { .. }
                    | MessageDataItemName::BinarySize { .. }
            )
        });
        let needs_parse = items.iter().any(|it| match it {
            MessageDataItemName::Envelope
            | MessageDataItemName::Body
            | MessageDataItemName::BodyStructure => true,
            MessageDataItemName::BodyExt { section: Some(s), .. } => section_part(s).is_some(),
            MessageDataItemName::Binary { .. } | MessageDataItemName::BinarySize { .. } => true,
            _ => false,
        });
        let entry = sel.msgs[i].clone();
        // Header sections of the message itself need only its header block.
        let header_only = items.iter().all(|it| match it {
            MessageDataItemName::BodyExt { section: Some(s), .. } => matches!(
                s,
                Section::Header(None) | Section::HeaderFields(None, _) | Section::HeaderFieldsNot(None, _)
            ),
            MessageDataItemName::Rfc822Header => true,
            it => !matches!(
                it,
                MessageDataItemName::Envelope
                    | MessageDataItemName::Body
                    | MessageDataItemName::BodyStructure
                    | MessageDataItemName::BodyExt { .. }
                    | MessageDataItemName::Rfc822
                    | MessageDataItemName::Rfc822Text
                    | MessageDataItemName::Binary { .. }
                    | MessageDataItemName::BinarySize { .. }
            ),
        });
        let raw: Option<Vec<u8>> = if needs_data {
            let read = if header_only {
                sel.folder.read_header(&entry).map(|h| h.map(|h| h.to_vec()))
            } else {
                sel.folder.read(&entry, u64::MAX)
            };
            match read {
                Ok(Some(d)) => Some(mime::to_crlf(&d)),
                _ => return false,
            }
        } else {
            None
        };
        let parsed = match (&raw, needs_parse) {
            (Some(r), true) => Some(mime::parse(r)),
            _ => None,
        };
        // Setting \Seen: BODY[...] without PEEK, RFC822, RFC822.TEXT (RFC 3501 §6.4.5).
        let sets_seen = !sel.read_only
            && !entry.info.contains('S')
            && items.iter().any(|it| {
                matches!(
                    it,
                    MessageDataItemName::BodyExt { peek: false, .. }
                        | MessageDataItemName::Rfc822
                        | MessageDataItemName::Rfc822Text
                        | MessageDataItemName::Binary { peek: false, .. }
                )
            });
        if sets_seen {
            let info = flags::apply(&entry.info, b"S", Mode::Add);
            if let Ok(Some(now)) = sel.folder.set_info(&entry, &info) {
                sel.msgs[i] = Entry { uid: entry.uid, ..now };
            }
        }
        let e = sel.msgs[i].clone();
        let mut parts: Vec<Vec<u8>> = Vec::new();
        if uid && !items.iter().any(|it| matches!(it, MessageDataItemName::Uid)) {
            parts.push(format!("UID {}", e.uid).into_bytes());
        }
        let mut flags_sent = false;
        for it in items {
            let mut p = Vec::new();
            match it {
                MessageDataItemName::Uid => p.extend_from_slice(format!("UID {}", e.uid).as_bytes()),
                MessageDataItemName::Flags => {
                    flags_sent = true;
                    p.extend_from_slice(
                        format!("FLAGS ({})", flag_text(&e.info, &sel.keywords, sel.recent.contains(&e.uid)))
                            .as_bytes(),
                    );
                }
                MessageDataItemName::InternalDate => p.extend_from_slice(
                    format!("INTERNALDATE {}", wire::date_time(sel.folder.internal_date(&e))).as_bytes(),
                ),
                MessageDataItemName::Rfc822Size => {
                    let size = match &raw {
                        Some(r) if !header_only => r.len() as u64,
                        _ => sel.folder.size(&e).unwrap_or(0),
                    };
                    p.extend_from_slice(format!("RFC822.SIZE {size}").as_bytes());
                }
                MessageDataItemName::Envelope => {
                    p.extend_from_slice(b"ENVELOPE ");
                    p.extend_from_slice(parsed.as_ref().map(|x| x.envelope.as_slice()).unwrap_or(b"NIL"));
                }
                MessageDataItemName::BodyStructure | MessageDataItemName::Body => {
                    let ext = matches!(it, MessageDataItemName::BodyStructure);
                    p.extend_from_slice(if ext { b"BODYSTRUCTURE " } else { b"BODY " });
                    if let Some(x) = &parsed {
                        p.extend_from_slice(x.root.structure(ext));
                    }
                }
                MessageDataItemName::Rfc822
                | MessageDataItemName::Rfc822Header
                | MessageDataItemName::Rfc822Text => {
                    let r = raw.as_deref().unwrap_or_default();
                    let h = mime::header_end(r);
                    let (name, bytes) = match it {
                        MessageDataItemName::Rfc822 => ("RFC822", r),
                        MessageDataItemName::Rfc822Header => ("RFC822.HEADER", &r[..h]),
                        _ => ("RFC822.TEXT", &r[h..]),
                    };
                    p.extend_from_slice(name.as_bytes());
                    p.push(b' ');
                    wire::literal(&mut p, bytes);
                }
                MessageDataItemName::BodyExt { section, partial, .. } => {
                    let r = raw.as_deref().unwrap_or_default();
                    let bytes = section_bytes(r, parsed.as_ref(), section.as_ref());
                    p.extend_from_slice(b"BODY[");
                    p.extend_from_slice(section_name(section.as_ref()).as_bytes());
                    p.push(b']');
                    match partial {
                        Some((start, len)) => {
                            p.extend_from_slice(format!("<{start}> ").as_bytes());
                            let s = (*start as usize).min(bytes.len());
                            let end = s.saturating_add(len.get() as usize).min(bytes.len());
                            wire::literal(&mut p, &bytes[s..end]);
                        }
                        None => {
                            p.push(b' ');
                            wire::literal(&mut p, &bytes);
                        }
                    }
                }
                MessageDataItemName::Binary { section, partial, .. } => {
                    // Sent undecoded: BINARY is not advertised, this only keeps clients that
                    // try it working.
                    let r = raw.as_deref().unwrap_or_default();
                    let path: Vec<u32> = section.iter().map(|n| n.get()).collect();
                    let bytes = match parsed.as_ref().and_then(|x| x.root.find(&path)) {
                        Some(n) if !path.is_empty() => r[n.body.clone()].to_vec(),
                        _ => r.to_vec(),
                    };
                    let name = path.iter().map(u32::to_string).collect::<Vec<_>>().join(".");
                    p.extend_from_slice(format!("BINARY[{name}]").as_bytes());
                    let (s, e2) = match partial {
                        Some((start, len)) => {
                            p.extend_from_slice(format!("<{start}>").as_bytes());
                            let s = (*start as usize).min(bytes.len());
                            (s, s.saturating_add(len.get() as usize).min(bytes.len()))
                        }
                        None => (0, bytes.len()),
                    };
                    p.push(b' ');
                    wire::literal(&mut p, &bytes[s..e2]);
                }
                MessageDataItemName::BinarySize { section } => {
                    let r = raw.as_deref().unwrap_or_default();
                    let path: Vec<u32> = section.iter().map(|n| n.get()).collect();
                    let size = match parsed.as_ref().and_then(|x| x.root.find(&path)) {
                        Some(n) if !path.is_empty() => n.body.len(),
                        _ => r.len(),
                    };
                    let name = path.iter().map(u32::to_string).collect::<Vec<_>>().join(".");
                    p.extend_from_slice(format!("BINARY.SIZE[{name}] {size}").as_bytes());
                }
                #[allow(unreachable_patterns)]
                _ => continue,
            }
            parts.push(p);
        }
        if sets_seen && !flags_sent {
            parts.push(
                format!("FLAGS ({})", flag_text(&e.info, &sel.keywords, sel.recent.contains(&e.uid)))
                    .into_bytes(),
            );
        }
        out.extend_from_slice(format!("* {} FETCH (", i + 1).as_bytes());
        for (k, p) in parts.iter().enumerate() {
            if k > 0 {
                out.push(b' ');
            }
            out.extend_from_slice(p);
        }
        out.extend_from_slice(b")\r\n");
        true
    }

    fn search(&mut self, key: &SearchKey, uid: bool) -> Vec<u32> {
        let Some(sel) = self.selected.as_ref() else { return Vec::new() };
        let n = sel.msgs.len();
        let mut hits = Vec::new();
        for i in 0..n {
            let mut ctx = MsgCtx { i, cache: None, head: None };
            if self.matches(key, &mut ctx) {
                hits.push(if uid { sel.msgs[i].uid } else { i as u32 + 1 });
            }
        }
        hits
    }

    fn matches(&self, key: &SearchKey, m: &mut MsgCtx) -> bool {
        let Some(sel) = self.selected.as_ref() else { return false };
        let e = &sel.msgs[m.i];
        let has = |c: char| e.info.contains(c);
        let ci_contains = |hay: &[u8], needle: &[u8]| {
            needle.is_empty() || hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
        };
        match key {
            SearchKey::And(keys) => keys.as_ref().iter().all(|k| self.matches(k, m)),
            SearchKey::Or(a, b) => self.matches(a, m) || self.matches(b, m),
            SearchKey::Not(k) => !self.matches(k, m),
            SearchKey::All => true,
            SearchKey::Answered => has('R'),
            SearchKey::Unanswered => !has('R'),
            SearchKey::Deleted => has('T'),
            SearchKey::Undeleted => !has('T'),
            SearchKey::Draft => has('D'),
            SearchKey::Undraft => !has('D'),
            SearchKey::Flagged => has('F'),
            SearchKey::Unflagged => !has('F'),
            SearchKey::Seen => has('S'),
            SearchKey::Unseen => !has('S'),
            SearchKey::Recent => sel.recent.contains(&e.uid),
            SearchKey::Old => !sel.recent.contains(&e.uid),
            SearchKey::New => sel.recent.contains(&e.uid) && !has('S'),
            SearchKey::Keyword(k) | SearchKey::Unkeyword(k) => {
                let mut kw = sel.keywords.clone();
                let set =
                    flags::letter(k.as_ref(), &mut kw, false).is_some_and(|l| e.info.as_bytes().contains(&l));
                if matches!(key, SearchKey::Keyword(_)) { set } else { !set }
            }
            SearchKey::SequenceSet(set) => self.resolve(set, false).contains(&m.i),
            SearchKey::Uid(set) => self.resolve(set, true).contains(&m.i),
            SearchKey::Larger(n) => self.msg_size(m) > *n as u64,
            SearchKey::Smaller(n) => self.msg_size(m) < *n as u64,
            SearchKey::Before(d) | SearchKey::On(d) | SearchKey::Since(d) => {
                let day =
                    date_key(d.as_ref().and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp()).unwrap_or(0));
                let t = sel
                    .folder
                    .internal_date(e)
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                let got = date_key(t);
                match key {
                    SearchKey::Before(_) => got < day,
                    SearchKey::On(_) => got == day,
                    _ => got >= day,
                }
            }
            SearchKey::SentBefore(d) | SearchKey::SentOn(d) | SearchKey::SentSince(d) => {
                let day =
                    date_key(d.as_ref().and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp()).unwrap_or(0));
                let Some(raw) = self.msg_head(m) else { return false };
                let sent = mime::parser()
                    .parse_headers(&raw[..mime::header_end(&raw)])
                    .and_then(|p| p.date().map(|d| d.to_timestamp()));
                let Some(sent) = sent else { return false };
                let got = date_key(sent);
                match key {
                    SearchKey::SentBefore(_) => got < day,
                    SearchKey::SentOn(_) => got == day,
                    _ => got >= day,
                }
            }
            SearchKey::From(s)
            | SearchKey::To(s)
            | SearchKey::Cc(s)
            | SearchKey::Bcc(s)
            | SearchKey::Subject(s) => {
                let field = match key {
                    SearchKey::From(_) => "From",
                    SearchKey::To(_) => "To",
                    SearchKey::Cc(_) => "Cc",
                    SearchKey::Bcc(_) => "Bcc",
                    _ => "Subject",
                };
                let Some(raw) = self.msg_head(m) else { return false };
                header_contains(&raw, field, s.as_ref())
            }
            SearchKey::Header(name, value) => {
                let Some(raw) = self.msg_head(m) else { return false };
                let name = String::from_utf8_lossy(name.as_ref()).into_owned();
                header_contains(&raw, &name, value.as_ref())
            }
            SearchKey::Body(s) => {
                let Some(raw) = self.msg_raw(m) else { return false };
                ci_contains(&raw[mime::header_end(&raw)..], s.as_ref())
            }
            SearchKey::Text(s) => {
                let Some(raw) = self.msg_raw(m) else { return false };
                ci_contains(&raw, s.as_ref())
            }
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    fn msg_raw(&self, m: &mut MsgCtx) -> Option<Arc<Vec<u8>>> {
        if m.cache.is_none() {
            let sel = self.selected.as_ref()?;
            let data = sel.folder.read(&sel.msgs[m.i], u64::MAX).ok().flatten()?;
            m.cache = Some(Arc::new(mime::to_crlf(&data)));
        }
        m.cache.clone()
    }

    /// The header block only (the whole message when it was read already).
    fn msg_head(&self, m: &mut MsgCtx) -> Option<Arc<Vec<u8>>> {
        if let Some(c) = &m.cache {
            return Some(c.clone());
        }
        if m.head.is_none() {
            let sel = self.selected.as_ref()?;
            let data = sel.folder.read_header(&sel.msgs[m.i]).ok().flatten()?;
            m.head = Some(Arc::new(mime::to_crlf(&data)));
        }
        m.head.clone()
    }

    fn msg_size(&self, m: &mut MsgCtx) -> u64 {
        let Some(sel) = self.selected.as_ref() else { return 0 };
        match sel.msgs[m.i].size_hint() {
            Some(s) => s,
            None => self.msg_raw(m).map(|r| r.len() as u64).unwrap_or(0),
        }
    }

    /// Whether the client has logged out.
    pub fn is_logged_out(&self) -> bool {
        self.logged_out
    }
}

struct MsgCtx {
    i: usize,
    cache: Option<Arc<Vec<u8>>>,
    head: Option<Arc<Vec<u8>>>,
}

fn date_key(ts: i64) -> i64 {
    ts.div_euclid(86_400)
}

/// Whether some `field` header of the message contains `needle` (case-insensitive), as
/// written or, for RFC 2047 encoded words, decoded. An empty needle matches any message that
/// has the field.
fn header_contains(raw: &[u8], field: &str, needle: &[u8]) -> bool {
    let head = &raw[..mime::header_end(raw)];
    let mut encoded = false;
    let mut i = 0;
    while i < head.len() {
        let end = head[i..].iter().position(|&b| b == b'\n').map(|p| i + p + 1).unwrap_or(head.len());
        let line = &head[i..end];
        let mut next = end;
        if let Some(colon) = line.iter().position(|&b| b == b':')
            && line[..colon].trim_ascii().eq_ignore_ascii_case(field.as_bytes())
        {
            let mut value = line[colon + 1..].to_vec();
            while next < head.len() && (head[next] == b' ' || head[next] == b'\t') {
                let e =
                    head[next..].iter().position(|&b| b == b'\n').map(|p| next + p + 1).unwrap_or(head.len());
                value.extend_from_slice(&head[next..e]);
                next = e;
            }
            if needle.is_empty() || contains_ci(&value, needle) {
                return true;
            }
            encoded |= find_ci(&value, b"=?").is_some();
        }
        i = next;
    }
    if !encoded {
        return false;
    }
    let Some(p) = mime::parser().parse_headers(head) else { return false };
    p.headers().iter().filter(|h| h.name().eq_ignore_ascii_case(field)).any(|h| {
        let text = match h.value() {
            mail_parser::HeaderValue::Text(t) => t.to_string(),
            mail_parser::HeaderValue::TextList(l) => l.join(" "),
            mail_parser::HeaderValue::Address(a) => a
                .iter()
                .map(|x| {
                    format!("{} <{}>", x.name.as_deref().unwrap_or(""), x.address.as_deref().unwrap_or(""))
                })
                .collect::<Vec<_>>()
                .join(", "),
            _ => String::new(),
        };
        contains_ci(text.as_bytes(), needle)
    })
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    find_ci(hay, needle).is_some()
}

fn find_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle))
}

fn last_line_start(out: &[u8]) -> usize {
    if out.len() < 2 {
        return 0;
    }
    match out[..out.len() - 2].iter().rposition(|&b| b == b'\n') {
        Some(p) => p + 1,
        None => 0,
    }
}

fn keyword_list(k: &Keywords) -> String {
    k.names().map(|n| format!(" {n}")).collect()
}

/// The FLAGS list in Dovecot's order: system flags, `\Recent`, then keywords.
fn flag_text(info: &str, keywords: &Keywords, recent: bool) -> String {
    const ORDER: [(char, &str); 5] =
        [('R', "\\Answered"), ('F', "\\Flagged"), ('T', "\\Deleted"), ('S', "\\Seen"), ('D', "\\Draft")];
    let mut f: Vec<String> =
        ORDER.iter().filter(|(l, _)| info.contains(*l)).map(|(_, n)| (*n).to_string()).collect();
    if recent {
        f.push("\\Recent".to_string());
    }
    let lower: String = info.chars().filter(char::is_ascii_lowercase).collect();
    f.extend(flags::imap_flags(&lower, keywords));
    f.join(" ")
}

/// `1:3,5` for sorted-or-not UIDs (kept in the order given, as COPYUID pairs them).
fn uid_set(uids: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            end += 1;
            i += 1;
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}:{end}") });
        i += 1;
    }
    parts.join(",")
}

/// The part path of a section, when it names a part (so the message must be parsed).
fn section_part(s: &Section) -> Option<Vec<u32>> {
    let part = match s {
        Section::Part(p) | Section::Mime(p) => Some(p),
        Section::Header(p)
        | Section::Text(p)
        | Section::HeaderFields(p, _)
        | Section::HeaderFieldsNot(p, _) => p.as_ref(),
    }?;
    Some(part_path(part))
}

fn part_path(p: &Part) -> Vec<u32> {
    p.0.as_ref().iter().map(|n: &NonZeroU32| n.get()).collect()
}

/// The section's name as the response repeats it (`1.2.HEADER.FIELDS (SUBJECT)`).
fn section_name(s: Option<&Section>) -> String {
    let Some(s) = s else { return String::new() };
    let path = |p: Option<&Part>| {
        p.map(|p| part_path(p).iter().map(u32::to_string).collect::<Vec<_>>().join(".") + ".")
            .unwrap_or_default()
    };
    let names = |l: &imap_codec::imap_types::core::Vec1<imap_codec::imap_types::core::AString>| {
        l.as_ref()
            .iter()
            .map(|a| String::from_utf8_lossy(a.as_ref()).to_ascii_uppercase())
            .collect::<Vec<_>>()
            .join(" ")
    };
    match s {
        Section::Part(p) => part_path(p).iter().map(u32::to_string).collect::<Vec<_>>().join("."),
        Section::Header(p) => format!("{}HEADER", path(p.as_ref())),
        Section::Text(p) => format!("{}TEXT", path(p.as_ref())),
        Section::Mime(p) => format!("{}MIME", path(Some(p))),
        Section::HeaderFields(p, l) => format!("{}HEADER.FIELDS ({})", path(p.as_ref()), names(l)),
        Section::HeaderFieldsNot(p, l) => format!("{}HEADER.FIELDS.NOT ({})", path(p.as_ref()), names(l)),
    }
}

/// The bytes a section names (RFC 3501 §6.4.5); empty when the part does not exist.
fn section_bytes(raw: &[u8], parsed: Option<&mime::Parsed>, s: Option<&Section>) -> Vec<u8> {
    let h = mime::header_end(raw);
    let Some(s) = s else { return raw.to_vec() };
    let field_names =
        |l: &imap_codec::imap_types::core::Vec1<imap_codec::imap_types::core::AString>| -> Vec<Vec<u8>> {
            l.as_ref().iter().map(|a| a.as_ref().to_vec()).collect()
        };
    // The header and text ranges of the message a section is about: the whole message, or the
    // message/rfc822 part a path names.
    let message_ranges = |p: Option<&Part>| -> Option<(std::ops::Range<usize>, std::ops::Range<usize>)> {
        match p {
            None => Some((0..h, h..raw.len())),
            Some(p) => {
                let node = parsed?.root.find(&part_path(p))?;
                let inner = node.message()?;
                Some((inner.header.clone(), inner.body.clone()))
            }
        }
    };
    match s {
        Section::Header(p) => message_ranges(p.as_ref()).map(|(hd, _)| raw[hd].to_vec()).unwrap_or_default(),
        Section::Text(p) => message_ranges(p.as_ref()).map(|(_, b)| raw[b].to_vec()).unwrap_or_default(),
        Section::HeaderFields(p, l) | Section::HeaderFieldsNot(p, l) => {
            let not = matches!(s, Section::HeaderFieldsNot(..));
            message_ranges(p.as_ref())
                .map(|(hd, _)| mime::header_fields(&raw[hd], &field_names(l), not))
                .unwrap_or_default()
        }
        Section::Part(p) => parsed
            .and_then(|x| x.root.find(&part_path(p)))
            .map(|n| raw[n.body.clone()].to_vec())
            .unwrap_or_default(),
        Section::Mime(p) => parsed
            .and_then(|x| x.root.find(&part_path(p)))
            .map(|n| if n.header.start == 0 { raw[..h].to_vec() } else { raw[n.header.clone()].to_vec() })
            .unwrap_or_default(),
    }
}
