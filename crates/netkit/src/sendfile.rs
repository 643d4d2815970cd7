//! File bytes to a TCP socket without passing through user space: [`send_file`] is one
//! `sendfile(2)` from an open file at an offset, driven by tokio's write readiness (the socket
//! is non-blocking: it sends what the socket takes now, and waits for writability only when it
//! takes nothing), and [`send_more`] writes a response head with `MSG_MORE`, so the head and
//! the first file bytes after it leave in one segment even with `TCP_NODELAY`.
//!
//! Both take the readiness through [`TcpStream::async_io`], so they count against tokio's
//! cooperative budget like the stream's own reads and writes. Outside Linux, [`send_file`]
//! reads the range into a buffer and writes it, and [`send_more`] is a plain vectored write.

use std::fs::File;
use std::io::{self, IoSlice};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Most bytes one [`send_file`] call asks of the kernel (the kernel itself stops at what the
/// socket's send buffer takes).
pub const MAX_CALL: usize = 1 << 30;

/// Sends up to `max` bytes of `file` from `offset` to `stream`, waiting until the socket takes
/// some; returns how many it sent. `Ok(0)` with `max > 0` means `file` has no byte at `offset`
/// (it ended there: a file truncated since its length was read).
pub async fn send_file(stream: &TcpStream, file: &File, offset: u64, max: usize) -> io::Result<usize> {
    if max == 0 {
        return Ok(0);
    }
    let max = max.min(MAX_CALL);
    stream.async_io(Interest::WRITABLE, || sys::send_file(stream, file, offset, max)).await
}

/// Writes `bufs` to `stream` with `MSG_MORE` (more data follows at once: the kernel holds a
/// partial segment back for it), waiting until the socket takes some; returns how many bytes
/// it wrote.
pub async fn send_more(stream: &TcpStream, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    if bufs.iter().all(|b| b.is_empty()) {
        return Ok(0);
    }
    stream.async_io(Interest::WRITABLE, || sys::send_more(stream, bufs)).await
}

#[cfg(target_os = "linux")]
mod sys {
    use super::*;
    use std::os::fd::AsRawFd;

    pub(super) fn send_file(stream: &TcpStream, file: &File, offset: u64, max: usize) -> io::Result<usize> {
        let mut off = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset too large"))?;
        // SAFETY: both descriptors are open for the call's duration (borrowed), `off` is a
        // valid off_t the kernel reads and updates, and nothing else is passed by pointer.
        let n = unsafe { libc::sendfile(stream.as_raw_fd(), file.as_raw_fd(), &mut off, max) };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
    }

    pub(super) fn send_more(stream: &TcpStream, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let iov = &bufs[..bufs.len().min(1024)];
        // SAFETY: a zeroed msghdr is a valid "no name, no control data" header.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        // IoSlice is ABI-compatible with iovec on unix (std guarantees it); the kernel only
        // reads through these pointers.
        msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = iov.len() as _;
        // SAFETY: `msg` points at `iov`, which outlives the call; the socket is open.
        let n = unsafe { libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_MORE | libc::MSG_NOSIGNAL) };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    use super::*;
    use std::os::unix::fs::FileExt;

    pub(super) fn send_file(stream: &TcpStream, file: &File, offset: u64, max: usize) -> io::Result<usize> {
        // Only what the socket is likely to take at once, so the bytes read are not lost.
        let mut buf = vec![0u8; max.min(64 * 1024)];
        let got = file.read_at(&mut buf, offset)?;
        if got == 0 {
            return Ok(0);
        }
        let sock = socket2::SockRef::from(stream);
        let mut sent = 0;
        while sent < got {
            match sock.send(&buf[sent..got]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && sent > 0 => {
                    // The rest waits for writability; the caller resumes at offset + sent.
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(sent)
    }

    pub(super) fn send_more(stream: &TcpStream, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        socket2::SockRef::from(stream).send_vectored(bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::TempDir;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (s, c)
    }

    #[tokio::test]
    async fn a_file_range_arrives_intact_after_a_head_and_the_end_of_the_file_reads_as_zero() {
        let dir = TempDir::new("netkit-sendfile");
        let path = dir.path().join("data");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        let (server, mut client) = pair().await;
        let (from, len) = (12_345u64, 2_500_000usize);
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; 5 + len];
            client.read_exact(&mut got).await.unwrap();
            got
        });
        let mut sent = 0;
        while sent < 5 {
            sent += send_more(&server, &[IoSlice::new(&b"head:"[sent..])]).await.unwrap();
        }
        let mut off = from;
        let mut calls = 0;
        while off < from + len as u64 {
            let n = send_file(&server, &file, off, (from + len as u64 - off) as usize).await.unwrap();
            assert!(n > 0);
            off += n as u64;
            calls += 1;
            assert!(calls < 100_000, "no progress");
        }
        let got = reader.await.unwrap();
        assert_eq!(&got[..5], b"head:");
        assert!(got[5..] == data[from as usize..from as usize + len], "the bytes differ");
        assert_eq!(send_file(&server, &file, data.len() as u64, 10).await.unwrap(), 0);
        assert_eq!(send_file(&server, &file, 0, 0).await.unwrap(), 0);
    }
}
