//! Large file bodies on the HTTP/1.1 fast path over plain TCP (sent with `sendfile`): whole
//! files of 1 MB and several MB, cached answers, ranges and HEAD arrive byte for byte, also
//! pipelined; a file truncated while it is sent ends the connection short of its Content-Length
//! (nothing padded, no hang), and a file replaced while it is sent is sent whole as it was.

mod common;
use common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MB: usize = 1024 * 1024;

/// Bytes that differ from one offset to the next (a shifted or padded body cannot match).
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8).collect()
}

/// One response read off a keep-alive connection.
struct Answer {
    head: String,
    body: Vec<u8>,
}

/// Reads responses from one connection, keeping what was read past the last one.
struct Reader {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Reader {
    async fn fill(&mut self) -> usize {
        let mut chunk = vec![0u8; 256 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(20), self.s.read(&mut chunk))
            .await
            .expect("the server went silent")
            .expect("read");
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    /// The next response; `head_only` for an answer to HEAD.
    async fn next(&mut self, head_only: bool) -> Answer {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(self.fill().await > 0, "closed before a head");
        };
        let head = String::from_utf8(self.buf.drain(..end).collect()).unwrap();
        let len: usize = header(&head, "content-length").unwrap().parse().unwrap();
        let want = if head_only { 0 } else { len };
        while self.buf.len() < want {
            assert!(self.fill().await > 0, "closed after {} of {want} body bytes", self.buf.len());
        }
        Answer { head, body: self.buf.drain(..want).collect() }
    }
}

async fn connect(addr: std::net::SocketAddr) -> Reader {
    Reader { s: TcpStream::connect(addr).await.unwrap(), buf: Vec::new() }
}

#[tokio::test]
async fn large_files_ranges_and_heads_arrive_intact() {
    let site = TempDir::new("sendfile-intact");
    let one = pattern(MB, 1);
    let nine = pattern(9 * MB + 12_345, 2);
    std::fs::write(site.path().join("1m.bin"), &one).unwrap();
    std::fs::write(site.path().join("9m.bin"), &nine).unwrap();
    std::fs::write(site.path().join("small.txt"), "small\n").unwrap();
    let srv = serve(config(site.path())).await;
    let mut c = connect(srv.addr()).await;

    // Whole files, several times on one connection (the 1 MB answer is cached after the first).
    for _ in 0..3 {
        for (name, data) in [("1m.bin", &one), ("9m.bin", &nine)] {
            c.s.write_all(format!("GET /{name} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
            let a = c.next(false).await;
            assert!(a.head.starts_with("HTTP/1.1 200 OK\r\n"), "{}", a.head);
            assert_eq!(header(&a.head, "content-length"), Some(data.len().to_string().as_str()));
            assert!(a.body == *data, "{name}: the body differs");
        }
    }

    // Pipelined: two large answers around a small one and a HEAD, in order, from one write.
    c.s.write_all(
        b"GET /9m.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n\
          HEAD /1m.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /1m.bin HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    assert!(c.next(false).await.body == nine);
    assert_eq!(c.next(false).await.body, b"small\n");
    let head = c.next(true).await;
    assert!(head.head.starts_with("HTTP/1.1 200 OK\r\n"));
    assert_eq!(header(&head.head, "content-length"), Some("1048576"));
    assert!(c.next(false).await.body == one);

    // Ranges: one range of each file (from the middle, a suffix, open-ended), then multipart.
    let ranges: [(&str, &Vec<u8>, &str, usize, usize); 4] = [
        ("1m.bin", &one, "bytes=100000-899999", 100_000, 900_000),
        ("9m.bin", &nine, "bytes=3000000-", 3_000_000, nine.len()),
        ("9m.bin", &nine, "bytes=-70000", nine.len() - 70_000, nine.len()),
        ("9m.bin", &nine, "bytes=1-1", 1, 2),
    ];
    for (name, data, range, from, to) in ranges {
        c.s.write_all(format!("GET /{name} HTTP/1.1\r\nHost: x\r\nRange: {range}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let a = c.next(false).await;
        assert!(a.head.starts_with("HTTP/1.1 206 Partial Content\r\n"), "{}", a.head);
        let want = format!("bytes {from}-{}/{}", to - 1, data.len());
        assert_eq!(header(&a.head, "content-range"), Some(want.as_str()));
        assert!(a.body == data[from..to], "{name} {range}: the body differs");
    }
    c.s.write_all(b"GET /9m.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=0-99999,8000000-8099999\r\n\r\n")
        .await
        .unwrap();
    let a = c.next(false).await;
    assert!(a.head.starts_with("HTTP/1.1 206 Partial Content\r\n"), "{}", a.head);
    let text = String::from_utf8_lossy(&a.body);
    assert!(
        text.contains("Content-Range: bytes 0-99999/")
            && text.contains("Content-Range: bytes 8000000-8099999/")
    );
    let first = a.body.windows(100_000).position(|w| w == &nine[..100_000]);
    let second = a.body.windows(100_000).position(|w| w == &nine[8_000_000..8_100_000]);
    assert!(first.is_some() && second.is_some() && first < second, "multipart parts differ");

    // The connection is still in step: one more whole file, then the server closes on request.
    c.s.write_all(b"GET /1m.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    assert!(c.next(false).await.body == one);
    assert_eq!(c.fill().await, 0, "closed after Connection: close");
    srv.stop().await.unwrap();
}

/// Sends a GET for `name` (closing after it) on a client whose receive buffer is small (so the
/// server cannot finish at once), reads the head and `first` body bytes, lets `change` run,
/// then reads until the server closes; returns the head and the body bytes that arrived.
async fn change_while_sent(
    site: &std::path::Path,
    addr: std::net::SocketAddr,
    name: &str,
    first: usize,
    change: impl FnOnce(),
) -> (String, Vec<u8>) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(64 * 1024).unwrap();
    let s = sock.connect(addr).await.unwrap();
    let mut c = Reader { s, buf: Vec::new() };
    c.s.write_all(format!("GET /{name} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let end = loop {
        if let Some(i) = c.buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        assert!(c.fill().await > 0);
    };
    while c.buf.len() < end + first {
        assert!(c.fill().await > 0);
    }
    assert!(site.join(name).exists());
    change();
    // Everything that still comes, until the server closes (bounded by fill's timeout).
    while c.fill().await > 0 {}
    let head = String::from_utf8(c.buf[..end].to_vec()).unwrap();
    (head, c.buf[end..].to_vec())
}

#[tokio::test]
async fn a_file_truncated_while_sent_ends_the_connection_without_padding() {
    let site = TempDir::new("sendfile-truncate");
    let data = pattern(48 * MB, 3);
    let path = site.path().join("big.bin");
    std::fs::write(&path, &data).unwrap();
    let srv = serve(config(site.path())).await;
    let (head, body) = change_while_sent(site.path(), srv.addr(), "big.bin", 256 * 1024, || {
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(MB as u64).unwrap();
    })
    .await;
    assert_eq!(header(&head, "content-length"), Some((48 * MB).to_string().as_str()));
    assert!(body.len() < data.len(), "the whole length arrived from a truncated file");
    // What the file still holds arrived as it is. (Bytes past the cut that were already queued
    // on the socket are the kernel's: with sendfile they are page-cache pages, which the
    // truncation may zero in place, as for any zero-copy sender.)
    let kept = body.len().min(MB);
    assert!(body[..kept] == data[..kept], "the file's start arrived changed");
    srv.stop().await.unwrap();
}

#[tokio::test]
async fn a_file_replaced_while_sent_is_sent_whole_as_it_was() {
    let site = TempDir::new("sendfile-replace");
    let data = pattern(24 * MB, 4);
    let path = site.path().join("big.bin");
    std::fs::write(&path, &data).unwrap();
    std::fs::write(site.path().join("new.tmp"), pattern(MB, 5)).unwrap();
    let srv = serve(config(site.path())).await;
    let (head, body) = change_while_sent(site.path(), srv.addr(), "big.bin", 256 * 1024, || {
        std::fs::rename(site.path().join("new.tmp"), &path).unwrap();
    })
    .await;
    assert_eq!(header(&head, "content-length"), Some((24 * MB).to_string().as_str()));
    assert!(body == data, "the old file's bytes, all of them ({} of {})", body.len(), data.len());
    srv.stop().await.unwrap();
}
