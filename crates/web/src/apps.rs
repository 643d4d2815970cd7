//! The built-in teaching apps: `/cart`, a shopping cart that keeps per-session state on the
//! server behind a cookie (the textbook's cookie example), and `/echo`, which returns the request.

use rand::Rng;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const COOKIE: &str = "appnet_cart";
/// Sessions kept at most (the oldest are dropped beyond).
pub const MAX_SESSIONS: usize = 10_000;
/// Items per cart at most.
pub const MAX_ITEMS: usize = 100;
/// Longest item name.
pub const MAX_ITEM_LEN: usize = 100;
/// How long a session lives without use.
pub const SESSION_TTL: Duration = Duration::from_secs(24 * 3600);

struct Session {
    items: Vec<String>,
    last_used: Instant,
}

/// Server-side cart state, one entry per session id.
#[derive(Default)]
pub struct Carts {
    sessions: Mutex<HashMap<String, Session>>,
}

/// What a cart request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CartOp {
    /// Just show the cart.
    Show,
    /// Add an item.
    Add(String),
    /// Remove one item with this name.
    Remove(String),
    /// Empty the cart.
    Clear,
}

/// The outcome of a cart request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartView {
    /// The session id (new or existing).
    pub session: String,
    /// Whether the session was created by this request (send Set-Cookie).
    pub new_session: bool,
    /// The cart's items after the operation.
    pub items: Vec<String>,
    /// A message for the user when the operation was refused.
    pub note: Option<&'static str>,
}

impl Carts {
    /// Applies `op` to the session named by `cookie` (a new session if unknown), at `now`.
    pub fn apply(&self, cookie: Option<&str>, op: CartOp, now: Instant) -> CartView {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let known = cookie.filter(|id| {
            sessions.get(*id).is_some_and(|s| now.saturating_duration_since(s.last_used) < SESSION_TTL)
        });
        let (session, new_session) = match known {
            Some(id) => (id.to_string(), false),
            None => {
                if sessions.len() >= MAX_SESSIONS {
                    sessions.retain(|_, s| now.saturating_duration_since(s.last_used) < SESSION_TTL);
                    if sessions.len() >= MAX_SESSIONS {
                        let oldest = sessions.iter().min_by_key(|(_, s)| s.last_used).map(|(k, _)| k.clone());
                        if let Some(k) = oldest {
                            sessions.remove(&k);
                        }
                    }
                }
                let id = new_session_id();
                sessions.insert(id.clone(), Session { items: Vec::new(), last_used: now });
                (id, true)
            }
        };
        let s = sessions.get_mut(&session).expect("inserted or known");
        s.last_used = now;
        let mut note = None;
        match op {
            CartOp::Show => {}
            CartOp::Add(item) => {
                if item.is_empty() || item.len() > MAX_ITEM_LEN {
                    note = Some("item names are 1 to 100 bytes");
                } else if s.items.len() >= MAX_ITEMS {
                    note = Some("the cart is full (100 items)");
                } else {
                    s.items.push(item);
                }
            }
            CartOp::Remove(item) => {
                if let Some(i) = s.items.iter().position(|x| *x == item) {
                    s.items.remove(i);
                }
            }
            CartOp::Clear => s.items.clear(),
        }
        CartView { session, new_session, items: s.items.clone(), note }
    }

    /// Number of live sessions.
    pub fn sessions(&self) -> usize {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

fn new_session_id() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().fold(String::with_capacity(32), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The cart operation named by a query string or form body (`add=X`, `remove=X`, `clear`).
pub fn parse_op(form: &str) -> CartOp {
    for pair in form.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = form_decode(v);
        match k {
            "add" | "item" => return CartOp::Add(v),
            "remove" => return CartOp::Remove(v),
            "clear" => return CartOp::Clear,
            _ => {}
        }
    }
    CartOp::Show
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is space; bad escapes kept as is).
pub fn form_decode(s: &str) -> String {
    let s = s.replace('+', " ");
    match crate::files::path::percent_decode(s.as_bytes()) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => s,
    }
}

/// The session id from a Cookie header value, if it has our cookie.
pub fn session_from_cookie(header: &str) -> Option<&str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == COOKIE && v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit())).then_some(v)
    })
}

/// The Set-Cookie value for a new session.
pub fn set_cookie(session: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE}={session}; Path=/cart; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        SESSION_TTL.as_secs()
    )
}

/// The plain-text page for a cart.
pub fn render(view: &CartView) -> String {
    let mut out = format!("cart for session {}…: {} item(s)\n", &view.session[..8], view.items.len());
    for item in &view.items {
        let _ = writeln!(out, "- {item}");
    }
    if let Some(note) = view.note {
        let _ = writeln!(out, "note: {note}");
    }
    out.push_str("add with /cart?add=ITEM (or POST add=ITEM), remove with ?remove=ITEM, empty with ?clear\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_keeps_its_items() {
        let carts = Carts::default();
        let now = Instant::now();
        let first = carts.apply(None, CartOp::Add("book".into()), now);
        assert!(first.new_session);
        let second = carts.apply(Some(&first.session), parse_op("add=red+pen"), now);
        assert!(!second.new_session);
        assert_eq!(second.items, vec!["book", "red pen"]);
        let other = carts.apply(None, CartOp::Show, now);
        assert!(other.items.is_empty() && other.session != first.session);
        let removed = carts.apply(Some(&first.session), parse_op("remove=book"), now);
        assert_eq!(removed.items, vec!["red pen"]);
        assert!(carts.apply(Some(&first.session), parse_op("clear"), now).items.is_empty());
        // Expired sessions start over.
        let later =
            carts.apply(Some(&first.session), CartOp::Show, now + SESSION_TTL + Duration::from_secs(1));
        assert!(later.new_session);
    }

    #[test]
    fn cookies() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(session_from_cookie(&format!("a=b; {COOKIE}={id}")), Some(id));
        assert_eq!(session_from_cookie(&format!("{COOKIE}=short")), None);
        let c = set_cookie(id, true);
        assert!(
            c.contains("HttpOnly")
                && c.contains("SameSite=Lax")
                && c.contains("Max-Age=86400")
                && c.ends_with("Secure")
        );
    }

    #[test]
    fn limits_hold() {
        let carts = Carts::default();
        let now = Instant::now();
        let v = carts.apply(None, CartOp::Add("x".repeat(101)), now);
        assert!(v.items.is_empty() && v.note.is_some());
        let mut id = v.session;
        for i in 0..105 {
            id = carts.apply(Some(&id), CartOp::Add(format!("i{i}")), now).session;
        }
        assert_eq!(carts.apply(Some(&id), CartOp::Show, now).items.len(), MAX_ITEMS);
    }
}
