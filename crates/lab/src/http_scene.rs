//! The tour's Web scene: the textbook's page with ten images fetched three ways over real TCP —
//! non-persistent (a connection per object), persistent (one connection, one request at a time)
//! and pipelined (one connection, the ten image requests sent back to back) — counting
//! connections and round trips the way the textbook does.

use crate::events::{self, Endpoint};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How the page was fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    NonPersistent,
    Persistent,
    Pipelined,
}

/// What one way of fetching cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub mode: Mode,
    pub connections: usize,
    pub objects: usize,
    pub bytes: usize,
    /// Round trips by the textbook's count (connection setup and request/response, no slow start).
    pub rtts: usize,
    pub elapsed: Duration,
}

const LIMIT: usize = 16 << 20;

/// The two ends of a connection for the event bus, named by address: the page names them from
/// its map (the Host header, in the fields, names the origin even when the peer is a proxy).
fn endpoints(s: &TcpStream) -> (Endpoint, Endpoint) {
    let ends = [s.local_addr(), s.peer_addr()].map(|a| a.map_or(String::new(), |a| a.to_string()));
    let ip = |a: &str| a.rsplit_once(':').map_or(a.to_string(), |(ip, _)| ip.to_string());
    let [local, peer] = ends;
    (Endpoint::new(ip(&local), &local), Endpoint::new(ip(&peer), &peer))
}

/// Puts each request in `reqs` (one or several back to back) on the event bus.
fn emit_requests(s: &TcpStream, reqs: &str) {
    events::bus().emit_all(|| {
        let (client, server) = endpoints(s);
        reqs.split_inclusive("\r\n\r\n")
            .map(|r| {
                let line = r.lines().next().unwrap_or("").to_string();
                let fields = head_fields(r);
                events::event(
                    client.clone(),
                    server.clone(),
                    "HTTP",
                    line,
                    fields,
                    r.as_bytes().to_vec(),
                    None,
                )
            })
            .collect()
    });
}

/// A request or response head as (name, value) pairs, the start line first.
fn head_fields(head: &str) -> Vec<(String, String)> {
    let mut lines = head.lines();
    let mut f = vec![("Start line".to_string(), lines.next().unwrap_or("").to_string())];
    f.extend(
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())),
    );
    f
}

async fn connect(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = if to.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

fn request(host: &str, path: &str, close: bool) -> String {
    let connection = if close { "close" } else { "keep-alive" };
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: {connection}\r\n\r\n")
}

/// Reads one response (status line, headers, Content-Length body) and returns (head, body).
async fn read_response(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Result<(String, Vec<u8>), String> {
    let started = Instant::now();
    let (head, body) = read_one(stream, pending).await?;
    events::bus().emit(|| {
        let (client, server) = endpoints(stream);
        let mut fields = head_fields(&head);
        fields.push(("Body".into(), format!("{} bytes", body.len())));
        let line = head.lines().next().unwrap_or("").to_string();
        let mut wire = head.clone().into_bytes();
        wire.extend_from_slice(b"\r\n\r\n");
        wire.extend_from_slice(&body[..body.len().min(256)]);
        let latency = Some(started.elapsed().as_secs_f64() * 1000.0);
        events::event(server, client, "HTTP", line, fields, wire, latency)
    });
    Ok((head, body))
}

async fn read_one(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Result<(String, Vec<u8>), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).into_owned();
            let length = head
                .lines()
                .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                .ok_or_else(|| format!("response without Content-Length: {head}"))?;
            if length > LIMIT {
                return Err("response too large".into());
            }
            if pending.len() >= end + 4 + length {
                let body = pending[end + 4..end + 4 + length].to_vec();
                pending.drain(..end + 4 + length);
                return Ok((head, body));
            }
        }
        if Instant::now() > deadline || pending.len() > LIMIT {
            return Err("no complete response in time".into());
        }
        let mut buf = [0u8; 16 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .map_err(|_| "timed out reading a response".to_string())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed mid-response".into());
        }
        pending.extend_from_slice(&buf[..n]);
    }
}

/// One GET from the host at `from` to `server` with Host `host` (and extra header lines, each
/// ending in CRLF); returns the response head and body.
pub async fn get_once(
    from: IpAddr,
    server: SocketAddr,
    host: &str,
    target: &str,
    extra_headers: &str,
) -> Result<(String, Vec<u8>), String> {
    let mut s = connect(from, server).await.map_err(|e| format!("cannot connect to {server}: {e}"))?;
    let req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra_headers}Connection: close\r\n\r\n");
    emit_requests(&s, &req);
    s.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
    read_response(&mut s, &mut Vec::new()).await
}

/// The value of header `name` in a response head.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
    })
}

/// The image paths a page references (`<img src="...">`), resolved against the page's path.
pub fn image_paths(page_path: &str, html: &str) -> Vec<String> {
    let base = page_path.rsplit_once('/').map_or("", |(dir, _)| dir);
    html.split("<img src=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|src| if src.starts_with('/') { src.to_string() } else { format!("{base}/{src}") })
        .collect()
}

/// Fetches the page at `path` on `server` (Host `host`) and its images, from the address `from`.
pub async fn fetch_page(
    from: IpAddr,
    server: SocketAddr,
    host: &str,
    path: &str,
    mode: Mode,
) -> Result<Fetch, String> {
    let started = Instant::now();
    let mut bytes = 0;
    let err = |e: std::io::Error| e.to_string();
    let (connections, images) = match mode {
        Mode::NonPersistent => {
            let get = async |p: &str| -> Result<Vec<u8>, String> {
                let mut s = connect(from, server).await.map_err(err)?;
                let req = request(host, p, true);
                emit_requests(&s, &req);
                s.write_all(req.as_bytes()).await.map_err(err)?;
                let (_, body) = read_response(&mut s, &mut Vec::new()).await?;
                Ok(body)
            };
            let page = get(path).await?;
            bytes += page.len();
            let images = image_paths(path, &String::from_utf8_lossy(&page));
            for img in &images {
                bytes += get(img).await?.len();
            }
            (1 + images.len(), images.len())
        }
        Mode::Persistent | Mode::Pipelined => {
            let mut s = connect(from, server).await.map_err(err)?;
            let mut pending = Vec::new();
            let req = request(host, path, false);
            emit_requests(&s, &req);
            s.write_all(req.as_bytes()).await.map_err(err)?;
            let (_, page) = read_response(&mut s, &mut pending).await?;
            bytes += page.len();
            let images = image_paths(path, &String::from_utf8_lossy(&page));
            if mode == Mode::Pipelined {
                let all: String = images.iter().map(|p| request(host, p, false)).collect();
                emit_requests(&s, &all);
                s.write_all(all.as_bytes()).await.map_err(err)?;
                for _ in &images {
                    bytes += read_response(&mut s, &mut pending).await?.1.len();
                }
            } else {
                for img in &images {
                    let req = request(host, img, false);
                    emit_requests(&s, &req);
                    s.write_all(req.as_bytes()).await.map_err(err)?;
                    bytes += read_response(&mut s, &mut pending).await?.1.len();
                }
            }
            (1, images.len())
        }
    };
    // The textbook's count: each connection costs one RTT to set up, each request/response one
    // RTT; pipelining sends all image requests in one RTT.
    let rtts = match mode {
        Mode::NonPersistent => 2 * (1 + images),
        Mode::Persistent => 2 + images,
        Mode::Pipelined => 2 + usize::from(images > 0),
    };
    Ok(Fetch { mode, connections, objects: 1 + images, bytes, rtts, elapsed: started.elapsed() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_paths_resolve_against_the_page() {
        let html = "<img src=\"pic1.jpg\" alt=\"x\"><img src=\"/logo.jpg\">";
        assert_eq!(
            image_paths("/someDepartment/home.index", html),
            vec!["/someDepartment/pic1.jpg", "/logo.jpg"]
        );
    }
}
