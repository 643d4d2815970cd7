//! The FTP server: a thin tokio driver around [`crate::session::Session`]. One task per control
//! connection (admitted by netkit's Acceptor: sessions per address, login and idle deadlines,
//! eviction of waiting sessions when full); each transfer runs as its own task
//! ([`crate::transfer`]) so the control connection keeps answering STAT, ABOR and NOOP.

use crate::config::FtpConfig;
use crate::fs::Root;
use crate::session::{Action, DataTarget, FsOp, LoggedIn, Session, greeting};
use crate::transfer::{self, Job, Limits};
use crate::wire::addr::{format_epsv, format_pasv};
use crate::wire::command::Command;
use crate::wire::reply::Reply;
use crate::wire::strip_telnet;
use appnet_netkit::accept::{Accepted, Acceptor, ConnSlot};
use appnet_netkit::listen::{ListenOpts, bind_tcp};
use appnet_netkit::metrics::{Counter, Gauge, Registry};
use appnet_netkit::{BoxError, Service, Shutdown};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long in-flight sessions get to finish after shutdown.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// A bound FTP server, ready to [`run`](Service::run).
pub struct FtpServer {
    listener: TcpListener,
    shared: Arc<Shared>,
}

struct Shared {
    config: FtpConfig,
    failures: std::sync::Mutex<crate::throttle::LoginFailures>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    tls_note: Option<String>,
    stats: Stats,
}

#[derive(Clone)]
struct Stats {
    registry: Registry,
    sessions: Counter,
    busy: Counter,
    logins: Counter,
    login_failures: Counter,
    bytes_sent: Counter,
    bytes_received: Counter,
    open: Gauge,
}

impl Stats {
    fn new() -> Stats {
        let r = Registry::new();
        Stats {
            sessions: r.counter("ftp_sessions_total", "Control connections admitted.", &[]),
            busy: r.counter("ftp_busy_total", "Control connections refused at the cap (421).", &[]),
            logins: r.counter("ftp_logins_total", "Successful logins.", &[]),
            login_failures: r.counter("ftp_login_failures_total", "Failed logins.", &[]),
            bytes_sent: r.counter("ftp_bytes_sent_total", "File and listing bytes sent.", &[]),
            bytes_received: r.counter("ftp_bytes_received_total", "Upload bytes received.", &[]),
            open: r.gauge("ftp_open_sessions", "Control connections open now.", &[]),
            registry: r,
        }
    }
}

impl FtpServer {
    /// Checks the root, sets up TLS if asked, and binds the control listener.
    pub async fn bind(config: FtpConfig) -> io::Result<FtpServer> {
        Root::open(&config.root)?;
        let listener = bind_tcp(config.listen, &ListenOpts::default())?;
        let addr = listener.local_addr()?;
        let (tls, tls_note) = if config.tls {
            let (cfg, note) = appnet_netkit::tls::listener_config(
                config.tls_cert.as_deref(),
                config.tls_key.as_deref(),
                config.ca_dir.as_deref(),
                addr,
                &[],
                &[],
            )
            .map_err(|e| io::Error::other(e.to_string()))?;
            (Some(tokio_rustls::TlsAcceptor::from(cfg)), note)
        } else {
            (None, None)
        };
        let failures =
            std::sync::Mutex::new(crate::throttle::LoginFailures::new(config.max_login_failures_per_ip));
        Ok(FtpServer {
            listener,
            shared: Arc::new(Shared { config, failures, tls, tls_note, stats: Stats::new() }),
        })
    }

    /// How clients trust the lab CA certificate (with `--tls` and no certificate given).
    pub fn tls_note(&self) -> Option<&str> {
        self.shared.tls_note.as_deref()
    }

    /// The server's counters in Prometheus text format.
    pub fn metrics(&self) -> Registry {
        self.shared.stats.registry.clone()
    }
}

impl Service for FtpServer {
    fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.shared.config.listen)
    }

    async fn run(self, shutdown: Shutdown) -> Result<(), BoxError> {
        let acceptor = Acceptor::with_limits(self.listener, self.shared.config.conn_limits());
        while let Some(accepted) = acceptor.next(&shutdown).await {
            let (stream, peer, slot) = match accepted {
                Accepted::Conn(stream, peer, slot) => (stream, peer, slot),
                Accepted::OverCap(mut stream, peer) => {
                    self.shared.stats.busy.inc();
                    tracing::info!(%peer, "session cap reached; refusing");
                    shutdown.spawn(async move {
                        let msg = b"421 Too many sessions from your address or in all; try again later.\r\n";
                        let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(msg)).await;
                    });
                    continue;
                }
            };
            if self.shared.guessing(peer.ip()) {
                self.shared.stats.busy.inc();
                tracing::info!(%peer, "refused: too many failed logins from this address");
                let mut stream = stream;
                shutdown.spawn(async move {
                    let msg = b"421 Too many failed logins from your address; try again later.\r\n";
                    let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(msg)).await;
                    drop(slot);
                });
                continue;
            }
            let shared = self.shared.clone();
            let sd = shutdown.clone();
            shutdown.spawn(async move {
                shared.stats.sessions.inc();
                shared.stats.open.inc();
                if let Err(e) = serve(stream, peer, &slot, &shared, &sd).await {
                    tracing::debug!(%peer, "session ended: {e}");
                }
                shared.stats.open.dec();
                drop(slot);
            });
        }
        drop(acceptor);
        if !shutdown.drain(DRAIN_DEADLINE).await {
            tracing::warn!("ftp: sessions still open after the drain deadline");
        }
        Ok(())
    }
}

impl Shared {
    fn failures(&self) -> std::sync::MutexGuard<'_, crate::throttle::LoginFailures> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `ip` used up its failed logins (across connections).
    fn guessing(&self, ip: IpAddr) -> bool {
        self.failures().blocked(crate::session::canonical(ip), Instant::now())
    }
}

/// The control connection's byte stream (plain, or TLS after AUTH TLS).
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Cancel-safe line reading: bytes stay in `buf` across cancelled reads.
struct Lines {
    buf: Vec<u8>,
    max: usize,
    skipping: bool,
}

enum Line {
    Complete(Vec<u8>),
    TooLong,
    Eof,
}

impl Lines {
    async fn next(&mut self, io: &mut (dyn Io + '_)) -> io::Result<Line> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if std::mem::take(&mut self.skipping) {
                    return Ok(Line::TooLong);
                }
                return Ok(Line::Complete(line));
            }
            if self.buf.len() > self.max {
                self.buf.clear();
                self.skipping = true;
            }
            let mut chunk = [0u8; 4096];
            let n = io.read(&mut chunk).await?;
            if n == 0 {
                return Ok(Line::Eof);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A transfer in progress.
struct Running {
    replies: mpsc::UnboundedReceiver<Reply>,
    cancel: CancellationToken,
    progress: Arc<AtomicU64>,
    started: Instant,
    what: String,
    aborted: bool,
}

struct Conn<'a> {
    io: Box<dyn Io + 'a>,
    lines: Lines,
    session: Session,
    root: Option<Arc<Root>>,
    passive: Option<TcpListener>,
    running: Option<Running>,
    peer: SocketAddr,
    local: SocketAddr,
    shared: &'a Shared,
    started: Instant,
}

async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    slot: &ConnSlot,
    shared: &Shared,
    shutdown: &Shutdown,
) -> io::Result<()> {
    let local = stream.local_addr()?;
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        io: Box::new(control::Control(stream)),
        lines: Lines { buf: Vec::new(), max: shared.config.max_line, skipping: false },
        session: Session::new(shared.config.policy(), peer.ip()),
        root: None,
        passive: None,
        running: None,
        peer,
        local,
        shared,
        started: Instant::now(),
    };
    conn.send(&greeting()).await?;
    loop {
        enum Ev {
            Line(io::Result<Line>),
            Transfer(Option<Reply>),
            Closed,
            Shutdown,
        }
        let ev = {
            let has_running = conn.running.is_some();
            let running = conn.running.as_mut();
            tokio::select! {
                l = conn.lines.next(conn.io.as_mut()) => Ev::Line(l),
                r = async { match running { Some(r) => r.replies.recv().await, None => std::future::pending().await } } => Ev::Transfer(r),
                _ = slot.closed() => Ev::Closed,
                _ = shutdown.wait(), if !has_running => Ev::Shutdown,
            }
        };
        match ev {
            Ev::Line(Ok(Line::Complete(raw))) => {
                slot.busy();
                let stop = conn.command(&raw).await?;
                if stop {
                    let _ = conn.io.shutdown().await;
                    return Ok(());
                }
                conn.rest(slot);
            }
            Ev::Line(Ok(Line::TooLong)) => {
                conn.send(&Reply::new(500, "Command line too long.")).await?;
            }
            Ev::Line(Ok(Line::Eof)) | Ev::Line(Err(_)) => {
                if let Some(r) = conn.running.take() {
                    r.cancel.cancel();
                }
                return Ok(());
            }
            Ev::Transfer(reply) => {
                conn.transfer_event(reply).await?;
                conn.rest(slot);
            }
            Ev::Closed => {
                let _ = conn.send(&Reply::new(421, "Timeout: closing the control connection.")).await;
                return Ok(());
            }
            Ev::Shutdown => {
                let _ = conn.send(&Reply::new(421, "Server shutting down.")).await;
                return Ok(());
            }
        }
    }
}

impl Conn<'_> {
    /// Sets the deadline for the next command: none while a transfer runs, the login timeout
    /// (counted from the first byte of the session, not reset by each command) until logged
    /// in, the idle timeout after.
    fn rest(&self, slot: &ConnSlot) {
        if self.running.is_some() {
            slot.busy();
        } else if self.session.user().is_none() {
            let login = Duration::from_secs(self.shared.config.login_timeout_secs.max(1));
            slot.idle_for(login.saturating_sub(self.started.elapsed()).max(Duration::from_millis(1)));
        } else {
            slot.idle();
        }
    }

    async fn send(&mut self, reply: &Reply) -> io::Result<()> {
        let bytes = reply.encode();
        tokio::time::timeout(Duration::from_secs(60), async {
            self.io.write_all(&bytes).await?;
            self.io.flush().await
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "client does not read replies"))?
    }

    /// A reply (or the end) from the running transfer.
    async fn transfer_event(&mut self, reply: Option<Reply>) -> io::Result<()> {
        match reply {
            Some(r) => self.send(&r).await,
            None => {
                if let Some(r) = self.running.take()
                    && r.aborted
                {
                    self.send(&Reply::new(226, "ABOR successful.")).await?;
                }
                Ok(())
            }
        }
    }

    /// Waits for the running transfer to finish, relaying its replies.
    async fn finish_transfer(&mut self) -> io::Result<()> {
        while self.running.is_some() {
            let next = match self.running.as_mut() {
                Some(r) => r.replies.recv().await,
                None => None,
            };
            self.transfer_event(next).await?;
        }
        Ok(())
    }

    /// Handles one command line; `true` when the connection should close.
    async fn command(&mut self, raw: &[u8]) -> io::Result<bool> {
        let line = strip_telnet(raw);
        let parsed = crate::wire::parse_line(raw);
        if let Ok(cmd) = &parsed {
            tracing::trace!(peer = %self.peer, "<- {}", if matches!(cmd, Command::Pass(_)) { "PASS ****".into() } else { String::from_utf8_lossy(&line).into_owned() });
        }
        // During a transfer: ABOR and STAT are answered at once; QUIT aborts; others wait.
        if self.running.is_some() {
            match &parsed {
                Ok(Command::Abor) => {
                    if let Some(r) = self.running.as_mut() {
                        r.aborted = true;
                        r.cancel.cancel();
                    }
                    self.finish_transfer().await?;
                    return Ok(false);
                }
                Ok(Command::Stat(None)) => {
                    let r = self.running.as_ref().expect("checked above");
                    let body = vec![
                        format!(" Transfer in progress: {}", r.what),
                        format!(
                            " {} bytes transferred in {:.1} s",
                            r.progress.load(Ordering::Relaxed),
                            r.started.elapsed().as_secs_f64()
                        ),
                    ];
                    self.send(&Reply::multi(213, "Status follows:", body, "End of status")).await?;
                    return Ok(false);
                }
                Ok(Command::Noop) => {
                    self.send(&Reply::new(200, "NOOP ok.")).await?;
                    return Ok(false);
                }
                Ok(Command::Quit) => {
                    if let Some(r) = self.running.as_ref() {
                        r.cancel.cancel();
                    }
                    self.finish_transfer().await?;
                }
                _ => self.finish_transfer().await?,
            }
        }
        let actions = match parsed {
            Ok(cmd) => self.session.handle(cmd, Instant::now()),
            Err(e) => self.session.parse_error(&e),
        };
        self.perform(actions).await
    }

    /// Carries out the session's actions (and those they lead to).
    async fn perform(&mut self, actions: Vec<Action>) -> io::Result<bool> {
        let mut queue: std::collections::VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Reply(r) => self.send(&r).await?,
                Action::Close => return Ok(true),
                Action::Delay(d) => tokio::time::sleep(d).await,
                Action::Verify { user, password } => {
                    let file = self.shared.config.users.clone();
                    let name = user.clone();
                    let home = tokio::task::spawn_blocking(move || {
                        let users = match file.as_deref().map(crate::users::load)? {
                            Ok(users) => users,
                            Err(e) => {
                                tracing::warn!("cannot read the users file: {e}");
                                return None;
                            }
                        };
                        crate::users::verify(&users, &name, &password)
                    })
                    .await
                    .unwrap_or(None);
                    let failed = home.is_none();
                    if failed {
                        self.shared.stats.login_failures.inc();
                        tracing::info!(peer = %self.peer, %user, "failed login");
                        self.shared
                            .failures()
                            .record(crate::session::canonical(self.peer.ip()), Instant::now());
                    }
                    let next = self.session.login_result(user, home, Instant::now());
                    if failed && self.shared.guessing(self.peer.ip()) {
                        let delay = Duration::from_millis(self.shared.config.login_failure_delay_ms);
                        queue.extend([
                            Action::Delay(delay),
                            Action::Reply(Reply::new(
                                421,
                                "Too many failed logins from your address; try again later.",
                            )),
                            Action::Close,
                        ]);
                    } else {
                        queue.extend(next);
                    }
                }
                Action::SetRoot(who) => match who {
                    None => {
                        self.root = None;
                        self.passive = None;
                        self.started = Instant::now();
                    }
                    Some(LoggedIn { home, name, .. }) => match Root::open(&home) {
                        Ok(root) => {
                            self.shared.stats.logins.inc();
                            tracing::info!(peer = %self.peer, user = %name, "logged in");
                            self.root = Some(Arc::new(root));
                        }
                        Err(e) => {
                            tracing::warn!(user = %name, "home {} cannot be opened: {e}", home.display());
                            self.send(&Reply::new(421, "Your home directory is not available.")).await?;
                            return Ok(true);
                        }
                    },
                },
                Action::OpenPassive { extended } => {
                    let r = self.open_passive(extended).await;
                    self.send(&r).await?;
                }
                Action::DropPassive => self.passive = None,
                Action::Fs(op) => {
                    let r = self.fs(op).await;
                    queue.extend(r);
                }
                Action::Transfer { transfer, target, ascii } => self.start_transfer(transfer, target, ascii),
                Action::StartTls => {
                    if !self.start_tls().await {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }

    async fn fs(&mut self, op: FsOp) -> Vec<Action> {
        let Some(root) = self.root.clone() else {
            return vec![Action::Reply(Reply::new(530, "Please login with USER and PASS."))];
        };
        let op2 = op.clone();
        let result = tokio::task::spawn_blocking(move || root.run_op(&op2))
            .await
            .unwrap_or_else(|_| Err(crate::session::FsError::Other("Internal error.".into())));
        self.session.fs_done(op, result, unix_now())
    }

    async fn open_passive(&mut self, extended: bool) -> Reply {
        self.passive = None;
        let ip = self.local.ip();
        let listener = crate::passive::listener(ip, self.shared.config.passive_ports);
        let Some(listener) = listener else {
            return Reply::new(425, "No passive port is free; try again later.");
        };
        let port = match listener.local_addr() {
            Ok(a) => a.port(),
            Err(_) => return Reply::new(425, "Cannot open a passive port."),
        };
        self.passive = Some(listener);
        if extended {
            return Reply::new(229, format!("Entering Extended Passive Mode {}.", format_epsv(port)));
        }
        let announce = match (self.shared.config.passive_address, crate::session::canonical(ip)) {
            (Some(IpAddr::V4(a)), _) | (None, IpAddr::V4(a)) => a,
            _ => return Reply::new(522, "PASV needs IPv4; use EPSV."),
        };
        Reply::new(227, format!("Entering Passive Mode ({}).", format_pasv(announce, port)))
    }

    fn start_transfer(&mut self, transfer: crate::session::Transfer, target: DataTarget, ascii: bool) {
        let Some(root) = self.root.clone() else { return };
        let (tx, rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let progress = Arc::new(AtomicU64::new(0));
        let c = &self.shared.config;
        let what = match &transfer {
            crate::session::Transfer::Retr { path, .. } => {
                format!("RETR {}", crate::session::path::display(path))
            }
            crate::session::Transfer::Store { path, .. } => {
                format!("STOR {}", crate::session::path::display(path))
            }
            crate::session::Transfer::List { path, .. } => {
                format!("LIST {}", crate::session::path::display(path))
            }
        };
        let passive = if target == DataTarget::Passive { self.passive.take() } else { None };
        let job = Job {
            transfer,
            target,
            ascii,
            root,
            peer_ip: self.peer.ip(),
            local: self.local,
            passive,
            limits: Limits {
                connect_timeout: Duration::from_secs(c.data_connect_timeout_secs.max(1)),
                stall_timeout: Duration::from_secs(c.data_stall_timeout_secs.max(1)),
                max_upload: c.max_upload,
                min_free_space: c.min_free_space,
            },
            tls: if self.session.prot_private() { self.shared.tls.clone() } else { None },
            progress: progress.clone(),
            cancel: cancel.clone(),
            replies: tx,
            now_secs: unix_now(),
            writable: self.session.user().is_some_and(|u| u.write),
        };
        let stats = self.shared.stats.clone();
        let (peer, user, label) = (self.peer, self.session.user().map(|u| u.name.clone()), what.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let done = transfer::run(job).await;
            stats.bytes_sent.add(done.sent);
            stats.bytes_received.add(done.received);
            tracing::info!(
                %peer,
                user = user.as_deref().unwrap_or("-"),
                sent = done.sent,
                received = done.received,
                secs = started.elapsed().as_secs_f64(),
                "{label}"
            );
        });
        self.running =
            Some(Running { replies: rx, cancel, progress, started: Instant::now(), what, aborted: false });
    }

    /// AUTH TLS: the handshake on the control connection; `false` if it failed.
    async fn start_tls(&mut self) -> bool {
        let Some(acceptor) = self.shared.tls.clone() else { return false };
        if !self.lines.buf.is_empty() {
            // Commands pipelined after AUTH would be read in the clear: refuse.
            return false;
        }
        let plain: Box<dyn Io + '_> = std::mem::replace(&mut self.io, Box::new(empty::EmptyDuplex));
        match tokio::time::timeout(Duration::from_secs(30), acceptor.accept(plain)).await {
            Ok(Ok(tls)) => {
                self.io = Box::new(tls);
                true
            }
            _ => false,
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// A stand-in stream for the moment the control connection is handed to the TLS handshake.
mod empty {
    use super::*;
    use std::task::{Context, Poll};

    pub struct EmptyDuplex;

    impl AsyncRead for EmptyDuplex {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for EmptyDuplex {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
            Poll::Ready(Err(io::ErrorKind::NotConnected.into()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }
}

/// The control connection's TCP stream, read so that Telnet Synch (urgent data) cannot stall it.
mod control {
    use super::*;
    use std::task::{Context, Poll};

    /// A read that stops at the urgent mark returns short while more bytes wait; tokio takes a
    /// short read to mean "drained" and waits for the next edge, which never comes (lftp's
    /// `IAC IP IAC` + urgent `DM` + `ABOR` would hang). So every read first tries the socket
    /// directly, and only waits for readiness when the socket says it would block.
    pub struct Control(pub TcpStream);

    impl AsyncRead for Control {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let me = self.get_mut();
            match me.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    Poll::Ready(Ok(()))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Pin::new(&mut me.0).poll_read(cx, buf),
                Err(e) => Poll::Ready(Err(e)),
            }
        }
    }

    impl AsyncWrite for Control {
        fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.get_mut().0).poll_write(cx, data)
        }
        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().0).poll_flush(cx)
        }
        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
        }
    }
}
