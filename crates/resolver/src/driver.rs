//! The thin tokio driver of the iteration core ([`crate::iterate`]): it owns what every
//! resolution shares (cache, infra cache, zone gate, counters; the core takes the lock for each
//! use, never across I/O), reads the clock, sends each [`Transmit`] through a [`Transport`], sleeps until
//! [`Resolution::poll_timeout`], and feeds back what happened. All decisions are the core's.

use crate::admission::Gate;
use crate::cache::{Answer, CacheStats, Outcome};
use crate::dnssec::{Ctx, Ede, KeyCache, Limits, Poll, Security, TrustAnchors, Validation, ede};
use crate::iterate::{Counters, Env, Event, Resolution, Settings, Shared};
use crate::trace::Step;
use crate::transport::Transport;
use appnet_dns::wire::name::NameBuf;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Names whose zone state the validator remembers at most.
const MAX_ZONE_STATES: usize = 16_384;
/// Single-flight gates kept before the unused ones are swept.
const MAX_FLIGHTS: usize = 1024;
/// Validation verdicts remembered at most (past it the expired ones go, then all).
const MAX_VERDICTS: usize = 65_536;

/// Network round trips one question may take in the driver beyond 4 per allowed query: the
/// core stops well before (its query budget, a bounded CNAME chain); this only guards against
/// a core bug looping forever.
const EXTRA_ROUNDS: usize = 64;

/// The driver's clock: tokio's, so tests with paused time run in virtual time, and the same
/// instants the timers sleep until.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// A resolver: shared by every client task; each question runs its own [`Resolution`].
pub struct Resolver<T: Transport> {
    transport: T,
    settings: Settings,
    shared: Mutex<Shared>,
    /// Upstream exchanges in flight per zone cut.
    zones: Gate<NameBuf>,
    counters: Counters,
    /// When set, every step of every resolution is recorded here too (the lab tour sends real
    /// queries from a host and shows what the resolver did for them).
    recorder: Mutex<Option<Vec<Step>>>,
    /// DNSSEC validation state, when the settings ask for it.
    dnssec: Option<Dnssec>,
}

/// What validation keeps between questions: the anchors, zone states along the chains of trust
/// and the verdict per cached answer.
struct Dnssec {
    anchors: TrustAnchors,
    limits: Limits,
    keys: KeyCache,
    verdicts: Mutex<HashMap<(NameBuf, u16), (Security, Instant)>>,
    /// One lookup at a time per chain-of-trust RRset (DS or DNSKEY of a name): questions that
    /// need it while another fetches and checks it wait, then find it cached (the answer, the
    /// zone state, the passed signature check) instead of all fetching and verifying it.
    flights: Flights,
}

/// Single-flight gates per (name, type), held from the lookup until the validator has used
/// its answer. Gates nobody holds are dropped.
#[derive(Default)]
struct Flights(Mutex<HashMap<(NameBuf, u16), std::sync::Weak<FlightGate>>>);

/// One single-flight gate.
type FlightGate = tokio::sync::Mutex<()>;

impl Flights {
    /// The gate for `n`/`t`, shared with every question waiting on it now.
    fn gate(&self, n: &[u8], t: u16) -> Arc<FlightGate> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_FLIGHTS {
            map.retain(|_, g| g.strong_count() > 0);
        }
        let key = (appnet_dns::wire::name::to_lower(n), t);
        if let Some(g) = map.get(&key).and_then(std::sync::Weak::upgrade) {
            return g;
        }
        let g = Arc::new(FlightGate::default());
        map.insert(key, Arc::downgrade(&g));
        g
    }
}

/// Seconds until the first RRSIG of `answer` expires (`u32::MAX` without RRSIGs).
fn signatures_left(answer: &Answer, unix: u32) -> u32 {
    use appnet_dns::wire::verify::{RRSIG, parse_rrsig};
    answer
        .records
        .iter()
        .chain(&answer.authority)
        .filter(|r| r.rtype == RRSIG)
        .filter_map(|r| parse_rrsig(&r.rdata))
        .map(|s| s.expiration.wrapping_sub(unix))
        .map(|left| if (left as i32) < 0 { 0 } else { left })
        .min()
        .unwrap_or(u32::MAX)
}

fn unix_now() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32)
}

impl<T: Transport> Resolver<T> {
    /// A resolver with an empty cache.
    pub fn new(settings: Settings, transport: T) -> Resolver<T> {
        Resolver {
            transport,
            zones: Gate::new(settings.max_in_flight_per_zone),
            shared: Mutex::new(Shared::new(settings.cache)),
            settings,
            counters: Counters::default(),
            recorder: Mutex::new(None),
            dnssec: None,
        }
        .with_trust_anchors(TrustAnchors::iana())
    }

    /// Validates with these anchors instead of the built-in IANA root (when `settings.dnssec`).
    pub fn with_trust_anchors(mut self, anchors: TrustAnchors) -> Resolver<T> {
        self.dnssec = self.settings.dnssec.then(|| Dnssec {
            anchors,
            limits: Limits::default(),
            keys: KeyCache::new(MAX_ZONE_STATES),
            verdicts: Mutex::new(HashMap::new()),
            flights: Flights::default(),
        });
        self
    }

    /// Whether answers are validated.
    pub fn validates(&self) -> bool {
        self.dnssec.is_some()
    }

    /// The cached verdict on the cached answer to `qname`/`qtype`.
    pub fn cached_verdict(&self, qname: &[u8], qtype: u16) -> Option<Security> {
        let d = self.dnssec.as_ref()?;
        let verdicts = d.verdicts.lock().unwrap_or_else(|e| e.into_inner());
        let key = (appnet_dns::wire::name::to_lower(qname), qtype);
        verdicts.get(&key).filter(|(_, exp)| *exp > now()).map(|(s, _)| s.clone())
    }

    /// Resolves `qname`/`qtype` and validates the answer (DS and DNSKEY lookups included). A
    /// resolver without DNSSEC calls everything insecure. A SERVFAIL stays as it is (insecure).
    pub async fn resolve_secure(&self, qname: &[u8], qtype: u16) -> (Answer, Security) {
        let answer = self.resolve(qname, qtype).await;
        let Some(d) = self.dnssec.as_ref() else { return (answer, Security::Insecure) };
        if answer.outcome == Outcome::ServFail {
            return (answer, Security::Insecure);
        }
        // Always validated here (zone states are cached, so this is cheap): the answer may have
        // been fetched again since a cached verdict was made.
        let unix = unix_now();
        let mut validation = Validation::new(qname, qtype, &answer);
        let mut lookups = 0;
        // The gate of the last lookup, released once the poll after it has used the answer.
        let mut flight = None;
        let security = loop {
            // No lock is held across the poll (signature checks run in parallel).
            let poll = {
                let mut ctx = Ctx { anchors: &d.anchors, keys: &d.keys, limits: &d.limits, now: now(), unix };
                validation.poll(&mut ctx)
            };
            drop(flight.take());
            match poll {
                Poll::Done(s) => break s,
                Poll::Need(n, t) => {
                    lookups += 1;
                    if lookups > d.limits.max_lookups {
                        break Security::Bogus(Ede::new(
                            ede::DNSSEC_BOGUS,
                            "too many lookups for the chain of trust",
                        ));
                    }
                    let gate = d.flights.gate(&n, t);
                    flight = Some(gate.lock_owned().await);
                    let a = self.resolve(&n, t).await;
                    validation.supply(&n, t, a);
                }
            }
        };
        if let Security::Bogus(e) = &security {
            tracing::info!(
                "DNSSEC bogus: {} type {qtype}: {} (EDE {})",
                appnet_dns::wire::name::to_text(qname),
                e.text,
                e.code
            );
        }
        let ttl = match security {
            Security::Bogus(_) => d.limits.bogus_ttl,
            _ => answer
                .records
                .iter()
                .chain(&answer.authority)
                .map(|r| r.ttl)
                .min()
                .unwrap_or(0)
                .min(self.settings.cache.max_ttl)
                // Expire before the cached answer does, never after it.
                .saturating_sub(1)
                // Nor after a signature it rests on (RFC 4035 §5.3.3).
                .min(signatures_left(&answer, unix)),
        };
        if ttl > 0 {
            let at = now();
            let mut verdicts = d.verdicts.lock().unwrap_or_else(|e| e.into_inner());
            if verdicts.len() >= MAX_VERDICTS {
                verdicts.retain(|_, (_, exp)| *exp > at);
                if verdicts.len() >= MAX_VERDICTS {
                    verdicts.clear();
                }
            }
            let key = (appnet_dns::wire::name::to_lower(qname), qtype);
            verdicts.insert(key, (security.clone(), at + Duration::from_secs(u64::from(ttl))));
        }
        (answer, security)
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Cache hit/miss counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.lock().cache.stats()
    }

    /// Bytes the cache accounts for now (at most its budget).
    pub fn cache_bytes(&self) -> usize {
        self.lock().cache.bytes()
    }

    /// Empties the cache (answers and delegations) and the validation state.
    pub fn flush(&self) {
        self.lock().cache.clear();
        if let Some(d) = &self.dnssec {
            d.keys.clear();
            d.verdicts.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts recording the steps of every resolution (replacing any earlier recording).
    pub fn start_recording(&self) {
        *self.recorder.lock().unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
    }

    /// Stops recording and returns the steps recorded since [`start_recording`](Self::start_recording).
    pub fn take_recording(&self) -> Vec<Step> {
        self.recorder.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default()
    }

    /// Looks only in the cache (for RD=0 questions).
    pub fn cached(&self, qname: &[u8], qtype: u16) -> Option<Answer> {
        self.lock().cache.get(qname, qtype, now())
    }

    /// The cached answer as stored and its age in seconds (the lock is held for a lookup and a
    /// reference count only; the caller subtracts the age from the TTLs it sends).
    pub fn cached_shared(&self, qname: &[u8], qtype: u16) -> Option<(Arc<Answer>, u32)> {
        self.lock().cache.get_shared(qname, qtype, now())
    }

    /// Resolves `qname`/`qtype`.
    pub async fn resolve(&self, qname: &[u8], qtype: u16) -> Answer {
        self.drive(qname, qtype, false).await.0
    }

    /// Resolves and also returns every step taken (for `--trace` and the tour).
    pub async fn resolve_traced(&self, qname: &[u8], qtype: u16) -> (Answer, Vec<Step>) {
        self.drive(qname, qtype, true).await
    }

    /// What the core consults: it locks the shared state itself, for each use only.
    fn env(&self) -> Env<'_> {
        Env { settings: &self.settings, shared: &self.shared, zones: &self.zones, counters: &self.counters }
    }

    /// Runs one resolution: send what it asks, wait for the reply or its timeout, repeat.
    async fn drive(&self, qname: &[u8], qtype: u16, traced: bool) -> (Answer, Vec<Step>) {
        let rng = StdRng::from_rng(&mut rand::rng());
        let mut res = Resolution::start(now(), qname, qtype, rng, &self.env());
        let mut steps = Vec::new();
        let rounds = 4 * self.settings.max_queries.max(1) + EXTRA_ROUNDS;
        for _ in 0..rounds {
            while let Some(event) = res.poll_event() {
                match event {
                    Event::Step(step) => self.record(step, traced.then_some(&mut steps)),
                    Event::Done(answer) => return (answer, steps),
                }
            }
            let (Some(tx), Some(deadline)) = (res.poll_transmit(), res.poll_timeout()) else { break };
            let exchange = self.transport.exchange(tx.server, &tx.query, tx.tcp, tx.timeout);
            let result = tokio::select! {
                result = exchange => Some(result),
                _ = tokio::time::sleep_until(deadline.into()) => None,
            };
            let at = now();
            match result {
                Some(Ok(bytes)) => res.handle_response(at, tx.server, &bytes, &self.env()),
                Some(Err(e)) => res.handle_error(at, &e, &self.env()),
                // The timer for `deadline` fired (whatever rounding the clock read has).
                None => res.handle_timeout(at.max(deadline), &self.env()),
            }
        }
        tracing::warn!("resolution stopped without an answer after {} queries", res.queries());
        (Answer { outcome: Outcome::ServFail, records: vec![], authority: vec![] }, steps)
    }

    fn record(&self, step: Step, trace: Option<&mut Vec<Step>>) {
        if let Some(all) = self.recorder.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            all.push(step.clone());
        }
        if let Some(trace) = trace {
            trace.push(step);
        }
    }
}
