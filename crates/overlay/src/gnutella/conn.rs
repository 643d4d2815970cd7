//! The handshake on a socket: both sides of the three-way exchange with deadlines and the
//! block limits of [`handshake`](super::handshake). Shared by the node driver and the CLI's
//! short-lived searching servent.

use super::handshake::{self, Block, Capabilities, HandshakeError, StartLine};
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a handshake did not produce a connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The socket failed or closed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The other side sent something that is not a handshake block (or too much of one).
    #[error("{0}")]
    Handshake(#[from] HandshakeError),
    /// The other side refused (`503 Full`, ...); its `X-Try-Ultrapeers` list, if any.
    #[error("refused: {code} {reason}")]
    Refused { code: u16, reason: String, try_instead: Vec<std::net::SocketAddr> },
    /// The deadline passed.
    #[error("handshake timed out")]
    TimedOut,
}

/// Reads one block, keeping what follows it in `buf`.
async fn read_block<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> Result<Block, ConnError> {
    loop {
        if let Some((block, used)) = handshake::parse_block(buf)? {
            buf.drain(..used);
            return Ok(block);
        }
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed during the handshake").into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn refused(block: &Block) -> ConnError {
    let (code, reason) = match &block.start {
        StartLine::Response { code, reason } => (*code, reason.clone()),
        StartLine::Connect(_) => (0, "unexpected CONNECT".into()),
    };
    let try_instead = block
        .header("X-Try-Ultrapeers")
        .or(block.header("X-Try"))
        .map(|v| v.split(',').filter_map(|a| a.trim().parse().ok()).take(10).collect())
        .unwrap_or_default();
    ConnError::Refused { code, reason, try_instead }
}

/// The initiator's side: CONNECT, read the answer, send the final 200. Returns the other
/// side's capabilities and any descriptor bytes that already followed.
pub async fn initiate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    ours: &Capabilities,
    timeout: Duration,
) -> Result<(Capabilities, Vec<u8>), ConnError> {
    tokio::time::timeout(timeout, async {
        stream.write_all(&handshake::connect(ours).encode()).await?;
        let mut buf = Vec::new();
        let answer = read_block(stream, &mut buf).await?;
        if answer.code() != Some(200) {
            return Err(refused(&answer));
        }
        stream.write_all(&handshake::ok_final().encode()).await?;
        Ok((answer.capabilities(), buf))
    })
    .await
    .unwrap_or(Err(ConnError::TimedOut))
}

/// The acceptor's side, after the first bytes were sniffed into `buf`: read CONNECT, let
/// `decide` admit or refuse (reason, addresses to try), answer, read the final 200.
pub async fn accept<S, F>(
    stream: &mut S,
    mut buf: Vec<u8>,
    ours: &Capabilities,
    timeout: Duration,
    decide: F,
) -> Result<(Capabilities, Vec<u8>), ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&Capabilities) -> Result<(), (String, Vec<std::net::SocketAddr>)>,
{
    tokio::time::timeout(timeout, async {
        let hello = read_block(stream, &mut buf).await?;
        if !matches!(hello.start, StartLine::Connect(_)) {
            return Err(HandshakeError::Malformed("expected GNUTELLA CONNECT").into());
        }
        let theirs = hello.capabilities();
        if let Err((reason, try_instead)) = decide(&theirs) {
            stream.write_all(&handshake::refuse(ours, &reason, &try_instead).encode()).await?;
            return Err(ConnError::Refused { code: 503, reason, try_instead });
        }
        stream.write_all(&handshake::ok(ours).encode()).await?;
        let last = read_block(stream, &mut buf).await?;
        if last.code() != Some(200) {
            return Err(refused(&last));
        }
        Ok((theirs, buf))
    })
    .await
    .unwrap_or(Err(ConnError::TimedOut))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(ultrapeer: bool) -> Capabilities {
        Capabilities {
            user_agent: "appnet".into(),
            ultrapeer,
            query_routing: true,
            pong_caching: true,
            listen: Some("127.0.0.1:6346".parse().unwrap()),
        }
    }

    #[tokio::test]
    async fn both_sides_agree_and_a_full_node_refuses() {
        let t = Duration::from_secs(5);
        let (leaf, up) = (caps(false), caps(true));
        let (mut a, mut b) = tokio::io::duplex(8192);
        let (left, right) = tokio::join!(
            initiate(&mut a, &leaf, t),
            accept(&mut b, Vec::new(), &up, t, |c| if c.ultrapeer {
                Err(("x".into(), vec![]))
            } else {
                Ok(())
            })
        );
        assert!(left.unwrap().0.ultrapeer);
        assert!(!right.unwrap().0.ultrapeer);

        let (mut a, mut b) = tokio::io::duplex(8192);
        let try_list = vec!["127.0.0.2:6346".parse().unwrap()];
        let (left, right) = tokio::join!(
            initiate(&mut a, &leaf, t),
            accept(&mut b, Vec::new(), &up, t, |_| Err(("Full".into(), try_list.clone())))
        );
        match left {
            Err(ConnError::Refused { code: 503, reason, try_instead }) => {
                assert_eq!((reason.as_str(), try_instead), ("Full", try_list));
            }
            other => panic!("{other:?}"),
        }
        assert!(right.is_err());
    }

    #[tokio::test]
    async fn an_oversized_handshake_is_refused() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let junk = format!("GNUTELLA CONNECT/0.6\r\nX: {}\r\n", "y".repeat(10_000));
        let writer = tokio::spawn(async move {
            let _ = a.write_all(junk.as_bytes()).await;
            a
        });
        let got = accept(&mut b, Vec::new(), &caps(true), Duration::from_secs(5), |_| Ok(())).await;
        assert!(matches!(got, Err(ConnError::Handshake(HandshakeError::TooLarge))), "{got:?}");
        drop(writer);
    }
}
