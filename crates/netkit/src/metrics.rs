//! Per-service counters and gauges, rendered in the Prometheus text exposition format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A monotonically increasing count (queries served, bytes sent, ...). Cheap to clone and bump.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (open connections, cache entries).
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Subtracts one.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
enum Value {
    Counter(Counter),
    Gauge(Gauge),
}

#[derive(Debug)]
struct Entry {
    name: String,
    help: String,
    labels: Vec<(String, String)>,
    value: Value,
}

/// A set of named metrics. Clones share the same set.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    entries: Arc<Mutex<Vec<Entry>>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or returns the existing) counter `name` with `labels`.
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Counter {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Entry { value: Value::Counter(c), .. }) = find(&entries, name, labels) {
            return c.clone();
        }
        let c = Counter::default();
        entries.push(entry(name, help, labels, Value::Counter(c.clone())));
        c
    }

    /// Registers (or returns the existing) gauge `name` with `labels`.
    pub fn gauge(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Gauge {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Entry { value: Value::Gauge(g), .. }) = find(&entries, name, labels) {
            return g.clone();
        }
        let g = Gauge::default();
        entries.push(entry(name, help, labels, Value::Gauge(g.clone())));
        g
    }

    /// All metrics in the Prometheus text format (HELP and TYPE once per name).
    pub fn render(&self) -> String {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        let mut seen: Vec<&str> = Vec::new();
        for e in entries.iter() {
            if !seen.contains(&e.name.as_str()) {
                seen.push(&e.name);
                let kind = match e.value {
                    Value::Counter(_) => "counter",
                    Value::Gauge(_) => "gauge",
                };
                let _ = writeln!(out, "# HELP {} {}", e.name, e.help);
                let _ = writeln!(out, "# TYPE {} {}", e.name, kind);
                for same in entries.iter().filter(|x| x.name == e.name) {
                    let value = match &same.value {
                        Value::Counter(c) => c.get() as i128,
                        Value::Gauge(g) => g.get() as i128,
                    };
                    let _ = writeln!(out, "{}{} {}", same.name, render_labels(&same.labels), value);
                }
            }
        }
        out
    }
}

fn find<'a>(entries: &'a [Entry], name: &str, labels: &[(&str, &str)]) -> Option<&'a Entry> {
    entries.iter().find(|e| {
        e.name == name
            && e.labels.len() == labels.len()
            && e.labels.iter().zip(labels).all(|((k, v), (k2, v2))| k == k2 && v == v2)
    })
}

fn entry(name: &str, help: &str, labels: &[(&str, &str)], value: Value) -> Entry {
    let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Entry { name: name.to_string(), help: help.to_string(), labels, value }
}

fn render_labels(labels: &[(String, String)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let r = Registry::new();
        let ok = r.counter("upper_lines_total", "Lines answered.", &[("proto", "tcp")]);
        let udp = r.counter("upper_lines_total", "Lines answered.", &[("proto", "udp")]);
        let open = r.gauge("upper_open_connections", "Connections open now.", &[]);
        ok.add(3);
        udp.inc();
        open.inc();
        // Registering again returns the same counter.
        r.counter("upper_lines_total", "Lines answered.", &[("proto", "tcp")]).inc();
        let text = r.render();
        assert_eq!(
            text,
            "# HELP upper_lines_total Lines answered.\n# TYPE upper_lines_total counter\n\
             upper_lines_total{proto=\"tcp\"} 4\nupper_lines_total{proto=\"udp\"} 1\n\
             # HELP upper_open_connections Connections open now.\n# TYPE upper_open_connections gauge\n\
             upper_open_connections 1\n"
        );
    }
}
