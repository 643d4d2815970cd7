//! Where stored responses live: an in-memory index of every variant (by cache key, then Vary
//! selection) with CLOCK eviction (a second-chance approximation of LRU that needs no lock on
//! a hit), and the bodies either in memory or on disk ([`disk`]). Bodies are written while
//! they stream to the client ([`Writer`]) and only become visible once complete.
//!
//! A body being stored in memory grows in [`CHUNK`]-sized pieces, each charged to a global
//! in-flight budget ([`Inflight`]) before it is allocated: in-flight bytes count against the
//! store's capacity (stored objects are evicted to make room) and against
//! `max_inflight`; a writer that cannot get its next piece gives up at once (freeing what it
//! held) and the response streams through uncached. So memory stays under the store's
//! capacity however many large misses run at once, and no miss ever holds a whole object in a
//! second copy.

pub mod disk;

use super::policy::{PolicyOptions, Stored};
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Granularity of memory bodies: a body being stored grows by pieces of this size, each
/// charged to the in-flight budget before it is allocated.
pub const CHUNK: usize = 256 * 1024;

/// A body kept in memory: [`CHUNK`]-sized pieces (the last one shorter).
#[derive(Debug, Clone, Default)]
pub struct MemBody {
    chunks: Arc<Vec<Bytes>>,
    len: u64,
}

impl MemBody {
    /// A body of one piece (tests, small objects).
    pub fn from_bytes(b: Bytes) -> MemBody {
        MemBody { len: b.len() as u64, chunks: Arc::new(vec![b]) }
    }

    /// Its length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pieces covering `offset..offset + count` (shared, not copied).
    pub fn slices(&self, offset: u64, count: u64) -> Vec<Bytes> {
        let mut out = Vec::new();
        let (mut pos, end) = (0u64, offset.saturating_add(count).min(self.len));
        for c in self.chunks.iter() {
            let (start, stop) = (pos, pos + c.len() as u64);
            pos = stop;
            if stop <= offset || start >= end {
                continue;
            }
            let a = offset.max(start) - start;
            let b = end.min(stop) - start;
            out.push(c.slice(a as usize..b as usize));
        }
        out
    }
}

/// The global budget of bytes held by bodies being stored in memory, plus what the handler
/// queues for clients (for the gauge); shared by the store and its writers.
#[derive(Debug, Default)]
pub struct Inflight {
    /// Bytes reserved by memory writers.
    reserved: AtomicU64,
    /// Bytes queued between origin and client connections (counted, not limited here).
    queued: AtomicU64,
    /// Highest `reserved + queued` seen.
    peak: AtomicU64,
    /// Writers that gave up because the budget was exhausted.
    refused: AtomicU64,
}

impl Inflight {
    /// Bytes in flight now (reserved by writers plus queued for clients).
    pub fn current(&self) -> u64 {
        self.reserved.load(Ordering::Relaxed) + self.queued.load(Ordering::Relaxed)
    }

    /// The highest [`current`](Self::current) seen.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Writers that stopped storing because the budget was exhausted.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// `n` bytes were queued for a client.
    pub fn queue(&self, n: u64) {
        self.queued.fetch_add(n, Ordering::Relaxed);
        self.note_peak();
    }

    /// `n` queued bytes were taken by the client.
    pub fn dequeue(&self, n: u64) {
        let _ = self.queued.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| Some(q.saturating_sub(n)));
    }

    fn release(&self, n: u64) {
        let _ =
            self.reserved.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| Some(q.saturating_sub(n)));
    }

    fn note_peak(&self) {
        self.peak.fetch_max(self.current(), Ordering::Relaxed);
    }
}

/// Where a stored body is.
#[derive(Debug, Clone)]
pub enum BodyRef {
    /// In memory.
    Memory(MemBody),
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
    /// Most bytes of bodies being stored in memory at once (all writers together).
    pub max_inflight: u64,
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
    inner: Arc<RwLock<Inner>>,
    cfg: StoreConfig,
    disk: Option<disk::DiskDir>,
    next_id: AtomicU64,
    inflight: Arc<Inflight>,
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
            inner: Arc::new(RwLock::new(Inner::default())),
            inflight: Arc::new(Inflight::default()),
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

    /// The in-flight budget (and its gauge).
    pub fn inflight(&self) -> &Arc<Inflight> {
        &self.inflight
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
            None => Sink::Memory(MemSink {
                chunks: Vec::new(),
                current: BytesMut::new(),
                first: expected_len.map_or(16 * 1024, |l| l.clamp(1, CHUNK as u64) as usize),
                held: 0,
                budget: Budget {
                    inflight: self.inflight.clone(),
                    inner: self.inner.clone(),
                    capacity: self.cfg.capacity,
                    max: self.cfg.max_inflight.min(self.cfg.capacity),
                },
            }),
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
            Sink::Memory(mut m) => BodyRef::Memory(m.finish()),
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
            // Room for the bodies being stored in memory too.
            let reserved = self.inflight.reserved.load(Ordering::Acquire);
            dead.extend(evict_for(&mut inner, self.cfg.capacity, reserved));
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

/// CLOCK eviction until `bytes + reserved <= capacity` (`reserved`: in-flight memory bodies);
/// returns the evicted entries.
fn evict_for(inner: &mut Inner, capacity: u64, reserved: u64) -> Vec<Arc<Entry>> {
    let mut dead = Vec::new();
    let mut budget = inner.clock.len() * 2 + 2;
    while inner.bytes.saturating_add(reserved) > capacity && budget > 0 {
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

/// A memory writer's handle on the in-flight budget.
struct Budget {
    inflight: Arc<Inflight>,
    inner: Arc<RwLock<Inner>>,
    capacity: u64,
    max: u64,
}

impl Budget {
    /// Reserves `n` more bytes: within `max`, and with stored objects evicted so that stored
    /// plus in-flight bytes fit the capacity. `false` when the budget is exhausted.
    fn reserve(&self, n: u64) -> bool {
        let ok = self
            .inflight
            .reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| (r + n <= self.max).then_some(r + n))
            .is_ok();
        if !ok {
            return false;
        }
        self.inflight.note_peak();
        let reserved = self.inflight.reserved.load(Ordering::Acquire);
        // Memory bodies only: evicted entries have no files to delete.
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if inner.bytes.saturating_add(reserved) > self.capacity {
            drop(evict_for(&mut inner, self.capacity, reserved));
        }
        true
    }
}

/// A body being stored in memory: full pieces, the piece being filled, and the bytes
/// reserved for them (released when the sink is dropped, committed or not).
struct MemSink {
    chunks: Vec<Bytes>,
    current: BytesMut,
    /// Size of the first piece (the expected length when small), so small bodies do not
    /// hold a whole [`CHUNK`].
    first: usize,
    held: u64,
    budget: Budget,
}

impl MemSink {
    /// Appends `data`, reserving a new piece whenever the current one is full.
    fn push(&mut self, mut data: &[u8]) -> bool {
        while !data.is_empty() {
            if self.current.len() == self.current.capacity() {
                if !self.current.is_empty() {
                    self.chunks.push(std::mem::take(&mut self.current).freeze());
                }
                let size = if self.held == 0 { self.first } else { CHUNK };
                if !self.budget.reserve(size as u64) {
                    return false;
                }
                self.held += size as u64;
                self.current = BytesMut::with_capacity(size);
            }
            let room = self.current.capacity() - self.current.len();
            let take = room.min(data.len());
            self.current.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        true
    }

    /// The finished body (the reservation is released when the sink drops, as the store
    /// then counts the body itself).
    fn finish(&mut self) -> MemBody {
        if !self.current.is_empty() {
            let last = std::mem::take(&mut self.current);
            // A mostly empty last piece is copied to its size rather than kept whole.
            let last = match last.capacity() > 2 * last.len() {
                true => Bytes::copy_from_slice(&last),
                false => last.freeze(),
            };
            self.chunks.push(last);
        }
        let chunks = std::mem::take(&mut self.chunks);
        let len = chunks.iter().map(|c| c.len() as u64).sum();
        MemBody { chunks: Arc::new(chunks), len }
    }

    /// Frees everything held now (the writer gave up).
    fn clear(&mut self) {
        self.chunks = Vec::new();
        self.current = BytesMut::new();
        self.budget.inflight.release(std::mem::take(&mut self.held));
    }
}

impl Drop for MemSink {
    fn drop(&mut self) {
        self.budget.inflight.release(self.held);
    }
}

enum Sink {
    Memory(MemSink),
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
            if let Sink::Memory(m) = &mut self.sink {
                m.clear();
            }
            self.failed = true;
            return;
        }
        match &mut self.sink {
            Sink::Memory(m) => {
                if !m.push(chunk) {
                    m.clear();
                    m.budget.inflight.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("in-flight budget exhausted: this response streams through uncached");
                    self.failed = true;
                    return;
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn memory_store(capacity: u64, max_inflight: u64) -> Store {
        let cfg = StoreConfig { capacity, max_object: 64 << 20, max_variants: 4, dir: None, max_inflight };
        Store::open(cfg, &PolicyOptions::default()).unwrap()
    }

    #[tokio::test]
    async fn memory_writers_share_a_bounded_inflight_budget() {
        let store = memory_store(8 << 20, 1 << 20);
        let chunk = Bytes::from(vec![7u8; 64 * 1024]);
        let mut a = store.writer(None).await.unwrap();
        let mut b = store.writer(None).await.unwrap();
        // Two bodies grow together until the budget (1 MiB) is exhausted: the one that cannot
        // get its next piece gives up and frees what it held at once.
        for _ in 0..16 {
            a.write(&chunk).await;
            b.write(&chunk).await;
            assert!(store.inflight().current() <= 1 << 20);
        }
        assert!(a.failed() || b.failed(), "someone gave up");
        assert!(store.inflight().refused() >= 1);
        assert!(store.inflight().peak() <= 1 << 20);
        let survivor_held = store.inflight().current();
        drop(a);
        drop(b);
        assert_eq!(store.inflight().current(), 0, "dropping writers releases their reservations");
        assert!(survivor_held <= 1 << 20);
    }

    #[tokio::test]
    async fn a_small_body_reserves_only_its_expected_length() {
        let store = memory_store(8 << 20, 1 << 20);
        let mut w = store.writer(Some(1000)).await.unwrap();
        w.write(&Bytes::from(vec![1u8; 1000])).await;
        assert_eq!(store.inflight().current(), 1000);
        assert!(!w.failed());
    }

    #[tokio::test]
    async fn bodies_in_flight_count_against_the_memory_size() {
        let store = memory_store(1 << 20, 1 << 20);
        let mut h = http::HeaderMap::new();
        h.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("max-age=60"));
        let now = std::time::SystemTime::now();
        let stored = Stored::from_response(
            "http://a.test/old",
            &http::Method::GET,
            &http::HeaderMap::new(),
            http::StatusCode::OK,
            &h,
            now,
            now,
            &PolicyOptions::default(),
        )
        .unwrap();
        let mut w = store.writer(Some(600 * 1024)).await.unwrap();
        w.write(&Bytes::from(vec![1u8; 600 * 1024])).await;
        store.commit(w, stored).await.unwrap();
        assert_eq!(store.usage().0, 1);
        assert_eq!(store.inflight().current(), 0, "a committed body is stored, not in flight");
        // A new 600 KiB body in flight does not fit next to it: the stored one makes room.
        let mut w = store.writer(None).await.unwrap();
        for _ in 0..10 {
            w.write(&Bytes::from(vec![2u8; 60 * 1024])).await;
        }
        assert!(!w.failed());
        assert_eq!(store.usage().0, 0);
        assert!(store.usage().1 + store.inflight().current() <= 1 << 20);
    }

    #[test]
    fn memory_bodies_slice_across_pieces() {
        let body = MemBody {
            chunks: Arc::new(vec![
                Bytes::from_static(b"abc"),
                Bytes::from_static(b"defg"),
                Bytes::from_static(b"h"),
            ]),
            len: 8,
        };
        let join = |v: Vec<Bytes>| v.iter().flat_map(|b| b.to_vec()).collect::<Vec<u8>>();
        assert_eq!(join(body.slices(0, 8)), b"abcdefgh");
        assert_eq!(join(body.slices(2, 3)), b"cde");
        assert_eq!(join(body.slices(7, 5)), b"h");
        assert!(body.slices(8, 1).is_empty());
    }
}
