//! `torrent get` never clobbers files that are not its own partial download and never writes
//! through a symbolic link planted in the output directory (issue 22, item 4).

mod common;

use appnet_netkit::harness;
use appnet_torrent::Session;
use appnet_torrent::create::{CreateOptions, create};
use common::{client, data, tmp};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_refuses_to_truncate_or_follow_and_still_downloads_into_a_clean_dir() {
    let root = tmp("clobber");
    let src = root.join("seed");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join(".bashrc"), b"").unwrap();
    let body = data(100_000, 9);
    std::fs::write(src.join("linkout"), &body).unwrap();
    let opts = CreateOptions { piece_length: 16384, ..Default::default() };
    let empty = create(&src.join(".bashrc"), &opts).unwrap();
    let linked = create(&src.join("linkout"), &opts).unwrap();

    let out = root.join("out");
    let outside = root.join("outside");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(out.join(".bashrc"), b"alias ls='ls --color'\n").unwrap();
    std::os::unix::fs::symlink("../outside/linkout", out.join("linkout")).unwrap();

    let e =
        Session::bind(empty.clone(), client(&out), false).await.err().expect("refused: .bashrc is not ours");
    assert!(e.to_string().contains("--overwrite"), "{e}");
    assert_eq!(std::fs::read(out.join(".bashrc")).unwrap(), b"alias ls='ls --color'\n");
    let e = Session::bind(linked.clone(), client(&out), false).await.err().expect("refused: a link");
    assert!(e.to_string().contains("symbolic link"), "{e}");
    assert!(!outside.join("linkout").exists(), "nothing was written outside the output directory");
    assert!(std::fs::symlink_metadata(out.join("linkout")).unwrap().file_type().is_symlink());

    // The same torrents download normally where nothing is in the way.
    let clean = root.join("clean");
    let seeder = harness::start(Session::bind(linked.clone(), client(&src), true).await.unwrap());
    let mut s = Session::bind(linked, client(&clean), false).await.unwrap();
    s.add_peers([seeder.addr()]);
    let h = s.handle();
    let leech = harness::start(s);
    tokio::time::timeout(Duration::from_secs(30), h.wait_complete()).await.expect("download completes");
    assert_eq!(std::fs::read(clean.join("linkout")).unwrap(), body);
    let s = Session::bind(empty, client(&clean), false).await.unwrap();
    assert!(s.handle().is_complete());
    assert_eq!(std::fs::metadata(clean.join(".bashrc")).unwrap().len(), 0);
    leech.stop().await.unwrap();
    seeder.stop().await.unwrap();
}
