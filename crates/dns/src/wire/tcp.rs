//! DNS over TCP framing (RFC 1035 §4.2.2, RFC 7766 §8): each message is preceded by its length
//! as two bytes in network order. The one place that frames DNS messages on a stream, shared by
//! the authoritative server and client, the CDN's DNS server and the resolver.
//!
//! [`frame`] is pure; [`read_message`] and [`write_message`] are thin async helpers over any
//! tokio reader or writer.

use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest message the two-byte prefix can describe.
pub const MAX_MESSAGE: usize = u16::MAX as usize;

/// `msg` with its two-byte length prefix, ready for one write. Fails for a message longer than
/// [`MAX_MESSAGE`] (it cannot be framed).
pub fn frame(msg: &[u8]) -> io::Result<Vec<u8>> {
    let len = u16::try_from(msg.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "DNS message longer than 65535 bytes"))?;
    let mut out = Vec::with_capacity(msg.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    Ok(out)
}

/// Writes `msg` with its length prefix in a single write (so a message never leaves in two
/// segments because of the prefix, RFC 7766 §8).
pub async fn write_message<W: AsyncWrite + Unpin + ?Sized>(w: &mut W, msg: &[u8]) -> io::Result<()> {
    w.write_all(&frame(msg)?).await
}

/// Reads one length-prefixed message. `Ok(None)` when the peer closed the stream cleanly
/// between messages; an error when it closed mid-message or announced more than `max` bytes
/// (the caller's limit; nothing past the prefix is read then).
pub async fn read_message<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    max: usize,
) -> io::Result<Option<Vec<u8>>> {
    let mut prefix = [0u8; 2];
    // One read for the whole prefix in the usual case; the second byte may come later.
    match r.read(&mut prefix).await? {
        0 => return Ok(None),
        1 => {
            r.read_exact(&mut prefix[1..]).await?;
        }
        _ => {}
    }
    let len = u16::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("DNS message of {len} bytes over the limit of {max}"),
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    Ok(Some(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_prefixes_the_length() {
        assert_eq!(frame(b"abc").unwrap(), vec![0, 3, b'a', b'b', b'c']);
        assert_eq!(frame(&[]).unwrap(), vec![0, 0]);
        assert_eq!(frame(&vec![7u8; 300]).unwrap()[..2], [1, 44]);
        assert!(frame(&vec![0u8; MAX_MESSAGE + 1]).is_err());
        assert_eq!(frame(&vec![0u8; MAX_MESSAGE]).unwrap().len(), MAX_MESSAGE + 2);
    }

    #[tokio::test]
    async fn read_back_what_was_written() {
        let mut wire = Vec::new();
        write_message(&mut wire, b"hello").await.unwrap();
        write_message(&mut wire, b"").await.unwrap();
        write_message(&mut wire, &[9u8; 1000]).await.unwrap();
        let mut r = &wire[..];
        assert_eq!(read_message(&mut r, 65535).await.unwrap().unwrap(), b"hello");
        assert_eq!(read_message(&mut r, 65535).await.unwrap().unwrap(), b"");
        assert_eq!(read_message(&mut r, 65535).await.unwrap().unwrap(), vec![9u8; 1000]);
        assert_eq!(read_message(&mut r, 65535).await.unwrap(), None, "clean end of stream");
    }

    #[tokio::test]
    async fn a_prefix_split_across_reads_is_joined() {
        // The prefix arrives one byte at a time, then the message.
        let mut r = tokio_test_reader(&[&[0], &[3], b"a", b"bc"]);
        assert_eq!(read_message(&mut r, 100).await.unwrap().unwrap(), b"abc");
        assert_eq!(read_message(&mut r, 100).await.unwrap(), None);
    }

    /// A reader that hands out `chunks` one read at a time.
    fn tokio_test_reader(chunks: &[&[u8]]) -> impl AsyncRead + Unpin {
        let (mut tx, rx) = tokio::io::duplex(64);
        let chunks: Vec<Vec<u8>> = chunks.iter().map(|c| c.to_vec()).collect();
        tokio::spawn(async move {
            for c in chunks {
                tx.write_all(&c).await.unwrap();
                tx.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        rx
    }

    #[tokio::test]
    async fn truncated_and_oversized_messages_are_errors() {
        // Closed inside the prefix.
        let mut r = &[0u8][..];
        assert_eq!(read_message(&mut r, 100).await.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        // Closed inside the message.
        let mut r = &[0u8, 5, 1, 2][..];
        assert_eq!(read_message(&mut r, 100).await.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        // Announces more than the limit.
        let mut r = &[0x01u8, 0x00, 1, 2][..];
        assert_eq!(read_message(&mut r, 255).await.unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
