//! The reading side of the user agent (`appnet mail fetch`): list or get the messages of a
//! mailbox over POP3 or IMAP, as a person checking their mail would.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// What went wrong while fetching.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The connection failed or timed out.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The server said no.
    #[error("the server refused: {0}")]
    Refused(String),
    /// The server's answer made no sense.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

/// One line of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Message number (POP3) or sequence number (IMAP).
    pub number: u32,
    /// Size in octets.
    pub size: u64,
    /// The From header.
    pub from: String,
    /// The Subject header.
    pub subject: String,
}

const TIMEOUT: Duration = Duration::from_secs(30);
const MAX_LINE: usize = 1 << 20;

struct Conn {
    io: BufReader<TcpStream>,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> Result<Conn, FetchError> {
        let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr)).await.map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, format!("connecting to {addr} timed out"))
        })??;
        Ok(Conn { io: BufReader::new(tcp) })
    }

    async fn line(&mut self) -> Result<Vec<u8>, FetchError> {
        let mut l = Vec::new();
        let n = tokio::time::timeout(TIMEOUT, (&mut self.io).take(MAX_LINE as u64).read_until(b'\n', &mut l))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "the server stopped answering")
            })??;
        if n == 0 {
            return Err(FetchError::Protocol("connection closed".into()));
        }
        Ok(l)
    }

    async fn send(&mut self, s: &str) -> Result<(), FetchError> {
        self.io.get_mut().write_all(s.as_bytes()).await?;
        Ok(())
    }

    async fn read_exact(&mut self, n: usize) -> Result<Vec<u8>, FetchError> {
        let mut v = vec![0u8; n];
        tokio::time::timeout(TIMEOUT, self.io.read_exact(&mut v)).await.map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "the server stopped answering")
        })??;
        Ok(v)
    }
}

fn text(l: &[u8]) -> String {
    String::from_utf8_lossy(l).trim_end().to_string()
}

// ---- POP3 ----

async fn pop3_ok(c: &mut Conn) -> Result<String, FetchError> {
    let l = text(&c.line().await?);
    if l.starts_with("+OK") { Ok(l) } else { Err(FetchError::Refused(l)) }
}

/// Reads a multi-line answer, undoing dot-stuffing; lines end in CRLF as sent.
async fn pop3_multi(c: &mut Conn) -> Result<Vec<u8>, FetchError> {
    let mut out = Vec::new();
    loop {
        let l = c.line().await?;
        if l == b".\r\n" || l == b".\n" {
            return Ok(out);
        }
        out.extend_from_slice(l.strip_prefix(b".").unwrap_or(&l));
    }
}

async fn pop3_login(addr: SocketAddr, user: &str, password: &str) -> Result<Conn, FetchError> {
    let mut c = Conn::connect(addr).await?;
    pop3_ok(&mut c).await?;
    c.send(&format!("USER {user}\r\n")).await?;
    pop3_ok(&mut c).await?;
    c.send(&format!("PASS {password}\r\n")).await?;
    pop3_ok(&mut c).await?;
    Ok(c)
}

/// Lists the maildrop (LIST, then TOP n 0 for the headers).
pub async fn pop3_list(addr: SocketAddr, user: &str, password: &str) -> Result<Vec<Summary>, FetchError> {
    let mut c = pop3_login(addr, user, password).await?;
    c.send("LIST\r\n").await?;
    pop3_ok(&mut c).await?;
    let listing = pop3_multi(&mut c).await?;
    let mut out = Vec::new();
    for line in String::from_utf8_lossy(&listing).lines() {
        let mut f = line.split_whitespace();
        let (Some(n), Some(size)) =
            (f.next().and_then(|n| n.parse().ok()), f.next().and_then(|s| s.parse().ok()))
        else {
            return Err(FetchError::Protocol(line.to_string()));
        };
        c.send(&format!("TOP {n} 0\r\n")).await?;
        pop3_ok(&mut c).await?;
        let head = pop3_multi(&mut c).await?;
        out.push(Summary { number: n, size, from: header(&head, "From"), subject: header(&head, "Subject") });
    }
    c.send("QUIT\r\n").await?;
    let _ = pop3_ok(&mut c).await;
    Ok(out)
}

/// Retrieves message `n` (CRLF line endings) and quits without deleting it.
pub async fn pop3_get(addr: SocketAddr, user: &str, password: &str, n: u32) -> Result<Vec<u8>, FetchError> {
    let mut c = pop3_login(addr, user, password).await?;
    c.send(&format!("RETR {n}\r\n")).await?;
    pop3_ok(&mut c).await?;
    let m = pop3_multi(&mut c).await?;
    c.send("QUIT\r\n").await?;
    let _ = pop3_ok(&mut c).await;
    Ok(m)
}

// ---- IMAP ----

/// Reads until the tagged response; returns every byte before it (literals included).
async fn imap_until(c: &mut Conn, tag: &str) -> Result<Vec<u8>, FetchError> {
    let mut out = Vec::new();
    loop {
        let l = c.line().await?;
        if l.starts_with(format!("{tag} ").as_bytes()) {
            let t = text(&l);
            return if t[tag.len() + 1..].starts_with("OK") { Ok(out) } else { Err(FetchError::Refused(t)) };
        }
        out.extend_from_slice(&l);
        if let Some(n) = literal_len(&l) {
            let lit = c.read_exact(n).await?;
            out.extend_from_slice(&lit);
        }
    }
}

fn literal_len(l: &[u8]) -> Option<usize> {
    let s = std::str::from_utf8(l).ok()?.trim_end();
    let inner = s.strip_suffix('}')?;
    inner.rsplit_once('{')?.1.parse().ok()
}

fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

async fn imap_login(addr: SocketAddr, user: &str, password: &str) -> Result<Conn, FetchError> {
    let mut c = Conn::connect(addr).await?;
    let greeting = text(&c.line().await?);
    if !greeting.starts_with("* OK") {
        return Err(FetchError::Refused(greeting));
    }
    c.send(&format!("f1 LOGIN {} {}\r\n", quoted(user), quoted(password))).await?;
    imap_until(&mut c, "f1").await?;
    c.send("f2 EXAMINE INBOX\r\n").await?;
    imap_until(&mut c, "f2").await?;
    Ok(c)
}

/// Lists INBOX (sizes and the From and Subject headers), without changing any flag.
pub async fn imap_list(addr: SocketAddr, user: &str, password: &str) -> Result<Vec<Summary>, FetchError> {
    let mut c = imap_login(addr, user, password).await?;
    c.send("f3 FETCH 1:* (RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)])\r\n").await?;
    let data = imap_until(&mut c, "f3").await?;
    c.send("f4 LOGOUT\r\n").await?;
    let _ = imap_until(&mut c, "f4").await;
    let mut out = Vec::new();
    // Each "* n FETCH (RFC822.SIZE s BODY[...] {len}\r\n<headers>)" block.
    let mut rest = &data[..];
    while let Some(start) = find(rest, b"* ") {
        rest = &rest[start + 2..];
        let line_end = find(rest, b"\r\n").unwrap_or(rest.len());
        let head = String::from_utf8_lossy(&rest[..line_end]).into_owned();
        let Some(num) = head.split(' ').next().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if !head.contains("FETCH") {
            continue;
        }
        let size = head
            .split("RFC822.SIZE ")
            .nth(1)
            .and_then(|s| s.split([' ', ')']).next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let lit = literal_len(&rest[..line_end.min(rest.len())]).unwrap_or(0);
        let body_start = (line_end + 2).min(rest.len());
        let headers = &rest[body_start..(body_start + lit).min(rest.len())];
        out.push(Summary {
            number: num,
            size,
            from: header(headers, "From"),
            subject: header(headers, "Subject"),
        });
        rest = &rest[(body_start + lit).min(rest.len())..];
    }
    Ok(out)
}

/// Fetches message `n` of INBOX whole (BODY.PEEK[]: its flags stay as they are).
pub async fn imap_get(addr: SocketAddr, user: &str, password: &str, n: u32) -> Result<Vec<u8>, FetchError> {
    let mut c = imap_login(addr, user, password).await?;
    c.send(&format!("f3 FETCH {n} BODY.PEEK[]\r\n")).await?;
    let data = imap_until(&mut c, "f3").await?;
    c.send("f4 LOGOUT\r\n").await?;
    let _ = imap_until(&mut c, "f4").await;
    let line_end = find(&data, b"\r\n").ok_or_else(|| FetchError::Protocol("no such message".into()))?;
    let lit = literal_len(&data[..line_end]).ok_or_else(|| FetchError::Refused(format!("no message {n}")))?;
    let start = line_end + 2;
    Ok(data.get(start..start + lit).map(<[u8]>::to_vec).unwrap_or_default())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The (unfolded) value of header `name` in a header block, or "".
fn header(block: &[u8], name: &str) -> String {
    let raw = crate::imap::mime::to_crlf(block);
    crate::imap::mime::raw_header(&raw, name)
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_lengths_and_headers() {
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {12}\r\n"), Some(12));
        assert_eq!(literal_len(b"* 1 FETCH (FLAGS ())\r\n"), None);
        assert_eq!(header(b"From: a@b\r\nSubject: hi\r\n there\r\n\r\n", "subject"), "hi there");
        assert_eq!(quoted("a\"b\\"), "\"a\\\"b\\\\\"");
    }
}
