//! The health of one backend as a sans-IO state machine: active check results with rise/fall
//! counts (HAProxy's model), passive ejection after consecutive failed connects, a timed
//! re-admission when no active check runs, and slow start (a weight ramp) for a replica that
//! has just come back. Every input takes `now`; the driver owns sockets and timers.

use std::time::{Duration, Instant};

/// Thresholds for [`Health`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Consecutive successful active checks that bring a down backend up.
    pub rise: u32,
    /// Consecutive failed active checks that take an up backend down.
    pub fall: u32,
    /// Consecutive failed connects (from real traffic) that eject a backend at once.
    pub eject_after: u32,
    /// Without active checks: how long an ejected backend stays out before it is tried again.
    pub eject_for: Duration,
    /// Whether active checks run (if not, only passive ejection and timed re-admission apply).
    pub active: bool,
    /// How long a recovered backend takes to reach its full weight (zero: at once).
    pub slow_start: Duration,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            rise: 2,
            fall: 3,
            eject_after: 3,
            eject_for: Duration::from_secs(10),
            active: true,
            slow_start: Duration::from_secs(10),
        }
    }
}

/// Up or down, as the balancer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Receives new connections.
    Up,
    /// Receives none until it recovers.
    Down,
}

/// A change of state the driver must act on (rebuild the balancer, log, count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The backend went down, and why.
    WentDown(DownReason),
    /// The backend came back (slow start begins).
    CameUp,
}

/// Why a backend went down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReason {
    /// `fall` active checks failed in a row.
    ChecksFailed,
    /// `eject_after` connects from real traffic failed in a row.
    ConnectsFailed,
}

/// The health state of one backend.
#[derive(Debug, Clone)]
pub struct Health {
    policy: HealthPolicy,
    state: State,
    ok_run: u32,
    fail_run: u32,
    connect_fail_run: u32,
    down_since: Option<Instant>,
    up_since: Option<Instant>,
}

/// Weight of a backend at full strength; slow start ramps from a tenth of it.
pub const FULL_WEIGHT: u32 = 100;

impl Health {
    /// A backend assumed up (as HAProxy does at start), at full weight.
    pub fn new(policy: HealthPolicy) -> Health {
        Health {
            policy,
            state: State::Up,
            ok_run: 0,
            fail_run: 0,
            connect_fail_run: 0,
            down_since: None,
            up_since: None,
        }
    }

    /// Up or down now.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the backend takes new connections.
    pub fn is_up(&self) -> bool {
        self.state == State::Up
    }

    /// The policy in force.
    pub fn policy(&self) -> HealthPolicy {
        self.policy
    }

    /// Feeds one active check's result.
    pub fn check_result(&mut self, ok: bool, now: Instant) -> Option<Transition> {
        if ok {
            self.fail_run = 0;
            self.ok_run = self.ok_run.saturating_add(1);
            if self.state == State::Down && self.ok_run >= self.policy.rise.max(1) {
                return Some(self.go_up(now));
            }
        } else {
            self.ok_run = 0;
            self.fail_run = self.fail_run.saturating_add(1);
            if self.state == State::Up && self.fail_run >= self.policy.fall.max(1) {
                return Some(self.go_down(DownReason::ChecksFailed, now));
            }
        }
        None
    }

    /// A connect to the backend for real traffic failed.
    pub fn connect_failed(&mut self, now: Instant) -> Option<Transition> {
        self.connect_fail_run = self.connect_fail_run.saturating_add(1);
        if self.state == State::Up && self.connect_fail_run >= self.policy.eject_after.max(1) {
            return Some(self.go_down(DownReason::ConnectsFailed, now));
        }
        None
    }

    /// A connect to the backend for real traffic succeeded.
    pub fn connect_ok(&mut self) {
        self.connect_fail_run = 0;
    }

    /// Time passing: without active checks an ejected backend is re-admitted after `eject_for`.
    pub fn tick(&mut self, now: Instant) -> Option<Transition> {
        if self.policy.active || self.state == State::Up {
            return None;
        }
        match self.down_since {
            Some(t) if now.saturating_duration_since(t) >= self.policy.eject_for => Some(self.go_up(now)),
            _ => None,
        }
    }

    /// The weight for new connections: 0 when down; during slow start a linear ramp from a
    /// tenth of [`FULL_WEIGHT`], quantised to tenths so the balancer rebuilds at most ten times.
    pub fn weight(&self, now: Instant) -> u32 {
        if self.state == State::Down {
            return 0;
        }
        let (Some(since), ramp) = (self.up_since, self.policy.slow_start) else {
            return FULL_WEIGHT;
        };
        if ramp.is_zero() {
            return FULL_WEIGHT;
        }
        let elapsed = now.saturating_duration_since(since);
        if elapsed >= ramp {
            return FULL_WEIGHT;
        }
        let tenths = (elapsed.as_secs_f64() / ramp.as_secs_f64() * 10.0).floor() as u32;
        (tenths + 1).min(10) * FULL_WEIGHT / 10
    }

    /// When [`Health::weight`] next changes on its own (the end of the current slow-start step).
    pub fn next_weight_change(&self, now: Instant) -> Option<Instant> {
        let since = self.up_since?;
        let ramp = self.policy.slow_start;
        if self.state == State::Down || ramp.is_zero() || now.saturating_duration_since(since) >= ramp {
            return None;
        }
        let step = ramp / 10;
        let done = now.saturating_duration_since(since).as_nanos() / step.as_nanos().max(1);
        Some(since + step * (done as u32 + 1))
    }

    fn go_down(&mut self, reason: DownReason, now: Instant) -> Transition {
        self.state = State::Down;
        self.down_since = Some(now);
        self.up_since = None;
        self.ok_run = 0;
        Transition::WentDown(reason)
    }

    fn go_up(&mut self, now: Instant) -> Transition {
        self.state = State::Up;
        self.up_since = Some(now);
        self.down_since = None;
        self.fail_run = 0;
        self.connect_fail_run = 0;
        Transition::CameUp
    }
}

/// Parses the status code from the start of an HTTP/1.x response (`HTTP/1.1 200 OK\r\n`).
/// Health checks count 2xx and 3xx as healthy. Input comes from the network: never panics.
pub fn parse_http_status(head: &[u8]) -> Option<u16> {
    let line_end = head.iter().position(|&b| b == b'\n')?;
    let line = head[..line_end].strip_suffix(b"\r").unwrap_or(&head[..line_end]);
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let (&minor, rest) = rest.split_first()?;
    if !minor.is_ascii_digit() {
        return None;
    }
    let rest = rest.strip_prefix(b" ")?;
    let code = rest.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) || rest.get(3).is_some_and(|&b| b != b' ') {
        return None;
    }
    let code = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    (100..=599).contains(&code).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> HealthPolicy {
        HealthPolicy { slow_start: Duration::from_secs(10), ..HealthPolicy::default() }
    }

    #[test]
    fn fall_then_rise() {
        let t0 = Instant::now();
        let mut h = Health::new(policy());
        assert!(h.is_up());
        assert_eq!(h.check_result(false, t0), None);
        assert_eq!(h.check_result(false, t0), None);
        assert_eq!(h.check_result(false, t0), Some(Transition::WentDown(DownReason::ChecksFailed)));
        assert_eq!(h.weight(t0), 0);
        assert_eq!(h.check_result(true, t0), None);
        assert_eq!(h.check_result(false, t0), None, "a failure resets the rise count");
        assert_eq!(h.check_result(true, t0), None);
        assert_eq!(h.check_result(true, t0), Some(Transition::CameUp));
        assert!(h.is_up());
    }

    #[test]
    fn consecutive_connect_failures_eject_and_a_success_resets() {
        let t0 = Instant::now();
        let mut h = Health::new(policy());
        h.connect_failed(t0);
        h.connect_failed(t0);
        h.connect_ok();
        assert_eq!(h.connect_failed(t0), None);
        h.connect_failed(t0);
        assert_eq!(h.connect_failed(t0), Some(Transition::WentDown(DownReason::ConnectsFailed)));
        assert_eq!(h.connect_failed(t0), None, "already down");
        // With active checks on, only checks bring it back.
        assert_eq!(h.tick(t0 + Duration::from_secs(3600)), None);
    }

    #[test]
    fn without_active_checks_an_ejected_backend_is_retried_after_eject_for() {
        let t0 = Instant::now();
        let mut h = Health::new(HealthPolicy { active: false, eject_after: 1, ..policy() });
        assert!(h.connect_failed(t0).is_some());
        assert_eq!(h.tick(t0 + Duration::from_secs(9)), None);
        assert_eq!(h.tick(t0 + Duration::from_secs(10)), Some(Transition::CameUp));
    }

    #[test]
    fn slow_start_ramps_the_weight_in_tenths() {
        let t0 = Instant::now();
        let mut h = Health::new(HealthPolicy { rise: 1, fall: 1, ..policy() });
        assert_eq!(h.weight(t0), FULL_WEIGHT, "a backend up from the start has full weight");
        h.check_result(false, t0);
        h.check_result(true, t0);
        assert_eq!(h.weight(t0), 10);
        assert_eq!(h.weight(t0 + Duration::from_millis(2500)), 30);
        assert_eq!(h.next_weight_change(t0 + Duration::from_millis(2500)), Some(t0 + Duration::from_secs(3)));
        assert_eq!(h.weight(t0 + Duration::from_secs(10)), FULL_WEIGHT);
        assert_eq!(h.next_weight_change(t0 + Duration::from_secs(10)), None);
        let mut no_ramp =
            Health::new(HealthPolicy { slow_start: Duration::ZERO, rise: 1, fall: 1, ..policy() });
        no_ramp.check_result(false, t0);
        no_ramp.check_result(true, t0);
        assert_eq!(no_ramp.weight(t0), FULL_WEIGHT);
    }

    #[test]
    fn http_status_lines() {
        assert_eq!(parse_http_status(b"HTTP/1.1 200 OK\r\n\r\n"), Some(200));
        assert_eq!(parse_http_status(b"HTTP/1.0 302\r\n"), Some(302));
        assert_eq!(parse_http_status(b"HTTP/1.1 503 Busy\n"), Some(503));
        for junk in [
            &b""[..],
            b"HTTP/1.1 200 OK",
            b"HTTP/2 200\r\n",
            b"HTTP/1.1 2000\r\n",
            b"HTTP/1.1 099 x\r\n",
            b"HTTP/1.x 200\r\n",
            b"\xff\xfe\r\n",
            b"SSH-2.0-OpenSSH\r\n",
        ] {
            assert_eq!(parse_http_status(junk), None, "{junk:?}");
        }
    }
}
