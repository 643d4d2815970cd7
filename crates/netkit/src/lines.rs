//! Bounded line reading for line-based protocols (upper, SMTP, FTP, POP3, ...): a line longer
//! than the limit is reported, never buffered, so no client can grow our memory.

use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt};

/// What one bounded read produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line (terminator stripped: "\n" or "\r\n") is in the buffer.
    Complete,
    /// The stream ended; the buffer holds any bytes received after the last newline.
    Eof,
    /// The line exceeded the limit; the buffer was cleared and the rest of the line is unread.
    TooLong,
}

/// Reads one line into `buf` (cleared first), holding at most `max` bytes of it.
pub async fn read_line_bounded<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    buf.clear();
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(Line::Eof);
        }
        let (chunk, found) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], Some(i)),
            None => (available, None),
        };
        if buf.len() + chunk.len() > max {
            buf.clear();
            return Ok(Line::TooLong);
        }
        buf.extend_from_slice(chunk);
        match found {
            Some(i) => {
                reader.consume(i + 1);
                if buf.last() == Some(&b'\r') {
                    buf.pop();
                }
                return Ok(Line::Complete);
            }
            None => {
                let n = available.len();
                reader.consume(n);
            }
        }
    }
}

/// A lingering close: after answering a protocol error, read and discard what the client is
/// still sending (up to `max_bytes`, for at most `max_time`) so that closing the socket with
/// unread input does not reset the connection and destroy the error reply in flight.
pub async fn discard_input<R: AsyncRead + Unpin>(reader: &mut R, max_bytes: u64, max_time: Duration) {
    let mut sink = [0u8; 8192];
    let mut seen = 0u64;
    let _ = tokio::time::timeout(max_time, async {
        while seen < max_bytes {
            match reader.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen += n as u64,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    #[tokio::test]
    async fn reads_lines_and_strips_terminators() {
        let data: &[u8] = b"one\r\ntwo\nrest";
        let mut r = BufReader::with_capacity(2, data);
        let mut buf = Vec::new();
        assert_eq!(read_line_bounded(&mut r, &mut buf, 10).await.unwrap(), Line::Complete);
        assert_eq!(buf, b"one");
        assert_eq!(read_line_bounded(&mut r, &mut buf, 10).await.unwrap(), Line::Complete);
        assert_eq!(buf, b"two");
        assert_eq!(read_line_bounded(&mut r, &mut buf, 10).await.unwrap(), Line::Eof);
        assert_eq!(buf, b"rest");
    }

    #[tokio::test]
    async fn stops_at_the_limit_without_buffering_more() {
        let data = vec![b'x'; 100_000];
        let mut r = BufReader::with_capacity(4096, &data[..]);
        let mut buf = Vec::new();
        assert_eq!(read_line_bounded(&mut r, &mut buf, 1000).await.unwrap(), Line::TooLong);
        assert!(buf.capacity() <= 8192, "buffer grew to {}", buf.capacity());
    }

    #[tokio::test]
    async fn a_line_exactly_at_the_limit_is_accepted() {
        let data: &[u8] = b"abcde\n";
        let mut r = BufReader::new(data);
        let mut buf = Vec::new();
        assert_eq!(read_line_bounded(&mut r, &mut buf, 5).await.unwrap(), Line::Complete);
        assert_eq!(buf, b"abcde");
    }
}
