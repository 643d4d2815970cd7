//! .torrent files (BEP 3 metainfo, BEP 12 announce-list, BEP 27 private, BEP 47 pad files):
//! parsing real files with unknown keys kept, the info hash over the exact raw info bytes, and
//! writing them back byte-for-byte.

use crate::bencode;
use bt_bencode::{ByteString, Value};
use sha1::{Digest, Sha1};
use std::collections::BTreeMap;
use std::path::PathBuf;
use thiserror::Error;

/// Largest .torrent file accepted (real ones are well under 10 MiB).
pub const MAX_TORRENT_BYTES: usize = 64 * 1024 * 1024;

/// Why a .torrent file was rejected.
#[derive(Debug, Error)]
pub enum MetainfoError {
    /// Not well-formed bencode.
    #[error(transparent)]
    Syntax(#[from] bencode::ScanError),
    /// bt_bencode could not decode it.
    #[error("bencode: {0}")]
    Decode(#[from] bt_bencode::Error),
    /// Well-formed but missing or wrong fields.
    #[error("invalid torrent: {0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> MetainfoError {
    MetainfoError::Invalid(msg.into())
}

/// A 20-byte SHA-1 info hash: the torrent's identity on trackers and in handshakes.
pub type InfoHash = [u8; 20];

/// One file of the torrent, laid end to end with the others in piece space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path components under the torrent's directory (just `[name]` for single-file torrents).
    pub path: Vec<String>,
    /// Length in bytes.
    pub length: u64,
    /// Offset of the file's first byte in the concatenated torrent data.
    pub offset: u64,
    /// A BEP 47 padding file: all zeros, never written to disk.
    pub pad: bool,
}

/// The `info` dictionary: what the info hash covers.
#[derive(Debug, Clone)]
pub struct Info {
    /// Suggested file name (single file) or directory name (multi-file).
    pub name: String,
    /// Bytes per piece (the last piece may be shorter).
    pub piece_length: u64,
    /// SHA-1 of every piece.
    pub pieces: Vec<[u8; 20]>,
    /// The files in order; one entry for a single-file torrent.
    pub files: Vec<FileEntry>,
    /// Whether this is a multi-file torrent (data lives under a directory called `name`).
    pub multi_file: bool,
    /// BEP 27: peers only from the tracker (no DHT/PEX).
    pub private: bool,
}

impl Info {
    /// Total bytes of all files.
    pub fn total_length(&self) -> u64 {
        self.files.last().map_or(0, |f| f.offset + f.length)
    }

    /// Number of pieces.
    pub fn num_pieces(&self) -> u32 {
        self.pieces.len() as u32
    }

    /// Length of piece `index` (the last is usually shorter).
    pub fn piece_size(&self, index: u32) -> u32 {
        let start = index as u64 * self.piece_length;
        (self.total_length().saturating_sub(start)).min(self.piece_length) as u32
    }

    /// Where the data lives: `dir/name` for both layouts (a file or a directory).
    pub fn file_path(&self, dir: &std::path::Path, file: &FileEntry) -> PathBuf {
        let mut p = dir.join(&self.name);
        if self.multi_file {
            for c in &file.path {
                p.push(c);
            }
        }
        p
    }
}

/// A parsed .torrent file.
#[derive(Debug, Clone)]
pub struct Metainfo {
    /// The parsed info dictionary.
    pub info: Info,
    /// SHA-1 over the exact raw bytes of the info dictionary.
    pub info_hash: InfoHash,
    /// The primary tracker URL.
    pub announce: Option<String>,
    /// BEP 12 tiers of tracker URLs.
    pub announce_list: Vec<Vec<String>>,
    /// Free-text comment.
    pub comment: Option<String>,
    /// The program that made it.
    pub created_by: Option<String>,
    /// Unix time of creation.
    pub creation_date: Option<i64>,
    /// The raw info dictionary bytes, kept verbatim.
    pub info_bytes: Vec<u8>,
    /// Every top-level key except `info`, including ones we do not know (kept for writing).
    pub extra: BTreeMap<ByteString, Value>,
}

fn get<'a>(d: &'a BTreeMap<ByteString, Value>, k: &str) -> Option<&'a Value> {
    d.get(k.as_bytes())
}

fn text(v: &Value) -> Option<String> {
    v.as_byte_str().map(|b| String::from_utf8_lossy(b).into_owned())
}

/// Rejects path components that could escape the download directory.
fn safe_component(c: &str) -> Result<(), MetainfoError> {
    if c.is_empty() || c == "." || c == ".." || c.contains('/') || c.contains('\\') || c.contains('\0') {
        return Err(invalid(format!("unsafe path component {c:?}")));
    }
    Ok(())
}

impl Metainfo {
    /// Parses a .torrent file.
    pub fn from_bytes(buf: &[u8]) -> Result<Metainfo, MetainfoError> {
        if buf.len() > MAX_TORRENT_BYTES {
            return Err(invalid("file too large"));
        }
        let end = bencode::value_end(buf, 0)?;
        let buf = &buf[..end];
        let info_bytes = bencode::dict_value(buf, b"info")?.ok_or_else(|| invalid("no info dictionary"))?;
        let info_hash: InfoHash = Sha1::digest(info_bytes).into();
        let top: Value = bt_bencode::from_slice(buf)?;
        let Value::Dict(mut extra) = top else { return Err(invalid("not a dictionary")) };
        let info_val = extra.remove(&b"info"[..]).ok_or_else(|| invalid("no info dictionary"))?;
        let info = parse_info(&info_val)?;
        let announce = get(&extra, "announce").and_then(text);
        let announce_list = get(&extra, "announce-list")
            .and_then(Value::as_list)
            .map(|tiers| {
                tiers
                    .iter()
                    .filter_map(Value::as_list)
                    .map(|t| t.iter().filter_map(text).collect::<Vec<_>>())
                    .filter(|t| !t.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Metainfo {
            info,
            info_hash,
            announce,
            announce_list,
            comment: get(&extra, "comment").and_then(text),
            created_by: get(&extra, "created by").and_then(text),
            creation_date: get(&extra, "creation date").and_then(bencode::as_int),
            info_bytes: info_bytes.to_vec(),
            extra,
        })
    }

    /// The .torrent file: the kept top-level keys with the raw info bytes spliced in verbatim.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![b'd'];
        let mut info_done = false;
        let put_info = |out: &mut Vec<u8>| {
            out.extend_from_slice(b"4:info");
            out.extend_from_slice(&self.info_bytes);
        };
        for (k, v) in &self.extra {
            if !info_done && k.as_slice() > &b"info"[..] {
                put_info(&mut out);
                info_done = true;
            }
            out.extend_from_slice(format!("{}:", k.len()).as_bytes());
            out.extend_from_slice(k);
            out.extend_from_slice(&bt_bencode::to_vec(v).unwrap_or_default());
        }
        if !info_done {
            put_info(&mut out);
        }
        out.push(b'e');
        out
    }

    /// Every tracker URL, tiers first (BEP 12), then `announce` if not already listed.
    pub fn trackers(&self) -> Vec<String> {
        let mut all: Vec<String> = self.announce_list.iter().flatten().cloned().collect();
        if let Some(a) = &self.announce
            && !all.contains(a)
        {
            all.push(a.clone());
        }
        all
    }

    /// A magnet link for this torrent.
    pub fn magnet(&self) -> String {
        let mut m = format!(
            "magnet:?xt=urn:btih:{}&dn={}",
            crate::urlenc::hex(&self.info_hash),
            crate::urlenc::encode(self.info.name.as_bytes())
        );
        for t in self.trackers() {
            m.push_str("&tr=");
            m.push_str(&crate::urlenc::encode(t.as_bytes()));
        }
        m
    }
}

fn parse_info(v: &Value) -> Result<Info, MetainfoError> {
    let d = v.as_dict().ok_or_else(|| invalid("info is not a dictionary"))?;
    let name_bytes = get(d, "name.utf-8")
        .or(get(d, "name"))
        .and_then(Value::as_byte_str)
        .ok_or_else(|| invalid("no name"))?;
    let name = String::from_utf8_lossy(name_bytes).into_owned();
    safe_component(&name)?;
    let piece_length =
        get(d, "piece length").and_then(Value::as_u64).ok_or_else(|| invalid("no piece length"))?;
    if !(1..=1 << 30).contains(&piece_length) {
        return Err(invalid("piece length out of range"));
    }
    let pieces_raw = get(d, "pieces").and_then(Value::as_byte_str).ok_or_else(|| invalid("no pieces"))?;
    if pieces_raw.len() % 20 != 0 {
        return Err(invalid("pieces is not a multiple of 20 bytes"));
    }
    let pieces: Vec<[u8; 20]> =
        pieces_raw.chunks_exact(20).map(|c| c.try_into().unwrap_or([0; 20])).collect();
    let private = get(d, "private").and_then(Value::as_u64) == Some(1);
    let mut files = Vec::new();
    let multi_file;
    if let Some(len) = get(d, "length") {
        multi_file = false;
        let length = len.as_u64().ok_or_else(|| invalid("bad length"))?;
        files.push(FileEntry { path: vec![name.clone()], length, offset: 0, pad: false });
    } else {
        multi_file = true;
        let list =
            get(d, "files").and_then(Value::as_list).ok_or_else(|| invalid("neither length nor files"))?;
        let mut offset = 0u64;
        for f in list {
            let fd = f.as_dict().ok_or_else(|| invalid("file entry is not a dictionary"))?;
            let length =
                get(fd, "length").and_then(Value::as_u64).ok_or_else(|| invalid("file without length"))?;
            let path_val = get(fd, "path.utf-8")
                .or(get(fd, "path"))
                .and_then(Value::as_list)
                .ok_or_else(|| invalid("file without path"))?;
            let path: Vec<String> = path_val.iter().map(|c| text(c).unwrap_or_default()).collect();
            if path.is_empty() {
                return Err(invalid("empty file path"));
            }
            for c in &path {
                safe_component(c)?;
            }
            let pad = get(fd, "attr").and_then(Value::as_byte_str).is_some_and(|a| a.contains(&b'p'));
            files.push(FileEntry { path, length, offset, pad });
            offset = offset.checked_add(length).ok_or_else(|| invalid("total length overflows"))?;
        }
        if files.is_empty() {
            return Err(invalid("no files"));
        }
    }
    let info = Info { name, piece_length, pieces, files, multi_file, private };
    let expected = info.total_length().div_ceil(piece_length);
    if expected != info.pieces.len() as u64 {
        return Err(invalid(format!("{} piece hashes for {} pieces of data", info.pieces.len(), expected)));
    }
    Ok(info)
}

/// A parsed magnet link: what a download needs before the metadata is fetched from peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Magnet {
    /// The v1 info hash.
    pub info_hash: InfoHash,
    /// Display name (`dn`).
    pub name: Option<String>,
    /// Tracker URLs (`tr`).
    pub trackers: Vec<String>,
    /// Peer addresses (`x.pe`, `host:port`), to contact without a tracker.
    pub peers: Vec<String>,
}

impl Magnet {
    /// Parses `magnet:?xt=urn:btih:<40 hex | 32 base32>&dn=...&tr=...`.
    pub fn parse(link: &str) -> Result<Magnet, MetainfoError> {
        let q = link.strip_prefix("magnet:?").ok_or_else(|| invalid("not a magnet link"))?;
        let pairs = crate::urlenc::parse_query(q).ok_or_else(|| invalid("bad escape in magnet link"))?;
        let mut out = Magnet { info_hash: [0; 20], name: None, trackers: vec![], peers: vec![] };
        let mut found = false;
        for (k, v) in pairs {
            let v = String::from_utf8_lossy(&v).into_owned();
            match k.as_str() {
                "xt" => {
                    if let Some(h) = v.strip_prefix("urn:btih:") {
                        out.info_hash = crate::urlenc::unhex20(h)
                            .or_else(|| base32_20(h))
                            .ok_or_else(|| invalid("bad btih hash"))?;
                        found = true;
                    }
                }
                "dn" => out.name = Some(v),
                "tr" if !out.trackers.contains(&v) => out.trackers.push(v),
                "x.pe" => out.peers.push(v),
                _ => {}
            }
        }
        if !found {
            return Err(invalid("magnet link has no urn:btih"));
        }
        Ok(out)
    }

    /// The torrent, once its info dictionary has been fetched (and its hash checked): the raw
    /// info bytes with the magnet's trackers as the announce-list (one tier each, in order).
    pub fn to_metainfo(&self, info_bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        let str_ = |s: &str| format!("{}:{s}", s.len());
        let mut t = String::from("d");
        if let Some(first) = self.trackers.first() {
            t.push_str(&format!("8:announce{}", str_(first)));
            t.push_str("13:announce-listl");
            for tr in &self.trackers {
                t.push_str(&format!("l{}e", str_(tr)));
            }
            t.push('e');
        }
        let mut bytes = t.into_bytes();
        bytes.extend_from_slice(b"4:info");
        bytes.extend_from_slice(info_bytes);
        bytes.push(b'e');
        let m = Metainfo::from_bytes(&bytes)?;
        if m.info_hash != self.info_hash {
            return Err(invalid("info dictionary does not match the magnet's info hash"));
        }
        Ok(m)
    }
}

fn base32_20(s: &str) -> Option<[u8; 20]> {
    if s.len() != 32 {
        return None;
    }
    let mut bits: u64 = 0;
    let mut nbits = 0;
    let mut out = Vec::with_capacity(20);
    for c in s.bytes() {
        let v = match c.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        bits = (bits << 5) | v as u64;
        nbits += 5;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
        }
    }
    out.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        // A hand-written torrent with an unknown top-level key and an unknown info key.
        let pieces = [0xabu8; 40];
        let mut info = b"d6:lengthi20000e4:name5:a.bin12:piece lengthi16384e6:pieces40:".to_vec();
        info.extend_from_slice(&pieces);
        info.extend_from_slice(b"7:privatei1e5:zzzzzi9ee");
        let mut t = b"d8:announce22:http://t.example/annou13:announce-listll22:http://t.example/annouel13:udp://u.ex:80ee7:comment2:hi4:info".to_vec();
        t.extend_from_slice(&info);
        t.extend_from_slice(b"9:x-unknowni7ee");
        t
    }

    #[test]
    fn parses_and_hashes_raw_info() {
        let t = sample();
        let m = Metainfo::from_bytes(&t).unwrap();
        let raw = bencode::dict_value(&t, b"info").unwrap().unwrap();
        assert_eq!(m.info_hash, <[u8; 20]>::from(Sha1::digest(raw)));
        assert_eq!(m.info.name, "a.bin");
        assert_eq!(m.info.num_pieces(), 2);
        assert_eq!(m.info.piece_size(1), 20000 - 16384);
        assert!(m.info.private);
        assert_eq!(m.trackers(), vec!["http://t.example/annou".to_string(), "udp://u.ex:80".into()]);
        assert!(m.extra.contains_key(&b"x-unknown"[..]));
        let dated = b"d13:creation datei1700000000e4:infod6:lengthi1e4:name1:a12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaaee";
        assert_eq!(Metainfo::from_bytes(dated).unwrap().creation_date, Some(1_700_000_000));
    }

    #[test]
    fn writes_back_byte_for_byte() {
        let t = sample();
        assert_eq!(Metainfo::from_bytes(&t).unwrap().to_bytes(), t);
    }

    #[test]
    fn rejects_path_traversal_and_bad_piece_counts() {
        let bad = b"d4:infod5:filesld6:lengthi1e4:pathl2:..1:xeee4:name1:d12:piece lengthi16e6:pieces20:aaaaaaaaaaaaaaaaaaaaee";
        assert!(Metainfo::from_bytes(bad).is_err());
        let short = b"d4:infod6:lengthi40e4:name1:a12:piece lengthi16e6:pieces20:aaaaaaaaaaaaaaaaaaaaee";
        assert!(Metainfo::from_bytes(short).is_err());
    }

    #[test]
    fn parses_magnets() {
        let m = Magnet::parse(
            "magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a&dn=My+File&tr=http%3A%2F%2Ft%2Fa",
        )
        .unwrap();
        assert_eq!(crate::urlenc::hex(&m.info_hash), "c12fe1c06bba254a9dc9f519b335aa7c1367a88a");
        assert_eq!(m.name.as_deref(), Some("My File"));
        assert_eq!(m.trackers, vec!["http://t/a"]);
        let b32 = Magnet::parse("magnet:?xt=urn:btih:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK").unwrap();
        assert_eq!(b32.info_hash, m.info_hash);
        assert!(Magnet::parse("magnet:?dn=x").is_err());
        let pe = Magnet::parse(
            "magnet:?xt=urn:btih:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK&x.pe=127.0.0.1:6881&x.pe=%5B%3A%3A1%5D:7",
        )
        .unwrap();
        assert_eq!(pe.peers, vec!["127.0.0.1:6881", "[::1]:7"]);
    }

    #[test]
    fn magnet_plus_info_bytes_is_the_torrent() {
        let t = sample();
        let m = Metainfo::from_bytes(&t).unwrap();
        let link = Magnet::parse(&m.magnet()).unwrap();
        let back = link.to_metainfo(&m.info_bytes).unwrap();
        assert_eq!(back.info_hash, m.info_hash);
        assert_eq!(back.trackers(), m.trackers());
        assert_eq!(back.info.name, "a.bin");
        let other = Magnet { info_hash: [9; 20], ..link };
        assert!(other.to_metainfo(&m.info_bytes).is_err());
    }
}
