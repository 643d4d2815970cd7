//! The user's file tree as a chroot without privileges: every path is opened from the root's
//! descriptor one component at a time with `openat(O_NOFOLLOW)`, so `..` (already removed by
//! [`crate::session::path`]), absolute paths and symbolic links never lead outside it, and a
//! link swapped in during a request cannot redirect it (no path string is resolved twice).
//!
//! Uploads go to a hidden partial file (`.NAME.ftp-part`) in the target directory and are
//! renamed over NAME only when the whole file has arrived; a partial left by a broken upload
//! is what REST + STOR or APPE resume.

use crate::session::{FsError, FsOutcome};
use crate::wire::listing::{Entry, Kind};
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// The suffix of partial uploads; such names are hidden from listings.
pub const PART_SUFFIX: &str = ".ftp-part";

/// A user's root directory, held open.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

fn cstr(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a file name"))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

fn openat(dir: RawFd, name: &str, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    // SAFETY: `c` is NUL-terminated and lives across the call; `dir` is an open descriptor.
    let fd = check(unsafe { libc::openat(dir, c.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) })?;
    // SAFETY: `fd` was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fstatat(dir: RawFd, name: Option<&str>) -> io::Result<libc::stat> {
    // SAFETY: a zeroed stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    match name {
        Some(n) => {
            let c = cstr(n)?;
            // SAFETY: valid descriptor, NUL-terminated name, valid out-pointer.
            check(unsafe { libc::fstatat(dir, c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) })?;
        }
        // SAFETY: valid descriptor and out-pointer.
        None => _ = check(unsafe { libc::fstat(dir, &mut st) })?,
    }
    Ok(st)
}

fn entry_of(name: &str, st: &libc::stat, target: Option<String>) -> Entry {
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => Kind::File,
        libc::S_IFDIR => Kind::Dir,
        libc::S_IFLNK => Kind::Link,
        _ => Kind::Other,
    };
    Entry {
        name: name.to_string(),
        kind,
        size: st.st_size.max(0) as u64,
        mtime: st.st_mtime,
        mode: st.st_mode & 0o7777,
        nlink: st.st_nlink,
        target,
    }
}

/// The io error as the session words it.
pub fn fs_error(e: &io::Error) -> FsError {
    match e.raw_os_error() {
        Some(libc::ENOENT) => FsError::NotFound,
        Some(libc::EEXIST) => FsError::Exists,
        Some(libc::ELOOP) => FsError::WrongKind("Symbolic links are not followed"),
        Some(libc::ENOTDIR) => FsError::WrongKind("Not a directory"),
        Some(libc::EISDIR) => FsError::WrongKind("Is a directory"),
        Some(libc::ENOTEMPTY) => FsError::NotEmpty,
        Some(libc::EACCES) | Some(libc::EPERM) => FsError::Denied,
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => FsError::Other("Disk full.".into()),
        _ if e.kind() == io::ErrorKind::InvalidInput => FsError::Other(format!("{e}.")),
        _ => FsError::Other("Operation failed.".into()),
    }
}

/// How an upload opens its partial file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartMode {
    /// Start at this offset: 0 = a fresh partial; n = keep the first n bytes of the partial
    /// (or of the existing file) and write from there.
    At(u64),
    /// Append after the partial (or after a copy of the existing file).
    Append,
}

impl Root {
    /// Opens the root directory (it must exist; it may itself be reached through a link).
    pub fn open(path: &Path) -> io::Result<Root> {
        use std::os::unix::ffi::OsStrExt;
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the root path"))?;
        // SAFETY: NUL-terminated path.
        let fd =
            check(unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) })
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        // SAFETY: just opened, owned by nobody else.
        Ok(Root { fd: unsafe { OwnedFd::from_raw_fd(fd) }, path: path.to_path_buf() })
    }

    /// The root's path on disk.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory `comps` below the root, each component opened without following links.
    fn dir(&self, comps: &[String]) -> io::Result<OwnedFd> {
        let mut cur = self.fd.try_clone()?;
        for c in comps {
            cur = openat(cur.as_raw_fd(), c, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)?;
        }
        Ok(cur)
    }

    /// The parent directory of `comps` and the last name (`None` for the root itself).
    fn parent<'a>(&self, comps: &'a [String]) -> io::Result<(OwnedFd, Option<&'a str>)> {
        match comps.split_last() {
            None => Ok((self.dir(&[])?, None)),
            Some((last, parent)) => Ok((self.dir(parent)?, Some(last.as_str()))),
        }
    }

    /// The facts of one entry (links are reported, not followed).
    pub fn stat(&self, comps: &[String]) -> io::Result<Entry> {
        let (dir, name) = self.parent(comps)?;
        let st = fstatat(dir.as_raw_fd(), name)?;
        let e = entry_of(name.unwrap_or("/"), &st, None);
        if e.kind == Kind::File && name.is_some_and(is_part) {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        Ok(e)
    }

    /// CWD's check: a directory reachable without links.
    pub fn check_dir(&self, comps: &[String]) -> io::Result<()> {
        self.dir(comps).map(drop)
    }

    /// A directory's entries (without `.`, `..` and partial uploads), sorted by name.
    pub fn list(&self, comps: &[String]) -> io::Result<Vec<Entry>> {
        let dir = self.dir(comps)?;
        let dup = dir.try_clone()?;
        // SAFETY: `dup` is an open directory descriptor whose ownership passes to the DIR.
        let dp = unsafe { libc::fdopendir(dup.as_raw_fd()) };
        if dp.is_null() {
            return Err(io::Error::last_os_error());
        }
        std::mem::forget(dup);
        let mut names = Vec::new();
        loop {
            // SAFETY: `dp` is a valid DIR until closedir below.
            let ent = unsafe { libc::readdir(dp) };
            if ent.is_null() {
                break;
            }
            // SAFETY: d_name is NUL-terminated within the dirent readdir returned.
            let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
            let name = name.to_string_lossy().into_owned();
            if name != "." && name != ".." && !is_part(&name) {
                names.push(name);
            }
            if names.len() > 100_000 {
                break;
            }
        }
        // SAFETY: `dp` came from fdopendir and is closed once.
        unsafe { libc::closedir(dp) };
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let Ok(st) = fstatat(dir.as_raw_fd(), Some(&name)) else { continue };
            let target = if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
                readlinkat(dir.as_raw_fd(), &name).ok()
            } else {
                None
            };
            out.push(entry_of(&name, &st, target));
        }
        Ok(out)
    }

    /// Opens a regular file for reading: its descriptor and size.
    pub fn open_read(&self, comps: &[String]) -> io::Result<(File, u64)> {
        let (dir, name) = self.parent(comps)?;
        let name = name.ok_or_else(|| io::Error::from_raw_os_error(libc::EISDIR))?;
        if is_part(name) {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        let fd = openat(dir.as_raw_fd(), name, libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK, 0)?;
        let st = fstatat(fd.as_raw_fd(), None)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(io::Error::from_raw_os_error(if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                libc::EISDIR
            } else {
                libc::EACCES
            }));
        }
        // Back to blocking reads (O_NONBLOCK only kept a FIFO from hanging the open).
        // SAFETY: valid descriptor.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, 0) };
        Ok((File::from(fd), st.st_size.max(0) as u64))
    }

    /// MKD.
    pub fn mkdir(&self, comps: &[String]) -> io::Result<()> {
        let (dir, name) = self.parent(comps)?;
        let c = cstr(name.ok_or_else(|| io::Error::from_raw_os_error(libc::EEXIST))?)?;
        // SAFETY: valid descriptor and name.
        check(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o755) }).map(drop)
    }

    /// RMD (`dir`) or DELE (not `dir`).
    pub fn remove(&self, comps: &[String], dir_wanted: bool) -> io::Result<()> {
        let (dir, name) = self.parent(comps)?;
        let c = cstr(name.ok_or_else(|| io::Error::from_raw_os_error(libc::EACCES))?)?;
        let flags = if dir_wanted { libc::AT_REMOVEDIR } else { 0 };
        if !dir_wanted {
            let st = fstatat(dir.as_raw_fd(), name)?;
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                return Err(io::Error::from_raw_os_error(libc::EISDIR));
            }
        }
        // SAFETY: valid descriptor and name.
        check(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), flags) }).map(drop)
    }

    /// RNFR + RNTO (replaces a file at the target, as rename(2) does).
    pub fn rename(&self, from: &[String], to: &[String]) -> io::Result<()> {
        let (fdir, fname) = self.parent(from)?;
        let (tdir, tname) = self.parent(to)?;
        let f = cstr(fname.ok_or_else(|| io::Error::from_raw_os_error(libc::EACCES))?)?;
        let t = cstr(tname.ok_or_else(|| io::Error::from_raw_os_error(libc::EACCES))?)?;
        // SAFETY: valid descriptors and names.
        check(unsafe { libc::renameat(fdir.as_raw_fd(), f.as_ptr(), tdir.as_raw_fd(), t.as_ptr()) }).map(drop)
    }

    /// A name in `parent` that does not exist yet, from `hint` (STOU).
    pub fn unique_name(&self, path: &[String]) -> io::Result<Vec<String>> {
        let (dir, name) = self.parent(path)?;
        let base = name.unwrap_or("upload");
        for n in 0..10_000u32 {
            let candidate = if n == 0 { base.to_string() } else { format!("{base}.{n}") };
            match fstatat(dir.as_raw_fd(), Some(&candidate)) {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let mut out = path.to_vec();
                    out.pop();
                    out.push(candidate);
                    return Ok(out);
                }
                _ => continue,
            }
        }
        Err(io::Error::from_raw_os_error(libc::EEXIST))
    }

    /// Opens the partial file for an upload to `comps`: the file positioned where writing
    /// starts, and that offset.
    pub fn open_part(&self, comps: &[String], mode: PartMode) -> io::Result<(File, u64)> {
        use std::io::{Seek, SeekFrom};
        let (dir, name) = self.parent(comps)?;
        let name = name.ok_or_else(|| io::Error::from_raw_os_error(libc::EISDIR))?;
        if is_part(name) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "names ending in .ftp-part are reserved",
            ));
        }
        let part = part_name(name);
        let d = dir.as_raw_fd();
        // The target, if any, must be a regular file (never a link or a directory).
        let existing = match fstatat(d, Some(name)) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG => Some(st.st_size.max(0) as u64),
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                return Err(io::Error::from_raw_os_error(libc::EISDIR));
            }
            Ok(_) => return Err(io::Error::from_raw_os_error(libc::ELOOP)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
            Err(e) => return Err(e),
        };
        let flags = libc::O_RDWR | libc::O_NOFOLLOW;
        let part_fd = match openat(d, &part, flags, 0) {
            Ok(fd) => {
                let st = fstatat(fd.as_raw_fd(), None)?;
                if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                    return Err(io::Error::from_raw_os_error(libc::EACCES));
                }
                Some(fd)
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
            Err(e) => return Err(e),
        };
        let fresh = || openat(d, &part, flags | libc::O_CREAT | libc::O_EXCL, 0o644);
        let (mut file, start) = match (mode, part_fd) {
            (PartMode::At(0), old) => {
                if old.is_some() {
                    let c = cstr(&part)?;
                    // SAFETY: valid descriptor and name.
                    check(unsafe { libc::unlinkat(d, c.as_ptr(), 0) })?;
                }
                (File::from(fresh()?), 0)
            }
            (PartMode::At(n), Some(fd)) => {
                let f = File::from(fd);
                if f.metadata()?.len() < n {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "REST offset is past the end of the partial file",
                    ));
                }
                f.set_len(n)?;
                (f, n)
            }
            (PartMode::Append, Some(fd)) => {
                let f = File::from(fd);
                let n = f.metadata()?.len();
                (f, n)
            }
            (mode, None) => {
                // Start from a copy of the existing file (or nothing).
                let keep = match (mode, existing) {
                    (PartMode::At(n), Some(len)) if n <= len => n,
                    (PartMode::At(_), _) => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            "REST offset is past the end of the file",
                        ));
                    }
                    (PartMode::Append, Some(len)) => len,
                    (PartMode::Append, None) => 0,
                };
                let mut f = File::from(fresh()?);
                if keep > 0 {
                    let src = openat(d, name, libc::O_RDONLY | libc::O_NOFOLLOW, 0)?;
                    let mut src = io::Read::take(File::from(src), keep);
                    io::copy(&mut src, &mut f)?;
                }
                (f, keep)
            }
        };
        file.seek(SeekFrom::Start(start))?;
        Ok((file, start))
    }

    /// Makes a finished upload visible: fsync the partial, rename it over the target, fsync
    /// the directory.
    pub fn commit_part(&self, comps: &[String], file: &File) -> io::Result<()> {
        file.sync_all()?;
        let (dir, name) = self.parent(comps)?;
        let name = name.ok_or_else(|| io::Error::from_raw_os_error(libc::EISDIR))?;
        let part = cstr(&part_name(name))?;
        let target = cstr(name)?;
        // SAFETY: valid descriptor and names.
        check(unsafe { libc::renameat(dir.as_raw_fd(), part.as_ptr(), dir.as_raw_fd(), target.as_ptr()) })?;
        // SAFETY: valid descriptor.
        unsafe { libc::fsync(dir.as_raw_fd()) };
        Ok(())
    }

    /// Bytes free for unprivileged users on the root's file system.
    pub fn free_bytes(&self) -> io::Result<u64> {
        // SAFETY: zeroed statvfs is a valid out-parameter.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: valid descriptor and out-pointer.
        check(unsafe { libc::fstatvfs(self.fd.as_raw_fd(), &mut st) })?;
        Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
    }

    /// Runs one session file-system operation (the blocking part of [`crate::session::FsOp`]).
    pub fn run_op(&self, op: &crate::session::FsOp) -> Result<FsOutcome, FsError> {
        use crate::session::FsOp;
        let r = match op {
            FsOp::Cwd(p) => self.check_dir(p).map(|_| FsOutcome::Done),
            FsOp::Mkd(p) => self.mkdir(p).map(|_| FsOutcome::Done),
            FsOp::Rmd(p) => self.remove(p, true).map(|_| FsOutcome::Done),
            FsOp::Dele(p) => self.remove(p, false).map(|_| FsOutcome::Done),
            FsOp::RenameFrom(p) => self.stat(p).map(|_| FsOutcome::Done),
            FsOp::Rename(a, b) => self.rename(a, b).map(|_| FsOutcome::Done),
            FsOp::Size(p) => self.stat(p).or_else(|e| self.part_size(p).ok_or(e)).map(FsOutcome::Entry),
            FsOp::Mdtm(p) | FsOp::Mlst(p) => self.stat(p).map(FsOutcome::Entry),
            FsOp::StatList(p) => match self.stat(p) {
                Ok(e) if e.kind == Kind::Dir => self.list(p).map(FsOutcome::Entries),
                Ok(e) => Ok(FsOutcome::Entry(e)),
                Err(e) => Err(e),
            },
        };
        r.map_err(|e| fs_error(&e))
    }

    /// SIZE of a name that exists only as a partial upload: the partial's size, so clients
    /// that resume uploads (`lftp put -c`, `curl -C -`) continue where the transfer broke.
    fn part_size(&self, comps: &[String]) -> Option<Entry> {
        let (dir, name) = self.parent(comps).ok()?;
        let name = name?;
        let st = fstatat(dir.as_raw_fd(), Some(&part_name(name))).ok()?;
        (st.st_mode & libc::S_IFMT == libc::S_IFREG).then(|| entry_of(name, &st, None))
    }
}

fn readlinkat(dir: RawFd, name: &str) -> io::Result<String> {
    let c = cstr(name)?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid descriptor, name and buffer of the given length.
    let n = unsafe { libc::readlinkat(dir, c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The hidden partial-upload name of `name`.
pub fn part_name(name: &str) -> String {
    format!(".{name}{PART_SUFFIX}")
}

fn is_part(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(PART_SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use appnet_netkit::harness::TempDir;
    use std::io::{Read, Write};

    fn v(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn symlinks_inside_the_root_are_never_followed() {
        let outside = TempDir::new("ftp-outside");
        std::fs::write(outside.path().join("secret"), b"no").unwrap();
        let dir = TempDir::new("ftp-root");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("escape")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("link")).unwrap();
        std::fs::create_dir(dir.path().join("pub")).unwrap();
        std::fs::write(dir.path().join("pub/f"), b"hello").unwrap();
        let root = Root::open(dir.path()).unwrap();
        assert_eq!(
            fs_error(&root.open_read(&v(&["escape", "secret"])).unwrap_err()),
            FsError::WrongKind("Not a directory")
        );
        assert!(root.open_read(&v(&["link"])).is_err());
        assert!(root.check_dir(&v(&["escape"])).is_err());
        assert!(root.open_part(&v(&["link"]), PartMode::At(0)).is_err());
        let mut s = String::new();
        root.open_read(&v(&["pub", "f"])).unwrap().0.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
        let names: Vec<_> = root.list(&[]).unwrap().into_iter().map(|e| (e.name, e.kind)).collect();
        assert_eq!(
            names,
            [("escape".into(), Kind::Link), ("link".into(), Kind::Link), ("pub".into(), Kind::Dir)]
        );
        assert_eq!(std::fs::read(outside.path().join("secret")).unwrap(), b"no");
    }

    #[test]
    fn uploads_appear_only_when_committed_and_resume_from_the_partial() {
        let dir = TempDir::new("ftp-up");
        let root = Root::open(dir.path()).unwrap();
        let path = v(&["up.bin"]);
        let (mut f, start) = root.open_part(&path, PartMode::At(0)).unwrap();
        assert_eq!(start, 0);
        f.write_all(b"hello ").unwrap();
        drop(f);
        assert!(root.stat(&path).is_err(), "a partial is not visible under its name");
        assert!(root.list(&[]).unwrap().is_empty(), "partials are hidden from listings");
        match root.run_op(&crate::session::FsOp::Size(path.clone())).unwrap() {
            FsOutcome::Entry(e) => assert_eq!(e.size, 6),
            other => panic!("{other:?}"),
        }
        let (mut f, start) = root.open_part(&path, PartMode::Append).unwrap();
        assert_eq!(start, 6);
        f.write_all(b"world").unwrap();
        root.commit_part(&path, &f).unwrap();
        assert_eq!(std::fs::read(dir.path().join("up.bin")).unwrap(), b"hello world");
        // REST 5 + STOR over an existing file keeps its first 5 bytes.
        let (mut f, start) = root.open_part(&path, PartMode::At(5)).unwrap();
        assert_eq!(start, 5);
        f.write_all(b"!").unwrap();
        root.commit_part(&path, &f).unwrap();
        assert_eq!(std::fs::read(dir.path().join("up.bin")).unwrap(), b"hello!");
        assert!(root.open_part(&path, PartMode::At(100)).is_err());
    }

    #[test]
    fn remove_rename_and_unique_names() {
        let dir = TempDir::new("ftp-ops");
        let root = Root::open(dir.path()).unwrap();
        root.mkdir(&v(&["d"])).unwrap();
        assert_eq!(fs_error(&root.mkdir(&v(&["d"])).unwrap_err()), FsError::Exists);
        std::fs::write(dir.path().join("d/x"), b"1").unwrap();
        assert_eq!(fs_error(&root.remove(&v(&["d"]), true).unwrap_err()), FsError::NotEmpty);
        assert_eq!(
            fs_error(&root.remove(&v(&["d"]), false).unwrap_err()),
            FsError::WrongKind("Is a directory")
        );
        assert_eq!(root.unique_name(&v(&["d", "x"])).unwrap(), v(&["d", "x.1"]));
        root.rename(&v(&["d", "x"]), &v(&["y"])).unwrap();
        root.remove(&v(&["y"]), false).unwrap();
        root.remove(&v(&["d"]), true).unwrap();
        assert!(root.free_bytes().unwrap() > 0);
    }
}
