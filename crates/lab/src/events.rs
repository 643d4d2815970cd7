//! The lab's event bus: every exchange the tour's clients and the lab's services perform, as
//! structured events (who, to whom, protocol, a one-line summary, decoded fields, raw bytes).
//! The text tour prints lines taken from these events and the browser page (`lab --ui`) draws
//! them; the channel is bounded and drops the oldest events when a page falls behind, and
//! building an event is skipped entirely while no page is attached.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::broadcast;

/// How many events a slow page may fall behind before the oldest are dropped.
pub const CAPACITY: usize = 4096;

/// One endpoint of an exchange: a lab host name and its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The host's lab name (e.g. "dns.poly.edu").
    pub host: String,
    /// Its address, as text (with the port when there is one).
    pub addr: String,
}

impl Endpoint {
    /// An endpoint from a name and anything printable as an address.
    pub fn new(host: impl Into<String>, addr: impl std::fmt::Display) -> Endpoint {
        Endpoint { host: host.into(), addr: addr.to_string() }
    }
}

/// One message of an exchange, as the page draws it: an arrow from `from` to `to`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Order of emission (the chart's time axis).
    pub seq: u64,
    /// Milliseconds since the bus was created.
    pub at_ms: f64,
    /// The sender.
    pub from: Endpoint,
    /// The receiver.
    pub to: Endpoint,
    /// "DNS", "HTTP", ...
    pub protocol: &'static str,
    /// One line, as the text tour prints it.
    pub summary: String,
    /// The decoded message, field by field ("ID" → "4711", "Answer 1" → "gaia... A ...").
    pub fields: Vec<(String, String)>,
    /// The message as sent on the wire, when the emitter had it.
    pub bytes: Vec<u8>,
    /// Time from the request to this reply, for replies.
    pub latency_ms: Option<f64>,
}

/// The bounded broadcast channel the events travel on.
pub struct Bus {
    tx: broadcast::Sender<std::sync::Arc<Event>>,
    seq: AtomicU64,
    epoch: Instant,
}

impl Bus {
    /// A bus holding at most `capacity` undelivered events per subscriber.
    pub fn new(capacity: usize) -> Bus {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Bus { tx, seq: AtomicU64::new(0), epoch: Instant::now() }
    }

    /// Whether anyone listens: emitters check this before building an event.
    pub fn active(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// A new subscriber; it sees events emitted from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<std::sync::Arc<Event>> {
        self.tx.subscribe()
    }

    /// Sends an event built by `make` if a subscriber exists (the closure is not run otherwise).
    /// Takes `seq` and `at_ms` from the bus.
    pub fn emit(&self, make: impl FnOnce() -> Event) {
        if !self.active() {
            return;
        }
        let mut event = make();
        event.seq = self.seq.fetch_add(1, Ordering::Relaxed);
        event.at_ms = self.epoch.elapsed().as_secs_f64() * 1000.0;
        // A send fails only when the last receiver left meanwhile: nothing to do then.
        let _ = self.tx.send(std::sync::Arc::new(event));
    }
}

impl Bus {
    /// [`Bus::emit`] for several events built at once (e.g. pipelined requests).
    pub fn emit_all(&self, make: impl FnOnce() -> Vec<Event>) {
        if !self.active() {
            return;
        }
        for e in make() {
            self.emit(|| e);
        }
    }
}

/// The lab's one bus.
pub fn bus() -> &'static Bus {
    static BUS: OnceLock<Bus> = OnceLock::new();
    BUS.get_or_init(|| Bus::new(CAPACITY))
}

/// An event with the bus-assigned fields left at zero (for [`Bus::emit`]).
pub fn event(
    from: Endpoint,
    to: Endpoint,
    protocol: &'static str,
    summary: String,
    fields: Vec<(String, String)>,
    bytes: Vec<u8>,
    latency_ms: Option<f64>,
) -> Event {
    Event { seq: 0, at_ms: 0.0, from, to, protocol, summary, fields, bytes, latency_ms }
}

/// Prints `event` as one line of the tour (`indent` then its summary) and puts it on the bus:
/// the text and the page show the same message.
pub fn tell(say: &mut dyn FnMut(String), indent: &str, event: Event) {
    say(format!("{indent}{}", event.summary));
    bus().emit(|| event);
}

/// A message's text and bytes as the page shows them: a line of a text protocol, CRLF-ended.
pub fn line_bytes(line: &str) -> Vec<u8> {
    format!("{line}\r\n").into_bytes()
}

/// `s` as a JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Event {
    /// The event as one JSON object (the SSE payload), bytes as lowercase hex.
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            "{{\"seq\":{},\"at_ms\":{:.3},\"from\":{{\"host\":{},\"addr\":{}}},\"to\":{{\"host\":{},\"addr\":{}}},\"protocol\":{},\"summary\":{},\"latency_ms\":{},\"fields\":[",
            self.seq,
            self.at_ms,
            json_str(&self.from.host),
            json_str(&self.from.addr),
            json_str(&self.to.host),
            json_str(&self.to.addr),
            json_str(self.protocol),
            json_str(&self.summary),
            self.latency_ms.map_or("null".to_string(), |l| format!("{l:.3}")),
        );
        for (i, (k, v)) in self.fields.iter().enumerate() {
            let sep = if i > 0 { "," } else { "" };
            let _ = write!(out, "{sep}[{},{}]", json_str(k), json_str(v));
        }
        out.push_str("],\"hex\":\"");
        for b in &self.bytes {
            let _ = write!(out, "{b:02x}");
        }
        out.push_str("\"}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Event {
        event(
            Endpoint::new("cis.poly.edu", "127.0.10.4"),
            Endpoint::new("dns.poly.edu", "127.0.4.1:10053"),
            "DNS",
            "query \"x\"\n".into(),
            vec![("ID".into(), "7".into())],
            vec![0, 255],
            Some(1.5),
        )
    }

    #[test]
    fn nothing_is_built_without_a_subscriber() {
        let bus = Bus::new(4);
        let mut built = false;
        bus.emit(|| {
            built = true;
            sample()
        });
        assert!(!built);
    }

    #[test]
    fn a_full_channel_drops_the_oldest() {
        let bus = Bus::new(2);
        let mut rx = bus.subscribe();
        for _ in 0..5 {
            bus.emit(sample);
        }
        assert!(matches!(rx.try_recv(), Err(broadcast::error::TryRecvError::Lagged(3))));
        assert_eq!(rx.try_recv().map(|e| e.seq).ok(), Some(3));
        assert_eq!(rx.try_recv().map(|e| e.seq).ok(), Some(4));
    }

    #[test]
    fn json_escapes_and_hexes() {
        let j = sample().to_json();
        assert!(j.contains(r#""summary":"query \"x\"\n""#), "{j}");
        assert!(j.contains(r#""hex":"00ff""#), "{j}");
        assert!(j.contains(r#""fields":[["ID","7"]]"#), "{j}");
        assert!(j.contains(r#""latency_ms":1.500"#), "{j}");
    }
}
