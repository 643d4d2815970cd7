//! `appnet link`: the packet-level link emulator between two network namespaces (root only).

use crate::context::Context;
use anyhow::Context as _;
use appnet_link::emulator::{ADDR_A, ADDR_B, DEVICE};
use appnet_link::{Link, LinkSpec};
use appnet_netkit::Shutdown;
use clap::{Args, Subcommand};

/// The emulator's subcommands.
#[derive(Subcommand, Debug)]
pub enum LinkCmd {
    /// Create namespaces NAME-a and NAME-b joined by an emulated link, and run it in the
    /// foreground; Ctrl-C (or SIGTERM) removes both namespaces and prints the counters.
    #[command(after_help = "Examples:\n  \
        sudo appnet link up --name demo --rtt 40ms                      then: ip netns exec demo-a ping 198.18.0.2\n  \
        sudo appnet link up --name demo --rtt 100ms --rate 10mbit --queue 100 --loss 1%\n  \
        sudo appnet link up --name demo --burst-loss 1%:30% --jitter 5ms --reorder 1%\n  \
        sudo appnet link up --name demo --rtt 40ms --a2b loss=5%        loss on A->B only\n\n\
        Settings apply to both directions; --a2b / --b2a take key=value,... (rtt, delay, jitter,\n\
        loss, burst, rate, queue, reorder) for one direction, applied after the flags.")]
    Up(Box<UpArgs>),
    /// Remove namespaces NAME-a and NAME-b left by an emulator that was killed.
    Down(DownArgs),
}

/// Flags for `appnet link up`.
#[derive(Args, Debug)]
pub struct UpArgs {
    /// Prefix of the two namespaces (NAME-a, NAME-b).
    #[arg(long, value_name = "NAME", default_value = "appnet-link")]
    name: String,
    /// Round-trip delay (half each way), e.g. 40ms.
    #[arg(long, value_name = "TIME")]
    rtt: Option<String>,
    /// One-way delay each way (instead of --rtt).
    #[arg(long, value_name = "TIME", conflicts_with = "rtt")]
    delay: Option<String>,
    /// Each packet's delay varies uniformly within ±TIME (order kept unless --reorder).
    #[arg(long, value_name = "TIME")]
    jitter: Option<String>,
    /// Random loss per packet and direction, e.g. 1% or 0.01.
    #[arg(long, value_name = "PCT")]
    loss: Option<String>,
    /// Gilbert-Elliott bursty loss p:r (P(good->bad), P(bad->good) per packet; mean p/(p+r)).
    #[arg(long, value_name = "P:R")]
    burst_loss: Option<String>,
    /// Link rate, e.g. 10mbit, 512kbit (decimal units, as tc).
    #[arg(long, value_name = "RATE")]
    rate: Option<String>,
    /// Drop-tail queue in packets in front of the rate limiter [default: 100].
    #[arg(long, value_name = "PACKETS")]
    queue: Option<usize>,
    /// Fraction of packets that skip the delay and overtake the others, e.g. 1%.
    #[arg(long, value_name = "PCT")]
    reorder: Option<String>,
    /// Settings for the A->B direction only (key=value,...).
    #[arg(long, value_name = "SPEC")]
    a2b: Option<String>,
    /// Settings for the B->A direction only (key=value,...).
    #[arg(long, value_name = "SPEC")]
    b2a: Option<String>,
    /// Random seed (the same seed repeats the same losses for the same packets).
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
}

/// Flags for `appnet link down`.
#[derive(Args, Debug)]
pub struct DownArgs {
    /// Prefix of the two namespaces.
    #[arg(long, value_name = "NAME", default_value = "appnet-link")]
    name: String,
}

/// Builds the settings from the flags.
fn spec(a: &UpArgs) -> anyhow::Result<LinkSpec> {
    let mut s = LinkSpec::default();
    let flags = [
        ("rtt", &a.rtt),
        ("delay", &a.delay),
        ("jitter", &a.jitter),
        ("loss", &a.loss),
        ("burst", &a.burst_loss),
        ("rate", &a.rate),
        ("reorder", &a.reorder),
    ];
    for (key, value) in flags {
        if let Some(v) = value {
            s.set(key, v)?;
        }
    }
    if let Some(q) = a.queue {
        s.set("queue", &q.to_string())?;
    }
    for (dir, text) in [("a2b", &a.a2b), ("b2a", &a.b2a)] {
        for item in text.iter().flat_map(|t| t.split(',')).filter(|i| !i.trim().is_empty()) {
            let (k, v) =
                item.split_once('=').with_context(|| format!("--{dir} {item:?}: expected key=value"))?;
            s.set(&format!("{dir}.{}", k.trim()), v.trim())?;
        }
    }
    s.validate()?;
    Ok(s)
}

/// Runs a link subcommand.
pub async fn run(cmd: LinkCmd, _ctx: &Context) -> anyhow::Result<()> {
    match cmd {
        LinkCmd::Down(a) => {
            appnet_link::emulator::check_name(&a.name)?;
            let removed: Vec<String> = [format!("{}-a", a.name), format!("{}-b", a.name)]
                .into_iter()
                .filter(|ns| appnet_link::netns::delete(ns))
                .collect();
            if removed.is_empty() {
                println!("no namespaces {}-a / {}-b to remove", a.name, a.name);
            } else {
                println!("removed {}", removed.join(", "));
            }
            Ok(())
        }
        LinkCmd::Up(a) => {
            let spec = spec(&a)?;
            let (name, seed) = (a.name.clone(), a.seed);
            let link =
                tokio::task::spawn_blocking(move || Link::up(&name, &spec.clone(), seed).map(|l| (l, spec)))
                    .await??;
            let (link, spec) = link;
            let (na, nb) = (link.ns_a(), link.ns_b());
            println!("link {} up ({DEVICE} in each namespace)", a.name);
            println!("  A->B: {}", spec.a2b);
            println!("  B->A: {}", spec.b2a);
            println!("  {na}: {ADDR_A}   e.g. ip netns exec {na} ping {ADDR_B}");
            println!("  {nb}: {ADDR_B}   e.g. ip netns exec {nb} iperf3 -s -B {ADDR_B}");
            println!("ready; Ctrl-C removes both namespaces");
            let shutdown = Shutdown::new();
            shutdown.trigger_on_signals();
            shutdown.wait().await;
            let stats = tokio::task::spawn_blocking(move || link.down()).await?;
            for (dir, s) in [("A->B", stats.a2b), ("B->A", stats.b2a)] {
                let lost = s.lost + s.burst_lost;
                let pct = if s.packets == 0 { 0.0 } else { lost as f64 * 100.0 / s.packets as f64 };
                println!(
                    "{dir}: {} packets, {} lost ({pct:.2}%: {} random, {} in bursts), {} queue drops, {} reordered",
                    s.packets, lost, s.lost, s.burst_lost, s.queue_drops, s.reordered
                );
            }
            if stats.write_errors > 0 {
                println!("{} packets refused by the receiving device", stats.write_errors);
            }
            println!("link {} down: {na} and {nb} removed", a.name);
            Ok(())
        }
    }
}
