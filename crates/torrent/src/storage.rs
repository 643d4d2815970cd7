//! Piece storage on plain files: pieces are read and written at their offsets across the
//! torrent's files (multi-file torrents span boundaries), pad files (BEP 47) are never written,
//! written pieces are fsynced before being announced, and existing data is verified on resume.

use crate::bitfield::Bitfield;
use crate::metainfo::{FileEntry, Info};
use sha1::{Digest, Sha1};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// The torrent's files, opened.
#[derive(Debug)]
pub struct Storage {
    files: Vec<(FileEntry, Option<File>)>,
    /// Files that did not exist before `open` created them: nothing in them to verify.
    fresh: Vec<AtomicBool>,
    piece_length: u64,
    total: u64,
    writable: bool,
}

/// How [`Storage::open_download`] treats files already on disk.
#[derive(Debug, Clone, Copy, Default)]
pub struct DownloadOptions {
    /// Take over existing files even when they are not this torrent's partial download
    /// (larger than the torrent's file, or holding data no piece of the torrent matches).
    pub overwrite: bool,
    /// Reserve every file's whole size on disk before the first piece.
    pub preallocate: bool,
}

/// What a download start did to one file, so a failed start can be undone.
struct Opened {
    comps: Vec<String>,
    /// Its length before this run (`None`: this run created it).
    before: Option<u64>,
}

impl Storage {
    /// Opens the data under `dir` (the directory that holds the torrent's file or folder).
    /// With `create`, this is [`Storage::open_download`] with default options; otherwise
    /// missing files read as absent pieces (seeding: the user's own data, links allowed).
    pub fn open(info: &Info, dir: &Path, create: bool) -> io::Result<Storage> {
        if create {
            return Self::open_download(info, dir, DownloadOptions::default()).map(|(s, _)| s);
        }
        let mut files = Vec::with_capacity(info.files.len());
        for f in &info.files {
            let file = if f.pad {
                None
            } else {
                match File::open(info.file_path(dir, f)) {
                    Ok(file) => Some(file),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                    Err(e) => return Err(e),
                }
            };
            files.push((f.clone(), file));
        }
        let fresh = info.files.iter().map(|_| AtomicBool::new(false)).collect();
        Ok(Storage {
            files,
            fresh,
            piece_length: info.piece_length,
            total: info.total_length(),
            writable: false,
        })
    }

    /// Opens (creating what is missing) a download's files under `dir` and verifies the data
    /// already there; returns the storage and the pieces present.
    ///
    /// No path component is followed through a symbolic link (a planted `name -> ../elsewhere`
    /// is an error, never a write outside `dir`). Files this run creates are sized at once
    /// (sparse). An existing file is resized only once it is known to be this torrent's partial
    /// download: no larger than the torrent's file, and either a piece overlapping it verifies
    /// or it holds only zeros (nothing to lose: an interrupted start, or an empty file).
    /// Anything else is an error naming the file and `overwrite`. On any error, the files and
    /// directories this run created are removed and existing files get their length back.
    pub fn open_download(info: &Info, dir: &Path, opts: DownloadOptions) -> io::Result<(Storage, Bitfield)> {
        let mut walker = crate::safe_fs::Walker::new(dir)?;
        let mut opened: Vec<Opened> = Vec::new();
        let mut files: Vec<(FileEntry, Option<File>)> = Vec::with_capacity(info.files.len());
        let result = Self::start_download(info, opts, &mut walker, &mut opened, &mut files);
        match result {
            Ok(have) => {
                let fresh = opened_fresh(info, &opened);
                let storage = Storage {
                    files,
                    fresh,
                    piece_length: info.piece_length,
                    total: info.total_length(),
                    writable: true,
                };
                Ok((storage, have))
            }
            Err(e) => {
                for (o, (_, file)) in opened.iter().zip(files.iter().filter(|(f, _)| !f.pad)) {
                    if let (Some(len), Some(file)) = (o.before, file) {
                        let _ = file.set_len(len);
                    }
                }
                drop(files);
                walker.undo();
                Err(e)
            }
        }
    }

    /// The body of [`Storage::open_download`]; the caller undoes what it did on error.
    fn start_download(
        info: &Info,
        opts: DownloadOptions,
        walker: &mut crate::safe_fs::Walker,
        opened: &mut Vec<Opened>,
        files: &mut Vec<(FileEntry, Option<File>)>,
    ) -> io::Result<Bitfield> {
        // 1. Open everything; size only what this run created.
        for f in &info.files {
            if f.pad {
                files.push((f.clone(), None));
                continue;
            }
            let mut comps = vec![info.name.clone()];
            if info.multi_file {
                comps.extend(f.path.iter().cloned());
            }
            let (file, fresh) = walker.open_file(&comps)?;
            let path = walker.display(&comps);
            let before = if fresh { None } else { Some(file.metadata()?.len()) };
            match before {
                // Ours (the walker removes it again on error): sparse, at full length.
                None => file.set_len(f.length).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot make {} {} bytes long: {e}", path.display(), f.length),
                    )
                })?,
                Some(len) if len > f.length && !opts.overwrite => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!(
                            "{} already exists and is larger than the torrent's file ({len} > {} bytes), so it is \
                             not this torrent's partial download; move it away or use --overwrite",
                            path.display(),
                            f.length
                        ),
                    ));
                }
                Some(_) => {}
            }
            opened.push(Opened { comps, before });
            files.push((f.clone(), Some(file)));
        }
        // 2. Verify what is there (short files simply lack their tail pieces).
        let fresh = opened_fresh(info, opened);
        let probe = Storage {
            files: std::mem::take(files),
            fresh,
            piece_length: info.piece_length,
            total: info.total_length(),
            writable: false,
        };
        let have = probe.verify(info, |_| {});
        *files = probe.files;
        // 3. Existing files: keep only verifiable partial downloads (or zeros), then resize.
        let mut k = 0;
        for (entry, file) in files.iter() {
            let Some(file) = file else { continue };
            let o = &opened[k];
            k += 1;
            let Some(before) = o.before else { continue };
            if !opts.overwrite
                && before > 0
                && !overlaps_verified(info, entry, &have)
                && !all_zero(file, before)?
            {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} already exists and none of its data matches the torrent; refusing to overwrite \
                         it: move it away, or use --overwrite",
                        walker.display(&o.comps).display()
                    ),
                ));
            }
        }
        let mut k = 0;
        for (entry, file) in files.iter() {
            let Some(file) = file else { continue };
            let o = &opened[k];
            k += 1;
            if o.before.is_some_and(|len| len != entry.length) {
                file.set_len(entry.length).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "cannot make {} {} bytes long: {e}",
                            walker.display(&o.comps).display(),
                            entry.length
                        ),
                    )
                })?;
            }
        }
        // 4. Reserve the space when asked (fails now, rather than half-way, if it cannot fit).
        if opts.preallocate {
            for (entry, file) in files.iter() {
                let Some(file) = file else { continue };
                appnet_netkit::files::preallocate(file, entry.length).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot reserve {} bytes for {}: {e}", entry.length, entry.path.join("/")),
                    )
                })?;
            }
        }
        Ok(have)
    }

    /// Reserves disk space for every file this storage writes (pad files excepted), so a
    /// download that cannot fit fails now rather than part-way through.
    pub fn preallocate(&self) -> io::Result<()> {
        if !self.writable {
            return Ok(());
        }
        for (entry, file) in &self.files {
            let Some(file) = file else { continue };
            appnet_netkit::files::preallocate(file, entry.length).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot reserve {} bytes for {}: {e}", entry.length, entry.path.join("/")),
                )
            })?;
        }
        Ok(())
    }

    /// Calls `f(file index, offset in file, range in buf)` for each file span of `[start, start+len)`.
    fn spans(
        &self,
        start: u64,
        len: usize,
        mut f: impl FnMut(usize, u64, std::ops::Range<usize>) -> io::Result<()>,
    ) -> io::Result<()> {
        let end = start + len as u64;
        if end > self.total {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "range past the end of the torrent"));
        }
        let first = self.files.partition_point(|(e, _)| e.offset + e.length <= start);
        for (i, (e, _)) in self.files.iter().enumerate().skip(first) {
            if e.offset >= end {
                break;
            }
            let a = start.max(e.offset);
            let b = end.min(e.offset + e.length);
            if a < b {
                f(i, a - e.offset, (a - start) as usize..(b - start) as usize)?;
            }
        }
        Ok(())
    }

    /// Reads `len` bytes at `begin` of piece `index`.
    pub fn read(&self, index: u32, begin: u32, len: u32) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len as usize];
        self.read_into(index, begin, &mut buf)?;
        Ok(buf)
    }

    /// Fills `buf` from `begin` of piece `index` (pad-file ranges are zeroed).
    pub fn read_into(&self, index: u32, begin: u32, buf: &mut [u8]) -> io::Result<()> {
        let start = index as u64 * self.piece_length + begin as u64;
        self.spans(start, buf.len(), |i, off, range| match &self.files[i].1 {
            Some(file) => file.read_exact_at(&mut buf[range], off),
            None if self.files[i].0.pad => {
                buf[range].fill(0);
                Ok(())
            }
            None => Err(io::Error::new(io::ErrorKind::NotFound, "file missing")),
        })
    }

    /// Writes a whole verified piece and (with `sync`) flushes it to disk.
    pub fn write_piece(&self, index: u32, data: &[u8], sync: bool) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "storage opened read-only"));
        }
        let start = index as u64 * self.piece_length;
        let mut touched = Vec::new();
        self.spans(start, data.len(), |i, off, range| {
            if let Some(file) = &self.files[i].1 {
                self.fresh[i].store(false, Ordering::Relaxed);
                file.write_all_at(&data[range], off)?;
                touched.push(i);
            }
            Ok(())
        })?;
        if sync {
            for i in touched {
                if let Some(file) = &self.files[i].1 {
                    file.sync_data()?;
                }
            }
        }
        Ok(())
    }

    /// Hashes every piece on disk and returns the ones that match (resume after a kill, or
    /// checking a seed's data). Pieces in missing or short files are simply absent.
    pub fn verify(&self, info: &Info, mut progress: impl FnMut(u32)) -> Bitfield {
        let mut have = Bitfield::new(info.num_pieces());
        for i in 0..info.num_pieces() {
            let mut all_fresh = true;
            let start = i as u64 * self.piece_length;
            let _ = self.spans(start, info.piece_size(i) as usize, |f, _, _| {
                all_fresh &= self.fresh[f].load(Ordering::Relaxed);
                Ok(())
            });
            if all_fresh {
                progress(i);
                continue; // a file we just created holds nothing yet
            }
            if let Ok(data) = self.read(i, 0, info.piece_size(i))
                && <[u8; 20]>::from(Sha1::digest(&data)) == info.pieces[i as usize]
            {
                have.set(i);
            }
            progress(i);
        }
        have
    }
}

/// `fresh` flags per torrent file: true for files this run created (nothing to verify).
fn opened_fresh(info: &Info, opened: &[Opened]) -> Vec<AtomicBool> {
    let mut it = opened.iter();
    info.files
        .iter()
        .map(|f| AtomicBool::new(!f.pad && it.next().is_some_and(|o| o.before.is_none())))
        .collect()
}

/// Whether a verified piece covers part of `entry` (so its existing data is this torrent's).
fn overlaps_verified(info: &Info, entry: &FileEntry, have: &Bitfield) -> bool {
    if entry.length == 0 || info.piece_length == 0 {
        return false;
    }
    let first = (entry.offset / info.piece_length) as u32;
    let last = ((entry.offset + entry.length - 1) / info.piece_length) as u32;
    (first..=last.min(info.num_pieces().saturating_sub(1))).any(|i| have.get(i))
}

/// Whether the first `len` bytes of `file` are all zero (a sparse file of an interrupted start).
fn all_zero(file: &File, len: u64) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // Skip the leading hole: a file nobody wrote to is one hole (ENXIO: no data at all).
    // SAFETY: `file` is open for the call; lseek only moves its offset (reads use pread).
    let data = unsafe { libc::lseek(file.as_raw_fd(), 0, libc::SEEK_DATA) };
    let mut off = match data {
        d if d >= 0 => d as u64,
        _ if io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) => return Ok(true),
        _ => 0, // SEEK_DATA unsupported here: scan it all
    };
    let mut buf = vec![0u8; 256 * 1024];
    while off < len {
        let n = buf.len().min((len - off) as usize);
        let got = file.read_at(&mut buf[..n], off)?;
        if got == 0 {
            return Ok(true);
        }
        if buf[..got].iter().any(|b| *b != 0) {
            return Ok(false);
        }
        off += got as u64;
    }
    Ok(true)
}

/// Whether `data` is piece `index` of `info`.
pub fn piece_ok(info: &Info, index: u32, data: &[u8]) -> bool {
    info.pieces.get(index as usize).is_some_and(|h| <[u8; 20]>::from(Sha1::digest(data)) == *h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::create::{CreateOptions, create};

    #[test]
    fn pieces_span_files_and_verify() {
        let d = std::env::temp_dir().join(format!("appnet-storage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let src = d.join("src/multi");
        std::fs::create_dir_all(src.join("x")).unwrap();
        let a: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        let b: Vec<u8> = (0..9_000u32).map(|i| (i % 13) as u8).collect();
        std::fs::write(src.join("a"), &a).unwrap();
        std::fs::write(src.join("x/b"), &b).unwrap();
        let m = create(&src, &CreateOptions { piece_length: 16384, ..Default::default() }).unwrap();
        let seed = Storage::open(&m.info, &d.join("src"), false).unwrap();
        assert!(seed.verify(&m.info, |_| {}).is_full());
        let dst = Storage::open(&m.info, &d.join("dst"), true).unwrap();
        assert_eq!(dst.verify(&m.info, |_| {}).count(), 0);
        for i in 0..m.info.num_pieces() {
            let data = seed.read(i, 0, m.info.piece_size(i)).unwrap();
            assert!(piece_ok(&m.info, i, &data));
            dst.write_piece(i, &data, true).unwrap();
        }
        assert_eq!(std::fs::read(d.join("dst/multi/x/b")).unwrap(), b);
        assert!(dst.verify(&m.info, |_| {}).is_full());
        assert!(seed.read(m.info.num_pieces(), 0, 1).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn preallocation_reserves_every_file_and_keeps_pieces() {
        use std::os::unix::fs::MetadataExt;
        let d = appnet_netkit::harness::TempDir::new("storage-prealloc");
        let src = d.join("src/multi");
        std::fs::create_dir_all(src.join("x")).unwrap();
        let a: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(src.join("a"), &a).unwrap();
        std::fs::write(src.join("x/b"), vec![7u8; 700_000]).unwrap();
        let m = create(&src, &CreateOptions { piece_length: 262_144, ..Default::default() }).unwrap();
        let seed = Storage::open(&m.info, &d.join("src"), false).unwrap();
        seed.preallocate().unwrap(); // read-only storage: nothing to reserve
        let dst = Storage::open(&m.info, &d.join("dst"), true).unwrap();
        dst.write_piece(0, &seed.read(0, 0, m.info.piece_size(0)).unwrap(), false).unwrap();
        let allocated = |rel: &str| std::fs::metadata(d.join("dst/multi").join(rel)).unwrap().blocks() * 512;
        assert!(allocated("a") < 1_000_000, "sparse before: {}", allocated("a"));
        dst.preallocate().unwrap();
        assert!(allocated("a") >= 3_000_000 && allocated("x/b") >= 700_000);
        assert!(dst.verify(&m.info, |_| {}).get(0), "the piece written before is still there");
    }
    fn single(dir: &Path, name: &str, body: &[u8]) -> crate::Metainfo {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(name), body).unwrap();
        create(&dir.join(name), &CreateOptions { piece_length: 16384, ..Default::default() }).unwrap()
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len as u32).map(|i| (i % 251) as u8 + 1).collect()
    }

    /// The hostile tester's `.bashrc`: a zero-length torrent file must not truncate the
    /// user's non-empty file, nor must a smaller torrent file cut a bigger one.
    #[test]
    fn an_existing_larger_file_is_never_truncated() {
        let d = appnet_netkit::harness::TempDir::new("storage-clobber");
        let empty = single(&d.join("src"), ".bashrc", b"");
        let out = d.join("out");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join(".bashrc"), b"export PATH=/precious\n").unwrap();
        let e = Storage::open_download(&empty.info, &out, DownloadOptions::default()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(".bashrc") && msg.contains("--overwrite"), "{msg}");
        assert_eq!(std::fs::read(out.join(".bashrc")).unwrap(), b"export PATH=/precious\n");
        // Creating an empty file where none exists is fine, and so is an empty one existing.
        let fresh = d.join("fresh");
        Storage::open_download(&empty.info, &fresh, DownloadOptions::default()).unwrap();
        assert_eq!(std::fs::metadata(fresh.join(".bashrc")).unwrap().len(), 0);
        Storage::open_download(&empty.info, &fresh, DownloadOptions::default()).unwrap();
        // A bigger file than the torrent's is not its partial download either.
        let m = single(&d.join("src"), "f.bin", &pattern(20_000));
        std::fs::write(out.join("f.bin"), pattern(30_000)).unwrap();
        assert!(Storage::open_download(&m.info, &out, DownloadOptions::default()).is_err());
        assert_eq!(std::fs::metadata(out.join("f.bin")).unwrap().len(), 30_000);
        // --overwrite takes it over, keeping what verifies.
        let opts = DownloadOptions { overwrite: true, ..Default::default() };
        let (_, have) = Storage::open_download(&m.info, &out, opts).unwrap();
        assert_eq!(std::fs::metadata(out.join("f.bin")).unwrap().len(), 20_000);
        assert!(have.get(0), "the first piece of the pattern matched");
        Storage::open_download(&empty.info, &out, opts).unwrap();
        assert_eq!(std::fs::metadata(out.join(".bashrc")).unwrap().len(), 0);
    }

    #[test]
    fn only_verifiable_partial_downloads_are_resumed() {
        let d = appnet_netkit::harness::TempDir::new("storage-resume");
        let body = pattern(50_000);
        let m = single(&d.join("src"), "f.bin", &body);
        let out = d.join("out");
        std::fs::create_dir_all(&out).unwrap();
        // Same size, unrelated content: refused, untouched.
        std::fs::write(out.join("f.bin"), vec![7u8; 50_000]).unwrap();
        let e = Storage::open_download(&m.info, &out, DownloadOptions::default()).unwrap_err();
        assert!(e.to_string().contains("f.bin"), "{e}");
        assert_eq!(std::fs::read(out.join("f.bin")).unwrap(), vec![7u8; 50_000]);
        // Shorter, unrelated: refused and not extended.
        std::fs::write(out.join("f.bin"), vec![7u8; 100]).unwrap();
        assert!(Storage::open_download(&m.info, &out, DownloadOptions::default()).is_err());
        assert_eq!(std::fs::metadata(out.join("f.bin")).unwrap().len(), 100);
        // Shorter with a verifying first piece: resumed and extended to full length.
        std::fs::write(out.join("f.bin"), &body[..20_000]).unwrap();
        let (st, have) = Storage::open_download(&m.info, &out, DownloadOptions::default()).unwrap();
        assert_eq!(have.ones().collect::<Vec<_>>(), vec![0]);
        assert_eq!(std::fs::metadata(out.join("f.bin")).unwrap().len(), 50_000);
        drop(st);
        // All zeros (an interrupted start: sparse, nothing written yet) is ours to fill.
        std::fs::write(out.join("f.bin"), vec![0u8; 50_000]).unwrap();
        let (_, have) = Storage::open_download(&m.info, &out, DownloadOptions::default()).unwrap();
        assert_eq!(have.count(), 0);
        // The same as a hole (how a start leaves it), and a hole with data at its end.
        std::fs::remove_file(out.join("f.bin")).unwrap();
        File::create(out.join("f.bin")).unwrap().set_len(50_000).unwrap();
        Storage::open_download(&m.info, &out, DownloadOptions::default()).unwrap();
        File::options().write(true).open(out.join("f.bin")).unwrap().write_all_at(b"x", 49_999).unwrap();
        assert!(Storage::open_download(&m.info, &out, DownloadOptions::default()).is_err());
    }

    #[test]
    fn symbolic_links_are_never_followed() {
        let d = appnet_netkit::harness::TempDir::new("storage-symlink");
        let m = single(&d.join("src"), "linkout", &pattern(1000));
        let out = d.join("out");
        std::fs::create_dir_all(d.join("outside")).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        // A dangling link to a file outside -o, and one to an existing outside file.
        std::os::unix::fs::symlink("../outside/victim", out.join("linkout")).unwrap();
        let e = Storage::open_download(&m.info, &out, DownloadOptions::default()).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(!d.join("outside/victim").exists(), "nothing written outside -o");
        std::fs::write(d.join("outside/victim"), b"keep").unwrap();
        let opts = DownloadOptions { overwrite: true, preallocate: true };
        assert!(Storage::open_download(&m.info, &out, opts).is_err(), "not even with --overwrite");
        assert_eq!(std::fs::read(d.join("outside/victim")).unwrap(), b"keep");
        // A directory component that is a link: a multi-file torrent named like it.
        let src = d.join("src2/linkdir");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/f"), pattern(100)).unwrap();
        let multi = create(&src, &CreateOptions { piece_length: 16384, ..Default::default() }).unwrap();
        std::os::unix::fs::symlink("../outside", out.join("linkdir")).unwrap();
        assert!(Storage::open_download(&multi.info, &out, DownloadOptions::default()).is_err());
        assert!(!d.join("outside/sub").exists());
        std::fs::remove_file(out.join("linkdir")).unwrap();
        std::fs::create_dir_all(out.join("linkdir")).unwrap();
        std::os::unix::fs::symlink("../../outside", out.join("linkdir/sub")).unwrap();
        assert!(Storage::open_download(&multi.info, &out, DownloadOptions::default()).is_err());
        assert!(!d.join("outside/f").exists());
    }

    #[test]
    fn a_failed_start_removes_only_what_it_created() {
        let d = appnet_netkit::harness::TempDir::new("storage-undo");
        let src = d.join("src/multi");
        std::fs::create_dir_all(src.join("a/b")).unwrap();
        std::fs::create_dir_all(src.join("z")).unwrap();
        std::fs::write(src.join("a/b/one"), pattern(5000)).unwrap();
        std::fs::write(src.join("z/two"), pattern(7000)).unwrap();
        let m = create(&src, &CreateOptions { piece_length: 16384, ..Default::default() }).unwrap();
        let out = d.join("out");
        std::fs::create_dir_all(out.join("multi")).unwrap();
        std::fs::write(out.join("multi/mine.txt"), b"mine").unwrap();
        // The last file cannot be opened: its directory is a link planted by someone else.
        std::os::unix::fs::symlink("/tmp", out.join("multi/z")).unwrap();
        assert!(Storage::open_download(&m.info, &out, DownloadOptions::default()).is_err());
        let mut left: Vec<String> = std::fs::read_dir(out.join("multi"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["mine.txt", "z"], "a/, a/b/ and a/b/one were this run's and are gone");
        // A file too big for the filesystem (20 TiB on ext4: EFBIG) leaves nothing behind.
        let mut big = m.info.clone();
        big.multi_file = false;
        big.name = "huge.iso".into();
        big.piece_length = 1 << 40;
        big.files =
            vec![FileEntry { path: vec!["huge.iso".into()], length: 20 << 40, offset: 0, pad: false }];
        big.pieces = vec![[0; 20]; 20];
        let empty = d.join("empty");
        let opts = DownloadOptions { preallocate: true, ..Default::default() };
        assert!(Storage::open_download(&big, &empty, opts).is_err(), "20 TiB cannot be reserved here");
        assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0, "nothing left behind");
    }
}
