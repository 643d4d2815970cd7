//! Server transactions (§17.2): INVITE (timers G, H, I) and non-INVITE (J).

use super::{Output, Timers};
use crate::wire::Message;
use std::time::{Duration, Instant};

/// States of Figures 7 and 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Non-INVITE request received, nothing sent yet.
    Trying,
    Proceeding,
    Completed,
    /// INVITE: the ACK for a non-2xx final response arrived.
    Confirmed,
    Terminated,
}

/// One server transaction.
#[derive(Debug)]
pub struct ServerTransaction {
    invite: bool,
    reliable: bool,
    timers: Timers,
    state: ServerState,
    last_response: Option<Message>,
    /// Timer G: retransmission of a non-2xx final response (unreliable transports).
    retransmit: Option<(Instant, Duration)>,
    /// Timer H: waiting for the ACK.
    timeout: Option<Instant>,
    /// Timer I/J.
    linger: Option<Instant>,
}

impl ServerTransaction {
    /// A new transaction for a request just received (never an ACK).
    pub fn new(request: &Message, reliable: bool, timers: Timers) -> Self {
        let invite = request.method() == "INVITE";
        ServerTransaction {
            invite,
            reliable,
            timers,
            state: if invite { ServerState::Proceeding } else { ServerState::Trying },
            last_response: None,
            retransmit: None,
            timeout: None,
            linger: None,
        }
    }

    /// The current state.
    pub fn state(&self) -> ServerState {
        self.state
    }

    /// The last response sent (its status code tells the TU what it already answered).
    pub fn last_response(&self) -> Option<&Message> {
        self.last_response.as_ref()
    }

    /// When `on_tick` must run next.
    pub fn deadline(&self) -> Option<Instant> {
        [self.retransmit.map(|r| r.0), self.timeout, self.linger].into_iter().flatten().min()
    }

    /// A request that matched this transaction: a retransmission (answered with the last
    /// response, never passed up) or the ACK of a non-2xx final response.
    pub fn on_request(&mut self, req: &Message, now: Instant) -> Vec<Output> {
        if req.method() == "ACK" {
            if self.invite && self.state == ServerState::Completed {
                self.state = ServerState::Confirmed;
                self.retransmit = None;
                self.timeout = None;
                let wait = if self.reliable { Duration::ZERO } else { self.timers.t4 };
                self.linger = Some(now + wait);
                if wait.is_zero() {
                    self.terminate();
                    return vec![Output::Terminated];
                }
            }
            return Vec::new();
        }
        match self.state {
            ServerState::Proceeding | ServerState::Completed => {
                self.last_response.iter().cloned().map(Output::Send).collect()
            }
            _ => Vec::new(),
        }
    }

    /// The TU answers. Responses after a final one are dropped (§17.2.1/§17.2.2).
    pub fn respond(&mut self, resp: Message, now: Instant) -> Vec<Output> {
        let Some(code) = resp.code() else { return Vec::new() };
        if !matches!(self.state, ServerState::Trying | ServerState::Proceeding) {
            return Vec::new();
        }
        self.last_response = Some(resp.clone());
        let mut out = vec![Output::Send(resp)];
        if code < 200 {
            self.state = ServerState::Proceeding;
        } else if self.invite && code < 300 {
            // The 2xx is retransmitted end to end by the UAS, not by us (§17.2.1).
            self.terminate();
            out.push(Output::Terminated);
        } else if self.invite {
            self.state = ServerState::Completed;
            if !self.reliable {
                self.retransmit = Some((now + self.timers.t1, self.timers.t1));
            }
            self.timeout = Some(now + self.timers.t64());
        } else {
            self.state = ServerState::Completed;
            let wait = if self.reliable { Duration::ZERO } else { self.timers.t64() };
            if wait.is_zero() {
                self.terminate();
                out.push(Output::Terminated);
            } else {
                self.linger = Some(now + wait);
            }
        }
        out
    }

    /// Runs the timers that are due.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Output> {
        if self.state == ServerState::Terminated {
            return Vec::new();
        }
        if self.timeout.is_some_and(|t| now >= t) {
            self.terminate();
            return vec![Output::Timeout, Output::Terminated];
        }
        if self.linger.is_some_and(|t| now >= t) {
            self.terminate();
            return vec![Output::Terminated];
        }
        let mut out = Vec::new();
        if let Some((at, interval)) = self.retransmit
            && now >= at
        {
            let next = (interval * 2).min(self.timers.t2);
            self.retransmit = Some((now + next, next));
            if let Some(r) = &self.last_response {
                out.push(Output::Send(r.clone()));
            }
        }
        out
    }

    fn terminate(&mut self) {
        self.state = ServerState::Terminated;
        self.retransmit = None;
        self.timeout = None;
        self.linger = None;
    }
}
