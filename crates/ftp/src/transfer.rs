//! One transfer on its own data connection, run as a task beside the control connection so
//! STAT and ABOR are answered while it runs. It opens the file (550 if it cannot), opens the
//! data connection (passive: accepted only from the control client's address; active: connected
//! only to it, from the control port − 1 when that can be bound), replies 150, moves the bytes,
//! and ends with 226, or 426 when aborted, or 4xx/5xx on failure. Its replies go to the control
//! connection through a channel, which closes when the transfer is over.

use crate::fs::{PartMode, Root, fs_error};
use crate::session::{DataTarget, ListFormat, StoreMode, Transfer};
use crate::wire::listing::{Kind, glob_match, is_glob, list_line, mlsx_facts};
use crate::wire::reply::Reply;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Bytes per read or write of a data connection.
const CHUNK: usize = 1 << 20;

/// The limits a transfer works under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub connect_timeout: Duration,
    pub stall_timeout: Duration,
    pub max_upload: u64,
    pub min_free_space: u64,
}

/// A data connection: plain TCP or TLS (PROT P).
pub(crate) enum DataConn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// Everything one transfer needs.
pub(crate) struct Job {
    pub transfer: Transfer,
    pub target: DataTarget,
    pub ascii: bool,
    pub root: Arc<Root>,
    pub peer_ip: IpAddr,
    pub local: SocketAddr,
    pub passive: Option<TcpListener>,
    pub limits: Limits,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub progress: Arc<AtomicU64>,
    pub cancel: CancellationToken,
    pub replies: mpsc::UnboundedSender<Reply>,
    pub now_secs: i64,
    pub writable: bool,
}

/// What a transfer hands the driver for its counters.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Done {
    pub sent: u64,
    pub received: u64,
}

enum Source {
    File(std::fs::File, u64),
    Listing(Vec<u8>),
}

/// Runs the job to its final reply.
pub(crate) async fn run(job: Job) -> Done {
    let cancel = job.cancel.clone();
    let replies = job.replies.clone();
    tokio::select! {
        done = run_inner(job) => done,
        _ = cancel.cancelled() => {
            let _ = replies.send(Reply::new(426, "Connection closed; transfer aborted."));
            Done::default()
        }
    }
}

async fn run_inner(mut job: Job) -> Done {
    let replies = job.replies.clone();
    let send = |code, text: &str| {
        let _ = replies.send(Reply::new(code, text));
    };
    match job.transfer.clone() {
        Transfer::Retr { path, offset } => {
            let root = job.root.clone();
            let opened = blocking(move || root.open_read(&path)).await;
            let (mut file, size) = match opened {
                Ok(f) => f,
                Err(e) => {
                    send(550, &format!("Failed to open file: {}", fs_error(&e).text()));
                    return Done::default();
                }
            };
            if offset > size {
                send(554, "REST offset is past the end of the file.");
                return Done::default();
            }
            if offset > 0 {
                use std::io::Seek;
                if file.seek(io::SeekFrom::Start(offset)).is_err() {
                    send(554, "Cannot seek to the REST offset.");
                    return Done::default();
                }
            }
            let Some(stream) = open_data(&mut job).await else { return Done::default() };
            let mode = if job.ascii { "ASCII" } else { "BINARY" };
            send(150, &format!("Opening {mode} mode data connection ({} bytes).", size - offset));
            let Some(mut conn) = secure(&job, stream).await else { return Done::default() };
            let result = send_source(&mut conn, Source::File(file, size - offset), &job).await;
            finish_send(&job, conn, result).await
        }
        Transfer::List { path, format } => {
            let root = job.root.clone();
            let (now, writable) = (job.now_secs, job.writable);
            let listing = blocking(move || listing(&root, &path, format, now, writable)).await;
            let body = match listing {
                Ok(b) => b,
                Err(e) => {
                    send(550, &format!("Cannot list: {}", fs_error(&e).text()));
                    return Done::default();
                }
            };
            let Some(stream) = open_data(&mut job).await else { return Done::default() };
            send(150, "Here comes the directory listing.");
            let Some(mut conn) = secure(&job, stream).await else { return Done::default() };
            let result = send_source(&mut conn, Source::Listing(body), &job).await;
            finish_send(&job, conn, result).await
        }
        Transfer::Store { path, mode } => store(job, path, mode).await,
    }
}

async fn finish_send(job: &Job, conn: DataConn, result: io::Result<u64>) -> Done {
    match result {
        Ok(n) => match shutdown(conn).await {
            Ok(()) => {
                let _ = job.replies.send(Reply::new(226, "Transfer complete."));
                Done { sent: n, received: 0 }
            }
            Err(_) => {
                let _ = job.replies.send(Reply::new(426, "Connection closed; transfer aborted."));
                Done { sent: n, received: 0 }
            }
        },
        Err(e) => {
            tracing::debug!("send failed: {e}");
            let _ = job.replies.send(Reply::new(426, "Connection closed; transfer aborted."));
            Done::default()
        }
    }
}

async fn shutdown(conn: DataConn) -> io::Result<()> {
    match conn {
        DataConn::Plain(mut s) => s.shutdown().await,
        DataConn::Tls(mut s) => s.shutdown().await,
    }
}

/// The listing a LIST, NLST or MLSD sends (CRLF lines).
fn listing(
    root: &Root,
    path: &[String],
    format: ListFormat,
    now: i64,
    writable: bool,
) -> io::Result<Vec<u8>> {
    // `NLST *.txt` (mget in classic clients), `LIST a?c`: a pattern in the last component
    // lists the matching entries of its directory (MLSD takes no patterns, RFC 3659 §7.1).
    if format != ListFormat::Machine
        && let Some((pattern, dir)) = path.split_last()
        && is_glob(pattern)
        && root.stat(path).is_err()
    {
        let mut out = Vec::new();
        for e in root.list(dir)?.iter().filter(|e| glob_match(pattern.as_bytes(), e.name.as_bytes())) {
            if e.name.contains(['\r', '\n']) {
                continue;
            }
            let line = if format == ListFormat::Long { list_line(e, now) } else { e.name.clone() };
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        return Ok(out);
    }
    let me = root.stat(path)?;
    let entries = if me.kind == Kind::Dir {
        root.list(path)?
    } else if format == ListFormat::Machine {
        return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
    } else {
        vec![me.clone()]
    };
    let mut out = Vec::with_capacity(entries.len() * 80);
    if format == ListFormat::Machine {
        out.extend_from_slice(mlsx_facts(&me, ".", true, writable).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for e in &entries {
        let line = match format {
            ListFormat::Long => list_line(e, now),
            ListFormat::Names => e.name.clone(),
            ListFormat::Machine => mlsx_facts(e, &e.name, false, writable),
        };
        // A name with a line break would forge listing lines; such names are left out.
        if e.name.contains(['\r', '\n']) {
            continue;
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    Ok(out)
}

/// Opens the data connection (425 on failure).
async fn open_data(job: &mut Job) -> Option<TcpStream> {
    let opened = match job.target {
        DataTarget::Passive => match job.passive.take() {
            Some(listener) => accept_from(&listener, job.peer_ip, job.limits.connect_timeout).await,
            None => Err(io::Error::other("no passive listener")),
        },
        DataTarget::Active(addr) => connect_active(job.local, addr, job.limits.connect_timeout).await,
    };
    match opened {
        // Nagle stays on: a data connection is a bulk stream ended by close (which flushes),
        // and with TCP_NODELAY every page sendfile hands over leaves as its own segment.
        Ok(s) => Some(s),
        Err(e) => {
            tracing::debug!("data connection failed: {e}");
            let _ = job.replies.send(Reply::new(425, "Failed to establish connection."));
            None
        }
    }
}

/// After the 150 reply (clients such as Python's ftplib start TLS only once they have it):
/// the TLS handshake under PROT P, or the plain connection.
async fn secure(job: &Job, stream: TcpStream) -> Option<DataConn> {
    match &job.tls {
        None => Some(DataConn::Plain(stream)),
        Some(acceptor) => {
            match tokio::time::timeout(job.limits.connect_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => Some(DataConn::Tls(Box::new(tls))),
                _ => {
                    let _ = job.replies.send(Reply::new(425, "TLS handshake on the data connection failed."));
                    None
                }
            }
        }
    }
}

/// Accepts the first connection from `peer_ip`; others are closed at once (a passive port
/// is never handed to a third party).
async fn accept_from(listener: &TcpListener, peer_ip: IpAddr, limit: Duration) -> io::Result<TcpStream> {
    let peer_ip = crate::session::canonical(peer_ip);
    tokio::time::timeout(limit, async {
        for _ in 0..64 {
            let (s, from) = listener.accept().await?;
            if crate::session::canonical(from.ip()) == peer_ip {
                return Ok(s);
            }
            tracing::warn!(%from, expected = %peer_ip, "data connection from a foreign address refused");
        }
        Err(io::Error::other("too many foreign connections to the passive port"))
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no data connection in time"))?
}

/// Connects to the client for active mode, from the control port − 1 when it can be bound.
async fn connect_active(local: SocketAddr, to: SocketAddr, limit: Duration) -> io::Result<TcpStream> {
    let socket = || if to.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() };
    let attempt = async {
        let sock = socket()?;
        let _ = sock.set_reuseaddr(true);
        let src_port = local.port().saturating_sub(1);
        let src = SocketAddr::new(local.ip(), src_port);
        let bound = src_port > 0 && local.ip().is_ipv4() == to.is_ipv4() && sock.bind(src).is_ok();
        let result = if bound { sock.connect(to).await } else { Err(io::Error::other("no port-1")) };
        match result {
            Ok(s) => Ok(s),
            Err(_) => {
                let sock = socket()?;
                if local.ip().is_ipv4() == to.is_ipv4() {
                    let _ = sock.bind(SocketAddr::new(local.ip(), 0));
                }
                sock.connect(to).await
            }
        }
    };
    tokio::time::timeout(limit, attempt)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "active connect timed out"))?
}

async fn send_source(conn: &mut DataConn, source: Source, job: &Job) -> io::Result<u64> {
    match (conn, source) {
        (DataConn::Plain(s), Source::File(file, len)) if !job.ascii => {
            match sendfile_all(s, &file, len, job).await {
                // A file system without sendfile support: copy through user space instead.
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS))
                        && job.progress.load(Ordering::Relaxed) == 0 =>
                {
                    copy_out(s, Source::File(file, len), job).await
                }
                other => other,
            }
        }
        (DataConn::Plain(s), source) => copy_out(s, source, job).await,
        (DataConn::Tls(s), source) => copy_out(s.as_mut(), source, job).await,
    }
}

/// Files up to this size are first offered to the socket from the runtime thread.
const INLINE_SENDFILE: u64 = 64 << 10;

/// TYPE I RETR on a plain connection: the kernel copies file pages to the socket.
///
/// A small file (up to [`INLINE_SENDFILE`]) usually fits in the socket's send buffer, so it
/// first goes out in a non-blocking `sendfile` right here: no hand-off to the blocking pool
/// and back (two thread switches, duplicated descriptors and socket-option calls per
/// transfer). Whatever the socket did not take, and every larger file, is sent by a blocking
/// `sendfile` on the blocking pool (as vsftpd does: one system call moves as much as the
/// socket takes, sleeping in the kernel instead of a wake-up per buffer's worth). That thread
/// works on a duplicate of the socket; the stall timeout is the socket's send timeout, and an
/// abort (the future dropped) shuts the socket down, which ends the blocked call.
async fn sendfile_all(stream: &TcpStream, file: &std::fs::File, len: u64, job: &Job) -> io::Result<u64> {
    let mut done = 0u64;
    if len <= INLINE_SENDFILE {
        while done < len {
            // SAFETY: both descriptors stay open across the call (borrowed from live owners);
            // a null offset uses and advances the file's own position. The socket is
            // non-blocking, so this never sleeps on the peer.
            let n = unsafe {
                libc::sendfile(
                    stream.as_raw_fd(),
                    file.as_raw_fd(),
                    std::ptr::null_mut(),
                    (len - done) as usize,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => break,
                    _ => return Err(e),
                }
            }
            if n == 0 {
                // The file shrank under us: send what there was.
                return Ok(done);
            }
            done += n as u64;
            job.progress.fetch_add(n as u64, Ordering::Relaxed);
        }
        if done == len {
            return Ok(done);
        }
    }
    let sock = stream.as_fd().try_clone_to_owned()?;
    let file = file.try_clone()?;
    let sref = socket2::SockRef::from(&sock);
    sref.set_nonblocking(false)?;
    sref.set_write_timeout(Some(job.limits.stall_timeout))?;
    /// Shuts the socket down if the transfer is dropped mid-way (ABOR, session end).
    struct Abort(Option<OwnedFd>);
    impl Drop for Abort {
        fn drop(&mut self) {
            if let Some(fd) = self.0.take() {
                let _ = socket2::SockRef::from(&fd).shutdown(std::net::Shutdown::Both);
            }
        }
    }
    let mut guard = Abort(Some(sock.try_clone()?));
    let progress = job.progress.clone();
    let sent = tokio::task::spawn_blocking(move || -> io::Result<u64> {
        let mut sent = done;
        while sent < len {
            let want = (len - sent).min(1 << 30) as usize;
            // SAFETY: both descriptors are owned by this closure for the call; a null offset
            // uses and advances the file's own position.
            let n = unsafe { libc::sendfile(sock.as_raw_fd(), file.as_raw_fd(), std::ptr::null_mut(), want) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "data connection stalled"));
                    }
                    _ => return Err(e),
                }
            }
            if n == 0 {
                // The file shrank under us: send what there was.
                break;
            }
            sent += n as u64;
            progress.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(sent)
    })
    .await
    .map_err(io::Error::other);
    guard.0 = None;
    // Back to non-blocking for tokio's shutdown of the connection (or the fallback copy).
    socket2::SockRef::from(stream).set_nonblocking(true)?;
    sent?
}

/// Reads the source in chunks (on the blocking pool for files), converting LF to CRLF for
/// TYPE A, and writes them out.
async fn copy_out<W: AsyncWrite + Unpin>(w: &mut W, source: Source, job: &Job) -> io::Result<u64> {
    let mut sent = 0u64;
    match source {
        Source::Listing(body) => {
            timed(job, w.write_all(&body)).await?;
            sent += body.len() as u64;
            job.progress.fetch_add(body.len() as u64, Ordering::Relaxed);
        }
        Source::File(file, _) => {
            let mut file = Some(file);
            let mut buf = vec![0u8; CHUNK];
            let mut prev_cr = false;
            loop {
                let f = file.take().expect("file is returned after each read");
                let (f, b, n) = tokio::task::spawn_blocking(move || {
                    let mut f = f;
                    let mut b = buf;
                    let n = f.read(&mut b);
                    (f, b, n)
                })
                .await
                .map_err(io::Error::other)?;
                file = Some(f);
                buf = b;
                let n = n?;
                if n == 0 {
                    break;
                }
                if job.ascii {
                    let out = to_crlf(&buf[..n], &mut prev_cr);
                    timed(job, w.write_all(&out)).await?;
                } else {
                    timed(job, w.write_all(&buf[..n])).await?;
                }
                sent += n as u64;
                job.progress.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
    timed(job, w.flush()).await?;
    Ok(sent)
}

async fn timed<T>(job: &Job, f: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(job.limits.stall_timeout, f)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "data connection stalled"))?
}

/// LF → CRLF for TYPE A sends (an LF already after CR is left alone).
pub(crate) fn to_crlf(data: &[u8], prev_cr: &mut bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 32);
    for &b in data {
        if b == b'\n' && !*prev_cr {
            out.push(b'\r');
        }
        out.push(b);
        *prev_cr = b == b'\r';
    }
    out
}

/// CRLF → LF for TYPE A receives; a CR at the end of a chunk is held for the next.
pub(crate) fn from_crlf(data: &[u8], held_cr: &mut bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 1);
    for &b in data {
        if *held_cr {
            *held_cr = false;
            if b != b'\n' {
                out.push(b'\r');
            }
        }
        if b == b'\r' {
            *held_cr = true;
        } else {
            out.push(b);
        }
    }
    out
}

async fn store(mut job: Job, path: Vec<String>, mode: StoreMode) -> Done {
    let send = |job: &Job, code, text: &str| {
        let _ = job.replies.send(Reply::new(code, text));
    };
    let root = job.root.clone();
    let limits = job.limits;
    let opened = blocking(move || {
        if root.free_bytes()? < limits.min_free_space {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let path = match mode {
            StoreMode::Unique => root.unique_name(&path)?,
            _ => path,
        };
        let part_mode = match mode {
            StoreMode::At(n) => PartMode::At(n),
            StoreMode::Append => PartMode::Append,
            StoreMode::Unique => PartMode::At(0),
        };
        let (file, start) = root.open_part(&path, part_mode)?;
        Ok((file, start, path))
    })
    .await;
    let (file, start, path) = match opened {
        Ok(x) => x,
        Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
            send(&job, 452, "Insufficient storage space.");
            return Done::default();
        }
        Err(e) => {
            send(&job, 553, &format!("Could not create file: {}", fs_error(&e).text()));
            return Done::default();
        }
    };
    if start >= limits.max_upload {
        send(&job, 552, "Exceeded storage allocation (the upload size limit).");
        return Done::default();
    }
    let Some(stream) = open_data(&mut job).await else { return Done::default() };
    match mode {
        StoreMode::Unique => {
            let name = path.last().cloned().unwrap_or_default();
            send(&job, 150, &format!("FILE: {name}"));
        }
        _ => send(&job, 150, "Ok to send data."),
    }
    let Some(mut conn) = secure(&job, stream).await else { return Done::default() };
    let result = match &mut conn {
        DataConn::Plain(s) => receive(s, file, start, &job).await,
        DataConn::Tls(s) => receive(s.as_mut(), file, start, &job).await,
    };
    // Our close_notify answers the client's (ftplib's unwrap() waits for it).
    let _ = tokio::time::timeout(Duration::from_secs(5), shutdown(conn)).await;
    let (file, received) = match result {
        Ok(x) => x,
        Err(ReceiveError::TooBig(n)) => {
            send(&job, 552, "Exceeded storage allocation (the upload size limit); the partial file is kept.");
            return Done { sent: 0, received: n };
        }
        Err(ReceiveError::Full(n)) => {
            send(&job, 452, "Insufficient storage space; the partial file is kept.");
            return Done { sent: 0, received: n };
        }
        Err(ReceiveError::Io(e, n)) => {
            tracing::debug!("upload failed: {e}");
            send(&job, 426, "Connection closed; transfer aborted (REST + STOR or APPE resumes it).");
            return Done { sent: 0, received: n };
        }
    };
    let root = job.root.clone();
    let commit_path = path.clone();
    match blocking(move || root.commit_part(&commit_path, &file)).await {
        Ok(()) => {
            if mode == StoreMode::Unique {
                let shown = crate::session::path::display(&path);
                send(&job, 226, &format!("Transfer complete (unique file name: {shown})."));
            } else {
                send(&job, 226, "Transfer complete.");
            }
        }
        Err(e) => send(&job, 451, &format!("Could not save the file: {}", fs_error(&e).text())),
    }
    Done { sent: 0, received }
}

enum ReceiveError {
    TooBig(u64),
    Full(u64),
    Io(io::Error, u64),
}

/// Reads the data connection to its end into the partial file, within the size cap and the
/// free-space floor. Returns the file (for the commit) and the bytes received.
async fn receive<R: AsyncRead + Unpin>(
    r: &mut R,
    file: std::fs::File,
    start: u64,
    job: &Job,
) -> Result<(std::fs::File, u64), ReceiveError> {
    let mut file = Some(file);
    let mut buf = vec![0u8; CHUNK];
    let mut received = 0u64;
    let mut written = start;
    let mut held_cr = false;
    let mut since_check = 0u64;
    loop {
        let n = match tokio::time::timeout(job.limits.stall_timeout, r.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(ReceiveError::Io(e, received)),
            Err(_) => {
                return Err(ReceiveError::Io(io::Error::new(io::ErrorKind::TimedOut, "stalled"), received));
            }
        };
        let data: Vec<u8> = if n == 0 {
            if held_cr { vec![b'\r'] } else { break }
        } else if job.ascii {
            from_crlf(&buf[..n], &mut held_cr)
        } else {
            buf[..n].to_vec()
        };
        received += n as u64;
        job.progress.fetch_add(n as u64, Ordering::Relaxed);
        if written + data.len() as u64 > job.limits.max_upload {
            return Err(ReceiveError::TooBig(received));
        }
        since_check += data.len() as u64;
        let check_space = since_check >= 16 << 20;
        if check_space {
            since_check = 0;
        }
        let f = file.take().expect("file is returned after each write");
        let root = job.root.clone();
        let min_free = job.limits.min_free_space;
        let len = data.len() as u64;
        let (f, res) = tokio::task::spawn_blocking(move || {
            let mut f = f;
            if check_space && root.free_bytes().map(|free| free < min_free + len).unwrap_or(false) {
                return (f, Err(io::Error::from_raw_os_error(libc::ENOSPC)));
            }
            let r = f.write_all(&data);
            (f, r)
        })
        .await
        .map_err(|e| ReceiveError::Io(io::Error::other(e), received))?;
        file = Some(f);
        match res {
            Ok(()) => written += len,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return Err(ReceiveError::Full(received)),
            Err(e) => return Err(ReceiveError::Io(e, received)),
        }
        if n == 0 {
            break;
        }
    }
    Ok((file.expect("file present after the loop"), received))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_conversion_round_trips_across_chunk_boundaries() {
        let mut cr = false;
        assert_eq!(to_crlf(b"a\nb\r\nc\n", &mut cr), b"a\r\nb\r\nc\r\n");
        let mut cr = false;
        let mut out = from_crlf(b"a\r", &mut cr);
        assert!(cr);
        out.extend(from_crlf(b"\nb\rc", &mut cr));
        assert_eq!(out, b"a\nb\rc");
    }
}
