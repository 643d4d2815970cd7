//! The built-in teaching apps: `/cart`, a shopping cart that keeps per-session state on the
//! server behind a cookie (the textbook's cookie example), and `/echo`, which returns the request.

use appnet_netkit::rate::TokenBucket;
use rand::Rng;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const COOKIE: &str = "appnet_cart";
/// Sessions kept at most by default (the least recently used are dropped beyond).
pub const MAX_SESSIONS: usize = 10_000;
/// Items per cart at most.
pub const MAX_ITEMS: usize = 100;
/// Longest item name.
pub const MAX_ITEM_LEN: usize = 100;
/// How long a session lives without use.
pub const SESSION_TTL: Duration = Duration::from_secs(24 * 3600);
/// Client addresses whose session-creation budget is remembered (least recently seen forgotten).
pub const MAX_CREATORS: usize = 4096;

/// The cart's limits against clients that mint sessions to push real users' carts out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CartLimits {
    /// Sessions kept at most; at the cap the least recently used one is dropped.
    pub max_sessions: usize,
    /// New sessions one client address (an IPv6 /64) may create per second, sustained.
    pub new_per_sec: u64,
    /// ... and in a burst.
    pub new_burst: u64,
}

impl Default for CartLimits {
    fn default() -> Self {
        CartLimits { max_sessions: MAX_SESSIONS, new_per_sec: 2, new_burst: 20 }
    }
}

struct Session {
    items: Vec<String>,
    last_used: Instant,
}

/// Server-side cart state, one entry per session id. A session exists only once its cart
/// changed (looking creates nothing), sessions are dropped least-recently-used first in O(1),
/// and each client address has a token bucket for creating them.
pub struct Carts {
    limits: CartLimits,
    inner: Mutex<Inner>,
}

struct Inner {
    sessions: Lru<u128, Session>,
    creators: Lru<IpAddr, TokenBucket>,
}

impl Default for Carts {
    fn default() -> Self {
        Carts::new(CartLimits::default())
    }
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
    /// The session id, when there is a session (none until the first item is added).
    pub session: Option<String>,
    /// Whether the session was created by this request (send Set-Cookie).
    pub new_session: bool,
    /// The cart's items after the operation.
    pub items: Vec<String>,
    /// A message for the user when the operation was refused.
    pub note: Option<&'static str>,
    /// The client created sessions faster than its budget allows (answer 429).
    pub rate_limited: bool,
}

impl Carts {
    /// Empty carts under `limits`.
    pub fn new(limits: CartLimits) -> Carts {
        let limits = CartLimits { max_sessions: limits.max_sessions.max(1), ..limits };
        Carts {
            limits,
            inner: Mutex::new(Inner {
                sessions: Lru::new(limits.max_sessions),
                creators: Lru::new(MAX_CREATORS),
            }),
        }
    }

    /// Applies `op` from `client` to the session named by `cookie`, at `now`. Only a valid
    /// Add without a live session creates one (if the client's creation budget allows).
    pub fn apply(&self, cookie: Option<&str>, op: CartOp, client: IpAddr, now: Instant) -> CartView {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Inner { sessions, creators } = &mut *inner;
        let mut view = CartView {
            session: None,
            new_session: false,
            items: Vec::new(),
            note: None,
            rate_limited: false,
        };
        let id = cookie.and_then(parse_id);
        let live = id.filter(|id| match sessions.get(id) {
            Some(s) if now.saturating_duration_since(s.last_used) < SESSION_TTL => true,
            Some(_) => {
                sessions.remove(id);
                false
            }
            None => false,
        });
        let item_ok = |item: &str| !item.is_empty() && item.len() <= MAX_ITEM_LEN;
        let (id, s) = match (live, &op) {
            (Some(id), _) => (id, sessions.get(&id).expect("checked live above")),
            (None, CartOp::Add(item)) if item_ok(item) => {
                let key = creator_key(client);
                if creators.get(&key).is_none() {
                    creators
                        .insert(key, TokenBucket::new(self.limits.new_per_sec, self.limits.new_burst, now));
                }
                let bucket = creators.get(&key).expect("present or just inserted");
                if !bucket.try_take(1, now) {
                    view.rate_limited = true;
                    view.note = Some("too many new carts from your address; try again in a moment");
                    return view;
                }
                // Expired sessions go first, then the least recently used.
                while sessions
                    .lru()
                    .is_some_and(|(_, s)| now.saturating_duration_since(s.last_used) >= SESSION_TTL)
                {
                    sessions.pop_lru();
                }
                let id = new_session_id();
                sessions.insert(id, Session { items: Vec::new(), last_used: now });
                view.new_session = true;
                (id, sessions.get(&id).expect("just inserted"))
            }
            (None, CartOp::Add(_)) => {
                view.note = Some("item names are 1 to 100 bytes");
                return view;
            }
            // Looking at, or removing from, a cart that does not exist changes nothing.
            (None, _) => return view,
        };
        s.last_used = now;
        match op {
            CartOp::Show => {}
            CartOp::Add(item) => {
                if !item_ok(&item) {
                    view.note = Some("item names are 1 to 100 bytes");
                } else if s.items.len() >= MAX_ITEMS {
                    view.note = Some("the cart is full (100 items)");
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
        view.items = s.items.clone();
        view.session = Some(format!("{id:032x}"));
        view
    }

    /// Number of sessions held (expired ones until they are dropped).
    pub fn sessions(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).sessions.len()
    }
}

/// The creation budget is per address, and per /64 for IPv6 (one host usually has a whole /64).
fn creator_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

fn parse_id(s: &str) -> Option<u128> {
    (s.len() == 32).then(|| u128::from_str_radix(s, 16).ok()).flatten()
}

fn new_session_id() -> u128 {
    rand::rng().random()
}

/// A map with least-recently-used order, every operation O(1): a hash map into a slab of
/// nodes on a doubly linked list (most recent at the head). At `cap` entries an insert drops
/// the least recently used.
struct Lru<K, V> {
    cap: usize,
    map: HashMap<K, usize>,
    nodes: Vec<Node<K, V>>,
    free: Vec<usize>,
    head: usize,
    tail: usize,
}

struct Node<K, V> {
    key: K,
    value: V,
    prev: usize,
    next: usize,
}

const NIL: usize = usize::MAX;

impl<K: Hash + Eq + Copy, V> Lru<K, V> {
    fn new(cap: usize) -> Self {
        Lru {
            cap: cap.max(1),
            map: HashMap::new(),
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn unlink(&mut self, i: usize) {
        let (prev, next) = (self.nodes[i].prev, self.nodes[i].next);
        if prev == NIL {
            self.head = next
        } else {
            self.nodes[prev].next = next
        }
        if next == NIL { self.tail = prev } else { self.nodes[next].prev = prev }
    }

    fn push_front(&mut self, i: usize) {
        self.nodes[i].prev = NIL;
        self.nodes[i].next = self.head;
        if self.head != NIL {
            self.nodes[self.head].prev = i;
        }
        self.head = i;
        if self.tail == NIL {
            self.tail = i;
        }
    }

    /// The value for `key`, now the most recently used.
    fn get(&mut self, key: &K) -> Option<&mut V> {
        let i = *self.map.get(key)?;
        self.unlink(i);
        self.push_front(i);
        Some(&mut self.nodes[i].value)
    }

    /// Inserts (or replaces) `key` as the most recently used; at the cap the least recently
    /// used entry is dropped first.
    fn insert(&mut self, key: K, value: V) {
        if let Some(&i) = self.map.get(&key) {
            self.nodes[i].value = value;
            self.unlink(i);
            self.push_front(i);
            return;
        }
        if self.map.len() >= self.cap {
            self.pop_lru();
        }
        let node = Node { key, value, prev: NIL, next: NIL };
        let i = match self.free.pop() {
            Some(i) => {
                self.nodes[i] = node;
                i
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        };
        self.map.insert(key, i);
        self.push_front(i);
    }

    fn remove(&mut self, key: &K) -> Option<()> {
        let i = self.map.remove(key)?;
        self.unlink(i);
        self.free.push(i);
        Some(())
    }

    /// The least recently used entry.
    fn lru(&self) -> Option<(&K, &V)> {
        (self.tail != NIL).then(|| (&self.nodes[self.tail].key, &self.nodes[self.tail].value))
    }

    fn pop_lru(&mut self) -> Option<K> {
        let key = *self.lru()?.0;
        self.remove(&key);
        Some(key)
    }
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
    let mut out = match &view.session {
        Some(id) => format!("cart for session {}…: {} item(s)\n", &id[..8.min(id.len())], view.items.len()),
        None => format!("cart (no session until the first item): {} item(s)\n", view.items.len()),
    };
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

    const ME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));

    fn ip(i: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i))
    }

    #[test]
    fn a_session_keeps_its_items() {
        let carts = Carts::default();
        let now = Instant::now();
        let first = carts.apply(None, CartOp::Add("book".into()), ME, now);
        assert!(first.new_session);
        let id = first.session.unwrap();
        let second = carts.apply(Some(&id), parse_op("add=red+pen"), ME, now);
        assert!(!second.new_session);
        assert_eq!(second.items, vec!["book", "red pen"]);
        let other = carts.apply(None, CartOp::Show, ME, now);
        assert!(other.items.is_empty() && other.session.is_none());
        let removed = carts.apply(Some(&id), parse_op("remove=book"), ME, now);
        assert_eq!(removed.items, vec!["red pen"]);
        assert!(carts.apply(Some(&id), parse_op("clear"), ME, now).items.is_empty());
        // Expired sessions are gone; adding again starts a new one.
        let later = now + SESSION_TTL + Duration::from_secs(1);
        let shown = carts.apply(Some(&id), CartOp::Show, ME, later);
        assert!(shown.session.is_none() && !shown.new_session);
        let again = carts.apply(Some(&id), CartOp::Add("x".into()), ME, later);
        assert!(again.new_session && again.session.as_deref() != Some(id.as_str()));
    }

    #[test]
    fn looking_creates_no_session() {
        let carts = Carts::default();
        let now = Instant::now();
        for op in [CartOp::Show, CartOp::Clear, CartOp::Remove("x".into()), CartOp::Add(String::new())] {
            let v = carts.apply(None, op, ME, now);
            assert!(v.session.is_none() && !v.new_session && !v.rate_limited);
        }
        let v = carts.apply(Some("0123456789abcdef0123456789abcdef"), CartOp::Show, ME, now);
        assert!(v.session.is_none(), "an unknown cookie creates nothing either");
        assert_eq!(carts.sessions(), 0);
    }

    #[test]
    fn a_cookieless_flood_does_not_evict_a_real_cart() {
        let carts = Carts::new(CartLimits { max_sessions: 100, ..CartLimits::default() });
        let now = Instant::now();
        let real = carts.apply(None, CartOp::Add("book".into()), ME, now).session.unwrap();
        // The tester's flood: cookieless GETs, far more than the cap.
        for i in 0..21_000 {
            carts.apply(None, CartOp::Show, ip(i), now);
        }
        // And cookieless adds from one address: its budget runs out after the burst.
        let mut limited = 0;
        for _ in 0..1000 {
            limited += usize::from(carts.apply(None, CartOp::Add("x".into()), ip(1), now).rate_limited);
        }
        assert_eq!(limited, 1000 - CartLimits::default().new_burst as usize);
        assert_eq!(carts.apply(Some(&real), CartOp::Show, ME, now).items, vec!["book"]);
    }

    #[test]
    fn creation_budget_is_per_address_and_refills() {
        let limits = CartLimits { max_sessions: 1000, new_per_sec: 2, new_burst: 3 };
        let carts = Carts::new(limits);
        let now = Instant::now();
        let add = |who, at| carts.apply(None, CartOp::Add("x".into()), who, at);
        for _ in 0..3 {
            assert!(add(ME, now).new_session);
        }
        let refused = add(ME, now);
        assert!(refused.rate_limited && refused.session.is_none() && refused.note.is_some());
        assert!(add(ip(7), now).new_session, "another address has its own budget");
        assert!(add(ME, now + Duration::from_millis(600)).new_session, "refilled at 2/s");
        // IPv6 addresses in one /64 share a budget.
        let v6 = |last: u16| IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last));
        for i in 0..3 {
            assert!(add(v6(i), now).new_session);
        }
        assert!(add(v6(99), now).rate_limited);
    }

    #[test]
    fn the_least_recently_used_session_goes_first() {
        let carts = Carts::new(CartLimits { max_sessions: 3, ..CartLimits::default() });
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let new = |who: u32, s| carts.apply(None, CartOp::Add("x".into()), ip(who), at(s)).session.unwrap();
        let (a, b, c) = (new(1, 0), new(2, 1), new(3, 2));
        carts.apply(Some(&a), CartOp::Show, ME, at(3)); // a is used again: b is now the idlest
        let d = new(4, 4);
        assert_eq!(carts.sessions(), 3);
        let live = |id: &str| carts.apply(Some(id), CartOp::Show, ME, at(5)).session.is_some();
        assert!(!live(&b));
        assert!(live(&a) && live(&c) && live(&d));
    }

    #[test]
    fn creating_sessions_at_the_cap_is_constant_time() {
        // The old store scanned every session per creation at the cap (7.1k/s against 57k/s
        // below it); with O(1) eviction 50k creations at a 10k cap take milliseconds.
        let limits = CartLimits { max_sessions: 10_000, new_per_sec: 1, new_burst: 1 };
        let carts = Carts::new(limits);
        let now = Instant::now();
        let started = Instant::now();
        for i in 0..50_000 {
            assert!(carts.apply(None, CartOp::Add("x".into()), ip(i), now).new_session);
        }
        assert_eq!(carts.sessions(), 10_000);
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    }

    #[test]
    fn lru_order_and_slot_reuse() {
        let mut l: Lru<u32, u32> = Lru::new(2);
        l.insert(1, 10);
        l.insert(2, 20);
        assert_eq!(l.get(&1), Some(&mut 10));
        l.insert(3, 30); // drops 2, the least recently used
        assert!(l.get(&2).is_none());
        assert_eq!(l.lru().map(|(k, _)| *k), Some(1));
        assert_eq!(l.pop_lru(), Some(1));
        assert_eq!(l.len(), 1);
        l.insert(4, 40);
        l.insert(3, 33); // replace keeps one entry
        assert_eq!(l.len(), 2);
        assert_eq!(l.nodes.len(), 2, "freed slots are reused");
        assert_eq!(l.pop_lru(), Some(4));
        assert_eq!(l.pop_lru(), Some(3));
        assert_eq!(l.pop_lru(), None);
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
        let v = carts.apply(None, CartOp::Add("x".repeat(101)), ME, now);
        assert!(v.items.is_empty() && v.note.is_some() && v.session.is_none());
        let id = carts.apply(None, CartOp::Add("first".into()), ME, now).session.unwrap();
        for i in 0..105 {
            carts.apply(Some(&id), CartOp::Add(format!("i{i}")), ME, now);
        }
        assert_eq!(carts.apply(Some(&id), CartOp::Show, ME, now).items.len(), MAX_ITEMS);
    }
}
