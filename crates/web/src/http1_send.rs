//! The HTTP/1.1 fast path's output ([`crate::http1_fast`]): the responses to one batch of
//! pipelined requests, queued as heads, in-memory bodies and file ranges, and written with as
//! few system calls as the socket allows: `writev` for bytes and, on plain TCP, `sendfile(2)`
//! for file ranges (the bytes before one go with `MSG_MORE`, so a head and its body's first
//! bytes leave in one segment). File bytes then go from the page cache to the socket without a
//! copy through user space; TLS connections (any other stream) keep the bodies in memory.
//!
//! Fairness: one connection writes at most [`TURN`] bytes before it lets the worker's other
//! connections run ([`tokio::task::yield_now`]), so a large response cannot hold the worker
//! until all of it is in the socket while other clients wait.
//!
//! A file range is opened when its response is queued and checked against the size and mtime
//! its head was made from ([`open_body`]); a file that shrinks after that ends the connection
//! (`sendfile` returns 0 before the promised Content-Length: nothing can be sent in its place).

use crate::conn_activity::InService;
use crate::site::FileBody;
use appnet_netkit::sendfile;
use bytes::{Buf, Bytes, BytesMut};
use std::any::Any;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice};
use std::path::Path;
use std::time::SystemTime;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bodies up to this size are copied next to their head (one buffer for many small responses).
const COPY_BODY: usize = 4 * 1024;
/// Most buffers in one `writev`.
const MAX_IOV: usize = 64;
/// Bytes one connection writes before the worker's other connections get their turn (and the
/// most one `sendfile` call asks for). Measured with 1 MB bodies: 64 KiB turns cost twice the
/// CPU per request of 512 KiB ones, 256 KiB turns about a third more; 1 MiB was no cheaper.
pub const TURN: usize = 512 * 1024;
/// File bodies from this size on are sent with `sendfile` (smaller ones are cheaper to copy
/// from memory than to open).
pub const SENDFILE_MIN: u64 = 64 * 1024;

/// An open file and the range of it still to send.
pub struct FileRange {
    file: File,
    offset: u64,
    len: u64,
}

impl FileRange {
    /// Bytes still to send.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing is left to send.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Opens `body`'s file for sending its range, if it is still the file the response's head was
/// made from.
pub fn open_body(body: &FileBody) -> Option<FileRange> {
    open_range(&body.path, body.file_len, body.mtime, body.offset, body.len)
}

/// Opens `path` for sending `len` bytes from `offset`, if it is still `file_len` bytes with
/// `mtime` (checked on the open file, so the bytes sent are those of the file checked).
pub fn open_range(path: &Path, file_len: u64, mtime: SystemTime, offset: u64, len: u64) -> Option<FileRange> {
    let file = File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    let same = meta.is_file() && meta.len() == file_len && meta.modified().ok() == Some(mtime);
    let fits = offset.checked_add(len).is_some_and(|end| end <= file_len);
    (same && fits).then_some(FileRange { file, offset, len })
}

/// The plain TCP stream under `io`, when it is one (`sendfile` needs the socket itself).
fn as_tcp<IO: 'static>(io: &IO) -> Option<&TcpStream> {
    (io as &dyn Any).downcast_ref::<TcpStream>()
}

/// Whether file ranges can be sent on `io` ([`Pending::push_file`]).
pub fn can_send_files<IO: 'static>(io: &IO) -> bool {
    as_tcp(io).is_some()
}

enum Chunk {
    Bytes(Bytes),
    File(FileRange),
}

/// Responses waiting to be written, and the requests they keep in service until then.
pub struct Pending {
    /// Heads (and small bodies) gathered since the last queued body.
    pub heads: BytesMut,
    out: VecDeque<Chunk>,
    /// Bytes queued in `out` (file ranges included).
    pub bytes: u64,
    /// The requests the queued responses answer.
    pub busy: Vec<InService>,
}

impl Default for Pending {
    fn default() -> Pending {
        Pending { heads: BytesMut::with_capacity(8 * 1024), out: VecDeque::new(), bytes: 0, busy: Vec::new() }
    }
}

impl Pending {
    /// Bytes waiting, gathered heads included.
    pub fn queued(&self) -> u64 {
        self.bytes + self.heads.len() as u64
    }

    /// Moves the bytes gathered in `heads` into the output queue.
    fn seal(&mut self) {
        if !self.heads.is_empty() {
            let b = self.heads.split().freeze();
            self.bytes += b.len() as u64;
            self.out.push_back(Chunk::Bytes(b));
        }
    }

    /// Queues body bytes (small ones are copied after the head).
    pub fn push(&mut self, data: Bytes) {
        if data.len() <= COPY_BODY {
            self.heads.extend_from_slice(&data);
        } else {
            self.seal();
            self.bytes += data.len() as u64;
            self.out.push_back(Chunk::Bytes(data));
        }
    }

    /// Queues a file range; only for a stream that [`can_send_files`].
    pub fn push_file(&mut self, range: FileRange) {
        if range.len == 0 {
            return;
        }
        self.seal();
        self.bytes += range.len;
        self.out.push_back(Chunk::File(range));
    }

    /// Writes everything queued (see the module docs), then lets the requests leave service.
    pub async fn flush<IO: AsyncWrite + Unpin + 'static>(&mut self, io: &mut IO) -> io::Result<()> {
        self.seal();
        let mut turn = 0;
        while let Some(front) = self.out.front_mut() {
            let n = match front {
                Chunk::File(range) => {
                    let Some(tcp) = as_tcp(io) else {
                        return Err(io::Error::new(io::ErrorKind::Unsupported, "file ranges need plain TCP"));
                    };
                    let max = range.len.min(TURN as u64) as usize;
                    let n = sendfile::send_file(tcp, &range.file, range.offset, max).await?;
                    if n == 0 {
                        tracing::warn!("a file shrank while it was sent; closing the connection");
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "file shrank while sending",
                        ));
                    }
                    range.offset += n as u64;
                    range.len -= n as u64;
                    if range.len == 0 {
                        self.out.pop_front();
                    }
                    n
                }
                Chunk::Bytes(_) => {
                    let n = self.write_bytes(io).await?;
                    self.advance(n);
                    n
                }
            };
            self.bytes = self.bytes.saturating_sub(n as u64);
            turn += n;
            if turn >= TURN && !self.out.is_empty() {
                turn = 0;
                tokio::task::yield_now().await;
            }
        }
        self.bytes = 0;
        self.busy.clear();
        Ok(())
    }

    /// One vectored write of the byte chunks at the front (with `MSG_MORE` when a file range
    /// follows them); returns how many bytes went.
    async fn write_bytes<IO: AsyncWrite + Unpin + 'static>(&self, io: &mut IO) -> io::Result<usize> {
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(self.out.len().min(MAX_IOV));
        let mut file_next = false;
        for c in self.out.iter().take(MAX_IOV) {
            match c {
                Chunk::Bytes(b) => slices.push(IoSlice::new(b)),
                Chunk::File(_) => {
                    file_next = true;
                    break;
                }
            }
        }
        let n = match as_tcp(io) {
            Some(tcp) if file_next => sendfile::send_more(tcp, &slices).await?,
            _ => io.write_vectored(&slices).await?,
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        Ok(n)
    }

    /// Drops `n` written bytes from the byte chunks at the front.
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(Chunk::Bytes(front)) = self.out.front_mut() else { break };
            if front.len() <= n {
                n -= front.len();
                self.out.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }

    /// [`Pending::flush`] in the middle of a streamed body: the request stays in service.
    pub async fn flush_keep_busy<IO: AsyncWrite + Unpin + 'static>(&mut self, io: &mut IO) -> io::Result<()> {
        let busy = std::mem::take(&mut self.busy);
        let r = self.flush(io).await;
        self.busy = busy;
        r
    }
}
