//! The shared-file index of one peer: what Napster `share`, a Gnutella node and the HTTP upload
//! side publish. A scan walks the shared directory without following symlinks (so nothing
//! outside it is ever shared), hashes each regular file with SHA-1 and numbers it.
//!
//! Keyword matching is by whole words, case-insensitively: "hey jude" matches
//! `Hey_Jude (1968).mp3` because every query word is one of the name's words. Words are maximal
//! runs of letters and digits. The QRP table ([`crate::gnutella::qrp`]) hashes the same words,
//! so an ultrapeer forwards exactly the queries this index can answer.

use sha1::{Digest, Sha1};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Default cap on files indexed from one directory tree.
pub const DEFAULT_MAX_FILES: usize = 100_000;
/// Deepest directory level scanned below the shared root.
const MAX_DEPTH: usize = 32;

/// One shared file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedFile {
    /// Number used in `GET /get/<index>/<name>`, QueryHits and Push (stable within one scan).
    pub index: u32,
    /// File name (the last path component), as published.
    pub name: String,
    /// Size in bytes at scan time.
    pub size: u64,
    /// SHA-1 of the content at scan time.
    pub sha1: [u8; 20],
    /// Where it is on disk (inside the shared root).
    pub path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SharedFile {
    /// `urn:sha1:<base32>` of the file.
    pub fn urn(&self) -> String {
        crate::gnutella::base32::sha1_urn(&self.sha1)
    }

    /// Opens the file for upload: refuses a symlink in its place (O_NOFOLLOW), a file that is no
    /// longer the one scanned (device and inode differ, e.g. a directory swapped for a symlink)
    /// or one whose size changed (its hash would be stale).
    pub fn open(&self) -> io::Result<File> {
        let f = fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&self.path)?;
        let m = f.metadata()?;
        if !m.is_file() || m.dev() != self.dev || m.ino() != self.ino {
            return Err(io::Error::other("shared file was replaced since the scan"));
        }
        if m.len() != self.size {
            return Err(io::Error::other("shared file changed size since the scan; rescan the share"));
        }
        Ok(f)
    }

    /// Whether every keyword of `query` is a word of the name (false for an empty query).
    pub fn matches(&self, query: &str) -> bool {
        let q = keywords(query);
        !q.is_empty() && {
            let words = keywords(&self.name);
            q.iter().all(|k| words.contains(k))
        }
    }
}

/// The lower-cased words of `text` (maximal runs of alphanumeric characters), de-duplicated.
pub fn keywords(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let w = w.to_lowercase();
        if !out.contains(&w) {
            out.push(w);
        }
    }
    out
}

/// All files shared by one peer.
#[derive(Debug, Clone, Default)]
pub struct ShareIndex {
    files: Vec<SharedFile>,
    by_sha1: HashMap<[u8; 20], usize>,
}

impl ShareIndex {
    /// Scans `dir` with the default file cap.
    pub fn scan(dir: &Path) -> io::Result<ShareIndex> {
        Self::scan_with(dir, DEFAULT_MAX_FILES)
    }

    /// Scans `dir` recursively: regular files only (symlinks, devices, sockets and dot-files are
    /// skipped), at most `max_files`, in path order so indices are stable for the same tree.
    pub fn scan_with(dir: &Path, max_files: usize) -> io::Result<ShareIndex> {
        let root_meta = fs::symlink_metadata(dir)?;
        if !root_meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a directory", dir.display()),
            ));
        }
        let mut paths = Vec::new();
        walk(dir, 0, max_files, &mut paths)?;
        paths.sort();
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            // Opened without following a symlink swapped in since the walk.
            let Ok(mut f) = fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&path)
            else {
                continue;
            };
            let m = f.metadata()?;
            if !m.is_file() {
                continue;
            }
            let mut h = Sha1::new();
            let mut buf = vec![0u8; 64 * 1024];
            let mut size = 0u64;
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                size += n as u64;
                h.update(&buf[..n]);
            }
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            files.push(SharedFile {
                index: files.len() as u32,
                name,
                size,
                sha1: h.finalize().into(),
                path,
                dev: m.dev(),
                ino: m.ino(),
            });
        }
        Ok(Self::from_files(files))
    }

    fn from_files(files: Vec<SharedFile>) -> ShareIndex {
        let mut by_sha1 = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            by_sha1.entry(f.sha1).or_insert(i);
        }
        ShareIndex { files, by_sha1 }
    }

    /// Files whose names contain every keyword of `query` as a word.
    pub fn search(&self, query: &str) -> Vec<&SharedFile> {
        let q = keywords(query);
        if q.is_empty() {
            return Vec::new();
        }
        self.files
            .iter()
            .filter(|f| {
                let words = keywords(&f.name);
                q.iter().all(|k| words.contains(k))
            })
            .collect()
    }

    /// The file with this SHA-1, if shared.
    pub fn by_sha1(&self, sha1: &[u8; 20]) -> Option<&SharedFile> {
        self.by_sha1.get(sha1).map(|&i| &self.files[i])
    }

    /// The file with this index, if shared.
    pub fn by_index(&self, index: u32) -> Option<&SharedFile> {
        self.files.get(index as usize)
    }

    /// Every shared file, in index order.
    pub fn files(&self) -> &[SharedFile] {
        &self.files
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether nothing is shared.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Total size in kilobytes (the Pong's "kbytes shared").
    pub fn total_kbytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum::<u64>() / 1024
    }

    /// Every distinct keyword of every file name (what a QRP table is built from).
    pub fn all_keywords(&self) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        for f in &self.files {
            for k in keywords(&f.name) {
                seen.insert(k);
            }
        }
        let mut v: Vec<String> = seen.into_iter().collect();
        v.sort();
        v
    }
}

fn walk(dir: &Path, depth: usize, max_files: usize, out: &mut Vec<PathBuf>) -> io::Result<()> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    let mut entries: Vec<_> = fs::read_dir(dir)?.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        if out.len() >= max_files {
            return Ok(());
        }
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        // DirEntry::file_type does not follow symlinks.
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            walk(&e.path(), depth + 1, max_files, out)?;
        } else if t.is_file() {
            out.push(e.path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use appnet_netkit::harness::TempDir;

    fn sha1(data: &[u8]) -> [u8; 20] {
        Sha1::digest(data).into()
    }

    #[test]
    fn scan_search_and_lookup() {
        let dir = TempDir::new("overlay-index");
        let root = dir.path();
        fs::write(root.join("Hey Jude.mp3"), b"na na na").unwrap();
        fs::create_dir(root.join("more")).unwrap();
        fs::write(root.join("more/hey_you.ogg"), b"pink floyd").unwrap();
        fs::write(root.join(".partial"), b"hidden").unwrap();
        let idx = ShareIndex::scan(root).unwrap();
        assert_eq!(idx.len(), 2);
        let hits = idx.search("hey JUDE");
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].name, "Hey Jude.mp3");
        assert_eq!(hits[0].size, 8);
        assert_eq!(hits[0].sha1, sha1(b"na na na"));
        assert_eq!(idx.search("hey").len(), 2);
        assert!(idx.search("jud").is_empty(), "whole words only");
        assert!(idx.search("  ").is_empty());
        assert!(idx.search("jude floyd").is_empty());
        let f = idx.by_sha1(&sha1(b"pink floyd")).unwrap();
        assert_eq!(idx.by_index(f.index), Some(f));
        assert!(idx.by_index(99).is_none());
        assert!(f.urn().starts_with("urn:sha1:"));
        let mut s = String::new();
        f.open().unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "pink floyd");
        assert!(idx.all_keywords().contains(&"jude".to_string()));
        assert!(f.matches("YOU"));
    }

    #[test]
    fn symlinks_are_not_followed() {
        let outside = TempDir::new("overlay-outside");
        fs::write(outside.path().join("secret.txt"), b"private").unwrap();
        let dir = TempDir::new("overlay-index-links");
        let root = dir.path();
        fs::write(root.join("song.mp3"), b"ok").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), root.join("secret.txt")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("linkdir")).unwrap();
        let idx = ShareIndex::scan(root).unwrap();
        assert_eq!(idx.len(), 1);
        assert!(idx.search("secret").is_empty());
        // A regular file with the same name but another inode is refused.
        let f = idx.by_index(0).unwrap().clone();
        fs::write(root.join("song.tmp"), b"ok").unwrap();
        fs::rename(root.join("song.tmp"), &f.path).unwrap();
        assert!(f.open().is_err());
        // A shared file replaced by a symlink after the scan is refused at open.
        fs::remove_file(&f.path).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), &f.path).unwrap();
        assert!(f.open().is_err());
    }

    #[test]
    fn caps_and_errors() {
        let dir = TempDir::new("overlay-index-cap");
        for i in 0..5 {
            fs::write(dir.path().join(format!("f{i}")), [i as u8]).unwrap();
        }
        assert_eq!(ShareIndex::scan_with(dir.path(), 3).unwrap().len(), 3);
        assert!(ShareIndex::scan(&dir.path().join("f0")).is_err());
        assert!(ShareIndex::scan(&dir.path().join("missing")).is_err());
        assert_eq!(keywords("Hey_Jude (1968)!! hey"), vec!["hey", "jude", "1968"]);
    }
}
