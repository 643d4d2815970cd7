//! Matching messages to transactions (§17.1.3, §17.2.3).

use crate::wire::Message;

/// Identifies a transaction: the top Via's branch and sent-by, and the method (ACK
/// matches the INVITE it acknowledges; CANCEL has its own transaction).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub branch: String,
    pub sent_by: String,
    pub method: String,
}

/// The key of a request (server side) or of a response (client side: its top Via is ours).
/// `None` without an RFC 3261 branch (the magic cookie); such requests are served
/// statelessly by the caller.
pub fn key_of(msg: &Message) -> Option<Key> {
    let via = msg.top_via()?;
    let branch = via.branch()?;
    if !branch.starts_with(crate::wire::BRANCH_COOKIE) || branch.len() > 256 {
        return None;
    }
    let method = match msg.method() {
        "ACK" => "INVITE",
        m => m,
    };
    Some(Key {
        branch: branch.to_string(),
        sent_by: via.sent_by.to_ascii_lowercase(),
        method: method.to_string(),
    })
}
