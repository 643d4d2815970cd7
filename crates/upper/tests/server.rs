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
    let server = start(config()).await;
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
    let server = start(UpperConfig { idle_timeout_secs: 1, ..config() }).await;
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

#[tokio::test]
async fn connections_over_the_cap_are_told_the_server_is_busy() {
    let server = start(UpperConfig { max_connections: 2, ..config() }).await;
    let addr = server.addr();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        // A round trip proves the server has accepted and counted this connection.
        s.write_all(b"hold\n").await.unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.unwrap();
        held.push(s);
    }
    let mut third = TcpStream::connect(addr).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut answer)).await.unwrap().unwrap();
    assert_eq!(answer, b"ERR server busy, try later\n");
    drop(held);
    // Once the held connections close, new clients are served again.
    let ok = harness::wait_until(Duration::from_secs(5), Duration::from_millis(20), || async {
        client::ask_tcp(addr, b"again", Duration::from_secs(1)).await.is_ok()
    })
    .await;
    assert!(ok);
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
async fn the_client_reports_an_unreachable_server_clearly() {
    // Bind then drop to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let err = client::ask_tcp(port, b"x", Duration::from_secs(2)).await.unwrap_err();
    assert!(err.to_string().contains("is `appnet upper serve` running there?"), "{err}");
}
