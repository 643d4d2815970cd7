//! Where stored responses live: an in-memory index of every variant (by cache key, then Vary
//! selection) with CLOCK eviction (a second-chance approximation of LRU that needs no lock on
//! a hit), and the bodies either in memory or on disk ([`disk`]). Bodies are written while
//! they stream to the client ([`Writer`]) and only become visible once complete.

pub mod disk;

use super::policy::{PolicyOptions, Stored};
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Where a stored body is.
#[derive(Debug, Clone)]
pub enum BodyRef {
    /// In memory.
    Memory(Bytes),
    /// In a file of the cache directory.
    Disk(PathBuf),
}

/// One stored response variant.
#[derive(Debug)]
pub struct Entry {
    /// Unique id (also the file name on disk).
    pub id: u64,
    /// Metadata and policy.
    pub stored: Stored,
    /// The body.
    pub body: BodyRef,
    referenced: AtomicBool,
}

impl Entry {
    /// Bytes this entry counts against the store's capacity.
    pub fn size(&self) -> u64 {
        self.stored.meta.body_len + 512
    }
}

/// Store sizing.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Total bytes of bodies kept (memory, or disk with `dir`).
    pub capacity: u64,
    /// Largest single body stored; larger ones stream through uncached.
    pub max_object: u64,
    /// Most variants (Vary) kept per URL.
    pub max_variants: usize,
    /// Keep bodies on disk here (survives restarts).
    pub dir: Option<PathBuf>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<String, Vec<Arc<Entry>>>,
    clock: VecDeque<(String, u64)>,
    bytes: u64,
    objects: usize,
}

/// The cache store: index plus bodies.
pub struct Store {
    inner: RwLock<Inner>,
    cfg: StoreConfig,
    disk: Option<disk::DiskDir>,
    next_id: AtomicU64,
}

impl Store {
    /// Opens the store; with a directory, loads what a previous run left (complete objects
    /// only) and deletes leftovers of interrupted writes.
    pub fn open(cfg: StoreConfig, opts: &PolicyOptions) -> io::Result<Store> {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let store = Store {
            inner: RwLock::new(Inner::default()),
            disk: match &cfg.dir {
                Some(d) => Some(disk::DiskDir::open(d)?),
                None => None,
            },
            cfg,
            next_id: AtomicU64::new(seed),
        };
        if let Some(d) = &store.disk {
            for (id, meta) in d.load()? {
                let stored = Stored::from_meta(meta, opts);
                let entry = Entry {
                    id,
                    body: BodyRef::Disk(d.body_path(id)),
                    stored,
                    referenced: AtomicBool::new(false),
                };
                store.insert_entry(Arc::new(entry));
            }
        }
        Ok(store)
    }

    /// The configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    /// Whether bodies go to disk.
    pub fn is_disk(&self) -> bool {
        self.disk.is_some()
    }

    /// (objects, bytes) held.
    pub fn usage(&self) -> (usize, u64) {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        (inner.objects, inner.bytes)
    }

    /// The stored variant of `key` whose Vary selection matches `req`.
    pub fn lookup(&self, key: &str, req: &http::HeaderMap) -> Option<Arc<Entry>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let variants = inner.map.get(key)?;
        let e = variants.iter().rev().find(|e| e.stored.vary_matches(req))?;
        e.referenced.store(true, Ordering::Relaxed);
        Some(e.clone())
    }

    /// Whether anything (any variant) is stored under `key`.
    pub fn lookup_any(&self, key: &str) -> bool {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).map.contains_key(key)
    }

    /// Starts storing a body for a response; `None` when it is known to be too large.
    pub async fn writer(&self, expected_len: Option<u64>) -> Option<Writer> {
        if expected_len.is_some_and(|l| l > self.cfg.max_object) {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let sink = match &self.disk {
            Some(d) => match d.create_temp(id).await {
                Ok((file, path)) => Sink::Disk { file, path },
                Err(e) => {
                    tracing::warn!("cache directory: cannot create a temporary file: {e}");
                    return None;
                }
            },
            None => {
                Sink::Memory(BytesMut::with_capacity(expected_len.unwrap_or(16 * 1024).min(1 << 20) as usize))
            }
        };
        Some(Writer { id, sink, written: 0, limit: self.cfg.max_object, failed: false })
    }

    /// Makes a completely written body visible under `stored` (replacing the same variant).
    pub async fn commit(&self, writer: Writer, mut stored: Stored) -> io::Result<Arc<Entry>> {
        if writer.failed {
            writer.abort().await;
            return Err(io::Error::other("object too large or write failed"));
        }
        stored.meta.body_len = writer.written;
        let body = match writer.sink {
            Sink::Memory(buf) => BodyRef::Memory(buf.freeze()),
            Sink::Disk { file, path } => {
                let d = self.disk.as_ref().ok_or_else(|| io::Error::other("no cache directory"))?;
                BodyRef::Disk(d.commit(writer.id, file, &path, &stored.meta).await?)
            }
        };
        let entry = Arc::new(Entry { id: writer.id, stored, body, referenced: AtomicBool::new(false) });
        self.insert_entry(entry.clone());
        Ok(entry)
    }

    /// Replaces `old` by the same body with refreshed metadata (a 304 from the origin).
    pub async fn refresh(&self, old: &Arc<Entry>, stored: Stored) -> Arc<Entry> {
        if let (Some(d), BodyRef::Disk(_)) = (&self.disk, &old.body)
            && let Err(e) = d.write_meta(old.id, &stored.meta).await
        {
            tracing::warn!("cache directory: cannot update metadata: {e}");
        }
        let entry =
            Arc::new(Entry { id: old.id, stored, body: old.body.clone(), referenced: AtomicBool::new(true) });
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if let Some(vs) = inner.map.get_mut(&entry.stored.meta.key)
            && let Some(slot) = vs.iter_mut().find(|e| e.id == old.id)
        {
            *slot = entry.clone();
        }
        entry
    }

    fn insert_entry(&self, entry: Arc<Entry>) {
        let mut dead = Vec::new();
        {
            let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
            let key = entry.stored.meta.key.clone();
            let size = entry.size();
            let vs = inner.map.entry(key.clone()).or_default();
            let mut removed = Vec::new();
            vs.retain(|old| {
                let same = old.stored.same_variant(&entry.stored);
                if same {
                    removed.push(old.clone());
                }
                !same
            });
            if vs.len() >= self.cfg.max_variants.max(1) {
                removed.push(vs.remove(0));
            }
            vs.push(entry.clone());
            for old in &removed {
                inner.bytes = inner.bytes.saturating_sub(old.size());
                inner.objects -= 1;
            }
            dead.extend(removed);
            inner.bytes += size;
            inner.objects += 1;
            inner.clock.push_back((key, entry.id));
            dead.extend(evict(&mut inner, self.cfg.capacity));
        }
        self.delete_files(dead);
    }

    /// Drops every variant stored under `key`; returns how many.
    pub fn remove(&self, key: &str) -> usize {
        let dead = {
            let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
            let dead = inner.map.remove(key).unwrap_or_default();
            for e in &dead {
                inner.bytes = inner.bytes.saturating_sub(e.size());
                inner.objects -= 1;
            }
            dead
        };
        let n = dead.len();
        self.delete_files(dead);
        n
    }

    fn delete_files(&self, dead: Vec<Arc<Entry>>) {
        if let Some(d) = &self.disk {
            for e in dead {
                if matches!(e.body, BodyRef::Disk(_)) {
                    d.remove(e.id);
                }
            }
        }
    }
}

/// CLOCK eviction until `bytes <= capacity`; returns the evicted entries.
fn evict(inner: &mut Inner, capacity: u64) -> Vec<Arc<Entry>> {
    let mut dead = Vec::new();
    let mut budget = inner.clock.len() * 2 + 2;
    while inner.bytes > capacity && budget > 0 {
        budget -= 1;
        let Some((key, id)) = inner.clock.pop_front() else { break };
        let Some(vs) = inner.map.get_mut(&key) else { continue };
        let Some(pos) = vs.iter().position(|e| e.id == id) else { continue };
        if vs[pos].referenced.swap(false, Ordering::Relaxed) {
            inner.clock.push_back((key, id));
            continue;
        }
        let e = vs.remove(pos);
        if vs.is_empty() {
            inner.map.remove(&key);
        }
        inner.bytes = inner.bytes.saturating_sub(e.size());
        inner.objects -= 1;
        dead.push(e);
    }
    // Forget clock slots of entries that are gone (replaced variants, purges).
    if inner.clock.len() > inner.objects * 2 + 64 {
        let map = &inner.map;
        inner.clock.retain(|(k, id)| map.get(k).is_some_and(|vs| vs.iter().any(|e| e.id == *id)));
    }
    dead
}

enum Sink {
    Memory(BytesMut),
    Disk { file: tokio::fs::File, path: PathBuf },
}

/// A body being stored while it streams; commit it with [`Store::commit`].
pub struct Writer {
    id: u64,
    sink: Sink,
    written: u64,
    limit: u64,
    failed: bool,
}

impl Writer {
    /// Appends a chunk. Once the object exceeds the size limit (or a write fails) the writer
    /// stops storing and [`Store::commit`] refuses it.
    pub async fn write(&mut self, chunk: &Bytes) {
        if self.failed {
            return;
        }
        if self.written + chunk.len() as u64 > self.limit {
            self.failed = true;
            return;
        }
        match &mut self.sink {
            Sink::Memory(buf) => buf.extend_from_slice(chunk),
            Sink::Disk { file, .. } => {
                use tokio::io::AsyncWriteExt;
                if let Err(e) = file.write_all(chunk).await {
                    tracing::warn!("cache directory: write failed: {e}");
                    self.failed = true;
                    return;
                }
            }
        }
        self.written += chunk.len() as u64;
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Whether the writer gave up.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Throws the partial body away.
    pub async fn abort(self) {
        if let Sink::Disk { file, path } = self.sink {
            drop(file);
            let _ = tokio::fs::remove_file(&path).await;
        }
    }
}
