//! `MailServer`: the netkit [`Service`] behind `appnet mail serve`. It binds the SMTP and
//! submission listeners, sets up STARTTLS, opens the users file and the queue, and runs the
//! listeners and the queue runner until shutdown.

use crate::access::LoginGuard;
use crate::config::MailConfig;
use crate::queue::{self, Queue};
use crate::smtp::server::{self as smtp_server, Shared, UsersCache};
use crate::smtp::session::Port;
use appnet_netkit::acl::AccessList;
use appnet_netkit::listen::{ListenOpts, bind_tcp};
use appnet_netkit::{BoxError, Service, Shutdown};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// Errors starting the mail server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Which service.
        what: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// The data directory or queue cannot be used.
    #[error("{0}")]
    Storage(String),
    /// Bad configuration.
    #[error("{0}")]
    Config(String),
    /// TLS could not be set up.
    #[error("TLS: {0}")]
    Tls(#[from] appnet_netkit::tls::TlsError),
}

/// A bound mail server, ready to [`run`](Service::run).
pub struct MailServer {
    shared: Arc<Shared>,
    smtp: Option<TcpListener>,
    submission: Option<TcpListener>,
    pop3: Option<TcpListener>,
    imap: Option<TcpListener>,
    access: Arc<crate::access::AccessContext>,
    tls_note: Option<String>,
}

fn bind(addr: Option<SocketAddr>, what: &'static str) -> Result<Option<TcpListener>, ServeError> {
    addr.map(|a| {
        bind_tcp(a, &ListenOpts::default()).map_err(|source| ServeError::Bind { addr: a, what, source })
    })
    .transpose()
}

impl MailServer {
    /// Checks the configuration, opens the data directory and binds the listeners.
    pub async fn bind(config: MailConfig) -> Result<MailServer, ServeError> {
        if config.domains.is_empty() {
            return Err(ServeError::Config(
                "no --domain given: name at least one domain this server receives mail for".into(),
            ));
        }
        for d in &config.domains {
            if !crate::maildir::valid_domain(d) {
                return Err(ServeError::Config(format!("{d:?} is not a domain name")));
            }
        }
        std::fs::create_dir_all(&config.root)
            .map_err(|e| ServeError::Storage(format!("{}: {e}", config.root.display())))?;
        let relay = AccessList::parse(&config.relay_nets)
            .map_err(|e| ServeError::Config(format!("--relay-net: {e}")))?;
        let users = UsersCache::new(&config.root).map_err(|e| ServeError::Storage(e.to_string()))?;
        let queue = Queue::open(&config.root)
            .map_err(|e| ServeError::Storage(format!("{}: {e}", config.root.join("queue").display())))?;
        let smtp = bind(config.smtp, "SMTP")?;
        let submission = bind(config.submission, "submission")?;
        let pop3 = bind(config.pop3, "POP3")?;
        let imap = bind(config.imap, "IMAP")?;
        let (tls, tls_note) = if config.tls {
            let addr =
                config.smtp.or(config.submission).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
            let mut names = vec![config.hostname()];
            names.extend(config.domains.iter().cloned());
            let (cfg, note) = appnet_netkit::tls::listener_config(
                config.tls_cert.as_deref(),
                config.tls_key.as_deref(),
                config.ca_dir.as_deref(),
                addr,
                &names,
                &[],
            )?;
            (Some(cfg), note)
        } else {
            (None, None)
        };
        let access = Arc::new(crate::access::AccessContext::new(
            &config.root,
            &config.hostname(),
            tls.clone(),
            config.allow_plain_auth,
            crate::access::AccessLimits::from_config(&config),
        ));
        let guard = Mutex::new(LoginGuard::new(
            config.login_lockout_failures,
            std::time::Duration::from_secs(config.login_lockout_secs),
        ));
        let shared = Arc::new(Shared { config: Arc::new(config), users, queue, relay, tls, guard });
        Ok(MailServer { shared, smtp, submission, pop3, imap, access, tls_note })
    }

    /// The SMTP listener's address.
    pub fn smtp_addr(&self) -> Option<SocketAddr> {
        self.smtp.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The submission listener's address.
    pub fn submission_addr(&self) -> Option<SocketAddr> {
        self.submission.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The POP3 listener's address.
    pub fn pop3_addr(&self) -> Option<SocketAddr> {
        self.pop3.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The IMAP listener's address.
    pub fn imap_addr(&self) -> Option<SocketAddr> {
        self.imap.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// How clients trust the lab CA's certificate, when one was minted.
    pub fn tls_note(&self) -> Option<&str> {
        self.tls_note.as_deref()
    }

    /// The queue (to watch its SMTP dialogues, or inspect it).
    pub fn queue(&self) -> Arc<Queue> {
        self.shared.queue.clone()
    }

    /// The effective configuration.
    pub fn config(&self) -> &MailConfig {
        &self.shared.config
    }
}

impl Service for MailServer {
    fn local_addr(&self) -> SocketAddr {
        self.smtp_addr().or(self.submission_addr()).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    async fn run(self, shutdown: Shutdown) -> Result<(), BoxError> {
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(l) = self.smtp {
            tasks.spawn(smtp_server::serve(l, Port::Smtp, self.shared.clone(), shutdown.clone()));
        }
        if let Some(l) = self.submission {
            tasks.spawn(smtp_server::serve(l, Port::Submission, self.shared.clone(), shutdown.clone()));
        }
        if let Some(l) = self.pop3 {
            let (access, shutdown) = (self.access.clone(), shutdown.clone());
            tasks.spawn(async move {
                if let Err(e) = crate::pop3::serve_pop3(l, access, shutdown).await {
                    tracing::error!("POP3 server stopped: {e}");
                }
            });
        }
        if let Some(l) = self.imap {
            let (access, shutdown) = (self.access.clone(), shutdown.clone());
            tasks.spawn(async move {
                if let Err(e) = crate::imap::serve_imap(l, access, shutdown).await {
                    tracing::error!("IMAP server stopped: {e}");
                }
            });
        }
        tasks.spawn(queue::run(self.shared.queue.clone(), self.shared.config.clone(), shutdown.clone()));
        while tasks.join_next().await.is_some() {}
        shutdown.drain(std::time::Duration::from_secs(5)).await;
        Ok(())
    }
}
