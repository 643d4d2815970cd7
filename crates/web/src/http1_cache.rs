//! The HTTP/1.1 fast path's per-connection response cache: a whole-file 200 answer the router
//! gave (marked [`ServedFile`]), encoded once, sent again for the same method, version,
//! keep-alive, Host and target ([`KeyParts`]) as long as the file's size and mtime have not
//! changed and within the same second (the router's path-resolution cache and `Expires` values
//! live that long). Whether the file changed is known without a `stat` while the thread's
//! inotify watches report nothing ([`crate::http1_watch`]); after any notice, or where a file
//! cannot be watched, a `stat` tells (as the router does). Only with the access log off:
//! the router logs every request it answers. The bytes sent are the router's, with a fresh
//! Date. A body the fast path sends with `sendfile` ([`Payload::File`]) is kept as its length
//! only: each hit opens the file again and checks it on the open file, so no descriptor is held
//! between requests and the bytes sent are those of the file checked.

use crate::http1_head::KeyParts;
use crate::http1_send::{self, FileRange};
use crate::http1_watch::{self, Due, Stamp};
use crate::site::ServedFile;
use bytes::Bytes;
use std::time::{SystemTime, UNIX_EPOCH};

/// Entries kept per connection.
const ENTRIES: usize = 8;

/// One cached answer.
pub struct Entry {
    key: Vec<u8>,
    /// The encoded head; its last 33 bytes are the Date value and the blank line.
    pub head: Bytes,
    /// The body.
    pub body: Payload,
    /// Whether the connection closes after it.
    pub close: bool,
    file: ServedFile,
    /// The watches' state when the file was last seen unchanged (see [`HeadCache::fresh`]).
    stamp: Option<Stamp>,
}

/// A cached answer's body.
pub enum Payload {
    /// The bytes (empty for HEAD).
    Bytes(Bytes),
    /// The whole file, sent from the file (its length).
    File(u64),
}

/// A connection's cache (see the module docs).
#[derive(Default)]
pub struct HeadCache {
    entries: Vec<Entry>,
    second: u64,
    /// Round-robin replacement.
    next: usize,
    /// The bytes of the last head that hit ([`HeadCache::remember`]).
    last_head: Vec<u8>,
    /// The entry that head hit; `None` once the entries move or go.
    last_entry: Option<usize>,
}

/// The wall-clock second now.
pub fn second_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Whether `file` is still the size and mtime it was served with (one `stat`).
fn unchanged(file: &ServedFile) -> bool {
    std::fs::metadata(&file.path)
        .is_ok_and(|m| m.is_file() && m.len() == file.len && m.modified().ok() == Some(file.mtime))
}

impl HeadCache {
    /// The entry for `parts` (its index), forgetting everything from an earlier second.
    pub fn probe(&mut self, parts: &KeyParts<'_>, second: u64) -> Option<usize> {
        if second != self.second {
            self.entries.clear();
            self.last_entry = None;
            self.second = second;
        }
        self.entries.iter().position(|e| parts.matches(&e.key))
    }

    /// If `buf` starts with the very bytes of the last head that hit, in the same second and
    /// with the entries unchanged since: that head's length and entry. Clients such as load
    /// generators and pollers send the same head again and again; the parse and the guard's
    /// checks are a function of the bytes alone (and of the connection's limits, which do not
    /// change), so the same bytes would give the same request and find the same entry.
    pub fn repeat(&self, buf: &[u8], second: u64) -> Option<(usize, usize)> {
        let entry = self.last_entry?;
        (second == self.second && buf.starts_with(&self.last_head)).then_some((self.last_head.len(), entry))
    }

    /// Remembers `head`, whose parse found entry `i` in this second, for [`HeadCache::repeat`].
    pub fn remember(&mut self, head: &[u8], i: usize) {
        self.last_head.clear();
        self.last_head.extend_from_slice(head);
        self.last_entry = Some(i);
    }

    /// Entry `i` if its file is still the one served (size and mtime), else forgets it; with
    /// the file opened for a [`Payload::File`] body.
    /// `due`: how current the change notices must be for this request ([`http1_watch::Due`]).
    pub fn fresh(&mut self, i: usize, due: &mut Due) -> Option<(&Entry, Option<FileRange>)> {
        let e = self.entries.get_mut(i)?;
        let (same, range) = match e.body {
            Payload::Bytes(_) if e.stamp.is_some() && http1_watch::current_for(due) == e.stamp => {
                (true, None)
            }
            Payload::Bytes(_) => {
                // Watched first, then checked: a change after the check is noticed.
                let stamp = http1_watch::watch(&e.file.path);
                let same = unchanged(&e.file);
                e.stamp = stamp.filter(|_| same);
                (same, None)
            }
            Payload::File(len) => {
                let range = http1_send::open_range(&e.file.path, e.file.len, e.file.mtime, 0, len);
                (range.is_some(), range)
            }
        };
        if !same {
            self.entries.swap_remove(i);
            self.last_entry = None;
            return None;
        }
        Some((self.entries.get(i)?, range))
    }

    /// Keeps an answer made in `second`.
    pub fn put(
        &mut self,
        key: Vec<u8>,
        head: Bytes,
        body: Payload,
        close: bool,
        file: ServedFile,
        second: u64,
    ) {
        if second != self.second {
            self.entries.clear();
            self.second = second;
        }
        // Entries are added or replaced: the last hit's index may no longer be its entry.
        self.last_entry = None;
        // (Payload::File bodies are checked on the file they are sent from, every time.)
        let stamp = match body {
            Payload::Bytes(_) => http1_watch::watch(&file.path).filter(|_| unchanged(&file)),
            Payload::File(_) => None,
        };
        let e = Entry { key, head, body, close, file, stamp };
        if self.entries.len() < ENTRIES {
            self.entries.push(e);
        } else {
            self.next = (self.next + 1) % ENTRIES;
            self.entries[self.next] = e;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &std::path::Path) -> ServedFile {
        let path = dir.join("a.html");
        std::fs::write(&path, b"hello").unwrap();
        let m = std::fs::metadata(&path).unwrap();
        ServedFile { path, len: m.len(), mtime: m.modified().unwrap() }
    }

    fn parts(target: &[u8]) -> KeyParts<'_> {
        KeyParts { flags: 6, host: b"h", target }
    }

    #[test]
    fn a_repeated_head_is_the_last_hit_only_while_nothing_moved() {
        let dir = appnet_netkit::harness::TempDir::new("http1-cache");
        let mut c = HeadCache::default();
        let head = b"GET /a.html HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(c.repeat(head, 7), None, "nothing hit yet");
        c.put(
            parts(b"/a.html").to_key(),
            Bytes::new(),
            Payload::Bytes(Bytes::from_static(b"hello")),
            false,
            file(dir.path()),
            7,
        );
        let i = c.probe(&parts(b"/a.html"), 7).unwrap();
        c.remember(head, i);
        // The same bytes (with the next request behind them) are the same hit.
        let mut two = head.to_vec();
        two.extend_from_slice(b"GET /b");
        assert_eq!(c.repeat(&two, 7), Some((head.len(), i)));
        // Other bytes, a partial head, or another second are not.
        assert_eq!(c.repeat(b"GET /b.html HTTP/1.1\r\nHost: h\r\n\r\n", 7), None);
        assert_eq!(c.repeat(&head[..head.len() - 2], 7), None);
        assert_eq!(c.repeat(head, 8), None);
        // A new entry may replace the one remembered: forgotten until the next hit.
        c.put(
            parts(b"/b.html").to_key(),
            Bytes::new(),
            Payload::Bytes(Bytes::new()),
            false,
            file(dir.path()),
            7,
        );
        assert_eq!(c.repeat(head, 7), None);
        let i = c.probe(&parts(b"/a.html"), 7).unwrap();
        c.remember(head, i);
        assert_eq!(c.repeat(head, 7), Some((head.len(), i)));
        // A file that changed takes its entry out: forgotten as well.
        std::fs::write(dir.path().join("a.html"), b"changed!").unwrap();
        assert!(c.fresh(i, &mut Due::Read).is_none());
        assert_eq!(c.repeat(head, 7), None);
        // A new second clears every entry.
        let i = c.probe(&parts(b"/b.html"), 7).unwrap();
        c.remember(b"GET /b.html HTTP/1.1\r\nHost: h\r\n\r\n", i);
        assert_eq!(c.probe(&parts(b"/b.html"), 8), None);
        assert_eq!(c.repeat(b"GET /b.html HTTP/1.1\r\nHost: h\r\n\r\n", 8), None);
    }
}
