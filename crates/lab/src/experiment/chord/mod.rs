//! The Chord paper's experiments (Stoica et al., SIGCOMM 2001, section 6), run on appnet-chord's
//! simulator with the real node core: path length vs network size, load balance with virtual
//! nodes, simultaneous failures with and without replication, and lookups under churn. Each
//! returns a table of measured figures next to the paper's and writes an SVG plot.

mod churn;
mod failures;
mod load;
mod paths;
mod real;

pub use churn::{ChurnRun, churn, churn_run};
pub use failures::{FailureRun, failure_run, failures};
pub use load::load_balance;
pub use paths::{measure_paths, path_length};
pub use real::{real_path_length, real_pooling};

use crate::experiment::{ExperimentError, Table};
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
