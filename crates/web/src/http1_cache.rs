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
use crate::http1_watch::{self, Stamp};
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
            self.second = second;
        }
        self.entries.iter().position(|e| parts.matches(&e.key))
    }

    /// Entry `i` if its file is still the one served (size and mtime), else forgets it; with
    /// the file opened for a [`Payload::File`] body.
    pub fn fresh(&mut self, i: usize) -> Option<(&Entry, Option<FileRange>)> {
        let e = self.entries.get_mut(i)?;
        let (same, range) = match e.body {
            Payload::Bytes(_) if e.stamp.is_some() && http1_watch::current() == e.stamp => (true, None),
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
