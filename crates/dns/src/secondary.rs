//! A secondary zone's refresh logic as a sans-IO state machine (quinn-proto style): the SOA
//! refresh/retry/expire timers of RFC 1034 §4.3.5, IXFR with AXFR fallback (RFC 1995), and
//! NOTIFY (RFC 1996). It never reads the clock and does no I/O: the driver
//! ([`crate::secondary_driver`]) passes `now` in, performs the [`Action`]s it asks for (SOA
//! query, transfer, install, expire) and feeds the results back. So every timer path is tested
//! deterministically in virtual time below.

use crate::respond::canonical;
use crate::serial::Serial;
use crate::zone::SoaInfo;
use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Bounds and pacing of the timers, whatever the SOA says, so a bad SOA cannot stall or flood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Shortest refresh/retry interval.
    pub min_interval: Duration,
    /// Longest refresh/retry interval.
    pub max_interval: Duration,
    /// Retry interval while we hold no data (no SOA to take it from).
    pub empty_retry: Duration,
    /// NOTIFYs start at most one SOA check per this interval; more are folded into one check
    /// at its end (a flood of NOTIFYs cannot make us flood the primary).
    pub notify_min_interval: Duration,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            min_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(86_400),
            empty_retry: Duration::from_secs(5),
            notify_min_interval: Duration::from_secs(1),
        }
    }
}

/// Which transfer to request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Xfr {
    /// IXFR from the serial we hold (RFC 1995).
    Ixfr { from: Serial },
    /// A full transfer (RFC 5936).
    Axfr,
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ask `primary` for the zone's SOA; answer with [`Secondary::on_soa`].
    QuerySoa { primary: SocketAddr },
    /// Transfer the zone from `primary`; answer with [`Secondary::on_transfer`].
    Transfer { primary: SocketAddr, xfr: Xfr },
    /// Serve the zone just transferred (the one reported as [`TransferOutcome::Ready`]).
    Install { serial: Serial },
    /// Stop serving the zone: it passed SOA expire without reaching the primary.
    Expire,
    /// Something worth a log line.
    Log(Event),
}

/// What a transfer brought, as the driver reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferOutcome {
    /// The primary says we are current (an IXFR answer of just its SOA).
    UpToDate,
    /// A zone was transferred and checked; the driver holds it until [`Action::Install`].
    Ready(SoaInfo),
    /// The transfer failed, or its result was not usable.
    Failed,
}

/// What became of a NOTIFY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyVerdict {
    /// From the primary: a SOA check started now.
    Refresh,
    /// From the primary: a check will run when the one in flight ends or the NOTIFY pacing
    /// allows.
    Deferred,
    /// From the primary, but its serial is not newer than ours: nothing to do.
    NotNewer,
    /// Not from the primary's address: to be refused.
    NotPrimary,
}

/// Log-worthy things that happened; the driver turns them into log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The SOA query failed (timeout, error, no SOA).
    SoaFailed,
    /// The primary's serial is not newer than ours: confirmed current.
    UpToDate { ours: Serial, theirs: Serial },
    /// A transfer is starting.
    Transferring { xfr: Xfr, theirs: Serial },
    /// IXFR failed; trying AXFR.
    IxfrFallback,
    /// The transfer failed; the next try is after SOA retry.
    TransferFailed,
    /// A transferred zone was not newer than ours and was dropped.
    NotNewer { ours: Serial, theirs: Serial },
    /// A new version is being served.
    Installed { serial: Serial },
    /// The zone expired and is no longer served.
    Expired,
    /// A NOTIFY came from an address that is not the primary.
    NotifyNotFromPrimary { from: IpAddr },
    /// A NOTIFY's serial is not newer than ours.
    NotifyNotNewer { serial: Serial },
}

impl Event {
    /// Whether this is a problem (logged as a warning) rather than progress.
    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            Event::SoaFailed
                | Event::IxfrFallback
                | Event::TransferFailed
                | Event::Expired
                | Event::NotifyNotFromPrimary { .. }
                | Event::NotNewer { .. }
        )
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::SoaFailed => write!(f, "SOA check failed; retrying after SOA retry"),
            Event::UpToDate { ours, theirs } => write!(f, "up to date (ours {ours}, primary {theirs})"),
            Event::Transferring { xfr: Xfr::Ixfr { from }, theirs } => {
                write!(f, "IXFR from {from} to {theirs}")
            }
            Event::Transferring { xfr: Xfr::Axfr, theirs } => write!(f, "AXFR of serial {theirs}"),
            Event::IxfrFallback => write!(f, "IXFR failed; trying AXFR"),
            Event::TransferFailed => write!(f, "transfer failed; retrying after SOA retry"),
            Event::NotNewer { ours, theirs } => {
                write!(f, "transferred serial {theirs} is not newer than ours ({ours}); ignored")
            }
            Event::Installed { serial } => write!(f, "secondary zone updated to serial {serial}"),
            Event::Expired => {
                write!(f, "zone expired (primary unreachable past SOA expire); no longer served")
            }
            Event::NotifyNotFromPrimary { from } => {
                write!(f, "NOTIFY from {from}, which is not the primary; refused")
            }
            Event::NotifyNotNewer { serial } => {
                write!(f, "NOTIFY for serial {serial}, not newer than ours; ignored")
            }
        }
    }
}

/// What is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Idle,
    Soa,
    Transfer(Xfr),
}

/// One secondary zone's refresh state machine. Drive it with [`poll_action`](Self::poll_action)
/// and [`poll_timeout`](Self::poll_timeout)/[`handle_timeout`](Self::handle_timeout), and feed
/// it [`on_soa`](Self::on_soa), [`on_transfer`](Self::on_transfer) and
/// [`on_notify`](Self::on_notify).
#[derive(Debug)]
pub struct Secondary {
    primary: SocketAddr,
    params: Params,
    /// The SOA of the data we serve (None: nothing, or expired).
    held: Option<SoaInfo>,
    /// The last SOA we had, for the retry interval after expiry.
    timing: Option<SoaInfo>,
    /// When the data we hold expires (confirmation time + SOA expire).
    expire_at: Option<Instant>,
    /// When the next SOA check is due (None while an operation is in flight).
    next_check: Option<Instant>,
    op: Op,
    /// A NOTIFY arrived while an operation was in flight.
    check_pending: bool,
    /// When the last SOA check started (NOTIFY pacing).
    last_check: Option<Instant>,
    actions: VecDeque<Action>,
}

impl Secondary {
    /// A secondary holding nothing yet: the first SOA check is due at once.
    pub fn new(now: Instant, primary: SocketAddr, params: Params) -> Secondary {
        Secondary {
            primary,
            params,
            held: None,
            timing: None,
            expire_at: None,
            next_check: Some(now),
            op: Op::Idle,
            check_pending: false,
            last_check: None,
            actions: VecDeque::new(),
        }
    }

    /// A secondary restarted with a stored copy whose data was last confirmed `age` ago (e.g.
    /// the age of the file): it serves that copy until `expire - age`, and checks at once.
    pub fn restored(
        now: Instant,
        primary: SocketAddr,
        params: Params,
        soa: SoaInfo,
        age: Duration,
    ) -> Secondary {
        let mut s = Secondary::new(now, primary, params);
        s.held = Some(soa);
        s.timing = Some(soa);
        s.expire_at = Some(now + Duration::from_secs(soa.expire as u64).saturating_sub(age));
        s
    }

    /// The primary this zone is transferred from.
    pub fn primary(&self) -> SocketAddr {
        self.primary
    }

    /// The SOA of the data being served, if any.
    pub fn held(&self) -> Option<SoaInfo> {
        self.held
    }

    /// The next thing for the driver to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let expiry = self.held.and(self.expire_at);
        match (self.next_check, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the timers due at `now`: expiry, then the SOA check.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.held.is_some() && self.expire_at.is_some_and(|t| t <= now) {
            self.held = None;
            self.expire_at = None;
            self.actions.push_back(Action::Expire);
            self.actions.push_back(Action::Log(Event::Expired));
        }
        if self.op == Op::Idle && self.next_check.is_some_and(|t| t <= now) {
            self.start_check(now);
        }
    }

    /// The answer to [`Action::QuerySoa`]: the primary's SOA, or `None` when the query failed.
    pub fn on_soa(&mut self, now: Instant, theirs: Option<SoaInfo>) {
        if self.op != Op::Soa {
            return;
        }
        let Some(theirs) = theirs else {
            self.log(Event::SoaFailed);
            return self.finish(now, false);
        };
        let theirs_serial = Serial(theirs.serial);
        match self.held {
            Some(ours) if !Serial(ours.serial).is_older_than(theirs_serial) => {
                self.log(Event::UpToDate { ours: Serial(ours.serial), theirs: theirs_serial });
                self.confirm(now);
                self.finish(now, true);
            }
            held => {
                let xfr = match held {
                    Some(ours) => Xfr::Ixfr { from: Serial(ours.serial) },
                    None => Xfr::Axfr,
                };
                self.start_transfer(xfr, theirs_serial);
            }
        }
    }

    /// The result of [`Action::Transfer`].
    pub fn on_transfer(&mut self, now: Instant, outcome: TransferOutcome) {
        let Op::Transfer(xfr) = self.op else { return };
        match outcome {
            TransferOutcome::UpToDate => {
                self.confirm(now);
                self.finish(now, true);
            }
            TransferOutcome::Ready(soa) => {
                match self.held {
                    Some(ours) if !Serial(soa.serial).is_newer_than(Serial(ours.serial)) => {
                        self.log(Event::NotNewer { ours: Serial(ours.serial), theirs: Serial(soa.serial) });
                    }
                    _ => {
                        self.held = Some(soa);
                        self.timing = Some(soa);
                        self.actions.push_back(Action::Install { serial: Serial(soa.serial) });
                        self.log(Event::Installed { serial: Serial(soa.serial) });
                    }
                }
                self.confirm(now);
                self.finish(now, true);
            }
            TransferOutcome::Failed => match xfr {
                Xfr::Ixfr { .. } => {
                    self.log(Event::IxfrFallback);
                    self.op = Op::Transfer(Xfr::Axfr);
                    self.actions.push_back(Action::Transfer { primary: self.primary, xfr: Xfr::Axfr });
                }
                Xfr::Axfr => {
                    self.log(Event::TransferFailed);
                    self.finish(now, false);
                }
            },
        }
    }

    /// A NOTIFY for this zone from `from` (RFC 1996), carrying the primary's new `serial` if
    /// the message had one. Only the primary's address is heeded; a serial not newer than ours
    /// is ignored; checks are paced by [`Params::notify_min_interval`].
    pub fn on_notify(&mut self, now: Instant, from: IpAddr, serial: Option<u32>) -> NotifyVerdict {
        if canonical(from) != canonical(self.primary.ip()) {
            self.log(Event::NotifyNotFromPrimary { from });
            return NotifyVerdict::NotPrimary;
        }
        if let (Some(s), Some(ours)) = (serial, self.held)
            && !Serial(s).is_newer_than(Serial(ours.serial))
        {
            self.log(Event::NotifyNotNewer { serial: Serial(s) });
            return NotifyVerdict::NotNewer;
        }
        if self.op != Op::Idle {
            self.check_pending = true;
            return NotifyVerdict::Deferred;
        }
        let earliest = self.notify_earliest(now);
        if earliest <= now {
            self.start_check(now);
            return NotifyVerdict::Refresh;
        }
        self.next_check = Some(self.next_check.map_or(earliest, |t| t.min(earliest)));
        NotifyVerdict::Deferred
    }

    fn notify_earliest(&self, now: Instant) -> Instant {
        self.last_check.map_or(now, |t| now.max(t + self.params.notify_min_interval))
    }

    fn log(&mut self, e: Event) {
        self.actions.push_back(Action::Log(e));
    }

    fn start_check(&mut self, now: Instant) {
        self.op = Op::Soa;
        self.next_check = None;
        self.last_check = Some(now);
        self.actions.push_back(Action::QuerySoa { primary: self.primary });
    }

    fn start_transfer(&mut self, xfr: Xfr, theirs: Serial) {
        self.op = Op::Transfer(xfr);
        self.log(Event::Transferring { xfr, theirs });
        self.actions.push_back(Action::Transfer { primary: self.primary, xfr });
    }

    /// The data we hold is current as of `now`.
    fn confirm(&mut self, now: Instant) {
        if let Some(soa) = self.held {
            self.expire_at = Some(now + Duration::from_secs(soa.expire as u64));
        }
    }

    /// An operation ended: the next check after refresh (success) or retry (failure), sooner
    /// if a NOTIFY came meanwhile.
    fn finish(&mut self, now: Instant, ok: bool) {
        self.op = Op::Idle;
        let p = &self.params;
        let wait = match (self.held.or(self.timing), ok) {
            (Some(s), true) => Duration::from_secs(s.refresh as u64),
            (Some(s), false) => Duration::from_secs(s.retry as u64),
            (None, _) => p.empty_retry,
        };
        let mut next = now + wait.clamp(p.min_interval, p.max_interval.max(p.min_interval));
        if std::mem::take(&mut self.check_pending) {
            next = next.min(self.notify_earliest(now));
        }
        self.next_check = Some(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIMARY: &str = "192.0.2.1:53";

    fn soa(serial: u32) -> SoaInfo {
        SoaInfo { serial, refresh: 100, retry: 10, expire: 1000, minimum: 5, ttl: 60 }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// A secondary plus its virtual clock.
    struct Sim {
        s: Secondary,
        t0: Instant,
        now: Instant,
    }

    impl Sim {
        fn new() -> Sim {
            let t0 = Instant::now();
            Sim { s: Secondary::new(t0, PRIMARY.parse().unwrap(), Params::default()), t0, now: t0 }
        }

        /// Advances virtual time to the next timer and fires it; returns the time since the start.
        fn advance(&mut self) -> Duration {
            let t = self.s.poll_timeout().expect("a timer is always armed");
            assert!(t >= self.now, "timers never go back");
            self.now = t;
            self.s.handle_timeout(t);
            t - self.t0
        }

        /// The actions queued now, without log lines.
        fn actions(&mut self) -> Vec<Action> {
            std::iter::from_fn(|| self.s.poll_action()).filter(|a| !matches!(a, Action::Log(_))).collect()
        }

        /// All actions, log lines included.
        fn all(&mut self) -> Vec<Action> {
            std::iter::from_fn(|| self.s.poll_action()).collect()
        }

        /// Runs the first check through a full transfer of `serial` at the current time.
        fn load(&mut self, serial: u32) {
            self.s.handle_timeout(self.now);
            assert_eq!(self.actions(), vec![query()]);
            self.s.on_soa(self.now, Some(soa(serial)));
            assert_eq!(self.actions(), vec![transfer(Xfr::Axfr)]);
            self.s.on_transfer(self.now, TransferOutcome::Ready(soa(serial)));
            assert_eq!(self.actions(), vec![Action::Install { serial: Serial(serial) }]);
        }
    }

    fn query() -> Action {
        Action::QuerySoa { primary: PRIMARY.parse().unwrap() }
    }

    fn transfer(xfr: Xfr) -> Action {
        Action::Transfer { primary: PRIMARY.parse().unwrap(), xfr }
    }

    fn primary_ip() -> IpAddr {
        PRIMARY.parse::<SocketAddr>().unwrap().ip()
    }

    #[test]
    fn first_check_is_immediate_and_refresh_follows_the_soa() {
        let mut sim = Sim::new();
        assert_eq!(sim.s.poll_timeout(), Some(sim.t0));
        sim.load(1);
        // Next check at SOA refresh (100 s); the SOA says we are current.
        assert_eq!(sim.advance(), secs(100));
        assert_eq!(sim.actions(), vec![query()]);
        sim.s.on_soa(sim.now, Some(soa(1)));
        assert_eq!(sim.actions(), vec![]);
        assert_eq!(sim.advance(), secs(200));
        assert_eq!(sim.actions(), vec![query()]);
        // A newer serial: IXFR from ours.
        sim.s.on_soa(sim.now, Some(soa(2)));
        assert_eq!(sim.actions(), vec![transfer(Xfr::Ixfr { from: Serial(1) })]);
        sim.s.on_transfer(sim.now, TransferOutcome::Ready(soa(2)));
        assert_eq!(sim.actions(), vec![Action::Install { serial: Serial(2) }]);
        assert_eq!(sim.s.held().map(|s| s.serial), Some(2));
        assert_eq!(sim.advance(), secs(300));
    }

    #[test]
    fn failed_soa_query_retries_at_soa_retry() {
        let mut sim = Sim::new();
        sim.load(1);
        assert_eq!(sim.advance(), secs(100));
        assert_eq!(sim.actions(), vec![query()]);
        sim.s.on_soa(sim.now, None);
        assert!(sim.all().contains(&Action::Log(Event::SoaFailed)));
        assert_eq!(sim.advance(), secs(110), "retry (10 s) after the failure");
        assert_eq!(sim.actions(), vec![query()]);
        sim.s.on_soa(sim.now, Some(soa(1)));
        assert_eq!(sim.advance(), secs(210), "refresh again after a success");
    }

    #[test]
    fn nothing_held_retries_quickly() {
        let mut sim = Sim::new();
        sim.s.handle_timeout(sim.now);
        assert_eq!(sim.actions(), vec![query()]);
        sim.s.on_soa(sim.now, None);
        assert_eq!(sim.advance(), secs(5));
    }

    #[test]
    fn expires_after_soa_expire_without_success_then_recovers_with_axfr() {
        let mut sim = Sim::new();
        sim.load(1);
        // The primary never answers again: a query every retry until expire (1000 s).
        let mut queries = 0;
        loop {
            let at = sim.advance();
            let acts = sim.actions();
            if acts.contains(&Action::Expire) {
                assert_eq!(at, secs(1000), "expired exactly at SOA expire after the last success");
                if acts.contains(&query()) {
                    sim.s.on_soa(sim.now, None);
                }
                break;
            }
            assert_eq!(acts, vec![query()], "at {at:?}");
            queries += 1;
            assert!(queries < 200, "bounded");
            sim.s.on_soa(sim.now, None);
        }
        assert_eq!(sim.s.held(), None, "no longer served");
        // Still trying (at the old SOA's retry), and the next success is a full transfer.
        let at = sim.advance();
        assert!(at > secs(1000) && at <= secs(1010), "{at:?}");
        assert_eq!(sim.actions(), vec![query()]);
        sim.s.on_soa(sim.now, Some(soa(1)));
        assert_eq!(sim.actions(), vec![transfer(Xfr::Axfr)]);
        sim.s.on_transfer(sim.now, TransferOutcome::Ready(soa(1)));
        assert_eq!(sim.actions(), vec![Action::Install { serial: Serial(1) }]);
    }

    #[test]
    fn a_success_postpones_expiry() {
        let mut sim = Sim::new();
        sim.load(1);
        for round in 1..=20u64 {
            assert_eq!(sim.advance(), secs(100 * round));
            assert_eq!(sim.actions(), vec![query()]);
            sim.s.on_soa(sim.now, Some(soa(1)));
        }
        assert!(sim.s.held().is_some(), "confirmed every 100 s: never expires");
    }

    #[test]
    fn notify_from_the_primary_checks_at_once() {
        let mut sim = Sim::new();
        sim.load(1);
        sim.now += secs(30);
        assert_eq!(sim.s.on_notify(sim.now, primary_ip(), Some(2)), NotifyVerdict::Refresh);
        assert_eq!(sim.actions(), vec![query()]);
        sim.s.on_soa(sim.now, Some(soa(2)));
        assert_eq!(sim.actions(), vec![transfer(Xfr::Ixfr { from: Serial(1) })]);
        sim.s.on_transfer(sim.now, TransferOutcome::Ready(soa(2)));
        assert_eq!(sim.actions(), vec![Action::Install { serial: Serial(2) }]);
        assert_eq!(sim.advance(), secs(130), "refresh counts from the NOTIFY's transfer");
    }

    #[test]
    fn notify_from_elsewhere_is_refused_and_changes_nothing() {
        let mut sim = Sim::new();
        sim.load(1);
        let before = sim.s.poll_timeout();
        let other: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(sim.s.on_notify(sim.now + secs(5), other, Some(9)), NotifyVerdict::NotPrimary);
        assert_eq!(sim.all(), vec![Action::Log(Event::NotifyNotFromPrimary { from: other })]);
        assert_eq!(sim.s.poll_timeout(), before);
        // The primary's address in IPv4-mapped IPv6 form counts as the primary.
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        sim.now += secs(5);
        assert_eq!(sim.s.on_notify(sim.now, mapped, None), NotifyVerdict::Refresh);
    }

    #[test]
    fn notify_flood_is_paced() {
        let mut sim = Sim::new();
        sim.load(1);
        sim.now += secs(50);
        assert_eq!(sim.s.on_notify(sim.now, primary_ip(), None), NotifyVerdict::Refresh);
        assert_eq!(sim.actions(), vec![query()]);
        // More while the check is in flight: one check after it.
        for _ in 0..100 {
            assert_eq!(sim.s.on_notify(sim.now, primary_ip(), None), NotifyVerdict::Deferred);
        }
        sim.s.on_soa(sim.now, Some(soa(1)));
        assert_eq!(sim.actions(), vec![]);
        // The folded check runs one pacing interval after the last one, not 100 times.
        assert_eq!(sim.advance(), secs(51));
        assert_eq!(sim.actions(), vec![query()]);
        sim.s.on_soa(sim.now, Some(soa(1)));
        // NOTIFYs right after: deferred to the interval's end, once.
        for _ in 0..100 {
            assert_eq!(sim.s.on_notify(sim.now, primary_ip(), None), NotifyVerdict::Deferred);
        }
        assert_eq!(sim.actions(), vec![]);
        assert_eq!(sim.advance(), secs(52));
        assert_eq!(sim.actions(), vec![query()]);
    }

    #[test]
    fn notify_with_a_serial_not_newer_is_ignored() {
        let mut sim = Sim::new();
        sim.load(5);
        sim.now += secs(10);
        assert_eq!(sim.s.on_notify(sim.now, primary_ip(), Some(5)), NotifyVerdict::NotNewer);
        assert_eq!(sim.s.on_notify(sim.now, primary_ip(), Some(4)), NotifyVerdict::NotNewer);
        // Half the serial space away: not comparable, so not newer.
        assert_eq!(sim.s.on_notify(sim.now, primary_ip(), Some(5 + 0x8000_0000)), NotifyVerdict::NotNewer);
        assert_eq!(sim.actions(), vec![]);
        assert_eq!(sim.s.on_notify(sim.now, primary_ip(), Some(6)), NotifyVerdict::Refresh);
    }

    #[test]
    fn ixfr_failure_falls_back_to_axfr_and_axfr_failure_retries() {
        let mut sim = Sim::new();
        sim.load(1);
        sim.advance();
        assert_eq!(sim.actions(), vec![query()]);
        sim.s.on_soa(sim.now, Some(soa(2)));
        assert_eq!(sim.actions(), vec![transfer(Xfr::Ixfr { from: Serial(1) })]);
        sim.s.on_transfer(sim.now, TransferOutcome::Failed);
        let all = sim.all();
        assert!(all.contains(&Action::Log(Event::IxfrFallback)));
        assert!(all.contains(&transfer(Xfr::Axfr)), "{all:?}");
        sim.s.on_transfer(sim.now, TransferOutcome::Failed);
        assert!(sim.all().contains(&Action::Log(Event::TransferFailed)));
        assert_eq!(sim.advance(), secs(110), "retry after the failed AXFR");
        assert_eq!(sim.actions(), vec![query()]);
        sim.s.on_soa(sim.now, Some(soa(2)));
        assert_eq!(sim.actions(), vec![transfer(Xfr::Ixfr { from: Serial(1) })]);
        sim.s.on_transfer(sim.now, TransferOutcome::Failed);
        sim.all();
        sim.s.on_transfer(sim.now, TransferOutcome::Ready(soa(2)));
        assert_eq!(sim.actions(), vec![Action::Install { serial: Serial(2) }]);
    }

    #[test]
    fn serials_not_newer_are_ignored() {
        let mut sim = Sim::new();
        sim.load(10);
        // The primary went back to serial 9: we keep 10, no transfer.
        sim.advance();
        sim.actions();
        sim.s.on_soa(sim.now, Some(soa(9)));
        assert_eq!(sim.actions(), vec![]);
        // Wrapped around: 0xffff_fff0 is older than 10 in RFC 1982.
        sim.advance();
        sim.actions();
        sim.s.on_soa(sim.now, Some(soa(0xffff_fff0)));
        assert_eq!(sim.actions(), vec![]);
        // 5 is newer than 0xffff_fff0 but older than 10: still nothing.
        sim.advance();
        sim.actions();
        sim.s.on_soa(sim.now, Some(soa(10)));
        assert_eq!(sim.actions(), vec![]);
        // A transfer that brings a zone no newer than ours is dropped (not installed).
        sim.advance();
        sim.actions();
        sim.s.on_soa(sim.now, Some(soa(11)));
        assert_eq!(sim.actions(), vec![transfer(Xfr::Ixfr { from: Serial(10) })]);
        sim.s.on_transfer(sim.now, TransferOutcome::Ready(soa(10)));
        let all = sim.all();
        assert!(!all.iter().any(|a| matches!(a, Action::Install { .. })), "{all:?}");
        assert!(all.contains(&Action::Log(Event::NotNewer { ours: Serial(10), theirs: Serial(10) })));
        // A wrapped-around newer serial is installed.
        sim.advance();
        sim.actions();
        let wrapped = 10u32.wrapping_add(0x7fff_0000);
        sim.s.on_soa(sim.now, Some(soa(wrapped)));
        assert_eq!(sim.actions(), vec![transfer(Xfr::Ixfr { from: Serial(10) })]);
        sim.s.on_transfer(sim.now, TransferOutcome::Ready(soa(wrapped)));
        assert_eq!(sim.actions(), vec![Action::Install { serial: Serial(wrapped) }]);
    }

    #[test]
    fn restart_keeps_the_confirmation_age() {
        let t0 = Instant::now();
        let primary = PRIMARY.parse().unwrap();
        // Stored 900 s ago, SOA expire 1000 s: 100 s of service left unless the primary answers.
        let mut s = Secondary::restored(t0, primary, Params::default(), soa(3), secs(900));
        assert_eq!(s.held().map(|s| s.serial), Some(3), "served from the stored copy at once");
        assert_eq!(s.poll_timeout(), Some(t0), "checked at once");
        s.handle_timeout(t0);
        assert_eq!(std::iter::from_fn(|| s.poll_action()).collect::<Vec<_>>(), vec![query()]);
        s.on_soa(t0, None);
        let mut expired_at = None;
        for _ in 0..50 {
            let now = s.poll_timeout().unwrap();
            s.handle_timeout(now);
            let acts: Vec<_> = std::iter::from_fn(|| s.poll_action()).collect();
            if acts.contains(&Action::Expire) {
                expired_at = Some(now - t0);
                break;
            }
            s.on_soa(now, None);
        }
        assert_eq!(expired_at, Some(secs(100)));
        // A copy older than expire is expired at the first timer.
        let mut old = Secondary::restored(t0, primary, Params::default(), soa(3), secs(5000));
        old.handle_timeout(t0);
        assert!(std::iter::from_fn(|| old.poll_action()).any(|a| a == Action::Expire));
        // A fresh copy answered current by the primary: confirmed, refresh after 100 s.
        let mut fresh = Secondary::restored(t0, primary, Params::default(), soa(3), secs(10));
        fresh.handle_timeout(t0);
        fresh.on_soa(t0, Some(soa(3)));
        assert_eq!(fresh.poll_timeout(), Some(t0 + secs(100)));
    }

    #[test]
    fn bad_soa_timers_are_clamped() {
        let t0 = Instant::now();
        let primary = PRIMARY.parse().unwrap();
        let zero = SoaInfo { serial: 1, refresh: 0, retry: 0, expire: u32::MAX, minimum: 0, ttl: 0 };
        let mut s = Secondary::restored(t0, primary, Params::default(), zero, Duration::ZERO);
        s.handle_timeout(t0);
        s.on_soa(t0, Some(zero));
        assert_eq!(s.poll_timeout(), Some(t0 + secs(1)), "refresh 0 becomes the 1 s minimum");
        let huge = SoaInfo { refresh: u32::MAX, ..zero };
        let mut s = Secondary::restored(t0, primary, Params::default(), huge, Duration::ZERO);
        s.handle_timeout(t0);
        s.on_soa(t0, Some(huge));
        assert_eq!(s.poll_timeout(), Some(t0 + secs(86_400)), "a day at most");
    }

    #[test]
    fn stale_results_are_ignored() {
        let mut sim = Sim::new();
        sim.load(1);
        // No operation in flight: late answers change nothing.
        let before = sim.s.poll_timeout();
        sim.s.on_soa(sim.now, Some(soa(7)));
        sim.s.on_transfer(sim.now, TransferOutcome::Ready(soa(7)));
        assert_eq!(sim.all(), vec![]);
        assert_eq!(sim.s.poll_timeout(), before);
        assert_eq!(sim.s.held().map(|s| s.serial), Some(1));
    }
}
