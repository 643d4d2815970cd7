//! The driver: two namespaces joined by two TUN devices, and one thread that reads packets from
//! each device, passes them through that direction's [`Pipe`] and writes them into the other
//! device at their release time (ppoll with nanosecond timeouts; tokio's millisecond timer
//! would add up to a millisecond per packet). [`Link`] owns everything it created and removes
//! it when dropped, on success, failure or Ctrl-C; stale namespaces of the same name are
//! removed before starting.

use crate::core::{Pipe, PipeStats};
use crate::error::LinkError;
use crate::netns;
use crate::spec::LinkSpec;
use crate::tun::Tun;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Namespace A's address on the link (RFC 2544 benchmarking range, only inside the namespaces).
pub const ADDR_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Namespace B's address on the link.
pub const ADDR_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The TUN device's name inside each namespace.
pub const DEVICE: &str = "emu0";

/// Counters of both directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// A → B.
    pub a2b: PipeStats,
    /// B → A.
    pub b2a: PipeStats,
    /// Packets the destination device refused.
    pub write_errors: u64,
}

#[derive(Default)]
struct Shared {
    /// New settings for the thread to pick up.
    pending: Option<LinkSpec>,
    stats: LinkStats,
}

/// A running emulated link. Dropping it stops the thread and deletes both namespaces.
pub struct Link {
    name: String,
    created: Vec<String>,
    stop: Arc<AtomicBool>,
    shared: Arc<Mutex<Shared>>,
    thread: Option<JoinHandle<()>>,
}

/// Checks a link name: it prefixes the namespaces `NAME-a` and `NAME-b`.
pub fn check_name(name: &str) -> Result<(), LinkError> {
    if name.is_empty() || name.len() > 40 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(LinkError::Spec(format!("link name {name:?}: 1-40 letters, digits and '-'")));
    }
    Ok(())
}

impl Link {
    /// Creates namespaces `NAME-a` and `NAME-b` joined through the emulator (root only), after
    /// removing stale ones of the same names. `seed` makes the random choices reproducible.
    pub fn up(name: &str, spec: &LinkSpec, seed: u64) -> Result<Link, LinkError> {
        check_name(name)?;
        spec.validate()?;
        if !netns::is_root() {
            return Err(LinkError::NotRoot);
        }
        let mut link = Link {
            name: name.to_string(),
            created: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            shared: Arc::new(Mutex::new(Shared::default())),
            thread: None,
        };
        for ns in [link.ns_a(), link.ns_b()] {
            if netns::delete(&ns) {
                tracing::info!("removed stale namespace {ns}");
            }
        }
        link.build(spec, seed)?;
        Ok(link)
    }

    fn build(&mut self, spec: &LinkSpec, seed: u64) -> Result<(), LinkError> {
        let mut tuns = Vec::new();
        for (ns, addr) in [(self.ns_a(), ADDR_A), (self.ns_b(), ADDR_B)] {
            netns::ip(&["netns", "add", &ns])?;
            self.created.push(ns.clone());
            netns::ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            let tun = netns::in_netns(&ns, || Tun::create(DEVICE))??;
            let cidr = format!("{addr}/30");
            netns::ip(&["-n", &ns, "addr", "add", &cidr, "dev", DEVICE])?;
            netns::ip(&["-n", &ns, "link", "set", DEVICE, "up"])?;
            tuns.push(tun);
        }
        let (Some(b), Some(a)) = (tuns.pop(), tuns.pop()) else {
            return Err(LinkError::Setup("TUN devices missing".into()));
        };
        let pipes = [Pipe::new(spec.a2b.clone(), seed), Pipe::new(spec.b2a.clone(), seed.wrapping_add(1))];
        let (stop, shared) = (self.stop.clone(), self.shared.clone());
        let thread = std::thread::Builder::new()
            .name(format!("link-{}", self.name))
            .spawn(move || run([a, b], pipes, &stop, &shared))?;
        self.thread = Some(thread);
        Ok(())
    }

    /// The name of namespace A (`NAME-a`).
    pub fn ns_a(&self) -> String {
        format!("{}-a", self.name)
    }

    /// The name of namespace B (`NAME-b`).
    pub fn ns_b(&self) -> String {
        format!("{}-b", self.name)
    }

    /// Replaces the settings (packets already in flight keep their release times).
    pub fn set(&self, spec: &LinkSpec) -> Result<(), LinkError> {
        spec.validate()?;
        if let Ok(mut s) = self.shared.lock() {
            s.pending = Some(spec.clone());
        }
        Ok(())
    }

    /// Kernel TCP's default congestion control in the link's namespaces: new namespaces take
    /// the host's (BBR on some machines), and one that is not in the host's
    /// `tcp_allowed_congestion_control` cannot be made their default; set it per socket
    /// instead (`appnet_netkit::listen::set_tcp_congestion`).
    pub fn tcp_congestion(&self) -> Result<String, LinkError> {
        netns::sysctl_get(&self.ns_a(), "net/ipv4/tcp_congestion_control")
    }

    /// The counters so far.
    pub fn stats(&self) -> LinkStats {
        self.shared.lock().map(|s| s.stats).unwrap_or_default()
    }

    /// Stops the emulator, removes the namespaces and returns the final counters.
    pub fn down(mut self) -> LinkStats {
        self.teardown();
        self.stats()
    }

    fn teardown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for ns in self.created.drain(..) {
            if let Err(e) = netns::ip(&["netns", "del", &ns]) {
                tracing::warn!("{e}");
            }
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Best effort: wake up on time on a loaded machine. No timer slack (the default 50 µs would
/// be added to every release) and a low real-time priority (SCHED_FIFO 1, root only; the
/// thread sleeps between packets and the kernel's RT throttling keeps a flood from starving
/// the machine), so compiles on the same cores do not delay packets.
fn precise_wakeups() {
    // SAFETY: prctl(PR_SET_TIMERSLACK) and sched_setscheduler(0, ...) change only the calling
    // thread's timer slack and scheduling policy; `param` is a valid sched_param.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
        let param = libc::sched_param { sched_priority: 1 };
        if libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) != 0 {
            tracing::debug!("no real-time priority for the emulator: {}", std::io::Error::last_os_error());
        }
    }
}

/// The emulator loop: release what is due, wait for a packet or the next release, read.
fn run(mut tuns: [Tun; 2], mut pipes: [Pipe<Vec<u8>>; 2], stop: &AtomicBool, shared: &Mutex<Shared>) {
    precise_wakeups();
    let epoch = Instant::now();
    let mut buf = vec![0u8; 65_536];
    let mut write_errors = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if let Ok(mut s) = shared.lock() {
            if let Some(spec) = s.pending.take() {
                pipes[0].set(spec.a2b);
                pipes[1].set(spec.b2a);
            }
            s.stats = LinkStats { a2b: pipes[0].stats(), b2a: pipes[1].stats(), write_errors };
        }
        let now = epoch.elapsed();
        // Direction 0 (A → B) writes into B's device, direction 1 into A's.
        for (dir, pipe) in pipes.iter_mut().enumerate() {
            while let Some(packet) = pipe.pop_due(now) {
                if tuns[1 - dir].send(&packet).is_err() {
                    write_errors += 1;
                }
            }
        }
        let wait = pipes
            .iter()
            .filter_map(Pipe::next_release)
            .min()
            .map_or(Duration::from_millis(50), |t| t.saturating_sub(epoch.elapsed()))
            .min(Duration::from_millis(50));
        if wait.is_zero() {
            continue;
        }
        let mut fds = tuns.each_ref().map(|t| libc::pollfd { fd: t.fd(), events: libc::POLLIN, revents: 0 });
        let ts = libc::timespec { tv_sec: wait.as_secs() as _, tv_nsec: wait.subsec_nanos() as _ };
        // SAFETY: `fds` is a valid array of two pollfd and `ts` a valid timespec for the call.
        let n = unsafe { libc::ppoll(fds.as_mut_ptr(), 2, &ts, std::ptr::null()) };
        if n <= 0 {
            continue;
        }
        for (dir, fd) in fds.iter().enumerate() {
            if fd.revents & libc::POLLIN == 0 {
                continue;
            }
            // A bounded batch per wake-up, so one busy direction cannot starve the releases.
            for _ in 0..64 {
                match tuns[dir].recv(&mut buf) {
                    Ok(len) if len > 0 => {
                        let now = epoch.elapsed();
                        pipes[dir].push(now, len, buf[..len].to_vec());
                    }
                    _ => break,
                }
            }
        }
    }
}
