//! `appnet chord node|put|get|delete|lookup|ring|stats`: a Chord DHT node and its client.

use super::set;
use crate::context::Context;
use anyhow::Context as _;
use appnet_chord::client::{Client, NodeInfo};
use appnet_chord::pool::{Pool, PoolLimits};
use appnet_chord::{ChordConfig, ChordServer, Id, NodeRef};
use appnet_netkit::{Service, Shutdown};
use clap::{Args, Subcommand};
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

const DEFAULT_NODE: &str = "127.0.0.1:14000";

/// A Chord distributed hash table: run nodes, store and read keys, look at the ring.
#[derive(Subcommand, Debug)]
#[command(after_help = "Try it (three nodes on one machine):\n  \
    appnet chord node --listen 127.0.0.1:14000 &\n  \
    appnet chord node --listen 127.0.0.1:14001 --join 127.0.0.1:14000 &\n  \
    appnet chord node --listen 127.0.0.1:14002 --join 127.0.0.1:14000 &\n  \
    appnet chord put alice 'lives at 12 Elm St' --node 127.0.0.1:14001\n  \
    appnet chord get alice --node 127.0.0.1:14002\n  \
    appnet chord ring --node 127.0.0.1:14000\n  \
    appnet chord stats --node 127.0.0.1:14000")]
pub enum ChordCmd {
    /// Run a node: start a new ring, or join one through any of its nodes.
    #[command(after_help = "Examples:\n  \
        appnet chord node                                     new ring on 127.0.0.1:14000\n  \
        appnet chord node --listen 127.0.0.1:0 --join 127.0.0.1:14000\n  \
        appnet chord node --bits 4 --id 5 --listen 127.0.0.1:14005 --join 127.0.0.1:14001\n\n\
        The textbook's 4-bit ring: start nodes with --bits 4 and --id 1, 3, 4, 5, 8, 10, 12, 15.\n\
        Ctrl-C leaves gracefully (keys handed to the successor); kill -9 is an abrupt failure.")]
    Node(Box<NodeArgs>),
    /// Store KEY = VALUE in the ring (on the key's successor and its replicas).
    #[command(after_help = "Example:\n  appnet chord put alice 'lives at 12 Elm St' --node 127.0.0.1:14000")]
    Put(PutArgs),
    /// Read KEY from the ring; prints the value, then the hops the lookup took.
    #[command(after_help = "Example:\n  appnet chord get alice --node 127.0.0.1:14000")]
    Get(KeyArgs),
    /// Delete KEY from the ring (and its replicas).
    Delete(KeyArgs),
    /// Who is responsible for a key (or a raw id with --id)? Prints the successor and the hops.
    #[command(after_help = "Examples:\n  \
        appnet chord lookup alice --node 127.0.0.1:14000\n  \
        appnet chord lookup --id 14 --node 127.0.0.1:14001     on the 4-bit ring: answers 15\n  \
        appnet chord lookup alice --recursive                  forwarded node to node")]
    Lookup(LookupArgs),
    /// Walk the ring along successors and print every node with its fingers.
    #[command(after_help = "Example:\n  appnet chord ring --node 127.0.0.1:14000")]
    Ring(RingArgs),
    /// Print one node's counters: items and bytes stored, requests and RPCs, lookups and hops,
    /// connections (pooled and reused), garbage collection.
    #[command(after_help = "Examples:\n  \
        appnet chord stats --node 127.0.0.1:14000\n  \
        appnet chord stats --node 127.0.0.1:14000 --raw     one `name value` line per counter")]
    Stats(StatsArgs),
}

/// Flags for `chord node`.
#[derive(Args, Debug)]
pub struct NodeArgs {
    #[command(flatten)]
    options: ChordOptions,
}

/// The service flags of `chord node`; each overrides the `[chord]` table of --config.
#[derive(Args, Debug, Default)]
pub struct ChordOptions {
    /// Address to listen on, also the address other nodes reach it at [default: 127.0.0.1:14000].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Any node of the ring to join; without it this node starts a new ring.
    #[arg(long, value_name = "ADDR")]
    join: Option<SocketAddr>,
    /// This node's id (decimal, or hex for wide rings) [default: SHA-1 of the listen address].
    #[arg(long, value_name = "N")]
    id: Option<String>,
    /// Identifier width m, 1..=160 [default: 160]. All nodes of a ring must agree.
    #[arg(long, value_name = "M")]
    bits: Option<u8>,
    /// Successor list length r [default: 3].
    #[arg(long, value_name = "R")]
    successors: Option<usize>,
    /// Copies of each key [default: 3].
    #[arg(long, value_name = "N")]
    replicas: Option<usize>,
    /// Mean milliseconds between stabilize rounds [default: 1000].
    #[arg(long, value_name = "MS")]
    stabilize_ms: Option<u64>,
    /// Mean milliseconds between fix_fingers steps [default: 250].
    #[arg(long, value_name = "MS")]
    fix_fingers_ms: Option<u64>,
    /// Milliseconds before a silent peer counts as failed [default: 1000].
    #[arg(long, value_name = "MS")]
    rpc_timeout_ms: Option<u64>,
    /// Milliseconds between garbage-collection rounds, which drop items this node is no longer
    /// a replica holder for (after handing them to their owner); 0 = never [default: 10000].
    #[arg(long, value_name = "MS")]
    gc_ms: Option<u64>,
    /// Ring secret file (at least 16 bytes; every node and client of the ring uses the same):
    /// every frame then carries an HMAC-SHA256 and frames without a valid one are refused.
    /// Without it, Leaving/Notify/Store claims are checked against the sender's address.
    #[arg(long, value_name = "FILE")]
    secret: Option<std::path::PathBuf>,
    /// Most RPC connections at once [default: 512].
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Most RPC connections from one IP address; 0 = an eighth of --max-connections, 1..=64
    /// [default: 0]. Raise it when many nodes share an address.
    #[arg(long, value_name = "N")]
    max_connections_per_ip: Option<usize>,
    /// Seconds a new connection has to deliver its whole first frame [default: 10].
    #[arg(long, value_name = "SECS")]
    request_timeout_secs: Option<u64>,
    /// Seconds an idle connection has to deliver its whole next frame [default: 30].
    #[arg(long, value_name = "SECS")]
    idle_timeout_secs: Option<u64>,
    /// Memory for partly read frames over all connections, e.g. 16MiB [default: 64MiB].
    #[arg(long, value_name = "SIZE", value_parser = appnet_netkit::units::parse_size_usize)]
    max_frame_buffer_bytes: Option<usize>,
    /// With --secret: seconds a request's timestamp may be off this node's clock [default: 30].
    #[arg(long, value_name = "SECS")]
    auth_window_secs: Option<u64>,
    /// With --secret: authenticated requests remembered against replays [default: 262144].
    #[arg(long, value_name = "N")]
    max_replay_entries: Option<usize>,
    /// Without --secret: most Notify/Leaving/Store claim checks (probes, owner lookups) in
    /// flight at once; more claims are refused [default: 16].
    #[arg(long, value_name = "N")]
    max_claim_checks: Option<usize>,
}

impl ChordOptions {
    /// Puts the flags given over `config` (the `[chord]` table); absent flags keep its values.
    pub fn apply(self, config: &mut ChordConfig) {
        set(&mut config.listen, self.listen);
        set(&mut config.join, self.join.map(Some));
        set(&mut config.id, self.id.map(Some));
        set(&mut config.bits, self.bits);
        set(&mut config.successors, self.successors);
        set(&mut config.replicas, self.replicas);
        set(&mut config.stabilize_ms, self.stabilize_ms);
        set(&mut config.fix_fingers_ms, self.fix_fingers_ms);
        set(&mut config.rpc_timeout_ms, self.rpc_timeout_ms);
        set(&mut config.gc_ms, self.gc_ms);
        set(&mut config.secret_file, self.secret.map(Some));
        set(&mut config.max_connections, self.max_connections);
        set(&mut config.max_connections_per_ip, self.max_connections_per_ip);
        set(&mut config.request_timeout_secs, self.request_timeout_secs);
        set(&mut config.idle_timeout_secs, self.idle_timeout_secs);
        set(&mut config.max_frame_buffer_bytes, self.max_frame_buffer_bytes);
        set(&mut config.auth_window_secs, self.auth_window_secs);
        set(&mut config.max_replay_entries, self.max_replay_entries);
        set(&mut config.max_claim_checks, self.max_claim_checks);
    }
}

/// Where to reach the ring, for the client commands.
#[derive(Args, Debug)]
pub struct NodeAddr {
    /// Any node of the ring.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_NODE)]
    node: SocketAddr,
    /// Seconds to wait for each answer.
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    timeout: f64,
    /// Recursive lookup: the node forwards the query hop by hop (default: iterative, the client
    /// asks each hop itself).
    #[arg(long)]
    recursive: bool,
    /// The ring's secret file, when its nodes run with --secret.
    #[arg(long, value_name = "FILE")]
    secret: Option<std::path::PathBuf>,
}

/// Flags for `chord put`.
#[derive(Args, Debug)]
pub struct PutArgs {
    /// The key.
    key: String,
    /// The value.
    value: String,
    #[command(flatten)]
    at: NodeAddr,
}

/// Flags for `chord get` and `chord delete`.
#[derive(Args, Debug)]
pub struct KeyArgs {
    /// The key.
    key: String,
    #[command(flatten)]
    at: NodeAddr,
}

/// Flags for `chord lookup`.
#[derive(Args, Debug)]
pub struct LookupArgs {
    /// The key (its id is SHA-1 of it, modulo 2^m).
    #[arg(required_unless_present = "id")]
    key: Option<String>,
    /// Look up this raw id instead of a key's hash.
    #[arg(long, value_name = "N", conflicts_with = "key")]
    id: Option<String>,
    #[command(flatten)]
    at: NodeAddr,
}

/// Flags for `chord ring`.
#[derive(Args, Debug)]
pub struct RingArgs {
    #[command(flatten)]
    at: NodeAddr,
    /// Stop after this many nodes.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    max: usize,
}

/// Flags for `chord stats`.
#[derive(Args, Debug)]
pub struct StatsArgs {
    #[command(flatten)]
    at: NodeAddr,
    /// One `name value` line per counter, for scripts.
    #[arg(long)]
    raw: bool,
}

/// Runs a `chord` subcommand.
pub async fn run(cmd: ChordCmd, ctx: &Context) -> anyhow::Result<()> {
    match cmd {
        ChordCmd::Node(args) => node(*args, ctx).await,
        ChordCmd::Put(args) => {
            let client = connect(&args.at).await?;
            let (owner, lookup) = client.put(args.key.as_bytes(), args.value.as_bytes()).await?;
            println!(
                "stored {:?} on node {} at {} (key id {}, {} hops)",
                args.key,
                owner.id.display(client.bits()),
                owner.addr,
                client.key_id(args.key.as_bytes()).display(client.bits()),
                lookup.hops
            );
            Ok(())
        }
        ChordCmd::Get(args) => {
            let client = connect(&args.at).await?;
            let got = client.get(args.key.as_bytes()).await?;
            let Some(value) = got.value else {
                anyhow::bail!("key {:?} not found ({} hops)", args.key, got.lookup.hops);
            };
            let mut out = std::io::stdout().lock();
            out.write_all(&value)?;
            out.write_all(b"\n")?;
            let holder = got.holder.map(|h| describe(&h, client.bits())).unwrap_or_default();
            writeln!(out, "hops: {} (from {holder}, timeouts {})", got.lookup.hops, got.lookup.timeouts)?;
            Ok(())
        }
        ChordCmd::Delete(args) => {
            let client = connect(&args.at).await?;
            if client.delete(args.key.as_bytes()).await? {
                println!("deleted {:?}", args.key);
                Ok(())
            } else {
                anyhow::bail!("key {:?} not found", args.key)
            }
        }
        ChordCmd::Lookup(args) => {
            let client = connect(&args.at).await?;
            let id = match (&args.id, &args.key) {
                (Some(text), _) => Id::parse(text, client.bits())
                    .with_context(|| format!("--id {text} is not a number below 2^{}", client.bits()))?,
                (None, Some(key)) => client.key_id(key.as_bytes()),
                (None, None) => anyhow::bail!("give a KEY or --id N"),
            };
            let o = client.lookup(id).await?;
            println!("id {} -> node {}", id.display(client.bits()), describe(&o.succs[0], client.bits()));
            println!("hops: {} (timeouts {})", o.hops, o.timeouts);
            Ok(())
        }
        ChordCmd::Ring(args) => {
            let client = connect(&args.at).await?;
            let ring = client.ring(args.max).await?;
            let bits = client.bits();
            println!("{} nodes on a ring of {bits}-bit ids:", ring.len());
            for info in &ring {
                print_node(info, bits);
            }
            Ok(())
        }
        ChordCmd::Stats(args) => {
            let client = connect(&args.at).await?;
            let counters = client.stats(args.at.node).await?;
            if args.raw {
                for (name, value) in &counters {
                    println!("{name} {value}");
                }
                return Ok(());
            }
            let info = client.info(args.at.node).await?;
            print_stats(&describe(&info.node, client.bits()), &counters);
            Ok(())
        }
    }
}

/// The counters of `chord stats`, a few lines by topic; counters this version does not know
/// (a newer node) are listed at the end as they came.
fn print_stats(node: &str, counters: &[(String, u64)]) {
    let get = |name: &str| counters.iter().find(|(k, _)| k == name).map(|(_, v)| *v).unwrap_or(0);
    let per = |total: u64, n: u64| if n == 0 { 0.0 } else { total as f64 / n as f64 };
    let secs = get("uptime_ms") / 1000;
    println!("node {node}, up {}h {:02}m {:02}s", secs / 3600, secs / 60 % 60, secs % 60);
    println!(
        "  store:        {} items ({} owned, {} replicas), {} bytes; {} deleted keys remembered",
        get("items"),
        get("items_owned"),
        get("items_replica"),
        get("bytes"),
        get("deleted_keys_remembered")
    );
    println!(
        "  routing:      {} successors, {} distinct fingers, {} RPCs in flight, {} peers presumed dead",
        get("successors"),
        get("fingers_distinct"),
        get("pending_rpcs"),
        get("peers_suspected")
    );
    println!("  requests in:  {} answered, {} malformed", get("requests_in"), get("bad_requests"));
    println!(
        "  RPCs out:     {} sent, {} unreachable, {} refused",
        get("rpcs_out"),
        get("rpc_unreachable"),
        get("rpc_refused")
    );
    println!(
        "  lookups:      {} done, {} failed; {:.2} hops and {:.2} timeouts per lookup",
        get("lookups"),
        get("lookup_failures"),
        per(get("lookup_hops"), get("lookups") - get("lookup_failures")),
        per(get("lookup_timeouts"), get("lookups") - get("lookup_failures"))
    );
    println!(
        "  connections:  in {} accepted, {} open, {} refused, {} evicted, {} timed out; out {} opened, {} reused, {} stale, {} pooled",
        get("connections_in_total"),
        get("connections_in_open"),
        get("connections_in_refused"),
        get("connections_in_evicted"),
        get("connections_in_timed_out"),
        get("connections_out_opened"),
        get("connections_out_reused"),
        get("connections_out_stale"),
        get("connections_out_pooled")
    );
    println!(
        "  garbage:      {} rounds, {} stale items dropped, {} items adopted",
        get("gc_rounds"),
        get("gc_dropped"),
        get("gc_adopted")
    );
    println!(
        "  refused:      {} unauthenticated requests, {} unverified claims, {} frames over the buffer budget",
        get("requests_unauthenticated"),
        get("claims_refused"),
        get("frames_over_budget")
    );
    const KNOWN: &[&str] = &[
        "uptime_ms",
        "items",
        "items_owned",
        "items_replica",
        "bytes",
        "deleted_keys_remembered",
        "successors",
        "fingers_distinct",
        "pending_rpcs",
        "peers_suspected",
        "requests_in",
        "bad_requests",
        "rpcs_out",
        "rpc_unreachable",
        "rpc_refused",
        "lookups",
        "lookup_failures",
        "lookup_hops",
        "lookup_timeouts",
        "connections_in_total",
        "connections_in_open",
        "connections_in_refused",
        "connections_in_evicted",
        "connections_in_timed_out",
        "connections_out_opened",
        "connections_out_reused",
        "connections_out_stale",
        "connections_out_pooled",
        "gc_rounds",
        "gc_dropped",
        "gc_adopted",
        "requests_unauthenticated",
        "claims_refused",
        "frames_over_budget",
    ];
    for (name, value) in counters.iter().filter(|(k, _)| !KNOWN.contains(&k.as_str())) {
        println!("  {name}: {value}");
    }
}

fn describe(n: &NodeRef, bits: u8) -> String {
    format!("{} at {}", n.id.display(bits), n.addr)
}

fn print_node(info: &NodeInfo, bits: u8) {
    let ids = |v: &[NodeRef]| v.iter().map(|n| n.id.display(bits)).collect::<Vec<_>>().join(", ");
    println!("node {} at {}  ({} items)", info.node.id.display(bits), info.node.addr, info.items);
    println!("  predecessor: {}", info.pred.map(|p| p.id.display(bits)).unwrap_or_else(|| "none".into()));
    println!("  successors:  {}", ids(&info.succs));
    let fingers: Vec<String> = info
        .fingers
        .iter()
        .map(|(k, n)| format!("[{k}] {}+2^{k} -> {}", info.node.id.display(bits), n.id.display(bits)))
        .collect();
    if bits <= 16 {
        println!("  fingers:     {}", fingers.join(", "));
    } else {
        println!("  fingers:     {} distinct", fingers.len());
        for f in fingers {
            println!("    {f}");
        }
    }
}

async fn connect(at: &NodeAddr) -> anyhow::Result<Client> {
    anyhow::ensure!(at.timeout > 0.0 && at.timeout.is_finite(), "--timeout must be a positive number");
    let auth = match &at.secret {
        Some(path) => Some(std::sync::Arc::new(appnet_chord::config::read_secret(path)?)),
        None => None,
    };
    let pool = Pool::with_auth(PoolLimits::default(), auth);
    let timeout = Duration::from_secs_f64(at.timeout);
    let client = Client::connect_with(at.node, timeout, pool).await.with_context(|| {
        format!("no Chord node answers at {} (start one with `appnet chord node`)", at.node)
    })?;
    Ok(client.recursive(at.recursive))
}

async fn node(args: NodeArgs, ctx: &Context) -> anyhow::Result<()> {
    let mut config: ChordConfig = ctx.section("chord")?;
    args.options.apply(&mut config);
    let listen = config.listen;
    let join = config.join;
    let bits = config.bits;
    let server =
        ChordServer::bind(config).await.with_context(|| format!("cannot start a Chord node on {listen}"))?;
    let me = server.node_ref();
    match join {
        Some(j) => println!(
            "appnet chord: node {} listening on {}, joining the ring through {j} (Ctrl-C to leave)",
            me.id.display(bits),
            me.addr
        ),
        None => println!(
            "appnet chord: node {} listening on {}, new ring of {bits}-bit ids (Ctrl-C to leave)",
            me.id.display(bits),
            me.addr
        ),
    }
    let _ = std::io::stdout().flush();
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    server.run(shutdown).await.map_err(|e| anyhow::anyhow!(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_config_and_absent_flags_keep_it() {
        let mut config = ChordConfig { bits: 4, replicas: 2, ..ChordConfig::default() };
        let join = SocketAddr::from(([127, 0, 0, 1], 14000));
        let options = ChordOptions {
            bits: Some(8),
            join: Some(join),
            max_frame_buffer_bytes: Some(1 << 20),
            ..ChordOptions::default()
        };
        options.apply(&mut config);
        assert_eq!((config.bits, config.join, config.replicas), (8, Some(join), 2));
        assert_eq!(config.max_frame_buffer_bytes, 1 << 20);
        let before = format!("{config:?}");
        ChordOptions::default().apply(&mut config);
        assert_eq!(format!("{config:?}"), before);
    }
}
