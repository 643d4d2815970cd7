//! Answering from a stored entry as the planner decided ([`Answer`]): a 304, the whole body,
//! one byte range or a 416, from memory or from the cache directory; plus the small response
//! helpers the proxy's modules share (plain-text answers, `X-Cache` / `Cache-Status`).

use super::handler::Proxy;
use super::metrics::Outcome;
use super::plan::Answer;
use super::store::{BodyRef, Entry};
use crate::body::{self, Body};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use std::io;
use std::sync::Arc;
use std::time::SystemTime;

/// A short plain-text answer the proxy makes itself (errors, admin pages); never stored.
pub(super) fn text(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut msg = msg.into();
    msg.push('\n');
    let mut r = Response::new(body::full(msg));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The 504 for `only-if-cached` when nothing usable is stored (RFC 9111 §5.2.1.7).
pub(super) fn only_if_cached_miss() -> Response<Body> {
    text(StatusCode::GATEWAY_TIMEOUT, "504 gateway timeout: only-if-cached, and no usable stored response")
}

/// Removes the fields that describe a body (for 304 answers).
pub(super) fn strip_body_fields(h: &mut HeaderMap) {
    for name in
        [header::CONTENT_LENGTH, header::CONTENT_TYPE, header::CONTENT_RANGE, header::CONTENT_ENCODING]
    {
        h.remove(name);
    }
}

/// Adds `X-Cache` and `Cache-Status` (RFC 9211) for `outcome`.
pub(super) fn add_status(h: &mut HeaderMap, outcome: Outcome, name: &str) {
    h.insert("x-cache", outcome.x_cache());
    if let Ok(v) = HeaderValue::from_str(&outcome.cache_status(name)) {
        h.append("cache-status", v);
    }
}

impl Proxy {
    /// Answers `method` from a stored entry as `answer` says, at `now` (for `Age`).
    pub(super) async fn serve(
        &self,
        entry: &Arc<Entry>,
        method: &Method,
        answer: Answer,
        outcome: Outcome,
        now: SystemTime,
    ) -> Response<Body> {
        let mut h = entry.stored.response_headers(now);
        add_status(&mut h, outcome, &self.cfg.name);
        let len = entry.stored.meta.body_len;
        let (status, offset, count) = match answer {
            Answer::NotModified => {
                strip_body_fields(&mut h);
                let mut r = Response::new(body::empty());
                *r.status_mut() = StatusCode::NOT_MODIFIED;
                *r.headers_mut() = h;
                return r;
            }
            Answer::Unsatisfiable { len } => {
                let mut r = text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return r;
            }
            Answer::Part { start, len, content_range } => {
                if let Ok(v) = HeaderValue::from_str(&content_range) {
                    h.insert(header::CONTENT_RANGE, v);
                }
                (StatusCode::PARTIAL_CONTENT, start, len)
            }
            Answer::Whole(status) => (status, 0, len),
        };
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
        let body = if *method == Method::HEAD {
            body::empty()
        } else {
            self.metrics.bytes_saved.add(count);
            match &entry.body {
                BodyRef::Memory(b) => {
                    let mut parts = b.slices(offset, count);
                    match parts.len() {
                        0 => body::empty(),
                        1 => body::full(parts.remove(0)),
                        _ => {
                            let frames = parts.into_iter().map(|p| Ok(hyper::body::Frame::data(p)));
                            http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed()
                        }
                    }
                }
                BodyRef::Disk(path) => match open_at(path, offset).await {
                    Ok(f) => file_body(f, count),
                    Err(e) => {
                        tracing::warn!("cache directory: {} unreadable: {e}", path.display());
                        self.store.remove(&entry.stored.meta.key);
                        return text(StatusCode::SERVICE_UNAVAILABLE, "cached object vanished; retry");
                    }
                },
            }
        };
        let mut r = Response::new(body);
        *r.status_mut() = status;
        *r.headers_mut() = h;
        r
    }
}

async fn open_at(path: &std::path::Path, offset: u64) -> io::Result<tokio::fs::File> {
    use tokio::io::AsyncSeekExt;
    let mut f = tokio::fs::File::open(path).await?;
    if offset > 0 {
        f.seek(io::SeekFrom::Start(offset)).await?;
    }
    Ok(f)
}

/// Streams `len` bytes of an open file (opened before answering, so eviction cannot pull it
/// away mid-response).
fn file_body(file: tokio::fs::File, len: u64) -> Body {
    let stream = futures_util::stream::unfold((file, len), |(mut file, left)| async move {
        use tokio::io::AsyncReadExt;
        if left == 0 {
            return None;
        }
        let want = left.min(256 * 1024) as usize;
        let mut buf = vec![0u8; want];
        match file.read_exact(&mut buf).await {
            Ok(_) => Some((Ok(hyper::body::Frame::data(Bytes::from(buf))), (file, left - want as u64))),
            Err(e) => Some((Err(e), (file, 0))),
        }
    });
    http_body_util::StreamBody::new(stream).boxed()
}
