//! What the mailbox access servers (POP3 and IMAP) share: the user directory (reloaded when
//! `DIR/users` changes, so `mail user add` needs no restart), the failed-login guard, TLS, and
//! their limits.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::users::Users;

/// Limits of the POP3 and IMAP servers (defaults in [`AccessLimits::default`]).
#[derive(Clone, Debug)]
pub struct AccessLimits {
    /// Most connections at once, per listener.
    pub max_connections: usize,
    /// Most connections from one client address, per listener.
    pub max_per_ip: usize,
    /// Seconds a new connection has to log in.
    pub login_timeout: Duration,
    /// POP3's inactivity autologout (RFC 1939 §3: at least 10 minutes).
    pub pop3_idle_timeout: Duration,
    /// IMAP's inactivity autologout (RFC 3501 §5.4: at least 30 minutes; also bounds IDLE).
    pub imap_idle_timeout: Duration,
    /// Bad commands one session may send before it is disconnected.
    pub max_errors: u32,
    /// Failed logins one session may make before it is disconnected.
    pub max_auth_failures: u32,
    /// How long each failed login is answered late.
    pub auth_failure_delay: Duration,
    /// Failed logins from one client address within `lockout` after which that address may
    /// not log in until `lockout` has passed since its last failure.
    pub lockout_failures: u32,
    /// The lock-out period.
    pub lockout: Duration,
    /// Largest IMAP command with its literals (APPEND's message included), in bytes.
    pub max_message_size: usize,
    /// Most IMAP sessions one user may have at once.
    pub max_sessions_per_user: usize,
}

impl Default for AccessLimits {
    fn default() -> Self {
        AccessLimits {
            max_connections: 512,
            max_per_ip: 16,
            login_timeout: Duration::from_secs(60),
            pop3_idle_timeout: Duration::from_secs(600),
            imap_idle_timeout: Duration::from_secs(1800),
            max_errors: 10,
            max_auth_failures: 3,
            auth_failure_delay: Duration::from_secs(2),
            lockout_failures: 10,
            lockout: Duration::from_secs(300),
            max_message_size: 25 << 20,
            max_sessions_per_user: 10,
        }
    }
}

impl AccessLimits {
    /// The limits the `[mail]` settings give POP3 and IMAP.
    pub fn from_config(c: &crate::config::MailConfig) -> AccessLimits {
        AccessLimits {
            max_connections: c.max_connections.max(1),
            max_per_ip: c.max_per_ip.max(1),
            login_timeout: Duration::from_secs(c.greeting_timeout_secs.max(1)),
            pop3_idle_timeout: Duration::from_secs(c.pop3_idle_timeout_secs.max(1)),
            imap_idle_timeout: Duration::from_secs(c.imap_idle_timeout_secs.max(1)),
            max_errors: c.max_errors.max(1),
            max_auth_failures: c.max_auth_failures.max(1),
            auth_failure_delay: Duration::from_secs(c.auth_failure_delay_secs),
            lockout_failures: c.login_lockout_failures.max(1),
            lockout: Duration::from_secs(c.login_lockout_secs),
            max_message_size: c.max_message_size,
            max_sessions_per_user: c.max_imap_sessions_per_user.max(1),
        }
    }
}

/// Everything a POP3 or IMAP session needs from its server.
pub struct AccessContext {
    /// The mail root (`users`, `mail/<domain>/<user>/`).
    pub root: PathBuf,
    /// The server's name in greetings.
    pub hostname: String,
    /// STARTTLS/STLS configuration (`None`: not offered).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Whether passwords may be sent without TLS.
    pub allow_plain_auth: bool,
    /// The limits.
    pub limits: AccessLimits,
    /// The users, reloaded when the file changes.
    pub users: UserDirectory,
    /// Failed logins per client address.
    pub guard: Mutex<LoginGuard>,
    /// Open IMAP sessions per user.
    pub sessions: Mutex<HashMap<String, usize>>,
}

impl AccessContext {
    /// A context for the mail root `root`.
    pub fn new(
        root: &Path,
        hostname: &str,
        tls: Option<Arc<rustls::ServerConfig>>,
        allow_plain_auth: bool,
        limits: AccessLimits,
    ) -> AccessContext {
        AccessContext {
            root: root.to_path_buf(),
            hostname: hostname.to_string(),
            tls,
            allow_plain_auth,
            guard: Mutex::new(LoginGuard::new(limits.lockout_failures, limits.lockout)),
            limits,
            users: UserDirectory::new(root),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Checks a login: `Ok(canonical address)`, or why not.
    pub fn login(
        &self,
        ip: IpAddr,
        user: &str,
        password: &str,
        now: Instant,
    ) -> Result<String, LoginRefused> {
        if let Err(left) = self.guard.lock().map(|g| g.check(ip, now)).unwrap_or(Ok(())) {
            return Err(LoginRefused::LockedOut(left));
        }
        let users = self.users.current();
        if users.verify(user, password) {
            if let Ok(mut g) = self.guard.lock() {
                g.success(ip);
            }
            Ok(users.canonical(user).unwrap_or_else(|| user.to_string()))
        } else {
            if let Ok(mut g) = self.guard.lock() {
                g.failure(ip, now);
            }
            Err(LoginRefused::BadCredentials)
        }
    }

    /// The Maildir of a logged-in user.
    pub fn maildir_of(&self, address: &str) -> Option<PathBuf> {
        let (local, domain) = crate::maildir::address_parts(address).ok()?;
        Some(crate::maildir::user_dir(&self.root, &domain, local))
    }
}

/// Why a login failed.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginRefused {
    /// Wrong user or password.
    BadCredentials,
    /// Too many failures from this address: try again after this long.
    LockedOut(Duration),
}

/// A file's modification time and size.
type FileStamp = (SystemTime, u64);

/// `DIR/users`, reloaded when its modification time or size changes.
pub struct UserDirectory {
    path: PathBuf,
    root: PathBuf,
    cached: Mutex<(Option<FileStamp>, Arc<Users>)>,
}

impl UserDirectory {
    /// The directory of the mail root `root` (nothing is read yet).
    pub fn new(root: &Path) -> UserDirectory {
        UserDirectory {
            path: root.join(crate::users::USERS_FILE),
            root: root.to_path_buf(),
            cached: Mutex::new((None, Arc::new(Users::default()))),
        }
    }

    /// The users as the file says now (the last good version if it became unreadable).
    pub fn current(&self) -> Arc<Users> {
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        let Ok(mut cached) = self.cached.lock() else { return Arc::new(Users::default()) };
        if cached.0 != stamp || stamp.is_none() {
            match Users::load(&self.root) {
                Ok(u) => *cached = (stamp, Arc::new(u)),
                Err(e) => tracing::warn!("{e}; keeping the previous users"),
            }
        }
        cached.1.clone()
    }
}

/// Failed logins per client address: after `max` failures, each less than `period` after the
/// previous, the address is locked out until `period` has passed since its last failure.
/// Sans-IO (the caller passes `now`); holds at most [`LoginGuard::CAP`] addresses.
#[derive(Debug)]
pub struct LoginGuard {
    max: u32,
    period: Duration,
    by_ip: HashMap<IpAddr, (u32, Instant)>,
}

impl LoginGuard {
    /// Most addresses remembered; the stalest are forgotten first beyond it.
    pub const CAP: usize = 10_000;

    /// A guard locking out after `max` failures for `period`.
    pub fn new(max: u32, period: Duration) -> LoginGuard {
        LoginGuard { max: max.max(1), period, by_ip: HashMap::new() }
    }

    /// `Err(time left)` while `ip` is locked out.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        match self.by_ip.get(&ip) {
            Some(&(n, last)) if n >= self.max && now.duration_since(last) < self.period => {
                Err(self.period - now.duration_since(last))
            }
            _ => Ok(()),
        }
    }

    /// Records a failed login of `ip`.
    pub fn failure(&mut self, ip: IpAddr, now: Instant) {
        if self.by_ip.len() >= Self::CAP && !self.by_ip.contains_key(&ip) {
            let period = self.period;
            self.by_ip.retain(|_, (_, last)| now.duration_since(*last) < period);
            if self.by_ip.len() >= Self::CAP
                && let Some(oldest) = self.by_ip.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| *k)
            {
                self.by_ip.remove(&oldest);
            }
        }
        let e = self.by_ip.entry(ip).or_insert((0, now));
        if now.duration_since(e.1) >= self.period {
            e.0 = 0;
        }
        *e = (e.0.saturating_add(1), now);
    }

    /// Forgets `ip`'s failures after a good login.
    pub fn success(&mut self, ip: IpAddr) {
        self.by_ip.remove(&ip);
    }
}

/// The user and password of a SASL PLAIN response (RFC 4616), base64 as sent; an authzid
/// naming someone other than the authcid is refused. `None` for anything malformed.
pub fn sasl_plain(b64: &str) -> Option<(String, String)> {
    use base64::Engine;
    let message = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
    let mut parts = message.split(|&b| b == 0);
    let (authzid, authcid, passwd) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || authcid.is_empty() || (!authzid.is_empty() && authzid != authcid) {
        return None;
    }
    Some((String::from_utf8(authcid.to_vec()).ok()?, String::from_utf8(passwd.to_vec()).ok()?))
}

/// A client connection before or after STARTTLS/STLS.
pub enum MailStream {
    /// Plain TCP.
    Plain(tokio::net::TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
}

impl MailStream {
    /// Runs the TLS handshake (bounded by `limit`) on a plain stream.
    pub async fn start_tls(
        self,
        config: Arc<rustls::ServerConfig>,
        limit: Duration,
    ) -> std::io::Result<MailStream> {
        match self {
            MailStream::Plain(tcp) => {
                let accept = tokio_rustls::TlsAcceptor::from(config).accept(tcp);
                match tokio::time::timeout(limit, accept).await {
                    Ok(Ok(tls)) => Ok(MailStream::Tls(Box::new(tls))),
                    Ok(Err(e)) => Err(e),
                    Err(_) => {
                        Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))
                    }
                }
            }
            tls => Ok(tls),
        }
    }

    /// Whether TLS is active.
    pub fn is_tls(&self) -> bool {
        matches!(self, MailStream::Tls(_))
    }
}

impl tokio::io::AsyncRead for MailStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            MailStream::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            MailStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for MailStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            MailStream::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            MailStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            MailStream::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            MailStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            MailStream::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            MailStream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The accept loop POP3 and IMAP share: netkit's per-address and per-listener caps with the
/// login deadline and the protocol's own autologout, a task per session, and the protocol's
/// "too busy" line (`busy`) to a client over a cap before it is closed.
pub async fn serve<F, Fut>(
    listener: tokio::net::TcpListener,
    ctx: Arc<AccessContext>,
    shutdown: appnet_netkit::Shutdown,
    proto: &'static str,
    idle_timeout: Duration,
    busy: &'static [u8],
    connection: F,
) -> std::io::Result<()>
where
    F: Fn(MailStream, appnet_netkit::accept::ConnSlot, Arc<AccessContext>) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    use appnet_netkit::accept::{Accepted, Acceptor, ConnLimits};
    use tokio::io::AsyncWriteExt;
    let l = &ctx.limits;
    let acceptor = Acceptor::with_limits(
        listener,
        ConnLimits {
            max_connections: l.max_connections.max(1),
            max_per_ip: l.max_per_ip.max(1),
            request_timeout: l.login_timeout,
            idle_timeout,
        },
    );
    while let Some(accepted) = acceptor.next(&shutdown).await {
        match accepted {
            Accepted::Conn(stream, peer, slot) => {
                let _ = stream.set_nodelay(true);
                let session = connection(MailStream::Plain(stream), slot, ctx.clone());
                shutdown.spawn(async move {
                    if let Err(e) = session.await {
                        tracing::debug!(%peer, "{proto} connection ended: {e}");
                    }
                });
            }
            Accepted::OverCap(mut stream, peer) => {
                tracing::debug!(%peer, "{proto}: over capacity");
                tokio::spawn(async move {
                    let _ = stream.write_all(busy).await;
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_out_after_repeated_failures_then_forgives() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        let mut g = LoginGuard::new(3, Duration::from_secs(60));
        for i in 0..3 {
            assert!(g.check(ip, t0).is_ok());
            g.failure(ip, t0 + Duration::from_secs(i));
        }
        assert!(g.check(ip, t0 + Duration::from_secs(3)).is_err());
        assert!(g.check(other, t0).is_ok());
        assert!(g.check(ip, t0 + Duration::from_secs(63)).is_ok());
        g.failure(ip, t0 + Duration::from_secs(200));
        assert!(g.check(ip, t0 + Duration::from_secs(200)).is_ok(), "old failures expired");
        g.success(ip);
        assert!(g.by_ip.is_empty());
    }

    #[test]
    fn sasl_plain_messages() {
        assert_eq!(
            sasl_plain("AGJvYkBoYW1idXJnZXIuZWR1AHB3"),
            Some(("bob@hamburger.edu".into(), "pw".into()))
        );
        assert_eq!(sasl_plain("Ym9iAGJvYgBwdw=="), Some(("bob".into(), "pw".into())));
        assert_eq!(sasl_plain("ZXZlAGJvYgBwdw=="), None, "acting as someone else");
        assert_eq!(sasl_plain("!!"), None);
        assert_eq!(sasl_plain("AAA="), None);
    }

    #[test]
    fn the_guard_table_is_bounded() {
        let t0 = Instant::now();
        let mut g = LoginGuard::new(3, Duration::from_secs(60));
        for i in 0..(LoginGuard::CAP as u32 + 50) {
            g.failure(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(g.by_ip.len() <= LoginGuard::CAP);
    }
}
