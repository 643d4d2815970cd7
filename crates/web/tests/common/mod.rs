//! Shared helpers: a temporary site, a running server, raw-socket requests with deadlines.
#![allow(dead_code)]

use appnet_netkit::harness::{Running, any_loopback, start, wait_tcp};
use appnet_web::{WebConfig, WebServer};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use appnet_netkit::harness::TempDir;

/// The textbook page: an HTML file linking a stylesheet and images, a big file, a directory.
pub fn site(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    let p = dir.path();
    std::fs::write(
        p.join("index.html"),
        "<html><head><link rel=\"stylesheet\" href=\"style.css\"></head><body><img src=\"img/a.jpg\"></body></html>\n",
    )
    .unwrap();
    std::fs::write(p.join("style.css"), "body { color: black }\n").unwrap();
    std::fs::create_dir_all(p.join("img")).unwrap();
    std::fs::write(p.join("img/a.jpg"), vec![0xffu8; 3000]).unwrap();
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(p.join("big.bin"), big).unwrap();
    std::fs::write(p.join("digits.txt"), "0123456789").unwrap();
    std::fs::create_dir_all(p.join("docs")).unwrap();
    std::fs::write(p.join("docs/readme.txt"), "read me\n").unwrap();
    dir
}

pub fn config(root: &Path) -> WebConfig {
    WebConfig { listen: any_loopback(), root: root.to_path_buf(), access_log: false, ..WebConfig::default() }
}

pub async fn serve(config: WebConfig) -> Running {
    let server = WebServer::bind(config).await.expect("bind");
    let running = start(server);
    wait_tcp(running.addr(), Duration::from_secs(5)).await.expect("ready");
    running
}

/// Sends `req` and reads until the server closes (or 10 s pass).
pub async fn raw(addr: SocketAddr, req: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of the first response in `text`.
pub fn status(text: &str) -> u16 {
    text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// A header's value from the first response head in `text` (case-insensitive name).
pub fn header<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let head = text.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The body after the first head.
pub fn body(text: &str) -> &str {
    text.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}
