//! Announcing to trackers from the client: `http://` (BEP 3) and `udp://` (BEP 15) URLs.

use super::proto::{Announce, AnnounceReply, PeerAddr};
use super::udp;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest tracker reply read.
const MAX_REPLY: usize = 4 * 1024 * 1024;

/// Why an announce failed.
#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    /// Network trouble.
    #[error("tracker unreachable: {0}")]
    Io(#[from] io::Error),
    /// The tracker answered with an error or garbage.
    #[error("{0}")]
    Tracker(String),
    /// The URL is not one we can use.
    #[error("unsupported tracker URL {0} (http:// or udp:// only)")]
    Url(String),
}

/// Splits `scheme://host:port/rest` into (host:port, /rest).
fn split_url<'a>(url: &'a str, scheme: &str, default_port: u16) -> Option<(String, &'a str)> {
    let rest = url.strip_prefix(scheme)?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if hostport.is_empty() {
        return None;
    }
    let has_port =
        hostport.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) && !hostport.ends_with(']');
    Some((if has_port { hostport.to_string() } else { format!("{hostport}:{default_port}") }, path))
}

async fn resolve(hostport: &str) -> io::Result<SocketAddr> {
    tokio::net::lookup_host(hostport)
        .await?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{hostport} has no address")))
}

/// Announces to `url` and returns the tracker's reply, within `timeout`.
pub async fn announce(url: &str, a: &Announce, timeout: Duration) -> Result<AnnounceReply, AnnounceError> {
    let fut = async {
        if url.starts_with("http://") {
            announce_http(url, a).await
        } else if url.starts_with("udp://") {
            announce_udp(url, a).await
        } else {
            Err(AnnounceError::Url(url.to_string()))
        }
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| AnnounceError::Io(io::Error::new(io::ErrorKind::TimedOut, "tracker timed out")))?
}

async fn announce_http(url: &str, a: &Announce) -> Result<AnnounceReply, AnnounceError> {
    let (hostport, path) =
        split_url(url, "http://", 80).ok_or_else(|| AnnounceError::Url(url.to_string()))?;
    let addr = resolve(&hostport).await?;
    let sep = if path.contains('?') { '&' } else { '?' };
    let req = format!(
        "GET {path}{sep}{} HTTP/1.1\r\nHost: {hostport}\r\nUser-Agent: appnet/{}\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n",
        a.to_query(),
        env!("CARGO_PKG_VERSION")
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(req.as_bytes()).await?;
    let mut resp = Vec::new();
    (&mut stream).take(MAX_REPLY as u64).read_to_end(&mut resp).await?;
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| AnnounceError::Tracker("tracker sent no HTTP header".into()))?;
    let head = String::from_utf8_lossy(&resp[..split]).to_ascii_lowercase();
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut body = resp[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body).ok_or_else(|| AnnounceError::Tracker("bad chunked body".into()))?;
    }
    match AnnounceReply::decode(&body) {
        Ok(r) => Ok(r),
        Err(e) if status == 200 => Err(AnnounceError::Tracker(e)),
        Err(e) => Err(AnnounceError::Tracker(format!("HTTP {status}: {e}"))),
    }
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(&b[..eol]).ok()?.split(';').next()?.trim().to_string();
        let size = usize::from_str_radix(&size_str, 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

async fn announce_udp(url: &str, a: &Announce) -> Result<AnnounceReply, AnnounceError> {
    let (hostport, _) = split_url(url, "udp://", 80).ok_or_else(|| AnnounceError::Url(url.to_string()))?;
    let addr = resolve(&hostport).await?;
    let bind: SocketAddr =
        if addr.is_ipv4() { "0.0.0.0:0".parse().unwrap_or(addr) } else { "[::]:0".parse().unwrap_or(addr) };
    let sock = tokio::net::UdpSocket::bind(bind).await?;
    sock.connect(addr).await?;
    let mut buf = vec![0u8; 65536];
    for attempt in 0..3u32 {
        let wait = Duration::from_secs(2 << attempt);
        let tx: u32 = rand::random();
        sock.send(&udp::Request::Connect { tx }.encode()).await?;
        let conn = match tokio::time::timeout(wait, sock.recv(&mut buf)).await {
            Ok(Ok(n)) => match udp::Reply::decode(&buf[..n], addr.is_ipv6()) {
                Some(udp::Reply::Connect { tx: t, conn }) if t == tx => conn,
                Some(udp::Reply::Error { message, .. }) => return Err(AnnounceError::Tracker(message)),
                _ => continue,
            },
            _ => continue,
        };
        let tx: u32 = rand::random();
        sock.send(&udp::Request::Announce { conn, tx, announce: a.clone() }.encode()).await?;
        if let Ok(Ok(n)) = tokio::time::timeout(wait, sock.recv(&mut buf)).await {
            match udp::Reply::decode(&buf[..n], addr.is_ipv6()) {
                Some(udp::Reply::Announce { tx: t, interval, leechers, seeders, peers }) if t == tx => {
                    return Ok(AnnounceReply {
                        interval,
                        min_interval: None,
                        complete: seeders,
                        incomplete: leechers,
                        peers: peers.into_iter().map(|addr| PeerAddr { addr, peer_id: None }).collect(),
                    });
                }
                Some(udp::Reply::Error { message, .. }) => return Err(AnnounceError::Tracker(message)),
                _ => continue,
            }
        }
    }
    Err(AnnounceError::Io(io::Error::new(io::ErrorKind::TimedOut, "UDP tracker did not answer")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split() {
        assert_eq!(
            split_url("http://t.example:6969/announce", "http://", 80),
            Some(("t.example:6969".into(), "/announce"))
        );
        assert_eq!(
            split_url("http://t.example/a?x=1", "http://", 80),
            Some(("t.example:80".into(), "/a?x=1"))
        );
        assert_eq!(
            split_url("udp://[::1]:1337/announce", "udp://", 80),
            Some(("[::1]:1337".into(), "/announce"))
        );
        assert_eq!(dechunk(b"3\r\nabc\r\n0\r\n\r\n"), Some(b"abc".to_vec()));
    }
}
