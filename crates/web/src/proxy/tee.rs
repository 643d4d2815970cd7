//! The store tee: an origin body streamed to the client and, within the store's budgets, into
//! the store at the same time; committed only when complete. The origin is read only as fast
//! as the client takes the body (a short queue), and bytes queued for the client count in the
//! in-flight gauge.

use super::collapse::LeadGuard;
use super::config::ProxyConfig;
use super::handler::Proxy;
use super::policy::Stored;
use super::serve::strip_body_fields;
use super::store::{Inflight, Writer};
use crate::body::{self, Body};
use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use std::io;
use std::sync::Arc;
use std::time::Instant;

/// Chunks queued between an origin body and its client (kept short: back-pressure).
const QUEUE_CHUNKS: usize = 2;

/// The client's end of the queue from [`Proxy::store_body`]: counts what it takes out of the
/// in-flight gauge, and what it never took when dropped.
struct Queued {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    inflight: Arc<Inflight>,
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.rx.close();
        while let Ok(item) = self.rx.try_recv() {
            if let Ok(b) = item {
                self.inflight.dequeue(b.len() as u64);
            }
        }
    }
}

impl Proxy {
    /// Answers with the origin response `rp` + `incoming` while storing it as `stored`; a 304
    /// when the client's own conditionals (`req_headers`) match what is being stored.
    pub(super) fn tee(
        self: &Arc<Self>,
        mut rp: http::response::Parts,
        incoming: hyper::body::Incoming,
        stored: Stored,
        req_headers: &HeaderMap,
        guard: Option<LeadGuard>,
    ) -> Response<Body> {
        let expected =
            rp.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        // The client may answer itself from what is being stored (its own conditionals).
        let client_304 = stored.client_not_modified(req_headers);
        // A short queue: the origin is read only as fast as the client takes the body.
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(QUEUE_CHUNKS);
        let me = self.clone();
        tokio::spawn(async move {
            me.store_body(incoming, stored, expected, tx, guard).await;
        });
        if client_304 {
            rp.status = StatusCode::NOT_MODIFIED;
            strip_body_fields(&mut rp.headers);
            return Response::from_parts(rp, body::empty());
        }
        let queue = Queued { rx, inflight: self.store.inflight().clone() };
        let stream = futures_util::stream::unfold(queue, |mut q| async move {
            let item = q.rx.recv().await?;
            if let Ok(b) = &item {
                q.inflight.dequeue(b.len() as u64);
            }
            Some((item.map(hyper::body::Frame::data), q))
        });
        Response::from_parts(rp, http_body_util::StreamBody::new(stream).boxed())
    }

    /// Reads the origin body, feeding the client (while it listens) and the store; commits
    /// only a complete body.
    async fn store_body(
        self: Arc<Self>,
        mut incoming: hyper::body::Incoming,
        stored: Stored,
        expected: Option<u64>,
        tx: tokio::sync::mpsc::Sender<io::Result<Bytes>>,
        mut guard: Option<LeadGuard>,
    ) {
        let mut writer: Option<Writer> = self.store.writer(expected).await;
        let inflight = self.store.inflight().clone();
        let idle = ProxyConfig::secs(self.cfg.body_idle_timeout_secs);
        let mut client_gone = false;
        let mut complete = false;
        loop {
            let frame = match tokio::time::timeout(idle, incoming.frame()).await {
                Err(_) => {
                    let _ =
                        tx.send(Err(io::Error::new(io::ErrorKind::TimedOut, "origin body stalled"))).await;
                    break;
                }
                Ok(None) => {
                    complete = true;
                    break;
                }
                Ok(Some(Err(e))) => {
                    let _ = tx.send(Err(io::Error::other(e))).await;
                    break;
                }
                Ok(Some(Ok(f))) => f,
            };
            let Ok(data) = frame.into_data() else { continue };
            self.metrics.bytes_fetched.add(data.len() as u64);
            if let Some(w) = writer.as_mut() {
                w.write(&data).await;
                if w.failed()
                    && let Some(g) = guard.take()
                {
                    // Too large, or the in-flight budget is exhausted: waiters fetch for
                    // themselves now rather than after this (maybe slow) transfer.
                    g.uncacheable(Instant::now());
                }
            }
            if !client_gone {
                let n = data.len() as u64;
                inflight.queue(n);
                if tx.send(Ok(data)).await.is_err() {
                    inflight.dequeue(n);
                    client_gone = true;
                }
            }
            if client_gone && writer.as_ref().is_none_or(|w| w.failed()) {
                break;
            }
        }
        drop(tx);
        let Some(w) = writer else {
            if let Some(g) = guard {
                g.uncacheable(Instant::now());
            }
            return;
        };
        if !complete || expected.is_some_and(|e| e != w.written()) {
            w.abort().await;
            return;
        }
        if let Err(e) = self.store.commit(w, stored).await {
            tracing::debug!("not stored: {e}");
            if let Some(g) = guard {
                g.uncacheable(Instant::now());
            }
        }
    }
}
