//! The accept loop every TCP service needs, and the per-connection slot that enforces the
//! shared connection policy:
//! - stop at shutdown, survive accept errors (EMFILE and friends) with a short back-off;
//! - cap connections per source address and in all ([`ConnLimits`]); when the server is full,
//!   close the connection that has been waiting the longest without a request rather than
//!   refusing the newcomer (see [`crate::conn_table`]);
//! - give every connection a deadline for a *whole* request (a fresh connection has
//!   `request_timeout` for its first, an idle one `idle_timeout` for its next), so silent and
//!   byte-trickling clients cannot hold slots. A protocol marks [`ConnSlot::busy`] when a
//!   complete request has arrived and [`ConnSlot::idle`] when it waits for the next one, and
//!   selects on [`ConnSlot::closed`] next to its reads.

use crate::Shutdown;
use crate::conn_table::{ConnTable, Phase, Refused};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The limits every TCP server applies to its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Open connections in all.
    pub max_connections: usize,
    /// Open connections from one source address.
    pub max_per_ip: usize,
    /// Time a fresh connection has to deliver its whole first request.
    pub request_timeout: Duration,
    /// Time an idle connection has to deliver its whole next request.
    pub idle_timeout: Duration,
}

impl ConnLimits {
    /// `max_connections` in all, an eighth of that (1 to 64) per address, 10 s for a first
    /// request and 60 s between requests.
    pub fn new(max_connections: usize) -> ConnLimits {
        ConnLimits {
            max_connections: max_connections.max(1),
            max_per_ip: default_per_ip(max_connections),
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// The per-address default for a global cap: an eighth of it, at least 1 and at most 64.
pub fn default_per_ip(max_connections: usize) -> usize {
    (max_connections / 8).clamp(1, 64)
}

/// What [`Acceptor::next`] produced.
pub enum Accepted {
    /// An admitted connection; keep the slot until the connection is done.
    Conn(TcpStream, SocketAddr, ConnSlot),
    /// A connection that was not admitted (its address holds its cap, or every slot is busy):
    /// answer "busy" in the protocol's way, or just drop it.
    OverCap(TcpStream, SocketAddr),
}

/// Why [`ConnSlot::closed`] says the connection must go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The server was full and this was the longest-waiting connection without a request.
    Evicted,
    /// Its request (or idle) deadline passed.
    TimedOut,
}

/// Counters of the policy's decisions, for a service's metrics.
#[derive(Debug, Default)]
pub struct ConnStats {
    /// Connections admitted.
    pub accepted: AtomicU64,
    /// Connections closed to make room for a newcomer.
    pub evicted: AtomicU64,
    /// Connections whose request or idle deadline passed.
    pub timed_out: AtomicU64,
    /// Newcomers refused because their address held its cap.
    pub refused_per_ip: AtomicU64,
    /// Newcomers refused because every slot was busy.
    pub refused_full: AtomicU64,
}

/// What the table keeps per connection: the signal that closes it.
///
/// Deadlines are nanoseconds after the policy's `epoch` in atomics ([`NO_DEADLINE`] while
/// busy), so marking a connection busy or idle on every request wakes nobody: the waiter in
/// [`ConnSlot::closed`] sleeps until the deadline it last saw (`armed`) and, when that timer
/// fires, re-reads the current one. Only a deadline moved *earlier* than the armed one (or
/// set while the waiter has no timer) wakes it to re-arm.
struct Signal {
    evicted: CancellationToken,
    /// The current deadline.
    deadline: AtomicU64,
    /// The deadline the waiter sleeps until.
    armed: AtomicU64,
    /// Wakes the waiter to re-arm for an earlier deadline.
    rearm: Notify,
}

/// "No deadline": the connection is busy.
const NO_DEADLINE: u64 = u64::MAX;

struct Shared {
    /// The origin of the deadlines kept in [`Signal`]s.
    epoch: Instant,
    limits: ConnLimits,
    table: Mutex<ConnTable<Arc<Signal>>>,
    stats: ConnStats,
}

impl Shared {
    /// `at` as nanoseconds after the epoch (deadlines are always later than it).
    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(NO_DEADLINE - 1)
    }

    fn table(&self) -> std::sync::MutexGuard<'_, ConnTable<Arc<Signal>>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One connection policy (limits, connection table, counters) that several [`Acceptor`]s
/// share, e.g. one per worker thread on the same port: the global and per-address caps then
/// hold across all of them, and a newcomer on one thread may evict an idle connection of
/// another.
#[derive(Clone)]
pub struct SharedPolicy {
    shared: Arc<Shared>,
}

impl SharedPolicy {
    /// A fresh policy with `limits` and an empty table.
    pub fn new(limits: ConnLimits) -> SharedPolicy {
        let table = ConnTable::new(limits.max_connections, limits.max_per_ip);
        SharedPolicy {
            shared: Arc::new(Shared {
                epoch: Instant::now(),
                limits,
                table: Mutex::new(table),
                stats: ConnStats::default(),
            }),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> ConnLimits {
        self.shared.limits
    }

    /// The policy's counters so far (all acceptors together).
    pub fn stats(&self) -> &ConnStats {
        &self.shared.stats
    }

    /// Open connections over all acceptors sharing the policy.
    pub fn open_connections(&self) -> usize {
        self.shared.table().len()
    }
}

/// A listener that applies [`ConnLimits`].
pub struct Acceptor {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Acceptor {
    /// Wraps `listener` with [`ConnLimits::new`]`(max_connections)`.
    pub fn new(listener: TcpListener, max_connections: usize) -> Acceptor {
        Acceptor::with_limits(listener, ConnLimits::new(max_connections))
    }

    /// Wraps `listener` with `limits`.
    pub fn with_limits(listener: TcpListener, limits: ConnLimits) -> Acceptor {
        Acceptor::with_policy(listener, &SharedPolicy::new(limits))
    }

    /// Wraps `listener` with a policy other acceptors may share (one table, one set of caps).
    pub fn with_policy(listener: TcpListener, policy: &SharedPolicy) -> Acceptor {
        Acceptor { listener, shared: policy.shared.clone() }
    }

    /// The policy this acceptor applies, to share with another acceptor.
    pub fn policy(&self) -> SharedPolicy {
        SharedPolicy { shared: self.shared.clone() }
    }

    /// The listening address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The limits in force.
    pub fn limits(&self) -> ConnLimits {
        self.shared.limits
    }

    /// The policy's counters so far.
    pub fn stats(&self) -> &ConnStats {
        &self.shared.stats
    }

    /// Open (admitted, not yet dropped or evicted) connections.
    pub fn open_connections(&self) -> usize {
        self.shared.table().len()
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
            return Some(match self.admit(peer.ip()) {
                Some(slot) => Accepted::Conn(stream, peer, slot),
                None => Accepted::OverCap(stream, peer),
            });
        }
    }

    /// Applies the policy to a newcomer from `ip`: its slot, or `None` if refused.
    fn admit(&self, ip: IpAddr) -> Option<ConnSlot> {
        let now = Instant::now();
        let deadline = self.shared.nanos(now + self.shared.limits.request_timeout);
        let signal = Arc::new(Signal {
            evicted: CancellationToken::new(),
            deadline: AtomicU64::new(deadline),
            armed: AtomicU64::new(NO_DEADLINE),
            rearm: Notify::new(),
        });
        let admitted = self.shared.table().admit(ip, now.into_std(), signal.clone());
        let stats = &self.shared.stats;
        match admitted {
            Ok((id, evicted)) => {
                if let Some(victim) = evicted {
                    stats.evicted.fetch_add(1, Ordering::Relaxed);
                    victim.evicted.cancel();
                }
                stats.accepted.fetch_add(1, Ordering::Relaxed);
                Some(ConnSlot { id, ip, shared: self.shared.clone(), signal })
            }
            Err(Refused::PerAddress) => {
                stats.refused_per_ip.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%ip, "connection refused: the address holds its cap");
                None
            }
            Err(Refused::Full) => {
                stats.refused_full.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%ip, "connection refused: every slot is busy");
                None
            }
        }
    }
}

/// One admitted connection's place in the table: held for the connection's whole life;
/// dropping it frees the slot.
pub struct ConnSlot {
    id: u64,
    ip: IpAddr,
    shared: Arc<Shared>,
    signal: Arc<Signal>,
}

impl ConnSlot {
    /// The source address the slot is counted against.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// A complete request is being served (or the peer proved useful): no deadline, and the
    /// connection is never evicted for a newcomer.
    pub fn busy(&self) {
        self.set(Phase::Busy, None);
    }

    /// Waiting for the next complete request, which must arrive within the idle timeout; the
    /// connection may be evicted meanwhile.
    pub fn idle(&self) {
        self.idle_for(self.shared.limits.idle_timeout);
    }

    /// Like [`ConnSlot::idle`] with a deadline of the protocol's choosing.
    pub fn idle_for(&self, timeout: Duration) {
        self.set(Phase::Idle, Some(timeout));
    }

    fn set(&self, phase: Phase, timeout: Option<Duration>) {
        let now = Instant::now();
        self.shared.table().set_phase(self.id, phase, now.into_std());
        let deadline = timeout.map_or(NO_DEADLINE, |t| self.shared.nanos(now + t));
        self.signal.deadline.store(deadline, Ordering::SeqCst);
        // (Paired with the waiter's store of `armed` and re-read of `deadline`.)
        if deadline < self.signal.armed.load(Ordering::SeqCst) {
            self.signal.rearm.notify_waiters();
        }
    }

    /// Whether the slot was taken for a newcomer (the connection should close now).
    pub fn is_evicted(&self) -> bool {
        self.signal.evicted.is_cancelled()
    }

    /// Resolves when the connection must be closed: evicted for a newcomer, or its current
    /// deadline passed. Cancel-safe: use it in `select!` next to the connection's reads.
    pub async fn closed(&self) -> CloseReason {
        let signal = &*self.signal;
        loop {
            // Registered before the deadline is read, so a re-arm between the two is not lost.
            let rearm = signal.rearm.notified();
            tokio::pin!(rearm);
            rearm.as_mut().enable();
            let deadline = signal.deadline.load(Ordering::SeqCst);
            signal.armed.store(deadline, Ordering::SeqCst);
            if signal.deadline.load(Ordering::SeqCst) != deadline {
                continue;
            }
            let timer = async {
                if deadline == NO_DEADLINE {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep_until(self.shared.epoch + Duration::from_nanos(deadline)).await;
            };
            tokio::select! {
                _ = signal.evicted.cancelled() => return CloseReason::Evicted,
                _ = rearm => continue,
                _ = timer => {
                    // The deadline may have moved later meanwhile (a request came): sleep on.
                    let now = self.shared.nanos(Instant::now());
                    if signal.deadline.load(Ordering::SeqCst) <= now {
                        self.shared.stats.timed_out.fetch_add(1, Ordering::Relaxed);
                        return CloseReason::TimedOut;
                    }
                }
            }
        }
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.shared.table().release(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listen::{ListenOpts, bind_tcp};
    use tokio::net::TcpSocket;

    fn acceptor(limits: ConnLimits) -> (Acceptor, SocketAddr) {
        let listener = bind_tcp("127.0.0.1:0".parse().unwrap(), &ListenOpts::default()).unwrap();
        let addr = listener.local_addr().unwrap();
        (Acceptor::with_limits(listener, limits), addr)
    }

    async fn connect_from(src: [u8; 4], to: SocketAddr) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((src, 0))).unwrap();
        socket.connect(to).await.unwrap()
    }

    fn conn(a: Option<Accepted>) -> ConnSlot {
        match a {
            Some(Accepted::Conn(_, _, slot)) => slot,
            _ => panic!("expected an admitted connection"),
        }
    }

    #[tokio::test]
    async fn per_address_cap_leaves_room_for_others_and_stops_at_shutdown() {
        let (acceptor, addr) = acceptor(ConnLimits { max_per_ip: 1, ..ConnLimits::new(10) });
        let shutdown = Shutdown::new();
        let _a = connect_from([127, 0, 0, 1], addr).await;
        let _b = connect_from([127, 0, 0, 1], addr).await;
        let _c = connect_from([127, 0, 0, 2], addr).await;
        let first = conn(acceptor.next(&shutdown).await);
        assert!(matches!(acceptor.next(&shutdown).await, Some(Accepted::OverCap(..))));
        let third = conn(acceptor.next(&shutdown).await);
        assert_eq!(third.ip(), IpAddr::from([127, 0, 0, 2]));
        assert_eq!(acceptor.stats().refused_per_ip.load(Ordering::Relaxed), 1);
        drop(first);
        assert_eq!(acceptor.open_connections(), 1);
        shutdown.trigger();
        assert!(acceptor.next(&shutdown).await.is_none());
    }

    #[tokio::test]
    async fn full_server_evicts_the_oldest_waiting_connection() {
        let (acceptor, addr) = acceptor(ConnLimits { max_per_ip: 10, ..ConnLimits::new(2) });
        let shutdown = Shutdown::new();
        let _a = connect_from([127, 0, 0, 1], addr).await;
        let first = conn(acceptor.next(&shutdown).await);
        let _b = connect_from([127, 0, 0, 1], addr).await;
        let second = conn(acceptor.next(&shutdown).await);
        second.busy();
        let _c = connect_from([127, 0, 0, 3], addr).await;
        let third = conn(acceptor.next(&shutdown).await);
        assert_eq!(first.closed().await, CloseReason::Evicted);
        assert!(!second.is_evicted());
        // Both remaining are busy: the next newcomer is refused.
        third.busy();
        let _d = connect_from([127, 0, 0, 4], addr).await;
        assert!(matches!(acceptor.next(&shutdown).await, Some(Accepted::OverCap(..))));
    }

    #[tokio::test]
    async fn acceptors_sharing_a_policy_share_the_caps() {
        let (first, addr1) = acceptor(ConnLimits { max_per_ip: 1, ..ConnLimits::new(2) });
        let listener = bind_tcp("127.0.0.1:0".parse().unwrap(), &ListenOpts::default()).unwrap();
        let addr2 = listener.local_addr().unwrap();
        let second = Acceptor::with_policy(listener, &first.policy());
        let shutdown = Shutdown::new();
        let _a = connect_from([127, 0, 0, 1], addr1).await;
        let held = conn(first.next(&shutdown).await);
        held.busy();
        // The same address on the other acceptor is over its cap...
        let _b = connect_from([127, 0, 0, 1], addr2).await;
        assert!(matches!(second.next(&shutdown).await, Some(Accepted::OverCap(..))));
        // ...another address fills the global cap, and then all slots are busy.
        let _c = connect_from([127, 0, 0, 2], addr2).await;
        let other = conn(second.next(&shutdown).await);
        other.busy();
        let _d = connect_from([127, 0, 0, 3], addr1).await;
        assert!(matches!(first.next(&shutdown).await, Some(Accepted::OverCap(..))));
        assert_eq!(first.policy().open_connections(), 2);
        assert_eq!(second.stats().refused_per_ip.load(Ordering::Relaxed), 1);
        assert_eq!(first.stats().refused_full.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_cover_whole_requests() {
        let limits = ConnLimits {
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            ..ConnLimits::new(4)
        };
        let (acceptor, addr) = acceptor(limits);
        let shutdown = Shutdown::new();
        let _a = connect_from([127, 0, 0, 1], addr).await;
        let slot = conn(acceptor.next(&shutdown).await);
        let start = Instant::now();
        assert_eq!(slot.closed().await, CloseReason::TimedOut);
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        // Busy has no deadline; idle gets the idle timeout from the moment it is set.
        slot.busy();
        let waited = tokio::time::timeout(Duration::from_secs(3600), slot.closed()).await;
        assert!(waited.is_err(), "a busy connection is never timed out");
        slot.idle();
        let start = Instant::now();
        assert_eq!(slot.closed().await, CloseReason::TimedOut);
        assert_eq!(start.elapsed(), Duration::from_secs(30));
        // A phase change while waiting moves the deadline.
        slot.idle_for(Duration::from_secs(5));
        let closed = slot.closed();
        tokio::pin!(closed);
        assert!(tokio::time::timeout(Duration::from_secs(2), &mut closed).await.is_err());
        slot.idle_for(Duration::from_secs(20));
        let start = Instant::now();
        assert_eq!(closed.await, CloseReason::TimedOut);
        assert_eq!(start.elapsed(), Duration::from_secs(20));
        assert_eq!(acceptor.stats().timed_out.load(Ordering::Relaxed), 3);
    }
}
