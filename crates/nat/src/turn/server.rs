//! The tokio driver of the TURN core: one UDP listener for STUN/TURN, one UDP socket per
//! relayed port (each read by its own task), and a once-a-second expiry tick. With a second
//! address (RFC 5780) three more sockets answer Binding requests: the alternate IP and port, and
//! the two crossings of primary and alternate IP and port.

use super::core::{Action, Core, CoreConfig, Origin};
use crate::config::{TurnConfig, parse_ports, parse_users};
use appnet_netkit::acl::AccessList;
use appnet_netkit::service::BoxError;
use appnet_netkit::{Service, Shutdown};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error("cannot read {0}: {1}")]
    Users(String, std::io::Error),
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
}

/// A bound STUN/TURN server.
pub struct TurnServer {
    socket: Arc<UdpSocket>,
    core: Arc<Mutex<Core>>,
    relay_ip: IpAddr,
    /// The four RFC 5780 sockets by [`Origin::index`] (the listener first), with a second address.
    origins: Option<Arc<[Arc<UdpSocket>; 4]>>,
}

type Relays = HashMap<u16, (Arc<UdpSocket>, JoinHandle<()>)>;

impl TurnServer {
    /// Reads the users file, binds the listener.
    pub async fn bind(config: TurnConfig) -> Result<TurnServer, StartError> {
        let ports = parse_ports(&config.ports).map_err(StartError::Config)?;
        let allow_peer = AccessList::parse(&config.allow_peer).map_err(StartError::Config)?;
        let users = match &config.users {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| StartError::Users(path.display().to_string(), e))?;
                parse_users(&text).map_err(|e| StartError::Config(format!("{}: {e}", path.display())))?
            }
            None => Vec::new(),
        };
        let socket = Arc::new(UdpSocket::bind(config.listen).await?);
        grow_buffers(&*socket);
        let local = socket.local_addr()?;
        let relay_ip = match config.relay_ip {
            Some(ip) => ip,
            None if local.ip().is_unspecified() => {
                return Err(StartError::Config(
                    "--relay-ip is needed when listening on a wildcard address".into(),
                ));
            }
            None => local.ip(),
        };
        let origins = match config.alt_listen {
            None => None,
            Some(alt) => Some(Arc::new(bind_origins(&socket, local, alt).await?)),
        };
        let other_address = origins.as_ref().map(|o| o[3].local_addr()).transpose()?;
        let core = Core::new(
            CoreConfig {
                realm: config.realm.clone(),
                users,
                relay_ip,
                ports,
                allow_peer,
                user_quota: config.user_quota,
                ip_quota: config.ip_quota,
                max_allocations: config.max_allocations,
                nonce_lifetime: Duration::from_secs(config.nonce_lifetime_secs.max(1)),
                max_lifetime: config.max_lifetime_secs.max(1),
                other_address,
                primary_address: Some(local),
                unauth_rate: config.unauth_rate,
            },
            Instant::now(),
        );
        Ok(TurnServer { socket, core: Arc::new(Mutex::new(core)), relay_ip, origins })
    }

    /// The second address (RFC 5780 OTHER-ADDRESS), when `alt_listen` was set.
    pub fn alt_addr(&self) -> Option<SocketAddr> {
        self.origins.as_ref().and_then(|o| o[3].local_addr().ok())
    }
}

/// Binds the alternate address and the two crossings next to the bound listener; with port 0
/// in `alt`, retries a few ports until the crossing (primary IP, alternate port) is free too.
async fn bind_origins(
    listener: &Arc<UdpSocket>,
    local: SocketAddr,
    alt: SocketAddr,
) -> Result<[Arc<UdpSocket>; 4], StartError> {
    if local.ip().is_unspecified() || alt.ip().is_unspecified() {
        return Err(StartError::Config("--alt-listen needs --listen and itself on specific IPs".into()));
    }
    if alt.ip() == local.ip() || alt.port() == local.port() || alt.is_ipv4() != local.is_ipv4() {
        return Err(StartError::Config(
            "--alt-listen must have another IP and another port than --listen (RFC 5780)".into(),
        ));
    }
    let tries = if alt.port() == 0 { 8 } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let both = match UdpSocket::bind(alt).await {
            Ok(s) => s,
            Err(e) => return Err(e.into()),
        };
        let p2 = both.local_addr()?.port();
        if p2 == local.port() {
            continue;
        }
        let port_only = match UdpSocket::bind(SocketAddr::new(local.ip(), p2)).await {
            Ok(s) => s,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        let ip_only = UdpSocket::bind(SocketAddr::new(alt.ip(), local.port())).await?;
        for s in [&both, &port_only, &ip_only] {
            grow_buffers(s);
        }
        return Ok([listener.clone(), Arc::new(port_only), Arc::new(ip_only), Arc::new(both)]);
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free alternate port")).into())
}

/// Socket buffers for the listener and relayed sockets: bursts of relayed datagrams outrun the
/// kernel's default (about 200 KiB) before the driver reads them.
const SOCKET_BUFFER: usize = 4 << 20;

fn grow_buffers<S: std::os::fd::AsFd>(socket: &S) {
    let s = socket2::SockRef::from(socket);
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
}

fn lock(core: &Mutex<Core>) -> std::sync::MutexGuard<'_, Core> {
    core.lock().unwrap_or_else(|p| p.into_inner())
}

async fn execute(
    actions: Vec<Action>,
    socket: &UdpSocket,
    origins: Option<&[Arc<UdpSocket>; 4]>,
    relays: &mut Relays,
) {
    for action in actions {
        match action {
            Action::ToClient { to, data } => {
                let _ = socket.send_to(&data, to).await;
            }
            Action::FromOrigin { origin, to, data } => {
                if let Some(o) = origins {
                    let _ = o[origin.index()].send_to(&data, to).await;
                }
            }
            Action::ToPeer { port, peer, data } => {
                if let Some((relay, _)) = relays.get(&port) {
                    let _ = relay.send_to(&data, peer).await;
                }
            }
            Action::CloseRelay { port } => {
                if let Some((_, task)) = relays.remove(&port) {
                    task.abort();
                }
            }
        }
    }
}

fn spawn_relay(
    port: u16,
    relay: Arc<UdpSocket>,
    socket: Arc<UdpSocket>,
    core: Arc<Mutex<Core>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, peer)) = relay.recv_from(&mut buf).await else {
                // A socket error (e.g. a queued ICMP error) is not fatal; don't spin on it.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let action = lock(&core).from_peer(port, peer, &buf[..n], Instant::now());
            if let Some(Action::ToClient { to, data }) = action {
                let _ = socket.send_to(&data, to).await;
            }
        }
    })
}

/// Reads one of the three extra RFC 5780 sockets: Binding requests only (TURN stays on the
/// listener).
fn spawn_origin(at: Origin, origins: Arc<[Arc<UdpSocket>; 4]>, core: Arc<Mutex<Core>>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let socket = origins[at.index()].clone();
        let mut buf = vec![0u8; 2048];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let Ok(msg) = crate::stun::Message::decode(&buf[..n]) else { continue };
            let action = lock(&core).binding(at, from, &msg, Instant::now());
            match action {
                Some(Action::ToClient { to, data }) => {
                    let _ = origins[0].send_to(&data, to).await;
                }
                Some(Action::FromOrigin { origin, to, data }) => {
                    let _ = origins[origin.index()].send_to(&data, to).await;
                }
                _ => {}
            }
        }
    })
}

impl Service for TurnServer {
    fn local_addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("bound socket")
    }

    async fn run(self, shutdown: Shutdown) -> Result<(), BoxError> {
        let mut relays: Relays = HashMap::new();
        let mut buf = vec![0u8; 65536];
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut extra = Vec::new();
        if let Some(o) = &self.origins {
            for (alt_ip, alt_port) in [(false, true), (true, false), (true, true)] {
                extra.push(spawn_origin(Origin { alt_ip, alt_port }, o.clone(), self.core.clone()));
            }
        }
        let origins = self.origins.as_deref();
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = tick.tick() => {
                    let actions = lock(&self.core).expire(Instant::now());
                    execute(actions, &self.socket, origins, &mut relays).await;
                }
                got = self.socket.recv_from(&mut buf) => {
                    let Ok((n, from)) = got else { continue };
                    let mut fresh: Vec<(u16, std::net::UdpSocket)> = Vec::new();
                    let relay_ip = self.relay_ip;
                    let actions = {
                        let mut core = lock(&self.core);
                        let actions = core.from_client(from, &buf[..n], Instant::now(), &mut |p| {
                            match std::net::UdpSocket::bind((relay_ip, p)) {
                                Ok(s) => {
                                    grow_buffers(&s);
                                    fresh.push((p, s));
                                    true
                                }
                                Err(_) => false,
                            }
                        });
                        fresh.retain(|(p, _)| core.port_used(*p));
                        actions
                    };
                    for (port, s) in fresh {
                        if s.set_nonblocking(true).is_err() {
                            continue;
                        }
                        let Ok(s) = UdpSocket::from_std(s) else { continue };
                        let s = Arc::new(s);
                        let task = spawn_relay(port, s.clone(), self.socket.clone(), self.core.clone());
                        relays.insert(port, (s, task));
                    }
                    execute(actions, &self.socket, origins, &mut relays).await;
                }
            }
        }
        for task in extra {
            task.abort();
        }
        for (_, (_, task)) in relays.drain() {
            task.abort();
        }
        Ok(())
    }
}
