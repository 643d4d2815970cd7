//! Settings of `appnet sip serve`, shared by its flags, the `[sip]` TOML table and the lab.
//! Every limit has a default here.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The server's settings and limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipConfig {
    /// The domain served (`bob@DOMAIN`); requests to the listen address count as it too.
    pub domain: String,
    /// UDP and TCP address (port 0 picks a free one).
    pub listen: SocketAddr,
    /// The users file (`appnet sip user add`); without one, registration is not authenticated.
    pub users: Option<PathBuf>,
    /// Answer 302 with the contacts instead of proxying.
    pub redirect: bool,
    /// Recursive resolver for locating other domains' servers (RFC 3263); with it,
    /// authenticated local users may call other domains (without it: 403).
    pub resolver: Option<SocketAddr>,
    /// Digest challenges with MD5 only (no SHA-256 second header), for phones that fail on an
    /// algorithm they do not know (baresip 1.0's libre).
    pub md5_only: bool,
    /// Seconds one RFC 3263 location (all its DNS queries) may take.
    pub dns_timeout_secs: u64,
    /// SIP over TLS (RFC 3261 §26.2, `sips:`) on `tls_listen`, or the TCP port + 1.
    pub tls: bool,
    /// Where TLS listens (default: the listen address, port + 1).
    pub tls_listen: Option<SocketAddr>,
    /// PEM certificate chain and key (default: a certificate minted by the lab CA).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The lab CA's directory (default: netkit's `LabCa::default_dir`).
    pub ca_dir: Option<PathBuf>,
    /// Seconds a TLS handshake may take.
    pub tls_handshake_secs: u64,
    /// Admission control: link capacity per direction in kbit/s (None: off).
    pub link_kbps: Option<u32>,
    /// Largest message in bytes.
    pub max_message: usize,
    /// Most header fields in one message.
    pub max_headers: usize,
    /// Server transactions in flight, in all.
    pub max_transactions: usize,
    /// Server transactions in flight from one client address.
    pub max_transactions_per_ip: usize,
    /// Contacts one user may register.
    pub max_bindings_per_user: usize,
    /// Registration expiry when the client asks none (seconds).
    pub default_expires: u32,
    /// Shortest registration accepted (seconds; shorter gets 423).
    pub min_expires: u32,
    /// Longest registration granted (seconds).
    pub max_expires: u32,
    /// Seconds a Digest nonce stays valid.
    pub nonce_lifetime_secs: u64,
    /// Seconds after which an admitted call's bandwidth is released without a BYE.
    pub dialog_timeout_secs: u64,
    /// Default seconds before no-answer forwarding (per user: noanswer-secs=).
    pub noanswer_secs: u64,
    /// Timer C in seconds: an INVITE branch may ring this long (RFC 3261: more than 180).
    pub timer_c_secs: u64,
    /// Presence subscriptions in all.
    pub max_subscriptions: usize,
    /// Presence subscriptions from one address.
    pub max_subscriptions_per_ip: usize,
    /// TCP connections in all.
    pub max_tcp_connections: usize,
    /// TCP connections from one address.
    pub max_tcp_per_ip: usize,
    /// Seconds a TCP connection may stay without a complete message.
    pub tcp_idle_timeout_secs: u64,
    /// Timer T1 in milliseconds (RFC 3261: 500).
    pub t1_ms: u64,
    /// Outbound TCP/TLS connections to other servers, in all (one per target address,
    /// reused); a request that would need one more fails over as after a timeout.
    pub max_outbound_connections: usize,
    /// Seconds an outbound TCP connect (and, separately, its TLS handshake) may take.
    pub connect_timeout_secs: u64,
    /// Further CA certificates (PEM) trusted for outbound TLS, besides the lab CA
    /// (`ca_dir`) and the system store.
    pub cacert: Vec<PathBuf>,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            domain: "localhost".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 5060)),
            users: None,
            redirect: false,
            resolver: None,
            tls: false,
            tls_listen: None,
            cert: None,
            key: None,
            ca_dir: None,
            tls_handshake_secs: 10,
            dns_timeout_secs: 5,
            md5_only: false,
            link_kbps: None,
            max_message: 65_535,
            max_headers: 100,
            max_transactions: 20_000,
            max_transactions_per_ip: 2_000,
            max_bindings_per_user: 10,
            default_expires: 3600,
            min_expires: 60,
            max_expires: 86_400,
            nonce_lifetime_secs: 300,
            dialog_timeout_secs: 4 * 3600,
            noanswer_secs: 20,
            timer_c_secs: 181,
            max_subscriptions: 10_000,
            max_subscriptions_per_ip: 100,
            max_tcp_connections: 1024,
            max_tcp_per_ip: 64,
            tcp_idle_timeout_secs: 300,
            t1_ms: 500,
            max_outbound_connections: 256,
            connect_timeout_secs: 5,
            cacert: Vec::new(),
        }
    }
}
