//! The tracker over real sockets: HTTP announce (compact and not), scrape, errors for bad
//! input, the status page, oversized heads, and the same swarm through BEP 15 UDP.

use appnet_netkit::harness::{self, any_loopback};
use appnet_torrent::config::TrackerConfig;
use appnet_torrent::tracker::TrackerServer;
use appnet_torrent::tracker::client::announce;
use appnet_torrent::tracker::proto::{Announce, AnnounceReply, Event};
use appnet_torrent::urlenc;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: SocketAddr, raw: &[u8]) -> (u16, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut resp)).await.unwrap().unwrap();
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").expect("header");
    let status = std::str::from_utf8(&resp[9..12]).unwrap().parse().unwrap();
    (status, resp[split + 4..].to_vec())
}

fn ann(id: u8, left: u64) -> Announce {
    Announce {
        info_hash: [0x42; 20],
        peer_id: [id; 20],
        port: 7000 + id as u16,
        uploaded: 0,
        downloaded: 0,
        left,
        event: Event::Started,
        numwant: None,
        compact: true,
        no_peer_id: false,
        key: Some(id as u32),
    }
}

#[tokio::test]
async fn http_and_udp_announce_scrape_and_errors() {
    let server =
        TrackerServer::bind(TrackerConfig { listen: any_loopback(), ..Default::default() }).await.unwrap();
    let t = harness::start(server);
    let addr = t.addr();
    let http = format!("http://{addr}/announce");
    let udp = format!("udp://{addr}/announce");
    let timeout = Duration::from_secs(5);

    let seed = announce(&http, &ann(1, 0), timeout).await.unwrap();
    assert_eq!((seed.complete, seed.incomplete, seed.peers.len()), (1, 0, 0));
    // A leecher over UDP sees the seeder that announced over HTTP.
    let leech = announce(&udp, &ann(2, 100), timeout).await.unwrap();
    assert_eq!(leech.peers.iter().map(|p| p.addr.port()).collect::<Vec<_>>(), vec![7001]);
    assert_eq!((leech.complete, leech.incomplete), (1, 1));

    // Non-compact replies carry peer ids.
    let mut a = ann(3, 100);
    a.compact = false;
    let (status, body) =
        get(addr, format!("GET /announce?{} HTTP/1.1\r\nHost: x\r\n\r\n", a.to_query()).as_bytes()).await;
    assert_eq!(status, 200);
    let reply = AnnounceReply::decode(&body).unwrap();
    assert_eq!(reply.peers.len(), 2);
    assert!(reply.peers.iter().all(|p| p.peer_id.is_some()));

    // Scrape.
    let q = format!("GET /scrape?info_hash={} HTTP/1.0\r\n\r\n", urlenc::encode(&[0x42; 20]));
    let (status, body) = get(addr, q.as_bytes()).await;
    assert_eq!(status, 200);
    assert!(body.windows(13).any(|w| w == b"8:completei1e"), "{}", String::from_utf8_lossy(&body));
    assert!(body.windows(15).any(|w| w == b"10:incompletei2"));

    // Bad input: 400 with a bencoded failure reason, and the server keeps serving.
    let (status, body) = get(addr, b"GET /announce?info_hash=short&port=1 HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, 400);
    assert!(AnnounceReply::decode(&body).unwrap_err().contains("info_hash"));
    assert_eq!(get(addr, b"GET /announce?x=%zz HTTP/1.1\r\n\r\n").await.0, 400);
    assert_eq!(get(addr, b"POST /announce HTTP/1.1\r\n\r\n").await.0, 405);
    assert_eq!(get(addr, b"GARBAGE\r\n\r\n").await.0, 400);
    let mut huge = b"GET /announce?".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 20_000));
    assert_eq!(get(addr, &huge).await.0, 431);
    // Stopped removes the peer; the status page and metrics render.
    let mut stop = ann(2, 100);
    stop.event = Event::Stopped;
    announce(&udp, &stop, timeout).await.unwrap();
    let (status, page) = get(addr, b"GET /stats HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, 200);
    let page = String::from_utf8(page).unwrap();
    assert!(page.contains(&urlenc::hex(&[0x42; 20])) && page.contains("<td>1</td><td>1</td>"), "{page}");
    let (status, metrics) = get(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&metrics).contains("tracker_announces_total 4"));
    t.stop().await.unwrap();
}

#[tokio::test]
async fn allow_list_refuses_other_torrents() {
    let cfg =
        TrackerConfig { listen: any_loopback(), allow: vec![urlenc::hex(&[7; 20])], ..Default::default() };
    let t = harness::start(TrackerServer::bind(cfg).await.unwrap());
    let url = format!("http://{}/announce", t.addr());
    let err = announce(&url, &ann(1, 0), Duration::from_secs(5)).await.unwrap_err();
    assert!(err.to_string().contains("not allowed"), "{err}");
    let mut ok = ann(1, 0);
    ok.info_hash = [7; 20];
    assert!(announce(&url, &ok, Duration::from_secs(5)).await.is_ok());
    t.stop().await.unwrap();
}
