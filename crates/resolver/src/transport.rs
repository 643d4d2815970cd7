//! Sending one query upstream and getting its answer, with the anti-spoofing rules of the wire:
//! a fresh socket per query (so a random source port chosen by the kernel), connected to the
//! server asked (so datagrams from anyone else are dropped by the kernel), and only a reply
//! with the query's ID accepted. TCP for truncated answers, with length framing.

use appnet_dns::wire::tcp;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpSocket, UdpSocket};

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

/// The real network. Queries leave from `source` when set (a resolver listening on one
/// address of a multi-homed host, like each lab resolver on its own 127.x address, queries from
/// it too, so authoritative servers and CDNs see who is asking), else from the kernel's choice.
#[derive(Debug, Clone, Copy, Default)]
pub struct NetTransport {
    /// The local address to send from.
    pub source: Option<IpAddr>,
}

/// Largest reply accepted over UDP: we advertise 1232 bytes (EDNS), so a well-behaved server
/// never sends more; the margin tolerates sloppy ones. Each query in flight holds one such
/// buffer, so it is kept small (64 KiB each made thousands of stalled queries cost 100+ MiB).
pub const MAX_UDP: usize = 4_096;

impl Transport for NetTransport {
    async fn exchange(
        &self,
        server: SocketAddr,
        query: &[u8],
        tcp: bool,
        timeout: Duration,
    ) -> io::Result<Vec<u8>> {
        let work = async {
            if tcp {
                exchange_tcp(self.source, server, query).await
            } else {
                exchange_udp(self.source, server, query).await
            }
        };
        tokio::time::timeout(timeout, work)
            .await
            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time")))
    }
}

/// The address to bind for talking to `server`: `source` when it is of the same family.
fn local_for(source: Option<IpAddr>, server: SocketAddr) -> SocketAddr {
    match source {
        Some(ip) if ip.is_ipv4() == server.is_ipv4() => SocketAddr::new(ip, 0),
        _ if server.is_ipv4() => (Ipv4Addr::UNSPECIFIED, 0).into(),
        _ => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

async fn exchange_udp(source: Option<IpAddr>, server: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    let socket = UdpSocket::bind(local_for(source, server)).await?;
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

async fn exchange_tcp(source: Option<IpAddr>, server: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    let local = local_for(source, server);
    let socket = if server.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if !local.ip().is_unspecified() {
        socket.bind(local)?;
    }
    let mut stream = socket.connect(server).await?;
    tcp::write_message(&mut stream, query).await?;
    let reply = tcp::read_message(&mut stream, usize::from(u16::MAX)).await?.ok_or_else(|| {
        io::Error::new(io::ErrorKind::UnexpectedEof, "TCP connection closed before a reply")
    })?;
    if reply.len() < 12 || reply[..2] != query[..2] {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "TCP reply with a mismatched ID"));
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_udp_exchange_holds_a_small_buffer_and_skips_foreign_ids() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let echo = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (n, peer) = server.recv_from(&mut buf).await.unwrap();
            let mut forged = buf[..n].to_vec();
            forged[0] ^= 0xff;
            server.send_to(&forged, peer).await.unwrap();
            server.send_to(&buf[..n], peer).await.unwrap();
        });
        let query = [0x12, 0x34, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let t = NetTransport::default();
        let reply = t.exchange(addr, &query, false, Duration::from_secs(2)).await.unwrap();
        assert_eq!(reply, query);
        // What a stalled query keeps allocated while it waits is bounded by MAX_UDP.
        assert!(reply.capacity() <= MAX_UDP);
        echo.await.unwrap();
    }
}
