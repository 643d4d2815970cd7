//! The Napster client: step 2 (ask the directory) and step 3 (fetch from a peer over HTTP).
//! The directory connection is closed before the download starts, so a download keeps going
//! when the directory dies.

use super::wire::{Command, Hit, Reply};
use crate::http::download::{DownloadOptions, Downloaded};
use crate::http::{DownloadError, Source, download};
use appnet_netkit::lines::{Line, read_line_bounded};
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Longest reply line read from the directory.
const MAX_REPLY: usize = 4096;
/// Most hits read from one search.
const MAX_HITS: usize = 10_000;

/// Why a search or download failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The directory could not be reached or broke the exchange.
    #[error("directory {0}: {1}")]
    Directory(SocketAddr, io::Error),
    /// The directory refused the search.
    #[error("directory refused: {0} {1}")]
    Refused(u16, String),
    /// Nothing matched.
    #[error("no peer shares a file matching {0:?}")]
    NotFound(String),
    /// The transfer failed.
    #[error(transparent)]
    Download(#[from] DownloadError),
}

/// Asks the directory at `server` for `keywords` (step 2).
pub async fn search(server: SocketAddr, keywords: &str, timeout: Duration) -> Result<Vec<Hit>, ClientError> {
    let err = |e| ClientError::Directory(server, e);
    let result = tokio::time::timeout(timeout, async {
        let stream = TcpStream::connect(server).await.map_err(err)?;
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let cmd = Command::Search(keywords.to_string());
        write.write_all(format!("{cmd}\r\nQUIT\r\n").as_bytes()).await.map_err(err)?;
        let mut hits = Vec::new();
        let mut line = Vec::new();
        loop {
            match read_line_bounded(&mut reader, &mut line, MAX_REPLY).await.map_err(err)? {
                Line::Complete => {}
                _ => return Err(err(io::Error::new(io::ErrorKind::UnexpectedEof, "reply cut short"))),
            }
            match Reply::parse(&line).map_err(|e| err(io::Error::new(io::ErrorKind::InvalidData, e)))? {
                Reply::Hit(h) if hits.len() < MAX_HITS => hits.push(h),
                Reply::Hit(_) => {}
                Reply::End(_) => return Ok(hits),
                Reply::Err(code, text) => return Err(ClientError::Refused(code, text)),
                _ => return Err(err(io::Error::new(io::ErrorKind::InvalidData, "unexpected reply"))),
            }
        }
    })
    .await;
    result.unwrap_or_else(|_| Err(err(io::Error::new(io::ErrorKind::TimedOut, "no answer"))))
}

/// The file to fetch among `hits`: the content (SHA-1) offered by the most peers, first
/// seen on ties; with every peer that offers it as a source.
pub fn pick(hits: &[Hit]) -> Option<(&Hit, Vec<Source>)> {
    let best = hits.iter().max_by_key(|h| {
        let copies = hits.iter().filter(|o| o.sha1 == h.sha1 && o.size == h.size).count();
        // max_by_key keeps the last maximum: rank earlier hits higher on ties.
        (copies, std::cmp::Reverse(hits.iter().position(|o| std::ptr::eq(o, *h))))
    })?;
    let mut sources: Vec<Source> = Vec::new();
    for h in hits.iter().filter(|o| o.sha1 == best.sha1 && o.size == best.size) {
        let s = Source::by_urn(h.addr, &h.sha1);
        if !sources.contains(&s) {
            sources.push(s);
        }
    }
    Some((best, sources))
}

/// Searches, picks a file, and downloads it from every peer that has it into `out_dir`
/// (step 3), verified by SHA-1.
pub async fn get(
    server: SocketAddr,
    keywords: &str,
    out_dir: &Path,
    timeout: Duration,
    opts: DownloadOptions,
) -> Result<(Hit, Downloaded), ClientError> {
    let hits = search(server, keywords, timeout).await?;
    let (hit, sources) = pick(&hits).ok_or_else(|| ClientError::NotFound(keywords.to_string()))?;
    tracing::info!(name = %hit.name, sources = sources.len(), "fetching over HTTP from the peers");
    let done = download(&sources, &hit.name, hit.size, hit.sha1, out_dir, opts).await?;
    Ok((hit.clone(), done))
}
