//! The spool: each queued message is two files in `DIR/queue/`: `<id>.msg` (the message) and
//! `<id>.env` (the envelope and its delivery state, a small text file). Both are written to a
//! temporary file, synced and renamed (netkit's `write_atomic`), the message first: a message
//! exists once its envelope does, so a crash leaves either a whole queued message or an orphan
//! `.msg` that [`Spool::open`] removes.

use appnet_netkit::files::write_atomic;
use std::io;
use std::path::{Path, PathBuf};

/// A queued message's envelope and delivery state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedEnvelope {
    /// Queue id (letters and digits).
    pub id: String,
    /// Reverse-path (empty for a bounce: never bounced).
    pub from: String,
    /// Recipients still to deliver to.
    pub rcpts: Vec<String>,
    /// When it was queued, Unix seconds.
    pub created: u64,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Earliest next attempt, Unix seconds.
    pub next_attempt: u64,
    /// Why the last attempt failed.
    pub last_error: String,
}

impl QueuedEnvelope {
    /// The envelope file's text.
    pub fn render(&self) -> String {
        let mut s = format!(
            "id {}\nfrom {}\ncreated {}\nattempts {}\nnext {}\n",
            self.id, self.from, self.created, self.attempts, self.next_attempt
        );
        for r in &self.rcpts {
            s.push_str(&format!("rcpt {r}\n"));
        }
        if !self.last_error.is_empty() {
            let e: String =
                self.last_error.chars().map(|c| if c.is_control() { ' ' } else { c }).take(500).collect();
            s.push_str(&format!("error {e}\n"));
        }
        s
    }

    /// Parses an envelope file; `None` when it is damaged.
    pub fn parse(text: &str) -> Option<QueuedEnvelope> {
        let mut env = QueuedEnvelope {
            id: String::new(),
            from: String::new(),
            rcpts: Vec::new(),
            created: 0,
            attempts: 0,
            next_attempt: 0,
            last_error: String::new(),
        };
        for line in text.lines() {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "id" => env.id = value.to_string(),
                "from" => env.from = value.to_string(),
                "created" => env.created = value.parse().ok()?,
                "attempts" => env.attempts = value.parse().ok()?,
                "next" => env.next_attempt = value.parse().ok()?,
                "rcpt" => env.rcpts.push(value.to_string()),
                "error" => env.last_error = value.to_string(),
                _ => {}
            }
        }
        (valid_id(&env.id) && !env.rcpts.is_empty()).then_some(env)
    }
}

/// Whether `id` is a safe queue id (1–64 ASCII letters and digits).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// Opens (creating) `root/queue/` and removes orphan message files of interrupted writes.
    pub fn open(root: &Path) -> io::Result<Spool> {
        let dir = root.join("queue");
        std::fs::create_dir_all(&dir)?;
        let spool = Spool { dir };
        for entry in std::fs::read_dir(&spool.dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name.strip_suffix(".msg")
                && !spool.env_path(id).exists()
            {
                let _ = std::fs::remove_file(spool.dir.join(name.as_ref()));
            }
        }
        Ok(spool)
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn env_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.env"))
    }

    fn msg_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.msg"))
    }

    fn check(id: &str) -> io::Result<()> {
        if valid_id(id) {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad queue id {id:?}")))
        }
    }

    /// Stores a new message durably (message, then envelope; both fsynced).
    pub fn add(&self, env: &QueuedEnvelope, data: &[u8]) -> io::Result<()> {
        Self::check(&env.id)?;
        if self.env_path(&env.id).exists() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("queue id {} in use", env.id)));
        }
        write_atomic(&self.msg_path(&env.id), data)?;
        write_atomic(&self.env_path(&env.id), env.render().as_bytes())
    }

    /// Replaces the envelope of a queued message (after an attempt).
    pub fn update(&self, env: &QueuedEnvelope) -> io::Result<()> {
        Self::check(&env.id)?;
        write_atomic(&self.env_path(&env.id), env.render().as_bytes())
    }

    /// Removes a message that is done (envelope first, so a crash leaves an orphan, not a
    /// message without content).
    pub fn remove(&self, id: &str) -> io::Result<()> {
        Self::check(id)?;
        std::fs::remove_file(self.env_path(id))?;
        let _ = std::fs::remove_file(self.msg_path(id));
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Reads one envelope.
    pub fn envelope(&self, id: &str) -> io::Result<QueuedEnvelope> {
        Self::check(id)?;
        let text = std::fs::read_to_string(self.env_path(id))?;
        QueuedEnvelope::parse(&text)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("damaged envelope {id}")))
    }

    /// Reads one message.
    pub fn message(&self, id: &str) -> io::Result<Vec<u8>> {
        Self::check(id)?;
        std::fs::read(self.msg_path(id))
    }

    /// Every queued message's envelope, oldest first (damaged ones are logged and skipped).
    pub fn list(&self) -> io::Result<Vec<QueuedEnvelope>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            let Some(id) = name.strip_suffix(".env") else { continue };
            if !valid_id(id) {
                continue;
            }
            match self.envelope(id) {
                Ok(env) => out.push(env),
                Err(e) => tracing::warn!("queue: skipping {id}: {e}"),
            }
        }
        out.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(out)
    }

    /// Asks a running server to retry every message now (`mail queue --flush`).
    pub fn request_flush(&self) -> io::Result<()> {
        write_atomic(&self.dir.join("flush"), b"")
    }

    /// Whether a flush was requested; clears the request.
    pub fn take_flush(&self) -> bool {
        std::fs::remove_file(self.dir.join("flush")).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(id: &str) -> QueuedEnvelope {
        QueuedEnvelope {
            id: id.into(),
            from: "alice@crepes.fr".into(),
            rcpts: vec!["bob@hamburger.edu".into(), "x@y.z".into()],
            created: 100,
            attempts: 2,
            next_attempt: 160,
            last_error: "421 busy\nnow".into(),
        }
    }

    #[test]
    fn envelopes_round_trip_and_junk_is_refused() {
        let e = env("ABC1");
        let parsed = QueuedEnvelope::parse(&e.render()).unwrap();
        assert_eq!(parsed.last_error, "421 busy now");
        assert_eq!(QueuedEnvelope { last_error: e.last_error.replace('\n', " "), ..e }, parsed);
        assert!(QueuedEnvelope::parse("id ../x\nrcpt a@b\n").is_none());
        assert!(QueuedEnvelope::parse("id A\ncreated x\nrcpt a@b\n").is_none());
        assert!(QueuedEnvelope::parse("\u{0}\u{1}").is_none());
    }

    #[test]
    fn add_list_update_remove_and_orphans() {
        let dir = appnet_netkit::harness::TempDir::new("mail-spool");
        let spool = Spool::open(dir.path()).unwrap();
        spool.add(&env("A1"), b"hello\r\n").unwrap();
        assert!(spool.add(&env("A1"), b"again").is_err());
        assert!(spool.add(&env("../evil"), b"x").is_err());
        std::fs::write(spool.dir().join("ORPHAN.msg"), b"half").unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        assert!(!spool.dir().join("ORPHAN.msg").exists());
        assert_eq!(spool.list().unwrap().len(), 1);
        assert_eq!(spool.message("A1").unwrap(), b"hello\r\n");
        let mut e = spool.envelope("A1").unwrap();
        e.attempts = 3;
        spool.update(&e).unwrap();
        assert_eq!(spool.envelope("A1").unwrap().attempts, 3);
        spool.remove("A1").unwrap();
        assert!(spool.list().unwrap().is_empty());
        assert!(!spool.take_flush());
        spool.request_flush().unwrap();
        assert!(spool.take_flush() && !spool.take_flush());
    }
}
