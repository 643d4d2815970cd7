//! The uppercase client: sends one line (TCP) or datagram (UDP) and returns the answer.

use appnet_netkit::lines::{Line, read_line_bounded};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UdpSocket};

/// Why a request got no answer.
#[derive(Debug, Error)]
pub enum AskError {
    /// Could not connect or send.
    #[error("cannot reach {addr}: {source} (is `appnet upper serve` running there?)")]
    Unreachable { addr: SocketAddr, source: io::Error },
    /// No answer within the timeout (UDP retries included).
    #[error("no answer from {0} within the timeout")]
    Timeout(SocketAddr),
    /// The connection broke or closed before a whole answer arrived.
    #[error("connection to {addr} failed: {source}")]
    Io { addr: SocketAddr, source: io::Error },
    /// The server answered with an error line.
    #[error("server said: {0}")]
    Server(String),
    /// The text contains a newline, which would be two requests.
    #[error("the text must be one line (no newline characters)")]
    Multiline,
}

/// Longest answer the client accepts.
const MAX_ANSWER: usize = 1 << 20;

/// Asks over TCP: sends `text` and a newline, returns the answered line.
pub async fn ask_tcp(server: SocketAddr, text: &[u8], timeout: Duration) -> Result<Vec<u8>, AskError> {
    if text.contains(&b'\n') {
        return Err(AskError::Multiline);
    }
    let exchange = async {
        let mut stream = TcpStream::connect(server)
            .await
            .map_err(|source| AskError::Unreachable { addr: server, source })?;
        let mut request = Vec::with_capacity(text.len() + 1);
        request.extend_from_slice(text);
        request.push(b'\n');
        let io_err = |source| AskError::Io { addr: server, source };
        stream.write_all(&request).await.map_err(io_err)?;
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        match read_line_bounded(&mut reader, &mut line, MAX_ANSWER).await.map_err(io_err)? {
            Line::Complete | Line::Eof if line.starts_with(b"ERR ") => {
                Err(AskError::Server(String::from_utf8_lossy(&line[4..]).into_owned()))
            }
            Line::Complete => Ok(line),
            Line::Eof => Err(io_err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before answering"))),
            Line::TooLong => Err(io_err(io::Error::new(io::ErrorKind::InvalidData, "answer too long"))),
        }
    };
    tokio::time::timeout(timeout, exchange).await.unwrap_or(Err(AskError::Timeout(server)))
}

/// Asks over UDP: one datagram, retried up to `tries` times (UDP may lose either datagram),
/// each try waiting `timeout / tries`.
pub async fn ask_udp(
    server: SocketAddr,
    text: &[u8],
    timeout: Duration,
    tries: u32,
) -> Result<Vec<u8>, AskError> {
    let local: SocketAddr =
        if server.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
    let unreachable = |source| AskError::Unreachable { addr: server, source };
    let socket = UdpSocket::bind(local).await.map_err(unreachable)?;
    socket.connect(server).await.map_err(unreachable)?;
    let tries = tries.max(1);
    let per_try = timeout / tries;
    let mut buf = vec![0u8; 65_536];
    for _ in 0..tries {
        socket.send(text).await.map_err(unreachable)?;
        match tokio::time::timeout(per_try, socket.recv(&mut buf)).await {
            Ok(Ok(n)) if buf[..n].starts_with(b"ERR ") => {
                return Err(AskError::Server(String::from_utf8_lossy(&buf[4..n]).into_owned()));
            }
            Ok(Ok(n)) => return Ok(buf[..n].to_vec()),
            Ok(Err(source)) => return Err(AskError::Io { addr: server, source }),
            Err(_) => continue,
        }
    }
    Err(AskError::Timeout(server))
}
