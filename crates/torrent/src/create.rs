//! `torrent create`: builds a .torrent for a file or a directory (multi-file), hashing pieces
//! that span file boundaries, with BEP 12 announce-lists and the BEP 27 private flag.

use crate::metainfo::{Metainfo, MetainfoError};
use bt_bencode::{ByteString, Value};
use sha1::{Digest, Sha1};
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// What to put in a new torrent besides the data.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Bytes per piece (a power of two of at least 16 KiB is conventional; 256 KiB default).
    pub piece_length: u64,
    /// Tracker URLs: the first becomes `announce`; with more than one, each is its own tier.
    pub trackers: Vec<String>,
    /// BEP 27 private flag.
    pub private: bool,
    /// Free-text comment.
    pub comment: Option<String>,
    /// Creation time (Unix seconds); `None` leaves it out (reproducible output).
    pub creation_date: Option<i64>,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            piece_length: 256 * 1024,
            trackers: vec![],
            private: false,
            comment: None,
            creation_date: None,
        }
    }
}

fn bstr(s: &str) -> Value {
    Value::ByteStr(ByteString::from(s.to_string()))
}

fn dict(entries: Vec<(&str, Value)>) -> Value {
    Value::Dict(
        entries.into_iter().map(|(k, v)| (ByteString::from(k.to_string()), v)).collect::<BTreeMap<_, _>>(),
    )
}

/// Lists the regular files under `dir`, sorted by relative path, skipping symlinks.
fn walk(dir: &Path) -> io::Result<Vec<(Vec<String>, PathBuf, u64)>> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), Vec::<String>::new())];
    while let Some((d, rel)) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let ft = entry.file_type()?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let mut r = rel.clone();
            r.push(name);
            if ft.is_dir() {
                stack.push((entry.path(), r));
            } else if ft.is_file() {
                out.push((r, entry.path(), entry.metadata()?.len()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Hashes the concatenation of `files` in pieces of `piece_length`.
fn hash_pieces(files: &[PathBuf], piece_length: u64) -> io::Result<Vec<u8>> {
    let mut hashes = Vec::new();
    let mut buf = vec![0u8; piece_length as usize];
    let mut filled = 0usize;
    for path in files {
        let mut f = std::fs::File::open(path)?;
        loop {
            let n = f.read(&mut buf[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
            if filled == buf.len() {
                hashes.extend_from_slice(&Sha1::digest(&buf));
                filled = 0;
            }
        }
    }
    if filled > 0 {
        hashes.extend_from_slice(&Sha1::digest(&buf[..filled]));
    }
    Ok(hashes)
}

/// Errors while creating a torrent.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// Reading the data failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The input cannot make a torrent.
    #[error("{0}")]
    Invalid(String),
    /// The result did not parse back (a bug).
    #[error(transparent)]
    Metainfo(#[from] MetainfoError),
}

/// Builds a torrent for `path` (a file or a directory).
pub fn create(path: &Path, opts: &CreateOptions) -> Result<Metainfo, CreateError> {
    if opts.piece_length < 16 * 1024 || opts.piece_length > 64 * 1024 * 1024 {
        return Err(CreateError::Invalid("piece size must be between 16 KiB and 64 MiB".into()));
    }
    let meta = std::fs::metadata(path)?;
    let name = path
        .canonicalize()?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| CreateError::Invalid(format!("{} has no file name", path.display())))?;
    let mut info = BTreeMap::new();
    let plen = opts.piece_length;
    if meta.is_dir() {
        let files = walk(path)?;
        if files.is_empty() {
            return Err(CreateError::Invalid(format!("{} has no files", path.display())));
        }
        let pieces = hash_pieces(&files.iter().map(|f| f.1.clone()).collect::<Vec<_>>(), plen)?;
        let list = files
            .iter()
            .map(|(rel, _, len)| {
                dict(vec![
                    ("length", Value::from(*len)),
                    ("path", Value::List(rel.iter().map(|c| bstr(c)).collect())),
                ])
            })
            .collect();
        info.insert("files", Value::List(list));
        info.insert("pieces", Value::ByteStr(ByteString::from(pieces)));
    } else {
        let pieces = hash_pieces(&[path.to_path_buf()], plen)?;
        info.insert("length", Value::from(meta.len()));
        info.insert("pieces", Value::ByteStr(ByteString::from(pieces)));
    }
    info.insert("name", bstr(&name));
    info.insert("piece length", Value::from(plen));
    if opts.private {
        info.insert("private", Value::from(1u8));
    }
    let info = dict(info.into_iter().collect());
    let mut top = vec![("info", info), ("created by", bstr(concat!("appnet/", env!("CARGO_PKG_VERSION"))))];
    if let Some(first) = opts.trackers.first() {
        top.push(("announce", bstr(first)));
    }
    if opts.trackers.len() > 1 {
        top.push((
            "announce-list",
            Value::List(opts.trackers.iter().map(|t| Value::List(vec![bstr(t)])).collect()),
        ));
    }
    if let Some(c) = &opts.comment {
        top.push(("comment", bstr(c)));
    }
    if let Some(d) = opts.creation_date {
        top.push(("creation date", Value::from(d)));
    }
    let bytes = bt_bencode::to_vec(&dict(top)).map_err(MetainfoError::from)?;
    Ok(Metainfo::from_bytes(&bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("appnet-torrent-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn multi_file_pieces_span_files() {
        let d = tmpdir("create");
        let root = d.join("album");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        let a: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
        let b: Vec<u8> = (0..30_000u32).map(|i| (i * 7) as u8).collect();
        std::fs::write(root.join("a.bin"), &a).unwrap();
        std::fs::write(root.join("sub/b.bin"), &b).unwrap();
        let opts = CreateOptions {
            piece_length: 16384,
            trackers: vec!["http://x/announce".into(), "http://y/announce".into()],
            private: true,
            ..Default::default()
        };
        let m = create(&root, &opts).unwrap();
        assert!(m.info.multi_file && m.info.private);
        assert_eq!(m.info.files.len(), 2);
        assert_eq!(m.info.files[1].path, vec!["sub", "b.bin"]);
        assert_eq!(m.info.files[1].offset, 20_000);
        let all = [a, b].concat();
        for (i, chunk) in all.chunks(16384).enumerate() {
            assert_eq!(m.info.pieces[i], <[u8; 20]>::from(Sha1::digest(chunk)));
        }
        assert_eq!(m.announce_list.len(), 2);
        // Round trip through bytes keeps the hash.
        assert_eq!(Metainfo::from_bytes(&m.to_bytes()).unwrap().info_hash, m.info_hash);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
