//! `appnet skype supernode|peer|call|message`: a Skype-style overlay. A supernode holds the
//! user directory; a peer registers its candidates there and listens for commands on a Unix
//! control socket; `call` and `message` talk to the running peer through that socket.

use super::set;
use crate::context::Context;
use anyhow::Context as _;
use appnet_nat::config::SupernodeConfig;
use appnet_nat::skype::Supernode;
use appnet_nat::skype::peer::{Command, Peer, PeerConfig};
use appnet_netkit::{Service, Shutdown};
use clap::{Args, Subcommand};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Supernodes, peers, calls and messages.
#[derive(Subcommand, Debug)]
pub enum SkypeCmd {
    /// Run a supernode: the user directory (name → candidates, online status) and the
    /// offer/answer relay between peers.
    #[command(after_help = "Example:\n  appnet skype supernode --listen 127.0.0.1:33033")]
    Supernode(SupernodeArgs),
    /// Run a peer: register USER at a supernode with host, server-reflexive (STUN) and relayed
    /// (TURN) candidates, print received messages as `<from>: TEXT`, obey `call`/`message`.
    #[command(after_help = "Examples:\n  \
        echo secret | appnet skype peer --user alice --supernode 127.0.0.1:33033 --password-stdin\n  \
        echo secret | appnet skype peer --user alice --supernode 198.51.100.1:33033 \\\n      \
        --turn 198.51.100.1:3478 --turn-user alice --password-stdin")]
    Peer(PeerArgs),
    /// Call USER through the running peer: a voice-like stream (50 packets/s of 160 bytes), then
    /// the loss and delay.
    Call(CallArgs),
    /// Send USER a text message through the running peer.
    Message(MessageArgs),
}

/// Flags for `skype supernode`.
#[derive(Args, Debug)]
pub struct SupernodeArgs {
    /// UDP address of the SN protocol [default: 127.0.0.1:33033].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Seconds a registration keeps a user online without a refresh [default: 120].
    #[arg(long, value_name = "SECS")]
    entry_lifetime: Option<u64>,
    /// Most names one source IP may bind [default: 8].
    #[arg(long, value_name = "N")]
    names_per_ip: Option<usize>,
    /// Unauthenticated answers per second per source IP [default: 20].
    #[arg(long, value_name = "N")]
    requests_per_sec: Option<u32>,
    /// Another SN to join (repeatable); needs --overlay-secret-file.
    #[arg(long, value_name = "ADDR")]
    join: Vec<SocketAddr>,
    /// File with the overlay's shared secret (16+ bytes): SN-SN messages carry an HMAC under
    /// it; without it the SN refuses them and works alone.
    #[arg(long, value_name = "FILE")]
    overlay_secret_file: Option<PathBuf>,
    /// A peer asking to be promoted must have been registered this long from one public
    /// address [default: 300].
    #[arg(long, value_name = "SECS")]
    promote_min_uptime: Option<u64>,
    /// Promote peers while the overlay has fewer live SNs than this; 0 never [default: 8].
    #[arg(long, value_name = "N")]
    target_supernodes: Option<usize>,
}

/// Flags for `skype peer`.
#[derive(Args, Debug)]
pub struct PeerArgs {
    /// The user name (a-z 0-9 . _ -); the first registration binds it to the password.
    #[arg(long)]
    user: String,
    /// The supernode to register at, IP:PORT; give it several times for SNs to fail over to
    /// (the SNs also tell the peer about the overlay's other SNs).
    #[arg(long, value_name = "ADDR", required = true)]
    supernode: Vec<SocketAddr>,
    /// Read the password (first line of stdin): directory entry and TURN.
    #[arg(long)]
    password_stdin: bool,
    /// TURN server for a relayed candidate (appnet turn serve, or coturn).
    #[arg(long, value_name = "ADDR")]
    turn: Option<SocketAddr>,
    /// TURN user name [default: --user].
    #[arg(long, value_name = "U")]
    turn_user: Option<String>,
    /// STUN server for the server-reflexive candidate [default: --turn].
    #[arg(long, value_name = "ADDR")]
    stun: Option<SocketAddr>,
    /// Local UDP address [default: 0.0.0.0:0].
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:0")]
    listen: SocketAddr,
    /// Control socket [default: $XDG_RUNTIME_DIR/appnet-skype-USER.sock].
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// Offer to serve as a supernode too, asking this many seconds after start (the SN
    /// promotes a public, reachable, long-lived peer while the overlay wants more SNs).
    #[arg(long, value_name = "SECS")]
    promote_after: Option<u64>,
    /// The SN port for --promote-after (it must be reachable unsolicited) [default: the
    /// host address, a free port].
    #[arg(long, value_name = "ADDR", requires = "promote_after")]
    sn_listen: Option<SocketAddr>,
}

/// Which running peer a command goes to.
#[derive(Args, Debug)]
pub struct Target {
    /// The local user whose peer runs [default: the only control socket found].
    #[arg(long = "as", value_name = "USER")]
    local: Option<String>,
    /// The peer's control socket (as given to `skype peer --control`).
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
}

/// Flags for `skype call`.
#[derive(Args, Debug)]
pub struct CallArgs {
    /// Who to call.
    user: String,
    /// Seconds of voice.
    #[arg(long, default_value_t = 5)]
    secs: u32,
    #[command(flatten)]
    target: Target,
}

/// Flags for `skype message`.
#[derive(Args, Debug)]
pub struct MessageArgs {
    /// Who to write to.
    user: String,
    /// The text (words are joined with spaces).
    #[arg(required = true)]
    text: Vec<String>,
    #[command(flatten)]
    target: Target,
}

fn runtime_dir() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir)
}

fn control_path(user: &str) -> PathBuf {
    runtime_dir().join(format!("appnet-skype-{user}.sock"))
}

/// Runs a `skype` subcommand.
pub async fn run(cmd: SkypeCmd, ctx: &Context) -> anyhow::Result<()> {
    match cmd {
        SkypeCmd::Supernode(args) => supernode(args, ctx).await,
        SkypeCmd::Peer(args) => peer(args).await,
        SkypeCmd::Call(args) => {
            anyhow::ensure!((1..=3600).contains(&args.secs), "--secs must be 1..3600");
            control(&args.target, &format!("call {} {}", args.user, args.secs)).await
        }
        SkypeCmd::Message(args) => {
            let text = args.text.join(" ");
            anyhow::ensure!(!text.contains('\n'), "a message is one line");
            control(&args.target, &format!("message {} {text}", args.user)).await
        }
    }
}

async fn supernode(args: SupernodeArgs, ctx: &Context) -> anyhow::Result<()> {
    let mut config: SupernodeConfig = ctx.section("skype")?;
    set(&mut config.listen, args.listen);
    set(&mut config.entry_lifetime_secs, args.entry_lifetime);
    set(&mut config.names_per_ip, args.names_per_ip);
    set(&mut config.requests_per_sec, args.requests_per_sec);
    set(&mut config.promote_min_uptime_secs, args.promote_min_uptime);
    set(&mut config.target_supernodes, args.target_supernodes);
    if !args.join.is_empty() {
        config.join = args.join;
    }
    if args.overlay_secret_file.is_some() {
        config.overlay_secret_file = args.overlay_secret_file;
    }
    anyhow::ensure!(
        config.join.is_empty() || config.overlay_secret_file.is_some(),
        "--join needs --overlay-secret-file (SN-SN messages are authenticated)"
    );
    anyhow::ensure!(
        config.overlay_secret_file.is_none() || !config.listen.ip().is_unspecified(),
        "an SN of an overlay must --listen on the address the other SNs reach it at, not {}",
        config.listen
    );
    let listen = config.listen;
    let sn = Supernode::bind(config).await.with_context(|| format!("cannot listen on {listen}"))?;
    println!("appnet skype: supernode on udp {} (Ctrl-C to stop)", sn.local_addr());
    let _ = std::io::stdout().flush();
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    sn.run(shutdown).await.map_err(|e| anyhow::anyhow!(e))
}

async fn peer(args: PeerArgs) -> anyhow::Result<()> {
    anyhow::ensure!(appnet_nat::skype::wire::valid_user(&args.user), "--user must be 1-64 of a-z 0-9 . _ -");
    anyhow::ensure!(
        args.password_stdin,
        "--password-stdin is required (the password authenticates your name)"
    );
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    anyhow::ensure!(!password.is_empty(), "empty password on stdin");
    let path = args.control.clone().unwrap_or_else(|| control_path(&args.user));
    let turn =
        args.turn.map(|a| (a, args.turn_user.clone().unwrap_or_else(|| args.user.clone()), password.clone()));
    let first = args.supernode[0];
    let cfg = PeerConfig {
        user: args.user.clone(),
        password,
        supernode: first,
        fallback: args.supernode[1..].to_vec(),
        listen: args.listen,
        stun: args.stun,
        turn,
        promote: args.promote_after.map(|secs| appnet_nat::skype::peer::PromoteConfig {
            after: std::time::Duration::from_secs(secs),
            listen: args.sn_listen.unwrap_or_else(|| SocketAddr::new(args.listen.ip(), 0)),
        }),
    };
    let peer = Peer::start(cfg).await.with_context(|| format!("registering {} at {first}", args.user))?;
    let listener = bind_control(&path)?;
    let list: Vec<String> = peer.candidates().iter().map(|c| format!("{:?} {}", c.kind, c.addr)).collect();
    if let Some(sn) = peer.sn_port() {
        println!(
            "appnet skype: SN port {sn} answers probes; asking for promotion in {}s",
            args.promote_after.unwrap_or(0)
        );
    }
    println!(
        "appnet skype: {} registered at {} with {}; control socket {}",
        args.user,
        *peer.attached().borrow(),
        list.join(", "),
        path.display()
    );
    let _ = std::io::stdout().flush();
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let (line_tx, mut line_rx) = mpsc::unbounded_channel();
    let printer = tokio::spawn(async move {
        while let Some(l) = line_rx.recv().await {
            println!("{l}");
            let _ = std::io::stdout().flush();
        }
    });
    let serve = tokio::spawn(serve_control(listener, cmd_tx, shutdown.clone()));
    peer.run(cmd_rx, line_tx, shutdown).await;
    serve.abort();
    let _ = printer.await;
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// Binds the control socket, owner-only; a stale file nobody listens on is replaced.
fn bind_control(path: &Path) -> anyhow::Result<UnixListener> {
    if path.exists() {
        anyhow::ensure!(
            std::os::unix::net::UnixStream::connect(path).is_err(),
            "{} is in use: another peer of this user runs (or give --control PATH)",
            path.display()
        );
        std::fs::remove_file(path).with_context(|| format!("removing the stale {}", path.display()))?;
    }
    let listener = UnixListener::bind(path).with_context(|| format!("cannot bind {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// One command line per connection, answered with one line; at most 16 connections at once,
/// 5 s to send the command, 4 KiB per line.
async fn serve_control(
    listener: UnixListener,
    commands: mpsc::Sender<(Command, oneshot::Sender<String>)>,
    shutdown: Shutdown,
) {
    let slots = std::sync::Arc::new(Semaphore::new(16));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait() => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else { continue };
        let Ok(permit) = slots.clone().try_acquire_owned() else { continue };
        let commands = commands.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let (r, mut w) = stream.into_split();
            let mut line = String::new();
            let mut reader = BufReader::new(r.take(4096));
            let read = reader.read_line(&mut line);
            let answer = match tokio::time::timeout(Duration::from_secs(5), read).await {
                Ok(Ok(_)) => match parse(line.trim_end()) {
                    Ok(cmd) => {
                        let (tx, rx) = oneshot::channel();
                        if commands.send((cmd, tx)).await.is_err() {
                            "error: the peer is stopping".to_string()
                        } else {
                            rx.await.unwrap_or_else(|_| "error: the peer dropped the command".into())
                        }
                    }
                    Err(e) => format!("error: {e}"),
                },
                _ => "error: no command line within 5 s".into(),
            };
            let _ = w.write_all(format!("{answer}\n").as_bytes()).await;
        });
    }
}

fn parse(line: &str) -> Result<Command, String> {
    let mut parts = line.splitn(3, ' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("message"), Some(to), Some(text)) if !text.is_empty() => {
            Ok(Command::Message { to: to.into(), text: text.into() })
        }
        (Some("call"), Some(to), Some(secs)) => match secs.parse::<u32>() {
            Ok(s) if (1..=3600).contains(&s) => Ok(Command::Call { to: to.into(), secs: s }),
            _ => Err("call USER SECS (1..3600)".into()),
        },
        _ => Err("expected `message USER TEXT` or `call USER SECS`".into()),
    }
}

async fn control(target: &Target, line: &str) -> anyhow::Result<()> {
    let path = match (&target.control, &target.local) {
        (Some(p), _) => p.clone(),
        (None, Some(u)) => control_path(u),
        (None, None) => {
            let dir = runtime_dir();
            let found: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map(|rd| {
                    rd.filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| {
                            p.file_name()
                                .and_then(|n| n.to_str())
                                .is_some_and(|n| n.starts_with("appnet-skype-") && n.ends_with(".sock"))
                        })
                        .collect()
                })
                .unwrap_or_default();
            match found.as_slice() {
                [one] => one.clone(),
                [] => anyhow::bail!(
                    "no running peer in {} (start `appnet skype peer`, or give --control PATH)",
                    dir.display()
                ),
                _ => anyhow::bail!(
                    "several peers run in {}: say which with --as USER or --control PATH",
                    dir.display()
                ),
            }
        }
    };
    let stream = UnixStream::connect(&path).await.with_context(|| {
        format!("no peer listens on {} (is `appnet skype peer` running?)", path.display())
    })?;
    let (r, mut w) = stream.into_split();
    w.write_all(format!("{line}\n").as_bytes()).await?;
    let mut answer = String::new();
    BufReader::new(r.take(64 * 1024)).read_line(&mut answer).await?;
    let answer = answer.trim_end();
    if let Some(e) = answer.strip_prefix("error: ") {
        anyhow::bail!("{e}");
    }
    anyhow::ensure!(!answer.is_empty(), "the peer closed the control socket without an answer");
    println!("{answer}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_lines_parse_into_commands_and_junk_is_refused() {
        match parse("message bob hello there") {
            Ok(Command::Message { to, text }) => {
                assert_eq!((to.as_str(), text.as_str()), ("bob", "hello there"))
            }
            other => panic!("{other:?}"),
        }
        match parse("call bob 5") {
            Ok(Command::Call { to, secs }) => assert_eq!((to.as_str(), secs), ("bob", 5)),
            other => panic!("{other:?}"),
        }
        for bad in
            ["", "message bob", "message bob ", "call bob", "call bob 0", "call bob 99999", "dial bob 3"]
        {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
