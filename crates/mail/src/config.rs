//! Configuration of the mail server, shared by `appnet mail serve` flags, the `[mail]` TOML
//! table and the lab: where it listens, which domains it owns, and every limit it enforces.

use appnet_netkit::accept::ConnLimits;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The mail server's settings. Every field has a default (see [`MailConfig::default`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    /// The domains this server is the final destination for (mail to them goes to Maildirs).
    pub domains: Vec<String>,
    /// The data directory: `users`, `mail/<domain>/<user>/` (Maildir++), `queue/`.
    pub root: PathBuf,
    /// The name the server gives itself in greetings, `Received:` and bounces
    /// (default: `mail.<first domain>`).
    pub hostname: Option<String>,
    /// SMTP (MTA-to-MTA, RFC 5321) listening address; `None` disables it.
    pub smtp: Option<SocketAddr>,
    /// Submission (RFC 6409) listening address; `None` disables it.
    pub submission: Option<SocketAddr>,
    /// POP3 listening address; `None` disables it.
    pub pop3: Option<SocketAddr>,
    /// IMAP listening address; `None` disables it.
    pub imap: Option<SocketAddr>,
    /// The DNS resolver the queue asks for MX and A records (default: the first `nameserver`
    /// of /etc/resolv.conf, else 127.0.0.1:53).
    pub resolver: Option<SocketAddr>,
    /// The port the queue connects to on remote mail exchangers (MX records carry no port).
    pub remote_smtp_port: u16,
    /// The local address the queue's connections leave from (default: the system's choice).
    pub source_address: Option<std::net::IpAddr>,
    /// The queue uses STARTTLS when a remote server offers it (opportunistic, certificate not
    /// checked; a failed handshake is retried in the clear).
    pub outbound_tls: bool,
    /// Client networks (CIDR) that may relay to other domains without authenticating.
    pub relay_nets: Vec<String>,
    /// Offer STARTTLS (a certificate from `tls_cert`/`tls_key`, else minted by the lab CA).
    pub tls: bool,
    /// PEM certificate chain for STARTTLS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for STARTTLS.
    pub tls_key: Option<PathBuf>,
    /// Directory of the lab CA (default: `$APPNET_CA_DIR` or ~/.local/share/appnet/lab-ca).
    pub ca_dir: Option<PathBuf>,
    /// Allow AUTH (and POP3 USER/PASS, IMAP LOGIN) on connections without TLS.
    pub allow_plain_auth: bool,
    /// Largest message accepted (advertised as SIZE), in bytes.
    pub max_message_size: usize,
    /// Most recipients of one message.
    pub max_recipients: usize,
    /// Longest command or text line, in bytes without CRLF (RFC 5321 §4.5.3.1: 998 for text).
    pub max_line: usize,
    /// Bad commands one session may send before it is disconnected.
    pub max_errors: u32,
    /// Failed AUTH attempts in one session before it is disconnected.
    pub max_auth_failures: u32,
    /// Seconds each failed AUTH is answered late (slows password guessing).
    pub auth_failure_delay_secs: u64,
    /// POP3's inactivity autologout in seconds (RFC 1939 §3: at least 600).
    pub pop3_idle_timeout_secs: u64,
    /// IMAP's inactivity autologout in seconds, IDLE included (RFC 3501 §5.4: at least 1800).
    pub imap_idle_timeout_secs: u64,
    /// Failed POP3/IMAP logins from one address after which it is locked out.
    pub login_lockout_failures: u32,
    /// Seconds an address stays locked out after its last failed login.
    pub login_lockout_secs: u64,
    /// Most IMAP sessions one user may hold at once.
    pub max_imap_sessions_per_user: usize,
    /// Seconds a client has to send its next command (RFC 5321 §4.5.3.2.7: at least 5 min).
    pub command_timeout_secs: u64,
    /// Seconds a client has for each line of message data (RFC 5321 §4.5.3.2.6 uses 3 min).
    pub data_timeout_secs: u64,
    /// Seconds a new connection has for its first command.
    pub greeting_timeout_secs: u64,
    /// Most connections at once, per listener.
    pub max_connections: usize,
    /// Most connections from one client address, per listener.
    pub max_per_ip: usize,
    /// Seconds a queued message keeps being retried before it bounces (RFC 5321 §4.5.4.1: 4–5 days).
    pub queue_lifetime_secs: u64,
    /// Seconds before the first retry; doubled after each failure.
    pub retry_initial_secs: u64,
    /// Longest wait between two attempts, in seconds.
    pub retry_max_secs: u64,
    /// Messages the queue delivers at once.
    pub queue_concurrency: usize,
    /// Seconds the queue's client waits for each reply of a remote server (RFC 5321 §4.5.3.2).
    pub remote_timeout_secs: u64,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            domains: Vec::new(),
            root: PathBuf::from("mail-data"),
            hostname: None,
            smtp: Some(SocketAddr::from(([127, 0, 0, 1], 2525))),
            submission: Some(SocketAddr::from(([127, 0, 0, 1], 2587))),
            pop3: Some(SocketAddr::from(([127, 0, 0, 1], 2110))),
            imap: Some(SocketAddr::from(([127, 0, 0, 1], 2143))),
            resolver: None,
            remote_smtp_port: 25,
            source_address: None,
            outbound_tls: true,
            relay_nets: Vec::new(),
            tls: false,
            tls_cert: None,
            tls_key: None,
            ca_dir: None,
            allow_plain_auth: false,
            max_message_size: 25 << 20,
            max_recipients: 100,
            max_line: 998,
            max_errors: 10,
            max_auth_failures: 3,
            auth_failure_delay_secs: 2,
            pop3_idle_timeout_secs: 600,
            imap_idle_timeout_secs: 1800,
            login_lockout_failures: 10,
            login_lockout_secs: 300,
            max_imap_sessions_per_user: 10,
            command_timeout_secs: 300,
            data_timeout_secs: 180,
            greeting_timeout_secs: 60,
            max_connections: 512,
            max_per_ip: 16,
            queue_lifetime_secs: 5 * 24 * 3600,
            retry_initial_secs: 60,
            retry_max_secs: 3600,
            queue_concurrency: 16,
            remote_timeout_secs: 300,
        }
    }
}

impl MailConfig {
    /// The server's own name: `hostname`, else `mail.<first domain>`, else `localhost`.
    pub fn hostname(&self) -> String {
        match (&self.hostname, self.domains.first()) {
            (Some(h), _) if !h.is_empty() => h.clone(),
            (_, Some(d)) => format!("mail.{d}"),
            _ => "localhost".to_string(),
        }
    }

    /// Whether `domain` is one of ours (case-insensitive).
    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// The connection policy of each listener. A client gets `greeting_timeout_secs` for its
    /// first command and `command_timeout_secs` between commands.
    pub fn conn_limits(&self) -> ConnLimits {
        ConnLimits {
            max_connections: self.max_connections.max(1),
            max_per_ip: self.max_per_ip.max(1),
            request_timeout: Duration::from_secs(self.greeting_timeout_secs.max(1)),
            idle_timeout: self.command_timeout(),
        }
    }

    /// Time allowed for the next command.
    pub fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.command_timeout_secs.max(1))
    }

    /// Time allowed for each line of message data.
    pub fn data_timeout(&self) -> Duration {
        Duration::from_secs(self.data_timeout_secs.max(1))
    }

    /// The resolver to ask for MX records.
    pub fn resolver_addr(&self) -> SocketAddr {
        self.resolver.unwrap_or_else(system_resolver)
    }
}

/// The first `nameserver` of /etc/resolv.conf on port 53, else 127.0.0.1:53.
pub fn system_resolver() -> SocketAddr {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .next()
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 53)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_toml() {
        let c: MailConfig = toml::from_str("domains = [\"crepes.fr\"]\nmax_recipients = 5\n").unwrap();
        assert_eq!(c.max_recipients, 5);
        assert_eq!(c.max_message_size, 25 << 20);
        assert_eq!(c.hostname(), "mail.crepes.fr");
        assert!(c.is_local_domain("CREPES.fr"));
        assert!(!c.is_local_domain("hamburger.edu"));
        assert!(toml::from_str::<MailConfig>("bogus = 1").is_err());
    }
}
