//! The Chord paper's experiments (Stoica et al., SIGCOMM 2001, section 6), run on the simulator
//! with the real node core: path length vs network size, load balance with virtual nodes,
//! simultaneous failures with and without replication, and lookups under churn. Each returns a
//! table of measured figures next to the paper's and writes an SVG plot.

mod churn;
mod failures;
mod load;
mod paths;
mod plot;
mod real;

pub use churn::{ChurnRun, churn, churn_run};
pub use failures::{FailureRun, failure_run, failures};
pub use load::load_balance;
pub use paths::{measure_paths, path_length};
pub use real::{real_path_length, real_pooling};

use std::fmt;
use std::path::PathBuf;

/// How big and where: shared by every experiment.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directory for the SVG plots (created if missing).
    pub out: PathBuf,
    /// Smaller networks and fewer samples, for a run of a few seconds.
    pub quick: bool,
    /// Seed of every random choice.
    pub seed: u64,
}

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
    fn new(title: &str, headers: &[&str]) -> Table {
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

/// Runs every experiment in turn; `progress` is told the name of each before it starts.
pub fn run_all(opts: &Options, mut progress: impl FnMut(&str)) -> Result<Vec<Table>, ExperimentError> {
    std::fs::create_dir_all(&opts.out)
        .map_err(|e| ExperimentError::Write { path: opts.out.clone(), message: e.to_string() })?;
    let mut tables = Vec::new();
    let started = std::time::Instant::now();
    progress("path length");
    tables.push(path_length(opts)?);
    progress(&format!("load balance ({:.0?} so far)", started.elapsed()));
    tables.extend(load_balance(opts)?);
    progress(&format!("simultaneous failures ({:.0?} so far)", started.elapsed()));
    tables.push(failures(opts)?);
    progress(&format!("churn ({:.0?} so far)", started.elapsed()));
    tables.push(churn(opts)?);
    progress(&format!("done in {:.0?}", started.elapsed()));
    Ok(tables)
}

/// The value at quantile q (0..=1) of sorted data.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 }
}
