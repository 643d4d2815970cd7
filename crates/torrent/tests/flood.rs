//! Peer-slot exhaustion (issue 22, item 6): connections that complete the handshake and then
//! do nothing must not keep a real leecher out of a seeder's `max_peers` slots.

mod common;

use appnet_netkit::harness;
use appnet_torrent::Session;
use appnet_torrent::config::ClientConfig;
use appnet_torrent::create::{CreateOptions, create};
use appnet_torrent::wire::{HANDSHAKE_LEN, Handshake};
use common::{client, data, tmp};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connects, handshakes, and waits until the seeder either sent its first message after the
/// handshake (we hold a slot) or closed (refused or evicted). Returns the open stream, if any.
async fn handshake_only(seeder: SocketAddr, hash: [u8; 20], n: u8) -> Option<TcpStream> {
    let mut s = TcpStream::connect(seeder).await.ok()?;
    let mut id = [b'F'; 20];
    id[19] = n;
    s.write_all(&Handshake::new(hash, id).encode()).await.ok()?;
    let mut buf = [0u8; HANDSHAKE_LEN + 5];
    let got = tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf)).await;
    matches!(got, Ok(Ok(_))).then_some(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_only_flood_does_not_starve_a_real_leecher() {
    let root = tmp("flood");
    let src = root.join("seed");
    std::fs::create_dir_all(&src).unwrap();
    let body = data(300_000, 5);
    std::fs::write(src.join("f.bin"), &body).unwrap();
    let meta =
        create(&src.join("f.bin"), &CreateOptions { piece_length: 16384, ..Default::default() }).unwrap();
    let cfg = ClientConfig { max_peers: 5, ..client(&src) };
    let seeder = Session::bind(meta.clone(), cfg, true).await.unwrap();
    let seed_handle = seeder.handle();
    let seeder = harness::start(seeder);

    let mut flood = Vec::new();
    for n in 0..50u8 {
        if let Some(s) = handshake_only(seeder.addr(), meta.info_hash, n).await {
            flood.push(s);
        }
    }
    assert!(seed_handle.progress().peers <= 4, "at most max_peers_per_ip (4) from one address");

    let leech_dir = root.join("leech");
    let mut s = Session::bind(meta, client(&leech_dir), false).await.unwrap();
    s.add_peers([seeder.addr()]);
    let h = s.handle();
    let leech = harness::start(s);
    tokio::time::timeout(Duration::from_secs(20), h.wait_complete())
        .await
        .expect("the leecher gets a slot and completes despite the flood");
    assert_eq!(std::fs::read(leech_dir.join("f.bin")).unwrap(), body);
    // More idle connections now evict other idle ones, never the useful leecher.
    for n in 50..60u8 {
        if let Some(s) = handshake_only(seeder.addr(), h.metainfo().info_hash, n).await {
            flood.push(s);
        }
    }
    assert!(seed_handle.progress().peers <= 5);
    assert_eq!(h.progress().peers, 1, "the leecher is still connected to the seeder");
    drop(flood);
    leech.stop().await.unwrap();
    seeder.stop().await.unwrap();
}

/// Reads until the seeder closes the connection; true if it did within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_bounded_and_make_way() {
    let root = tmp("silent");
    let src = root.join("seed");
    std::fs::create_dir_all(&src).unwrap();
    let body = data(100_000, 6);
    std::fs::write(src.join("f.bin"), &body).unwrap();
    let meta =
        create(&src.join("f.bin"), &CreateOptions { piece_length: 16384, ..Default::default() }).unwrap();
    let cfg = ClientConfig { max_peers: 2, ..client(&src) };
    let seeder = harness::start(Session::bind(meta.clone(), cfg, true).await.unwrap());
    // 30 connections that never handshake, from ten addresses: at most 2 x max_peers of them
    // are kept handshaking; the rest are closed at once, not after the 10 s deadline.
    let mut silent = Vec::new();
    for i in 0..30u8 {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::from(([127, 0, 6, i % 10 + 1], 0))).unwrap();
        silent.push(sock.connect(seeder.addr()).await.unwrap());
    }
    let mut closed = 0;
    for s in &mut silent {
        closed += closed_within(s, Duration::from_millis(200)).await as usize;
    }
    assert!(closed >= 26, "only {closed} of 30 silent connections were closed");
    // A real leecher's connection takes the oldest silent one's place.
    let leech_dir = root.join("leech");
    let mut s = Session::bind(meta, client(&leech_dir), false).await.unwrap();
    s.add_peers([seeder.addr()]);
    let h = s.handle();
    let leech = harness::start(s);
    tokio::time::timeout(Duration::from_secs(8), h.wait_complete())
        .await
        .expect("the leecher completes well before the silent ones time out");
    assert_eq!(std::fs::read(leech_dir.join("f.bin")).unwrap(), body);
    leech.stop().await.unwrap();
    seeder.stop().await.unwrap();
}
