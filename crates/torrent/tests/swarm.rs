//! End-to-end on loopback: a tracker, a seeder and leechers in one process; every leecher ends
//! with identical data. Also resume from partial data and a peer sending garbage.

mod common;

use appnet_netkit::harness::{self, any_loopback};
use appnet_torrent::config::TrackerConfig;
use appnet_torrent::create::{CreateOptions, create};
use appnet_torrent::tracker::TrackerServer;
use appnet_torrent::{Metainfo, Session};
use common::{client, data, tmp};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeder_and_two_leechers_via_tracker() {
    let root = tmp("swarm");
    let src = root.join("seed");
    std::fs::create_dir_all(src.join("album/cd2")).unwrap();
    let a = data(700_000, 1);
    let b = data(123_457, 2);
    std::fs::write(src.join("album/a.bin"), &a).unwrap();
    std::fs::write(src.join("album/cd2/b.bin"), &b).unwrap();

    let tracker = TrackerServer::bind(TrackerConfig {
        listen: any_loopback(),
        interval_secs: 2,
        min_interval_secs: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let tracker = harness::start(tracker);
    let url = format!("http://{}/announce", tracker.addr());
    let meta = create(
        &src.join("album"),
        &CreateOptions { piece_length: 32768, trackers: vec![url], ..Default::default() },
    )
    .unwrap();
    let meta = Metainfo::from_bytes(&meta.to_bytes()).unwrap();

    let seeder = Session::bind(meta.clone(), client(&src), true).await.unwrap();
    let seeder = harness::start(seeder);
    let mut leechers = Vec::new();
    let mut handles = Vec::new();
    for i in 0..2 {
        let dir = root.join(format!("leech{i}"));
        let s = Session::bind(meta.clone(), client(&dir), false).await.unwrap();
        handles.push((s.handle(), dir));
        leechers.push(harness::start(s));
    }
    for (h, dir) in &handles {
        if tokio::time::timeout(Duration::from_secs(30), h.wait_complete()).await.is_err() {
            let all: Vec<_> = handles.iter().map(|(h, _)| h.progress()).collect();
            panic!("download did not finish: {all:#?}");
        }
        assert_eq!(std::fs::read(dir.join("album/a.bin")).unwrap(), a);
        assert_eq!(std::fs::read(dir.join("album/cd2/b.bin")).unwrap(), b);
        let p = h.progress();
        assert_eq!((p.left, p.have, p.hash_failures), (0, p.pieces, 0));
    }
    for l in leechers {
        l.stop().await.unwrap();
    }
    seeder.stop().await.unwrap();
    tracker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_verifies_existing_data_and_fetches_the_rest() {
    let root = tmp("resume");
    let src = root.join("seed");
    std::fs::create_dir_all(&src).unwrap();
    let body = data(500_000, 3);
    std::fs::write(src.join("f.bin"), &body).unwrap();
    let meta =
        create(&src.join("f.bin"), &CreateOptions { piece_length: 16384, ..Default::default() }).unwrap();
    // The "killed" download: first half correct, one corrupted piece inside it, rest missing.
    let dst = root.join("dst");
    std::fs::create_dir_all(&dst).unwrap();
    let mut partial = body[..250_000].to_vec();
    partial[20_000] ^= 0xff;
    std::fs::write(dst.join("f.bin"), &partial).unwrap();

    let seeder = harness::start(Session::bind(meta.clone(), client(&src), true).await.unwrap());
    let mut s = Session::bind(meta.clone(), client(&dst), false).await.unwrap();
    let h = s.handle();
    let p = h.progress();
    assert_eq!(p.have, 250_000 / 16384 - 1, "whole good pieces on disk are kept, the corrupt one is not");
    s.add_peers([seeder.addr()]);
    let leech = harness::start(s);
    tokio::time::timeout(Duration::from_secs(30), h.wait_complete())
        .await
        .expect("resumed download finishes");
    assert_eq!(std::fs::read(dst.join("f.bin")).unwrap(), body);
    assert!(h.progress().downloaded < 300_000, "only the missing part was fetched");
    leech.stop().await.unwrap();
    seeder.stop().await.unwrap();
}
