//! A sharing peer: serves its directory's files over HTTP and keeps one connection to the
//! Napster directory open (step 1: HELLO with its HTTP address, one ADD per file, then PINGs).
//! When the directory goes away the files stay available over HTTP and the peer announces
//! them again once the directory is back.

use super::config::ShareConfig;
use super::wire::{Command, Reply};
use crate::http::{UploadCtx, UploadServer};
use crate::index::ShareIndex;
use appnet_netkit::lines::{Line, read_line_bounded};
use appnet_netkit::{BoxError, Service, Shutdown};
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Longest directory reply line read.
const MAX_REPLY: usize = 4096;

/// A bound sharing peer.
pub struct Sharer {
    upload: UploadServer,
    index: Arc<ShareIndex>,
    config: ShareConfig,
}

impl Sharer {
    /// Scans `dir` (hashing every file) and binds the HTTP side.
    pub async fn bind(config: ShareConfig, dir: &Path) -> io::Result<Sharer> {
        let dir = dir.to_path_buf();
        let index =
            tokio::task::spawn_blocking(move || ShareIndex::scan(&dir)).await.map_err(io::Error::other)??;
        let index = Arc::new(index);
        let upload = UploadServer::bind(UploadCtx::new(index.clone(), config.upload.clone())).await?;
        Ok(Sharer { upload, index, config })
    }

    /// The files shared.
    pub fn index(&self) -> &ShareIndex {
        &self.index
    }
}

impl Service for Sharer {
    fn local_addr(&self) -> SocketAddr {
        self.upload.local_addr()
    }

    async fn run(self, shutdown: Shutdown) -> Result<(), BoxError> {
        let http_addr = self.upload.local_addr();
        let announcer = shutdown.spawn(announce_loop(
            self.config.clone(),
            http_addr,
            self.index.clone(),
            shutdown.clone(),
        ));
        let served = self.upload.run(shutdown.child()).await;
        shutdown.trigger();
        let _ = announcer.await;
        served
    }
}

/// Keeps the directory informed until shutdown, reconnecting every `keepalive_secs` when it
/// is unreachable.
async fn announce_loop(
    config: ShareConfig,
    http_addr: SocketAddr,
    index: Arc<ShareIndex>,
    shutdown: Shutdown,
) {
    let every = Duration::from_secs(config.keepalive_secs.max(1));
    let mut was_up = false;
    while !shutdown.is_triggered() {
        match announce(&config, http_addr, &index, every, &shutdown, &mut was_up).await {
            Ok(()) => return,
            Err(e) if was_up => {
                tracing::warn!(server = %config.server, "lost the directory ({e}); files stay available over HTTP on {http_addr}; reconnecting");
                was_up = false;
            }
            Err(e) => tracing::debug!(server = %config.server, "directory unreachable: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait() => return,
        }
    }
}

/// One directory session: HELLO, the ADDs, then PING/PONG until the connection fails (`Err`)
/// or shutdown (`Ok`).
async fn announce(
    config: &ShareConfig,
    http_addr: SocketAddr,
    index: &ShareIndex,
    every: Duration,
    shutdown: &Shutdown,
    was_up: &mut bool,
) -> io::Result<()> {
    let timeout = Duration::from_secs(10);
    let stream = tokio::time::timeout(timeout, TcpStream::connect(config.server))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut out = format!("{}\r\n", Command::Hello(http_addr));
    for f in index.files() {
        let add = Command::Add { size: f.size, sha1: f.sha1, name: f.name.clone() };
        out.push_str(&format!("{add}\r\n"));
    }
    write.write_all(out.as_bytes()).await?;
    let mut line = Vec::new();
    match next_reply(&mut reader, &mut line, timeout).await? {
        Reply::Ok(_) => {}
        other => return Err(io::Error::other(format!("directory refused HELLO: {other}"))),
    }
    let mut added = 0;
    for f in index.files() {
        match next_reply(&mut reader, &mut line, timeout).await? {
            Reply::Ok(_) => added += 1,
            other => tracing::warn!(name = %f.name, "directory refused the entry: {other}"),
        }
    }
    *was_up = true;
    tracing::info!(server = %config.server, files = added, "informed the directory; serving HTTP on {http_addr}");
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait() => {
                let _ = write.write_all(b"QUIT\r\n").await;
                return Ok(());
            }
        }
        write.write_all(b"PING\r\n").await?;
        match next_reply(&mut reader, &mut line, timeout).await? {
            Reply::Pong => {}
            other => return Err(io::Error::other(format!("unexpected reply to PING: {other}"))),
        }
    }
}

async fn next_reply<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    timeout: Duration,
) -> io::Result<Reply> {
    match tokio::time::timeout(timeout, read_line_bounded(reader, line, MAX_REPLY)).await {
        Ok(Ok(Line::Complete)) => {
            Reply::parse(line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        }
        Ok(Ok(_)) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "directory closed the connection")),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "directory did not answer")),
    }
}
