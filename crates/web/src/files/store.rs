//! Finding and reading files under a site root: symlink-safe resolution, index files,
//! precompressed siblings, and an in-memory cache of small hot files checked against mtime.
//! File-system calls here are blocking and short (stat, open, reads of small cached files).

use super::path::within_root;
use bytes::Bytes;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// A regular file found under a root.
#[derive(Debug, Clone)]
pub struct FileInfo {
    /// Its resolved path (inside the root).
    pub path: PathBuf,
    /// Size in bytes.
    pub len: u64,
    /// Modification time.
    pub mtime: SystemTime,
}

/// The result of looking a request path up under a root.
#[derive(Debug)]
pub enum Lookup {
    /// A regular file.
    File(FileInfo),
    /// A directory (the caller decides about index files, listings and the trailing slash).
    Dir(PathBuf),
    /// Nothing there (or not readable).
    NotFound,
    /// It exists but resolves outside the root (a symlink escape) or is not a regular file.
    Forbidden,
}

/// Looks `rel` up under the canonical `root`, following symlinks only while they stay inside.
pub fn lookup(root: &Path, rel: &Path) -> Lookup {
    let joined = root.join(rel);
    let resolved = match std::fs::canonicalize(&joined) {
        Ok(p) => p,
        Err(_) => return Lookup::NotFound,
    };
    if !within_root(root, &resolved) {
        return Lookup::Forbidden;
    }
    match std::fs::metadata(&resolved) {
        Ok(m) if m.is_file() => Lookup::File(FileInfo {
            path: resolved,
            len: m.len(),
            mtime: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        }),
        Ok(m) if m.is_dir() => Lookup::Dir(resolved),
        Ok(_) => Lookup::Forbidden,
        Err(_) => Lookup::NotFound,
    }
}

/// A sibling file (`NAME.gz`, `NAME.br`) of a resolved file, if it is a regular file in the root.
pub fn sibling(root: &Path, file: &Path, suffix: &str) -> Option<FileInfo> {
    let mut name = file.as_os_str().to_owned();
    name.push(suffix);
    match lookup(root, Path::new(&name).strip_prefix(root).ok()?) {
        Lookup::File(info) => Some(info),
        _ => None,
    }
}

/// A short-lived cache of path resolutions (symlinks followed and checked against the root),
/// so a hot path costs one `stat` per request instead of a `realpath` walk. Entries live for
/// `ttl`; the size and mtime still come from a fresh `stat` every time.
pub struct ResolveCache {
    ttl: Duration,
    max: usize,
    map: Mutex<HashMap<PathBuf, (Instant, Option<PathBuf>)>>,
}

impl ResolveCache {
    /// A cache keeping resolutions for `ttl`, at most `max` of them.
    pub fn new(ttl: Duration, max: usize) -> ResolveCache {
        ResolveCache { ttl, max, map: Mutex::new(HashMap::new()) }
    }

    /// Forgets everything (after the server itself changed files).
    pub fn clear(&self) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Like [`lookup`], through the cache.
    pub fn lookup(&self, root: &Path, rel: &Path, now: Instant) -> Lookup {
        let joined = root.join(rel);
        let cached = {
            let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            map.get(&joined)
                .filter(|(at, _)| now.saturating_duration_since(*at) < self.ttl)
                .map(|(_, r)| r.clone())
        };
        let resolved = match cached {
            Some(r) => r,
            None => {
                let r = match std::fs::canonicalize(&joined) {
                    Ok(p) if within_root(root, &p) => Some(p),
                    Ok(_) => return Lookup::Forbidden,
                    Err(_) => None,
                };
                let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
                if map.len() >= self.max {
                    map.clear();
                }
                map.insert(joined, (now, r.clone()));
                r
            }
        };
        let Some(path) = resolved else { return Lookup::NotFound };
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Lookup::File(FileInfo {
                len: m.len(),
                mtime: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                path,
            }),
            Ok(m) if m.is_dir() => Lookup::Dir(path),
            Ok(_) => Lookup::Forbidden,
            Err(_) => Lookup::NotFound,
        }
    }

    /// Like [`sibling`], through the cache.
    pub fn sibling(&self, root: &Path, file: &Path, suffix: &str, now: Instant) -> Option<FileInfo> {
        let mut name = file.as_os_str().to_owned();
        name.push(suffix);
        match self.lookup(root, Path::new(&name).strip_prefix(root).ok()?, now) {
            Lookup::File(info) => Some(info),
            _ => None,
        }
    }
}

/// Lists a directory's entries for the generated listing (hidden names skipped, at most `max`).
pub fn list_dir(dir: &Path, max: usize) -> io::Result<Vec<super::listing::Entry>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)?.take(max) {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        out.push(super::listing::Entry {
            name,
            is_dir: meta.is_dir(),
            size: meta.len(),
            modified: meta.modified().ok(),
        });
    }
    Ok(out)
}

struct Cached {
    len: u64,
    mtime: SystemTime,
    data: Bytes,
}

/// An in-memory cache of small files, keyed by resolved path and checked against (size, mtime)
/// on every use, so edits on disk show at once.
pub struct FileCache {
    max_file: u64,
    max_total: u64,
    inner: Mutex<(HashMap<PathBuf, Cached>, u64)>,
}

impl FileCache {
    /// A cache holding files up to `max_file` bytes, `max_total` bytes in all (0 disables it).
    pub fn new(max_file: u64, max_total: u64) -> FileCache {
        FileCache { max_file, max_total, inner: Mutex::new((HashMap::new(), 0)) }
    }

    /// Whether a file of this size is served from memory.
    pub fn holds(&self, len: u64) -> bool {
        len <= self.max_file && self.max_total > 0
    }

    /// The file's bytes from the cache, reading (and caching) them when absent or stale.
    pub fn get(&self, info: &FileInfo) -> io::Result<Bytes> {
        {
            let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = guard.0.get(&info.path)
                && c.len == info.len
                && c.mtime == info.mtime
            {
                return Ok(c.data.clone());
            }
        }
        let data = Bytes::from(std::fs::read(&info.path)?);
        if data.len() as u64 != info.len {
            // Changed while we read it: serve what we read, don't cache it.
            return Ok(data);
        }
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (map, used) = &mut *guard;
        if let Some(old) = map.remove(&info.path) {
            *used -= old.len;
        }
        if *used + info.len > self.max_total {
            // Simple and bounded: start over rather than track recency.
            map.clear();
            *used = 0;
        }
        if info.len <= self.max_total {
            *used += info.len;
            map.insert(info.path.clone(), Cached { len: info.len, mtime: info.mtime, data: data.clone() });
        }
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "appnet-web-store-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.txt"), b"hello").unwrap();
        std::fs::write(dir.join("a.txt.gz"), b"gz").unwrap();
        std::fs::canonicalize(dir).unwrap()
    }

    #[test]
    fn lookups() {
        let root = tmp();
        assert!(matches!(lookup(&root, Path::new("a.txt")), Lookup::File(f) if f.len == 5));
        assert!(matches!(lookup(&root, Path::new("sub")), Lookup::Dir(_)));
        assert!(matches!(lookup(&root, Path::new("missing")), Lookup::NotFound));
        let Lookup::File(f) = lookup(&root, Path::new("a.txt")) else { panic!() };
        assert_eq!(sibling(&root, &f.path, ".gz").unwrap().len, 2);
        assert!(sibling(&root, &f.path, ".br").is_none());
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc", root.join("escape")).unwrap();
            std::os::unix::fs::symlink(root.join("a.txt"), root.join("inside")).unwrap();
            assert!(matches!(
                lookup(&root, Path::new("escape/hostname")),
                Lookup::Forbidden | Lookup::NotFound
            ));
            assert!(matches!(lookup(&root, Path::new("escape")), Lookup::Forbidden));
            assert!(matches!(lookup(&root, Path::new("inside")), Lookup::File(_)));
        }
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn resolve_cache_keeps_resolutions_not_metadata() {
        let root = tmp();
        let cache = ResolveCache::new(Duration::from_secs(60), 100);
        let now = Instant::now();
        assert!(matches!(cache.lookup(&root, Path::new("a.txt"), now), Lookup::File(f) if f.len == 5));
        std::fs::write(root.join("a.txt"), b"longer!").unwrap();
        assert!(matches!(cache.lookup(&root, Path::new("a.txt"), now), Lookup::File(f) if f.len == 7));
        assert!(matches!(cache.lookup(&root, Path::new("new.txt"), now), Lookup::NotFound));
        std::fs::write(root.join("new.txt"), b"x").unwrap();
        assert!(matches!(cache.lookup(&root, Path::new("new.txt"), now), Lookup::NotFound), "cached miss");
        assert!(matches!(
            cache.lookup(&root, Path::new("new.txt"), now + Duration::from_secs(61)),
            Lookup::File(_)
        ));
        std::fs::remove_file(root.join("a.txt")).unwrap();
        assert!(matches!(cache.lookup(&root, Path::new("a.txt"), now), Lookup::NotFound));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc", root.join("escape")).unwrap();
            assert!(matches!(cache.lookup(&root, Path::new("escape"), now), Lookup::Forbidden));
        }
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn cache_sees_changes() {
        let root = tmp();
        let cache = FileCache::new(1024, 4096);
        let info = |root: &Path| match lookup(root, Path::new("a.txt")) {
            Lookup::File(f) => f,
            _ => panic!(),
        };
        assert_eq!(&cache.get(&info(&root)).unwrap()[..], b"hello");
        std::fs::write(root.join("a.txt"), b"changed!").unwrap();
        assert_eq!(&cache.get(&info(&root)).unwrap()[..], b"changed!");
        let _ = std::fs::remove_dir_all(&root);
    }
}
