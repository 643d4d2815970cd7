//! The HTTP/2 driver, on the `h2` crate directly (hyper has no server push): streams are
//! handled concurrently by the shared [`Router`], response bodies are sent under flow control,
//! HTML pages push the resources they link when the client allows push, idle connections and
//! shutdown end with a graceful GOAWAY.

use crate::body::{Body, RequestBody};
use crate::site::{ConnInfo, PushList, Router};
use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, SendStream};
use http::{HeaderValue, Request, Response, header};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// Serves one HTTP/2 connection (after TLS/ALPN or the h2c preface) until it ends.
pub async fn serve<IO>(
    io: IO,
    handler: Arc<Router>,
    conn: ConnInfo,
    shutdown: appnet_netkit::Shutdown,
    activity: crate::conn_activity::Activity,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let cfg = handler.config();
    let idle = cfg.idle_timeout();
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(cfg.h2_max_streams)
        .max_header_list_size(cfg.max_header_bytes.min(u32::MAX as usize) as u32)
        .initial_window_size(1 << 20)
        .initial_connection_window_size(4 << 20)
        .max_send_buffer_size(1 << 20);
    // Small frames are gathered per flush, big DATA frames go out in one writev each.
    let io = crate::h2_frames::H2FrameCheck::new(appnet_netkit::io::WriteCombine::new(io));
    let mut connection =
        match tokio::time::timeout(cfg.header_timeout(), builder.handshake::<_, Bytes>(io)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::debug!(peer = %conn.peer, "h2 handshake failed: {e}");
                return;
            }
            Err(_) => return,
        };
    let mut closing = false;
    let idle_timer = tokio::time::sleep(idle);
    tokio::pin!(idle_timer);
    loop {
        tokio::select! {
            next = connection.accept() => match next {
                Some(Ok((req, respond))) => {
                    idle_timer.as_mut().reset(tokio::time::Instant::now() + idle);
                    let handler = handler.clone();
                    // Busy while any stream is being answered (pushes included).
                    let activity = activity.clone();
                    let busy = activity.enter();
                    tokio::spawn(async move {
                        stream(req, respond, handler, conn, &activity).await;
                        drop(busy);
                    });
                }
                Some(Err(e)) => {
                    tracing::debug!(peer = %conn.peer, "h2 connection error: {e}");
                    break;
                }
                None => {
                    // No more streams (GOAWAY either way): keep answering PINGs and flushing
                    // until the peer closes, for a bounded time.
                    let closed = std::future::poll_fn(|cx| connection.poll_closed(cx));
                    let _ = tokio::time::timeout(idle.min(DRAIN), closed).await;
                    break;
                }
            },
            _ = shutdown.wait(), if !closing => {
                closing = true;
                connection.graceful_shutdown();
            }
            _ = &mut idle_timer, if !closing => {
                if connection.has_streams() {
                    idle_timer.as_mut().reset(tokio::time::Instant::now() + idle);
                } else {
                    closing = true;
                    connection.graceful_shutdown();
                }
            }
        }
    }
}

async fn stream(
    req: Request<h2::RecvStream>,
    mut respond: SendResponse<Bytes>,
    handler: Arc<Router>,
    conn: ConnInfo,
    activity: &crate::conn_activity::Activity,
) {
    let scheme = req.uri().scheme_str().unwrap_or(if conn.secure { "https" } else { "http" }).to_string();
    let authority = req.uri().authority().map(|a| a.to_string());
    let accept_encoding = req.headers().get(header::ACCEPT_ENCODING).cloned();
    let refused = match bad_host(&req) {
        Some(why) => Some((400, why)),
        None => req
            .headers()
            .get_all(header::EXPECT)
            .iter()
            .any(|v| !crate::http1_guard::expect_ok(v.as_bytes()))
            .then_some((417, "the only expectation supported is 100-continue")),
    };
    if let Some((status, why)) = refused {
        tracing::debug!(peer = %conn.peer, "HTTP/2 request refused: {why}");
        let resp = handler.rejected(status, why, &conn);
        let (parts, body) = resp.into_parts();
        send(respond_parts(parts), body, |head, eos| respond.send_response(head, eos)).await;
        return;
    }
    if let Err(why) = malformed(&req) {
        tracing::debug!(peer = %conn.peer, "malformed HTTP/2 request: {why}");
        respond.send_reset(Reason::PROTOCOL_ERROR);
        return;
    }
    // Read the request body before answering, so h2 checks it in full (content-length,
    // trailers) while the stream is still open; the handlers buffer bodies anyway.
    let (parts, mut recv) = req.into_parts();
    let body = if recv.is_end_stream() {
        RequestBody::Empty
    } else {
        let limit = handler.config().max_body;
        let mut buf = bytes::BytesMut::new();
        let mut too_large = false;
        while let Some(chunk) = recv.data().await {
            let Ok(chunk) = chunk else { return }; // h2 has already reset the stream
            let _ = recv.flow_control().release_capacity(chunk.len());
            if buf.len() as u64 + chunk.len() as u64 > limit {
                too_large = true;
                break;
            }
            buf.extend_from_slice(&chunk);
        }
        if !too_large && recv.trailers().await.is_err() {
            return;
        }
        if too_large {
            let resp =
                crate::site::error_page(http::StatusCode::PAYLOAD_TOO_LARGE, "request body too large", false);
            let (parts, body) = resp.into_parts();
            send(respond_parts(parts), body, |head, eos| respond.send_response(head, eos)).await;
            return;
        }
        RequestBody::Buffered(buf.freeze())
    };
    let req = Request::from_parts(parts, body);
    let resp = handler.handle(req, &conn).await;
    let (mut parts, body) = resp.into_parts();
    let push = parts.extensions.remove::<PushList>();
    // Pushes are promised before the page itself, so the client knows not to fetch them.
    let mut promised = Vec::new();
    if let (Some(PushList(paths)), Some(authority)) = (push, &authority) {
        for path in paths {
            let mut b = Request::builder().method("GET").uri(format!("{scheme}://{authority}{path}"));
            if let Some(ae) = &accept_encoding {
                b = b.header(header::ACCEPT_ENCODING, ae.clone());
            }
            let Ok(push_req) = b.body(()) else { continue };
            match respond.push_request(push_req.clone()) {
                Ok(pushed) => promised.push((push_req, pushed)),
                Err(_) => break, // the client disabled push, or the stream is gone
            }
        }
    }
    send(respond_parts(parts), body, |head, eos| respond.send_response(head, eos)).await;
    for (push_req, mut pushed) in promised {
        let handler = handler.clone();
        let busy = activity.enter();
        tokio::spawn(async move {
            let _busy = busy;
            let resp = handler.handle(push_req.map(|()| RequestBody::Empty), &conn).await;
            handler.stats().pushed.inc();
            let (parts, body) = resp.into_parts();
            send(respond_parts(parts), body, |head, eos| pushed.send_response(head, eos)).await;
        });
    }
}

/// Request shapes RFC 9113 §8 calls malformed, that h2 leaves to the application: field values
/// with leading or trailing whitespace, a Host that disagrees with :authority, CONNECT without
/// an authority.
fn malformed(req: &Request<h2::RecvStream>) -> Result<(), &'static str> {
    for value in req.headers().values() {
        let v = value.as_bytes();
        if v.first().is_some_and(|b| *b == b' ' || *b == b'\t')
            || v.last().is_some_and(|b| *b == b' ' || *b == b'\t')
        {
            return Err("field value with leading or trailing whitespace");
        }
    }
    if let (Some(host), Some(authority)) = (req.headers().get(header::HOST), req.uri().authority())
        && !host.as_bytes().eq_ignore_ascii_case(authority.as_str().as_bytes())
    {
        return Err("Host differs from :authority");
    }
    if req.method() == http::Method::CONNECT && req.uri().authority().is_none() {
        return Err("CONNECT without :authority");
    }
    Ok(())
}

/// A Host or `:authority` that is not `uri-host [":" port]` (RFC 9110 §7.2; RFC 9113 §8.3.1
/// forbids userinfo in `:authority`): the request gets 400, as over HTTP/1. More than one
/// Host is refused too.
pub(crate) fn bad_host<B>(req: &Request<B>) -> Option<&'static str> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    if hosts.next().is_some_and(|h| !crate::http1_guard::valid_host(h.as_bytes())) {
        return Some("invalid Host");
    }
    if hosts.next().is_some() {
        return Some("more than one Host");
    }
    if let Some(a) = req.uri().authority()
        && !crate::http1_guard::valid_host(a.as_str().as_bytes())
    {
        return Some("invalid :authority");
    }
    None
}

/// Strips HTTP/1 connection headers (forbidden in HTTP/2) and adds Date.
fn respond_parts(mut parts: http::response::Parts) -> Response<()> {
    for name in [header::CONNECTION, header::TRANSFER_ENCODING, header::UPGRADE] {
        parts.headers.remove(name);
    }
    parts.headers.remove("keep-alive");
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(std::time::SystemTime::now())) {
        parts.headers.insert(header::DATE, v);
    }
    parts.extensions = http::Extensions::new();
    Response::from_parts(parts, ())
}

async fn send<F>(head: Response<()>, body: Body, start: F)
where
    F: FnOnce(Response<()>, bool) -> Result<SendStream<Bytes>, h2::Error>,
{
    use hyper::body::Body as _;
    let eos = body.is_end_stream();
    let Ok(stream) = start(head, eos) else { return };
    if !eos {
        let _ = send_body(stream, body).await;
    }
}

async fn send_body(mut stream: SendStream<Bytes>, mut body: Body) -> Result<(), h2::Error> {
    use hyper::body::Body as _;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("response body failed: {e}");
                stream.send_reset(Reason::INTERNAL_ERROR);
                return Ok(());
            }
        };
        let Ok(mut data) = frame.into_data() else { continue };
        let last = body.is_end_stream();
        if data.is_empty() {
            if last {
                return stream.send_data(data, true);
            }
            continue;
        }
        loop {
            stream.reserve_capacity(data.len().max(1));
            let cap = match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
                Some(Ok(n)) => n,
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            };
            if cap == 0 && !data.is_empty() {
                continue;
            }
            let chunk = data.split_to(cap.min(data.len()));
            let done = data.is_empty();
            stream.send_data(chunk, done && last)?;
            if done {
                break;
            }
        }
        if last {
            return Ok(());
        }
    }
    stream.send_data(Bytes::new(), true)
}

/// A grace period for HTTP/2 connections to finish after GOAWAY.
pub const DRAIN: Duration = Duration::from_secs(5);
