//! Per-status response counters (Prometheus text via netkit) and the access log in the
//! Combined Log Format, written by a background thread so requests never wait on stdout.

use appnet_netkit::metrics::{Counter, Gauge, Registry};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Status codes counted individually; anything else counts under "other".
const CODES: [u16; 24] = [
    100, 200, 201, 204, 206, 301, 302, 304, 307, 308, 400, 403, 404, 405, 408, 412, 413, 414, 416, 417, 431,
    500, 501, 505,
];

/// The server's counters.
#[derive(Clone)]
pub struct Stats {
    /// The registry holding everything below (render it for a metrics endpoint).
    pub registry: Registry,
    by_status: Vec<(u16, Counter)>,
    other: Counter,
    /// Connections accepted.
    pub connections: Counter,
    /// Connections refused: their address held its cap, or every slot was busy.
    pub refused: Counter,
    /// Connections closed to make room for a newcomer (the longest waiting without a request).
    pub evicted: Counter,
    /// Connections closed because no complete request arrived in time.
    pub timed_out: Counter,
    /// Connections open now.
    pub open: Gauge,
    /// HTTP/2 resources pushed.
    pub pushed: Counter,
}

impl Stats {
    /// Counters registered in a fresh registry.
    pub fn new() -> Stats {
        let registry = Registry::new();
        let help = "Responses sent, by status code.";
        let by_status = CODES
            .iter()
            .map(|c| (*c, registry.counter("web_responses_total", help, &[("code", &c.to_string())])))
            .collect();
        Stats {
            other: registry.counter("web_responses_total", help, &[("code", "other")]),
            by_status,
            connections: registry.counter("web_connections_total", "Connections accepted.", &[]),
            refused: registry.counter(
                "web_connections_refused_total",
                "Connections refused (per-address cap, or every slot busy).",
                &[],
            ),
            evicted: registry.counter(
                "web_connections_evicted_total",
                "Idle or silent connections closed to make room for a newcomer.",
                &[],
            ),
            timed_out: registry.counter(
                "web_connections_timed_out_total",
                "Connections closed for not sending a complete request in time.",
                &[],
            ),
            open: registry.gauge("web_open_connections", "Connections open now.", &[]),
            pushed: registry.counter("web_pushed_total", "HTTP/2 server pushes sent.", &[]),
            registry,
        }
    }

    /// Counts one response with `status`.
    pub fn count(&self, status: u16) {
        match self.by_status.iter().find(|(c, _)| *c == status) {
            Some((_, counter)) => counter.inc(),
            None => self.other.inc(),
        }
    }

    /// The count for one status code (for tests and the CLI).
    pub fn responses(&self, status: u16) -> u64 {
        self.by_status.iter().find(|(c, _)| *c == status).map_or(0, |(_, c)| c.get())
    }
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

/// One access-log record.
pub struct LogRecord<'a> {
    /// The client address.
    pub peer: SocketAddr,
    /// When the request arrived.
    pub time: SystemTime,
    /// `METHOD target VERSION`.
    pub request_line: &'a str,
    /// Response status.
    pub status: u16,
    /// Body bytes sent (`None` prints `-`).
    pub bytes: Option<u64>,
    /// Referer header.
    pub referer: Option<&'a str>,
    /// User-Agent header.
    pub user_agent: Option<&'a str>,
}

/// Formats a record in the Combined Log Format.
pub fn combined(r: &LogRecord<'_>) -> String {
    let bytes = r.bytes.map_or_else(|| "-".to_string(), |b| b.to_string());
    format!(
        "{} - - [{}] \"{}\" {} {} \"{}\" \"{}\"\n",
        r.peer.ip(),
        clf_date(r.time),
        escape(r.request_line),
        r.status,
        bytes,
        escape(r.referer.unwrap_or("-")),
        escape(r.user_agent.unwrap_or("-")),
    )
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// `10/Oct/2000:13:55:36 +0000` (UTC).
pub fn clf_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The access-log writer: lines go through a channel to a thread that writes them to stdout.
#[derive(Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<String>,
}

impl AccessLog {
    /// Starts the writer thread.
    pub fn to_stdout() -> AccessLog {
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::Builder::new()
            .name("web-access-log".into())
            .spawn(move || {
                let stdout = std::io::stdout();
                let mut out = std::io::BufWriter::new(stdout.lock());
                while let Ok(line) = rx.recv() {
                    let _ = out.write_all(line.as_bytes());
                    while let Ok(more) = rx.try_recv() {
                        let _ = out.write_all(more.as_bytes());
                    }
                    let _ = out.flush();
                }
            })
            .ok();
        AccessLog { tx }
    }

    /// Queues one line.
    pub fn write(&self, line: String) {
        let _ = self.tx.send(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn combined_log_format() {
        let r = LogRecord {
            peer: "127.0.0.1:5000".parse().unwrap(),
            time: UNIX_EPOCH + Duration::from_secs(971_185_336),
            request_line: "GET /apache_pb.gif HTTP/1.0",
            status: 200,
            bytes: Some(2326),
            referer: Some("http://www.example.com/start.html"),
            user_agent: Some("Mozilla/4.08 \"x\""),
        };
        assert_eq!(
            combined(&r),
            "127.0.0.1 - - [10/Oct/2000:13:42:16 +0000] \"GET /apache_pb.gif HTTP/1.0\" 200 2326 \
             \"http://www.example.com/start.html\" \"Mozilla/4.08 \\\"x\\\"\"\n"
        );
        assert_eq!(clf_date(UNIX_EPOCH + Duration::from_secs(951_782_400)), "29/Feb/2000:00:00:00 +0000");
    }

    #[test]
    fn counts_by_status() {
        let s = Stats::new();
        s.count(200);
        s.count(200);
        s.count(418);
        assert_eq!(s.responses(200), 2);
        assert!(s.registry.render().contains("web_responses_total{code=\"other\"} 1"));
    }
}
