//! `appnet experiment`: reproductions of the textbook's and the papers' quantitative claims,
//! each printing measured figures next to the published ones and writing SVG plots. The
//! experiments live here, not in the protocol crates, so those stay free of plotting.
//!
//! - [`plot`]: the shared SVG line chart (plotters, SVG backend only).
//! - [`chord`]: the Chord paper's experiments (path length, load balance, failures, churn).
//! - [`http`]: the HTTP round-trip scorecard and HTTP/2 vs HTTP/3 under loss, on an emulated link.
//! - [`p2p_vs_cs`]: client-server against P2P distribution time with real swarms (textbook §2.5.1).
//! - [`search`]: messages per search and success for Napster, Gnutella flooding, ultrapeers and
//!   Chord on simulated overlays (deck 004).
//! - [`web_cache`]: an institutional cache's hit rate and response time (textbook §2.2.5).

pub mod chord;
pub mod http;
pub mod p2p_vs_cs;
pub mod plot;
pub mod search;
pub mod search_real;
pub mod web_cache;

use std::fmt;
use std::path::PathBuf;

/// Why an experiment could not finish.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The output directory or a plot could not be written.
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
}

/// A printable table of results.
#[derive(Debug, Clone)]
pub struct Table {
    /// What was measured.
    pub title: String,
    /// Column names.
    pub headers: Vec<String>,
    /// Rows of cells.
    pub rows: Vec<Vec<String>>,
    /// A line of interpretation printed under the table (paper figure, verdict, plot path).
    pub notes: Vec<String>,
}

impl Table {
    /// An empty table with a title and column names.
    pub fn new(title: &str, headers: &[&str]) -> Table {
        Table {
            title: title.into(),
            headers: headers.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cols = self.headers.len();
        let mut width: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, c) in row.iter().enumerate().take(cols) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        writeln!(f, "{}", self.title)?;
        let line = |cells: &[String], f: &mut fmt::Formatter<'_>| -> fmt::Result {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate().take(cols) {
                s.push_str(&format!("  {:>w$}", c, w = width[i]));
            }
            writeln!(f, "{}", s.trim_end())
        };
        line(&self.headers, f)?;
        for row in &self.rows {
            line(row, f)?;
        }
        for n in &self.notes {
            writeln!(f, "  {n}")?;
        }
        Ok(())
    }
}

/// The value at quantile q (0..=1) of sorted data.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// The arithmetic mean (0 for no data).
pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 }
}
