//! `appnet ftp serve|user add` (the server) and `appnet ftp ls|get|put` (the client, in
//! [`super::ftp_client`]).

use super::set;
use crate::context::Context;
use anyhow::Context as _;
use appnet_ftp::{FtpConfig, FtpServer};
use appnet_netkit::{Service, Shutdown};
use clap::{Args, Subcommand};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// FTP: a server with separate control and data connections, and a client that shows both.
#[derive(Subcommand, Debug)]
#[command(after_help = "Try it:\n  \
    appnet ftp serve --root ./pub &\n  \
    lftp -p 2121 -u anonymous, 127.0.0.1          or: curl ftp://127.0.0.1:2121/")]
pub enum FtpCmd {
    /// Serve a directory over FTP (RFC 959, passive and active, EPSV/EPRT, MLSD, REST, FTPS).
    #[command(after_help = "Examples:\n  \
        appnet ftp serve --root /srv/ftp                         anonymous, read-only\n  \
        appnet ftp serve --root /srv/ftp --users users --write   named users may upload\n  \
        appnet ftp serve --root /srv/ftp --tls                   AUTH TLS with a lab-CA certificate\n  \
        appnet ftp serve --root /srv/ftp --listen 0.0.0.0:2121 --passive-ports 30000-30100")]
    Serve(Box<ServeArgs>),
    /// Manage the users file of `ftp serve --users`.
    #[command(subcommand)]
    User(UserCmd),
    /// List a directory: ftp://[user@]host[:port]/dir/
    Ls(super::ftp_client::LsArgs),
    /// Download a file: ftp://[user@]host[:port]/path
    Get(super::ftp_client::GetArgs),
    /// Upload a file: FILE ftp://user@host[:port]/dir/
    Put(super::ftp_client::PutArgs),
}

/// `ftp user ...`.
#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Add a user (or set a new password), creating the users file if it is missing.
    #[command(
        after_help = "Example:\n  printf 'secret\\n' | appnet ftp user add alice --users users --home /srv/alice --password-stdin"
    )]
    Add(UserAddArgs),
}

/// Flags for `ftp user add`.
#[derive(Args, Debug)]
pub struct UserAddArgs {
    /// The login name.
    name: String,
    /// The users file (`name:$6$salt$hash:home` lines).
    #[arg(long, value_name = "FILE")]
    users: PathBuf,
    /// The user's root directory [default: --root, else the current directory].
    #[arg(long, value_name = "DIR")]
    home: Option<PathBuf>,
    /// The server root, used as the home when --home is not given.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Read the password from the first line of stdin instead of asking on the terminal.
    #[arg(long)]
    password_stdin: bool,
}

/// Flags for `ftp serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    options: FtpOptions,
}

/// The service flags of `ftp serve`; each overrides the `[ftp]` table of --config.
#[derive(Args, Debug, Default)]
pub struct FtpOptions {
    /// The directory anonymous users see as / (and named users' default home).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Control connection address [default: 127.0.0.1:2121].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Accept anonymous logins too (always on without --users).
    #[arg(long)]
    anonymous: bool,
    /// The users file for named logins (see `appnet ftp user add`).
    #[arg(long, value_name = "FILE")]
    users: Option<PathBuf>,
    /// Let logged-in users upload, delete, rename and make directories.
    #[arg(long)]
    write: bool,
    /// Passive data ports, e.g. 30000-30100 [default: any free port].
    #[arg(long, value_name = "LOW-HIGH", value_parser = FtpConfig::parse_port_range)]
    passive_ports: Option<(u16, u16)>,
    /// Address announced in PASV replies (behind NAT) [default: the control connection's].
    #[arg(long, value_name = "IP")]
    passive_address: Option<IpAddr>,
    /// Offer explicit FTPS (AUTH TLS, PBSZ, PROT P) with a lab-CA certificate.
    #[arg(long)]
    tls: bool,
    /// With --tls: refuse logins before AUTH TLS.
    #[arg(long)]
    require_tls: bool,
    /// PEM certificate chain for --tls [default: minted by the lab CA].
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Sessions at once [default: 512].
    #[arg(long, value_name = "N")]
    max_sessions: Option<usize>,
    /// Sessions from one client address [default: 32].
    #[arg(long, value_name = "N")]
    max_sessions_per_ip: Option<usize>,
    /// Seconds a new connection has to log in [default: 60].
    #[arg(long, value_name = "SECS")]
    login_timeout: Option<u64>,
    /// Seconds a session may stay without a command [default: 300].
    #[arg(long, value_name = "SECS")]
    idle_timeout: Option<u64>,
    /// Seconds to wait for a data connection to open [default: 30].
    #[arg(long, value_name = "SECS")]
    data_timeout: Option<u64>,
    /// Seconds a data connection may make no progress [default: 120].
    #[arg(long, value_name = "SECS")]
    data_stall_timeout: Option<u64>,
    /// Failed logins before the connection is closed [default: 3].
    #[arg(long, value_name = "N")]
    max_login_failures: Option<u32>,
    /// Failed logins from one address (over any connections) before it is refused for 10
    /// minutes; 0 turns it off [default: 20].
    #[arg(long, value_name = "N")]
    max_login_failures_per_ip: Option<u32>,
    /// Milliseconds before answering a failed login [default: 1000].
    #[arg(long, value_name = "MS")]
    login_failure_delay: Option<u64>,
    /// Largest file one upload may write, e.g. 100MiB [default: 4GiB].
    #[arg(long, value_name = "SIZE", value_parser = appnet_netkit::units::parse_size)]
    max_upload: Option<u64>,
    /// Uploads stop when free disk space would fall below this [default: 256MiB].
    #[arg(long, value_name = "SIZE", value_parser = appnet_netkit::units::parse_size)]
    min_free_space: Option<u64>,
}

impl FtpOptions {
    /// Puts the flags given over `config` (the `[ftp]` table); absent flags keep its values.
    pub fn apply(self, config: &mut FtpConfig) {
        set(&mut config.root, self.root);
        set(&mut config.listen, self.listen);
        config.anonymous |= self.anonymous;
        if self.users.is_some() {
            config.users = self.users;
        }
        config.write |= self.write;
        if self.passive_ports.is_some() {
            config.passive_ports = self.passive_ports;
        }
        if self.passive_address.is_some() {
            config.passive_address = self.passive_address;
        }
        config.tls |= self.tls;
        config.require_tls |= self.require_tls;
        if self.tls_cert.is_some() {
            config.tls_cert = self.tls_cert;
            config.tls_key = self.tls_key;
        }
        set(&mut config.max_sessions, self.max_sessions);
        set(&mut config.max_sessions_per_ip, self.max_sessions_per_ip);
        set(&mut config.login_timeout_secs, self.login_timeout);
        set(&mut config.idle_timeout_secs, self.idle_timeout);
        set(&mut config.data_connect_timeout_secs, self.data_timeout);
        set(&mut config.data_stall_timeout_secs, self.data_stall_timeout);
        set(&mut config.max_login_failures, self.max_login_failures);
        set(&mut config.max_login_failures_per_ip, self.max_login_failures_per_ip);
        set(&mut config.login_failure_delay_ms, self.login_failure_delay);
        set(&mut config.max_upload, self.max_upload);
        set(&mut config.min_free_space, self.min_free_space);
    }
}

/// Runs an `ftp` subcommand.
pub async fn run(cmd: FtpCmd, ctx: &Context) -> anyhow::Result<()> {
    match cmd {
        FtpCmd::Serve(args) => serve(*args, ctx).await,
        FtpCmd::User(UserCmd::Add(args)) => user_add(args),
        FtpCmd::Ls(args) => super::ftp_client::ls(args).await,
        FtpCmd::Get(args) => super::ftp_client::get(args).await,
        FtpCmd::Put(args) => super::ftp_client::put(args).await,
    }
}

async fn serve(args: ServeArgs, ctx: &Context) -> anyhow::Result<()> {
    let mut config: FtpConfig = ctx.section("ftp")?;
    args.options.apply(&mut config);
    if config.tls && config.ca_dir.is_none() {
        config.ca_dir = std::env::var_os("APPNET_CA_DIR").map(PathBuf::from);
    }
    let listen = config.listen;
    let root = config.root.clone();
    let anonymous = config.anonymous_enabled();
    let write = config.write;
    let server = FtpServer::bind(config)
        .await
        .with_context(|| format!("cannot serve {} on {listen}", root.display()))?;
    let who = match anonymous {
        true => "anonymous logins on",
        false => "named users only",
    };
    let mode = if write { "read-write" } else { "read-only" };
    println!(
        "appnet ftp: serving {} on ftp://{} ({who}, {mode}; Ctrl-C to stop)",
        root.display(),
        server.local_addr()
    );
    if let Some(note) = server.tls_note() {
        println!("{note}");
    }
    let _ = std::io::stdout().flush();
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    server.run(shutdown).await.map_err(|e| anyhow::anyhow!(e))
}

fn user_add(args: UserAddArgs) -> anyhow::Result<()> {
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).context("cannot read the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        appnet_ftp::users::prompt_password(&format!("Password for {}: ", args.name))
            .context("cannot read the password")?
    };
    anyhow::ensure!(!password.is_empty(), "the password is empty");
    let home = match (args.home, args.root) {
        (Some(h), _) | (None, Some(h)) => h,
        (None, None) => std::env::current_dir().context("cannot find the current directory")?,
    };
    let home = std::path::absolute(&home).with_context(|| format!("{}", home.display()))?;
    if !home.is_dir() {
        eprintln!(
            "appnet ftp: note: {} does not exist yet; create it before the user logs in",
            home.display()
        );
    }
    appnet_ftp::users::add_user(&args.users, &args.name, &password, &home)?;
    println!("appnet ftp: {} added to {} (home {})", args.name, args.users.display(), home.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_config_and_absent_flags_keep_it() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            options: FtpOptions,
        }
        let mut config = FtpConfig { max_sessions: 7, ..FtpConfig::default() };
        let cli = Cli::try_parse_from([
            "ftp",
            "--max-upload",
            "10MiB",
            "--passive-ports",
            "30000-30010",
            "--write",
        ])
        .unwrap();
        cli.options.apply(&mut config);
        assert_eq!(
            (config.max_upload, config.passive_ports, config.write, config.max_sessions),
            (10 << 20, Some((30000, 30010)), true, 7)
        );
        let before = format!("{config:?}");
        FtpOptions::default().apply(&mut config);
        assert_eq!(format!("{config:?}"), before);
        assert!(Cli::try_parse_from(["ftp", "--passive-ports", "9-1"]).is_err());
    }
}
