//! The QUIC endpoint configurations of the HTTP/3 server and client: TLS 1.3 with ALPN `h3`
//! (RFC 9114 §3.1), the transport limits from [`WebConfig`], and 0-RTT.
//!
//! Session tickets for 0-RTT live in an in-process store keyed by the caller's ticket path:
//! rustls 0.23 offers no way to serialise a client session, so tickets cannot outlive the
//! process; every connection made with the same key inside one process shares them (see
//! [`client_config`]).

use super::H3Error;
use super::server::H3Limits;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
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
    server.transport_config(Arc::new(t));
    server.migration(true);
    server.max_incoming(MAX_INCOMING);
    Ok(server)
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

/// The client's QUIC configuration: TLS 1.3 trusting `roots`, ALPN `h3`. With a ticket key,
/// resumption with early data: the configuration is then made once per key and reused (rustls
/// resumes a session only under the very certificate verifier that saw it), so the first
/// connection's `roots` stay in force for that key.
pub fn client_config(
    roots: rustls::RootCertStore,
    ticket_key: Option<&Path>,
) -> Result<quinn::ClientConfig, H3Error> {
    static CONFIGS: OnceLock<Mutex<HashMap<PathBuf, quinn::ClientConfig>>> = OnceLock::new();
    let Some(key) = ticket_key else { return build_client_config(roots, false) };
    let mut configs = CONFIGS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = configs.get(key) {
        return Ok(c.clone());
    }
    if configs.len() >= MAX_TICKET_KEYS {
        configs.clear();
    }
    let c = build_client_config(roots, true)?;
    configs.insert(key.to_path_buf(), c.clone());
    Ok(c)
}

/// Ticket keys remembered by one process (each holds a few tickets).
const MAX_TICKET_KEYS: usize = 256;

/// Tickets kept per server name.
const TICKETS_PER_SERVER: usize = 64;

fn build_client_config(roots: rustls::RootCertStore, resume: bool) -> Result<quinn::ClientConfig, H3Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| H3Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN_H3.to_vec()];
    if resume {
        let store = Arc::new(rustls::client::ClientSessionMemoryCache::new(TICKETS_PER_SERVER));
        tls.resumption = rustls::client::Resumption::store(store);
        tls.enable_early_data = true;
    } else {
        tls.resumption = rustls::client::Resumption::disabled();
    }
    let crypto = QuicClientConfig::try_from(Arc::new(tls)).map_err(|e| H3Error::Tls(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(Arc::new(transport(256, Duration::from_secs(30))));
    Ok(client)
}
