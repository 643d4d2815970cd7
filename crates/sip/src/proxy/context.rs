//! The response context of a forwarded request (§16.7): its branches and the best
//! final response so far.

use crate::transaction::Key;
use crate::users::Forwarding;
use crate::wire::Message;
use std::collections::{HashSet, VecDeque};
use std::time::Instant;

/// One proxied request and its branches.
pub(crate) struct Context {
    pub server_key: Key,
    pub request: Message,
    pub branches: Vec<String>,
    pub done: HashSet<String>,
    pub best: Option<Message>,
    pub final_sent: bool,
    pub cancelled: bool,
    pub forwarding: Forwarding,
    pub noanswer_at: Option<Instant>,
    pub retargets: u32,
    pub recursions: u32,
    pub cost: u32,
    /// Timer C (§16.6 step 11): an INVITE's branches may ring this long without news.
    pub timer_c: Option<Instant>,
    /// A request for another domain (RFC 3263): its servers not tried yet, in order.
    pub outbound: bool,
    pub pending_targets: VecDeque<crate::locate::Target>,
}

impl Context {
    pub fn new(
        server_key: Key,
        request: Message,
        forwarding: Forwarding,
        noanswer_at: Option<Instant>,
        cost: u32,
    ) -> Self {
        Context {
            server_key,
            request,
            branches: Vec::new(),
            done: HashSet::new(),
            best: None,
            final_sent: false,
            cancelled: false,
            forwarding,
            noanswer_at,
            retargets: 0,
            recursions: 0,
            cost,
            timer_c: None,
            outbound: false,
            pending_targets: VecDeque::new(),
        }
    }

    /// Keeps the best final response (§16.7 step 6): a 6xx wins, else the lowest class,
    /// 503 becomes 500 (it concerns the next hop, not the caller).
    pub fn consider(&mut self, mut resp: Message) {
        let Some(code) = resp.code() else { return };
        if code == 503 {
            resp.start =
                crate::wire::StartLine::Response { code: 500, reason: "Server Internal Error".into() };
        }
        let code = resp.code().unwrap_or(500);
        let better = match self.best.as_ref().and_then(|b| b.code()) {
            None => true,
            Some(b) if b >= 600 => false,
            Some(_) if code >= 600 => true,
            Some(b) => code / 100 < b / 100,
        };
        if better {
            self.best = Some(resp);
        }
    }
}
