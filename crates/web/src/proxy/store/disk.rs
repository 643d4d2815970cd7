//! The on-disk store: `<id>.body` holds a body, `<id>.meta` its metadata in a small text
//! format. Crash-safe: bodies and metadata are written to `.tmp` files, fsynced and renamed,
//! body first; at start-up a metadata file counts only if its body file exists with exactly the
//! recorded length, and everything else (temporary files, orphans) is deleted. So a killed
//! proxy never serves a truncated body after a restart.

use crate::proxy::policy::Meta;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

const MAGIC: &str = "appnet-cache 1";

/// A cache directory.
#[derive(Debug)]
pub struct DiskDir {
    dir: PathBuf,
}

impl DiskDir {
    /// Opens (creating) the directory.
    pub fn open(dir: &Path) -> io::Result<DiskDir> {
        std::fs::create_dir_all(dir)?;
        Ok(DiskDir { dir: dir.to_path_buf() })
    }

    /// Path of a committed body.
    pub fn body_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:016x}.body"))
    }

    fn meta_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:016x}.meta"))
    }

    /// Creates the temporary file a body streams into.
    pub async fn create_temp(&self, id: u64) -> io::Result<(tokio::fs::File, PathBuf)> {
        let path = self.dir.join(format!("{id:016x}.body.tmp"));
        Ok((tokio::fs::File::create(&path).await?, path))
    }

    /// Makes a fully written body durable and visible: fsync, rename, then the metadata.
    pub async fn commit(
        &self,
        id: u64,
        file: tokio::fs::File,
        tmp: &Path,
        meta: &Meta,
    ) -> io::Result<PathBuf> {
        use tokio::io::AsyncWriteExt;
        let mut file = file;
        file.flush().await?;
        file.sync_all().await?;
        drop(file);
        let body = self.body_path(id);
        tokio::fs::rename(tmp, &body).await?;
        self.write_meta(id, meta).await?;
        Ok(body)
    }

    /// Writes (or replaces) the metadata of object `id` atomically.
    pub async fn write_meta(&self, id: u64, meta: &Meta) -> io::Result<()> {
        let text = encode(meta);
        let path = self.meta_path(id);
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let tmp = path.with_extension("meta.tmp");
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            // Make the renames themselves durable.
            std::fs::File::open(&dir).and_then(|d| d.sync_all())
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Deletes object `id` (metadata first, so a crash in between leaves an orphan body that
    /// the next start cleans up).
    pub fn remove(&self, id: u64) {
        let _ = std::fs::remove_file(self.meta_path(id));
        let _ = std::fs::remove_file(self.body_path(id));
    }

    /// Every complete object, deleting what is incomplete.
    pub fn load(&self) -> io::Result<Vec<(u64, Meta)>> {
        let mut out = Vec::new();
        let mut bodies = Vec::new();
        for ent in std::fs::read_dir(&self.dir)? {
            let path = ent?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
            if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(&path);
            } else if let Some(hex) = name.strip_suffix(".meta") {
                let Ok(id) = u64::from_str_radix(hex, 16) else { continue };
                let meta = std::fs::read(&path).ok().and_then(|b| decode(&b));
                let body_len = std::fs::metadata(self.body_path(id)).map(|m| m.len()).ok();
                match meta {
                    Some(meta) if Some(meta.body_len) == body_len => out.push((id, meta)),
                    _ => {
                        tracing::info!("cache directory: dropping incomplete object {name}");
                        self.remove(id);
                    }
                }
            } else if let Some(hex) = name.strip_suffix(".body")
                && let Ok(id) = u64::from_str_radix(hex, 16)
            {
                bodies.push(id);
            }
        }
        for id in bodies {
            if !self.meta_path(id).exists() {
                let _ = std::fs::remove_file(self.body_path(id));
            }
        }
        Ok(out)
    }
}

/// The metadata as bytes: a magic line, `key`, `status`, `time` (ms since the epoch), `len`,
/// then `req NAME: VALUE` and `res NAME: VALUE` lines, then `end`.
pub fn encode(meta: &Meta) -> Vec<u8> {
    let ms = meta.response_time.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let mut out = format!(
        "{MAGIC}\nkey {}\nstatus {}\ntime {ms}\nlen {}\n",
        meta.key,
        meta.status.as_u16(),
        meta.body_len
    )
    .into_bytes();
    for (tag, headers) in [("req", &meta.req_headers), ("res", &meta.res_headers)] {
        for (name, value) in headers {
            out.extend_from_slice(format!("{tag} {}: ", name.as_str()).as_bytes());
            out.extend_from_slice(value.as_bytes());
            out.push(b'\n');
        }
    }
    out.extend_from_slice(b"end\n");
    out
}

/// Parses [`encode`]'s output; `None` for anything malformed or unfinished.
pub fn decode(bytes: &[u8]) -> Option<Meta> {
    let mut lines = bytes.split(|&b| b == b'\n');
    if lines.next()? != MAGIC.as_bytes() {
        return None;
    }
    let mut field = |name: &str| -> Option<String> {
        let line = std::str::from_utf8(lines.next()?).ok()?;
        Some(line.strip_prefix(name)?.strip_prefix(' ')?.to_string())
    };
    let key = field("key")?;
    let status = StatusCode::from_u16(field("status")?.parse().ok()?).ok()?;
    let ms: u64 = field("time")?.parse().ok()?;
    let body_len: u64 = field("len")?.parse().ok()?;
    let (mut req_headers, mut res_headers) = (HeaderMap::new(), HeaderMap::new());
    let mut ended = false;
    for line in lines {
        if line == b"end" {
            ended = true;
            break;
        }
        let (target, rest) = if let Some(r) = line.strip_prefix(b"req ") {
            (&mut req_headers, r)
        } else if let Some(r) = line.strip_prefix(b"res ") {
            (&mut res_headers, r)
        } else {
            return None;
        };
        let colon = rest.iter().position(|&b| b == b':')?;
        let name = HeaderName::from_bytes(&rest[..colon]).ok()?;
        let value =
            HeaderValue::from_bytes(rest[colon + 1..].strip_prefix(b" ").unwrap_or(&rest[colon + 1..]))
                .ok()?;
        target.append(name, value);
    }
    if !ended {
        return None;
    }
    Some(Meta {
        key,
        status,
        req_headers,
        res_headers,
        response_time: UNIX_EPOCH + Duration::from_millis(ms),
        body_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn meta_round_trip_keeps_repeated_fields() {
        let mut res = HeaderMap::new();
        res.append("set-cookie", HeaderValue::from_static("a=1"));
        res.append("set-cookie", HeaderValue::from_static("b=2"));
        res.insert("cache-control", HeaderValue::from_static("max-age=60"));
        let mut req = HeaderMap::new();
        req.insert("accept-language", HeaderValue::from_static("fr"));
        let meta = Meta {
            key: "http://example.com/a?b".into(),
            status: StatusCode::OK,
            req_headers: req,
            res_headers: res,
            response_time: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            body_len: 42,
        };
        let back = decode(&encode(&meta)).expect("decodes");
        assert_eq!(back.key, meta.key);
        assert_eq!(back.res_headers, meta.res_headers);
        assert_eq!(back.req_headers, meta.req_headers);
        assert_eq!(back.response_time, meta.response_time);
        assert_eq!(back.body_len, 42);
    }

    #[test]
    fn truncated_meta_is_refused() {
        let meta = Meta {
            key: "http://x/".into(),
            status: StatusCode::OK,
            req_headers: HeaderMap::new(),
            res_headers: HeaderMap::new(),
            response_time: SystemTime::UNIX_EPOCH,
            body_len: 1,
        };
        let bytes = encode(&meta);
        for cut in 0..bytes.len() - 1 {
            assert!(decode(&bytes[..cut]).is_none(), "accepted a cut at {cut}");
        }
    }
}
