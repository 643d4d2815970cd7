//! `appnet upper serve|ask`: the uppercase server and client.

use super::set;
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

/// Flags for `upper serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    options: UpperOptions,
}

/// The service flags of `upper serve`; each overrides the `[upper]` table of --config.
#[derive(Args, Debug, Default)]
pub struct UpperOptions {
    /// Address to listen on [default: 127.0.0.1:12000].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Serve UDP datagrams instead of TCP connections.
    #[arg(long)]
    udp: bool,
    /// Longest accepted line or datagram, e.g. 4096, 64KiB [default: 64KiB].
    #[arg(long, value_name = "SIZE", value_parser = appnet_netkit::units::parse_size_usize)]
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

impl UpperOptions {
    /// Puts the flags given over `config` (the `[upper]` table); absent flags keep its values.
    pub fn apply(self, config: &mut UpperConfig) {
        set(&mut config.listen, self.listen);
        config.udp |= self.udp;
        set(&mut config.max_line, self.max_line);
        set(&mut config.idle_timeout_secs, self.idle_timeout);
        set(&mut config.request_timeout_secs, self.request_timeout);
        set(&mut config.max_connections, self.max_connections);
        set(&mut config.max_per_ip, self.max_per_ip);
        set(&mut config.udp_max_amplification, self.udp_max_amplification);
    }
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
    args.options.apply(&mut config);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_config_and_absent_flags_keep_it() {
        let mut config = UpperConfig { max_line: 100, max_per_ip: 7, ..UpperConfig::default() };
        let options = UpperOptions { max_line: Some(4096), udp: true, ..UpperOptions::default() };
        options.apply(&mut config);
        assert_eq!((config.max_line, config.udp, config.max_per_ip), (4096, true, 7));
        let before = format!("{config:?}");
        UpperOptions::default().apply(&mut config);
        assert_eq!(format!("{config:?}"), before);
    }

    #[test]
    fn max_line_takes_a_size() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            options: UpperOptions,
        }
        let cli = Cli::try_parse_from(["upper", "--max-line", "64KiB"]).unwrap();
        assert_eq!(cli.options.max_line, Some(64 << 10));
        assert!(Cli::try_parse_from(["upper", "--max-line", "lots"]).is_err());
    }
}
