//! The accept loop every TCP service needs: stop at shutdown, survive accept errors (EMFILE and
//! friends) with a short back-off, and hold a connection-cap permit for each connection.

use crate::Shutdown;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What [`Acceptor::next`] produced.
pub enum Accepted {
    /// A connection within the cap; keep the permit until the connection is done.
    Conn(TcpStream, SocketAddr, OwnedSemaphorePermit),
    /// A connection over the cap: answer "busy" in the protocol's way (or just drop it).
    OverCap(TcpStream, SocketAddr),
}

/// A listener with a cap on open connections.
pub struct Acceptor {
    listener: TcpListener,
    slots: Arc<Semaphore>,
}

impl Acceptor {
    /// Wraps `listener`, allowing at most `max_connections` (at least 1) at once.
    pub fn new(listener: TcpListener, max_connections: usize) -> Acceptor {
        Acceptor { listener, slots: Arc::new(Semaphore::new(max_connections.max(1))) }
    }

    /// The listening address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next connection, or `None` once `shutdown` is triggered.
    pub async fn next(&self, shutdown: &Shutdown) -> Option<Accepted> {
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.wait() => return None,
                accepted = self.listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            return Some(match self.slots.clone().try_acquire_owned() {
                Ok(permit) => Accepted::Conn(stream, peer, permit),
                Err(_) => Accepted::OverCap(stream, peer),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listen::{ListenOpts, bind_tcp};

    #[tokio::test]
    async fn caps_connections_and_stops_at_shutdown() {
        let listener = bind_tcp("127.0.0.1:0".parse().unwrap(), &ListenOpts::default()).unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = Acceptor::new(listener, 1);
        let shutdown = Shutdown::new();
        let _a = TcpStream::connect(addr).await.unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        let first = acceptor.next(&shutdown).await;
        assert!(matches!(first, Some(Accepted::Conn(..))));
        assert!(matches!(acceptor.next(&shutdown).await, Some(Accepted::OverCap(..))));
        drop(first);
        shutdown.trigger();
        assert!(acceptor.next(&shutdown).await.is_none());
    }
}
