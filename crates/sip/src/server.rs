//! The driver: owns the UDP socket and the TCP listener on the same address, feeds
//! datagrams and framed stream messages to the proxy core (one task) and runs its timers.
//! Each TCP connection has a reader task (framing by Content-Length, RFC 3261 §18.3) and
//! the core's answers for that peer are written back on the same connection.

use crate::config::SipConfig;
use crate::locate::{Transport, dns::LocateError, dns::locate_traced};
use crate::proxy::{Located, Lookup, Outbound, Proxy, ProxyConfig};
use crate::registrar::RegistrarLimits;
use crate::transaction::Timers;
use crate::users::{self, UsersError};
use crate::wire::Limits;
use appnet_netkit::accept::{Accepted, Acceptor, ConnLimits};
use appnet_netkit::service::BoxError;
use appnet_netkit::{Service, Shutdown};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error(transparent)]
    Users(#[from] UsersError),
    #[error("TLS: {0}")]
    Tls(#[from] appnet_netkit::tls::TlsError),
}

/// The TLS side of the server: its own listener and caps, and the handshake's acceptor.
struct TlsSide {
    acceptor: Acceptor,
    tls: tokio_rustls::TlsAcceptor,
    addr: SocketAddr,
    handshake: Duration,
    note: Option<String>,
}

/// What the server shows an observer (the lab's event bus draws it): every message it
/// receives or sends, and every RFC 3263 location with its DNS steps.
#[derive(Debug, Clone, Copy)]
pub enum Observed<'a> {
    Received { from: SocketAddr, bytes: &'a [u8] },
    Sent { to: SocketAddr, bytes: &'a [u8] },
    Located { uri: &'a str, steps: &'a [String], targets: &'a [SocketAddr] },
}

/// Called with the server's own address and what it saw.
pub type Observer = Arc<dyn Fn(SocketAddr, Observed<'_>) + Send + Sync>;

/// A bound SIP server (registrar + proxy) on UDP.
pub struct SipServer {
    socket: UdpSocket,
    acceptor: Acceptor,
    max_message: usize,
    proxy: Proxy,
    local: SocketAddr,
    resolver: Option<SocketAddr>,
    dns_timeout: Duration,
    users_path: Option<PathBuf>,
    observer: Option<Observer>,
    tls: Option<TlsSide>,
    outbound: OutboundSide,
}

/// How the server opens connections to other servers (RFC 3263 TCP/TLS targets).
#[derive(Clone)]
struct OutboundSide {
    /// None when no CA could be loaded: TLS targets then fail over at once.
    tls: Option<tokio_rustls::TlsConnector>,
    max: usize,
    connect: Duration,
    idle: Duration,
}

/// RFC 3263 lookups running at once; more get 503 at once (a flood of calls to unknown
/// domains cannot queue unbounded work).
const MAX_LOOKUPS: usize = 256;

impl SipServer {
    /// Binds the socket and loads the users file.
    pub async fn bind(cfg: SipConfig) -> Result<SipServer, ServeError> {
        let (socket, local, listener) = bind_udp_and_tcp(cfg.listen).await?;
        let limits = ConnLimits {
            max_connections: cfg.max_tcp_connections,
            max_per_ip: cfg.max_tcp_per_ip,
            request_timeout: Duration::from_secs(cfg.tcp_idle_timeout_secs),
            idle_timeout: Duration::from_secs(cfg.tcp_idle_timeout_secs),
        };
        let acceptor = Acceptor::with_limits(listener, limits);
        let tls = if cfg.tls || cfg.cert.is_some() {
            let want = match cfg.tls_listen {
                Some(a) => a,
                // Port 0 (tests): any free port; else the TCP port + 1.
                None if cfg.listen.port() == 0 => SocketAddr::new(local.ip(), 0),
                None => SocketAddr::new(local.ip(), local.port().saturating_add(1)),
            };
            let listener =
                tokio::net::TcpListener::bind(want).await.map_err(|e| ServeError::Bind(want, e))?;
            let addr = listener.local_addr().map_err(|e| ServeError::Bind(want, e))?;
            let (config, note) = appnet_netkit::tls::listener_config(
                cfg.cert.as_deref(),
                cfg.key.as_deref(),
                cfg.ca_dir.as_deref(),
                addr,
                std::slice::from_ref(&cfg.domain),
                &[],
            )?;
            // No TLS 1.3 session tickets: SIP peers keep one long connection and do not
            // resume, and some (sipsak's gnutls loop) take the post-handshake ticket for the
            // answer and give up.
            let mut config = (*config).clone();
            config.send_tls13_tickets = 0;
            Some(TlsSide {
                acceptor: Acceptor::with_limits(listener, limits),
                tls: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
                addr,
                handshake: Duration::from_secs(cfg.tls_handshake_secs.max(1)),
                note,
            })
        } else {
            None
        };
        let trust = appnet_netkit::tls_client::Trust {
            system: true,
            lab_ca_dir: Some(cfg.ca_dir.clone().unwrap_or_else(appnet_netkit::tls::LabCa::default_dir)),
            extra: cfg.cacert.clone(),
        };
        let client_tls = match appnet_netkit::tls_client::client_config(&trust, &[]) {
            Ok(c) => Some(tokio_rustls::TlsConnector::from(c)),
            Err(e) if cfg.cacert.is_empty() => {
                tracing::info!(error = %e, "no CA for outbound SIP over TLS");
                None
            }
            Err(e) => return Err(e.into()),
        };
        let outbound = OutboundSide {
            tls: client_tls,
            max: cfg.max_outbound_connections,
            connect: Duration::from_secs(cfg.connect_timeout_secs.max(1)),
            idle: Duration::from_secs(cfg.tcp_idle_timeout_secs.max(1)),
        };
        let users = match &cfg.users {
            Some(p) => users::load(p)?,
            None => HashMap::new(),
        };
        let t1 = Duration::from_millis(cfg.t1_ms.max(1));
        let pcfg = ProxyConfig {
            domain: cfg.domain.to_ascii_lowercase(),
            local,
            redirect: cfg.redirect,
            link_kbps: cfg.link_kbps,
            max_transactions: cfg.max_transactions,
            max_transactions_per_ip: cfg.max_transactions_per_ip,
            nonce_lifetime: Duration::from_secs(cfg.nonce_lifetime_secs),
            dialog_timeout: Duration::from_secs(cfg.dialog_timeout_secs),
            noanswer_default: Duration::from_secs(cfg.noanswer_secs),
            timer_c: Duration::from_secs(cfg.timer_c_secs),
            max_subscriptions: cfg.max_subscriptions,
            max_subscriptions_per_ip: cfg.max_subscriptions_per_ip,
            registrar: RegistrarLimits {
                default_expires: cfg.default_expires,
                min_expires: cfg.min_expires,
                max_expires: cfg.max_expires,
                max_bindings_per_user: cfg.max_bindings_per_user,
            },
            limits: Limits { max_size: cfg.max_message, max_headers: cfg.max_headers },
            timers: Timers { t1, t2: t1 * 8, t4: t1 * 10 },
            route_other_domains: cfg.resolver.is_some(),
            md5_only: cfg.md5_only,
        };
        Ok(SipServer {
            socket,
            acceptor,
            max_message: cfg.max_message,
            proxy: Proxy::new(pcfg, users),
            local,
            resolver: cfg.resolver,
            dns_timeout: Duration::from_secs(cfg.dns_timeout_secs.max(1)),
            users_path: cfg.users.clone(),
            observer: None,
            tls,
            outbound,
        })
    }

    /// The TLS address, when `tls` is on.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().map(|t| t.addr)
    }

    /// For a lab-CA certificate: how clients trust it.
    pub fn tls_note(&self) -> Option<&str> {
        self.tls.as_ref().and_then(|t| t.note.as_deref())
    }

    /// Shows every message and location to `observer` (for the lab's event bus).
    pub fn observe(&mut self, observer: Observer) {
        self.observer = Some(observer);
    }
}

/// UDP and TCP on one address. With port 0, the port the UDP socket got may be taken for TCP:
/// then another free port is tried (a bounded number of times).
async fn bind_udp_and_tcp(
    listen: SocketAddr,
) -> Result<(UdpSocket, SocketAddr, tokio::net::TcpListener), ServeError> {
    let attempts = if listen.port() == 0 { 20 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let socket = UdpSocket::bind(listen).await.map_err(|e| ServeError::Bind(listen, e))?;
        let local = socket.local_addr().map_err(|e| ServeError::Bind(listen, e))?;
        match tokio::net::TcpListener::bind(local).await {
            Ok(listener) => return Ok((socket, local, listener)),
            Err(e) => last = Some(ServeError::Bind(local, e)),
        }
    }
    Err(last.unwrap_or_else(|| ServeError::Bind(listen, std::io::ErrorKind::AddrInUse.into())))
}

/// The users file's identity (modification time and length), to notice `sip user add`.
fn file_stamp(path: &std::path::Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl Service for SipServer {
    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    async fn run(self, shutdown: Shutdown) -> Result<(), BoxError> {
        let SipServer {
            socket,
            acceptor,
            max_message,
            mut proxy,
            resolver,
            dns_timeout,
            users_path,
            observer,
            local,
            tls,
            outbound,
            ..
        } = self;
        let mut outbound_open = 0usize;
        let no_tls = Shutdown::new();
        let (in_tx, mut in_rx) = mpsc::channel::<StreamEvent>(1024);
        let (loc_tx, mut loc_rx) = mpsc::channel::<LocateDone>(MAX_LOOKUPS);
        let mut users_stamp = users_path.as_deref().and_then(file_stamp);
        let mut users_check = tokio::time::interval(Duration::from_secs(1));
        users_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let observe = |what: Observed<'_>| {
            if let Some(o) = &observer {
                o(local, what);
            }
        };
        let mut lookups_running = 0usize;
        let mut conns: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
        let mut buf = vec![0u8; 65_536];
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let out = tokio::select! {
                _ = shutdown.wait() => break,
                _ = tick.tick() => proxy.tick(Instant::now()),
                r = socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        observe(Observed::Received { from, bytes: &buf[..n] });
                        proxy.on_message(&buf[..n], from, Instant::now())
                    }
                    // ICMP port unreachable surfaces here on Linux: ignore and go on.
                    Err(_) => continue,
                },
                accepted = acceptor.next(&shutdown) => match accepted {
                    Some(Accepted::Conn(stream, peer, slot)) => {
                        let (out_tx, out_rx) = mpsc::channel(64);
                        conns.insert(peer, out_tx);
                        let events = in_tx.clone();
                        tokio::spawn(async move {
                            serve_conn(stream, peer, Idle::Slot(slot), events.clone(), out_rx, max_message).await;
                            let _ = events.send(StreamEvent::Closed(peer)).await;
                        });
                        continue;
                    }
                    // Over the cap: SIP has no greeting to refuse with; close at once.
                    Some(Accepted::OverCap(stream, _)) => {
                        drop(stream);
                        continue;
                    }
                    None => break,
                },
                // TLS (RFC 3261 §26.2): the handshake in the connection's task, bounded in time.
                accepted = async {
                    match &tls {
                        Some(t) => t.acceptor.next(&shutdown).await,
                        None => { no_tls.wait().await; None }
                    }
                } => match (accepted, &tls) {
                    (Some(Accepted::Conn(stream, peer, slot)), Some(t)) => {
                        let (out_tx, out_rx) = mpsc::channel(64);
                        conns.insert(peer, out_tx);
                        let events = in_tx.clone();
                        let (acceptor, limit) = (t.tls.clone(), t.handshake);
                        tokio::spawn(async move {
                            match tokio::time::timeout(limit, acceptor.accept(stream)).await {
                                Ok(Ok(stream)) => {
                                    let idle = Idle::Slot(slot);
                                    serve_conn(stream, peer, idle, events.clone(), out_rx, max_message).await;
                                }
                                // The handshake dropped the socket: free the slot before waiting.
                                _ => drop(slot),
                            }
                            let _ = events.send(StreamEvent::Closed(peer)).await;
                        });
                        continue;
                    }
                    (Some(Accepted::OverCap(stream, _)), _) => {
                        drop(stream);
                        continue;
                    }
                    _ => break,
                },
                ev = in_rx.recv() => match ev {
                    Some(StreamEvent::Message(peer, bytes)) => {
                        observe(Observed::Received { from: peer, bytes: &bytes });
                        proxy.on_stream_message(&bytes, peer, Instant::now())
                    }
                    Some(StreamEvent::Closed(peer)) => {
                        conns.remove(&peer);
                        continue;
                    }
                    Some(StreamEvent::OutboundClosed(peer)) => {
                        conns.remove(&peer);
                        outbound_open = outbound_open.saturating_sub(1);
                        continue;
                    }
                    Some(StreamEvent::ConnectFailed(peer)) => proxy.on_connect_failed(peer, Instant::now()),
                    None => continue,
                },
                Some(done) = loc_rx.recv() => {
                    lookups_running = lookups_running.saturating_sub(1);
                    let targets: Vec<SocketAddr> = match &done.located {
                        Located::Targets(t) => t.iter().map(|t| t.addr).collect(),
                        _ => Vec::new(),
                    };
                    observe(Observed::Located { uri: &done.uri, steps: &done.steps, targets: &targets });
                    proxy.on_located(done.id, done.located, Instant::now())
                }
                _ = users_check.tick(), if users_path.is_some() => {
                    // `sip user add` replaced the file: new users and forwarding apply at once.
                    let Some(path) = users_path.as_deref() else { continue };
                    let stamp = file_stamp(path);
                    if stamp == users_stamp {
                        continue;
                    }
                    users_stamp = stamp;
                    match users::load(path) {
                        Ok(u) => {
                            tracing::info!(users = u.len(), "users file reloaded");
                            proxy.set_users(u);
                        }
                        Err(e) => tracing::warn!(error = %e, "users file not reloaded"),
                    }
                    continue;
                }
            };
            let mut out = out;
            // The core asked to locate other domains' servers (RFC 3263): one task each.
            for Lookup { id, uri } in proxy.take_lookups() {
                let Some(resolver) = resolver.filter(|_| lookups_running < MAX_LOOKUPS) else {
                    out.extend(proxy.on_located(id, Located::Failed, Instant::now()));
                    continue;
                };
                lookups_running += 1;
                let tx = loc_tx.clone();
                // TLS targets only when we can verify their certificates.
                let supported: Vec<Transport> = [Transport::Udp, Transport::Tcp, Transport::Tls]
                    .into_iter()
                    .filter(|t| *t != Transport::Tls || outbound.tls.is_some())
                    .collect();
                tokio::spawn(async move {
                    let mut steps = Vec::new();
                    let found = locate_traced(resolver, &uri, &supported, dns_timeout, &mut steps).await;
                    let located = match found {
                        Ok(t) => Located::Targets(t),
                        Err(LocateError::Resolver(e)) => {
                            tracing::info!(%uri, error = %e, "cannot locate the domain");
                            Located::Failed
                        }
                        Err(e) => {
                            tracing::info!(%uri, error = %e, "no SIP server for the domain");
                            Located::NotFound
                        }
                    };
                    tracing::debug!(%uri, ?located, "RFC 3263 location");
                    let _ = tx.send(LocateDone { id, uri, steps, located }).await;
                });
            }
            let mut queue: std::collections::VecDeque<_> = out.into();
            let mut rounds = 0usize;
            while let Some(t) = queue.pop_front() {
                let bytes = t.msg.to_bytes();
                observe(Observed::Sent { to: t.to, bytes: &bytes });
                if let Some(conn) = conns.get(&t.to) {
                    // A full or closed connection loses the message, like a lost datagram.
                    let _ = conn.try_send(bytes);
                    continue;
                }
                if let Some(stream) = t.stream {
                    // Over the cap, or TLS without a CA: fail over at once (bounded: each
                    // failure removes a branch, and at most 16 targets are tried).
                    if outbound_open >= outbound.max
                        || (stream.transport == Transport::Tls && outbound.tls.is_none())
                    {
                        rounds += 1;
                        if rounds <= 64 {
                            queue.extend(proxy.on_connect_failed(t.to, Instant::now()));
                        }
                        continue;
                    }
                    let (out_tx, out_rx) = mpsc::channel(64);
                    let _ = out_tx.try_send(bytes);
                    conns.insert(t.to, out_tx);
                    outbound_open += 1;
                    tokio::spawn(connect_out(
                        t.to,
                        stream,
                        outbound.clone(),
                        in_tx.clone(),
                        out_rx,
                        max_message,
                    ));
                    continue;
                }
                if let Err(e) = socket.send_to(&bytes, t.to).await {
                    tracing::debug!(to = %t.to, error = %e, "send failed");
                }
            }
        }
        let c = proxy.counters;
        tracing::info!(requests = c.requests, responses = c.responses, bad = c.bad, "sip server stopped");
        Ok(())
    }
}

/// A finished RFC 3263 location, back from its task.
struct LocateDone {
    id: u64,
    uri: String,
    steps: Vec<String>,
    located: Located,
}

/// What connection tasks tell the core task.
enum StreamEvent {
    Message(SocketAddr, Vec<u8>),
    Closed(SocketAddr),
    /// An outbound connection could not be opened (connect or TLS handshake failed or
    /// timed out); `OutboundClosed` follows.
    ConnectFailed(SocketAddr),
    OutboundClosed(SocketAddr),
}

/// When a connection is closed for idleness: by its accept slot (inbound), or after this
/// long without a message either way (outbound).
enum Idle {
    Slot(appnet_netkit::accept::ConnSlot),
    After(Duration),
}

/// Opens an outbound TCP (and TLS, verifying the certificate against the target's domain,
/// RFC 5922) connection within the connect timeout, then serves it like an inbound one.
async fn connect_out(
    to: SocketAddr,
    stream: Outbound,
    side: OutboundSide,
    events: mpsc::Sender<StreamEvent>,
    out_rx: mpsc::Receiver<Vec<u8>>,
    max_message: usize,
) {
    let tcp = match tokio::time::timeout(side.connect, tokio::net::TcpStream::connect(to)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::info!(%to, error = %e, "outbound SIP connection failed");
            None
        }
        Err(_) => {
            tracing::info!(%to, "outbound SIP connection timed out");
            None
        }
    };
    let idle = Idle::After(side.idle);
    match (tcp, stream.transport, &side.tls) {
        (None, _, _) => {
            let _ = events.send(StreamEvent::ConnectFailed(to)).await;
        }
        (Some(tcp), Transport::Tls, Some(connector)) => {
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from(stream.name.clone());
            let tls = match name {
                Ok(name) => tokio::time::timeout(side.connect, connector.connect(name, tcp)).await.ok(),
                Err(_) => None,
            };
            match tls {
                Some(Ok(s)) => serve_conn(s, to, idle, events.clone(), out_rx, max_message).await,
                other => {
                    let why = match other {
                        Some(Err(e)) => e.to_string(),
                        _ => "timed out or bad name".into(),
                    };
                    tracing::info!(%to, name = %stream.name, error = %why, "outbound SIP TLS handshake failed");
                    let _ = events.send(StreamEvent::ConnectFailed(to)).await;
                }
            }
        }
        (Some(_), Transport::Tls, None) => {
            let _ = events.send(StreamEvent::ConnectFailed(to)).await;
        }
        (Some(tcp), _, _) => serve_conn(tcp, to, idle, events.clone(), out_rx, max_message).await,
    }
    let _ = events.send(StreamEvent::OutboundClosed(to)).await;
}

/// Reads framed messages from one TCP connection and writes the core's answers to it.
async fn serve_conn<S: tokio::io::AsyncRead + tokio::io::AsyncWrite>(
    stream: S,
    peer: SocketAddr,
    idle: Idle,
    events: mpsc::Sender<StreamEvent>,
    out_rx: mpsc::Receiver<Vec<u8>>,
    max_message: usize,
) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    serve_frames(&mut rd, &mut wr, peer, &idle, events, out_rx, max_message).await;
    // The slot goes before the socket: once the peer sees the close, its address's count is
    // already down, so a client that reconnects at once is not refused for this connection.
    drop(idle);
    drop((rd, wr));
}

/// [`serve_conn`]'s loop: frames in, the core's answers out, until close or idle timeout.
async fn serve_frames<S: tokio::io::AsyncRead + tokio::io::AsyncWrite>(
    rd: &mut tokio::io::ReadHalf<S>,
    wr: &mut tokio::io::WriteHalf<S>,
    peer: SocketAddr,
    idle: &Idle,
    events: mpsc::Sender<StreamEvent>,
    mut out_rx: mpsc::Receiver<Vec<u8>>,
    max_message: usize,
) {
    let limits = Limits { max_size: max_message, max_headers: usize::MAX };
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut deadline = tokio::time::Instant::now();
    let touch = |deadline: &mut tokio::time::Instant| match idle {
        Idle::Slot(slot) => slot.idle(),
        Idle::After(d) => *deadline = tokio::time::Instant::now() + *d,
    };
    touch(&mut deadline);
    loop {
        tokio::select! {
            _ = async {
                match idle {
                    Idle::Slot(slot) => { slot.closed().await; }
                    Idle::After(_) => tokio::time::sleep_until(deadline).await,
                }
            } => return,
            out = out_rx.recv() => match out {
                Some(bytes) => {
                    if matches!(idle, Idle::After(_)) {
                        touch(&mut deadline);
                    }
                    if wr.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                None => return,
            },
            r = rd.read(&mut chunk) => {
                let n = match r {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                loop {
                    // CRLF keep-alives between messages (RFC 5626 §3.5.1): answer with CRLF.
                    let skip = buf.iter().take_while(|b| **b == b'\r' || **b == b'\n').count();
                    if skip > 0 {
                        if buf[..skip].windows(4).any(|w| w == b"\r\n\r\n") {
                            let _ = wr.write_all(b"\r\n").await;
                        }
                        buf.drain(..skip);
                    }
                    match crate::wire::frame_len(&buf, limits) {
                        Ok(Some(len)) => {
                            let msg: Vec<u8> = buf.drain(..len).collect();
                            touch(&mut deadline);
                            if events.send(StreamEvent::Message(peer, msg)).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        // Unframeable: the stream cannot be resynchronised; close it.
                        Err(_) => return,
                    }
                }
            }
        }
    }
}
