//! NATs in Linux network namespaces (`appnet lab --nat`, root only) and tour scene 16, "a call
//! relayed through NATs". A public namespace holds the supernode (the Skype-style directory)
//! and appnet's TURN server; Alice sits behind an endpoint-independent NAT (nftables
//! `masquerade`), Bob behind a symmetric one (`masquerade random`), Carol behind another
//! endpoint-independent one. Each NAT router drops unsolicited inbound packets, as home routers
//! do. Alice's call to Bob cannot punch through the symmetric NAT and goes through the relay;
//! her call to Carol punches a direct hole.
//!
//! Addresses come from 100.64.0.0/10 and exist only inside the namespaces created here (veth
//! pairs are created straight inside them; the nftables tables live in the routers'
//! namespaces), so the host's interfaces and ruleset are never touched. [`NatNet`] removes
//! everything when dropped (success, failure, Ctrl-C); [`NatNet::create`] first removes the
//! namespaces a killed lab left.

use crate::error::LabError;
use crate::events::{Endpoint, event, tell};
use crate::netns::{is_root, list_namespaces};
use appnet_nat::config::{SupernodeConfig, TurnConfig};
use appnet_nat::skype::Supernode;
use appnet_nat::skype::client as sn;
use appnet_nat::skype::peer::{Command, Peer, PeerConfig, Reply};
use appnet_nat::skype::wire::{Candidate, CandidateKind};
use appnet_nat::turn::server::TurnServer;
use appnet_netkit::{Service, Shutdown};
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

/// This scene's number in the tour.
pub const SCENE: u32 = 16;
/// Its title.
pub const TITLE: &str = "a call relayed through NATs";
/// Prefix of every namespace `--nat` creates.
pub const PREFIX: &str = "appnet-nat";
/// The public namespace (supernode and TURN server).
const PUBLIC: &str = "appnet-nat-pub";
/// The supernode's and the TURN server's address in the public namespace.
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 1);
/// The TURN server's second address (RFC 5780 behaviour discovery: `appnet stun` from a user's
/// namespace tells its NAT's mapping and filtering).
const ALT_IP: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 2);
/// The supernode's UDP port.
const SN_PORT: u16 = 33033;
/// The TURN (and STUN) server's UDP port.
const TURN_PORT: u16 = 3478;
/// How long one call or message may take to find its path.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Seconds of voice in each call.
const CALL_SECS: u32 = 2;

/// One user's site: a NAT router namespace and the user's namespace behind it.
struct Site {
    user: &'static str,
    n: u8,
    /// The nftables masquerade flags: "" (endpoint-independent mapping) or "random" (symmetric).
    mode: &'static str,
    nat: &'static str,
}

const SITES: [Site; 3] = [
    Site { user: "alice", n: 1, mode: "", nat: "endpoint-independent NAT" },
    Site { user: "bob", n: 2, mode: "random", nat: "symmetric NAT" },
    Site { user: "carol", n: 3, mode: "", nat: "endpoint-independent NAT" },
];

fn router_ns(n: u8) -> String {
    format!("{PREFIX}-rtr{n}")
}

fn user_ns(user: &str) -> String {
    format!("{PREFIX}-{user}")
}

/// Every namespace name `--nat` uses (stale ones are removed at start).
pub fn namespace_names() -> Vec<String> {
    let mut names = vec![PUBLIC.to_string()];
    for s in &SITES {
        names.push(router_ns(s.n));
        names.push(user_ns(s.user));
    }
    names
}

/// A running peer: the channel its commands go to, what it registered, and the lines it prints.
struct PeerHandle {
    user: &'static str,
    nat: &'static str,
    candidates: Vec<Candidate>,
    commands: mpsc::Sender<(Command, Reply)>,
    lines: tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>,
    runtime: Handle,
}

/// What the scene needs of the running network (set while a [`NatNet`] exists).
struct Active {
    peers: Vec<PeerHandle>,
}

static ACTIVE: Mutex<Option<Arc<Active>>> = Mutex::new(None);

fn active() -> Option<Arc<Active>> {
    ACTIVE.lock().ok().and_then(|a| a.clone())
}

/// Runs `ip ARGS`, failing with its stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    run_tool("ip", args, None)
}

/// Runs `tool ARGS` with `stdin`, failing with its stderr.
fn run_tool(tool: &str, args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    let what = format!("{tool} {}", args.join(" "));
    let mut child = Process::new(tool)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(|e| format!("{what}: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The NAT router's ruleset: masquerade towards the outside, and unsolicited packets from
/// outside dropped before conntrack confirms an entry for them (otherwise an early check of a
/// peer would claim the tuple and push our next mapping to another port).
fn ruleset(n: u8, mode: &str) -> String {
    format!(
        "table ip appnet_nat {{\n  chain post {{ type nat hook postrouting priority srcnat; oifname \"out{n}\" masquerade {mode}; }}\n  chain in {{ type filter hook input priority filter; iifname \"out{n}\" ct state new drop; }}\n}}\n"
    )
}

/// Moves the calling thread into the network namespace at `path`.
fn enter(path: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path)?;
    // SAFETY: `file` is an open namespace file descriptor; setns only affects this thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Starts a thread inside namespace `ns` driving a current-thread runtime until `shutdown`;
/// tasks spawned on the returned handle create their sockets in that namespace.
fn ns_runtime(ns: &str, shutdown: Shutdown) -> Result<(Handle, std::thread::JoinHandle<()>), String> {
    let path = PathBuf::from("/var/run/netns").join(ns);
    let name = ns.to_string();
    let (tx, rx) = std::sync::mpsc::channel::<Result<Handle, String>>();
    let thread = std::thread::Builder::new()
        .name(format!("netns-{ns}"))
        .spawn(move || {
            let rt = enter(&path).map_err(|e| format!("cannot enter {name}: {e}")).and_then(|()| {
                tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())
            });
            match rt {
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
                Ok(rt) => {
                    let _ = tx.send(Ok(rt.handle().clone()));
                    rt.block_on(shutdown.wait());
                    // Lets the services' own shutdown (the peers' TURN Refresh 0) go out.
                    rt.block_on(async { tokio::time::sleep(Duration::from_millis(100)).await });
                }
            }
        })
        .map_err(|e| e.to_string())?;
    let handle = rx.recv_timeout(Duration::from_secs(10)).map_err(|_| format!("no runtime in {ns}"))??;
    Ok((handle, thread))
}

/// The NAT network: namespaces, routers, servers and the three peers. Dropping it stops them
/// and deletes every namespace it created.
pub struct NatNet {
    created: Vec<String>,
    shutdown: Shutdown,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl NatNet {
    /// Builds the network and starts the supernode, the TURN server and the peers (root only).
    /// Stale namespaces of an earlier lab are removed first; on failure everything is removed.
    pub async fn create(dir: &Path) -> Result<NatNet, LabError> {
        let fail = LabError::Netns;
        if !is_root() {
            return Err(fail(
                "--nat needs root (network namespaces, nftables): `sudo appnet lab --nat`".into(),
            ));
        }
        let names = namespace_names();
        let stale = list_namespaces().into_iter().filter(|n| names.contains(n)).collect::<Vec<_>>();
        for ns in &stale {
            let _ = ip(&["netns", "del", ns]);
        }
        if !stale.is_empty() {
            tracing::info!("removed {} stale {PREFIX}-* namespace(s)", stale.len());
        }
        let mut net = NatNet { created: Vec::new(), shutdown: Shutdown::new(), threads: Vec::new() };
        let peers = net.build(dir).await.map_err(fail)?;
        if let Ok(mut a) = ACTIVE.lock() {
            *a = Some(Arc::new(Active { peers }));
        }
        Ok(net)
    }

    fn add_ns(&mut self, ns: &str) -> Result<(), String> {
        ip(&["netns", "add", ns])?;
        self.created.push(ns.to_string());
        ip(&["-n", ns, "link", "set", "lo", "up"])
    }

    /// The public namespace: a bridge holding the servers' two addresses, which the routers'
    /// uplinks join.
    fn add_public(&mut self) -> Result<(), String> {
        self.add_ns(PUBLIC)?;
        ip(&["-n", PUBLIC, "link", "add", "natpub", "type", "bridge"])?;
        ip(&["-n", PUBLIC, "addr", "add", &format!("{SERVER_IP}/24"), "dev", "natpub"])?;
        ip(&["-n", PUBLIC, "addr", "add", &format!("{ALT_IP}/24"), "dev", "natpub"])?;
        ip(&["-n", PUBLIC, "link", "set", "natpub", "up"])
    }

    /// One site: its NAT router (100.64.0.1N on the public bridge, masquerade with the site's
    /// mode, unsolicited inbound dropped) and the user's namespace behind it (100.65.N.2).
    fn add_site(&mut self, s: &Site) -> Result<(), String> {
        let (rtr, cli, n) = (router_ns(s.n), user_ns(s.user), s.n);
        self.add_ns(&rtr)?;
        self.add_ns(&cli)?;
        let (out, port) = (format!("out{n}"), format!("port{n}"));
        ip(&["link", "add", &out, "netns", &rtr, "type", "veth", "peer", "name", &port, "netns", PUBLIC])?;
        ip(&["-n", PUBLIC, "link", "set", &port, "master", "natpub", "up"])?;
        ip(&["-n", &rtr, "addr", "add", &format!("100.64.0.1{n}/24"), "dev", &out])?;
        ip(&["-n", &rtr, "link", "set", &out, "up"])?;
        let (inside, up) = (format!("in{n}"), "uplink".to_string());
        ip(&["link", "add", &inside, "netns", &rtr, "type", "veth", "peer", "name", &up, "netns", &cli])?;
        ip(&["-n", &rtr, "addr", "add", &format!("100.65.{n}.1/24"), "dev", &inside])?;
        ip(&["-n", &rtr, "link", "set", &inside, "up"])?;
        ip(&["-n", &cli, "addr", "add", &format!("100.65.{n}.2/24"), "dev", &up])?;
        ip(&["-n", &cli, "link", "set", &up, "up"])?;
        ip(&["-n", &cli, "route", "add", "default", "via", &format!("100.65.{n}.1")])?;
        run_tool("ip", &["netns", "exec", &rtr, "sysctl", "-qw", "net.ipv4.ip_forward=1"], None)?;
        run_tool("ip", &["netns", "exec", &rtr, "nft", "-f", "-"], Some(&ruleset(n, s.mode)))
    }

    async fn build(&mut self, dir: &Path) -> Result<Vec<PeerHandle>, String> {
        self.add_public()?;
        for s in &SITES {
            self.add_site(s)?;
        }
        // Fresh passwords each run: the directory entries and TURN allocations are authenticated.
        let passwords: Vec<String> =
            SITES.iter().map(|_| format!("{:016x}", rand::random::<u64>())).collect();
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let users = dir.join("nat-turn-users");
        let text: String = SITES.iter().zip(&passwords).map(|(s, p)| format!("{}:{p}\n", s.user)).collect();
        std::fs::write(&users, text).map_err(|e| format!("{}: {e}", users.display()))?;

        let (public, thread) = ns_runtime(PUBLIC, self.shutdown.clone())?;
        self.threads.push(thread);
        let sn_addr = SocketAddr::new(IpAddr::V4(SERVER_IP), SN_PORT);
        let turn_addr = SocketAddr::new(IpAddr::V4(SERVER_IP), TURN_PORT);
        let sd = self.shutdown.clone();
        public
            .spawn(async move {
                let sn_cfg = SupernodeConfig { listen: sn_addr, ..SupernodeConfig::default() };
                let sn = Supernode::bind(sn_cfg).await.map_err(|e| format!("supernode on {sn_addr}: {e}"))?;
                let turn_cfg = TurnConfig {
                    listen: turn_addr,
                    realm: "lab".into(),
                    users: Some(users),
                    ports: "50600-50699".into(),
                    allow_peer: vec!["100.64.0.0/24".into()],
                    alt_listen: Some(SocketAddr::new(IpAddr::V4(ALT_IP), TURN_PORT + 1)),
                    ..TurnConfig::default()
                };
                let turn =
                    TurnServer::bind(turn_cfg).await.map_err(|e| format!("TURN on {turn_addr}: {e}"))?;
                tokio::spawn(sn.run(sd.clone()));
                tokio::spawn(turn.run(sd));
                Ok::<(), String>(())
            })
            .await
            .map_err(|e| e.to_string())??;

        let mut peers = Vec::new();
        for (s, password) in SITES.iter().zip(passwords) {
            let (rt, thread) = ns_runtime(&user_ns(s.user), self.shutdown.clone())?;
            self.threads.push(thread);
            let cfg = PeerConfig {
                user: s.user.into(),
                password: password.clone(),
                supernode: sn_addr,
                fallback: Vec::new(),
                listen: "0.0.0.0:0".parse().map_err(|_| "address")?,
                stun: None,
                turn: Some((turn_addr, s.user.into(), password)),
                promote: None,
            };
            let (cmd_tx, cmd_rx) = mpsc::channel(16);
            let (line_tx, line_rx) = mpsc::unbounded_channel();
            let sd = self.shutdown.clone();
            let user = s.user;
            let candidates = rt
                .spawn(async move {
                    let peer = Peer::start(cfg).await.map_err(|e| format!("{user} registering: {e}"))?;
                    let candidates = peer.candidates().to_vec();
                    tokio::spawn(peer.run(cmd_rx, line_tx, sd));
                    Ok::<_, String>(candidates)
                })
                .await
                .map_err(|e| e.to_string())??;
            peers.push(PeerHandle {
                user: s.user,
                nat: s.nat,
                candidates,
                commands: cmd_tx,
                lines: tokio::sync::Mutex::new(line_rx),
                runtime: rt,
            });
        }
        Ok(peers)
    }

    /// The namespaces it created.
    pub fn namespaces(&self) -> &[String] {
        &self.created
    }

    /// Lines for the lab's directory.
    pub fn directory(&self) -> String {
        let mut out = format!(
            "NATs (network namespaces): supernode {SERVER_IP}:{SN_PORT}, TURN {SERVER_IP}:{TURN_PORT} in {PUBLIC}\n"
        );
        let peers =
            active().map(|a| a.peers.iter().map(|p| (p.user, p.candidates.clone())).collect::<Vec<_>>());
        for s in &SITES {
            let cands = peers
                .as_ref()
                .and_then(|p| p.iter().find(|(u, _)| *u == s.user))
                .map(|(_, c)| list(c))
                .unwrap_or_default();
            out.push_str(&format!(
                "  {:<6} in {:<18} behind {} ({}, 100.64.0.1{}): {cands}\n",
                s.user,
                user_ns(s.user),
                router_ns(s.n),
                s.nat,
                s.n
            ));
        }
        out
    }

    /// Stops everything and removes the namespaces (also done on drop).
    pub fn remove(&mut self) {
        if let Ok(mut a) = ACTIVE.lock() {
            *a = None;
        }
        self.shutdown.trigger();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for ns in self.created.drain(..).rev() {
            if let Err(e) = ip(&["netns", "del", &ns]) {
                tracing::warn!("could not remove network namespace {ns}: {e}");
            }
        }
    }
}

impl Drop for NatNet {
    fn drop(&mut self) {
        self.remove();
    }
}

fn kind(k: CandidateKind) -> &'static str {
    match k {
        CandidateKind::Host => "host",
        CandidateKind::ServerReflexive => "server-reflexive",
        CandidateKind::Relayed => "relayed",
    }
}

fn list(cands: &[Candidate]) -> String {
    cands.iter().map(|c| format!("{} {}", kind(c.kind), c.addr)).collect::<Vec<_>>().join(", ")
}

fn host_addr(p: &PeerHandle) -> String {
    p.candidates
        .iter()
        .find(|c| c.kind == CandidateKind::Host)
        .map_or_else(String::new, |c| c.addr.to_string())
}

fn peer_end(p: &PeerHandle) -> Endpoint {
    Endpoint::new(p.user, host_addr(p))
}

/// What the two calls found: the path descriptions and whether each went through the relay.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Alice → Bob's path, as Alice's peer describes it.
    pub bob_path: String,
    /// Alice → Carol's path.
    pub carol_path: String,
    /// Whether Bob's path goes through the TURN relay.
    pub bob_relayed: bool,
    /// Whether Carol's path goes through the TURN relay.
    pub carol_relayed: bool,
}

/// Sends `cmd` to `from`'s peer and waits (bounded) for its one-line answer.
async fn ask(from: &PeerHandle, cmd: Command) -> Result<String, String> {
    let (tx, rx) = oneshot::channel();
    from.commands.send((cmd, tx)).await.map_err(|_| format!("{}'s peer stopped", from.user))?;
    let reply = tokio::time::timeout(COMMAND_TIMEOUT, rx)
        .await
        .map_err(|_| format!("{}'s peer did not answer in {} s", from.user, COMMAND_TIMEOUT.as_secs()))?
        .map_err(|_| format!("{}'s peer stopped", from.user))?;
    if reply.starts_with("error") { Err(reply) } else { Ok(reply) }
}

/// Waits (bounded) for `to`'s peer to print `line`.
async fn received(to: &PeerHandle, line: &str) -> bool {
    let mut lines = to.lines.lock().await;
    let wait = async {
        while let Some(l) = lines.recv().await {
            if l == line {
                return true;
            }
        }
        false
    };
    tokio::time::timeout(Duration::from_secs(5), wait).await.unwrap_or(false)
}

/// Alice calls `callee`: a directory lookup, a message (offer/answer, checks, path), a 2 s
/// voice stream. Every exchange goes on the bus; the text comes from the events.
async fn call(
    alice: &PeerHandle,
    callee: &PeerHandle,
    say: &mut dyn FnMut(String),
) -> Result<(String, bool), String> {
    let sn_end = Endpoint::new("supernode", format!("{SERVER_IP}:{SN_PORT}"));
    let turn_end = Endpoint::new("TURN", format!("{SERVER_IP}:{TURN_PORT}"));
    let name = callee.user.to_string();
    let sn_addr = SocketAddr::new(IpAddr::V4(SERVER_IP), SN_PORT);
    let lookup = alice
        .runtime
        .spawn(async move {
            let socket = tokio::net::UdpSocket::bind("0.0.0.0:0").await.map_err(|e| e.to_string())?;
            sn::lookup(&socket, sn_addr, &name, Duration::from_secs(5)).await.map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())??;
    tell(
        say,
        "   ",
        event(
            peer_end(alice),
            sn_end.clone(),
            "SN",
            format!(
                "Lookup {} → {}, candidates: {}",
                callee.user,
                if lookup.online { "online" } else { "offline" },
                list(&lookup.candidates)
            ),
            vec![("User".into(), callee.user.into()), ("Online".into(), lookup.online.to_string())],
            Vec::new(),
            None,
        ),
    );
    let text = format!("hello {}, this is alice", callee.user);
    let sent = ask(alice, Command::Message { to: callee.user.into(), text: text.clone() }).await?;
    let path = sent.split_once(", ").map_or(sent.as_str(), |(_, p)| p).to_string();
    let relayed = path.starts_with("relayed");
    tell(
        say,
        "   ",
        event(
            peer_end(alice),
            peer_end(callee),
            "SN",
            format!(
                "offer (alice's {} candidates) and answer ({}'s {}) exchanged through the supernode",
                alice.candidates.len(),
                callee.user,
                lookup.candidates.len()
            ),
            vec![("Offer".into(), list(&alice.candidates)), ("Answer".into(), list(&lookup.candidates))],
            Vec::new(),
            None,
        ),
    );
    let pairs = alice.candidates.len() * lookup.candidates.len();
    let checks = if relayed {
        format!(
            "connectivity checks over {pairs} candidate pairs: no direct pair answered ({} is behind a {}), the relayed pair is chosen",
            callee.user, callee.nat
        )
    } else {
        format!("connectivity checks over {pairs} candidate pairs: hole punched, {path}")
    };
    tell(
        say,
        "   ",
        event(
            peer_end(alice),
            peer_end(callee),
            "STUN",
            checks,
            vec![("Pairs".into(), pairs.to_string()), ("Selected".into(), path.clone())],
            Vec::new(),
            None,
        ),
    );
    if relayed {
        for p in [alice, callee] {
            let relay = p.candidates.iter().find(|c| c.kind == CandidateKind::Relayed);
            tell(
                say,
                "   ",
                event(
                    peer_end(p),
                    turn_end.clone(),
                    "TURN",
                    format!(
                        "{}'s session on the relay: allocation {} (Allocate), CreatePermission for the other side's addresses",
                        p.user,
                        relay.map_or_else(|| "none".to_string(), |c| c.addr.to_string())
                    ),
                    vec![("Relayed".into(), relay.map_or_else(String::new, |c| c.addr.to_string()))],
                    Vec::new(),
                    None,
                ),
            );
        }
    }
    if !received(callee, &format!("alice: {text}")).await {
        return Err(format!("{} did not print alice's message", callee.user));
    }
    tell(
        say,
        "   ",
        event(
            peer_end(alice),
            peer_end(callee),
            "SN",
            format!("message \"{text}\" delivered, {path}"),
            vec![("Text".into(), text.clone())],
            text.into_bytes(),
            None,
        ),
    );
    let report = ask(alice, Command::Call { to: callee.user.into(), secs: CALL_SECS }).await?;
    tell(
        say,
        "   ",
        event(
            peer_end(alice),
            peer_end(callee),
            "RTP",
            report.clone(),
            vec![("Stream".into(), format!("{CALL_SECS} s, 50 packets/s of 160 bytes"))],
            Vec::new(),
            None,
        ),
    );
    Ok((path, relayed))
}

/// Runs Alice's two calls and returns what they found (errors if `--nat` is not running).
pub async fn calls(say: &mut dyn FnMut(String)) -> Result<Outcome, String> {
    let net = active().ok_or("the NAT network is not running (appnet lab --nat)")?;
    let by = |u: &str| net.peers.iter().find(|p| p.user == u).ok_or(format!("no peer {u}"));
    let (alice, bob, carol) = (by("alice")?, by("bob")?, by("carol")?);
    let sn_end = Endpoint::new("supernode", format!("{SERVER_IP}:{SN_PORT}"));
    for p in [alice, bob, carol] {
        tell(
            say,
            "   ",
            event(
                peer_end(p),
                sn_end.clone(),
                "SN",
                format!("{} ({}) registered: {}", p.user, p.nat, list(&p.candidates)),
                vec![("Candidates".into(), list(&p.candidates))],
                Vec::new(),
                None,
            ),
        );
    }
    say("   Alice calls Bob:".into());
    let (bob_path, bob_relayed) = call(alice, bob, say).await?;
    say("   Alice calls Carol:".into());
    let (carol_path, carol_relayed) = call(alice, carol, say).await?;
    Ok(Outcome { bob_path, carol_path, bob_relayed, carol_relayed })
}

/// Tour scene 16. Without `--nat` (or without root) it says what it needs and succeeds.
pub async fn scene(say: &mut dyn FnMut(String)) -> Result<(), String> {
    say(crate::tour::heading(SCENE));
    if active().is_none() {
        say("   (skipped: this scene needs the NATs of `sudo appnet lab --nat`)".into());
        return Ok(());
    }
    say("   Alice, Bob and Carol sit behind NAT routers (Linux namespaces, nftables masquerade);".into());
    say("   the supernode keeps the directory, the TURN server relays when holes cannot be punched.".into());
    let o = calls(say).await?;
    if !o.bob_relayed {
        return Err(format!("alice → bob should go through the relay, went {}", o.bob_path));
    }
    if o.carol_relayed {
        return Err(format!("alice → carol should punch a hole, went {}", o.carol_path));
    }
    say("   Behind a symmetric NAT every destination gets a new mapping, so the punched holes".into());
    say("   lead nowhere and the relay carries the call; two endpoint-independent NATs let the".into());
    say("   checks' own packets open the holes, and the call goes direct.".into());
    Ok(())
}
