//! The page's HTTP/1.1 responder: a handful of fixed routes, bounded request heads, the
//! connection limits every appnet server applies, and one SSE stream per attached page.

use super::page;
use crate::events;
use appnet_netkit::Shutdown;
use appnet_netkit::accept::{Accepted, Acceptor, ConnLimits};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc};

/// Where the page listens and how much one client may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiConfig {
    /// Listening address [default 127.0.0.1:8000].
    pub listen: SocketAddr,
    /// Open connections in all [default 64].
    pub max_connections: usize,
    /// Open connections from one address [default 32: a page holds one SSE stream and a few
    /// fetches].
    pub max_per_ip: usize,
    /// Time a connection has to send its request head [default 10 s].
    pub request_timeout: Duration,
}

impl Default for UiConfig {
    fn default() -> UiConfig {
        UiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            max_connections: 64,
            max_per_ip: 32,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// What the page asked the lab to do; the lab's owner runs these one at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run tour scene N.
    Scene(u32),
    /// From the client host `from`, resolve `name` (type A) through its local DNS server.
    Resolve { from: String, name: String },
    /// From the client host `from`, resolve the URL's host and GET the URL (http:// only).
    Fetch { from: String, url: String },
}

/// The largest request head accepted.
const MAX_HEAD: usize = 8 * 1024;

/// Serves the page on `listener` until `shutdown`; `lab_json` is the map, commands go to
/// `commands` (a full queue answers 503).
pub async fn serve(
    listener: TcpListener,
    config: UiConfig,
    lab_json: String,
    commands: mpsc::Sender<Command>,
    shutdown: Shutdown,
) {
    let limits = ConnLimits {
        max_connections: config.max_connections,
        max_per_ip: config.max_per_ip,
        request_timeout: config.request_timeout,
        idle_timeout: config.request_timeout,
    };
    let acceptor = Acceptor::with_limits(listener, limits);
    let lab_json: std::sync::Arc<str> = lab_json.into();
    while let Some(accepted) = acceptor.next(&shutdown).await {
        match accepted {
            Accepted::OverCap(mut stream, _) => {
                tokio::spawn(async move {
                    let _ = stream.write_all(&response(503, "text/plain", b"too many connections\n")).await;
                    let _ = stream.shutdown().await;
                    appnet_netkit::lines::discard_input(&mut stream, 16 * 1024, Duration::from_secs(1)).await;
                });
            }
            Accepted::Conn(stream, _, slot) => {
                let (json, commands, stop) = (lab_json.clone(), commands.clone(), shutdown.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = handle(stream, &json, &commands, &slot, &stop) => {}
                        _ = slot.closed() => {}
                        _ = stop.wait() => {}
                    }
                });
            }
        }
    }
}

/// A complete response with `Connection: close`.
fn response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nContent-Security-Policy: default-src 'self'; style-src 'self'; script-src 'self'\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// Reads a request head (up to [`MAX_HEAD`]); None when the client went away or sent too much.
async fn read_head(stream: &mut TcpStream) -> Option<Result<Vec<u8>, u16>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(Ok(buf[..end].to_vec()));
        }
        if buf.len() > MAX_HEAD {
            return Some(Err(431));
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The value of `key` in a query string (percent-decoded, `+` as space).
pub fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a request asks for, decided from its request line alone (pure, unit-tested).
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// A fixed asset: content type and body.
    Asset(&'static str, &'static str),
    /// The map and scenes.
    LabJson,
    /// The live event stream.
    Events,
    /// A command to queue.
    Do(Command),
    /// An error status.
    Error(u16),
}

/// Routes a raw request head (what the network sent, up to the blank line): the fuzz target's
/// entry point.
pub fn route_head(head: &[u8]) -> Route {
    let text = String::from_utf8_lossy(head);
    route(text.lines().next().unwrap_or(""))
}

/// Routes a request line.
pub fn route(request_line: &str) -> Route {
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Route::Error(400);
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match (method, path) {
        ("GET" | "HEAD", "/" | "/index.html") => Route::Asset("text/html; charset=utf-8", page::INDEX_HTML),
        ("GET" | "HEAD", "/app.js") => Route::Asset("text/javascript; charset=utf-8", page::APP_JS),
        ("GET" | "HEAD", "/app.css") => Route::Asset("text/css; charset=utf-8", page::APP_CSS),
        ("GET", "/lab.json") => Route::LabJson,
        ("GET", "/events") => Route::Events,
        ("POST", p) if p.starts_with("/scene/") => match p["/scene/".len()..].parse::<u32>() {
            Ok(n) if crate::tour::SCENES.iter().any(|(s, _)| *s == n) => Route::Do(Command::Scene(n)),
            _ => Route::Error(404),
        },
        ("POST", "/resolve") => {
            let from = query_param(query, "from").unwrap_or_default();
            let name = query_param(query, "name").unwrap_or_default();
            let known = page::CLIENTS.iter().any(|(c, _, _)| *c == from);
            if !known || name.is_empty() || name.len() > 253 {
                return Route::Error(400);
            }
            Route::Do(Command::Resolve { from, name })
        }
        ("POST", "/fetch") => {
            let from = query_param(query, "from").unwrap_or_default();
            let url = query_param(query, "url").unwrap_or_default();
            let known = page::CLIENTS.iter().any(|(c, _, _)| *c == from);
            if !known || !url.starts_with("http://") || url.len() > 2048 {
                return Route::Error(400);
            }
            Route::Do(Command::Fetch { from, url })
        }
        (
            _,
            "/" | "/index.html" | "/app.js" | "/app.css" | "/lab.json" | "/events" | "/resolve" | "/fetch",
        ) => Route::Error(405),
        _ => Route::Error(404),
    }
}

async fn handle(
    mut stream: TcpStream,
    lab_json: &str,
    commands: &mpsc::Sender<Command>,
    slot: &appnet_netkit::accept::ConnSlot,
    shutdown: &Shutdown,
) {
    let head = match read_head(&mut stream).await {
        None => return,
        Some(Err(status)) => {
            let _ = stream.write_all(&response(status, "text/plain", b"request head too large\n")).await;
            // Half-close and swallow what the client is still sending, so the refusal is read
            // instead of being lost to a reset.
            let _ = stream.shutdown().await;
            appnet_netkit::lines::discard_input(&mut stream, 256 * 1024, Duration::from_secs(2)).await;
            return;
        }
        Some(Ok(head)) => head,
    };
    slot.busy();
    let reply = match route_head(&head) {
        Route::Asset(ct, body) => response(200, ct, body.as_bytes()),
        Route::LabJson => response(200, "application/json", lab_json.as_bytes()),
        Route::Do(cmd) => match commands.try_send(cmd) {
            Ok(()) => response(202, "text/plain", b"queued\n"),
            Err(_) => response(503, "text/plain", b"the lab is busy with earlier commands\n"),
        },
        Route::Error(status) => response(status, "text/plain", b"no such thing here\n"),
        Route::Events => return stream_events(stream, shutdown).await,
    };
    let _ = stream.write_all(&reply).await;
}

/// Streams the bus as SSE until the client leaves; a page that falls behind is told how many
/// events it missed.
async fn stream_events(mut stream: TcpStream, shutdown: &Shutdown) {
    let mut rx = events::bus().subscribe();
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n: appnet lab events\n\n";
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let mut probe = [0u8; 64];
    loop {
        let chunk = tokio::select! {
            r = rx.recv() => match r {
                Ok(e) => format!("event: message\ndata: {}\n\n", e.to_json()),
                Err(broadcast::error::RecvError::Lagged(n)) => format!("event: lagged\ndata: {n}\n\n"),
                Err(broadcast::error::RecvError::Closed) => return,
            },
            // A keep-alive comment so dead clients are found.
            _ = tokio::time::sleep(Duration::from_secs(15)) => ": keep-alive\n\n".to_string(),
            // Anything the client sends (or its close) ends the stream.
            _ = stream.read(&mut probe) => return,
            _ = shutdown.wait() => return,
        };
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert!(matches!(route("GET / HTTP/1.1"), Route::Asset(..)));
        assert_eq!(route("POST /scene/1 HTTP/1.1"), Route::Do(Command::Scene(1)));
        assert_eq!(route("POST /scene/99 HTTP/1.1"), Route::Error(404));
        assert_eq!(route("POST /scene/x HTTP/1.1"), Route::Error(404));
        assert_eq!(
            route("POST /resolve?from=cis.poly.edu&name=www.stanford.edu HTTP/1.1"),
            Route::Do(Command::Resolve { from: "cis.poly.edu".into(), name: "www.stanford.edu".into() })
        );
        assert_eq!(route("POST /resolve?from=evil&name=x HTTP/1.1"), Route::Error(400));
        assert_eq!(route("DELETE / HTTP/1.1"), Route::Error(405));
        assert_eq!(route("GET /../../etc/passwd HTTP/1.1"), Route::Error(404));
        assert_eq!(route(""), Route::Error(400));
        assert_eq!(route("\u{0}\u{ff} \u{1}"), Route::Error(404));
    }

    #[test]
    fn junk_heads_route_to_errors() {
        for junk in
            [&b""[..], b"\xff\xfe\x00", b"GET", b"POST /resolve?from=%ff%fe&name=%", b"GET /events?\r\n\r\n"]
        {
            let r = route_head(junk);
            assert!(matches!(r, Route::Error(_) | Route::Events), "{junk:?} -> {r:?}");
        }
        let long = format!("POST /resolve?from=cis.poly.edu&name={} HTTP/1.1", "a".repeat(300));
        assert_eq!(route_head(long.as_bytes()), Route::Error(400));
    }

    #[tokio::test]
    async fn serves_the_page_the_map_and_the_event_stream() {
        use tokio::io::AsyncBufReadExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, mut rx) = mpsc::channel(1);
        let stop = Shutdown::new();
        let server =
            tokio::spawn(serve(listener, UiConfig::default(), "{\"hosts\":[]}".into(), tx, stop.clone()));
        let get = async |req: &str| {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(req.as_bytes()).await.expect("write");
            let mut out = String::new();
            s.read_to_string(&mut out).await.expect("read");
            out
        };
        let page = get("GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(page.starts_with("HTTP/1.1 200") && page.contains("<svg id=\"chart\""), "{page}");
        assert!(get("GET /lab.json HTTP/1.1\r\n\r\n").await.ends_with("{\"hosts\":[]}"));
        assert!(get("GET /nope HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 404"));
        assert!(get("POST /scene/1 HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 202"));
        assert_eq!(rx.recv().await, Some(Command::Scene(1)));
        let huge = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD + 10));
        assert!(get(&huge).await.starts_with("HTTP/1.1 431"));

        // The stream: attach, then an emitted event arrives as one SSE message.
        let s = TcpStream::connect(addr).await.expect("connect");
        let (r, mut w) = s.into_split();
        w.write_all(b"GET /events HTTP/1.1\r\n\r\n").await.expect("write");
        let mut lines = tokio::io::BufReader::new(r).lines();
        let attached =
            appnet_netkit::harness::wait_until(Duration::from_secs(5), Duration::from_millis(10), || async {
                events::bus().active()
            })
            .await;
        assert!(attached);
        let e = || {
            events::event(
                events::Endpoint::new("a", "127.0.0.1"),
                events::Endpoint::new("b", "127.0.0.2"),
                "DNS",
                "unit-test event".into(),
                vec![],
                vec![1],
                None,
            )
        };
        let mut found = false;
        for _ in 0..50 {
            events::bus().emit(e);
            let line = tokio::time::timeout(Duration::from_secs(5), lines.next_line()).await;
            let Ok(Ok(Some(line))) = line else { break };
            if line.starts_with("data: ") && line.contains("unit-test event") {
                found = true;
                break;
            }
        }
        assert!(found);
        stop.trigger();
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    }

    #[test]
    fn query_params_decode() {
        assert_eq!(query_param("a=1&name=gaia.cs%2Eumass+edu", "name").as_deref(), Some("gaia.cs.umass edu"));
        assert_eq!(query_param("name=%", "name").as_deref(), Some("%"));
        assert_eq!(query_param("name=%4", "name").as_deref(), Some("%4"));
        assert_eq!(query_param("x", "name"), None);
    }
}
