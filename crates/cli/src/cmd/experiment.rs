//! `appnet experiment NAME`: reproduce the textbook's and the papers' quantitative claims,
//! printing measured figures next to the published ones and writing SVG plots.

use crate::context::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// The experiments.
#[derive(Subcommand, Debug)]
pub enum ExperimentCmd {
    /// Chord (SIGCOMM 2001, section 6) on the simulator: path length vs N, load balance with
    /// virtual nodes, simultaneous failures with and without replication, lookups under churn.
    #[command(after_help = "Examples:\n  \
        appnet experiment chord                     full run (a few minutes with --release)\n  \
        appnet experiment chord --quick --out /tmp/chord")]
    Chord(ChordArgs),
}

/// Flags for `experiment chord`.
#[derive(Args, Debug)]
pub struct ChordArgs {
    /// Directory for the SVG plots.
    #[arg(long, value_name = "DIR", default_value = "experiments")]
    out: PathBuf,
    /// Smaller networks and fewer samples (seconds instead of minutes).
    #[arg(long)]
    quick: bool,
    /// Random seed (runs are reproducible for a seed).
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
}

/// Runs an experiment.
pub async fn run(cmd: ExperimentCmd, _ctx: &Context) -> anyhow::Result<()> {
    match cmd {
        ExperimentCmd::Chord(args) => {
            let opts =
                appnet_chord::experiment::Options { out: args.out, quick: args.quick, seed: args.seed };
            let tables = tokio::task::spawn_blocking(move || {
                appnet_chord::experiment::run_all(&opts, |name| eprintln!("chord experiment: {name}"))
            })
            .await??;
            for t in tables {
                println!("{t}");
            }
            Ok(())
        }
    }
}
