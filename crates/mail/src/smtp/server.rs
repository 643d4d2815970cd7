//! The SMTP and submission listeners: a thin tokio driver around [`Session`]. It reads bounded
//! lines (replies are flushed only when no pipelined input is waiting, RFC 2920), upgrades to
//! TLS on STARTTLS (discarding anything pipelined after it, RFC 3207 §6), stores accepted
//! messages before answering `250` (local recipients into their Maildir, others into the
//! queue, both fsynced), and applies netkit's connection policy plus the RFC 5321 §4.5.3.2
//! timeouts (a command within `command_timeout`, each data line within `data_timeout`).

use super::client::Io;
use super::session::{Action, Directory, Envelope, Expecting, Port, Session, SessionParams};
use crate::access::LoginGuard;
use crate::config::MailConfig;
use crate::local::deliver_local;
use crate::queue::Queue;
use crate::users::Users;
use appnet_netkit::Shutdown;
use appnet_netkit::accept::{Accepted, Acceptor, ConnSlot};
use appnet_netkit::acl::AccessList;
use appnet_netkit::lines::{Line, read_line_bounded};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What every session of one server shares.
pub struct Shared {
    /// The configuration.
    pub config: Arc<MailConfig>,
    /// The users, reloaded when `DIR/users` changes.
    pub users: UsersCache,
    /// The outbound queue.
    pub queue: Arc<Queue>,
    /// Relay networks.
    pub relay: AccessList,
    /// STARTTLS, when configured.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Failed AUTHs per client address (shared with POP3 and IMAP's policy: lock-out).
    pub guard: Mutex<LoginGuard>,
}

/// The users file's modification time and size, to notice changes.
type Stamp = Option<(SystemTime, u64)>;

/// The users file, re-read when its modification time or size changes (after `mail user add`).
pub struct UsersCache {
    path: PathBuf,
    root: PathBuf,
    current: Mutex<(Stamp, Arc<Users>)>,
}

impl UsersCache {
    /// Loads `root/users` (missing: no users).
    pub fn new(root: &std::path::Path) -> Result<UsersCache, crate::MailError> {
        let users = Users::load(root)?;
        let cache = UsersCache {
            path: root.join("users"),
            root: root.to_path_buf(),
            current: Mutex::new((None, Arc::new(users))),
        };
        let stamp = cache.stamp();
        cache.current.lock().unwrap_or_else(|p| p.into_inner()).0 = stamp;
        Ok(cache)
    }

    fn stamp(&self) -> Stamp {
        let m = std::fs::metadata(&self.path).ok()?;
        Some((m.modified().ok()?, m.len()))
    }

    /// The current users (a cheap `stat` decides whether to re-read the file).
    pub fn get(&self) -> Arc<Users> {
        let stamp = self.stamp();
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if cur.0 != stamp {
            match Users::load(&self.root) {
                Ok(u) => *cur = (stamp, Arc::new(u)),
                Err(e) => tracing::warn!("keeping the previous users: {e}"),
            }
        }
        cur.1.clone()
    }
}

struct View<'a> {
    config: &'a MailConfig,
    users: &'a Users,
    guard: &'a Mutex<LoginGuard>,
    peer: std::net::IpAddr,
}

impl Directory for View<'_> {
    fn is_local_domain(&self, domain: &str) -> bool {
        self.config.is_local_domain(domain)
    }
    fn user_exists(&self, address: &str) -> bool {
        self.users.exists(address)
    }
    /// A locked-out address fails whatever it sends; every failure counts towards the lock.
    fn verify(&self, address: &str, password: &str) -> bool {
        let now = std::time::Instant::now();
        let mut guard = self.guard.lock().unwrap_or_else(|p| p.into_inner());
        if guard.check(self.peer, now).is_err() {
            tracing::info!(peer = %self.peer, "AUTH from a locked-out address");
            return false;
        }
        if self.users.verify(address, password) {
            guard.success(self.peer);
            true
        } else {
            guard.failure(self.peer, now);
            false
        }
    }
}

/// Serves `port` sessions on `listener` until shutdown.
pub async fn serve(listener: TcpListener, port: Port, shared: Arc<Shared>, shutdown: Shutdown) {
    let acceptor = Acceptor::with_limits(listener, shared.config.conn_limits());
    while let Some(accepted) = acceptor.next(&shutdown).await {
        match accepted {
            Accepted::Conn(stream, peer, slot) => {
                let (shared, sd) = (shared.clone(), shutdown.clone());
                shutdown.spawn(async move {
                    if let Err(e) = session(stream, peer, slot, port, &shared, &sd).await {
                        tracing::debug!(%peer, "SMTP session ended: {e}");
                    }
                });
            }
            Accepted::OverCap(mut stream, peer) => {
                let host = shared.config.hostname();
                tracing::info!(%peer, "SMTP connection cap reached; refusing");
                shutdown.spawn(async move {
                    let msg = format!("421 4.7.0 {host} Too many connections, try again later\r\n");
                    let _ =
                        tokio::time::timeout(Duration::from_secs(2), stream.write_all(msg.as_bytes())).await;
                });
            }
        }
    }
}

/// How a conversation phase ended.
enum Next {
    Close,
    StartTls,
}

async fn session(
    stream: TcpStream,
    peer: SocketAddr,
    slot: ConnSlot,
    port: Port,
    shared: &Shared,
    shutdown: &Shutdown,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let config = &shared.config;
    let params = SessionParams {
        port,
        hostname: config.hostname(),
        peer: peer.ip(),
        relay_allowed: shared.relay.contains(peer.ip()),
        tls_offered: shared.tls.is_some(),
        allow_plain_auth: config.allow_plain_auth,
        max_message_size: config.max_message_size,
        max_recipients: config.max_recipients.max(1),
        max_errors: config.max_errors,
        max_auth_failures: config.max_auth_failures,
        session_id: format!("{:012X}", rand::random::<u64>() >> 16),
    };
    let mut session = Session::new(params);
    let boxed: Box<dyn Io> = Box::new(stream);
    let mut io = BufReader::new(boxed);
    let mut out = session.greeting().into_bytes();
    loop {
        match converse(&mut io, &mut out, &mut session, &slot, shared, shutdown).await? {
            Next::Close => {
                let _ = io.get_mut().shutdown().await;
                return Ok(());
            }
            Next::StartTls => {
                let Some(tls) = shared.tls.clone() else { return Ok(()) };
                if !io.buffer().is_empty() {
                    tracing::info!(%peer, "discarding input pipelined after STARTTLS");
                }
                let old =
                    std::mem::replace(&mut io, BufReader::new(Box::new(tokio::io::empty()) as Box<dyn Io>));
                let raw = old.into_inner();
                let accept = tokio_rustls::TlsAcceptor::from(tls).accept(raw);
                let stream = match tokio::time::timeout(Duration::from_secs(10), accept).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return Err(e),
                    Err(_) => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "TLS handshake timed out",
                        ));
                    }
                };
                io = BufReader::new(Box::new(stream));
                session.tls_started();
            }
        }
    }
}

async fn converse(
    io: &mut BufReader<Box<dyn Io>>,
    out: &mut Vec<u8>,
    session: &mut Session,
    slot: &ConnSlot,
    shared: &Shared,
    shutdown: &Shutdown,
) -> std::io::Result<Next> {
    let config = &shared.config;
    let mut line = Vec::with_capacity(1024);
    let max = config.max_line.max(512) + 1;
    let mut first = true;
    loop {
        if io.buffer().is_empty() && !out.is_empty() {
            io.get_mut().write_all(out).await?;
            io.get_mut().flush().await?;
            out.clear();
        }
        let timeout = match session.expecting() {
            Expecting::Data => config.data_timeout(),
            _ => config.command_timeout(),
        };
        // Deadlines only when a read may wait: a line already buffered (pipelining, DATA) is
        // read at once, without touching the shared connection table.
        let waits = !io.buffer().contains(&b'\n');
        if waits && !first {
            slot.idle_for(timeout);
        }
        first = false;
        let read = tokio::select! {
            r = read_line_bounded(io, &mut line, max) => r?,
            _ = slot.closed() => {
                let msg = format!("421 4.4.2 {} Error: timeout exceeded\r\n", config.hostname());
                let _ = io.get_mut().write_all(msg.as_bytes()).await;
                return Ok(Next::Close);
            }
            _ = shutdown.wait() => {
                let msg = format!("421 4.3.2 {} Service shutting down\r\n", config.hostname());
                let _ = io.get_mut().write_all(msg.as_bytes()).await;
                return Ok(Next::Close);
            }
        };
        if waits {
            slot.busy();
        }
        let actions = match read {
            Line::Complete => {
                let users = shared.users.get();
                let view = View { config, users: &users, guard: &shared.guard, peer: slot.ip() };
                session.on_line(&line, SystemTime::now(), &view)
            }
            Line::TooLong => {
                if tokio::time::timeout(timeout, skip_rest_of_line(io)).await.is_err() {
                    return Ok(Next::Close);
                }
                session.on_long_line()
            }
            Line::Eof => return Ok(Next::Close),
        };
        let mut queue = std::collections::VecDeque::from(actions);
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Reply(text) => out.extend_from_slice(text.as_bytes()),
                Action::StartTls => {
                    io.get_mut().write_all(out).await?;
                    io.get_mut().flush().await?;
                    out.clear();
                    return Ok(Next::StartTls);
                }
                Action::Deliver(env) => {
                    let id = env.id.clone();
                    let result = store(shared, *env).await;
                    queue.extend(session.delivered(&id, result));
                }
                Action::AuthDelay => {
                    io.get_mut().write_all(out).await?;
                    io.get_mut().flush().await?;
                    out.clear();
                    tokio::time::sleep(Duration::from_secs(config.auth_failure_delay_secs)).await;
                }
                Action::ReadChunk { size, last } => {
                    let too_big = size > session.max_chunk();
                    let mut data = Vec::new();
                    let sink = if too_big { None } else { Some(&mut data) };
                    if !read_chunk(io, size, sink, config.data_timeout()).await? {
                        return Ok(Next::Close);
                    }
                    queue.extend(session.on_chunk(&data, too_big, last, SystemTime::now()));
                }
                Action::SkipChunk(size) => {
                    if !read_chunk(io, size, None, config.data_timeout()).await? {
                        return Ok(Next::Close);
                    }
                }
                Action::Close => {
                    io.get_mut().write_all(out).await?;
                    io.get_mut().flush().await?;
                    out.clear();
                    return Ok(Next::Close);
                }
            }
        }
    }
}

/// Reads exactly `size` octets of a BDAT chunk into `sink` (or drops them); each read must
/// make progress within `timeout`. `false` when the client went away or stalled.
async fn read_chunk(
    io: &mut BufReader<Box<dyn Io>>,
    size: usize,
    mut sink: Option<&mut Vec<u8>>,
    timeout: Duration,
) -> std::io::Result<bool> {
    use tokio::io::AsyncBufReadExt;
    let mut left = size;
    if let Some(buf) = sink.as_deref_mut() {
        buf.reserve(size.min(1 << 20));
    }
    while left > 0 {
        let available = match tokio::time::timeout(timeout, io.fill_buf()).await {
            Ok(r) => r?,
            Err(_) => return Ok(false),
        };
        if available.is_empty() {
            return Ok(false);
        }
        let n = available.len().min(left);
        if let Some(buf) = sink.as_deref_mut() {
            buf.extend_from_slice(&available[..n]);
        }
        io.consume(n);
        left -= n;
    }
    Ok(true)
}

/// After an over-long line, reads and drops the rest of it (up to and including its LF).
async fn skip_rest_of_line(io: &mut BufReader<Box<dyn Io>>) -> std::io::Result<()> {
    use tokio::io::AsyncBufReadExt;
    loop {
        let available = io.fill_buf().await?;
        if available.is_empty() {
            return Ok(());
        }
        match available.iter().position(|&b| b == b'\n') {
            Some(i) => {
                io.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = available.len();
                io.consume(n);
            }
        }
    }
}

/// Stores an accepted message: remote recipients into the queue, local ones into their
/// Maildirs; `Ok` only when everything is on disk.
async fn store(shared: &Shared, env: Envelope) -> Result<(), String> {
    let config = shared.config.clone();
    let queue = shared.queue.clone();
    let users = shared.users.get();
    tokio::task::spawn_blocking(move || {
        let remote: Vec<String> = env.rcpts.iter().filter(|r| !r.local).map(|r| r.address.clone()).collect();
        if !remote.is_empty() {
            queue.enqueue(&env.id, &env.from, &remote, &env.data).map_err(|e| format!("queue: {e}"))?;
        }
        for r in env.rcpts.iter().filter(|r| r.local) {
            deliver_local(&config.root, &users, &r.address, &env.data).map_err(|e| format!("<{}>: {e}", r.address))?;
        }
        tracing::info!(id = %env.id, from = %env.from, rcpts = env.rcpts.len(), local = env.rcpts.len() - remote.len(), "message accepted");
        Ok(())
    })
    .await
    .map_err(|e| format!("delivery task failed: {e}"))?
}
