//! `appnet mail serve|user|queue|send`: the mail server (SMTP, submission, the queue), its
//! users and queue, and the sending user agent.

use super::set;
use crate::context::Context;
use anyhow::{Context as _, bail};
use appnet_mail::MailConfig;
use appnet_mail::queue::Spool;
use appnet_mail::send::{Draft, Route, content_type_for};
use appnet_mail::smtp::client::{ClientOptions, Outcome};
use appnet_mail::{MailServer, add_user};
use appnet_netkit::{Service, Shutdown};
use clap::{Args, Subcommand};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Mail: a server for your domains (SMTP, submission, the outbound queue) and a client.
#[derive(Subcommand, Debug)]
#[command(after_help = "Try it:\n  \
    appnet mail user add bob@hamburger.edu --root /tmp/m      prints a generated password\n  \
    appnet mail serve --domain hamburger.edu --root /tmp/m --allow-plain-auth &\n  \
    echo hi | appnet mail send --from bob@hamburger.edu --to bob@hamburger.edu --subject test \\\n      \
    --server 127.0.0.1:2587 --user bob@hamburger.edu --password-file pw.txt --trace")]
pub enum MailCmd {
    /// Serve: SMTP for your domains, submission for your users, and the queue that delivers
    /// their mail to other domains' MX hosts.
    #[command(after_help = "Examples:\n  \
        appnet mail serve --domain hamburger.edu --root /var/mail/appnet\n  \
        appnet mail serve --domain crepes.fr --root DIR --resolver 127.0.4.1:10053 --remote-smtp-port 2525\n  \
        appnet mail serve --domain example.org --root DIR --tls --relay-net 10.0.0.0/8")]
    Serve(Box<ServeArgs>),
    /// Users of the server (DIR/users, a Dovecot passwd-file).
    #[command(subcommand)]
    User(UserCmd),
    /// List the outbound queue (one line per message with its recipients), or flush it.
    Queue(QueueArgs),
    /// Send a message (body on stdin) through a submission server, or directly to the MX.
    #[command(after_help = "Examples:\n  \
        echo 'Do you like ketchup?' | appnet mail send --from alice@crepes.fr --to bob@hamburger.edu \\\n      \
        --subject Hi --server 127.0.10.13:2587 --user alice@crepes.fr --password-file pw --trace\n  \
        appnet mail send --direct --resolver 127.0.4.1:10053 --remote-smtp-port 2525 --from a@b.c --to bob@hamburger.edu < body.txt")]
    Send(Box<SendArgs>),
    /// Read a mailbox over POP3 or IMAP: list it, or print one message (password on stdin).
    #[command(after_help = "Examples:\n  \
        echo PASSWORD | appnet mail fetch --pop3 127.0.0.1:2110 --user bob@hamburger.edu --password-stdin --list\n  \
        echo PASSWORD | appnet mail fetch --imap 127.0.0.1:2143 --user bob@hamburger.edu --password-stdin --get 1")]
    Fetch(super::mail_fetch::FetchArgs),
}

/// Flags for `mail serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    options: MailOptions,
}

/// The service flags of `mail serve`; each overrides the `[mail]` table of --config.
#[derive(Args, Debug, Default)]
pub struct MailOptions {
    /// A domain this server receives mail for (repeat for several).
    #[arg(long = "domain", value_name = "DOMAIN")]
    domains: Vec<String>,
    /// Data directory: users, mail/<domain>/<user>/ (Maildir++), queue/.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// The server's own name in greetings and Received: [default: mail.<first domain>].
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,
    /// SMTP listening address, or "off" [default: 127.0.0.1:2525].
    #[arg(long, value_name = "ADDR|off", value_parser = parse_listen)]
    smtp: Option<Listen>,
    /// Submission listening address, or "off" [default: 127.0.0.1:2587].
    #[arg(long, value_name = "ADDR|off", value_parser = parse_listen)]
    submission: Option<Listen>,
    /// POP3 listening address, or "off" [default: 127.0.0.1:2110].
    #[arg(long, value_name = "ADDR|off", value_parser = parse_listen)]
    pop3: Option<Listen>,
    /// IMAP listening address, or "off" [default: 127.0.0.1:2143].
    #[arg(long, value_name = "ADDR|off", value_parser = parse_listen)]
    imap: Option<Listen>,
    /// POP3 autologout after this many idle seconds [default: 600].
    #[arg(long, value_name = "SECS")]
    pop3_idle_timeout: Option<u64>,
    /// IMAP autologout after this many idle seconds, IDLE included [default: 1800].
    #[arg(long, value_name = "SECS")]
    imap_idle_timeout: Option<u64>,
    /// Failed POP3/IMAP logins from one address before it is locked out [default: 10].
    #[arg(long, value_name = "N")]
    login_lockout_failures: Option<u32>,
    /// Seconds an address stays locked out after its last failed login [default: 300].
    #[arg(long, value_name = "SECS")]
    login_lockout: Option<u64>,
    /// Most IMAP sessions one user may hold at once [default: 10].
    #[arg(long, value_name = "N")]
    max_imap_sessions_per_user: Option<usize>,
    /// DNS resolver for MX lookups [default: the first nameserver of /etc/resolv.conf].
    #[arg(long, value_name = "ADDR")]
    resolver: Option<SocketAddr>,
    /// Port of remote mail exchangers (MX records carry none) [default: 25].
    #[arg(long, value_name = "PORT")]
    remote_smtp_port: Option<u16>,
    /// Local address the queue's outgoing connections leave from [default: the system's choice].
    #[arg(long, value_name = "IP")]
    source_address: Option<std::net::IpAddr>,
    /// Never use STARTTLS towards remote servers (by default the queue uses it when offered).
    #[arg(long)]
    no_outbound_tls: bool,
    /// A client network (CIDR) allowed to relay without AUTH (repeat) [default: none].
    #[arg(long = "relay-net", value_name = "CIDR")]
    relay_nets: Vec<String>,
    /// Offer STARTTLS (certificate from --tls-cert/--tls-key, else minted by the lab CA).
    #[arg(long)]
    tls: bool,
    /// PEM certificate chain for STARTTLS.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for STARTTLS.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Lab CA directory [default: $APPNET_CA_DIR or ~/.local/share/appnet/lab-ca].
    #[arg(long, value_name = "DIR")]
    ca_dir: Option<PathBuf>,
    /// Allow AUTH without TLS (the lab uses it).
    #[arg(long)]
    allow_plain_auth: bool,
    /// Largest message, e.g. 25MiB [default: 25MiB].
    #[arg(long, value_name = "SIZE", value_parser = appnet_netkit::units::parse_size_usize)]
    max_message_size: Option<usize>,
    /// Most recipients per message [default: 100].
    #[arg(long, value_name = "N")]
    max_recipients: Option<usize>,
    /// Longest command or text line without CRLF [default: 998].
    #[arg(long, value_name = "BYTES")]
    max_line: Option<usize>,
    /// Bad commands before a session is disconnected [default: 10].
    #[arg(long, value_name = "N")]
    max_errors: Option<u32>,
    /// Failed AUTHs before a session is disconnected [default: 3].
    #[arg(long, value_name = "N")]
    max_auth_failures: Option<u32>,
    /// Seconds each failed AUTH is answered late [default: 2].
    #[arg(long, value_name = "SECS")]
    auth_failure_delay: Option<u64>,
    /// Seconds a client has for its next command [default: 300].
    #[arg(long, value_name = "SECS")]
    command_timeout: Option<u64>,
    /// Seconds a client has for each line of message data [default: 180].
    #[arg(long, value_name = "SECS")]
    data_timeout: Option<u64>,
    /// Seconds a new connection has for its first command [default: 60].
    #[arg(long, value_name = "SECS")]
    greeting_timeout: Option<u64>,
    /// Most connections per listener [default: 512].
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Most connections from one address per listener [default: 16].
    #[arg(long, value_name = "N")]
    max_per_ip: Option<usize>,
    /// Seconds a queued message is retried before it bounces [default: 432000 = 5 days].
    #[arg(long, value_name = "SECS")]
    queue_lifetime: Option<u64>,
    /// Seconds before the first retry, doubled each time [default: 60].
    #[arg(long, value_name = "SECS")]
    retry_initial: Option<u64>,
    /// Longest wait between retries, seconds [default: 3600].
    #[arg(long, value_name = "SECS")]
    retry_max: Option<u64>,
    /// Messages the queue delivers at once [default: 16].
    #[arg(long, value_name = "N")]
    queue_concurrency: Option<usize>,
    /// Seconds to wait for each reply of a remote server [default: 300].
    #[arg(long, value_name = "SECS")]
    remote_timeout: Option<u64>,
}

/// A listening address or "off".
#[derive(Debug, Clone, Copy)]
pub struct Listen(Option<SocketAddr>);

fn parse_listen(s: &str) -> Result<Listen, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(Listen(None));
    }
    s.parse().map(|a| Listen(Some(a))).map_err(|_| format!("{s:?} is not ADDR:PORT or off"))
}

impl MailOptions {
    /// Puts the flags given over `config` (the `[mail]` table); absent flags keep its values.
    pub fn apply(self, config: &mut MailConfig) {
        if !self.domains.is_empty() {
            config.domains = self.domains;
        }
        set(&mut config.root, self.root);
        set(&mut config.hostname, self.hostname.map(Some));
        set(&mut config.smtp, self.smtp.map(|l| l.0));
        set(&mut config.submission, self.submission.map(|l| l.0));
        set(&mut config.pop3, self.pop3.map(|l| l.0));
        set(&mut config.imap, self.imap.map(|l| l.0));
        set(&mut config.pop3_idle_timeout_secs, self.pop3_idle_timeout);
        set(&mut config.imap_idle_timeout_secs, self.imap_idle_timeout);
        set(&mut config.login_lockout_failures, self.login_lockout_failures);
        set(&mut config.login_lockout_secs, self.login_lockout);
        set(&mut config.max_imap_sessions_per_user, self.max_imap_sessions_per_user);
        set(&mut config.resolver, self.resolver.map(Some));
        set(&mut config.remote_smtp_port, self.remote_smtp_port);
        set(&mut config.source_address, self.source_address.map(Some));
        config.outbound_tls &= !self.no_outbound_tls;
        if !self.relay_nets.is_empty() {
            config.relay_nets = self.relay_nets;
        }
        config.tls |= self.tls;
        set(&mut config.tls_cert, self.tls_cert.map(Some));
        set(&mut config.tls_key, self.tls_key.map(Some));
        set(&mut config.ca_dir, self.ca_dir.map(Some));
        config.allow_plain_auth |= self.allow_plain_auth;
        set(&mut config.max_message_size, self.max_message_size);
        set(&mut config.max_recipients, self.max_recipients);
        set(&mut config.max_line, self.max_line);
        set(&mut config.max_errors, self.max_errors);
        set(&mut config.max_auth_failures, self.max_auth_failures);
        set(&mut config.auth_failure_delay_secs, self.auth_failure_delay);
        set(&mut config.command_timeout_secs, self.command_timeout);
        set(&mut config.data_timeout_secs, self.data_timeout);
        set(&mut config.greeting_timeout_secs, self.greeting_timeout);
        set(&mut config.max_connections, self.max_connections);
        set(&mut config.max_per_ip, self.max_per_ip);
        set(&mut config.queue_lifetime_secs, self.queue_lifetime);
        set(&mut config.retry_initial_secs, self.retry_initial);
        set(&mut config.retry_max_secs, self.retry_max);
        set(&mut config.queue_concurrency, self.queue_concurrency);
        set(&mut config.remote_timeout_secs, self.remote_timeout);
    }
}

/// `mail user ...`.
#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Add a user (or change the password of one), creating the Maildir.
    #[command(after_help = "Examples:\n  \
        appnet mail user add bob@hamburger.edu --root DIR                  generates and prints a password\n  \
        printf 'secret\\n' | appnet mail user add bob@hamburger.edu --root DIR --password-stdin")]
    Add(UserAddArgs),
}

/// Flags for `mail user add`.
#[derive(Args, Debug)]
pub struct UserAddArgs {
    /// The address, user@domain (POP3, IMAP and AUTH log in with it).
    address: String,
    /// Data directory.
    #[arg(long, value_name = "DIR")]
    root: PathBuf,
    /// Read the password from one line of stdin (the newline is not part of it); without
    /// this flag a random password is generated and printed.
    #[arg(long)]
    password_stdin: bool,
}

/// Flags for `mail queue`.
#[derive(Args, Debug)]
pub struct QueueArgs {
    /// Data directory.
    #[arg(long, value_name = "DIR")]
    root: PathBuf,
    /// Ask the running server to retry every queued message now.
    #[arg(long)]
    flush: bool,
}

/// Flags for `mail send`.
#[derive(Args, Debug)]
pub struct SendArgs {
    /// The author (From: and the envelope sender).
    #[arg(long, value_name = "ADDR")]
    from: String,
    /// A recipient (repeat for several).
    #[arg(long, value_name = "ADDR", required = true)]
    to: Vec<String>,
    /// A Cc recipient (repeat for several).
    #[arg(long, value_name = "ADDR")]
    cc: Vec<String>,
    /// The subject.
    #[arg(long, default_value = "")]
    subject: String,
    /// The submission server.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:2587", conflicts_with = "direct")]
    server: SocketAddr,
    /// Log in as this user (AUTH PLAIN); needs --password-file.
    #[arg(long, value_name = "USER", requires = "password_file")]
    user: Option<String>,
    /// File whose first line is the password.
    #[arg(long, value_name = "FILE", requires = "user")]
    password_file: Option<PathBuf>,
    /// Attach a file (repeat for several).
    #[arg(long, value_name = "FILE")]
    attach: Vec<PathBuf>,
    /// Deliver straight to each recipient domain's MX hosts (no submission server).
    #[arg(long, requires = "resolver")]
    direct: bool,
    /// DNS resolver for --direct.
    #[arg(long, value_name = "ADDR")]
    resolver: Option<SocketAddr>,
    /// SMTP port of the MX hosts for --direct.
    #[arg(long, value_name = "PORT", default_value_t = 25)]
    remote_smtp_port: u16,
    /// Use STARTTLS (trusting the lab CA and --cacert); fail if the server does not offer it.
    #[arg(long)]
    starttls: bool,
    /// Extra CA certificate file (PEM) to trust for STARTTLS.
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// Name sent with EHLO [default: the sender's domain].
    #[arg(long, value_name = "NAME")]
    helo: Option<String>,
    /// Print the SMTP dialogue: lines sent start with "C: ", lines received with "S: ".
    #[arg(long)]
    trace: bool,
    /// Seconds to wait for each reply.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    timeout: u64,
}

/// Runs a `mail` subcommand.
pub async fn run(cmd: MailCmd, ctx: &Context) -> anyhow::Result<()> {
    match cmd {
        MailCmd::Serve(args) => serve(*args, ctx).await,
        MailCmd::User(UserCmd::Add(args)) => user_add(args),
        MailCmd::Queue(args) => queue(args),
        MailCmd::Send(args) => send(*args).await,
        MailCmd::Fetch(args) => super::mail_fetch::fetch(args).await,
    }
}

async fn serve(args: ServeArgs, ctx: &Context) -> anyhow::Result<()> {
    let mut config: MailConfig = ctx.section("mail")?;
    args.options.apply(&mut config);
    let server = MailServer::bind(config).await?;
    let c = server.config();
    let show = |a: Option<SocketAddr>| a.map_or("off".to_string(), |a| a.to_string());
    println!(
        "appnet mail: {} for {} — SMTP {}, submission {}, POP3 {}, IMAP {}; data in {} (Ctrl-C to stop)",
        c.hostname(),
        c.domains.join(", "),
        show(server.smtp_addr()),
        show(server.submission_addr()),
        show(server.pop3_addr()),
        show(server.imap_addr()),
        c.root.display()
    );
    if let Some(note) = server.tls_note() {
        println!("appnet mail: STARTTLS {note}");
    }
    let _ = std::io::stdout().flush();
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    server.run(shutdown).await.map_err(|e| anyhow::anyhow!(e))
}

fn user_add(args: UserAddArgs) -> anyhow::Result<()> {
    let (password, generated) = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).context("cannot read the password from stdin")?;
        let p = line.strip_suffix('\n').unwrap_or(&line);
        let p = p.strip_suffix('\r').unwrap_or(p).to_string();
        if p.is_empty() {
            bail!("empty password on stdin");
        }
        (p, false)
    } else {
        const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        let mut bytes = [0u8; 16];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .context("cannot read /dev/urandom for a password")?;
        let p: String = bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect();
        (p, true)
    };
    add_user(&args.root, &args.address, &password)?;
    if generated {
        println!("{}: password {password}", args.address);
    } else {
        println!("{}: password set", args.address);
    }
    Ok(())
}

fn queue(args: QueueArgs) -> anyhow::Result<()> {
    if !args.root.is_dir() {
        bail!(
            "{} is not a mail data directory (give the --root of `appnet mail serve`)",
            args.root.display()
        );
    }
    let spool = Spool::open(&args.root)
        .with_context(|| format!("cannot open {}", args.root.join("queue").display()))?;
    let list = spool.list()?;
    let mut out = std::io::stdout().lock();
    if list.is_empty() {
        writeln!(out, "queue is empty")?;
    }
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    for e in &list {
        let size = spool.message(&e.id).map(|m| m.len()).unwrap_or(0);
        let from = if e.from.is_empty() { "<>".to_string() } else { e.from.clone() };
        let next = e.next_attempt.saturating_sub(now);
        let error = if e.last_error.is_empty() { String::new() } else { format!("  ({})", e.last_error) };
        writeln!(
            out,
            "{}  {size} bytes  attempts {}  next in {next}s  {from} -> {}{error}",
            e.id,
            e.attempts,
            e.rcpts.join(", ")
        )?;
    }
    if args.flush {
        spool.request_flush()?;
        writeln!(
            out,
            "flush requested: a running `appnet mail serve --root {}` retries every message within a second",
            args.root.display()
        )?;
    }
    Ok(())
}

async fn send(args: SendArgs) -> anyhow::Result<()> {
    let mut body = String::new();
    std::io::stdin().read_to_string(&mut body).context("cannot read the message body from stdin")?;
    let mut attachments = Vec::new();
    for path in &args.attach {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let name =
            path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "attachment".into());
        attachments.push((name.clone(), content_type_for(&name).to_string(), bytes));
    }
    let draft = Draft {
        from: args.from.clone(),
        to: args.to.clone(),
        cc: args.cc.clone(),
        subject: args.subject.clone(),
        body,
        attachments,
    };
    let data = draft.build().context("cannot build the message")?;
    let auth = match (&args.user, &args.password_file) {
        (Some(u), Some(f)) => {
            let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
            let pw = text.lines().next().unwrap_or_default().to_string();
            Some((u.clone(), pw))
        }
        _ => None,
    };
    let tls = if args.starttls {
        let trust = appnet_netkit::tls_client::Trust {
            system: true,
            lab_ca_dir: Some(appnet_netkit::tls::LabCa::default_dir()),
            extra: args.cacert.iter().cloned().collect(),
        };
        let config = appnet_netkit::tls_client::client_config(&trust, &[])?;
        let name = match args.server.ip() {
            ip if !args.direct => ip.to_string(),
            _ => "localhost".to_string(),
        };
        Some((config, name))
    } else {
        None
    };
    let helo = args
        .helo
        .clone()
        .unwrap_or_else(|| args.from.rsplit_once('@').map_or("localhost".into(), |(_, d)| d.to_string()));
    let trace = args.trace;
    let timeout = Duration::from_secs(args.timeout.max(1));
    let mut make_opts = || {
        let mut o = ClientOptions::new(helo.clone());
        o.timeout = timeout;
        o.data_timeout = timeout * 2;
        o.auth = auth.clone();
        o.tls = tls.clone();
        o.require_tls = tls.is_some();
        if trace {
            o.trace = Some(Box::new(|line: &str| println!("{line}")));
        }
        o
    };
    let route = match (args.direct, args.resolver) {
        (true, Some(resolver)) => Route::Direct { resolver, port: args.remote_smtp_port },
        _ => Route::Server(args.server),
    };
    let results =
        appnet_mail::send::send(route, &mut make_opts, &args.from, &draft.recipients(), &data).await?;
    let mut failed = 0;
    for (rcpt, outcome) in &results {
        match outcome {
            Outcome::Delivered(reply) => println!("{rcpt}: accepted ({reply})"),
            Outcome::Temporary(why) => {
                failed += 1;
                println!("{rcpt}: deferred, try again later ({why})")
            }
            Outcome::Permanent(why) => {
                failed += 1;
                println!("{rcpt}: rejected ({why})")
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} recipients not accepted", results.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        options: MailOptions,
    }

    #[test]
    fn flags_override_the_config_and_absent_flags_keep_it() {
        let mut config =
            MailConfig { max_recipients: 7, domains: vec!["a.example".into()], ..MailConfig::default() };
        let cli = Cli::try_parse_from([
            "serve",
            "--domain",
            "crepes.fr",
            "--max-message-size",
            "10MiB",
            "--smtp",
            "off",
            "--relay-net",
            "10.0.0.0/8",
        ])
        .unwrap();
        cli.options.apply(&mut config);
        assert_eq!(config.domains, vec!["crepes.fr".to_string()]);
        assert_eq!(config.max_message_size, 10 << 20);
        assert_eq!(config.smtp, None);
        assert_eq!(config.max_recipients, 7);
        assert_eq!(config.relay_nets, vec!["10.0.0.0/8".to_string()]);
        let before = format!("{config:?}");
        MailOptions::default().apply(&mut config);
        assert_eq!(format!("{config:?}"), before);
        assert!(Cli::try_parse_from(["serve", "--smtp", "nowhere"]).is_err());
    }
}
