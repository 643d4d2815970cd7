//! The tracker's tokio driver: a small hand-written HTTP/1.1 server (GET only, one request per
//! connection, bounded head, timeouts) for /announce, /scrape, the status page and /metrics, and
//! a UDP socket for BEP 15 on the same port. The swarm logic is in [`super::core`].

use super::core::{Policy, Tracker};
use super::proto::{self, Announce};
use super::udp;
use crate::config::TrackerConfig;
use crate::urlenc;
use appnet_netkit::accept::{Accepted, Acceptor, ConnLimits, ConnSlot};
use appnet_netkit::listen::{ListenOpts, bind_tcp, bind_udp};
use appnet_netkit::metrics::{Counter, Registry};
use appnet_netkit::{BoxError, Service, Shutdown};
use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// Longest HTTP request head accepted.
const MAX_HEAD: usize = 8 * 1024;

struct Metrics {
    registry: Registry,
    announces: Counter,
    scrapes: Counter,
    refused: Counter,
    bad_requests: Counter,
    udp_packets: Counter,
}

struct Shared {
    tracker: Mutex<Tracker>,
    metrics: Metrics,
    udp_secret: [u8; 16],
    started: Instant,
}

/// A bound tracker (HTTP, and UDP on the same port unless disabled).
pub struct TrackerServer {
    tcp: TcpListener,
    udp: Option<UdpSocket>,
    shared: Arc<Shared>,
    config: TrackerConfig,
}

impl TrackerServer {
    /// Binds the listeners; port 0 picks a free port shared by TCP and UDP.
    pub async fn bind(config: TrackerConfig) -> io::Result<Self> {
        let mut allow = HashSet::new();
        for h in &config.allow {
            let hash = urlenc::unhex20(h.trim()).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("allow-list entry {h:?} is not 40 hex digits"),
                )
            })?;
            allow.insert(hash);
        }
        let policy = Policy {
            interval: config.interval_secs.max(1),
            min_interval: config.min_interval_secs.min(config.interval_secs.max(1)),
            peer_timeout: Duration::from_secs(
                config.peer_timeout_secs.unwrap_or(2 * config.interval_secs as u64 + 60),
            ),
            default_numwant: config.default_numwant,
            max_numwant: config.max_numwant,
            max_peers_per_torrent: config.max_peers_per_torrent,
            max_torrents: config.max_torrents,
            max_peers_per_ip: config.max_peers_per_ip,
            announces_per_ip_per_sec: config.announces_per_ip_per_sec,
            new_torrents_per_ip_per_min: config.new_torrents_per_ip_per_min,
            allow: (!allow.is_empty()).then_some(allow),
        };
        let tcp = bind_tcp(config.listen, &ListenOpts::default())?;
        let addr = tcp.local_addr()?;
        let udp = if config.udp { Some(bind_udp(addr, &ListenOpts::default())?) } else { None };
        let registry = Registry::new();
        let metrics = Metrics {
            announces: registry.counter("tracker_announces_total", "Announces answered", &[]),
            scrapes: registry.counter("tracker_scrapes_total", "Scrapes answered", &[]),
            refused: registry.counter(
                "tracker_refused_total",
                "Announces refused with a failure reason",
                &[],
            ),
            bad_requests: registry.counter("tracker_bad_requests_total", "Malformed requests", &[]),
            udp_packets: registry.counter("tracker_udp_packets_total", "UDP tracker packets received", &[]),
            registry,
        };
        let mut udp_secret = [0u8; 16];
        rand::Rng::fill(&mut rand::rng(), &mut udp_secret);
        let shared = Arc::new(Shared {
            tracker: Mutex::new(Tracker::new(policy)),
            metrics,
            udp_secret,
            started: Instant::now(),
        });
        Ok(TrackerServer { tcp, udp, shared, config })
    }
}

impl Service for TrackerServer {
    fn local_addr(&self) -> SocketAddr {
        self.tcp.local_addr().unwrap_or(self.config.listen)
    }

    async fn run(self, shutdown: Shutdown) -> Result<(), BoxError> {
        let TrackerServer { tcp, udp, shared, config } = self;
        if let Some(sock) = udp {
            let (s, sd) = (shared.clone(), shutdown.clone());
            shutdown.spawn(async move { serve_udp(sock, s, sd).await });
        }
        {
            let (s, sd) = (shared.clone(), shutdown.clone());
            shutdown.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tokio::select! {
                        _ = sd.wait() => break,
                        _ = tick.tick() => s.tracker.lock().unwrap_or_else(|e| e.into_inner()).expire(Instant::now()),
                    }
                }
            });
        }
        // The shared connection policy: a whole request within the timeout, per-address caps,
        // and a full table evicting the oldest connection still waiting for its request.
        let timeout = Duration::from_secs(config.request_timeout_secs.max(1));
        let limits = ConnLimits { request_timeout: timeout, ..ConnLimits::new(config.max_connections) };
        let acceptor = Acceptor::with_limits(tcp, limits);
        while let Some(accepted) = acceptor.next(&shutdown).await {
            let Accepted::Conn(stream, peer, slot) = accepted else { continue };
            let s = shared.clone();
            shutdown.spawn(async move {
                // Writing the answer is bounded too: a client that never reads it is dropped.
                let served = async {
                    tokio::select! {
                        r = serve_http(stream, peer, &s, &slot) => r,
                        why = slot.closed() => Err(io::Error::new(io::ErrorKind::TimedOut, format!("{why:?}"))),
                    }
                };
                match tokio::time::timeout(timeout, served).await {
                    Ok(Err(e)) => tracing::debug!("tracker connection from {peer}: {e}"),
                    Err(_) => tracing::debug!("tracker connection from {peer}: answer not taken in time"),
                    Ok(Ok(())) => {}
                }
            });
        }
        shutdown.drain(Duration::from_secs(5)).await;
        Ok(())
    }
}

/// Reads one request head (bounded) and answers it.
async fn serve_http(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    slot: &ConnSlot,
) -> io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let head_end = loop {
        if let Some(p) = find_head_end(&buf) {
            break p;
        }
        if buf.len() >= MAX_HEAD {
            shared.metrics.bad_requests.inc();
            return respond(&mut stream, 431, "text/plain", b"request header too large\n").await;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    slot.busy();
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (method, target, version) =
        (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !version.starts_with("HTTP/1.") || parts.next().is_some() || !target.starts_with('/') {
        shared.metrics.bad_requests.inc();
        return respond(&mut stream, 400, "text/plain", b"bad request line\n").await;
    }
    if method != "GET" && method != "HEAD" {
        return respond(&mut stream, 405, "text/plain", b"only GET is supported\n").await;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let Some(pairs) = urlenc::parse_query(query) else {
        shared.metrics.bad_requests.inc();
        return respond(&mut stream, 400, "text/plain", b"bad percent-escape in query\n").await;
    };
    let (status, ctype, body) = route(path, &pairs, peer, shared);
    let body = if method == "HEAD" { Vec::new() } else { body };
    respond(&mut stream, status, ctype, &body).await
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").or_else(|| buf.windows(2).position(|w| w == b"\n\n"))
}

fn route(
    path: &str,
    pairs: &[(String, Vec<u8>)],
    peer: SocketAddr,
    shared: &Shared,
) -> (u16, &'static str, Vec<u8>) {
    const BENC: &str = "text/plain";
    match path {
        "/announce" => match Announce::from_query(pairs) {
            Err(reason) => {
                shared.metrics.bad_requests.inc();
                (400, BENC, proto::failure(&reason))
            }
            Ok(a) => {
                let ip = peer.ip().to_canonical();
                let res =
                    shared.tracker.lock().unwrap_or_else(|e| e.into_inner()).announce(&a, ip, Instant::now());
                match res {
                    Ok(reply) => {
                        shared.metrics.announces.inc();
                        (200, BENC, reply.encode(a.compact, a.no_peer_id))
                    }
                    Err(reason) => {
                        shared.metrics.refused.inc();
                        (200, BENC, proto::failure(&reason))
                    }
                }
            }
        },
        "/scrape" => {
            let mut hashes = Vec::new();
            for (k, v) in pairs {
                if k == "info_hash" {
                    match <[u8; 20]>::try_from(v.as_slice()) {
                        Ok(h) if hashes.len() < 256 => hashes.push(h),
                        Ok(_) => return (400, BENC, proto::failure("too many info_hash values")),
                        Err(_) => return (400, BENC, proto::failure("info_hash must be 20 bytes")),
                    }
                }
            }
            shared.metrics.scrapes.inc();
            let tracker = shared.tracker.lock().unwrap_or_else(|e| e.into_inner());
            let mut entries = tracker.scrape(&hashes);
            entries.truncate(1000);
            (200, BENC, proto::encode_scrape(&entries))
        }
        "/" | "/stats" => (200, "text/html; charset=utf-8", status_page(shared).into_bytes()),
        "/metrics" => (200, "text/plain; version=0.0.4", shared.metrics.registry.render().into_bytes()),
        _ => (404, "text/plain", b"not found: try /announce, /scrape, /stats or /metrics\n".to_vec()),
    }
}

fn status_page(shared: &Shared) -> String {
    let tracker = shared.tracker.lock().unwrap_or_else(|e| e.into_inner());
    let rows = tracker.status();
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>appnet tracker</title></head><body>\n<h1>appnet tracker</h1>\n",
    );
    html.push_str(&format!(
        "<p>{} torrents; up {} s; interval {} s</p>\n<table border=\"1\"><tr><th>info hash</th><th>seeders</th><th>leechers</th><th>completed</th></tr>\n",
        rows.len(),
        shared.started.elapsed().as_secs(),
        tracker.policy().interval
    ));
    for r in rows.iter().take(1000) {
        html.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            urlenc::hex(&r.info_hash),
            r.counts.complete,
            r.counts.incomplete,
            r.counts.downloaded
        ));
    }
    html.push_str("</table></body></html>\n");
    html
}

async fn respond(stream: &mut TcpStream, status: u16, ctype: &str, body: &[u8]) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\nServer: appnet\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    stream.write_all(&out).await?;
    stream.shutdown().await
}

async fn serve_udp(sock: UdpSocket, shared: Arc<Shared>, shutdown: Shutdown) {
    let mut buf = [0u8; 2048];
    loop {
        let (n, from) = tokio::select! {
            _ = shutdown.wait() => return,
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(_) => continue,
            },
        };
        shared.metrics.udp_packets.inc();
        if let Some(reply) = udp_reply(&buf[..n], from, &shared) {
            let _ = sock.send_to(&reply, from).await;
        }
    }
}

fn epoch() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() / 120).unwrap_or(0)
}

fn udp_reply(pkt: &[u8], from: SocketAddr, shared: &Shared) -> Option<Vec<u8>> {
    let secret = &shared.udp_secret;
    let valid = |conn: u64| {
        let e = epoch();
        conn == udp::connection_id(secret, &from, e)
            || conn == udp::connection_id(secret, &from, e.saturating_sub(1))
    };
    // The connection id is checked first (BEP 15: it proves the source address), so nothing
    // else of an announce or scrape from an unproven source is parsed or answered on its merits.
    if let Some((conn, action, tx)) = udp::header(pkt)
        && action != udp::ACTION_CONNECT
        && !valid(conn)
    {
        shared.metrics.bad_requests.inc();
        return Some(udp::error_reply(tx, "bad connection id; connect again"));
    }
    match udp::Request::decode(pkt) {
        Err(None) => {
            shared.metrics.bad_requests.inc();
            None
        }
        Err(Some((tx, why))) => {
            shared.metrics.bad_requests.inc();
            Some(udp::error_reply(tx, why))
        }
        Ok(udp::Request::Connect { tx }) => {
            Some(udp::connect_reply(tx, udp::connection_id(secret, &from, epoch())))
        }
        Ok(udp::Request::Announce { tx, announce, .. }) => {
            let res = shared.tracker.lock().unwrap_or_else(|e| e.into_inner()).announce(
                &announce,
                from.ip().to_canonical(),
                Instant::now(),
            );
            match res {
                Ok(r) => {
                    shared.metrics.announces.inc();
                    let peers: Vec<SocketAddr> = r.peers.iter().map(|p| p.addr).collect();
                    Some(udp::announce_reply(
                        tx,
                        r.interval,
                        r.incomplete,
                        r.complete,
                        &peers,
                        from.is_ipv6() && !from.ip().to_canonical().is_ipv4(),
                    ))
                }
                Err(why) => {
                    shared.metrics.refused.inc();
                    Some(udp::error_reply(tx, &why))
                }
            }
        }
        Ok(udp::Request::Scrape { tx, hashes, .. }) => {
            shared.metrics.scrapes.inc();
            let t = shared.tracker.lock().unwrap_or_else(|e| e.into_inner());
            let entries: Vec<_> = t.scrape(&hashes).into_iter().map(|(_, e)| e).collect();
            Some(udp::scrape_reply(tx, &entries))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::proto::Event;

    fn announce_pkt(conn: u64, event: u32) -> Vec<u8> {
        let a = Announce {
            info_hash: [7; 20],
            peer_id: [8; 20],
            port: 6881,
            uploaded: 0,
            downloaded: 0,
            left: 10,
            event: Event::Started,
            numwant: None,
            compact: true,
            no_peer_id: true,
            key: Some(1),
        };
        let mut p = udp::Request::Announce { conn, tx: 42, announce: a }.encode();
        p[80..84].copy_from_slice(&event.to_be_bytes());
        p
    }

    fn error_of(reply: Option<Vec<u8>>) -> Option<String> {
        match udp::Reply::decode(&reply?, false)? {
            udp::Reply::Error { tx: 42, message } => Some(message),
            _ => None,
        }
    }

    #[tokio::test]
    async fn udp_connection_id_is_checked_before_any_other_field() {
        let config = TrackerConfig { listen: "127.0.0.1:0".parse().unwrap(), ..TrackerConfig::default() };
        let server = TrackerServer::bind(config).await.unwrap();
        let shared = &server.shared;
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        // A forged connection id with a bad event, and a truncated announce: both are refused
        // for the connection id, not for what follows it.
        let e = error_of(udp_reply(&announce_pkt(12345, 9), from, shared)).unwrap();
        assert!(e.contains("connection id"), "{e}");
        let e = error_of(udp_reply(&announce_pkt(12345, 2)[..40], from, shared)).unwrap();
        assert!(e.contains("connection id"), "{e}");
        let mut scrape = udp::Request::Scrape { conn: 1, tx: 42, hashes: vec![[7; 20]] }.encode();
        let e = error_of(udp_reply(&scrape, from, shared)).unwrap();
        assert!(e.contains("connection id"), "{e}");
        assert!(shared.tracker.lock().unwrap().status().is_empty());
        // With a real connection id the fields are checked and the announce is served.
        let Some(udp::Reply::Connect { conn, .. }) = udp::Reply::decode(
            &udp_reply(&udp::Request::Connect { tx: 1 }.encode(), from, shared).unwrap(),
            false,
        ) else {
            panic!("no connect reply");
        };
        let e = error_of(udp_reply(&announce_pkt(conn, 9), from, shared)).unwrap();
        assert_eq!(e, "bad event");
        let ok = udp::Reply::decode(&udp_reply(&announce_pkt(conn, 2), from, shared).unwrap(), false);
        assert!(matches!(ok, Some(udp::Reply::Announce { tx: 42, .. })), "{ok:?}");
        scrape[..8].copy_from_slice(&conn.to_be_bytes());
        let reply = udp_reply(&scrape, from, shared).unwrap();
        assert_eq!(reply[..8], [0, 0, 0, 2, 0, 0, 0, 42], "a scrape reply");
    }
}
