//! `appnet turn serve` (a STUN/TURN server) and `appnet stun SERVER` (a STUN client).

use super::set;
use crate::context::Context;
use anyhow::Context as _;
use appnet_nat::{TurnConfig, TurnServer, discovery};
use appnet_netkit::{Service, Shutdown};
use clap::{Args, Subcommand};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// TURN relay (RFC 8656) that also answers STUN Binding requests.
#[derive(Subcommand, Debug)]
pub enum TurnCmd {
    /// Serve STUN and TURN over UDP with long-term credentials.
    #[command(after_help = "Examples:\n  \
        printf 'alice:secret\\n' > users.txt\n  \
        appnet turn serve --realm example.org --users users.txt\n  \
        appnet turn serve --listen 0.0.0.0:3478 --relay-ip 192.0.2.10 --realm example.org --users users.txt\n  \
        appnet turn serve --realm lab --users users.txt --allow-peer 127.0.0.0/8     relay to loopback peers (tests)\n  \
        appnet turn serve --listen 192.0.2.10:3478 --alt-listen 192.0.2.11:3479 --realm example.org --users users.txt\n  \
        (a second address: clients can discover their NAT's mapping and filtering, RFC 5780)")]
    Serve(ServeArgs),
}

/// Flags for `turn serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    options: TurnOptions,
}

/// The service flags of `turn serve`; each overrides the `[turn]` table of --config.
#[derive(Args, Debug, Default)]
pub struct TurnOptions {
    /// UDP address for STUN and TURN [default: 127.0.0.1:3478].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Realm of the long-term credentials [default: appnet].
    #[arg(long, value_name = "R")]
    realm: Option<String>,
    /// File of `user:password` lines.
    #[arg(long, value_name = "FILE")]
    users: Option<PathBuf>,
    /// Address relayed sockets bind to and advertise [default: the --listen IP].
    #[arg(long, value_name = "IP")]
    relay_ip: Option<IpAddr>,
    /// Relayed ports, LOW-HIGH [default: 49152-65535].
    #[arg(long, value_name = "LOW-HIGH")]
    ports: Option<String>,
    /// Allow relaying to this prefix although it is loopback, private or link-local (repeatable).
    #[arg(long, value_name = "CIDR")]
    allow_peer: Vec<String>,
    /// Most allocations one user holds at once [default: 10].
    #[arg(long, value_name = "N")]
    user_quota: Option<usize>,
    /// Most allocations one client IP address holds at once [default: 32].
    #[arg(long, value_name = "N")]
    ip_quota: Option<usize>,
    /// Most allocations in all [default: 10000].
    #[arg(long, value_name = "N")]
    max_allocations: Option<usize>,
    /// Seconds a nonce is valid before 438 Stale Nonce [default: 600].
    #[arg(long, value_name = "SECS")]
    nonce_lifetime: Option<u64>,
    /// Longest allocation lifetime granted, in seconds [default: 3600].
    #[arg(long, value_name = "SECS")]
    max_lifetime: Option<u32>,
    /// A second address, another IP and port than --listen, for NAT behaviour discovery
    /// (RFC 5780: OTHER-ADDRESS, CHANGE-REQUEST, RESPONSE-ORIGIN).
    #[arg(long, value_name = "ADDR")]
    alt_listen: Option<SocketAddr>,
    /// Unauthenticated error replies (401, 438, 400) per second per source IP, burst twice
    /// that; 0 for no limit [default: 50].
    #[arg(long, value_name = "N")]
    unauth_rate: Option<u32>,
}

impl TurnOptions {
    /// Puts the flags given over `config` (the `[turn]` table); absent flags keep its values.
    pub fn apply(self, config: &mut TurnConfig) {
        set(&mut config.listen, self.listen);
        set(&mut config.realm, self.realm);
        if self.users.is_some() {
            config.users = self.users;
        }
        if self.relay_ip.is_some() {
            config.relay_ip = self.relay_ip;
        }
        set(&mut config.ports, self.ports);
        config.allow_peer.extend(self.allow_peer);
        set(&mut config.user_quota, self.user_quota);
        set(&mut config.ip_quota, self.ip_quota);
        set(&mut config.max_allocations, self.max_allocations);
        set(&mut config.nonce_lifetime_secs, self.nonce_lifetime);
        set(&mut config.max_lifetime_secs, self.max_lifetime);
        if self.alt_listen.is_some() {
            config.alt_listen = self.alt_listen;
        }
        set(&mut config.unauth_rate, self.unauth_rate);
    }
}

/// Flags for `appnet stun`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    appnet stun 127.0.0.1:3478          prints the mapped address, e.g. 127.0.0.1:40123\n\n\
    When the server has a second address (OTHER-ADDRESS, e.g. `appnet turn serve --alt-listen`),\n\
    two more lines tell the NAT's behaviour (RFC 5780):\n  \
    mapping: endpoint-independent | address-dependent | address-and-port-dependent\n  \
    filtering: endpoint-independent | address-dependent | address-and-port-dependent")]
pub struct StunArgs {
    /// The STUN server, IP:PORT.
    server: SocketAddr,
    /// Seconds to wait for the answer (retransmitting at 0.5, 1, 2 s ...).
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    timeout: f64,
    /// Seconds the filtering tests wait for an answer that a filtering NAT drops.
    #[arg(long, value_name = "SECS", default_value_t = 1.5)]
    probe: f64,
}

/// Runs a `turn` subcommand.
pub async fn run_turn(cmd: TurnCmd, ctx: &Context) -> anyhow::Result<()> {
    let TurnCmd::Serve(args) = cmd;
    let mut config: TurnConfig = ctx.section("turn")?;
    args.options.apply(&mut config);
    anyhow::ensure!(config.users.is_some(), "--users FILE is required (one user:password per line)");
    let listen = config.listen;
    let server = TurnServer::bind(config).await.with_context(|| format!("cannot serve on {listen}"))?;
    println!("appnet turn: STUN/TURN on udp {} (Ctrl-C to stop)", server.local_addr());
    let _ = std::io::stdout().flush();
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    server.run(shutdown).await.map_err(|e| anyhow::anyhow!(e))
}

/// Runs `appnet stun SERVER`: prints the mapped address, and whether a NAT is in the way.
pub async fn run_stun(args: StunArgs) -> anyhow::Result<()> {
    for (flag, v) in [("--timeout", args.timeout), ("--probe", args.probe)] {
        anyhow::ensure!(v > 0.0 && v.is_finite(), "{flag} must be a positive number");
    }
    let b = discovery::discover(
        args.server,
        Duration::from_secs_f64(args.timeout),
        Duration::from_secs_f64(args.probe),
    )
    .await
    .with_context(|| format!("STUN Binding to {}", args.server))?;
    let r = &b.first;
    println!("{}", r.mapped);
    if b.nat {
        eprintln!("behind a NAT: local port {} maps to {}", r.local.port(), r.mapped);
    } else {
        eprintln!("port preserved (local port {}): no port-translating NAT seen", r.local.port());
    }
    match (b.mapping, b.filtering) {
        (Some(m), f) => {
            println!("mapping: {m}");
            match f {
                Some(f) => println!("filtering: {f}"),
                None => eprintln!("filtering: unknown (the server ignored CHANGE-REQUEST)"),
            }
        }
        (None, _) => eprintln!("the server has no second address (OTHER-ADDRESS): NAT behaviour not tested"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_config_and_absent_flags_keep_it() {
        let mut config = TurnConfig { user_quota: 3, realm: "x".into(), ..TurnConfig::default() };
        let options = TurnOptions {
            realm: Some("y".into()),
            allow_peer: vec!["127.0.0.0/8".into()],
            ..TurnOptions::default()
        };
        options.apply(&mut config);
        assert_eq!((config.realm.as_str(), config.user_quota), ("y", 3));
        assert_eq!(config.allow_peer, vec!["127.0.0.0/8".to_string()]);
    }
}
