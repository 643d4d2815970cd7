//! Client transactions (§17.1): INVITE (timers A, B, D) and non-INVITE (E, F, K).

use super::{Output, Timers};
use crate::wire::{Header, Message, StartLine};
use std::time::{Duration, Instant};

/// States of Figures 5 and 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// INVITE sent, no response yet (Trying for non-INVITE).
    Calling,
    Proceeding,
    Completed,
    Terminated,
}

/// One client transaction.
#[derive(Debug)]
pub struct ClientTransaction {
    request: Message,
    invite: bool,
    reliable: bool,
    timers: Timers,
    state: ClientState,
    /// Timer A/E: next retransmission and current interval.
    retransmit: Option<(Instant, Duration)>,
    /// Timer B/F.
    timeout: Option<Instant>,
    /// Timer D/K.
    linger: Option<Instant>,
    /// The ACK sent for a non-2xx final response, re-sent on its retransmissions.
    ack: Option<Message>,
}

impl ClientTransaction {
    /// Starts the transaction: the request goes out at once.
    pub fn start(request: Message, reliable: bool, timers: Timers, now: Instant) -> (Self, Vec<Output>) {
        let invite = request.method() == "INVITE";
        let t = ClientTransaction {
            invite,
            reliable,
            timers,
            state: ClientState::Calling,
            retransmit: (!reliable).then(|| (now + timers.t1, timers.t1)),
            timeout: Some(now + timers.t64()),
            linger: None,
            ack: None,
            request: request.clone(),
        };
        (t, vec![Output::Send(request)])
    }

    /// The current state.
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// The request this transaction carries.
    pub fn request(&self) -> &Message {
        &self.request
    }

    /// When `on_tick` must run next.
    pub fn deadline(&self) -> Option<Instant> {
        [self.retransmit.map(|r| r.0), self.timeout, self.linger].into_iter().flatten().min()
    }

    /// A response whose top Via matched this transaction.
    pub fn on_response(&mut self, resp: Message, now: Instant) -> Vec<Output> {
        let Some(code) = resp.code() else { return Vec::new() };
        let mut out = Vec::new();
        match self.state {
            ClientState::Calling | ClientState::Proceeding => {
                if code < 200 {
                    self.state = ClientState::Proceeding;
                    if self.invite {
                        // Timer A stops; the proxy's own timer C takes over (§16.6 step 11).
                        self.retransmit = None;
                        self.timeout = None;
                    } else if let Some((_, _)) = self.retransmit {
                        self.retransmit = Some((now + self.timers.t2, self.timers.t2));
                    }
                    out.push(Output::Deliver(resp));
                } else if self.invite && code < 300 {
                    out.push(Output::Deliver(resp));
                    out.push(Output::Terminated);
                    self.terminate();
                } else {
                    if self.invite {
                        let ack = self.ack_for(&resp);
                        out.push(Output::Send(ack.clone()));
                        self.ack = Some(ack);
                    }
                    out.push(Output::Deliver(resp));
                    self.state = ClientState::Completed;
                    self.retransmit = None;
                    self.timeout = None;
                    let wait = match (self.reliable, self.invite) {
                        (true, _) => Duration::ZERO,
                        (false, true) => Duration::from_secs(32),
                        (false, false) => self.timers.t4,
                    };
                    self.linger = Some(now + wait);
                    if wait.is_zero() {
                        out.push(Output::Terminated);
                        self.terminate();
                    }
                }
            }
            ClientState::Completed => {
                // A retransmitted final response: re-send the ACK, absorb it.
                if code >= 300
                    && let Some(ack) = &self.ack
                {
                    out.push(Output::Send(ack.clone()));
                }
            }
            ClientState::Terminated => {}
        }
        out
    }

    /// Runs the timers that are due.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        if self.state == ClientState::Terminated {
            return out;
        }
        if self.timeout.is_some_and(|t| now >= t) {
            self.terminate();
            return vec![Output::Timeout, Output::Terminated];
        }
        if self.linger.is_some_and(|t| now >= t) {
            self.terminate();
            return vec![Output::Terminated];
        }
        if let Some((at, interval)) = self.retransmit
            && now >= at
        {
            let next = if self.invite { interval * 2 } else { (interval * 2).min(self.timers.t2) };
            let next = if self.state == ClientState::Proceeding { self.timers.t2 } else { next };
            self.retransmit = Some((now + next, next));
            out.push(Output::Send(self.request.clone()));
        }
        out
    }

    fn terminate(&mut self) {
        self.state = ClientState::Terminated;
        self.retransmit = None;
        self.timeout = None;
        self.linger = None;
    }

    /// The ACK for a non-2xx final response (§17.1.1.3): same Request-URI, Call-ID, From,
    /// CSeq number and top Via as the INVITE, To from the response, the INVITE's Route.
    fn ack_for(&self, resp: &Message) -> Message {
        let uri = self.request.uri().unwrap_or("sip:invalid").to_string();
        let mut ack = Message {
            start: StartLine::Request { method: "ACK".into(), uri },
            headers: Vec::new(),
            body: Vec::new(),
        };
        if let Some(via) = self.request.header_values("Via").into_iter().next() {
            ack.push("Via", via);
        }
        for h in &self.request.headers {
            match h.name.as_str() {
                "From" | "Call-ID" | "Route" | "Max-Forwards" => ack.headers.push(h.clone()),
                _ => {}
            }
        }
        if let Some(to) = resp.header("To") {
            ack.headers.push(Header { name: "To".into(), value: to.to_string() });
        }
        let n = self.request.cseq().map(|c| c.0).unwrap_or(1);
        ack.push("CSeq", format!("{n} ACK"));
        ack
    }
}
