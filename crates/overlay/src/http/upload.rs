//! The upload side: serves shared files over HTTP/1.1 (`/get/<index>/<name>`,
//! `/uri-res/N2R?urn:sha1:...`, HEAD, one byte range, keep-alive) through the upload slots.
//! Files are only ever found through the share index, never by a path from the request, and
//! are opened with `O_NOFOLLOW`, so nothing outside the shared directory is reachable.

use super::config::UploadConfig;
use super::request::{HeadError, Method, RequestHead, Target, parse_head, resolve_range};
use super::slots::{Admission, UploadSlots, x_queue};
use crate::index::{ShareIndex, SharedFile};
use appnet_netkit::accept::{Accepted, Acceptor, ConnSlot};
use appnet_netkit::listen::{ListenOpts, bind_tcp};
use appnet_netkit::metrics::{Counter, Registry};
use appnet_netkit::{BoxError, Service, Shutdown};
use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// Bytes read from a shared file per trip to the blocking pool (and held per upload).
const READ_CHUNK: u64 = 256 * 1024;

/// What every upload connection shares: the index, the slots, who uploads to us, counters.
#[derive(Clone)]
pub struct UploadCtx {
    /// The files served.
    pub index: Arc<ShareIndex>,
    /// Upload slots and queue.
    pub slots: Arc<Mutex<UploadSlots>>,
    /// Addresses of peers that upload: they get priority in the queue. Filled by
    /// [`UploadCtx::record_uploader`]: a node records servents whose Pongs advertise shared
    /// files, and a process that downloads records the sources that delivered bytes.
    pub uploaders: Arc<Mutex<HashSet<IpAddr>>>,
    /// The settings.
    pub config: Arc<UploadConfig>,
    stats: UploadStats,
}

#[derive(Clone)]
struct UploadStats {
    registry: Registry,
    uploads: Counter,
    bytes: Counter,
    queued: Counter,
    refused: Counter,
    not_found: Counter,
}

impl UploadCtx {
    /// A context serving `index` under `config`.
    pub fn new(index: Arc<ShareIndex>, config: UploadConfig) -> UploadCtx {
        let r = Registry::new();
        let stats = UploadStats {
            uploads: r.counter("overlay_uploads_total", "Files (or ranges) sent.", &[]),
            bytes: r.counter("overlay_upload_bytes_total", "Bytes of file data sent.", &[]),
            queued: r.counter("overlay_upload_queued_total", "Requests answered 503 with X-Queue.", &[]),
            refused: r.counter("overlay_upload_refused_total", "Requests refused (bad, busy, full).", &[]),
            not_found: r.counter("overlay_upload_not_found_total", "Requests for unknown files.", &[]),
            registry: r,
        };
        UploadCtx {
            index,
            slots: Arc::new(Mutex::new(UploadSlots::new(config.slot_limits()))),
            uploaders: Arc::new(Mutex::new(HashSet::new())),
            config: Arc::new(config),
            stats,
        }
    }

    /// Marks `ip` as a peer that uploads (priority in the upload queue). Bounded: beyond
    /// 65536 addresses the set is cleared and starts again.
    pub fn record_uploader(&self, ip: IpAddr) {
        let mut set = self.uploaders.lock().unwrap_or_else(|p| p.into_inner());
        if set.len() >= 65_536 && !set.contains(&ip) {
            set.clear();
        }
        set.insert(ip);
    }

    /// The upload counters.
    pub fn metrics(&self) -> Registry {
        self.stats.registry.clone()
    }

    fn find(&self, target: &Target) -> Option<&SharedFile> {
        match target {
            Target::ByIndex { index, name } => self.index.by_index(*index).filter(|f| &f.name == name),
            Target::ByUrn(sha1) => self.index.by_sha1(sha1),
            Target::Unknown => None,
        }
    }
}

/// A bound HTTP upload server (what `napster share` runs).
pub struct UploadServer {
    listener: TcpListener,
    ctx: UploadCtx,
}

impl UploadServer {
    /// Binds `ctx.config.listen`.
    pub async fn bind(ctx: UploadCtx) -> io::Result<UploadServer> {
        let listener = bind_tcp(ctx.config.listen, &ListenOpts::default())?;
        Ok(UploadServer { listener, ctx })
    }
}

impl Service for UploadServer {
    fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.ctx.config.listen)
    }

    async fn run(self, shutdown: Shutdown) -> Result<(), BoxError> {
        let acceptor = Acceptor::with_limits(self.listener, self.ctx.config.conn_limits());
        while let Some(accepted) = acceptor.next(&shutdown).await {
            match accepted {
                Accepted::Conn(stream, peer, slot) => {
                    let (ctx, sd) = (self.ctx.clone(), shutdown.clone());
                    shutdown.spawn(async move {
                        if let Err(e) = serve_http(stream, peer, Vec::new(), Some(&slot), &ctx, &sd).await {
                            tracing::debug!(%peer, "upload connection ended: {e}");
                        }
                    });
                }
                Accepted::OverCap(stream, peer) => {
                    self.ctx.stats.refused.inc();
                    tracing::info!(%peer, "connection cap reached; refusing");
                    shutdown.spawn(refuse_busy(stream));
                }
            }
        }
        drop(acceptor);
        shutdown.drain(Duration::from_secs(5)).await;
        Ok(())
    }
}

/// Answers an over-cap connection with `503` and closes it.
pub async fn refuse_busy<S: AsyncWrite + Unpin>(mut stream: S) {
    let reply = simple(503, "Busy", "too many connections\n", false);
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(reply.as_bytes())).await;
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        206 => "Partial Content",
        400 => "Bad Request",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn simple(code: u16, _what: &str, body: &str, keep_alive: bool) -> String {
    format!(
        "HTTP/1.1 {code} {}\r\nServer: appnet\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{body}",
        reason(code),
        body.len(),
        if keep_alive { "" } else { "Connection: close\r\n" }
    )
}

/// Serves HTTP requests on one connection until it closes, times out or asks to close.
/// `buffered` holds bytes already read from `stream` (the Gnutella port's sniffed prefix).
/// `slot` is the accepted connection's place (its deadlines); an outgoing connection (a
/// Push answered with GIV) has none and gets the idle timeout per request instead.
pub async fn serve_http<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    mut buffered: Vec<u8>,
    slot: Option<&ConnSlot>,
    ctx: &UploadCtx,
    shutdown: &Shutdown,
) -> io::Result<()> {
    let max = ctx.config.max_header.max(256);
    loop {
        // Read one whole request head within the slot's deadline.
        let head = loop {
            match parse_head(&buffered) {
                Ok(Some((head, len))) => {
                    buffered.drain(..len);
                    break head;
                }
                Ok(None) if buffered.len() >= max => {
                    ctx.stats.refused.inc();
                    let reply = simple(431, "", "request head too large\n", false);
                    stream.write_all(reply.as_bytes()).await?;
                    return Ok(());
                }
                Ok(None) => {}
                Err(e) => {
                    ctx.stats.refused.inc();
                    let code = if e == HeadError::TooManyHeaders { 431 } else { 400 };
                    stream.write_all(simple(code, "", &format!("{e}\n"), false).as_bytes()).await?;
                    return Ok(());
                }
            }
            let mut chunk = [0u8; 4096];
            let deadline = async {
                match slot {
                    Some(s) => drop(s.closed().await),
                    None => {
                        tokio::time::sleep(Duration::from_secs(ctx.config.idle_timeout_secs.max(1))).await
                    }
                }
            };
            let n = tokio::select! {
                n = stream.read(&mut chunk) => n?,
                _ = deadline => return Ok(()),
                _ = shutdown.wait() => return Ok(()),
            };
            if n == 0 {
                return Ok(());
            }
            buffered.extend_from_slice(&chunk[..n]);
        };
        slot.inspect(|s| s.busy());
        let keep_alive = respond(&mut stream, peer, &head, ctx).await?;
        stream.flush().await?;
        if !keep_alive || shutdown.is_triggered() {
            return Ok(());
        }
        slot.inspect(|s| s.idle());
    }
}

/// Answers one request; returns whether the connection stays open.
async fn respond<S: AsyncWrite + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
    head: &RequestHead,
    ctx: &UploadCtx,
) -> io::Result<bool> {
    if head.method == Method::Other {
        ctx.stats.refused.inc();
        stream.write_all(simple(501, "", "only GET and HEAD\n", head.keep_alive).as_bytes()).await?;
        return Ok(head.keep_alive);
    }
    let Some(file) = ctx.find(&head.target) else {
        ctx.stats.not_found.inc();
        tracing::debug!(%peer, target = ?head.target, "no such shared file");
        stream.write_all(simple(404, "", "no such file\n", head.keep_alive).as_bytes()).await?;
        return Ok(head.keep_alive);
    };
    let urn = crate::gnutella::base32::sha1_urn(&file.sha1);
    let (start, end, code) = match head.range {
        None => (0, file.size.saturating_sub(1), 200),
        Some(r) => match resolve_range(r, file.size) {
            Some((a, b)) => (a, b, 206),
            None => {
                let reply = format!(
                    "HTTP/1.1 416 {}\r\nServer: appnet\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\n{}\r\n",
                    reason(416),
                    file.size,
                    if head.keep_alive { "" } else { "Connection: close\r\n" }
                );
                stream.write_all(reply.as_bytes()).await?;
                return Ok(head.keep_alive);
            }
        },
    };
    let len = if file.size == 0 { 0 } else { end - start + 1 };
    if head.method == Method::Head {
        let reply = headers(code, file, &urn, start, end, len, head.keep_alive);
        stream.write_all(reply.as_bytes()).await?;
        return Ok(head.keep_alive);
    }
    // KaZaA: limited simultaneous uploads, a queue, uploaders first.
    let uploader = ctx.uploaders.lock().unwrap_or_else(|p| p.into_inner()).contains(&peer.ip());
    let admission =
        ctx.slots.lock().unwrap_or_else(|p| p.into_inner()).request(peer.ip(), uploader, Instant::now());
    match admission {
        Admission::Start => {}
        Admission::Queued { position, length } => {
            ctx.stats.queued.inc();
            let limits = ctx.slots.lock().unwrap_or_else(|p| p.into_inner()).limits();
            let reply = format!(
                "HTTP/1.1 503 {}\r\nServer: appnet\r\nX-Queue: {}\r\nRetry-After: {}\r\nContent-Length: 0\r\n{}\r\n",
                reason(503),
                x_queue(position, length, &limits),
                limits.poll_min.as_secs(),
                if head.keep_alive { "" } else { "Connection: close\r\n" }
            );
            stream.write_all(reply.as_bytes()).await?;
            return Ok(head.keep_alive);
        }
        Admission::Refused => {
            ctx.stats.refused.inc();
            stream.write_all(simple(503, "", "upload queue full\n", false).as_bytes()).await?;
            return Ok(false);
        }
    }
    let _done = SlotGuard(&ctx.slots);
    // Open and read the first piece in one trip to the blocking pool; the header goes out in
    // the same write as the first bytes.
    let first_len = len.min(READ_CHUNK);
    let shared = file.clone();
    let opened = tokio::task::spawn_blocking(move || -> io::Result<(std::fs::File, Vec<u8>)> {
        let f = shared.open()?;
        let mut buf = vec![0u8; first_len as usize];
        f.read_exact_at(&mut buf, start)?;
        Ok((f, buf))
    })
    .await
    .map_err(io::Error::other)?;
    let (mut f, first) = match opened {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(path = %file.path.display(), "cannot serve a shared file: {e}");
            stream.write_all(simple(404, "", "file no longer shared\n", head.keep_alive).as_bytes()).await?;
            return Ok(head.keep_alive);
        }
    };
    let mut out = headers(code, file, &urn, start, end, len, head.keep_alive).into_bytes();
    out.extend_from_slice(&first);
    stream.write_all(&out).await?;
    let mut sent = first_len;
    let mut buf = Vec::new();
    while sent < len {
        let n = (len - sent).min(READ_CHUNK) as usize;
        let at = start + sent;
        let mut chunk = std::mem::take(&mut buf);
        chunk.resize(n, 0);
        let (back_f, back_chunk) = tokio::task::spawn_blocking(move || -> io::Result<_> {
            f.read_exact_at(&mut chunk, at)?;
            Ok((f, chunk))
        })
        .await
        .map_err(io::Error::other)??;
        f = back_f;
        stream.write_all(&back_chunk).await?;
        buf = back_chunk;
        sent += n as u64;
    }
    ctx.stats.uploads.inc();
    ctx.stats.bytes.add(sent);
    tracing::info!(%peer, name = %file.name, start, len, "uploaded");
    Ok(head.keep_alive)
}

/// Frees an upload slot when the transfer ends, however it ends.
struct SlotGuard<'a>(&'a Mutex<UploadSlots>);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).finish();
    }
}

fn headers(
    code: u16,
    file: &SharedFile,
    urn: &str,
    start: u64,
    end: u64,
    len: u64,
    keep_alive: bool,
) -> String {
    let range = if code == 206 {
        format!("Content-Range: bytes {start}-{end}/{}\r\n", file.size)
    } else {
        String::new()
    };
    format!(
        "HTTP/1.1 {code} {}\r\nServer: appnet\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {len}\r\nAccept-Ranges: bytes\r\nX-Gnutella-Content-URN: {urn}\r\n{range}{}\r\n",
        reason(code),
        if keep_alive { "" } else { "Connection: close\r\n" }
    )
}
