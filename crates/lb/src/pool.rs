//! The live backend set the drivers share: each backend's health and counters, and the
//! balancer rebuilt whenever a weight changes (health transition, slow-start step, reload).
//! Removed backends leave the pool at once (no new connections) but their `Arc` lives on in
//! the connections still using them, which finish undisturbed: graceful drain.

use crate::balance::Balancer;
use crate::config::LbConfig;
use crate::health::{DownReason, Health, HealthPolicy, Transition};
use crate::metrics::{BackendMetrics, LbMetrics};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// One replica behind the balancer.
#[derive(Debug)]
pub struct Backend {
    /// Stable for the backend's life in the pool (UDP flows are pinned to it).
    pub id: u64,
    /// Where it listens.
    pub addr: SocketAddr,
    health: Mutex<Health>,
    active: AtomicUsize,
    removed: AtomicBool,
    /// Its counters.
    pub metrics: BackendMetrics,
    /// Cancelled when the backend leaves the pool (stops its health checker).
    pub gone: CancellationToken,
}

impl Backend {
    fn health(&self) -> MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether it takes new connections.
    pub fn is_up(&self) -> bool {
        self.health().is_up()
    }

    /// Open connections (TCP) through it now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Whether a reload removed it (it only drains now).
    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Relaxed)
    }
}

/// Counts a connection on a backend for as long as it is held.
#[derive(Debug)]
pub struct Lease {
    /// The backend.
    pub backend: Arc<Backend>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.backend.active.fetch_sub(1, Ordering::Relaxed);
        self.backend.metrics.active.dec();
    }
}

/// What happened to the backend set, for the operator (the CLI prints these) and the lab.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A backend went down; `moved` is the fraction of flow keys that now map elsewhere.
    Down {
        /// The backend.
        backend: SocketAddr,
        /// Why.
        reason: DownReason,
        /// Fraction of the key space that moved.
        moved: f64,
    },
    /// A backend came back (slow start begins).
    Up {
        /// The backend.
        backend: SocketAddr,
        /// Fraction of the key space that moved (to it, growing during slow start).
        moved: f64,
    },
    /// The config was re-read.
    Reloaded {
        /// Backends added.
        added: Vec<SocketAddr>,
        /// Backends removed (draining).
        removed: Vec<SocketAddr>,
        /// Fraction of the key space that moved.
        moved: f64,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |m: f64| m * 100.0;
        match self {
            Event::Down { backend, reason, moved } => {
                let why = match reason {
                    DownReason::ChecksFailed => "health checks failed",
                    DownReason::ConnectsFailed => "connects failed",
                };
                write!(f, "backend {backend} DOWN ({why}); {:.1}% of flows moved", pct(*moved))
            }
            Event::Up { backend, moved } => {
                write!(f, "backend {backend} UP (slow start); {:.1}% of flows moved", pct(*moved))
            }
            Event::Reloaded { added, removed, moved } => write!(
                f,
                "reloaded: added {added:?}, removed {removed:?} (draining); {:.1}% of flows moved",
                pct(*moved)
            ),
        }
    }
}

struct Inner {
    backends: Vec<Arc<Backend>>,
    balancer: Balancer,
}

/// The shared backend set.
pub struct Pool {
    inner: Mutex<Inner>,
    policy: HealthPolicy,
    next_id: AtomicU64,
    metrics: LbMetrics,
    events: broadcast::Sender<Event>,
}

impl Pool {
    /// A pool over `config.backends`, all assumed up.
    pub fn new(config: &LbConfig, metrics: LbMetrics) -> Arc<Pool> {
        let (events, _) = broadcast::channel(256);
        let pool = Arc::new(Pool {
            inner: Mutex::new(Inner {
                backends: Vec::new(),
                balancer: Balancer::new(config.balance, config.table_size),
            }),
            policy: config.health_policy(),
            next_id: AtomicU64::new(1),
            metrics,
            events,
        });
        pool.set_addrs(&config.backends, Instant::now());
        pool
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The events stream (down, up, reload).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The backends in the pool now.
    pub fn backends(&self) -> Vec<Arc<Backend>> {
        self.inner().backends.clone()
    }

    /// Picks a backend for flow `key`, skipping backends whose ids are in `exclude`, and counts
    /// a connection on it.
    pub fn pick(&self, key: u64, exclude: &[u64]) -> Option<Lease> {
        let mut inner = self.inner();
        let Inner { backends, balancer } = &mut *inner;
        let skip: Vec<usize> =
            backends.iter().enumerate().filter(|(_, b)| exclude.contains(&b.id)).map(|(i, _)| i).collect();
        let i = balancer.pick(key, |i| backends[i].active(), &skip)?;
        let backend = backends[i].clone();
        drop(inner);
        backend.active.fetch_add(1, Ordering::Relaxed);
        backend.metrics.active.inc();
        backend.metrics.connections.inc();
        Some(Lease { backend })
    }

    /// Rebuilds the balancer from current weights; returns the fraction of keys moved.
    fn rebuild(&self, inner: &mut Inner, now: Instant) -> f64 {
        let weights: Vec<(String, u32)> = inner
            .backends
            .iter()
            .map(|b| {
                let w = b.health().weight(now);
                b.metrics.weight.set(i64::from(w));
                b.metrics.up.set(i64::from(w > 0));
                (b.addr.to_string(), w)
            })
            .collect();
        inner.balancer.set_backends(&weights)
    }

    fn apply(&self, backend: &Backend, transition: Option<Transition>, now: Instant) {
        let Some(t) = transition else { return };
        let moved = {
            let mut inner = self.inner();
            self.rebuild(&mut inner, now)
        };
        let event = match t {
            Transition::WentDown(reason) => {
                backend.metrics.downs.inc();
                Event::Down { backend: backend.addr, reason, moved }
            }
            Transition::CameUp => Event::Up { backend: backend.addr, moved },
        };
        tracing::info!("{event}");
        let _ = self.events.send(event);
    }

    /// An active check's result for `backend`.
    pub fn check_result(&self, backend: &Backend, ok: bool, now: Instant) {
        let t = backend.health().check_result(ok, now);
        self.apply(backend, t, now);
    }

    /// A connect for real traffic failed.
    pub fn connect_failed(&self, backend: &Backend, now: Instant) {
        backend.metrics.connect_failures.inc();
        let t = backend.health().connect_failed(now);
        self.apply(backend, t, now);
    }

    /// A connect for real traffic succeeded.
    pub fn connect_ok(&self, backend: &Backend) {
        backend.health().connect_ok();
    }

    /// Time passing: timed re-admission and slow-start steps.
    pub fn tick(&self, now: Instant) {
        for b in self.backends() {
            let t = b.health().tick(now);
            self.apply(&b, t, now);
        }
        let mut inner = self.inner();
        self.rebuild(&mut inner, now);
    }

    /// Replaces the backend set (a reload): kept backends keep their state, new ones start up,
    /// removed ones drain. Returns the event describing it.
    pub fn set_addrs(&self, addrs: &[SocketAddr], now: Instant) -> Event {
        let mut inner = self.inner();
        let mut added = Vec::new();
        let mut next: Vec<Arc<Backend>> = Vec::with_capacity(addrs.len());
        for &addr in addrs {
            match inner.backends.iter().find(|b| b.addr == addr) {
                Some(b) => next.push(b.clone()),
                None => {
                    added.push(addr);
                    next.push(Arc::new(Backend {
                        id: self.next_id.fetch_add(1, Ordering::Relaxed),
                        addr,
                        health: Mutex::new(Health::new(self.policy)),
                        active: AtomicUsize::new(0),
                        removed: AtomicBool::new(false),
                        metrics: self.metrics.backend(addr),
                        gone: CancellationToken::new(),
                    }));
                }
            }
        }
        let mut removed = Vec::new();
        for b in &inner.backends {
            if !addrs.contains(&b.addr) {
                b.removed.store(true, Ordering::Relaxed);
                b.gone.cancel();
                b.metrics.up.set(0);
                b.metrics.weight.set(0);
                removed.push(b.addr);
            }
        }
        inner.backends = next;
        let moved = self.rebuild(&mut inner, now);
        Event::Reloaded { added, removed, moved }
    }

    /// Applies a reload and announces it.
    pub fn reload(&self, addrs: &[SocketAddr], now: Instant) -> Event {
        let event = self.set_addrs(addrs, now);
        tracing::info!("{event}");
        let _ = self.events.send(event.clone());
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::Policy;
    use crate::maglev::mix64;

    fn config(n: u16, policy: Policy) -> LbConfig {
        LbConfig {
            backends: (1..=n).map(|p| SocketAddr::from(([127, 0, 0, 1], p))).collect(),
            balance: policy,
            ..LbConfig::default()
        }
    }

    #[test]
    fn ejection_moves_only_the_ejected_backends_keys_and_leases_count() {
        let pool = Pool::new(&config(3, Policy::Maglev), LbMetrics::new());
        let mut events = pool.subscribe();
        let keys: Vec<u64> = (0..600).map(mix64).collect();
        let before: Vec<u64> = keys.iter().map(|&k| pool.pick(k, &[]).unwrap().backend.id).collect();
        let victim = pool.backends()[0].clone();
        let now = Instant::now();
        for _ in 0..3 {
            pool.connect_failed(&victim, now);
        }
        let Ok(Event::Down { moved, .. }) = events.try_recv() else { panic!("no down event") };
        assert!((moved - 1.0 / 3.0).abs() < 0.05);
        let mut others_moved = 0;
        for (&k, &was) in keys.iter().zip(&before) {
            let now_on = pool.pick(k, &[]).unwrap().backend.id;
            assert_ne!(now_on, victim.id);
            others_moved += usize::from(was != victim.id && now_on != was);
        }
        assert!(others_moved * 100 <= keys.len(), "{others_moved} flows of staying backends moved");
        let lease = pool.pick(1, &[]).unwrap();
        assert_eq!(lease.backend.active(), 1);
        drop(lease);
        assert_eq!(pool.backends().iter().map(|b| b.active()).sum::<usize>(), 0);
    }

    #[test]
    fn reload_keeps_state_and_drains_removed() {
        let c = config(3, Policy::RoundRobin);
        let pool = Pool::new(&c, LbMetrics::new());
        let held = pool.pick(0, &[]).unwrap();
        let first = held.backend.clone();
        let rest: Vec<SocketAddr> = c.backends.iter().copied().filter(|a| *a != first.addr).collect();
        let mut addrs = rest.clone();
        addrs.push("127.0.0.1:9".parse().unwrap());
        let Event::Reloaded { added, removed, .. } = pool.reload(&addrs, Instant::now()) else { panic!() };
        assert_eq!(removed, vec![first.addr]);
        assert_eq!(added.len(), 1);
        assert!(first.is_removed() && first.gone.is_cancelled());
        // The held connection still counts on the removed backend; new ones never go there.
        assert_eq!(first.active(), 1);
        for k in 0..30 {
            assert_ne!(pool.pick(k, &[]).unwrap().backend.addr, first.addr);
        }
        let kept = pool.backends().into_iter().find(|b| b.addr == rest[0]).unwrap();
        assert!(Arc::ptr_eq(&kept, &pool.backends()[0]));
    }

    #[test]
    fn a_recovered_backend_ramps_up_through_ticks() {
        let c = LbConfig { slow_start_secs: 10, rise: 1, fall: 1, ..config(3, Policy::Maglev) };
        let metrics = LbMetrics::new();
        let pool = Pool::new(&c, metrics.clone());
        let b = pool.backends()[2].clone();
        let t0 = Instant::now();
        pool.check_result(&b, false, t0);
        assert_eq!(b.metrics.weight.get(), 0);
        pool.check_result(&b, true, t0);
        assert_eq!(b.metrics.weight.get(), 10, "slow start begins at a tenth");
        let share = |pool: &Pool| {
            (0..3000u64).filter(|&k| pool.pick(mix64(k), &[]).unwrap().backend.id == b.id).count()
        };
        let early = share(&pool);
        pool.tick(t0 + std::time::Duration::from_secs(5));
        assert_eq!(b.metrics.weight.get(), 60);
        let later = share(&pool);
        pool.tick(t0 + std::time::Duration::from_secs(10));
        assert_eq!(b.metrics.weight.get(), 100);
        let full = share(&pool);
        assert!(early < later && later < full, "{early} < {later} < {full}");
        assert!((full as f64 / 3000.0 - 1.0 / 3.0).abs() < 0.05);
    }

    #[test]
    fn exclusion_and_an_empty_pool() {
        let pool = Pool::new(&config(2, Policy::Maglev), LbMetrics::new());
        let ids: Vec<u64> = pool.backends().iter().map(|b| b.id).collect();
        assert_eq!(pool.pick(5, &[ids[0]]).unwrap().backend.id, ids[1]);
        assert!(pool.pick(5, &ids).is_none());
    }
}
