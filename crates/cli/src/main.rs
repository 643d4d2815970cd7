//! `appnet`: the Internet's application layer in one binary. This crate only turns flags and
//! config files into services; all protocol logic lives in the protocol crates.

mod cmd;
mod context;

use clap::{Parser, Subcommand};
use context::Context;

/// The Internet's application layer, as real servers and clients, plus a lab that runs the
/// textbook's whole Internet on one machine.
#[derive(Parser, Debug)]
#[command(
    name = "appnet",
    version,
    about,
    long_about = None,
    after_help = "Examples:\n  \
        appnet lab --tour                                  the textbook's Internet, scene by scene\n  \
        appnet dns query gaia.cs.umass.edu --server 127.0.4.1:10053 --rd   ask the lab's resolver\n  \
        appnet web serve --root ./site --listen 127.0.0.1:8080\n  \
        appnet torrent create big.iso --tracker http://127.0.0.1:6969/announce\n  \
        appnet upper serve --listen 127.0.0.1:12000        the uppercase server (TCP)\n  \
        appnet -v upper serve --udp                        more logging, UDP variant\n\n\
        Logging: -v, -vv, or RUST_LOG (e.g. RUST_LOG=appnet_upper=debug).\n\
        Config: --config FILE reads a TOML file with one table per service ([upper], ...);\n\
        flags on the command line override it."
)]
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    /// TOML config file with one table per service; command-line flags take precedence.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<std::path::PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The textbook's Internet on 127.0.0.0/8: DNS root, TLD and authoritative servers, local
    /// resolvers; `--tour` walks through the textbook's scenes.
    Lab(cmd::lab::LabArgs),
    /// The socket-programming example: a server that upper-cases lines, and its client.
    #[command(subcommand)]
    Upper(cmd::upper::UpperCmd),
    /// DNS: an authoritative server (zone files, primary/secondary), a recursive resolver, zone checks, a query client.
    #[command(subcommand)]
    Dns(cmd::dns::DnsCmd),
    /// The Web: a static-site server (HTTP/1.0, 1.1, HTTP/2 with push, TLS, virtual hosts) and a client.
    #[command(subcommand)]
    Web(cmd::web::WebCmd),
    /// A Chord distributed hash table: nodes, put/get, and a walk around the ring.
    #[command(subcommand)]
    Chord(cmd::chord::ChordCmd),
    /// BitTorrent: .torrent files, a tracker, and a client that seeds and downloads.
    #[command(subcommand)]
    Torrent(cmd::torrent::TorrentCmd),
    /// Napster: a central directory of who shares what; files go peer to peer over HTTP.
    #[command(subcommand)]
    Napster(cmd::napster::NapsterCmd),
    /// Gnutella 0.6: query flooding over TCP neighbours; ultrapeers as KaZaA-style group leaders.
    #[command(subcommand)]
    Gnutella(cmd::gnutella::GnutellaCmd),
    /// FTP: a server with separate control and data connections, and a client that shows both.
    #[command(subcommand)]
    Ftp(cmd::ftp::FtpCmd),
    /// SIP: registrar and stateful proxy with forwarding and admission control.
    #[command(subcommand)]
    Sip(cmd::sip::SipCmd),
    /// Mail: SMTP and submission for your domains, the queue that delivers to MX hosts, and `mail send`.
    #[command(subcommand)]
    Mail(cmd::mail::MailCmd),
    /// A layer-4 TCP/UDP load balancer: one address, many replicas (Maglev, health checks, PROXY protocol).
    Lb(cmd::lb::LbArgs),
    /// TURN relay (RFC 8656) with STUN: `appnet turn serve`.
    #[command(subcommand)]
    Turn(cmd::nat::TurnCmd),
    /// STUN client: print this host's mapped (server-reflexive) address as IP:PORT.
    Stun(cmd::nat::StunArgs),
    /// Skype-style overlay: supernodes (the user directory), peers behind NATs, calls and messages.
    #[command(subcommand)]
    Skype(cmd::skype::SkypeCmd),
    /// A packet-level link emulator between two network namespaces (delay, jitter, loss, rate, queue).
    #[command(subcommand)]
    Link(cmd::link::LinkCmd),
    /// Reproduce published measurements (Chord paper, ...) and write SVG plots.
    #[command(subcommand)]
    Experiment(cmd::experiment::ExperimentCmd),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    context::init_logging(cli.verbose);
    let ctx = match Context::load(cli.config.as_deref()) {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("appnet: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("appnet: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Lab(args) => cmd::lab::run(args, &ctx).await,
            Command::Upper(cmd) => cmd::upper::run(cmd, &ctx).await,
            Command::Dns(cmd) => cmd::dns::run(cmd, &ctx).await,
            Command::Web(cmd) => cmd::web::run(cmd, &ctx).await,
            Command::Chord(cmd) => cmd::chord::run(cmd, &ctx).await,
            Command::Torrent(cmd) => cmd::torrent::run(cmd, &ctx).await,
            Command::Experiment(cmd) => cmd::experiment::run(cmd, &ctx).await,
            Command::Lb(args) => cmd::lb::run(args, &ctx).await,
            Command::Link(cmd) => cmd::link::run(cmd, &ctx).await,
            Command::Turn(cmd) => cmd::nat::run_turn(cmd, &ctx).await,
            Command::Stun(args) => cmd::nat::run_stun(args).await,
            Command::Skype(cmd) => cmd::skype::run(cmd, &ctx).await,
            Command::Mail(cmd) => cmd::mail::run(cmd, &ctx).await,
            Command::Ftp(cmd) => cmd::ftp::run(cmd, &ctx).await,
            Command::Sip(cmd) => cmd::sip::run(cmd, &ctx).await,
            Command::Napster(cmd) => cmd::napster::run(cmd, &ctx).await,
            Command::Gnutella(cmd) => cmd::gnutella::run(cmd, &ctx).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("appnet: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
