//! Opening a download's files under its directory without ever following a symbolic link
//! (`openat` with `O_NOFOLLOW` on every component), remembering what this run created so a
//! failed start can remove exactly that and nothing else.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Directories opened (and possibly created) under one root, and the entries this walker made.
pub(crate) struct Walker {
    root: OwnedFd,
    root_path: PathBuf,
    /// Open directories by their components below the root.
    dirs: HashMap<Vec<String>, OwnedFd>,
    /// What we created, in order: (parent components, name, is a directory).
    created: Vec<(Vec<String>, String, bool)>,
}

fn cstr(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a file name"))
}

fn symlink_error(path: &Path, e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is a symbolic link or not a directory; refusing to follow it", path.display()),
        ),
        _ => io::Error::new(e.kind(), format!("{}: {e}", path.display())),
    }
}

/// `openat(dir, name, flags, mode)` as an owned descriptor.
fn openat(dir: RawFd, name: &str, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    // SAFETY: `c` is a valid NUL-terminated string for the call; `dir` is an open descriptor
    // owned by the caller; the returned descriptor is owned by nobody else.
    let fd = unsafe { libc::openat(dir, c.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by openat and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Walker {
    /// Opens `root` (the user's chosen directory, created if missing; it may itself be a link).
    pub(crate) fn new(root: &Path) -> io::Result<Walker> {
        std::fs::create_dir_all(root)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", root.display())))?;
        let c = CString::new(root.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the directory name"))?;
        // SAFETY: as in `openat`.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("{}: {e}", root.display())));
        }
        Ok(Walker {
            // SAFETY: just opened, owned by nobody else.
            root: unsafe { OwnedFd::from_raw_fd(fd) },
            root_path: root.to_path_buf(),
            dirs: HashMap::new(),
            created: Vec::new(),
        })
    }

    fn path_of(&self, comps: &[String]) -> PathBuf {
        let mut p = self.root_path.clone();
        p.extend(comps);
        p
    }

    /// The descriptor of directory `comps` below the root, opening (and with `create`, making)
    /// each component without following links. `None`: it does not exist and `create` is off.
    fn dir(&mut self, comps: &[String], create: bool) -> io::Result<Option<RawFd>> {
        if comps.is_empty() {
            return Ok(Some(self.root.as_raw_fd()));
        }
        if let Some(fd) = self.dirs.get(comps) {
            return Ok(Some(fd.as_raw_fd()));
        }
        let Some(parent) = self.dir(&comps[..comps.len() - 1], create)? else { return Ok(None) };
        let name = &comps[comps.len() - 1];
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
        let fd = match openat(parent, name, flags, 0) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create => {
                let c = cstr(name)?;
                // SAFETY: valid string and open parent descriptor for the call.
                if unsafe { libc::mkdirat(parent, c.as_ptr(), 0o777) } == 0 {
                    self.created.push((comps[..comps.len() - 1].to_vec(), name.clone(), true));
                } else {
                    let e = io::Error::last_os_error();
                    if e.raw_os_error() != Some(libc::EEXIST) {
                        return Err(symlink_error(&self.path_of(comps), e));
                    }
                }
                openat(parent, name, flags, 0).map_err(|e| symlink_error(&self.path_of(comps), e))?
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(symlink_error(&self.path_of(comps), e)),
        };
        let raw = fd.as_raw_fd();
        self.dirs.insert(comps.to_vec(), fd);
        Ok(Some(raw))
    }

    /// Opens the regular file `comps` for reading and writing, creating it (and its directories)
    /// if missing; never through a link. Returns the file and whether this call created it.
    pub(crate) fn open_file(&mut self, comps: &[String]) -> io::Result<(File, bool)> {
        let path = self.path_of(comps);
        let (name, parent) = comps.split_last().ok_or_else(|| io::Error::other("empty file path"))?;
        let dir = self.dir(parent, true)?.ok_or_else(|| io::Error::other("directory vanished"))?;
        let flags = libc::O_RDWR | libc::O_NOFOLLOW;
        let (fd, fresh) = match openat(dir, name, flags | libc::O_CREAT | libc::O_EXCL, 0o666) {
            Ok(fd) => {
                self.created.push((parent.to_vec(), name.clone(), false));
                (fd, true)
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                // O_NONBLOCK: a FIFO planted under that name must not hang us before the check.
                let fd =
                    openat(dir, name, flags | libc::O_NONBLOCK, 0).map_err(|e| symlink_error(&path, e))?;
                (fd, false)
            }
            Err(e) => return Err(symlink_error(&path, e)),
        };
        let file = File::from(fd);
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} exists and is not a regular file", path.display()),
            ));
        }
        Ok((file, fresh))
    }

    /// The path of `comps` for messages.
    pub(crate) fn display(&self, comps: &[String]) -> PathBuf {
        self.path_of(comps)
    }

    /// Removes everything this walker created, newest first (files, then emptied directories).
    pub(crate) fn undo(&mut self) {
        while let Some((parent, name, is_dir)) = self.created.pop() {
            let Ok(Some(dir)) = self.dir(&parent, false) else { continue };
            let Ok(c) = cstr(&name) else { continue };
            if is_dir {
                let mut key = parent.clone();
                key.push(name.clone());
                self.dirs.remove(&key);
            }
            let flags = if is_dir { libc::AT_REMOVEDIR } else { 0 };
            // SAFETY: valid string and open directory descriptor for the call.
            unsafe { libc::unlinkat(dir, c.as_ptr(), flags) };
        }
    }
}
