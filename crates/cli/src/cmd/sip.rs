//! `appnet sip serve|user add`: the SIP registrar and proxy, and its users file.

use super::set;
use crate::context::Context;
use anyhow::Context as _;
use appnet_netkit::{Service, Shutdown};
use appnet_sip::{SipConfig, SipServer};
use clap::{Args, Subcommand};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

/// SIP: registrar, stateful proxy, call forwarding and admission control.
#[derive(Subcommand, Debug)]
#[command(after_help = "Try it:\n  \
    appnet sip user add bob@umass.edu --users users.txt\n  \
    appnet sip serve --domain umass.edu --users users.txt\n  \
    sipsak -U -C sip:bob@127.0.0.1:5070 -s sip:bob@127.0.0.1:5060 -a PASSWORD")]
pub enum SipCmd {
    /// Serve a domain: registrar (Digest), stateful forking proxy, forwarding, admission control.
    #[command(after_help = "Examples:\n  \
        appnet sip serve --domain umass.edu --users users.txt\n  \
        appnet sip serve --domain umass.edu --redirect                 302 with the contacts\n  \
        appnet sip serve --domain umass.edu --link-kbps 160            at most two G.711 calls")]
    Serve(Box<ServeArgs>),
    /// Manage the users file.
    #[command(subcommand)]
    User(UserCmd),
    /// A phone: registers, answers (180, 200, or 486 when busy) and echoes the caller's audio.
    #[command(after_help = "Examples:\n  \
        echo secret | appnet sip phone --user bob@umass.edu --proxy 127.0.0.1:5060 --password-stdin --auto-answer\n  \
        appnet sip phone --user bob@umass.edu --listen 127.0.0.1:5070 --auto-answer   no registrar: dial it directly")]
    Phone(super::sip_ua::PhoneArgs),
    /// Place one call: INVITE with SDP, RTP µ-law media both ways for --duration, then BYE.
    #[command(after_help = "Examples:\n  \
        appnet sip call --from alice@poly.edu --to bob@umass.edu --proxy 127.0.0.1:5060 --trace\n  \
        appnet sip call --from alice@poly.edu --to bob@umass.edu --proxy 127.0.0.1:5070 --wav hello.wav")]
    Call(super::sip_ua::CallArgs),
}

/// `sip user ...`
#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Add a user or change their password or forwarding (creates FILE if needed).
    #[command(after_help = "Examples:\n  \
        appnet sip user add bob@umass.edu --users users.txt\n  \
        echo secret | appnet sip user add bob@umass.edu --users users.txt --password-stdin\n  \
        appnet sip user add bob@umass.edu --users users.txt --forward noanswer=sip:bob@127.0.0.1:5072 --forward noanswer-secs=5")]
    Add(UserAddArgs),
}

/// Flags for `sip serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    options: SipOptions,
}

/// The service flags of `sip serve`; each overrides the `[sip]` table of --config.
#[derive(Args, Debug, Default)]
pub struct SipOptions {
    /// The domain served (users are NAME@DOMAIN).
    #[arg(long, value_name = "DOMAIN")]
    domain: Option<String>,
    /// UDP and TCP address to listen on [default: 127.0.0.1:5060].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Users file (`sip user add`); without it REGISTER is not authenticated.
    #[arg(long, value_name = "FILE")]
    users: Option<PathBuf>,
    /// Be a redirect server: answer 302 with the registered contacts.
    #[arg(long)]
    redirect: bool,
    /// Admission control: link capacity per direction in kbit/s; calls beyond it get 503.
    #[arg(long, value_name = "N")]
    link_kbps: Option<u32>,
    /// Recursive resolver for locating other domains' servers (RFC 3263 NAPTR/SRV/A); with
    /// it, local users who pass the proxy's 407 challenge may call other domains.
    #[arg(long, value_name = "ADDR")]
    resolver: Option<SocketAddr>,
    /// Also serve SIP over TLS (sips:) on the TCP port + 1 (or --tls-listen), with --cert/--key
    /// or a certificate minted by the lab CA.
    #[arg(long)]
    tls: bool,
    /// Address for SIP over TLS (implies --tls).
    #[arg(long, value_name = "ADDR")]
    tls_listen: Option<SocketAddr>,
    /// PEM certificate chain for TLS (implies --tls).
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// PEM private key for TLS.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// The lab CA's directory (for the minted certificate).
    #[arg(long, value_name = "DIR")]
    ca_dir: Option<PathBuf>,
    /// Digest challenges with MD5 only (no SHA-256 second header): for phones that fail on an
    /// algorithm they do not know instead of skipping it (baresip 1.0).
    #[arg(long)]
    md5_only: bool,
    /// Seconds one RFC 3263 location may take [default: 5].
    #[arg(long, value_name = "SECS")]
    dns_timeout: Option<u64>,
    /// Largest message in bytes [default: 65535].
    #[arg(long, value_name = "BYTES")]
    max_message: Option<usize>,
    /// Most header fields in a message [default: 100].
    #[arg(long, value_name = "N")]
    max_headers: Option<usize>,
    /// Transactions in flight in all [default: 20000].
    #[arg(long, value_name = "N")]
    max_transactions: Option<usize>,
    /// Transactions awaiting their final response from one address [default: 2000]
    /// (finished ones that linger to absorb retransmissions count only in --max-transactions).
    #[arg(long, value_name = "N")]
    max_transactions_per_ip: Option<usize>,
    /// Contacts one user may register [default: 10].
    #[arg(long, value_name = "N")]
    max_bindings_per_user: Option<usize>,
    /// Shortest registration accepted, seconds [default: 60].
    #[arg(long, value_name = "SECS")]
    min_expires: Option<u32>,
    /// Longest registration granted, seconds [default: 86400].
    #[arg(long, value_name = "SECS")]
    max_expires: Option<u32>,
    /// Seconds a Digest nonce stays valid [default: 300].
    #[arg(long, value_name = "SECS")]
    nonce_lifetime: Option<u64>,
    /// Seconds before an admitted call's bandwidth is released without BYE [default: 14400].
    #[arg(long, value_name = "SECS")]
    dialog_timeout: Option<u64>,
    /// Default seconds before no-answer forwarding [default: 20].
    #[arg(long, value_name = "SECS")]
    noanswer_secs: Option<u64>,
    /// Seconds an INVITE branch may ring before it is cancelled with 408 (timer C) [default: 181].
    #[arg(long, value_name = "SECS")]
    timer_c: Option<u64>,
    /// Presence subscriptions in all [default: 10000].
    #[arg(long, value_name = "N")]
    max_subscriptions: Option<usize>,
    /// Presence subscriptions from one address [default: 100].
    #[arg(long, value_name = "N")]
    max_subscriptions_per_ip: Option<usize>,
    /// TCP connections in all [default: 1024].
    #[arg(long, value_name = "N")]
    max_tcp_connections: Option<usize>,
    /// TCP connections from one address [default: 64].
    #[arg(long, value_name = "N")]
    max_tcp_per_ip: Option<usize>,
    /// Seconds a TCP connection (inbound or outbound) may stay without a complete message
    /// [default: 300].
    #[arg(long, value_name = "SECS")]
    tcp_idle_timeout: Option<u64>,
    /// Outbound TCP/TLS connections to other domains' servers in all (one per target, reused)
    /// [default: 256].
    #[arg(long, value_name = "N")]
    max_outbound_connections: Option<usize>,
    /// Seconds an outbound TCP connect, and its TLS handshake, may take [default: 5].
    #[arg(long, value_name = "SECS")]
    connect_timeout: Option<u64>,
    /// CA certificate (PEM) trusted for outbound TLS besides the lab CA and the system store
    /// (repeatable).
    #[arg(long, value_name = "FILE")]
    cacert: Vec<PathBuf>,
}

impl SipOptions {
    /// Puts the flags given over `config`; absent flags keep its values.
    pub fn apply(self, config: &mut SipConfig) {
        set(&mut config.domain, self.domain);
        set(&mut config.listen, self.listen);
        if self.users.is_some() {
            config.users = self.users;
        }
        config.redirect |= self.redirect;
        if self.link_kbps.is_some() {
            config.link_kbps = self.link_kbps;
        }
        if self.resolver.is_some() {
            config.resolver = self.resolver;
        }
        set(&mut config.dns_timeout_secs, self.dns_timeout);
        config.md5_only |= self.md5_only;
        config.tls |= self.tls || self.tls_listen.is_some() || self.cert.is_some();
        if self.tls_listen.is_some() {
            config.tls_listen = self.tls_listen;
        }
        if self.cert.is_some() {
            config.cert = self.cert;
            config.key = self.key;
        }
        if self.ca_dir.is_some() {
            config.ca_dir = self.ca_dir;
        }
        set(&mut config.max_message, self.max_message);
        set(&mut config.max_headers, self.max_headers);
        set(&mut config.max_transactions, self.max_transactions);
        set(&mut config.max_transactions_per_ip, self.max_transactions_per_ip);
        set(&mut config.max_bindings_per_user, self.max_bindings_per_user);
        set(&mut config.min_expires, self.min_expires);
        set(&mut config.max_expires, self.max_expires);
        set(&mut config.nonce_lifetime_secs, self.nonce_lifetime);
        set(&mut config.dialog_timeout_secs, self.dialog_timeout);
        set(&mut config.noanswer_secs, self.noanswer_secs);
        set(&mut config.timer_c_secs, self.timer_c);
        set(&mut config.max_subscriptions, self.max_subscriptions);
        set(&mut config.max_subscriptions_per_ip, self.max_subscriptions_per_ip);
        set(&mut config.max_tcp_connections, self.max_tcp_connections);
        set(&mut config.max_tcp_per_ip, self.max_tcp_per_ip);
        set(&mut config.tcp_idle_timeout_secs, self.tcp_idle_timeout);
        set(&mut config.max_outbound_connections, self.max_outbound_connections);
        set(&mut config.connect_timeout_secs, self.connect_timeout);
        config.cacert.extend(self.cacert);
    }
}

/// Flags for `sip user add`.
#[derive(Args, Debug)]
pub struct UserAddArgs {
    /// user@domain
    user: String,
    /// The users file (created if missing).
    #[arg(long, value_name = "FILE")]
    users: PathBuf,
    /// Read the password from the first line of stdin instead of prompting.
    #[arg(long)]
    password_stdin: bool,
    /// Keep the password of an existing user; only change forwarding.
    #[arg(long, conflicts_with = "password_stdin")]
    keep_password: bool,
    /// Forwarding: always=URI, busy=URI, noanswer=URI, noanswer-secs=N (empty URI clears).
    #[arg(long, value_name = "RULE")]
    forward: Vec<String>,
}

/// Runs a `sip` subcommand.
pub async fn run(cmd: SipCmd, ctx: &Context) -> anyhow::Result<()> {
    match cmd {
        SipCmd::Serve(args) => serve(*args, ctx).await,
        SipCmd::User(UserCmd::Add(args)) => user_add(args),
        SipCmd::Phone(args) => super::sip_ua::phone(args).await,
        SipCmd::Call(args) => super::sip_ua::place_call(args).await,
    }
}

async fn serve(args: ServeArgs, ctx: &Context) -> anyhow::Result<()> {
    let mut config: SipConfig = ctx.section("sip")?;
    args.options.apply(&mut config);
    let domain = config.domain.clone();
    let server = SipServer::bind(config).await?;
    println!("appnet sip: serving {domain} on udp+tcp {} (Ctrl-C to stop)", server.local_addr());
    if let Some(tls) = server.tls_addr() {
        println!("appnet sip: SIP over TLS on {tls}");
    }
    if let Some(note) = server.tls_note() {
        println!("appnet sip: {note}");
    }
    let _ = std::io::stdout().flush();
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    server.run(shutdown).await.map_err(|e| anyhow::anyhow!(e))
}

fn user_add(args: UserAddArgs) -> anyhow::Result<()> {
    let password = if args.keep_password {
        None
    } else if args.password_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).context("cannot read the password from stdin")?;
        Some(line.trim_end_matches(['\r', '\n']).to_string())
    } else {
        Some(
            appnet_ftp::users::prompt_password(&format!("Password for {}: ", args.user))
                .context("cannot read the password")?,
        )
    };
    if let Some(p) = &password {
        anyhow::ensure!(!p.is_empty(), "the password is empty");
    }
    let user = appnet_sip::users::add_user(&args.users, &args.user, password.as_deref(), &args.forward)?;
    println!("appnet sip: {} saved in {}", user.aor, args.users.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_config_and_absent_flags_keep_it() {
        let mut config = SipConfig { min_expires: 30, ..SipConfig::default() };
        let options =
            SipOptions { domain: Some("umass.edu".into()), link_kbps: Some(160), ..SipOptions::default() };
        options.apply(&mut config);
        assert_eq!(
            (config.domain.as_str(), config.link_kbps, config.min_expires),
            ("umass.edu", Some(160), 30)
        );
        let before = format!("{config:?}");
        SipOptions::default().apply(&mut config);
        assert_eq!(format!("{config:?}"), before);
    }
}
