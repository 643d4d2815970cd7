//! One Maildir folder (INBOX or a Maildir++ `.Name`): its messages with stable UIDs, flag
//! changes by rename, expunge, append and copy. Every session keeps its own `Folder`; a scan
//! (cheap when nothing changed: it compares the directories' change times) picks up what other
//! sessions and the deliverer did, so two sessions on one mailbox see each other's changes.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::flags::Keywords;
use super::uidlist::{self, UidList};
use crate::users::FileLock;

/// The lock serialising UID assignment among appnet sessions (never Dovecot's dotlock name).
const LOCK_FILE: &str = "appnet-uidlist.lock";

/// One message of a folder as last scanned.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Its UID (RFC 3501 §2.3.1.1), stable across sessions and restarts.
    pub uid: u32,
    /// The file name without the `:2,...` info: the message's identity in the Maildir.
    pub base: String,
    /// The flag letters after `:2,`.
    pub info: String,
    /// Whether the file is still in `new/` (not yet seen by any reader).
    pub in_new: bool,
}

impl Entry {
    /// The file's path relative to the folder.
    pub fn rel_path(&self) -> PathBuf {
        if self.in_new {
            Path::new("new").join(&self.base)
        } else {
            Path::new("cur").join(format!("{}:2,{}", self.base, self.info))
        }
    }

    /// The size with CRLF line endings when the name carries it (`,W=` as Dovecot writes).
    pub fn size_hint(&self) -> Option<u64> {
        let i = self.base.find(",W=")?;
        let digits: String = self.base[i + 3..].chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    }
}

/// A folder's state at one scan.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// UIDVALIDITY.
    pub validity: u32,
    /// The UID the next message will get (UIDNEXT).
    pub next_uid: u32,
    /// The messages in UID order.
    pub messages: Vec<Entry>,
    /// The folder's keyword table.
    pub keywords: Keywords,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sig {
    new: (i64, i64, u64),
    cur: (i64, i64, u64),
    list: (i64, i64, u64),
}

impl Sig {
    /// Whether every time in the signature is at least a second older than `t`: then any later
    /// change gets a different time even on a coarse-clock file system.
    fn settled_before(&self, t: SystemTime) -> bool {
        let t = t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        [self.new, self.cur, self.list].iter().all(|(s, _, _)| *s < t - 1)
    }
}

/// A Maildir folder on disk.
#[derive(Debug)]
pub struct Folder {
    /// The folder's directory (holding cur/ new/ tmp/).
    pub dir: PathBuf,
    cache: Option<(Sig, Arc<Snapshot>, SystemTime)>,
    /// Current names by base name, read when a message was renamed under us (other sessions'
    /// flag changes), reused while fresh so a burst of renames costs one directory read.
    names: std::sync::Mutex<Option<(std::time::Instant, HashMap<String, Entry>)>>,
    /// The UID list as last read, with the file's identity (time, size, inode) then.
    list: Option<((i64, i64, u64, u64), UidList)>,
}

fn ctime(path: &Path) -> (i64, i64, u64) {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) => (m.mtime().max(m.ctime()), m.mtime_nsec() ^ (m.ctime_nsec() << 1), m.ino()),
        Err(_) => (-1, -1, 0),
    }
}

/// Splits a Maildir file name into base and info (`base:2,FS` → `("base", "FS")`).
pub fn split_name(name: &str) -> (&str, &str) {
    match name.find(':') {
        Some(i) => (&name[..i], name[i + 1..].strip_prefix("2,").unwrap_or("")),
        None => (name, ""),
    }
}

impl Folder {
    /// Opens the folder at `dir` (which must hold `cur/` and `new/`; a missing `tmp/` is made).
    pub fn open(dir: &Path) -> io::Result<Folder> {
        if !dir.join("cur").is_dir() || !dir.join("new").is_dir() {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such mailbox"));
        }
        if !dir.join("tmp").is_dir() {
            std::fs::create_dir(dir.join("tmp"))?;
        }
        Ok(Folder { dir: dir.to_path_buf(), cache: None, names: std::sync::Mutex::new(None), list: None })
    }

    fn sig(&self) -> Sig {
        Sig {
            new: ctime(&self.dir.join("new")),
            cur: ctime(&self.dir.join("cur")),
            list: ctime(&self.dir.join(uidlist::FILE)),
        }
    }

    /// The folder's current state. With `take_new`, messages in `new/` move to `cur/` and their
    /// UIDs come back as the second value (they are `\Recent` for the caller, RFC 3501 §2.3.2).
    /// Without it, an unchanged folder is answered from the last scan.
    pub fn scan(&mut self, take_new: bool) -> io::Result<(Arc<Snapshot>, Vec<u32>)> {
        let sig = self.sig();
        if let Some((old, snap, at)) = &self.cache {
            // Directory times have a coarse clock: a change within the same tick as the last
            // scan would not show, so only times well before that scan are trusted.
            if *old == sig
                && old.settled_before(*at)
                && (!take_new || !snap.messages.iter().any(|m| m.in_new))
            {
                return Ok((snap.clone(), Vec::new()));
            }
        }
        let started = SystemTime::now();
        let _lock = FileLock::acquire(&self.dir.join(LOCK_FILE)).map_err(io::Error::other)?;
        let mut files: Vec<(String, String, bool)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut recent_bases = Vec::new();
        for entry in std::fs::read_dir(self.dir.join("new"))? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
            if name.starts_with('.') || entry.file_type().map(|t| t.is_dir()).unwrap_or(true) {
                continue;
            }
            let (base, _) = split_name(&name);
            let base = base.to_string();
            if take_new {
                let to = self.dir.join("cur").join(format!("{base}:2,"));
                match std::fs::rename(entry.path(), &to) {
                    Ok(()) => {
                        recent_bases.push(base.clone());
                        index.insert(base.clone(), files.len());
                        files.push((base, String::new(), false));
                    }
                    // Another session took it first: it will show up in cur/.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            } else {
                index.insert(base.clone(), files.len());
                files.push((base, String::new(), true));
            }
        }
        for entry in std::fs::read_dir(self.dir.join("cur"))? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
            if name.starts_with('.') || entry.file_type().map(|t| t.is_dir()).unwrap_or(true) {
                continue;
            }
            let (base, info) = split_name(&name);
            match index.get(base) {
                // Moved here by this scan, or also in new/ (a crash mid-move): cur/ wins.
                Some(&i) => files[i] = (base.to_string(), info.to_string(), false),
                None => {
                    index.insert(base.to_string(), files.len());
                    files.push((base.to_string(), info.to_string(), false));
                }
            }
        }
        let list_path = self.dir.join(uidlist::FILE);
        // Re-read only when the file changed (flag renames leave it alone).
        let stamp = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(&list_path).ok().map(|m| (m.mtime(), m.mtime_nsec(), m.size(), m.ino()))
        };
        let old_list = match (self.list.take(), stamp) {
            (Some((at, l)), Some(now)) if at == now => Some(l),
            _ => std::fs::read_to_string(&list_path).ok().and_then(|t| UidList::parse(&t)),
        };
        let had_list = old_list.is_some();
        let mut list = old_list.unwrap_or_else(|| UidList::new(now_validity()));
        // New messages get UIDs in delivery order (Maildir names start with the time).
        let mut unknown: Vec<&(String, String, bool)> =
            files.iter().filter(|f| !list.uids.contains_key(&f.0)).collect();
        unknown.sort_by(|a, b| maildir_order(&a.0, &b.0));
        let mut changed = !had_list;
        for f in unknown {
            list.assign(&f.0);
            changed = true;
        }
        let present: std::collections::HashSet<&str> = files.iter().map(|f| f.0.as_str()).collect();
        let before = list.uids.len();
        list.uids.retain(|b, _| present.contains(b.as_str()));
        changed |= list.uids.len() != before;
        if changed {
            appnet_netkit::files::write_atomic(&list_path, list.render().as_bytes())?;
        }

        let mut messages: Vec<Entry> = files
            .into_iter()
            .map(|(base, info, in_new)| Entry { uid: list.uids[&base], base, info, in_new })
            .collect();
        messages.sort_by_key(|m| m.uid);
        let mut recent: Vec<u32> = recent_bases.iter().filter_map(|b| list.uids.get(b).copied()).collect();
        recent.sort_unstable();
        let snap = Arc::new(Snapshot {
            validity: list.validity,
            next_uid: list.next,
            messages,
            keywords: Keywords::load(&self.dir),
        });
        self.cache = Some((self.sig(), snap.clone(), started));
        self.list = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(&list_path).ok().map(|m| ((m.mtime(), m.mtime_nsec(), m.size(), m.ino()), list))
        };
        Ok((snap, recent))
    }

    /// Forgets the last scan, so the next one reads the disk.
    pub fn invalidate(&mut self) {
        self.cache = None;
    }

    /// The current name of message `base` (after other sessions renamed it). `fresh` forces a
    /// new directory read instead of the names read in the last 100 ms.
    fn find_current(&self, base: &str, fresh: bool) -> io::Result<Option<Entry>> {
        let mut names = self.names.lock().map_err(|_| io::Error::other("names lock poisoned"))?;
        let stale = match &*names {
            Some((at, _)) => fresh || at.elapsed() > std::time::Duration::from_millis(100),
            None => true,
        };
        if stale {
            let mut map = HashMap::new();
            for sub in ["new", "cur"] {
                for entry in std::fs::read_dir(self.dir.join(sub))? {
                    let entry = entry?;
                    let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
                    let (b, info) = split_name(&name);
                    map.insert(
                        b.to_string(),
                        Entry { uid: 0, base: b.to_string(), info: info.to_string(), in_new: sub == "new" },
                    );
                }
            }
            *names = Some((std::time::Instant::now(), map));
        }
        Ok(names.as_ref().and_then(|(_, m)| m.get(base).cloned()))
    }

    /// Opens a message for reading (never through a symlink); when another session renamed it
    /// meanwhile (new flags) the current name is found. `None`: it was expunged.
    pub fn open_message(&self, e: &Entry) -> io::Result<Option<std::fs::File>> {
        use std::os::unix::fs::OpenOptionsExt;
        let open = |rel: PathBuf| {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(self.dir.join(rel))
        };
        let mut current = e.rel_path();
        // Renames race with us: look the name up again (a fresh directory read after the
        // first retry) a few times before calling the message gone.
        for attempt in 0..4 {
            match open(current) {
                Ok(f) => return Ok(Some(f)),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    match self.find_current(&e.base, attempt > 0)? {
                        Some(now) => current = now.rel_path(),
                        None => return Ok(None),
                    }
                }
                Err(err) => return Err(err),
            }
        }
        Ok(None)
    }

    /// The whole message as stored (`None`: expunged meanwhile), at most `limit` bytes.
    pub fn read(&self, e: &Entry, limit: u64) -> io::Result<Option<Vec<u8>>> {
        let Some(f) = self.open_message(e)? else { return Ok(None) };
        let mut data = Vec::new();
        f.take(limit).read_to_end(&mut data)?;
        Ok(Some(data))
    }

    /// The message's header block (through the empty line), read in small chunks so large
    /// bodies are not read (`None`: expunged meanwhile). At most 1 MiB.
    pub fn read_header(&self, e: &Entry) -> io::Result<Option<Arc<Vec<u8>>>> {
        // A message's content never changes (flags live in its name): header blocks are
        // cached across sessions, the way Dovecot keeps them in its index cache.
        let key = self.dir.join(&e.base);
        if let Some(h) = header_cache::get(&key) {
            return Ok(Some(h));
        }
        let Some(h) = self.read_header_uncached(e)? else { return Ok(None) };
        let h = Arc::new(h);
        header_cache::put(key, h.clone());
        Ok(Some(h))
    }

    fn read_header_uncached(&self, e: &Entry) -> io::Result<Option<Vec<u8>>> {
        let Some(mut f) = self.open_message(e)? else { return Ok(None) };
        let mut data = Vec::with_capacity(4096);
        let mut chunk = [0u8; 4096];
        loop {
            let n = f.read(&mut chunk)?;
            if n == 0 {
                return Ok(Some(data));
            }
            let from = data.len().saturating_sub(2);
            data.extend_from_slice(&chunk[..n]);
            // The header ends at the first empty line ("\n\n" or "\n\r\n").
            let end = (from..data.len()).find_map(|k| match &data[k..] {
                [b'\n', b'\n', ..] => Some(k + 2),
                [b'\n', b'\r', b'\n', ..] => Some(k + 3),
                _ => None,
            });
            if let Some(end) = end {
                data.truncate(end);
                return Ok(Some(data));
            }
            if data.len() > 1 << 20 {
                return Ok(Some(data));
            }
        }
    }

    /// The message's size with CRLF line endings (RFC822.SIZE, POP3 LIST), from the name when
    /// it carries `,W=`, else by reading the file.
    pub fn size(&self, e: &Entry) -> io::Result<u64> {
        if let Some(w) = e.size_hint() {
            return Ok(w);
        }
        Ok(self.read(e, u64::MAX)?.map(|d| super::deliver::crlf_size(&d)).unwrap_or(0))
    }

    /// The message's arrival time (the file's modification time, as Dovecot uses it).
    pub fn internal_date(&self, e: &Entry) -> SystemTime {
        let m = std::fs::symlink_metadata(self.dir.join(e.rel_path())).or_else(|_| {
            self.find_current(&e.base, true)?
                .map(|n| std::fs::symlink_metadata(self.dir.join(n.rel_path())))
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?
        });
        m.and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// Renames the message to carry `info` as its flags (moving it out of `new/`). Returns the
    /// entry as it is now, or `None` when it was expunged meanwhile.
    pub fn set_info(&self, e: &Entry, info: &str) -> io::Result<Option<Entry>> {
        let mut current = e.clone();
        for _ in 0..3 {
            if !current.in_new && current.info == info {
                return Ok(Some(current));
            }
            let to = Entry { info: info.to_string(), in_new: false, ..current.clone() };
            match std::fs::rename(self.dir.join(current.rel_path()), self.dir.join(to.rel_path())) {
                Ok(()) => return Ok(Some(to)),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    match self.find_current(&e.base, true)? {
                        Some(now) => current = Entry { uid: e.uid, ..now },
                        None => return Ok(None),
                    }
                }
                Err(err) => return Err(err),
            }
        }
        Ok(None)
    }

    /// Deletes the message's file (already gone is fine).
    pub fn expunge(&self, e: &Entry) -> io::Result<()> {
        let mut current = e.clone();
        for _ in 0..3 {
            match std::fs::remove_file(self.dir.join(current.rel_path())) {
                Ok(()) => return Ok(()),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    match self.find_current(&e.base, true)? {
                        Some(now) => current = now,
                        None => return Ok(()),
                    }
                }
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Adds a message (LF line endings) with flags `info` and the given arrival time; returns
    /// its UID (for UIDPLUS's APPENDUID).
    pub fn append(&mut self, data: &[u8], info: &str, date: Option<SystemTime>) -> io::Result<u32> {
        let path = super::deliver::store_with(&self.dir, data, Some(info), date)?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        self.assign_uid(split_name(&name).0)
    }

    /// Copies `e` of folder `from` into this folder (a hard link when possible) with `info`;
    /// returns the new UID (`None`: the source was expunged meanwhile).
    pub fn copy_from(&mut self, from: &Folder, e: &Entry, info: &str) -> io::Result<Option<u32>> {
        let Some(data) = from.read(e, u64::MAX)? else { return Ok(None) };
        let date = Some(from.internal_date(e));
        self.append(&data, info, date).map(Some)
    }

    fn assign_uid(&mut self, base: &str) -> io::Result<u32> {
        let _lock = FileLock::acquire(&self.dir.join(LOCK_FILE)).map_err(io::Error::other)?;
        let list_path = self.dir.join(uidlist::FILE);
        let mut list = std::fs::read_to_string(&list_path).ok().and_then(|t| UidList::parse(&t));
        if list.is_none() {
            drop(_lock);
            self.invalidate();
            let (snap, _) = self.scan(false)?;
            return Ok(snap.messages.iter().find(|m| m.base == base).map(|m| m.uid).unwrap_or(0));
        }
        let list = list.as_mut().expect("checked");
        let (uid, added) = list.assign(base);
        if added {
            appnet_netkit::files::write_atomic(&list_path, list.render().as_bytes())?;
        }
        self.cache = None;
        Ok(uid)
    }

    /// Saves a changed keyword table.
    pub fn save_keywords(&mut self, keywords: &Keywords) -> io::Result<()> {
        self.cache = None;
        keywords.save(&self.dir)
    }
}

/// Orders Maildir names by delivery time (`<secs>.<...>`), then by name.
fn maildir_order(a: &str, b: &str) -> std::cmp::Ordering {
    let secs = |s: &str| s.split('.').next().and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
    secs(a).cmp(&secs(b)).then_with(|| a.cmp(b))
}

fn now_validity() -> u32 {
    let secs = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(1);
    u32::try_from(secs).unwrap_or(u32::MAX).max(1)
}

/// The process-wide cache of message header blocks, bounded in bytes.
mod header_cache {
    use std::collections::HashMap;
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

    /// Bytes of headers kept; past it the cache starts over.
    const CAP: usize = 64 << 20;

    struct Cache {
        map: HashMap<PathBuf, Arc<Vec<u8>>>,
        bytes: usize,
    }

    fn cache() -> &'static Mutex<Cache> {
        static C: std::sync::OnceLock<Mutex<Cache>> = std::sync::OnceLock::new();
        C.get_or_init(|| Mutex::new(Cache { map: HashMap::new(), bytes: 0 }))
    }

    pub(super) fn get(key: &PathBuf) -> Option<Arc<Vec<u8>>> {
        cache().lock().ok()?.map.get(key).cloned()
    }

    pub(super) fn put(key: PathBuf, value: Arc<Vec<u8>>) {
        let Ok(mut c) = cache().lock() else { return };
        let size = value.len() + key.as_os_str().len() + 64;
        if c.bytes + size > CAP {
            c.map.clear();
            c.bytes = 0;
        }
        c.bytes += size;
        if let Some(old) = c.map.insert(key, value) {
            c.bytes = c.bytes.saturating_sub(old.len());
        }
    }
}
