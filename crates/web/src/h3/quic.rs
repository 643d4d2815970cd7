//! The QUIC endpoint configurations of the HTTP/3 server and client: TLS 1.3 with ALPN `h3`
//! (RFC 9114 §3.1), the transport limits from [`WebConfig`], and 0-RTT.
//!
//! Session tickets for 0-RTT live in a session file ([`SessionFile`]), so a later connection,
//! in this process or another, resumes (see [`client_config`]).

use super::H3Error;
use super::server::H3Limits;
use super::session_file::{SessionFile, trust_digest};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::ServerCertVerifier;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The ALPN token of HTTP/3 (RFC 9114 §3.1).
pub const ALPN_H3: &[u8] = b"h3";

/// Unidirectional streams a peer may open: HTTP/3's control stream and QPACK's encoder and
/// decoder streams, plus room for GREASE (RFC 9114 §6.2.3).
const MAX_UNI_STREAMS: u32 = 8;

/// Unread request bytes one stream may have in flight towards the server.
const STREAM_RECEIVE_WINDOW: u32 = 256 * 1024;

/// Unread request bytes one connection may have in flight towards the server.
const CONN_RECEIVE_WINDOW: u32 = 2 * 1024 * 1024;

/// Unacknowledged response bytes the server buffers per connection.
const SEND_WINDOW: u64 = 4 * 1024 * 1024;

/// The server's initial congestion window in bytes: RFC 9002 §7.2's cap, as many bytes as
/// TCP's ten segments (RFC 6928: 14,480 at MSS 1448). quinn's default counts ten datagrams of
/// the 1200 bytes every path must carry, 12,000, so a page's first flight would be a sixth
/// smaller over HTTP/3 than over HTTP/2 on the same path.
pub const INITIAL_WINDOW: u64 = 14_720;

/// Connection attempts quinn buffers before the accept loop sees them (each costs a few KB).
const MAX_INCOMING: usize = 1024;

/// The server's QUIC configuration: the TCP listener's certificate with ALPN `h3` and early
/// data enabled, migration allowed, and the `limits` (streams per connection, idle).
pub fn server_config(tls: &rustls::ServerConfig, limits: &H3Limits) -> Result<quinn::ServerConfig, H3Error> {
    let mut tls = tls.clone();
    tls.alpn_protocols = vec![ALPN_H3.to_vec()];
    // QUIC requires max_early_data_size to be 0 or u32::MAX (RFC 9001 §4.6.1); the server
    // itself only runs safe methods received before the handshake completes.
    tls.max_early_data_size = u32::MAX;
    let crypto = QuicServerConfig::try_from(Arc::new(tls)).map_err(|e| H3Error::Tls(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut t = transport(limits.max_streams, limits.idle_timeout);
    // What one connection may make the server hold: request data it has not read yet (quinn's
    // default connection window is unlimited) and response data not yet acknowledged.
    t.stream_receive_window(STREAM_RECEIVE_WINDOW.into());
    t.receive_window(CONN_RECEIVE_WINDOW.into());
    t.send_window(SEND_WINDOW);
    t.congestion_controller_factory(limits.congestion.factory());
    // Responses one after the other, not round-robin: RFC 9218 §4's default priority (urgency
    // 3, not incremental) asks for non-incremental responses of equal urgency to be served in
    // the order requested, so a page's first object completes after its own bytes, not after
    // a share of every object's. quinn's default (fair) round-robin finished all ten objects
    // of the experiment's page together, at the end.
    t.send_fairness(false);
    server.transport_config(Arc::new(t));
    server.migration(true);
    server.max_incoming(MAX_INCOMING);
    Ok(server)
}

/// The congestion controller of appnet's QUIC connections (`h3_congestion` in the web
/// server's configuration). Kernel TCP picks its own (`net.ipv4.tcp_congestion_control`, BBR
/// on some machines), so comparing HTTP/3 with HTTP/2 means naming the same algorithm on both
/// sides: [`Congestion::linux_tcp`] is the kernel's name for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Congestion {
    /// CUBIC (RFC 9438): quinn's default and most kernels'. Random loss reads as congestion.
    #[default]
    Cubic,
    /// NewReno as RFC 9002 §7 describes it.
    NewReno,
    /// BBR (quinn's is marked experimental): paces to the measured bottleneck rate, so random
    /// loss does not shrink the window.
    Bbr,
}

impl Congestion {
    /// Every controller, in the order `--help` lists them.
    pub const ALL: [Congestion; 3] = [Congestion::Cubic, Congestion::NewReno, Congestion::Bbr];

    /// The name used in configuration files and flags.
    pub fn name(self) -> &'static str {
        match self {
            Congestion::Cubic => "cubic",
            Congestion::NewReno => "new-reno",
            Congestion::Bbr => "bbr",
        }
    }

    /// Linux's name for the same algorithm (`/proc/sys/net/ipv4/tcp_congestion_control`).
    pub fn linux_tcp(self) -> &'static str {
        match self {
            Congestion::Cubic => "cubic",
            Congestion::NewReno => "reno",
            Congestion::Bbr => "bbr",
        }
    }

    /// The controller, starting from [`INITIAL_WINDOW`].
    fn factory(self) -> Arc<dyn quinn::congestion::ControllerFactory + Send + Sync> {
        use quinn::congestion::{BbrConfig, CubicConfig, NewRenoConfig};
        match self {
            Congestion::Cubic => Arc::new(CubicConfig::default().initial_window(INITIAL_WINDOW).clone()),
            Congestion::NewReno => Arc::new(NewRenoConfig::default().initial_window(INITIAL_WINDOW).clone()),
            Congestion::Bbr => Arc::new(BbrConfig::default().initial_window(INITIAL_WINDOW).clone()),
        }
    }
}

impl std::str::FromStr for Congestion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.to_ascii_lowercase();
        Congestion::ALL
            .into_iter()
            .find(|c| c.name() == s || c.linux_tcp() == s || (s == "newreno" && *c == Congestion::NewReno))
            .ok_or_else(|| format!("unknown congestion control {s:?}: cubic, new-reno or bbr"))
    }
}

impl std::fmt::Display for Congestion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The transport limits shared by both ends: concurrent request streams, uni streams, idle.
fn transport(max_streams: u32, idle: Duration) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(max_streams.max(1).into());
    t.max_concurrent_uni_streams(MAX_UNI_STREAMS.into());
    if let Ok(idle) = quinn::IdleTimeout::try_from(idle) {
        t.max_idle_timeout(Some(idle));
    }
    t
}

/// The client's QUIC configuration: TLS 1.3 trusting `roots`, ALPN `h3`. With a session file,
/// resumption with early data: the tickets for `addr` under these `roots` are read from the
/// file into the returned [`SessionFile`] store, which the caller saves when the connection
/// ends (rustls binds a session to the verifier that saw it; the store binds the tickets it
/// reads to this configuration's verifier).
pub fn client_config(
    roots: rustls::RootCertStore,
    session_file: Option<(&Path, SocketAddr)>,
) -> Result<(quinn::ClientConfig, Option<Arc<SessionFile>>), H3Error> {
    let trust = session_file.map(|_| trust_digest(&roots));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| H3Error::Tls(e.to_string()))?;
    let suites = provider.cipher_suites.clone();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| H3Error::Tls(e.to_string()))?
        .with_webpki_verifier(verifier.clone())
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN_H3.to_vec()];
    let store = match (session_file, trust) {
        (Some((path, addr)), Some(trust)) => {
            let verifier: Arc<dyn ServerCertVerifier> = verifier;
            let creds = tls.client_auth_cert_resolver.clone();
            let store = Arc::new(SessionFile::open(path, addr, trust, suites, verifier, creds));
            tls.resumption = rustls::client::Resumption::store(store.clone());
            tls.enable_early_data = true;
            Some(store)
        }
        _ => {
            tls.resumption = rustls::client::Resumption::disabled();
            None
        }
    };
    let crypto = QuicClientConfig::try_from(Arc::new(tls)).map_err(|e| H3Error::Tls(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(Arc::new(transport(256, Duration::from_secs(30))));
    Ok((client, store))
}
