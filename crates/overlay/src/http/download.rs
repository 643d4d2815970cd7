//! The download side: fetches one file from one or several peers by HTTP byte ranges (KaZaA's
//! parallel downloading), one keep-alive connection per source, each taking the next missing
//! chunk; a source that fails hands its chunk back to the others; a queued source (503 +
//! `X-Queue`) is asked again after its `pollMin`. The file is written to a temporary sibling,
//! verified against its SHA-1, synced, and linked into place without replacing anything.

use super::request::percent_encode;
use super::slots::parse_x_queue;
use crate::napster::wire::Sha1;
use sha1::{Digest, Sha1 as Hasher};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes asked for in one range request.
pub const CHUNK: u64 = 256 * 1024;
/// Longest response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Failed attempts after which a source is given up.
const MAX_FAILURES: u32 = 3;

/// Where to fetch a file from: a peer's HTTP address and the request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The peer's HTTP (`--listen`) address.
    pub addr: SocketAddr,
    /// `/uri-res/N2R?urn:sha1:...` or `/get/<index>/<name>`.
    pub target: String,
}

impl Source {
    /// Fetch by content hash (what every appnet servent serves).
    pub fn by_urn(addr: SocketAddr, sha1: &Sha1) -> Source {
        Source { addr, target: format!("/uri-res/N2R?{}", crate::gnutella::base32::sha1_urn(sha1)) }
    }

    /// Fetch by the index and name a QueryHit gave.
    pub fn by_index(addr: SocketAddr, index: u32, name: &str) -> Source {
        Source { addr, target: format!("/get/{index}/{}", percent_encode(name)) }
    }
}

/// How patient a download is.
#[derive(Debug, Clone, Copy)]
pub struct DownloadOptions {
    /// Connect, response-head and per-read timeout.
    pub io_timeout: Duration,
    /// Longest total time spent waiting in upload queues before a source is given up.
    pub max_queue_wait: Duration,
    /// Bytes per range request.
    pub chunk: u64,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            io_timeout: Duration::from_secs(15),
            max_queue_wait: Duration::from_secs(300),
            chunk: CHUNK,
        }
    }
}

/// A finished download.
#[derive(Debug)]
pub struct Downloaded {
    /// Where the verified file now is.
    pub path: PathBuf,
    /// Bytes received from each source that contributed.
    pub from: Vec<(SocketAddr, u64)>,
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The file name offered cannot be used as a local file name.
    #[error("unusable file name {0:?}")]
    BadName(String),
    /// Refusing to replace a file that is there.
    #[error("{0} exists; remove it or choose another -o DIR")]
    Exists(PathBuf),
    /// Every source failed before the file was complete.
    #[error("no source could deliver the file (last error: {0})")]
    NoSource(String),
    /// The bytes did not hash to the announced SHA-1 (the file is not kept).
    #[error("downloaded bytes do not match {0}; the file was not kept")]
    HashMismatch(String),
    /// Local disk trouble.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A name from the network made safe as one file name in the output directory: its last
/// path component, without control characters, not hidden, not `.`/`..`.
pub fn safe_file_name(name: &str) -> Option<String> {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = last.chars().filter(|c| !c.is_control()).collect();
    let clean = clean.trim().trim_start_matches('.').to_string();
    (!clean.is_empty() && clean.len() <= 255).then_some(clean)
}

struct Job {
    file: std::fs::File,
    size: u64,
    chunks: Mutex<VecDeque<(u64, u64)>>,
    /// Bytes still missing; 0 when the file is complete.
    missing: AtomicU64,
    last_error: Mutex<String>,
    opts: DownloadOptions,
}

/// Downloads `size` bytes with SHA-1 `sha1` from `sources` into `out_dir/<name>`.
pub async fn download(
    sources: &[Source],
    name: &str,
    size: u64,
    sha1: Sha1,
    out_dir: &Path,
    opts: DownloadOptions,
) -> Result<Downloaded, DownloadError> {
    download_with(sources, None, name, size, sha1, out_dir, opts).await
}

/// Downloads from one connection the uploader opened to us (a firewalled servent's answer to
/// a Push: after its `GIV` line the connection carries ordinary HTTP requests from us).
pub async fn download_pushed(
    source: Source,
    conn: TcpStream,
    name: &str,
    size: u64,
    sha1: Sha1,
    out_dir: &Path,
    opts: DownloadOptions,
) -> Result<Downloaded, DownloadError> {
    download_with(&[], Some((source, conn)), name, size, sha1, out_dir, opts).await
}

async fn download_with(
    sources: &[Source],
    pushed: Option<(Source, TcpStream)>,
    name: &str,
    size: u64,
    sha1: Sha1,
    out_dir: &Path,
    opts: DownloadOptions,
) -> Result<Downloaded, DownloadError> {
    let file_name = safe_file_name(name).ok_or_else(|| DownloadError::BadName(name.to_string()))?;
    let target = out_dir.join(&file_name);
    if std::fs::symlink_metadata(&target).is_ok() {
        return Err(DownloadError::Exists(target));
    }
    if sources.is_empty() && pushed.is_none() {
        return Err(DownloadError::NoSource("no sources".into()));
    }
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let tmp = out_dir.join(format!(
        ".{file_name}.part-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?
    };
    let result = fetch_into(file, sources, pushed, size, sha1, opts).await;
    let result = result.and_then(|from| {
        // Link (never replace) the verified file into place, then drop the temporary name.
        std::fs::hard_link(&tmp, &target).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                DownloadError::Exists(target.clone())
            } else {
                e.into()
            }
        })?;
        if let Ok(d) = std::fs::File::open(out_dir) {
            let _ = d.sync_all();
        }
        Ok(Downloaded { path: target.clone(), from })
    });
    let _ = std::fs::remove_file(&tmp);
    result
}

async fn fetch_into(
    file: std::fs::File,
    sources: &[Source],
    pushed: Option<(Source, TcpStream)>,
    size: u64,
    sha1: Sha1,
    opts: DownloadOptions,
) -> Result<Vec<(SocketAddr, u64)>, DownloadError> {
    let chunk = opts.chunk.max(1);
    let chunks: VecDeque<(u64, u64)> =
        (0..size.div_ceil(chunk)).map(|i| (i * chunk, ((i + 1) * chunk).min(size) - 1)).collect();
    let job = Arc::new(Job {
        file,
        size,
        chunks: Mutex::new(chunks),
        missing: AtomicU64::new(size),
        last_error: Mutex::new(String::new()),
        opts,
    });
    let mut tasks = Vec::new();
    let starts = sources.iter().cloned().map(|s| (s, None)).chain(pushed.map(|(s, c)| (s, Some(c))));
    for (source, conn) in starts {
        let job = job.clone();
        tasks.push(tokio::spawn(async move {
            let got = worker(&source, &job, conn).await;
            (source.addr, got)
        }));
    }
    let mut from = Vec::new();
    for t in tasks {
        if let Ok((addr, got)) = t.await
            && got > 0
        {
            from.push((addr, got));
        }
    }
    if job.missing.load(Ordering::SeqCst) > 0 {
        return Err(DownloadError::NoSource(
            job.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        ));
    }
    let job = Arc::try_unwrap(job).map_err(|_| io::Error::other("download workers still running"))?;
    let file = job.file;
    let digest = tokio::task::spawn_blocking(move || -> io::Result<(std::fs::File, [u8; 20])> {
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut off = 0u64;
        while off < size {
            let n = file.read_at(&mut buf, off)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "temporary file shorter than expected",
                ));
            }
            hasher.update(&buf[..n]);
            off += n as u64;
        }
        file.sync_all()?;
        Ok((file, hasher.finalize().into()))
    })
    .await
    .map_err(io::Error::other)??;
    if digest.1 != sha1 {
        return Err(DownloadError::HashMismatch(crate::gnutella::base32::sha1_urn(&sha1)));
    }
    Ok(from)
}

/// One source's loop: take a chunk, fetch it, write it; returns the bytes it delivered.
/// `conn` is a connection already open to the source (a pushed one), used first.
async fn worker(source: &Source, job: &Job, mut conn: Option<TcpStream>) -> u64 {
    let mut delivered = 0u64;
    let mut failures = 0u32;
    let mut queued_for = Duration::ZERO;
    loop {
        let next = job.chunks.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
        let Some((start, end)) = next else { return delivered };
        match fetch_range(&mut conn, source, job, start, end).await {
            Ok(Fetch::Done(n)) => {
                delivered += n;
                failures = 0;
                job.missing.fetch_sub(n, Ordering::SeqCst);
            }
            Ok(Fetch::Queued(wait)) => {
                job.chunks.lock().unwrap_or_else(|p| p.into_inner()).push_front((start, end));
                queued_for += wait;
                if queued_for > job.opts.max_queue_wait {
                    note(job, format!("{}: still queued after {queued_for:?}", source.addr));
                    return delivered;
                }
                tracing::info!(source = %source.addr, "queued by the uploader; asking again in {wait:?}");
                tokio::time::sleep(wait).await;
            }
            Err(e) => {
                job.chunks.lock().unwrap_or_else(|p| p.into_inner()).push_back((start, end));
                conn = None;
                failures += 1;
                note(job, format!("{}: {e}", source.addr));
                tracing::info!(source = %source.addr, "range {start}-{end} failed: {e}");
                if failures >= MAX_FAILURES {
                    return delivered;
                }
            }
        }
    }
}

fn note(job: &Job, error: String) {
    *job.last_error.lock().unwrap_or_else(|p| p.into_inner()) = error;
}

enum Fetch {
    Done(u64),
    Queued(Duration),
}

async fn fetch_range(
    conn: &mut Option<TcpStream>,
    source: &Source,
    job: &Job,
    start: u64,
    end: u64,
) -> io::Result<Fetch> {
    let t = job.opts.io_timeout;
    if conn.is_none() {
        let s = tokio::time::timeout(t, TcpStream::connect(source.addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        *conn = Some(s);
    }
    let stream = conn.as_mut().expect("connected above");
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: appnet\r\nRange: bytes={start}-{end}\r\n\r\n",
        source.target, source.addr
    );
    stream.write_all(req.as_bytes()).await?;
    // The response head.
    let mut buf = Vec::with_capacity(1024);
    let (status, headers, body_start) = loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(t, stream.read(&mut chunk))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no response"))??;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut hs);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let headers: Vec<(String, String)> = resp
                    .headers
                    .iter()
                    .map(|h| {
                        (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).trim().to_string())
                    })
                    .collect();
                break (resp.code.unwrap_or(0), headers, len);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "malformed response head")),
        }
    };
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let length: u64 = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let close = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    if status == 503
        && let Some(q) = header("x-queue")
    {
        let (_, poll_min) = parse_x_queue(q);
        skip_body(stream, &buf[body_start..], length, t).await?;
        if close {
            *conn = None;
        }
        return Ok(Fetch::Queued(Duration::from_secs(poll_min.unwrap_or(5).clamp(1, 60))));
    }
    let want = end - start + 1;
    let whole = start == 0 && end + 1 == job.size;
    let ok = match status {
        206 => header("content-range") == Some(format!("bytes {start}-{end}/{}", job.size).as_str()),
        200 => whole,
        _ => false,
    };
    if !ok || length != want {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("answered {status} (length {length})"),
        ));
    }
    // The body, straight into the file at its offset.
    let mut off = start;
    let first = &buf[body_start..];
    let first = &first[..first.len().min(want as usize)];
    write_at(&job.file, first, off)?;
    off += first.len() as u64;
    let mut chunk = vec![0u8; 64 * 1024];
    while off <= end {
        let room = ((end + 1 - off) as usize).min(chunk.len());
        let n = tokio::time::timeout(t, stream.read(&mut chunk[..room]))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "transfer stalled"))??;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-range"));
        }
        write_at(&job.file, &chunk[..n], off)?;
        off += n as u64;
    }
    if close {
        *conn = None;
    }
    Ok(Fetch::Done(want))
}

fn write_at(file: &std::fs::File, data: &[u8], off: u64) -> io::Result<()> {
    if data.is_empty() { Ok(()) } else { file.write_all_at(data, off) }
}

async fn skip_body(stream: &mut TcpStream, have: &[u8], length: u64, t: Duration) -> io::Result<()> {
    let mut left = length.saturating_sub(have.len() as u64).min(1 << 20);
    let mut sink = [0u8; 4096];
    while left > 0 {
        let n = tokio::time::timeout(t, stream.read(&mut sink[..(left as usize).min(4096)]))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "stalled"))??;
        if n == 0 {
            break;
        }
        left -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_network_stay_one_file_name() {
        assert_eq!(safe_file_name("Hey Jude.mp3").as_deref(), Some("Hey Jude.mp3"));
        assert_eq!(safe_file_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(safe_file_name("..\\x").as_deref(), Some("x"));
        assert_eq!(safe_file_name(".bashrc").as_deref(), Some("bashrc"));
        assert_eq!(safe_file_name(".."), None);
        assert_eq!(safe_file_name("a/"), None);
        assert_eq!(safe_file_name("\u{0}\n"), None);
    }
}
