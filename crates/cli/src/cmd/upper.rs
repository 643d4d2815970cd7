//! `appnet upper serve|ask`: the uppercase server and client.

use crate::context::Context;
use anyhow::Context as _;
use appnet_netkit::{Service, Shutdown};
use appnet_upper::{UpperConfig, UpperServer, client};
use clap::{Args, Subcommand};
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

/// The uppercase server and client.
#[derive(Subcommand, Debug)]
#[command(after_help = "Try it:\n  appnet upper serve &\n  appnet upper ask 'hello'          prints HELLO")]
pub enum UpperCmd {
    /// Serve: read each line (TCP) or datagram (UDP), send it back upper-cased.
    #[command(after_help = "Examples:\n  \
        appnet upper serve                              TCP on 127.0.0.1:12000\n  \
        appnet upper serve --udp --listen 0.0.0.0:12000  UDP on every interface\n  \
        printf 'hello\\n' | nc -q1 127.0.0.1 12000        any client works: one line in, one out")]
    Serve(ServeArgs),
    /// Ask: send TEXT to an uppercase server and print the answer.
    #[command(after_help = "Examples:\n  \
        appnet upper ask 'hello world'\n  \
        appnet upper ask 'hello' --udp --server 127.0.0.1:12000")]
    Ask(AskArgs),
}

/// Flags for `upper serve`; each overrides the `[upper]` table of --config.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:12000].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Serve UDP datagrams instead of TCP connections.
    #[arg(long)]
    udp: bool,
    /// Longest accepted line or datagram, in bytes [default: 65536].
    #[arg(long, value_name = "BYTES")]
    max_line: Option<usize>,
    /// Seconds a TCP connection has after an answer to send its whole next line [default: 60].
    #[arg(long, value_name = "SECS")]
    idle_timeout: Option<u64>,
    /// Seconds a new TCP connection has to send its whole first line [default: 10].
    #[arg(long, value_name = "SECS")]
    request_timeout: Option<u64>,
    /// Most TCP connections at once; when full, the longest-waiting one makes room [default: 1024].
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Most TCP connections from one address [default: 64].
    #[arg(long, value_name = "N")]
    max_per_ip: Option<usize>,
    /// Largest UDP reply as a multiple of the request's size; larger ones are not sent [default: 3].
    #[arg(long, value_name = "N")]
    udp_max_amplification: Option<usize>,
}

/// Flags for `upper ask`.
#[derive(Args, Debug)]
pub struct AskArgs {
    /// The line to send.
    text: String,
    /// The server's address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:12000")]
    server: SocketAddr,
    /// Use UDP instead of TCP.
    #[arg(long)]
    udp: bool,
    /// Seconds to wait for the answer (UDP retries three times within it).
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    timeout: f64,
}

/// Runs an `upper` subcommand.
pub async fn run(cmd: UpperCmd, ctx: &Context) -> anyhow::Result<()> {
    match cmd {
        UpperCmd::Serve(args) => serve(args, ctx).await,
        UpperCmd::Ask(args) => ask(args).await,
    }
}

async fn serve(args: ServeArgs, ctx: &Context) -> anyhow::Result<()> {
    let mut config: UpperConfig = ctx.section("upper")?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    config.udp |= args.udp;
    if let Some(n) = args.max_line {
        config.max_line = n;
    }
    if let Some(s) = args.idle_timeout {
        config.idle_timeout_secs = s;
    }
    if let Some(s) = args.request_timeout {
        config.request_timeout_secs = s;
    }
    if let Some(n) = args.max_connections {
        config.max_connections = n;
    }
    if let Some(n) = args.max_per_ip {
        config.max_per_ip = n;
    }
    if let Some(n) = args.udp_max_amplification {
        config.udp_max_amplification = n;
    }
    let proto = if config.udp { "udp" } else { "tcp" };
    let listen = config.listen;
    let server = UpperServer::bind(config).await.with_context(|| format!("cannot listen on {listen}"))?;
    println!("appnet upper: serving {proto} on {} (Ctrl-C to stop)", server.local_addr());
    let _ = std::io::stdout().flush();
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    server.run(shutdown).await.map_err(|e| anyhow::anyhow!(e))
}

async fn ask(args: AskArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.timeout > 0.0 && args.timeout.is_finite(), "--timeout must be a positive number");
    let timeout = Duration::from_secs_f64(args.timeout);
    let answer = if args.udp {
        client::ask_udp(args.server, args.text.as_bytes(), timeout, 3).await?
    } else {
        client::ask_tcp(args.server, args.text.as_bytes(), timeout).await?
    };
    let mut out = std::io::stdout().lock();
    out.write_all(&answer)?;
    out.write_all(b"\n")?;
    Ok(())
}
