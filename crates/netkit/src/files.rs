//! Files services write: crash-safe replacement for state kept across restarts (zone copies,
//! DHT routing tables, ...: a reader sees the old file or the new one, never a torn one), and
//! disk reservation for downloads.

use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Replaces `path` with `data`: written to a temporary sibling, synced, renamed over `path`,
/// then the directory synced so the rename itself survives a crash. The file gets the usual
/// mode (0666 less the umask).
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    replace(path, data, 0o666)
}

/// [`write_atomic`] for secrets (password hashes, keys, session tickets): the file is 0600 from
/// the moment it exists, so no other user can read it even while it is being written.
pub fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    replace(path, data, 0o600)
}

/// The temporary is a new file (`O_CREAT|O_EXCL`, `O_NOFOLLOW`) with a name unique to this
/// process and call, so a symlink or another writer's file planted at that name is never
/// written through; the rename replaces a symlink at `path` itself, never its target.
fn replace(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    let tmp = dir.join(tmp_name);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return written;
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reserves disk blocks for the first `len` bytes of `file` (data already there is kept), so
/// a download that cannot fit fails at once with "no space" instead of part-way through, and
/// its file is laid out in one piece instead of in the order blocks happen to arrive.
pub fn preallocate(file: &std::fs::File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    if len == 0 {
        return Ok(());
    }
    let len = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large to reserve"))?;
    // SAFETY: `file` is an open descriptor for the call's duration; posix_fallocate only
    // changes its allocation and reports errors through its return value.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if rc == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(rc)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::TempDir;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary_behind() {
        let dir = TempDir::new("files");
        let path = dir.join("state.dat");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.dat")]);
        assert!(write_atomic(&dir.join("missing/state.dat"), b"x").is_err());
    }

    #[test]
    fn private_files_are_owner_only_and_a_symlink_is_replaced_not_followed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new("files-private");
        let target = dir.join("victim");
        std::fs::write(&target, b"keep").unwrap();
        let path = dir.join("secret");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        write_private(&path, b"hash").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"keep", "the symlink's target is untouched");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"hash");
    }

    #[test]
    fn preallocation_reserves_blocks_and_keeps_data() {
        use std::os::unix::fs::MetadataExt;
        let dir = TempDir::new("files-prealloc");
        let path = dir.join("big.bin");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, b"head", 0).unwrap();
        file.set_len(4 << 20).unwrap();
        let sparse = file.metadata().unwrap().blocks() * 512;
        assert!(sparse < 1 << 20, "a set_len file is sparse: {sparse} bytes allocated");
        preallocate(&file, 4 << 20).unwrap();
        assert!(file.metadata().unwrap().blocks() * 512 >= 4 << 20, "every block reserved");
        assert_eq!(file.metadata().unwrap().len(), 4 << 20);
        assert_eq!(&std::fs::read(&path).unwrap()[..4], b"head");
        preallocate(&file, 0).unwrap();
    }
}
