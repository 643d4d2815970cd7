//! The uppercase server over real sockets on 127.0.0.1:0: concurrency, limits, timeouts,
//! shutdown, and both transports through the crate's own client.

use appnet_netkit::harness::{self, any_loopback};
use appnet_upper::{UpperConfig, UpperServer, client};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn config() -> UpperConfig {
    UpperConfig { listen: any_loopback(), ..UpperConfig::default() }
}

async fn start(config: UpperConfig) -> harness::Running {
    let server = UpperServer::bind(config).await.expect("bind");
    harness::start(server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_clients_each_get_their_own_answers() {
    // All 200 come from 127.0.0.1, so the per-address cap is raised to let them in.
    let server = start(UpperConfig { max_per_ip: 200, ..config() }).await;
    let addr = server.addr();
    // Open all 200 connections first so they are truly concurrent, then talk on each.
    let mut streams = Vec::new();
    for _ in 0..200 {
        streams.push(TcpStream::connect(addr).await.unwrap());
    }
    let tasks: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, stream)| {
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut r = BufReader::new(r);
                for round in 0..5 {
                    w.write_all(format!("client {i} round {round}\n").as_bytes()).await.unwrap();
                    let mut line = String::new();
                    r.read_line(&mut line).await.unwrap();
                    assert_eq!(line, format!("CLIENT {i} ROUND {round}\n"));
                }
            })
        })
        .collect();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(30), t).await.expect("client finished").unwrap();
    }
    server.stop().await.unwrap();
}

fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_megabyte_lines_get_an_error_without_memory_growth() {
    let server = start(config()).await;
    let addr = server.addr();
    let before = resident_kib();
    let line = vec![b'x'; 10 * 1024 * 1024];
    let line = std::sync::Arc::new(line);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let line = line.clone();
            tokio::spawn(async move {
                let stream = TcpStream::connect(addr).await.unwrap();
                let (mut r, mut w) = stream.into_split();
                // The server stops reading at the limit, so the write may fail part-way.
                let writer = tokio::spawn(async move {
                    let _ = w.write_all(&line).await;
                    let _ = w.write_all(b"\n").await;
                });
                let mut answer = Vec::new();
                let _ = r.read_to_end(&mut answer).await;
                writer.abort();
                String::from_utf8_lossy(&answer).into_owned()
            })
        })
        .collect();
    for t in tasks {
        let answer = tokio::time::timeout(Duration::from_secs(30), t).await.unwrap().unwrap();
        assert_eq!(answer, "ERR line longer than 65536 bytes, closing\n");
    }
    // 20 clients x 10 MB buffered would be 200 MB; bounded reading keeps the growth small.
    if let (Some(b), Some(a)) = (before, resident_kib()) {
        assert!(a.saturating_sub(b) < 64 * 1024, "resident memory grew from {b} KiB to {a} KiB");
    }
    // The server still serves everyone else.
    let answer = client::ask_tcp(addr, b"still here", Duration::from_secs(5)).await.unwrap();
    assert_eq!(answer, b"STILL HERE");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_client_that_never_sends_a_newline_is_cut_off_at_the_limit() {
    let server = start(UpperConfig { max_line: 1000, ..config() }).await;
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    let mut sent = 0usize;
    // Keep sending without a newline; the server must answer with an error once past the limit.
    let mut answer = Vec::new();
    for _ in 0..100 {
        if stream.write_all(&[b'y'; 100]).await.is_err() {
            break;
        }
        sent += 100;
        if sent > 1000 {
            break;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await.unwrap();
    assert_eq!(answer, b"ERR line longer than 1000 bytes, closing\n");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let server = start(UpperConfig { idle_timeout_secs: 1, request_timeout_secs: 1, ..config() }).await;
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    stream.write_all(b"partial, never finished").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("server closed the idle connection")
        .unwrap();
    assert_eq!(answer, b"ERR idle timeout, closing\n");
    server.stop().await.unwrap();
}

/// Connects from a chosen loopback source address (Linux answers all of 127.0.0.0/8).
async fn connect_from(src: [u8; 4], to: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((src, 0).into()).unwrap();
    socket.connect(to).await.unwrap()
}

/// One line's round trip on an open connection.
async fn round_trip(s: &mut TcpStream, line: &[u8]) -> Vec<u8> {
    s.write_all(line).await.unwrap();
    let mut buf = vec![0u8; line.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf)).await.unwrap().unwrap();
    buf
}

#[tokio::test]
async fn a_full_server_closes_the_longest_waiting_connection_for_a_newcomer() {
    let server = start(UpperConfig { max_connections: 2, ..config() }).await;
    let addr = server.addr();
    let mut oldest = TcpStream::connect(addr).await.unwrap();
    assert_eq!(round_trip(&mut oldest, b"one\n").await, b"ONE\n");
    let mut newer = TcpStream::connect(addr).await.unwrap();
    assert_eq!(round_trip(&mut newer, b"two\n").await, b"TWO\n");
    // Both wait idle; a third client is served and the one idle the longest makes room.
    let mut third = TcpStream::connect(addr).await.unwrap();
    assert_eq!(round_trip(&mut third, b"three\n").await, b"THREE\n");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), oldest.read_to_end(&mut answer)).await.unwrap().unwrap();
    assert_eq!(answer, b"ERR server busy, closing\n");
    assert_eq!(round_trip(&mut newer, b"still\n").await, b"STILL\n");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn one_address_cannot_hold_every_slot() {
    let server = start(UpperConfig { max_connections: 100, max_per_ip: 3, ..config() }).await;
    let addr = server.addr();
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from([127, 0, 0, 1], addr).await;
        round_trip(&mut s, b"hold\n").await;
        held.push(s);
    }
    let mut fourth = connect_from([127, 0, 0, 1], addr).await;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), fourth.read_to_end(&mut answer)).await.unwrap().unwrap();
    assert_eq!(answer, b"ERR server busy, try later\n");
    let mut other = connect_from([127, 0, 0, 2], addr).await;
    assert_eq!(round_trip(&mut other, b"other\n").await, b"OTHER\n");
    drop(held);
    // Once the held connections close, the address is served again.
    let ok = harness::wait_until(Duration::from_secs(5), Duration::from_millis(20), || async {
        client::ask_tcp(addr, b"again", Duration::from_secs(1)).await.is_ok()
    })
    .await;
    assert!(ok);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_trickled_line_gets_one_deadline_not_one_per_byte() {
    let server = start(UpperConfig { request_timeout_secs: 1, idle_timeout_secs: 1, ..config() }).await;
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    // One byte every 200 ms never completes a line; the whole line's deadline still applies.
    for _ in 0..50 {
        if stream.write_all(b"x").await.is_err() {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(200), stream.read_to_end(&mut answer)).await {
            Ok(_) => break,
            Err(_) => continue,
        }
    }
    assert_eq!(answer, b"ERR idle timeout, closing\n");
    assert!(started.elapsed() < Duration::from_secs(4), "cut after {:?}", started.elapsed());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_closes_open_connections_and_stops_accepting() {
    let server = start(config()).await;
    let addr = server.addr();
    let mut open = TcpStream::connect(addr).await.unwrap();
    open.write_all(b"before\n").await.unwrap();
    let mut buf = [0u8; 7];
    open.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"BEFORE\n");
    server.stop().await.expect("stopped cleanly");
    let mut rest = Vec::new();
    // The server closed the connection: the read ends (with EOF) instead of timing out.
    let read = tokio::time::timeout(Duration::from_secs(5), open.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0))), "expected a clean close, got {read:?}");
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
}

#[tokio::test]
async fn udp_answers_each_datagram_and_rejects_oversized_ones() {
    let server = start(UpperConfig { udp: true, max_line: 100, ..config() }).await;
    let addr = server.addr();
    let answer = client::ask_udp(addr, b"hello udp", Duration::from_secs(3), 3).await.unwrap();
    assert_eq!(answer, b"HELLO UDP");
    let err = client::ask_udp(addr, &[b'z'; 101], Duration::from_secs(3), 3).await.unwrap_err();
    assert!(matches!(err, client::AskError::Server(ref m) if m.contains("longer than 100")), "{err}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn udp_replies_never_exceed_the_amplification_limit() {
    let worst = "\u{390}".repeat(50); // upper-cases to three times its size
    let strict = start(UpperConfig { udp: true, udp_max_amplification: 1, ..config() }).await;
    let answer = client::ask_udp(strict.addr(), b"same size", Duration::from_secs(3), 3).await.unwrap();
    assert_eq!(answer, b"SAME SIZE");
    let err = client::ask_udp(strict.addr(), worst.as_bytes(), Duration::from_millis(600), 2).await;
    assert!(err.is_err(), "a reply three times the request is not sent at 1x");
    strict.stop().await.unwrap();
    let default = start(UpperConfig { udp: true, ..config() }).await;
    let answer = client::ask_udp(default.addr(), worst.as_bytes(), Duration::from_secs(3), 3).await.unwrap();
    assert_eq!(answer.len(), 3 * worst.len(), "the default (3x) answers the Unicode worst case");
    default.stop().await.unwrap();
}

#[tokio::test]
async fn the_client_reports_an_unreachable_server_clearly() {
    // Bind then drop to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let err = client::ask_tcp(port, b"x", Duration::from_secs(2)).await.unwrap_err();
    assert!(err.to_string().contains("is `appnet upper serve` running there?"), "{err}");
}
