//! The HTTP/1.1 fast path: appnet's own connection loop for the common case, in front of the
//! hyper path ([`crate::http1_conn`] + hyper). It reads big chunks, takes every complete head
//! in them through the guard's check ([`crate::http1_head::parse`]), serves GET and HEAD by
//! the [`Router`] (the same routes, files, apps, counters and access log as every other
//! path), encodes the response heads itself (as hyper would, [`crate::http1_head`]) and writes
//! the responses to all the pipelined requests of one read together ([`crate::http1_send`]:
//! one `writev`, and `sendfile` for large file bodies on plain TCP, a bounded amount per turn).
//!
//! Anything else (a request with a body, another method, an upgrade, an expectation, a head
//! the guard refuses, a head still incomplete at the header timeout) is handed to the hyper
//! path with the bytes already read, for the rest of the connection: [`HandOff`]. The timers
//! are the hyper path's: the first head is due at the connection's deadline, a later head
//! within the header timeout of its first byte (handed off when late, so the hyper path
//! answers 408), an idle connection closes quietly after the idle timeout; requests are in
//! service on the connection's [`Activity`] while they are answered and written.

use crate::body::Body;
use crate::config::WebConfig;
use crate::http1_cache::{self, HeadCache, Payload};
use crate::http1_conn::Limits;
use crate::http1_head::{self, BodyLen, BodyOut, Parsed};
use crate::http1_send::{self, Pending};
use crate::http1_watch::Due;
use crate::site::{CloseAfter, ConnInfo, FileBody, Router, ServedFile};
use appnet_netkit::Shutdown;
use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderValue, header};
use http_body_util::BodyExt;
use hyper::body::Body as _;
use std::io;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::conn_activity::Activity;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;
/// Pending response bytes that make the driver write before serving more pipelined requests.
const FLUSH_AT: u64 = 256 * 1024;

/// The connection, for the hyper path: the socket, the bytes read but not served, and when the
/// head they start is due.
pub struct HandOff<IO> {
    /// The client connection.
    pub io: IO,
    /// Bytes read and not yet served (they start with a request head).
    pub buf: BytesMut,
    /// When that head must be complete (the hyper path's `first_head_by`).
    pub head_due: Instant,
}

/// The HTTP/1 limits and timers of a server's config (the same for both paths).
pub fn limits(cfg: &WebConfig) -> Limits {
    Limits {
        max_request_line: cfg.max_request_line,
        max_header_bytes: cfg.max_header_bytes,
        max_headers: cfg.max_headers,
        header_timeout: cfg.header_timeout(),
        idle_timeout: cfg.idle_timeout(),
    }
}

/// Serves an HTTP/1 connection whose first bytes are `buf` (see the module docs); returns the
/// connection when the hyper path must take it over, `None` when it is finished.
pub async fn serve<IO>(
    mut io: IO,
    mut buf: BytesMut,
    handler: Arc<Router>,
    conn: ConnInfo,
    shutdown: Shutdown,
    activity: Activity,
    first_deadline: Instant,
) -> Option<HandOff<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let limits = limits(handler.config());
    let head_limits = limits.head();
    // When the head at the front of `buf` is due; `None` while no head has started.
    let mut head_due = Some(first_deadline);
    let mut pending = Pending::default();
    let send_files = http1_send::can_send_files(&io);
    let mut cache = HeadCache::default();
    // Cached answers are checked against the thread's change notices ([`http1_watch::Due`]):
    // by the queue's readiness for the first request of a read that needed the event loop's
    // report (a plain socket, read empty before, under a worker's own runtime), else by a read.
    let seen_by = tokio::runtime::Handle::try_current()
        .ok()
        .filter(|h| send_files && h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
        .map(|h| h.id());
    let mut notices = Due::Read;
    // Whether the last read left the socket empty (it asked for more than it got).
    let mut drained = false;
    // One shutdown waiter and one timer for the connection's life: the timer is moved earlier
    // when a deadline comes sooner, and looked at again when it fires, so a busy connection
    // does not touch the timer wheel (or the shutdown waiter list) per request.
    let stop = shutdown.wait();
    tokio::pin!(stop);
    let timer = tokio::time::sleep_until(first_deadline);
    tokio::pin!(timer);
    loop {
        // Answer every complete head in the buffer.
        let mut close = false;
        while !buf.is_empty() {
            // Whole-file answers are kept per connection while the access log is off (the
            // router logs each request it answers) and no shutdown is under way.
            let caching = !handler.config().access_log && !shutdown.is_triggered();
            let second = http1_cache::second_now();
            // The same head as the last hit, byte for byte, is that hit again without a parse.
            let repeat = if caching { cache.repeat(&buf, second) } else { None };
            let mut parsed = match repeat {
                Some((len, entry)) => Parsed::Hit { len, entry },
                None => http1_head::parse(&buf, &head_limits, caching, &mut |p| cache.probe(p, second)),
            };
            if let Parsed::Hit { len, entry } = parsed {
                if repeat.is_none() {
                    cache.remember(&buf[..len], entry);
                }
                if let Some((e, file)) = cache.fresh(entry, &mut notices) {
                    buf.advance(len);
                    notices.pass();
                    head_due = None;
                    let busy = activity.enter();
                    handler.stats().count(200);
                    pending.heads.extend_from_slice(&e.head);
                    let end = pending.heads.len();
                    http1_head::with_date(|date| pending.heads[end - 33..end - 4].copy_from_slice(date));
                    match (&e.body, file) {
                        (Payload::Bytes(b), _) if !b.is_empty() => pending.push(b.clone()),
                        (Payload::File(_), Some(range)) => pending.push_file(range),
                        _ => {}
                    }
                    pending.busy.push(busy);
                    if e.close {
                        close = true;
                        break;
                    }
                    continue;
                }
                // The file changed: the router answers.
                parsed = http1_head::parse(&buf, &head_limits, false, &mut |_| None);
            }
            let fast = match parsed {
                Parsed::Partial => break,
                Parsed::HandOff | Parsed::Hit { .. } => {
                    if pending.flush(&mut io).await.is_err() {
                        return None;
                    }
                    let head_due = head_due.unwrap_or_else(|| Instant::now() + limits.header_timeout);
                    return Some(HandOff { io, buf, head_due });
                }
                Parsed::Ready(fast) => fast,
            };
            buf.advance(fast.len);
            notices.pass();
            head_due = None;
            let busy = activity.enter();
            let (version, method) = (fast.req.version(), fast.req.method().clone());
            let resp = handler.handle(fast.req, &conn).await;
            let (mut parts, body) = resp.into_parts();
            // A shutdown under way ends keep-alive (hyper's graceful shutdown does the same).
            let keep_alive = fast.keep_alive && !shutdown.is_triggered();
            let close_after = parts.extensions.get::<CloseAfter>().is_some();
            if close_after {
                // The field closes the connection (and hyper's state is left as it was).
                parts.headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            let len = if body.is_end_stream() {
                BodyLen::Empty
            } else {
                body.size_hint().exact().map_or(BodyLen::Unknown, BodyLen::Known)
            };
            let head_at = pending.heads.len();
            let enc = http1_head::with_date(|date| {
                http1_head::encode_head(
                    &mut parts,
                    version,
                    &method,
                    keep_alive,
                    len,
                    date,
                    &mut pending.heads,
                )
            });
            pending.busy.push(busy);
            let served = parts.extensions.remove::<ServedFile>();
            // On plain TCP a large file body goes from the file (sendfile), not from `body`.
            let range = match parts.extensions.remove::<FileBody>() {
                Some(f) if send_files && enc.body == BodyOut::Plain && f.len >= http1_send::SENDFILE_MIN => {
                    http1_send::open_body(&f)
                }
                _ => None,
            };
            match (fast.key, served) {
                (Some(key), Some(file))
                    if parts.status == http::StatusCode::OK
                        && !close_after
                        && matches!(enc.body, BodyOut::Plain | BodyOut::Nothing) =>
                {
                    // Kept for the next identical request: the head as encoded, the body's bytes
                    // (or, sent from the file, its length).
                    let head = Bytes::copy_from_slice(&pending.heads[head_at..]);
                    let payload = match (enc.body, range) {
                        (BodyOut::Nothing, _) => Payload::Bytes(Bytes::new()),
                        (_, Some(range)) => {
                            let len = range.len();
                            pending.push_file(range);
                            Payload::File(len)
                        }
                        _ => match body.collect().await {
                            Ok(c) => {
                                let data = c.to_bytes();
                                pending.push(data.clone());
                                Payload::Bytes(data)
                            }
                            Err(_) => return None,
                        },
                    };
                    cache.put(key, head, payload, enc.close, file, second);
                }
                _ => {
                    if let Some(range) = range {
                        pending.push_file(range);
                    } else if enc.body != BodyOut::Nothing
                        && send_body(body, enc.body, &mut pending, &mut io).await.is_err()
                    {
                        return None;
                    }
                }
            }
            if enc.close {
                close = true;
                break;
            }
            if pending.queued() >= FLUSH_AT && pending.flush(&mut io).await.is_err() {
                return None;
            }
        }
        let flushed = tokio::select! {
            biased;
            r = pending.flush(&mut io) => r,
            _ = &mut stop => match tokio::time::timeout(crate::h2srv::DRAIN, pending.flush(&mut io)).await {
                Ok(r) => r.and(Err(io::ErrorKind::Interrupted.into())),
                Err(_) => return None,
            },
        };
        if flushed.is_err() {
            return None;
        }
        if close {
            let _ = io.shutdown().await;
            return None;
        }
        // Wait for more: the head under way is due at its deadline; with none, the connection
        // may idle for the idle timeout.
        if !buf.is_empty() && head_due.is_none() {
            head_due = Some(Instant::now() + limits.header_timeout);
        }
        let due = |head_due: Option<Instant>| {
            head_due.unwrap_or_else(|| activity.last_done() + limits.idle_timeout)
        };
        let deadline = due(head_due);
        if deadline < timer.deadline() || timer.is_elapsed() {
            timer.as_mut().reset(deadline);
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let asked = buf.capacity() - buf.len();
        let read = loop {
            tokio::select! {
                biased;
                r = io.read_buf(&mut buf) => break r,
                _ = &mut stop => return None,
                _ = &mut timer => {
                    let deadline = due(head_due);
                    if deadline > Instant::now() {
                        timer.as_mut().reset(deadline);
                        continue;
                    }
                    if buf.is_empty() {
                        tracing::debug!(peer = %conn.peer, "client connection timed out");
                        return None;
                    }
                    // A late head: the hyper path answers it with 408.
                    return Some(HandOff { io, buf, head_due: deadline });
                }
            }
        };
        match read {
            Ok(0) | Err(_) => return None,
            Ok(n) => {
                notices = match seen_by {
                    Some(rt) if drained => Due::Seen(rt),
                    _ => Due::Read,
                };
                drained = n < asked;
                if head_due.is_none() {
                    head_due = Some(Instant::now() + limits.header_timeout);
                }
            }
        }
    }
}

/// Queues (or, when large, streams) a response body framed as `out`.
async fn send_body<IO: AsyncWrite + Unpin + 'static>(
    mut body: Body,
    out: BodyOut,
    pending: &mut Pending,
    io: &mut IO,
) -> io::Result<()> {
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else { continue };
        if data.is_empty() {
            continue;
        }
        if out == BodyOut::Chunked {
            pending.heads.extend_from_slice(format!("{:X}\r\n", data.len()).as_bytes());
            pending.push(data);
            pending.heads.extend_from_slice(b"\r\n");
        } else {
            pending.push(data);
        }
        if pending.queued() >= FLUSH_AT {
            pending.flush_keep_busy(io).await?;
        }
    }
    if out == BodyOut::Chunked {
        pending.heads.extend_from_slice(b"0\r\n\r\n");
    }
    Ok(())
}
