//! The HTTP/2 driver on appnet's own core ([`crate::h2core`]): one task per connection reads
//! the socket into the core, answers each request inline (a static file's answer is ready at
//! once; the apps' futures are polled in the same task, no task per stream), pulls response
//! bodies as the streams' windows open, and writes each batch of frames with one `writev`.

use crate::body::{Body, RequestBody};
use crate::conn_activity::{Activity, InService};
use crate::h2core::frame::Reason;
use crate::h2core::{Conn, Event, Limits};
use crate::site::{ConnInfo, PushList, Router};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use http::{HeaderValue, Request, Response, header};
use hyper::body::Body as _;
use std::collections::HashMap;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

mod fair;
mod memo;

/// Payload bytes of DATA the core may put in one write batch.
const BATCH: usize = 256 * 1024;
/// Read buffer size.
const READ_BUF: usize = 64 * 1024;
/// The most a connection's socket may hold unsent (`TCP_NOTSENT_LOWAT`, set when a connection
/// turns out to be HTTP/2). Without it the kernel takes whatever fits its autotuned send
/// buffer, so an answer the RFC 9218 scheduler puts first waits behind megabytes the socket
/// already took (4.5 MB of a 5 MB low-urgency body in the test, under 1 MB with the cap); with
/// it the rest waits here, in priority order. Measured in docs/web-server.md ("Speed"): 1 MB
/// files over 64 connections of 10 streams also get a lower p99 and more req/s.
pub const NOTSENT_LOWAT: u32 = 512 * 1024;

type Answer = Pin<Box<dyn Future<Output = (u32, Response<Body>, PushCtx)> + Send>>;

/// What a pushed request needs from the request that led to it, and the memo key of a
/// request whose answer may be memoized.
struct PushCtx {
    scheme: &'static str,
    authority: Option<String>,
    accept_encoding: Option<HeaderValue>,
    memo: Option<memo::Key>,
}

/// Serves one HTTP/2 connection (after TLS/ALPN or the h2c preface) until it ends.
pub async fn serve<IO>(
    io: IO,
    handler: Arc<Router>,
    conn: ConnInfo,
    shutdown: appnet_netkit::Shutdown,
    activity: Activity,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let cfg = handler.config();
    let limits = Limits {
        max_streams: cfg.h2_max_streams,
        max_header_list: cfg.max_header_bytes,
        max_body: cfg.max_body,
        ..Limits::default()
    };
    let idle = cfg.idle_timeout();
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut d = Driver {
        core: Conn::new(limits, Instant::now()),
        handler: handler.clone(),
        conn,
        answers: FuturesUnordered::new(),
        bodies: HashMap::new(),
        date: DateCache::default(),
        memo: memo::Memo::default(),
        memo_on: !cfg.access_log,
        batch_second: None,
    };
    let mut out: Vec<Bytes> = Vec::new();
    let mut rbuf = BytesMut::with_capacity(READ_BUF);
    let mut busy: Option<InService> = None;
    let mut read_open = true;
    let idle_timer = tokio::time::sleep(idle);
    tokio::pin!(idle_timer);
    let mut drain_by: Option<tokio::time::Instant> = None;
    let first_deadline = tokio::time::Instant::now() + cfg.header_timeout();
    // One timer for the first request's deadline, then the drain after GOAWAY (a timer made
    // per loop turn would cost a timer-wheel insertion per batch).
    let deadline_timer = tokio::time::sleep_until(first_deadline);
    tokio::pin!(deadline_timer);
    // Polled until it fires once: after that GOAWAY has gone out and the branch is off.
    let stop = shutdown.wait();
    tokio::pin!(stop);
    let mut last_request = tokio::time::Instant::now();
    let mut got_request = false;
    let fair = fair::Account::join();
    loop {
        if out.is_empty() {
            d.core.take_output(BATCH, &mut out);
        }
        // Output waits while this connection is too far ahead of its worker's others.
        let may_write = if out.is_empty() {
            fair.idle();
            false
        } else {
            fair.may_write()
        };
        let working = d.core.open_streams() > 0 || !d.answers.is_empty();
        if working {
            if busy.is_none() {
                busy = Some(activity.enter());
            }
        } else {
            busy = None;
        }
        if out.is_empty() {
            if d.core.is_failed() || (!read_open && !working) {
                break;
            }
            // After the client's GOAWAY the connection stays up (it may still PING) until the
            // client closes it or it idles out.
            if d.core.goaway_sent() && !working {
                break;
            }
        }
        if d.core.goaway_sent() && drain_by.is_none() {
            let at = tokio::time::Instant::now() + crate::h2srv::DRAIN;
            drain_by = Some(at);
            deadline_timer.as_mut().reset(if got_request { at } else { at.min(first_deadline) });
        }
        let wants_body = !d.bodies.is_empty() && d.bodies.keys().any(|id| d.core.wants_data(*id));
        tokio::select! {
            r = write_batch(&mut wr, &mut out), if may_write => match r {
                Ok(n) => fair.wrote(n),
                Err(_) => break,
            },
            _ = fair.held(), if !out.is_empty() && !may_write => {}
            r = rd.read_buf(&mut rbuf), if read_open && !d.core.is_failed() => match r {
                Ok(0) | Err(_) => read_open = false,
                Ok(_) => {
                    d.core.recv_buf(&mut rbuf, Instant::now());
                    if rbuf.capacity() < READ_BUF {
                        rbuf.reserve(READ_BUF);
                    }
                    if d.events() {
                        got_request = true;
                        last_request = tokio::time::Instant::now();
                    }
                }
            },
            Some((id, resp, ctx)) = d.answers.next(), if !d.answers.is_empty() => {
                d.respond(id, resp, ctx);
            }
            (id, frame) = poll_bodies(&mut d.bodies, &d.core), if wants_body => {
                d.body_frame(id, frame);
            }
            _ = &mut stop, if !d.core.goaway_sent() => d.core.shutdown(),
            _ = &mut idle_timer, if !d.core.goaway_sent() => {
                let quiet_until = last_request + idle;
                if working || quiet_until > tokio::time::Instant::now() {
                    let now = tokio::time::Instant::now();
                    idle_timer.as_mut().reset(if working { now + idle } else { quiet_until });
                } else {
                    d.core.shutdown();
                }
            }
            _ = &mut deadline_timer, if drain_by.is_some() || !got_request => {
                if drain_by.is_some() || !working {
                    break;
                }
                got_request = true;
            }
        }
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), wr.shutdown()).await;
}

/// Writes the batch with one `writev` (as much as the socket takes), drops what went out and
/// says how many bytes that was.
async fn write_batch<W: AsyncWrite + Unpin>(wr: &mut W, out: &mut Vec<Bytes>) -> io::Result<usize> {
    let n = {
        let slices: Vec<IoSlice<'_>> = out.iter().take(512).map(|b| IoSlice::new(b)).collect();
        wr.write_vectored(&slices).await?
    };
    if n == 0 {
        return Err(io::ErrorKind::WriteZero.into());
    }
    let mut left = n;
    let mut done = 0;
    for b in out.iter_mut() {
        if left >= b.len() {
            left -= b.len();
            done += 1;
        } else {
            b.advance(left);
            break;
        }
    }
    out.drain(..done);
    if out.is_empty() {
        wr.flush().await?;
    }
    Ok(n)
}

/// Waits for the next frame of any body whose stream wants more.
async fn poll_bodies(
    bodies: &mut HashMap<u32, Body>,
    core: &Conn,
) -> (u32, Option<Result<hyper::body::Frame<Bytes>, io::Error>>) {
    std::future::poll_fn(|cx: &mut Context<'_>| {
        for (&id, body) in bodies.iter_mut() {
            if !core.wants_data(id) {
                continue;
            }
            if let Poll::Ready(f) = Pin::new(body).poll_frame(cx) {
                return Poll::Ready((id, f));
            }
        }
        Poll::Pending
    })
    .await
}

struct Driver {
    core: Conn,
    handler: Arc<Router>,
    conn: ConnInfo,
    answers: FuturesUnordered<Answer>,
    bodies: HashMap<u32, Body>,
    date: DateCache,
    memo: memo::Memo,
    /// Memoized answers skip the router, so only without an access log.
    memo_on: bool,
    /// The second the requests taken in this batch of events arrived in (one clock read for
    /// all of them, at the first that looks in the memo).
    batch_second: Option<u64>,
}

impl Driver {
    /// Takes the core's events; true if a request arrived.
    fn events(&mut self) -> bool {
        let mut any = false;
        self.batch_second = None;
        while let Some(ev) = self.core.poll_event() {
            match ev {
                Event::Request { stream, req } => {
                    any = true;
                    self.request(stream, req);
                }
                Event::Refuse { stream, status, why } => {
                    any = true;
                    tracing::debug!(peer = %self.conn.peer, "HTTP/2 request refused: {why}");
                    let resp = self.handler.rejected(status, why, &self.conn);
                    self.respond(
                        stream,
                        resp,
                        PushCtx { scheme: "http", authority: None, accept_encoding: None, memo: None },
                    );
                }
                Event::Cancelled { stream } => {
                    self.bodies.remove(&stream);
                }
            }
        }
        any
    }

    /// What a push from this request needs (made only for requests the router answers).
    fn push_ctx(&self, req: &Request<Bytes>) -> PushCtx {
        PushCtx {
            scheme: if self.conn.secure { "https" } else { "http" },
            authority: req.uri().authority().map(|a| a.to_string()),
            accept_encoding: req.headers().get(header::ACCEPT_ENCODING).cloned(),
            memo: None,
        }
    }

    fn request(&mut self, stream: u32, req: Request<Bytes>) {
        let refused = match crate::h2srv::bad_host(&req) {
            Some(why) => Some((400, why)),
            None => req
                .headers()
                .get_all(header::EXPECT)
                .iter()
                .any(|v| !crate::http1_guard::expect_ok(v.as_bytes()))
                .then_some((417, "the only expectation supported is 100-continue")),
        };
        if let Some((status, why)) = refused {
            tracing::debug!(peer = %self.conn.peer, "HTTP/2 request refused: {why}");
            let resp = self.handler.rejected(status, why, &self.conn);
            let ctx = self.push_ctx(&req);
            return self.respond(stream, resp, ctx);
        }
        if let (Some(host), Some(authority)) = (req.headers().get(header::HOST), req.uri().authority())
            && !host.as_bytes().eq_ignore_ascii_case(authority.as_str().as_bytes())
        {
            // RFC 9113 §8.3.1: malformed.
            tracing::debug!(peer = %self.conn.peer, "malformed HTTP/2 request: Host differs from :authority");
            return self.core.reset(stream, Reason::Protocol);
        }
        let mut memo_key = None;
        if self.memo_on {
            if !matches!(*req.method(), http::Method::GET | http::Method::HEAD) {
                self.memo.clear(); // it may change files
            } else if let Some(key) = memo::KeyRef::of(&req, req.body().is_empty()) {
                let second = *self.batch_second.get_or_insert_with(|| self.date.second());
                if let Some(a) = self.memo.get(key, second) {
                    self.handler.stats().count(200);
                    let empty = a.body.is_empty();
                    let fields = a.fields.iter().map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
                    if self.core.send_cached_headers(stream, 200, fields, &mut a.head, empty) && !empty {
                        self.core.send_data(stream, a.body.clone(), true);
                    }
                    return;
                }
                memo_key = Some(key.to_owned());
            }
        }
        let mut ctx = self.push_ctx(&req);
        ctx.memo = memo_key;
        let req = req.map(|b| if b.is_empty() { RequestBody::Empty } else { RequestBody::Buffered(b) });
        self.start(stream, req, ctx);
    }

    /// Runs the handler: a static file's answer is ready on the first poll and goes out at
    /// once; anything still pending is polled with the others.
    fn start(&mut self, stream: u32, req: Request<RequestBody>, ctx: PushCtx) {
        let handler = self.handler.clone();
        let conn = self.conn;
        let mut fut: Answer = Box::pin(async move {
            let resp = handler.handle(req, &conn).await;
            (stream, resp, ctx)
        });
        match (&mut fut).now_or_never() {
            Some((id, resp, ctx)) => self.respond(id, resp, ctx),
            None => self.answers.push(fut),
        }
    }

    /// Memoizes a static file's answer and sends it, or gives the response back.
    fn try_memo(&mut self, id: u32, key: memo::Key, resp: Response<Body>) -> Option<Response<Body>> {
        let h = resp.headers();
        let len = h.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if resp.status() != http::StatusCode::OK
            || !h.contains_key(header::ETAG)
            || h.contains_key(header::SET_COOKIE)
            || resp.extensions().get::<PushList>().is_some()
            || len.is_none()
            || resp.body().size_hint().exact() != len
        {
            return Some(resp);
        }
        let (parts, mut body) = resp.into_parts();
        let data = if len == Some(0) {
            Bytes::new()
        } else {
            let Some(first) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).now_or_never()
            else {
                return Some(Response::from_parts(parts, body)); // not ready: nothing taken
            };
            match first {
                Some(Ok(f)) if f.is_data() && body.is_end_stream() => match f.into_data() {
                    Ok(d) if Some(d.len() as u64) == len => d,
                    Ok(d) => {
                        return Some(Response::from_parts(
                            parts,
                            Replay::body(Some(Ok(hyper::body::Frame::data(d))), body),
                        ));
                    }
                    Err(f) => return Some(Response::from_parts(parts, Replay::body(Some(Ok(f)), body))),
                },
                // Anything else goes out as it came, the frame taken first.
                first => return Some(Response::from_parts(parts, Replay::body(first, body))),
            }
        };
        let mut fields = Vec::with_capacity(parts.headers.len() + 1);
        let mut current: Option<header::HeaderName> = None;
        for (name, value) in parts.headers {
            if name.is_some() {
                current = name; // None: another value of the name before
            }
            let Some(name) = current.clone() else { continue };
            if matches!(name, header::DATE | header::CONNECTION | header::TRANSFER_ENCODING | header::UPGRADE)
                || name.as_str() == "keep-alive"
                || name.as_str() == "proxy-connection"
            {
                continue;
            }
            fields.push((name, value));
        }
        fields.push((header::DATE, self.date.get()));
        let second = self.date.at;
        let answer = self.memo.put(key, second, memo::Answer::new(fields, data));
        let empty = answer.body.is_empty();
        let fields = answer.fields.iter().map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
        if self.core.send_cached_headers(id, 200, fields, &mut answer.head, empty) && !empty {
            self.core.send_data(id, answer.body.clone(), true);
        }
        None
    }

    fn respond(&mut self, id: u32, resp: Response<Body>, mut ctx: PushCtx) {
        let resp = match ctx.memo.take() {
            Some(key) => match self.try_memo(id, key, resp) {
                Some(resp) => resp,
                None => return,
            },
            None => resp,
        };
        let (mut parts, body) = resp.into_parts();
        let push = parts.extensions.remove::<PushList>();
        for name in [header::CONNECTION, header::TRANSFER_ENCODING, header::UPGRADE] {
            parts.headers.remove(name);
        }
        parts.headers.remove("keep-alive");
        parts.headers.insert(header::DATE, self.date.get());
        // Pushes are promised before the page itself, so the client knows not to fetch them.
        let mut promised = Vec::new();
        if let (Some(PushList(paths)), Some(authority)) = (push, &ctx.authority) {
            for path in paths {
                let mut fields: Vec<(&[u8], &[u8])> = vec![
                    (b":method", b"GET"),
                    (b":scheme", ctx.scheme.as_bytes()),
                    (b":authority", authority.as_bytes()),
                    (b":path", path.as_bytes()),
                ];
                if let Some(ae) = &ctx.accept_encoding {
                    fields.push((b"accept-encoding", ae.as_bytes()));
                }
                let Some(pid) = self.core.push_promise(id, &fields) else { break };
                let mut b =
                    Request::builder().method("GET").uri(format!("{}://{authority}{path}", ctx.scheme));
                if let Some(ae) = &ctx.accept_encoding {
                    b = b.header(header::ACCEPT_ENCODING, ae.clone());
                }
                match b.body(RequestBody::Empty) {
                    Ok(req) => promised.push((pid, req)),
                    Err(_) => self.core.reset(pid, Reason::Internal),
                }
            }
        }
        let eos = body.is_end_stream();
        if self.core.send_headers(id, parts.status.as_u16(), &parts.headers, eos) && !eos {
            self.pump(id, body);
        }
        for (pid, req) in promised {
            self.handler.stats().pushed.inc();
            let ctx = PushCtx { scheme: ctx.scheme, authority: None, accept_encoding: None, memo: None };
            self.start(pid, req, ctx);
        }
    }

    /// Moves the body's ready frames into the core while its stream wants more; a body with
    /// nothing ready yet is polled later.
    fn pump(&mut self, id: u32, mut body: Body) {
        while self.core.wants_data(id) {
            match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).now_or_never() {
                Some(frame) => {
                    if !self.frame_in(id, frame, &body) {
                        return;
                    }
                }
                None => break,
            }
        }
        if self.core.is_sending(id) {
            self.bodies.insert(id, body);
        }
    }

    fn body_frame(&mut self, id: u32, frame: Option<Result<hyper::body::Frame<Bytes>, io::Error>>) {
        let Some(body) = self.bodies.remove(&id) else { return };
        if self.frame_in(id, frame, &body) {
            self.pump(id, body);
        }
    }

    /// Queues one body frame; false when the body is over (ended, failed, or the stream gone).
    fn frame_in(
        &mut self,
        id: u32,
        frame: Option<Result<hyper::body::Frame<Bytes>, io::Error>>,
        body: &Body,
    ) -> bool {
        match frame {
            None => {
                self.core.send_data(id, Bytes::new(), true);
                false
            }
            Some(Err(e)) => {
                tracing::warn!("response body failed: {e}");
                self.core.reset(id, Reason::Internal);
                false
            }
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else { return true };
                let last = body.is_end_stream();
                self.core.send_data(id, data, last) && !last
            }
        }
    }
}

/// The Date header, formatted once a second.
#[derive(Default)]
struct DateCache {
    at: u64,
    value: Option<HeaderValue>,
}

impl DateCache {
    /// The current second since the epoch (the value is formatted again when it changes).
    fn second(&mut self) -> u64 {
        let now = SystemTime::now();
        let secs = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if self.at != secs || self.value.is_none() {
            self.at = secs;
            self.value = HeaderValue::from_str(&httpdate::fmt_http_date(now)).ok();
        }
        secs
    }

    /// This second's `Date` (the second is then in `at`).
    fn get(&mut self) -> HeaderValue {
        self.second();
        self.value.clone().unwrap_or_else(|| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
    }
}

/// A body whose first frame was already taken (to look at it): that frame, then the rest.
struct Replay {
    first: Option<Option<Result<hyper::body::Frame<Bytes>, io::Error>>>,
    rest: Body,
}

impl Replay {
    fn body(first: Option<Result<hyper::body::Frame<Bytes>, io::Error>>, rest: Body) -> Body {
        use http_body_util::BodyExt;
        Replay { first: Some(first), rest }.boxed()
    }
}

impl hyper::body::Body for Replay {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, io::Error>>> {
        match self.first.take() {
            Some(None) => Poll::Ready(None), // the body had ended
            Some(first) => Poll::Ready(first),
            None => Pin::new(&mut self.rest).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.first {
            Some(None) => true,
            Some(Some(_)) => false,
            None => self.rest.is_end_stream(),
        }
    }
}
