//! The proxy's request accounting on its responses: a response body keeps its request in
//! service ([`Guarded`]) until hyper has written and dropped it, so the connection's timers
//! (the shared HTTP/1 wrapper, [`crate::http1_conn::Http1Conn`], which also lets h2c through)
//! and netkit's connection policy never cut a request in progress. For CONNECT the tunnel
//! holds it instead, until the tunnel ends.

pub use crate::conn_activity::{Activity, InService};
pub use crate::http1_conn::GRACE;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A response body that keeps its request [`InService`] until hyper has written and dropped it.
pub struct Guarded<B> {
    body: B,
    _busy: Option<InService>,
}

impl<B> Guarded<B> {
    /// Ties `busy` (if any: a CONNECT tunnel keeps its own) to `body`.
    pub fn new(body: B, busy: Option<InService>) -> Guarded<B> {
        Guarded { body, _busy: busy }
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}
