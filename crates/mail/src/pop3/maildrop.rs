//! The POP3 maildrop over a Maildir INBOX: locked for one session (an flock on
//! `appnet-pop3.lock`, held until the session ends), messages in UID order, Dovecot's UIDL
//! format (`%08X` UID then `%08X` UIDVALIDITY), so clients moving from Dovecot keep their state.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::session::{Backend, DropMessage, Maildrop, OpenError};
use crate::access::{AccessContext, LoginRefused};
use crate::maildir::flags::{self, Mode};
use crate::maildir::folder::{Entry, Folder};
use crate::users::FileLock;

/// The lock file POP3 holds in the user's Maildir while a session is open.
pub const LOCK_FILE: &str = "appnet-pop3.lock";

/// Attempts 50 ms apart to take the lock (1 s in all) before answering `[IN-USE]`.
const LOCK_TRIES: u32 = 20;

/// A Maildir INBOX locked for one POP3 session.
pub struct MaildirDrop {
    folder: Folder,
    entries: Vec<Entry>,
    messages: Vec<DropMessage>,
    _lock: FileLock,
}

impl MaildirDrop {
    /// Locks and reads the INBOX at `dir` (`Err(InUse)` when another session holds it).
    pub fn open(dir: &Path) -> Result<MaildirDrop, OpenError> {
        if !dir.join("cur").is_dir() {
            crate::maildir::create(dir).map_err(OpenError::Io)?;
        }
        // A client that reconnects at once may find its previous session still finishing
        // (it did not wait for QUIT's answer): wait a little before saying "in use".
        let mut lock = None;
        for _ in 0..LOCK_TRIES {
            match FileLock::try_acquire(&dir.join(LOCK_FILE)) {
                Ok(Some(l)) => {
                    lock = Some(l);
                    break;
                }
                Ok(None) => std::thread::sleep(std::time::Duration::from_millis(50)),
                Err(e) => return Err(OpenError::Io(std::io::Error::other(e))),
            }
        }
        let Some(lock) = lock else { return Err(OpenError::InUse) };
        let mut folder = Folder::open(dir).map_err(OpenError::Io)?;
        let (snap, _) = folder.scan(true).map_err(OpenError::Io)?;
        let mut messages = Vec::with_capacity(snap.messages.len());
        for e in &snap.messages {
            let size = folder.size(e).map_err(OpenError::Io)?;
            messages.push(DropMessage { size, uidl: format!("{:08X}{:08X}", e.uid, snap.validity) });
        }
        Ok(MaildirDrop { folder, entries: snap.messages.clone(), messages, _lock: lock })
    }
}

impl Maildrop for MaildirDrop {
    fn messages(&self) -> &[DropMessage] {
        &self.messages
    }

    fn retrieve(&mut self, index: usize) -> std::io::Result<Option<Vec<u8>>> {
        match self.entries.get(index) {
            Some(e) => self.folder.read(e, u64::MAX),
            None => Ok(None),
        }
    }

    fn commit(&mut self, deleted: &[usize], retrieved: &[usize]) -> std::io::Result<()> {
        let mut first_err = None;
        for &i in deleted {
            if let Some(e) = self.entries.get(i)
                && let Err(err) = self.folder.expunge(e)
            {
                first_err.get_or_insert(err);
            }
        }
        for &i in retrieved {
            if let Some(e) = self.entries.get(i)
                && let Err(err) = self.folder.set_info(e, &flags::apply(&e.info, b"S", Mode::Add))
            {
                first_err.get_or_insert(err);
            }
        }
        match first_err {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

/// The session backend of the real server: logins through the [`AccessContext`] (its users
/// and failed-login guard for this client address), maildrops from the mail root.
pub struct MaildirBackend {
    /// The server's shared state.
    pub ctx: Arc<AccessContext>,
    /// The client's address.
    pub ip: IpAddr,
}

impl Backend for MaildirBackend {
    type Drop = MaildirDrop;

    fn login(&self, user: &str, password: &str, now: Instant) -> Result<String, Option<u64>> {
        match self.ctx.login(self.ip, user, password, now) {
            Ok(u) => Ok(u),
            Err(LoginRefused::BadCredentials) => Err(None),
            Err(LoginRefused::LockedOut(left)) => Err(Some(left.as_secs().max(1))),
        }
    }

    fn open(&self, user: &str) -> Result<MaildirDrop, OpenError> {
        let dir = self
            .ctx
            .maildir_of(user)
            .ok_or_else(|| OpenError::Io(std::io::Error::other("invalid user name")))?;
        MaildirDrop::open(&dir)
    }
}
