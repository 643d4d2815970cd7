//! `appnet gnutella node|search|get`: a Gnutella 0.6 servent (plain node or ultrapeer), and
//! the client that searches through a node and fetches the result over HTTP.

use super::napster::UploadOptions;
use super::set;
use crate::context::Context;
use anyhow::Context as _;
use appnet_netkit::{Service, Shutdown};
use appnet_overlay::gnutella::base32::sha1_urn;
use appnet_overlay::gnutella::client;
use appnet_overlay::gnutella::node::Node;
use appnet_overlay::gnutella::node_config::NodeConfig;
use appnet_overlay::http::download::DownloadOptions;
use clap::{Args, Subcommand};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Gnutella 0.6: query flooding over an overlay of TCP connections; ultrapeers (KaZaA group leaders).
#[derive(Subcommand, Debug)]
#[command(after_help = "Try it:\n  \
    appnet gnutella node --share ~/Music --listen 127.0.0.1:6346 --ultrapeer &\n  \
    appnet gnutella node --share /tmp/empty --listen 127.0.0.1:6347 --connect 127.0.0.1:6346 &\n  \
    appnet gnutella search 'hey jude' --node 127.0.0.1:6347\n  \
    appnet gnutella get 'hey jude' --node 127.0.0.1:6347 -o /tmp")]
pub enum GnutellaCmd {
    /// Run a servent: neighbours and HTTP downloads on one port.
    Node(Box<NodeArgs>),
    /// Search through a node; prints one line per hit: name, size, urn:sha1, peer IP:PORT, hops.
    Search(SearchArgs),
    /// Search (by keywords or urn:sha1) and fetch the file from every peer that has it, verified.
    Get(GetArgs),
}

/// Flags for `gnutella node`.
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// The directory whose files are shared.
    #[arg(long, value_name = "DIR")]
    share: PathBuf,
    #[command(flatten)]
    options: NodeOptions,
}

/// The node's flags; each overrides the `[gnutella]` table of --config.
#[derive(Args, Debug, Default)]
pub struct NodeOptions {
    /// Address for neighbours and HTTP, advertised in Pongs and QueryHits [default: 127.0.0.1:6346].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// A node to join through (repeatable; tried in order, one at a time).
    #[arg(long, value_name = "ADDR")]
    connect: Vec<SocketAddr>,
    /// Be an ultrapeer: accept leaves, flood among ultrapeers.
    #[arg(long)]
    ultrapeer: bool,
    /// Most neighbour connections, in and out; a full node answers 503 [default: 8].
    #[arg(long, value_name = "N")]
    max_peers: Option<usize>,
    /// Outgoing connections kept open (a leaf: ultrapeers, 1-3) [default: 3].
    #[arg(long, value_name = "N")]
    want_peers: Option<usize>,
    /// Queries per second accepted from one neighbour [default: 20].
    #[arg(long, value_name = "N")]
    query_rate: Option<u64>,
    /// Query burst from one neighbour [default: 60].
    #[arg(long, value_name = "N")]
    query_burst: Option<u64>,
    /// Seconds between keep-alive Pings [default: 30].
    #[arg(long, value_name = "SECS")]
    keepalive: Option<u64>,
    /// Seconds of silence before a neighbour is dropped [default: 120].
    #[arg(long, value_name = "SECS")]
    neighbour_timeout: Option<u64>,
    /// Largest descriptor payload; a larger one drops the connection, e.g. 64KiB [default: 64KiB].
    #[arg(long, value_name = "SIZE", value_parser = appnet_netkit::units::parse_size_usize)]
    max_payload: Option<usize>,
    /// Advertise as firewalled (QueryHits set the Push flag).
    #[arg(long)]
    firewalled: bool,
    #[command(flatten)]
    upload: UploadOptions,
}

impl NodeOptions {
    /// Puts the flags given over `config`; absent flags keep its values.
    pub fn apply(self, config: &mut NodeConfig) {
        set(&mut config.upload.listen, self.listen);
        if !self.connect.is_empty() {
            config.connect = self.connect;
        }
        config.ultrapeer |= self.ultrapeer;
        config.firewalled |= self.firewalled;
        set(&mut config.max_peers, self.max_peers);
        set(&mut config.want_peers, self.want_peers);
        set(&mut config.query_rate, self.query_rate);
        set(&mut config.query_burst, self.query_burst);
        set(&mut config.keepalive_secs, self.keepalive);
        set(&mut config.neighbour_timeout_secs, self.neighbour_timeout);
        set(&mut config.max_payload, self.max_payload);
        self.upload.apply(&mut config.upload);
    }
}

/// Flags for `gnutella search`.
#[derive(Args, Debug)]
pub struct SearchArgs {
    /// Keywords (every one a word of the name) or urn:sha1:<base32>.
    keywords: String,
    /// The node to search through.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:6346")]
    node: SocketAddr,
    /// Hops the Query may travel (1-7).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u8).range(1..=7))]
    ttl: u8,
    /// Seconds to collect QueryHits.
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    wait: f64,
}

/// Flags for `gnutella get`.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// urn:sha1:<base32> printed by search, or keywords (the first hit is fetched).
    result: String,
    /// The node to search through.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:6346")]
    node: SocketAddr,
    /// Directory to write the file into (an existing file is never replaced).
    #[arg(short = 'o', long = "out", value_name = "DIR", default_value = ".")]
    out: PathBuf,
    /// Hops the Query may travel (1-7).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u8).range(1..=7))]
    ttl: u8,
    /// Seconds to collect QueryHits.
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    wait: f64,
}

fn secs(v: f64) -> anyhow::Result<Duration> {
    anyhow::ensure!(v > 0.0 && v.is_finite() && v <= 600.0, "--wait must be between 0 and 600 seconds");
    Ok(Duration::from_secs_f64(v))
}

/// Runs a `gnutella` subcommand.
pub async fn run(cmd: GnutellaCmd, ctx: &Context) -> anyhow::Result<()> {
    match cmd {
        GnutellaCmd::Node(args) => {
            let args = *args;
            let mut config: NodeConfig = ctx.section("gnutella")?;
            args.options.apply(&mut config);
            let listen = config.upload.listen;
            let ultrapeer = config.ultrapeer;
            let node = Node::bind(config, &args.share)
                .await
                .with_context(|| format!("cannot share {} on {listen}", args.share.display()))?;
            println!(
                "appnet gnutella: {} on {} sharing {} files from {} (Ctrl-C to stop)",
                if ultrapeer { "ultrapeer" } else { "node" },
                node.local_addr(),
                node.index().len(),
                args.share.display()
            );
            let _ = std::io::stdout().flush();
            let shutdown = Shutdown::new();
            shutdown.trigger_on_signals();
            node.run(shutdown).await.map_err(|e| anyhow::anyhow!(e))
        }
        GnutellaCmd::Search(args) => {
            let hits = client::search(args.node, &args.keywords, args.ttl, secs(args.wait)?).await?;
            let mut out = std::io::stdout().lock();
            for h in &hits {
                let urn = h.sha1.as_ref().map(sha1_urn).unwrap_or_else(|| "-".into());
                writeln!(out, "{}\t{}\t{}\t{}\thops={}", h.name, h.size, urn, h.addr, h.hops)?;
            }
            if hits.is_empty() {
                eprintln!("no hits for {:?}", args.keywords);
            }
            Ok(())
        }
        GnutellaCmd::Get(args) => {
            let opts = DownloadOptions::default();
            let (hit, done) =
                client::get(args.node, &args.result, args.ttl, secs(args.wait)?, &args.out, opts).await?;
            let from: Vec<String> = done.from.iter().map(|(a, n)| format!("{a} ({n} bytes)")).collect();
            let urn = hit.sha1.as_ref().map(sha1_urn).unwrap_or_default();
            println!("{}\t{}\t{}\tfrom {}", done.path.display(), hit.size, urn, from.join(", "));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_config_and_absent_flags_keep_it() {
        let mut config = NodeConfig { max_peers: 5, ..NodeConfig::default() };
        let options = NodeOptions { ultrapeer: true, want_peers: Some(2), ..NodeOptions::default() };
        options.apply(&mut config);
        assert!(config.ultrapeer);
        assert_eq!((config.want_peers, config.max_peers), (2, 5));
    }
}
