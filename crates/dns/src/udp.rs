//! The UDP side of the authoritative server: worker threads of their own that sleep in `poll`
//! on their socket and take batches with `recvmmsg` (as NSD and Knot do), so a datagram reaches
//! its answer with one kernel wake-up and no event loop, task scheduling or work-stealing wake
//! of another thread.
//!
//! Up to [`THREADS_PER_SOCKET`] threads share one socket, and the sockets share the port
//! (SO_REUSEPORT). Sharing matters: the kernel spreads clients over a port's sockets by a hash of
//! their addresses, so with one socket per thread a few busy clients can land on one thread
//! while another idles, and a thread the scheduler preempts holds up its socket's queue. On a
//! shared socket whichever thread is free takes the next batch: a datagram wakes every sleeper
//! on the socket and the first to run takes it ([`RecvBatch::recv_wait`] says why not only
//! one).
//!
//! A worker that emptied its socket yields the CPU once before it sleeps: when other work is
//! waiting on that CPU (the clients, on a small machine) it runs first, and the next receive
//! usually finds a batch instead of sleeping and being woken for each datagram; on an idle CPU
//! the yield returns at once. With one worker per CPU each is pinned to its own ([`crate::cpu`]).
//!
//! Each thread owns everything else on its hot path: receive and send batches, answer cache,
//! rate limiter and response counts (added to the shared counters in batches). The thread count
//! is the server's worker count (the lab runs one per server). What needs the async side —
//! applying an RFC 2136 update — is handed to the tokio runtime, which sends that reply itself;
//! NOTIFY is answered inline (it only wakes the secondary's driver). The threads end promptly on
//! shutdown: a blocked receive is interrupted (and wakes by itself every quarter second anyway),
//! and `drain` waits for them like for any task.

use crate::answer::Kind;
use crate::answer_cache::{AnswerCache, CacheKey};
use crate::clock::unix_now;
use crate::respond::{Outcome, Transport, handle_at};
use crate::rrl::{Rrl, Verdict, slip_response};
use crate::server::{Shared, Stats};
use appnet_netkit::Shutdown;
use appnet_netkit::batch::{RecvBatch, SendBatch, interrupt_recv};
use std::io;
use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;

/// Datagrams received and sent per system call.
const UDP_BATCH: usize = 32;
/// Largest request read over UDP (queries are small; longer ones are cut and get FORMERR).
const UDP_MAX_REQUEST: usize = 8192;
/// Responses counted locally before being added to the shared counters (keeps the hot path off
/// contended cache lines; the exported counters lag by at most this many per worker).
const STATS_BATCH: u32 = 64;
/// How long a blocked receive sleeps before looking at the shutdown flag on its own (shutdown
/// normally interrupts it at once).
const IDLE_WAKE: Duration = Duration::from_millis(250);
/// Longest a full send buffer may hold a worker before the datagram is dropped.
const SEND_WAIT: Duration = Duration::from_secs(1);

/// Most worker threads on one socket.
pub const THREADS_PER_SOCKET: usize = 4;

/// How many sockets `threads` workers use.
pub(crate) fn sockets_for(threads: usize) -> usize {
    threads.max(1).div_ceil(THREADS_PER_SOCKET)
}

/// Starts `threads` workers spread evenly over `sockets`. Must be called inside the tokio
/// runtime (updates are handed to it); every thread is tracked by `shutdown`, so its `drain`
/// waits for them.
pub(crate) fn start(
    sockets: Vec<UdpSocket>,
    threads: usize,
    shared: &Arc<Shared>,
    shutdown: &Shutdown,
) -> io::Result<()> {
    let runtime = Handle::current();
    let mut started = Vec::new();
    for sock in sockets {
        sock.set_nonblocking(false)?;
        sock.set_read_timeout(Some(IDLE_WAKE))?;
        sock.set_write_timeout(Some(SEND_WAIT))?;
        started.push(Arc::new(sock));
    }
    if started.is_empty() {
        return Ok(());
    }
    let (sd, sockets) = (shutdown.clone(), started.clone());
    shutdown.spawn(async move {
        sd.wait().await;
        for sock in &sockets {
            interrupt_recv(sock);
        }
    });
    let threads = threads.max(started.len());
    let cpus = crate::cpu::plan(threads, &crate::cpu::allowed());
    for i in 0..threads {
        let sock = started[i % started.len()].clone();
        let cpu = cpus.as_ref().and_then(|c| c.get(i).copied());
        // The thread keeps `done` until it ends (also by unwinding); drain waits for that.
        let (done, ended) = tokio::sync::oneshot::channel::<()>();
        shutdown.spawn(async move {
            let _ = ended.await;
        });
        let (s, shared, sd, rt) = (sock, shared.clone(), shutdown.clone(), runtime.clone());
        std::thread::Builder::new().name(format!("dns-udp-{i}")).spawn(move || {
            if let Some(cpu) = cpu {
                crate::cpu::pin_current(cpu);
            }
            worker(&s, &shared, &sd, &rt);
            drop(done);
        })?;
    }
    Ok(())
}

/// One worker's loop: receive a batch (sleeping until the first datagram), answer each, send the
/// answers in one call.
fn worker(sock: &Arc<UdpSocket>, shared: &Arc<Shared>, shutdown: &Shutdown, runtime: &Handle) {
    let mut rx = RecvBatch::new(UDP_BATCH, UDP_MAX_REQUEST);
    let mut tx = SendBatch::new(UDP_BATCH);
    let mut generation = shared.generation();
    let mut catalog = shared.served();
    let mut rrl = Rrl::new(shared.config.rrl.clone());
    let mut local = LocalStats::default();
    // Finished answers of this worker's catalog, emptied whenever the catalog is swapped.
    let mut cache = AnswerCache::new();
    let max_udp = shared.policy.max_udp_payload;
    // Datagrams the last receive returned (0 after a timeout or an error).
    let mut last = 0;
    loop {
        if last > 0 && last < UDP_BATCH {
            // The socket was emptied: let waiting work on this CPU go first (see the module doc).
            std::thread::yield_now();
        }
        let received = rx.recv_wait(sock);
        if shutdown.is_triggered() {
            break;
        }
        let n = match received {
            Ok(n) => n,
            Err(e) => {
                // A timeout (idle), a signal, or an ICMP report about an earlier reply.
                if !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) {
                    tracing::debug!("udp receive error: {e}");
                }
                local.flush(&shared.stats);
                last = 0;
                continue;
            }
        };
        last = n;
        let g = shared.generation();
        if g != generation {
            generation = g;
            catalog = shared.served();
            cache.clear();
        }
        for i in 0..n {
            let (packet, peer) = rx.get(i);
            if packet.is_empty() {
                continue;
            }
            let key = CacheKey::of(packet, max_udp);
            let mut out = tx.take_buffer();
            let outcome = match key.as_ref().and_then(|k| cache.answer(k, packet, &mut out)) {
                Some((kind, rrl_key)) => Outcome::Reply { bytes: out, kind, key: rrl_key },
                None => {
                    let outcome =
                        handle_at(&catalog, &shared.policy, packet, Transport::Udp, peer.ip(), unix_now, out);
                    if let (Some(k), Outcome::Reply { bytes, kind, key }) = (&key, &outcome) {
                        cache.insert(k, bytes, *kind, *key);
                    }
                    outcome
                }
            };
            let reply = match outcome {
                Outcome::Reply { mut bytes, kind, key } => {
                    local.count(kind, &shared.stats);
                    match rrl.check(peer.ip(), key, Instant::now) {
                        Verdict::Send => {}
                        Verdict::Slip => {
                            shared.stats.rrl_slipped.inc();
                            slip_response(&mut bytes);
                        }
                        Verdict::Drop => {
                            shared.stats.rrl_dropped.inc();
                            continue;
                        }
                    }
                    bytes
                }
                Outcome::Notify { apex, serial, header, qname, tsig } => {
                    shared.on_notify(&apex, peer.ip(), serial, header, &qname, tsig)
                }
                Outcome::Update { apex, base, records, ok, fail } => {
                    // Applied on the async side (re-signing, journal, NOTIFY), which answers.
                    let (shared, sock) = (shared.clone(), sock.clone());
                    let _in_runtime = runtime.enter();
                    shutdown.spawn(async move {
                        let reply = if shared.apply_update(apex, base, records).await { ok } else { fail };
                        if let Err(e) = sock.send_to(&reply, peer) {
                            tracing::debug!(%peer, "udp send of an update reply failed: {e}");
                        }
                    });
                    continue;
                }
                Outcome::Ignore | Outcome::Transfer(_) => continue,
            };
            tx.push(reply, peer);
        }
        if !tx.is_empty()
            && let Err(e) = tx.send_wait(sock)
        {
            tracing::debug!("udp send failed: {e}");
        }
        // A short batch emptied the socket: the next receive probably sleeps, so publish now.
        if n < UDP_BATCH {
            local.flush(&shared.stats);
        }
    }
    local.flush(&shared.stats);
}

/// Per-worker response counts, added to the shared counters in batches.
#[derive(Default)]
struct LocalStats {
    counts: [u64; 6],
    pending: u32,
}

impl LocalStats {
    fn count(&mut self, kind: Kind, stats: &Stats) {
        self.counts[kind as usize] += 1;
        self.pending += 1;
        if self.pending >= STATS_BATCH {
            self.flush(stats);
        }
    }

    fn flush(&mut self, stats: &Stats) {
        if self.pending == 0 {
            return;
        }
        stats.add(&self.counts);
        self.counts = [0; 6];
        self.pending = 0;
    }
}
