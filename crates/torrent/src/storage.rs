//! Piece storage on plain files: pieces are read and written at their offsets across the
//! torrent's files (multi-file torrents span boundaries), pad files (BEP 47) are never written,
//! written pieces are fsynced before being announced, and existing data is verified on resume.

use crate::bitfield::Bitfield;
use crate::metainfo::{FileEntry, Info};
use sha1::{Digest, Sha1};
use std::fs::{File, OpenOptions};
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

impl Storage {
    /// Opens the data under `dir` (the directory that holds the torrent's file or folder).
    /// With `create`, missing files and directories are made (sparse, at full length);
    /// otherwise missing files read as absent pieces.
    pub fn open(info: &Info, dir: &Path, create: bool) -> io::Result<Storage> {
        let mut files = Vec::with_capacity(info.files.len());
        let mut fresh = Vec::with_capacity(info.files.len());
        for f in &info.files {
            if f.pad {
                files.push((f.clone(), None));
                fresh.push(AtomicBool::new(false));
                continue;
            }
            let path = info.file_path(dir, f);
            fresh.push(AtomicBool::new(create && !path.exists()));
            let file = if create {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let file =
                    OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
                if file.metadata()?.len() != f.length {
                    file.set_len(f.length)?;
                }
                Some(file)
            } else {
                match File::open(&path) {
                    Ok(file) => Some(file),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                    Err(e) => return Err(e),
                }
            };
            files.push((f.clone(), file));
        }
        Ok(Storage {
            files,
            fresh,
            piece_length: info.piece_length,
            total: info.total_length(),
            writable: create,
        })
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
}
