//! Magnet links end to end on loopback: an appnet seeder serves its info dictionary (BEP 9), a
//! magnet download fetches it and then the data; a peer serving forged metadata is found out by
//! the hash check and the fetch finishes from an honest peer it told us about over PEX; and
//! leechers that only know the seeder find each other through the seeder's PEX messages.

mod common;

use appnet_netkit::Shutdown;
use appnet_netkit::harness::{self, any_loopback};
use appnet_netkit::listen::{ListenOpts, bind_tcp};
use appnet_torrent::bep9_magnet::{FetchOptions, fetch};
use appnet_torrent::config::ClientConfig;
use appnet_torrent::create::{CreateOptions, create};
use appnet_torrent::metainfo::Magnet;
use appnet_torrent::session::new_peer_id;
use appnet_torrent::wire::ext::{ExtHandshake, MetadataMsg, Pex};
use appnet_torrent::wire::{HANDSHAKE_LEN, Handshake, Message};
use appnet_torrent::{Metainfo, Session};
use bytes::{Bytes, BytesMut};
use common::{client, data, tmp};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A multi-file torrent whose info dictionary spans several 16 KiB metadata pieces (files deep
/// under long directory names, which every file entry repeats), seeded from `root/seed`;
/// returns it and the files' paths under the torrent and contents.
fn torrent(root: &Path) -> (Metainfo, Vec<(PathBuf, Vec<u8>)>) {
    let top = root.join("seed/many");
    let deep: PathBuf = (0..9).map(|i| format!("{i}{}", "d".repeat(200))).collect();
    std::fs::create_dir_all(top.join(&deep)).unwrap();
    let files: Vec<(PathBuf, Vec<u8>)> =
        (0..22).map(|i| (deep.join(format!("f{i}.bin")), data(20_000 + i, i as u32))).collect();
    for (name, bytes) in &files {
        std::fs::write(top.join(name), bytes).unwrap();
    }
    let meta = create(&top, &CreateOptions { piece_length: 16384, ..Default::default() }).unwrap();
    let meta = Metainfo::from_bytes(&meta.to_bytes()).unwrap();
    assert!(meta.info_bytes.len() > 2 * 16384, "metadata must span pieces");
    (meta, files)
}

fn opts(peers: Vec<SocketAddr>) -> FetchOptions {
    FetchOptions {
        peer_id: new_peer_id(),
        listen_port: 0,
        peers,
        max_peers: 10,
        numwant: 50,
        announce_every: Duration::from_secs(10),
        dht: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn magnet_fetches_metadata_then_downloads() {
    let root = tmp("get");
    let (meta, files) = torrent(&root);
    let seeder = harness::start(Session::bind(meta.clone(), client(&root.join("seed")), true).await.unwrap());
    let link = format!("{}&x.pe={}", meta.magnet(), seeder.addr());
    let magnet = Magnet::parse(&link).unwrap();
    let sd = Shutdown::new();
    let fetched = tokio::time::timeout(Duration::from_secs(30), fetch(&magnet, opts(vec![]), &sd, |_| {}))
        .await
        .expect("metadata in time")
        .unwrap();
    assert_eq!(fetched.meta.info_hash, meta.info_hash);
    assert_eq!(fetched.meta.info_bytes, meta.info_bytes);
    assert_eq!(fetched.hash_failures, 0);
    assert!(fetched.peers.contains(&seeder.addr()));

    let dir = root.join("leech");
    let listener = bind_tcp(any_loopback(), &ListenOpts::default()).unwrap();
    let mut s = Session::bind_on(fetched.meta, client(&dir), false, listener, new_peer_id()).await.unwrap();
    s.add_peers(fetched.peers);
    let h = s.handle();
    let leech = harness::start(s);
    tokio::time::timeout(Duration::from_secs(60), h.wait_complete()).await.expect("download in time");
    for (name, bytes) in &files {
        assert_eq!(&std::fs::read(dir.join("many").join(name)).unwrap(), bytes, "{}", name.display());
    }
    let _ = leech.stop().await;
    let _ = seeder.stop().await;
}

/// A peer that announces the right metadata size but serves forged pieces, and tells the
/// client about `honest` over PEX first.
async fn liar(
    listener: tokio::net::TcpListener,
    meta: Metainfo,
    honest: SocketAddr,
    served: tokio::sync::oneshot::Sender<()>,
) {
    let (mut s, _) = listener.accept().await.unwrap();
    let mut hs = [0u8; HANDSHAKE_LEN];
    s.read_exact(&mut hs).await.unwrap();
    let theirs = Handshake::decode(&hs).unwrap();
    assert!(theirs.extended());
    s.write_all(&Handshake::new(meta.info_hash, [b'L'; 20]).encode()).await.unwrap();
    let mut h = ExtHandshake { metadata_size: Some(meta.info_bytes.len() as u64), ..Default::default() };
    h.m.insert("ut_metadata".into(), 3);
    h.m.insert("ut_pex".into(), 4);
    let mut out = BytesMut::new();
    Message::Extended { id: 0, payload: h.encode().into() }.encode(&mut out);
    s.write_all(&out).await.unwrap();
    let mut buf = BytesMut::new();
    let mut their_ids = (None, None);
    let mut served = Some(served);
    loop {
        while let Some(m) = Message::decode(&mut buf, 1 << 20).unwrap() {
            let Message::Extended { id, payload } = m else { continue };
            let mut out = BytesMut::new();
            if id == 0 {
                let t = ExtHandshake::decode(&payload).unwrap();
                their_ids = (t.id_of("ut_metadata"), t.id_of("ut_pex"));
                let pex = Pex { added: vec![honest], dropped: vec![] };
                Message::Extended { id: their_ids.1.unwrap(), payload: pex.encode().into() }.encode(&mut out);
            } else if id == 3
                && let Ok(MetadataMsg::Request(piece)) = MetadataMsg::decode(&payload)
            {
                let start = piece as usize * 16384;
                let mut forged = meta.info_bytes[start..(start + 16384).min(meta.info_bytes.len())].to_vec();
                forged[0] ^= 0xff;
                let total_size = meta.info_bytes.len() as u64;
                let reply = MetadataMsg::Data { piece, total_size, data: Bytes::from(forged) };
                Message::Extended { id: their_ids.0.unwrap(), payload: reply.encode().into() }
                    .encode(&mut out);
                if let Some(tx) = served.take() {
                    let _ = tx.send(());
                }
            }
            if s.write_all(&out).await.is_err() {
                return;
            }
        }
        match s.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_metadata_is_discarded_and_fetched_from_a_pex_peer() {
    let root = tmp("liar");
    let (meta, _) = torrent(&root);
    // The honest seeder's port exists from the start but it answers only after the liar has
    // served a forged piece, so the forged data always arrives first.
    let honest_listener = bind_tcp(any_loopback(), &ListenOpts::default()).unwrap();
    let honest_addr = honest_listener.local_addr().unwrap();
    let liar_listener = bind_tcp(any_loopback(), &ListenOpts::default()).unwrap();
    let liar_addr = liar_listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let liar_task = tokio::spawn(liar(liar_listener, meta.clone(), honest_addr, tx));
    let seed_cfg = client(&root.join("seed"));
    let honest =
        Session::bind_on(meta.clone(), seed_cfg, true, honest_listener, new_peer_id()).await.unwrap();
    let starter = tokio::spawn(async move {
        rx.await.expect("the liar served");
        harness::start(honest)
    });
    let magnet = Magnet::parse(&meta.magnet()).unwrap();
    let sd = Shutdown::new();
    let fetched =
        tokio::time::timeout(Duration::from_secs(40), fetch(&magnet, opts(vec![liar_addr]), &sd, |_| {}))
            .await
            .expect("metadata in time")
            .unwrap();
    assert_eq!(fetched.meta.info_bytes, meta.info_bytes);
    assert!(fetched.hash_failures >= 1, "the forged assembly was detected");
    assert!(fetched.peers.contains(&honest_addr), "the honest peer came from PEX");
    let _ = starter.await.unwrap().stop().await;
    liar_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leechers_find_each_other_through_pex() {
    let root = tmp("pex");
    let (meta, _) = torrent(&root);
    let fast_pex = |dir: &Path| ClientConfig {
        pex_interval_secs: 0.2,
        download_rate: Some(200_000), // slow enough that the swarm is still there to be seen
        ..client(dir)
    };
    let seeder =
        harness::start(Session::bind(meta.clone(), fast_pex(&root.join("seed")), true).await.unwrap());
    let mut leechers = Vec::new();
    for i in 0..2 {
        let mut s = Session::bind(meta.clone(), fast_pex(&root.join(format!("l{i}"))), false).await.unwrap();
        s.add_peers([seeder.addr()]);
        let h = s.handle();
        leechers.push((h, harness::start(s)));
    }
    // Each leecher knows only the seeder; both reach two peers once PEX introduced them.
    for (h, _) in &leechers {
        let ok = harness::wait_until(Duration::from_secs(20), Duration::from_millis(50), || async {
            h.progress().peers >= 2
        })
        .await;
        assert!(ok, "a leecher never met the other: {:?}", h.progress());
    }
    for (_, r) in leechers {
        let _ = r.stop().await;
    }
    let _ = seeder.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeder_answers_metadata_requests_and_rejects_bad_ones() {
    let root = tmp("serve");
    let (meta, _) = torrent(&root);
    let seeder = harness::start(Session::bind(meta.clone(), client(&root.join("seed")), true).await.unwrap());
    let mut s = tokio::net::TcpStream::connect(seeder.addr()).await.unwrap();
    s.write_all(&Handshake::new(meta.info_hash, [b'R'; 20]).encode()).await.unwrap();
    let mut hs = [0u8; HANDSHAKE_LEN];
    s.read_exact(&mut hs).await.unwrap();
    assert!(Handshake::decode(&hs).unwrap().extended());
    let mut hello = ExtHandshake::default();
    hello.m.insert("ut_metadata".into(), 7);
    let mut out = BytesMut::new();
    Message::Extended { id: 0, payload: hello.encode().into() }.encode(&mut out);
    let mut buf = BytesMut::new();
    // Read until the seeder's extension handshake: it names its ut_metadata id and the size.
    let theirs = 'found: loop {
        while let Some(m) = Message::decode(&mut buf, 1 << 20).unwrap() {
            if let Message::Extended { id: 0, payload } = m {
                break 'found ExtHandshake::decode(&payload).unwrap();
            }
        }
        assert!(s.read_buf(&mut buf).await.unwrap() > 0, "seeder closed");
    };
    assert_eq!(theirs.metadata_size, Some(meta.info_bytes.len() as u64));
    assert!(theirs.client.as_deref().unwrap().starts_with("appnet"));
    let id = theirs.id_of("ut_metadata").unwrap();
    let last = (meta.info_bytes.len() / 16384) as u32;
    for req in [MetadataMsg::Request(last + 1), MetadataMsg::Request(last)] {
        Message::Extended { id, payload: req.encode().into() }.encode(&mut out);
    }
    s.write_all(&out).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        while let Some(m) = Message::decode(&mut buf, 1 << 20).unwrap() {
            if let Message::Extended { id: 7, payload } = m {
                got.push(MetadataMsg::decode(&payload).unwrap());
            }
        }
        if got.len() < 2 {
            assert!(s.read_buf(&mut buf).await.unwrap() > 0, "seeder closed");
        }
    }
    assert_eq!(got[0], MetadataMsg::Reject(last + 1));
    let tail = Bytes::copy_from_slice(&meta.info_bytes[last as usize * 16384..]);
    assert_eq!(
        got[1],
        MetadataMsg::Data { piece: last, total_size: meta.info_bytes.len() as u64, data: tail }
    );
    let _ = seeder.stop().await;
}
