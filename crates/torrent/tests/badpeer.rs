//! Hostile peers: one sends corrupt pieces, one a wrong-length block, one an out-of-range
//! index, one an absurd length prefix. Each is dropped (the corrupt one banned), and the
//! download still completes, correctly, from the honest seeder.

use appnet_netkit::harness::{self, any_loopback};
use appnet_torrent::config::ClientConfig;
use appnet_torrent::create::{CreateOptions, create};
use appnet_torrent::wire::{HANDSHAKE_LEN, Handshake, Message};
use appnet_torrent::{InfoHash, Session};
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone, Copy, Debug)]
enum Bad {
    Corrupt,
    ShortBlock,
    OutOfRange,
    HugeLength,
}

/// Serves `bad` behaviour to every connection; counts connections the victim closed.
async fn fake_peer(bad: Bad, hash: InfoHash, pieces: u32, closed: Arc<AtomicUsize>) -> SocketAddr {
    let listener = TcpListener::bind(any_loopback()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let closed = closed.clone();
            tokio::spawn(async move {
                let mut hs = [0u8; HANDSHAKE_LEN];
                if s.read_exact(&mut hs).await.is_err() {
                    return;
                }
                let mut out = BytesMut::new();
                out.extend_from_slice(&Handshake::new(hash, [b'a' + bad as u8; 20]).encode());
                Message::HaveAll.encode(&mut out);
                Message::Unchoke.encode(&mut out);
                match bad {
                    Bad::OutOfRange => Message::Have(pieces + 7).encode(&mut out),
                    Bad::HugeLength => out.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff, 7]),
                    _ => {}
                }
                if s.write_all(&out).await.is_err() {
                    return;
                }
                let mut buf = BytesMut::new();
                loop {
                    while let Ok(Some(m)) = Message::decode(&mut buf, 1 << 20) {
                        if let Message::Request(r) = m {
                            let mut reply = BytesMut::new();
                            let len = match bad {
                                Bad::ShortBlock => 100,
                                _ => r.length as usize,
                            };
                            Message::Piece { index: r.index, begin: r.begin, data: vec![0xEE; len].into() }
                                .encode(&mut reply);
                            if s.write_all(&reply).await.is_err() {
                                break;
                            }
                        }
                    }
                    match tokio::time::timeout(Duration::from_secs(60), s.read_buf(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => {
                            closed.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        Ok(Ok(_)) => {}
                        Err(_) => return,
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers_are_dropped_and_the_download_completes() {
    let root = appnet_netkit::harness::TempDir::new("torrent-bad");
    std::fs::create_dir_all(root.join("seed")).unwrap();
    let body: Vec<u8> = (0..600_000u32).map(|i| (i.wrapping_mul(7919) >> 3) as u8).collect();
    std::fs::write(root.join("seed/f.bin"), &body).unwrap();
    let meta = create(&root.join("seed/f.bin"), &CreateOptions { piece_length: 16384, ..Default::default() })
        .unwrap();
    let n = meta.info.num_pieces();
    let cfg = |dir: &str| ClientConfig {
        listen: any_loopback(),
        dir: root.join(dir),
        seed_time_secs: None,
        fsync: false,
        max_hash_failures: 2,
        ..ClientConfig::default()
    };
    let mut closed = Vec::new();
    let mut bad_addrs = Vec::new();
    for bad in [Bad::Corrupt, Bad::ShortBlock, Bad::OutOfRange, Bad::HugeLength] {
        let c = Arc::new(AtomicUsize::new(0));
        bad_addrs.push(fake_peer(bad, meta.info_hash, n, c.clone()).await);
        closed.push((bad, c));
    }
    // Only hostile peers at first: the corrupt one must fail two pieces and be banned...
    let mut leech = Session::bind(meta.clone(), cfg("dl"), false).await.unwrap();
    leech.add_peers(bad_addrs);
    let h = leech.handle();
    let leech = harness::start(leech);
    let banned = harness::wait_until(Duration::from_secs(20), Duration::from_millis(10), || async {
        h.progress().hash_failures >= 2
    })
    .await;
    assert!(banned, "corrupt pieces detected: {:?}", h.progress());
    // ...then the honest seeder arrives and the download completes.
    let seeder = harness::start(Session::bind(meta.clone(), cfg("seed"), true).await.unwrap());
    h.connect(seeder.addr());
    if tokio::time::timeout(Duration::from_secs(40), h.wait_complete()).await.is_err() {
        panic!("did not complete despite hostile peers: {:?}", h.progress());
    }
    assert_eq!(std::fs::read(root.join("dl/f.bin")).unwrap(), body);
    assert_eq!(h.progress().hash_failures, 2, "banned after two corrupt pieces, none after");
    for (bad, c) in &closed {
        if matches!(bad, Bad::ShortBlock) {
            continue; // wrong-length blocks are ignored, not fatal; endgame routes around them
        }
        let dropped = harness::wait_until(Duration::from_secs(5), Duration::from_millis(20), || async {
            c.load(Ordering::SeqCst) > 0
        })
        .await;
        assert!(dropped, "{bad:?} peer was dropped");
    }
    leech.stop().await.unwrap();
    seeder.stop().await.unwrap();
}
