//! Change notices for the files behind the HTTP/1.1 fast path's cached answers
//! ([`crate::http1_cache`]), so that a cache hit costs no `stat` while the files stay as they
//! were. Each thread has one inotify instance (Linux) watching, for every file whose answer is
//! cached: the file itself (writes, truncation, attribute and time changes), its directory (a
//! name in it created, deleted or renamed: the path may now be another file) and every directory
//! above it up to the root (moved or deleted: the path may now lead elsewhere). Any notice at
//! all, or a lost one (queue overflow), moves the thread's [`Stamp`] on; a cached answer stamped
//! before that is checked with a `stat` again, as without this module.
//!
//! Why this is exact: the kernel queues a notice inside the system call that changes the file,
//! before that call returns, so a change made before a client sent its request is in the queue
//! when the server, having read the request, looks at the queue (one non-blocking `read` that
//! finds nothing, instead of a path walk). Changes that no inotify notice reports (a file system
//! changed by another machine, a mount on top of a directory) are seen when the answer is made
//! again: the cache forgets everything every second.
//!
//! Without a system call ([`Due`]): a worker thread's event loop (a current-thread runtime)
//! also watches the queue, so a notice queued before the loop's last look (`epoll_wait`) is
//! known as the queue's readiness, for free. A request whose first byte the same look reported
//! (the socket had been read empty before, so its next bytes needed a report) is checked that
//! way: a change made before the request was sent was queued before that look. The queue is
//! read (`read`) for every other request, once per socket read: the requests behind the first
//! in one read, after a read that filled the buffer, on TLS, or under a shared runtime; one
//! read covers every request that had arrived before it. What readiness cannot cover is a
//! request whose first byte arrives in the microseconds between the look and the read of its
//! socket (a report for bytes already read may be pending): it is answered from the files as
//! they were at that look, within the same turn of the event loop.

use std::path::{Path, PathBuf};

/// The state of one thread's watches when a cached answer was checked: answers are fresh
/// without a `stat` while the thread's current stamp is the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Which inotify instance (threads and restarts differ).
    instance: u64,
    /// How many times notices were seen on it.
    generation: u64,
}

/// How current the thread's notices must be for the request a cached answer is checked for
/// (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Read the queue (one `read`).
    Read,
    /// The request's first byte was reported by the look of this runtime's event loop that
    /// also saw every notice queued before it: the queue's readiness suffices.
    Seen(tokio::runtime::Id),
    /// The queue was read after the request had arrived: the stamp as it is.
    Known,
}

impl Due {
    /// Moves on past a request answered without a look at the notices (by the router, or from
    /// a file checked on open): readiness covers only a read's first request.
    pub fn pass(&mut self) {
        if let Due::Seen(_) = self {
            *self = Due::Read;
        }
    }
}

/// Watches placed per thread before the instance is started afresh (watches of files no longer
/// cached are dropped that way; each watch holds kernel memory and counts against
/// `fs.inotify.max_user_watches`).
const MAX_WATCHES: usize = 1024;

/// Watches `file` (see the module docs); returns the stamp a cached answer made from it now
/// carries, or `None` when the file cannot be watched (the answer is then checked with `stat`).
pub fn watch(file: &Path) -> Option<Stamp> {
    imp::with(|w| w.watch(file))
}

/// The thread's stamp now, after taking in every queued notice; `None` without a watcher.
pub fn current() -> Option<Stamp> {
    imp::with(|w| w.current())
}

/// The thread's stamp as current as `due` requires; moves `due` on to what the next request
/// of the same socket read needs (a readiness check covers one request, a read all of them).
pub fn current_for(due: &mut Due) -> Option<Stamp> {
    imp::with(|w| w.current_for(due))
}

#[cfg(target_os = "linux")]
mod imp {
    use super::{Due, MAX_WATCHES, PathBuf, Stamp};
    use std::cell::RefCell;
    use std::collections::HashSet;
    use std::ffi::CString;
    use std::future::Future;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::task::{Context, Poll, Waker};
    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;
    use tokio::runtime::Id;

    /// Instances made so far (each gets a distinct number).
    static INSTANCES: AtomicU64 = AtomicU64::new(0);

    /// On the file: its contents, size, times or attributes changed, or it went away.
    const FILE_MASK: u32 = libc::IN_MODIFY | libc::IN_ATTRIB | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF;
    /// On its directory: a name in it changed (the path may now be another file), or the
    /// directory itself went away.
    const DIR_MASK: u32 = libc::IN_CREATE
        | libc::IN_DELETE
        | libc::IN_MOVED_FROM
        | libc::IN_MOVED_TO
        | libc::IN_DELETE_SELF
        | libc::IN_MOVE_SELF;
    /// On the directories above: they went away (a directory holding others cannot be replaced
    /// by a rename without being moved or deleted first).
    const UP_MASK: u32 = libc::IN_DELETE_SELF | libc::IN_MOVE_SELF;

    /// One thread's inotify instance.
    pub struct Watcher {
        /// The queue registered with the event loop of a runtime on this thread ([`Due::Seen`]);
        /// declared before `fd` so that it is deregistered before the descriptor closes.
        seen: Option<(Id, AsyncFd<RawFd>)>,
        fd: OwnedFd,
        stamp: Stamp,
        /// Files watched (with their directories and the directories above).
        /// (Forgotten at every notice: the paths may now lead to other inodes, which are
        /// watched again when an answer is stamped next.)
        files: HashSet<PathBuf>,
        /// Directories above watched files ([`UP_MASK`]).
        dirs: HashSet<PathBuf>,
        /// Directories of watched files ([`DIR_MASK`]).
        parents: HashSet<PathBuf>,
        /// Files whose path goes through a symbolic link: never watched (see [`Watcher::place`]).
        symlinked: HashSet<PathBuf>,
        /// Watches placed since the instance started (the kernel keeps one per inode).
        placed: usize,
    }

    thread_local! {
        /// The thread's watcher, and the second its start last failed (tried again a second
        /// later: instances are limited per user, `fs.inotify.max_user_instances`).
        static WATCHER: RefCell<(Option<Watcher>, u64)> = const { RefCell::new((None, u64::MAX)) };
    }

    /// Runs `f` on the thread's watcher, starting one if needed; `None` if none can be had.
    pub fn with<T>(f: impl FnOnce(&mut Watcher) -> Option<T>) -> Option<T> {
        WATCHER
            .try_with(|cell| {
                let mut cell = cell.try_borrow_mut().ok()?;
                let (slot, failed_at) = &mut *cell;
                if slot.is_none() {
                    let second = crate::http1_cache::second_now();
                    if *failed_at == second {
                        return None;
                    }
                    *slot = Watcher::new();
                    if slot.is_none() {
                        *failed_at = second;
                    }
                }
                let w = slot.as_mut()?;
                let out = f(w);
                if w.broken() {
                    *slot = None;
                }
                out
            })
            .ok()
            .flatten()
    }

    impl Watcher {
        fn new() -> Option<Watcher> {
            // SAFETY: inotify_init1 takes flags only; a non-negative result is a new descriptor
            // that this value owns from now on.
            let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
            if fd < 0 {
                return None;
            }
            // SAFETY: `fd` was just opened and nothing else owns it.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            Some(Watcher {
                seen: None,
                fd,
                stamp: Stamp { instance: INSTANCES.fetch_add(1, Ordering::Relaxed), generation: 0 },
                files: HashSet::new(),
                dirs: HashSet::new(),
                parents: HashSet::new(),
                symlinked: HashSet::new(),
                placed: 0,
            })
        }

        /// Whether the instance failed (a new one is started next time).
        fn broken(&self) -> bool {
            self.stamp.generation == u64::MAX
        }

        fn add(&mut self, path: &Path, mask: u32) -> bool {
            let Ok(c) = CString::new(path.as_os_str().as_bytes()) else { return false };
            // SAFETY: a valid descriptor and a NUL-terminated path that outlives the call.
            let wd =
                unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), mask | libc::IN_MASK_ADD) };
            self.placed += 1;
            wd >= 0
        }

        pub fn watch(&mut self, file: &Path) -> Option<Stamp> {
            // Notices queued before the watches are (re)placed are taken in first: they may mean
            // that the path now leads to other inodes, which must be watched instead. A notice
            // arriving while they are placed means the same: place them again (a few times).
            for _ in 0..3 {
                let before = self.current()?;
                if self.symlinked.contains(file) {
                    return None;
                }
                if !self.files.contains(file) && !self.place(file) {
                    return None;
                }
                let after = self.current()?;
                if after == before {
                    return Some(after);
                }
            }
            None
        }

        /// Places the watches for `file` (see the module docs); false if one cannot be.
        fn place(&mut self, file: &Path) -> bool {
            if self.placed >= MAX_WATCHES {
                // Start afresh (every stamp given so far goes stale).
                match Watcher::new() {
                    Some(w) => *self = w,
                    None => return false,
                }
            }
            let Some(dir) = file.parent().filter(|_| file.is_absolute()) else { return false };
            // A path through a symbolic link (the file or any directory above it) is left to
            // `stat`: a watch follows the link to today's target, and the link itself can be
            // swapped by a rename in a directory watched only for moves of itself (deploys
            // switching a `current -> releases/N` link do exactly that).
            if file
                .ancestors()
                .any(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink()))
            {
                if self.symlinked.len() >= MAX_WATCHES {
                    self.symlinked.clear();
                }
                self.symlinked.insert(file.to_path_buf());
                return false;
            }
            // The directories first: a change after the file's watch is placed is then reported
            // by one of them or by the file.
            let mut up = dir.parent();
            while let Some(d) = up {
                if !self.dirs.contains(d) && !self.parents.contains(d) {
                    if !self.add(d, UP_MASK) {
                        return false;
                    }
                    self.dirs.insert(d.to_path_buf());
                }
                up = d.parent();
            }
            if !self.parents.contains(dir) {
                if !self.add(dir, DIR_MASK) {
                    return false;
                }
                self.parents.insert(dir.to_path_buf());
            }
            if !self.add(file, FILE_MASK) {
                return false;
            }
            self.files.insert(file.to_path_buf());
            true
        }

        pub fn current_for(&mut self, due: &mut Due) -> Option<Stamp> {
            match *due {
                Due::Known => Some(self.stamp),
                Due::Read => {
                    *due = Due::Known;
                    self.current()
                }
                Due::Seen(rt) => {
                    *due = Due::Read;
                    self.current_seen(rt)
                }
            }
        }

        /// The stamp as of the last look of runtime `rt`'s event loop (the current runtime).
        fn current_seen(&mut self, rt: Id) -> Option<Stamp> {
            let Some((id, reg)) = self.seen.take().filter(|(id, _)| *id == rt) else {
                // Registered now, so notices already queued are not yet readiness: read them.
                // SAFETY: the descriptor stays open and the same for the registration's whole
                // life: `fd` is owned by this watcher, which drops `seen` first (field order)
                // and never replaces `fd` without replacing `seen` (a new watcher).
                let reg = unsafe { AsyncFd::register_with_interest(self.fd.as_raw_fd(), Interest::READABLE) };
                self.seen = reg.ok().map(|reg| (rt, reg));
                return self.current();
            };
            let stamp = {
                // Polled once, outside the task's budget (an exhausted budget would say "not
                // ready" whatever the readiness).
                let ready = std::pin::pin!(tokio::task::unconstrained(std::future::poll_fn(|cx| {
                    reg.poll_read_ready(cx)
                })));
                match ready.poll(&mut Context::from_waker(Waker::noop())) {
                    Poll::Pending => Some(self.stamp),
                    Poll::Ready(Ok(mut guard)) => {
                        // Read until empty, then the readiness goes (nothing can come in
                        // between: the event loop runs on this thread).
                        let stamp = self.current();
                        if stamp.is_some() {
                            guard.clear_ready();
                        }
                        stamp
                    }
                    // The runtime is shutting down: read, and register again next time.
                    Poll::Ready(Err(_)) => return self.current(),
                }
            };
            self.seen = Some((id, reg));
            stamp
        }

        pub fn current(&mut self) -> Option<Stamp> {
            // Room for many notices (one is at most 16 bytes and a name); never read back, so
            // left uninitialised rather than cleared on every check.
            let mut buf = std::mem::MaybeUninit::<[u8; 4096]>::uninit();
            loop {
                // SAFETY: the kernel writes at most 4096 bytes into `buf`, which is that large;
                // the bytes are never read.
                let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), 4096) };
                if n > 0 {
                    self.stamp.generation += 1;
                    self.files.clear();
                    self.dirs.clear();
                    self.parents.clear();
                    continue;
                }
                let err = std::io::Error::last_os_error();
                match err.kind() {
                    std::io::ErrorKind::WouldBlock => return Some(self.stamp),
                    std::io::ErrorKind::Interrupted => continue,
                    _ => {
                        self.stamp.generation = u64::MAX;
                        return None;
                    }
                }
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    /// No watcher: every cached answer is checked with `stat`.
    pub struct Watcher;

    impl Watcher {
        pub fn watch(&mut self, _: &super::Path) -> Option<super::Stamp> {
            None
        }
        pub fn current(&mut self) -> Option<super::Stamp> {
            None
        }
        pub fn current_for(&mut self, _: &mut super::Due) -> Option<super::Stamp> {
            None
        }
    }

    pub fn with<T>(_: impl FnOnce(&mut Watcher) -> Option<T>) -> Option<T> {
        None
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::Write;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir() -> Dir {
        let d = std::env::temp_dir().join(format!(
            "appnet-web-watch-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(d.join("sub")).unwrap();
        Dir(std::fs::canonicalize(d).unwrap())
    }

    /// Every change that makes the path another file, or the file other bytes, moves the stamp
    /// on before the changing call returns.
    #[test]
    fn changes_move_the_stamp() {
        let d = dir();
        let file = d.0.join("sub/a.txt");
        let changes: [&dyn Fn(); 6] = [
            &|| std::fs::write(&file, "other").unwrap(),
            &|| std::fs::OpenOptions::new().append(true).open(&file).unwrap().set_len(1).unwrap(),
            &|| {
                std::fs::write(d.0.join("sub/new"), "new").unwrap();
                std::fs::rename(d.0.join("sub/new"), &file).unwrap();
            },
            &|| {
                std::fs::remove_file(&file).unwrap();
                std::fs::write(&file, "again").unwrap();
            },
            &|| {
                let f = std::fs::File::options().write(true).open(&file).unwrap();
                f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
            },
            &|| {
                std::fs::rename(d.0.join("sub"), d.0.join("moved")).unwrap();
                std::fs::create_dir(d.0.join("sub")).unwrap();
                std::fs::write(&file, "elsewhere").unwrap();
            },
        ];
        for (i, change) in changes.iter().enumerate() {
            let _ = std::fs::remove_dir_all(d.0.join("moved"));
            std::fs::write(&file, "hello").unwrap();
            let stamp = watch(&file).unwrap();
            assert_eq!(current(), Some(stamp), "change {i}: nothing happened yet");
            change();
            assert_ne!(current(), Some(stamp), "change {i} went unnoticed");
        }
        // Reading the file, or changing another directory, leaves the stamp.
        std::fs::write(&file, "hello").unwrap();
        let stamp = watch(&file).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"hello");
        std::fs::create_dir(d.0.join("unrelated")).unwrap();
        std::fs::write(d.0.join("unrelated/x"), "x").unwrap();
        assert_eq!(current(), Some(stamp));
    }

    /// Under a worker's runtime the queue's readiness stands for a read: it shows a change
    /// once the event loop has looked (as it does before reading any socket it reports), and
    /// one read lets the rest of a socket read's requests take the stamp as it is.
    #[tokio::test]
    async fn the_event_loop_reports_changes_without_a_read() {
        let rt = tokio::runtime::Handle::current().id();
        let d = dir();
        let file = d.0.join("sub/a.txt");
        std::fs::write(&file, "one").unwrap();
        let stamp = watch(&file).unwrap();
        let mut due = Due::Seen(rt);
        assert_eq!(current_for(&mut due), Some(stamp), "registered (and read)");
        assert_eq!(due, Due::Read, "the next request of the same read needs a read");
        tokio::task::yield_now().await;
        assert_eq!(current_for(&mut Due::Seen(rt)), Some(stamp), "nothing happened");
        std::fs::write(&file, "two").unwrap();
        assert_eq!(current_for(&mut Due::Seen(rt)), Some(stamp), "the loop has not looked since");
        assert_eq!(current_for(&mut Due::Known), Some(stamp), "nor was the queue read");
        let mut due = Due::Read;
        let read = current_for(&mut due);
        assert_ne!(read, Some(stamp), "a read sees the change at once");
        assert_eq!((due, current_for(&mut due)), (Due::Known, read));
        due.pass();
        assert_eq!(due, Due::Known, "a read still covers the requests behind");
        let mut due = Due::Seen(rt);
        due.pass();
        assert_eq!(due, Due::Read, "readiness covered only the request passed");
        let stamp = watch(&file).unwrap();
        std::fs::write(&file, "three").unwrap();
        tokio::task::yield_now().await;
        assert_ne!(current_for(&mut Due::Seen(rt)), Some(stamp), "seen by the loop's look");
        let stamp = watch(&file).unwrap();
        tokio::task::yield_now().await;
        assert_eq!(current_for(&mut Due::Seen(rt)), Some(stamp), "the readiness went with the read");
    }

    /// Watching a path again after it was replaced (no check in between) watches the new file.
    #[test]
    fn rewatch_after_replacement() {
        let d = dir();
        let file = d.0.join("sub/a.txt");
        std::fs::write(&file, "one").unwrap();
        watch(&file).unwrap();
        std::fs::write(d.0.join("sub/new"), "three").unwrap();
        std::fs::rename(d.0.join("sub/new"), &file).unwrap();
        let stamp = watch(&file).unwrap();
        assert_eq!(current(), Some(stamp));
        std::fs::OpenOptions::new().write(true).open(&file).unwrap().write_all(b"T").unwrap();
        assert_ne!(current(), Some(stamp), "a write to the new file went unnoticed");
    }

    /// A path through a symbolic link (a directory above, or the file itself) is not watched,
    /// so its answers are checked with `stat`: swapping the link (`ln -sfn`, a rename in a
    /// directory watched only for its own moves) would otherwise go unnoticed.
    #[test]
    fn symlinked_paths_are_left_to_stat() {
        let d = dir();
        std::fs::write(d.0.join("sub/a.txt"), "one").unwrap();
        std::os::unix::fs::symlink(d.0.join("sub"), d.0.join("current")).unwrap();
        std::os::unix::fs::symlink(d.0.join("sub/a.txt"), d.0.join("sub/link.txt")).unwrap();
        assert_eq!(watch(&d.0.join("current/a.txt")), None);
        assert_eq!(watch(&d.0.join("current/a.txt")), None, "asked again");
        assert_eq!(watch(&d.0.join("sub/link.txt")), None);
        assert!(watch(&d.0.join("sub/a.txt")).is_some(), "the real path is watched");
    }

    /// Past the cap the instance starts afresh: earlier stamps go stale, new ones work.
    #[test]
    fn cap_restarts() {
        let d = dir();
        let first = d.0.join("sub/f0");
        std::fs::write(&first, "0").unwrap();
        let stamp = watch(&first).unwrap();
        let others: Vec<PathBuf> = (1..=MAX_WATCHES).map(|i| d.0.join(format!("sub/f{i}"))).collect();
        for f in &others {
            std::fs::write(f, "x").unwrap();
        }
        assert_ne!(current(), Some(stamp), "files created next to it");
        let stamp = watch(&first).unwrap();
        for f in &others {
            watch(f).unwrap();
        }
        assert_ne!(current(), Some(stamp));
        let again = watch(&first).unwrap();
        assert_eq!(current(), Some(again));
    }
}
