//! Napster end to end on loopback: peers inform the directory, a search finds both copies,
//! the download fetches ranges from both and verifies the SHA-1, the directory forgets a peer
//! whose connection goes, and a download finishes with the directory dead.

use appnet_netkit::harness::{self, TempDir, wait_until};
use appnet_overlay::http::download::DownloadOptions;
use appnet_overlay::napster::client::{get, pick, search};
use appnet_overlay::napster::{DirectoryConfig, DirectoryServer, ShareConfig, Sharer};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

fn song(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn share_dir(tag: &str, data: &[u8]) -> TempDir {
    let dir = TempDir::new(tag);
    std::fs::write(dir.path().join("Hey Jude.mp3"), data).unwrap();
    std::fs::write(dir.path().join("Let It Be.mp3"), b"let it be").unwrap();
    dir
}

async fn sharer(server: SocketAddr, dir: &Path) -> harness::Running {
    let mut config = ShareConfig { server, keepalive_secs: 1, ..ShareConfig::default() };
    config.upload.listen = harness::any_loopback();
    harness::start(Sharer::bind(config, dir).await.unwrap())
}

async fn hits_for(server: SocketAddr, words: &str, n: usize) -> bool {
    wait_until(T, Duration::from_millis(20), || async move {
        search(server, words, T).await.map(|h| h.len() == n).unwrap_or(false)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hey_jude_found_by_the_directory_and_fetched_from_two_peers() {
    let data = song(700_000);
    let dir =
        DirectoryServer::bind(DirectoryConfig { listen: harness::any_loopback(), ..Default::default() })
            .await
            .unwrap();
    let directory = harness::start(dir);
    let (bob_dir, carol_dir) = (share_dir("nap-bob", &data), share_dir("nap-carol", &data));
    let bob = sharer(directory.addr(), bob_dir.path()).await;
    let carol = sharer(directory.addr(), carol_dir.path()).await;
    assert!(hits_for(directory.addr(), "hey jude", 2).await, "both peers announced Hey Jude");

    let hits = search(directory.addr(), "JUDE hey", T).await.unwrap();
    let addrs: Vec<SocketAddr> = hits.iter().map(|h| h.addr).collect();
    assert!(addrs.contains(&bob.addr()) && addrs.contains(&carol.addr()), "{addrs:?}");
    assert!(hits.iter().all(|h| h.name == "Hey Jude.mp3" && h.size == data.len() as u64));
    assert!(search(directory.addr(), "yesterday", T).await.unwrap().is_empty());

    let out = TempDir::new("nap-alice");
    // Small ranges: each source asks for one at a time, so both get some even when one connects late.
    let opts = DownloadOptions { chunk: 4 * 1024, ..DownloadOptions::default() };
    let (hit, done) = get(directory.addr(), "hey jude", out.path(), T, opts).await.unwrap();
    assert_eq!(hit.name, "Hey Jude.mp3");
    assert_eq!(std::fs::read(&done.path).unwrap(), data);
    assert_eq!(done.from.len(), 2, "ranges came from both peers: {:?}", done.from);
    // A second get refuses to replace the file.
    assert!(get(directory.addr(), "hey jude", out.path(), T, opts).await.is_err());

    // Carol leaves: her entries go with her connection.
    carol.stop().await.unwrap();
    assert!(hits_for(directory.addr(), "hey jude", 1).await, "carol's entries dropped");

    // The directory dies: what Alice already knows still downloads peer to peer.
    let hits = search(directory.addr(), "let it be", T).await.unwrap();
    directory.stop().await.unwrap();
    let (hit, sources) = pick(&hits).unwrap();
    let done = appnet_overlay::http::download(&sources, &hit.name, hit.size, hit.sha1, out.path(), opts)
        .await
        .unwrap();
    assert_eq!(std::fs::read(done.path).unwrap(), b"let it be");
    bob.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_hash_is_not_kept() {
    let data = song(10_000);
    let bob_dir = share_dir("nap-hash", &data);
    let directory = harness::start(
        DirectoryServer::bind(DirectoryConfig { listen: harness::any_loopback(), ..Default::default() })
            .await
            .unwrap(),
    );
    let bob = sharer(directory.addr(), bob_dir.path()).await;
    assert!(hits_for(directory.addr(), "hey jude", 1).await);
    let hits = search(directory.addr(), "hey jude", T).await.unwrap();
    let (hit, _) = pick(&hits).unwrap();
    // Ask Bob by index for the file but expect another hash: the bytes must not be kept.
    let src = appnet_overlay::http::Source::by_urn(hit.addr, &hit.sha1);
    let out = TempDir::new("nap-hash-out");
    let err = appnet_overlay::http::download(
        &[src],
        &hit.name,
        hit.size,
        [0; 20],
        out.path(),
        DownloadOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("do not match") || err.to_string().contains("no source"), "{err}");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0, "nothing left behind");
    bob.stop().await.unwrap();
    directory.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kazaa_one_upload_slot_queues_the_next_request_with_x_queue() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let data = song(30_000_000);
    let bob_dir = share_dir("nap-queue", &data);
    let directory = harness::start(
        DirectoryServer::bind(DirectoryConfig { listen: harness::any_loopback(), ..Default::default() })
            .await
            .unwrap(),
    );
    let mut config = ShareConfig { server: directory.addr(), keepalive_secs: 1, ..ShareConfig::default() };
    config.upload.listen = harness::any_loopback();
    config.upload.max_uploads = 1;
    config.upload.poll_min_secs = 1;
    let bob = harness::start(Sharer::bind(config, bob_dir.path()).await.unwrap());
    assert!(hits_for(directory.addr(), "hey jude", 1).await);
    let hits = search(directory.addr(), "hey jude", T).await.unwrap();
    let target = appnet_overlay::http::Source::by_urn(bob.addr(), &hits[0].sha1).target;

    // A slow reader holds the only slot (30 MB do not fit in the socket buffers).
    let mut holder = tokio::net::TcpStream::connect(bob.addr()).await.unwrap();
    holder.write_all(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut first = [0u8; 64];
    let n = holder.read(&mut first).await.unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"));

    // The next request is queued: 503 with its place.
    let mut next = tokio::net::TcpStream::connect(bob.addr()).await.unwrap();
    next.write_all(format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut reply = Vec::new();
    next.read_to_end(&mut reply).await.unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    assert!(reply.contains("X-Queue: position=1,length=1,limit=1,pollMin=1,pollMax=60"), "{reply}");

    // A downloader waits in the queue (asking again after pollMin) and gets the file once the
    // slot frees.
    let out = TempDir::new("nap-queue-out");
    let (hit, sources) = pick(&hits).unwrap();
    let (name, size, sha1) = (hit.name.clone(), hit.size, hit.sha1);
    let path = out.path().to_path_buf();
    let download = tokio::spawn(async move {
        appnet_overlay::http::download(&sources, &name, size, sha1, &path, DownloadOptions::default()).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!download.is_finished(), "queued while the slot is held");
    drop(holder);
    let done = download.await.unwrap().unwrap();
    assert_eq!(std::fs::read(done.path).unwrap().len(), data.len());
    bob.stop().await.unwrap();
    directory.stop().await.unwrap();
}
