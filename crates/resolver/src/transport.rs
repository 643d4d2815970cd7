//! Sending one query upstream and getting its answer, with the anti-spoofing rules of the wire:
//! a fresh socket per query (so a random source port chosen by the kernel), connected to the
//! server asked (so datagrams from anyone else are dropped by the kernel), and only a reply
//! with the query's ID accepted. TCP for truncated answers, with length framing.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// One query/answer exchange with an upstream server. A trait so tests can stand in for the
/// network (and count or corrupt what goes by).
pub trait Transport: Send + Sync + 'static {
    /// Sends `query` to `server` over UDP (or TCP when `tcp`) and returns the reply bytes; a
    /// reply that does not carry the query's ID is ignored; `timeout` bounds the whole exchange.
    fn exchange(
        &self,
        server: SocketAddr,
        query: &[u8],
        tcp: bool,
        timeout: Duration,
    ) -> impl Future<Output = io::Result<Vec<u8>>> + Send;
}

/// The real network.
#[derive(Debug, Clone, Copy, Default)]
pub struct NetTransport;

/// Largest reply accepted over UDP.
const MAX_UDP: usize = 65_535;

impl Transport for NetTransport {
    async fn exchange(
        &self,
        server: SocketAddr,
        query: &[u8],
        tcp: bool,
        timeout: Duration,
    ) -> io::Result<Vec<u8>> {
        let work =
            async { if tcp { exchange_tcp(server, query).await } else { exchange_udp(server, query).await } };
        tokio::time::timeout(timeout, work)
            .await
            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time")))
    }
}

async fn exchange_udp(server: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    let local: SocketAddr =
        if server.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; MAX_UDP];
    loop {
        let n = socket.recv(&mut buf).await?;
        // A datagram with another ID is a stale or forged reply: ignore it and keep waiting.
        if n >= 12 && buf[..2] == query[..2] {
            buf.truncate(n);
            return Ok(buf);
        }
        tracing::debug!(%server, "ignored a reply with a mismatched ID");
    }
}

async fn exchange_tcp(server: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(server).await?;
    let len = u16::try_from(query.len()).map_err(|_| io::Error::other("query too long"))?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut reply).await?;
    if reply.len() < 12 || reply[..2] != query[..2] {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "TCP reply with a mismatched ID"));
    }
    Ok(reply)
}
