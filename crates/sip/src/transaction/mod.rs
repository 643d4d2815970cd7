//! RFC 3261 §17 transactions as sans-IO state machines.
//!
//! Each machine is fed messages and `now`, and answers with [`Output`]s: messages to send,
//! messages to hand to the transaction user (the proxy or registrar), and its end. The
//! driver asks [`ClientTransaction::deadline`] / [`ServerTransaction::deadline`] when to call
//! `on_tick` next. Retransmissions of a request are absorbed here (the last response is
//! re-sent), so the proxy core never sees, and never forks, a request twice.

mod client;
mod key;
mod server;

pub use client::{ClientState, ClientTransaction};
pub use key::{Key, key_of};
pub use server::{ServerState, ServerTransaction};

use crate::wire::Message;
use std::time::Duration;

/// The timer base values of §17.1.1.1 (T1 RTT estimate, T2 cap, T4 network lifetime).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers { t1: Duration::from_millis(500), t2: Duration::from_secs(4), t4: Duration::from_secs(5) }
    }
}

impl Timers {
    /// 64·T1: timers B, F, H and J.
    pub fn t64(&self) -> Duration {
        self.t1 * 64
    }
}

/// What a transaction asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send this message to the transaction's peer.
    Send(Message),
    /// Hand this message to the transaction user (a response for client transactions,
    /// the ACK for a 2xx never reaches a server transaction).
    Deliver(Message),
    /// Timer B/F/H fired: no answer (the TU treats it as 408).
    Timeout,
    /// The transaction is over; the driver forgets it.
    Terminated,
}
