//! [`Http3Client`]: one QUIC connection to an HTTP/3 server carrying any number of concurrent
//! GETs, with 0-RTT resumption from a session file ([`super::session_file`]). `appnet web get --http3` and the
//! HTTP experiments use it; it never falls back to TCP.

use super::session_file::SessionFile;
use super::{H3Error, quic};
use bytes::{Buf, Bytes, BytesMut};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long the handshake may take before `connect` gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest response body [`Http3Client::get`] collects.
pub const MAX_BODY: usize = 1 << 30;

/// Whom the client trusts.
#[derive(Debug, Clone)]
pub enum Roots {
    /// A rustls root store built by the caller.
    Store(rustls::RootCertStore),
    /// A PEM file of CA certificates (e.g. the lab CA's `ca.pem`).
    CaFile(PathBuf),
}

impl Roots {
    fn into_store(self) -> Result<rustls::RootCertStore, H3Error> {
        match self {
            Roots::Store(s) => Ok(s),
            Roots::CaFile(path) => {
                let mut roots = rustls::RootCertStore::empty();
                let certs = CertificateDer::pem_file_iter(&path)
                    .map_err(|_| H3Error::Ca(path.display().to_string()))?;
                for cert in certs.flatten() {
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err(H3Error::Ca(path.display().to_string()));
                }
                Ok(roots)
            }
        }
    }
}

impl From<rustls::RootCertStore> for Roots {
    fn from(s: rustls::RootCertStore) -> Roots {
        Roots::Store(s)
    }
}

impl From<&Path> for Roots {
    fn from(p: &Path) -> Roots {
        Roots::CaFile(p.to_path_buf())
    }
}

/// Waits for the server's verdict on early data (at most until the handshake completes):
/// `None` without early data or if the connection ended first. Used both while connecting
/// and by [`Http3Client`] once connected.
async fn early_data_verdict(zero_rtt: Option<&tokio::sync::watch::Receiver<Option<bool>>>) -> Option<bool> {
    let mut rx = zero_rtt?.clone();
    rx.wait_for(Option::is_some).await.ok().and_then(|v| *v)
}

/// A QUIC connection once its handshake is done (bounded by [`CONNECT_TIMEOUT`]).
async fn handshake(connecting: quinn::Connecting) -> Result<quinn::Connection, H3Error> {
    tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| H3Error::Timeout(CONNECT_TIMEOUT))?
        .map_err(Into::into)
}

/// An HTTP/3 connection. `get` takes `&self`, so tasks share one client (in an `Arc`) and
/// their requests run concurrently as separate QUIC streams.
pub struct Http3Client {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    authority: String,
    /// With early data attempted: the server's verdict once the handshake is done.
    zero_rtt: Option<tokio::sync::watch::Receiver<Option<bool>>>,
    /// The session file's store, saved by [`Http3Client::close`].
    sessions: Option<Arc<SessionFile>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Http3Client {
    /// Connects to `addr`, checking the certificate against `server_name` (also the
    /// `:authority` of the requests). With `ticket_file`, a session ticket stored there for
    /// this server is used to resume, sending the first requests as 0-RTT early data, and the
    /// tickets the server sends are written to the file by [`Http3Client::close`] (see
    /// [`quic::client_config`]), for a later connection in this process or another.
    pub async fn connect(
        addr: SocketAddr,
        server_name: &str,
        roots: impl Into<Roots>,
        ticket_file: Option<&Path>,
    ) -> Result<Self, H3Error> {
        let roots = roots.into().into_store()?;
        let (config, sessions) = quic::client_config(roots, ticket_file.map(|p| (p, addr)))?;
        let bind: SocketAddr = if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        let mut endpoint = quinn::Endpoint::client(bind)?;
        endpoint.set_default_client_config(config);
        let tls_name = server_name.trim_start_matches('[').trim_end_matches(']');
        let connecting = endpoint.connect(addr, tls_name)?;
        let mut zero_rtt = None;
        let mut conn = match connecting.into_0rtt() {
            Ok((conn, accepted)) => {
                let (tx, rx) = tokio::sync::watch::channel(None);
                zero_rtt = Some(rx);
                tokio::spawn(async move {
                    let _ = tx.send(Some(accepted.await));
                });
                conn
            }
            Err(connecting) => handshake(connecting).await?,
        };
        let built = h3::client::builder().build(h3_quinn::Connection::new(conn.clone())).await;
        let (mut driver, send) = match built {
            Ok(pair) => pair,
            Err(e) => {
                let wait = early_data_verdict(zero_rtt.as_ref());
                let verdict = tokio::time::timeout(CONNECT_TIMEOUT, wait).await.ok().flatten();
                if verdict != Some(false) {
                    return Err(e.into());
                }
                // The server rejected the early data before the HTTP/3 control streams were
                // written (a fast handshake): h3 closed the connection, so a new one is made,
                // this time waiting for its handshake. `used_0rtt` stays false.
                tracing::debug!("0-RTT rejected before HTTP/3 was set up: connecting again");
                conn = handshake(endpoint.connect(addr, tls_name)?).await?;
                h3::client::builder().build(h3_quinn::Connection::new(conn.clone())).await?
            }
        };
        let driver = tokio::spawn(async move {
            let e = driver.wait_idle().await;
            tracing::debug!("HTTP/3 client connection ended: {e}");
        });
        let port = addr.port();
        let authority = if server_name.contains(':') && !server_name.starts_with('[') {
            format!("[{server_name}]:{port}")
        } else {
            format!("{server_name}:{port}")
        };
        Ok(Http3Client { endpoint, conn, send, authority, zero_rtt, sessions, driver })
    }

    /// Whether the server accepted this connection's 0-RTT early data (known once the
    /// handshake has completed, i.e. after the first response).
    pub fn used_0rtt(&self) -> bool {
        self.zero_rtt.as_ref().is_some_and(|rx| *rx.borrow() == Some(true))
    }

    /// Whether this connection resumed a stored session and sent early data (accepted or not).
    pub fn tried_0rtt(&self) -> bool {
        self.zero_rtt.is_some()
    }

    /// GETs `path` and returns the status and the whole body.
    pub async fn get(&self, path: &str) -> Result<(u16, Vec<u8>), H3Error> {
        let (resp, body) = self.request(http::Method::GET, path, http::HeaderMap::new()).await?;
        Ok((resp.status().as_u16(), body.to_vec()))
    }

    /// Sends one bodiless request with extra `headers` and returns the response head and body.
    pub async fn request(
        &self,
        method: http::Method,
        path: &str,
        headers: http::HeaderMap,
    ) -> Result<(http::Response<()>, Bytes), H3Error> {
        match self.exchange(method.clone(), path, headers.clone()).await {
            // Streams sent as early data that the server rejected are lost: send again in 1-RTT.
            Err(_) if early_data_verdict(self.zero_rtt.as_ref()).await == Some(false) => {
                self.exchange(method, path, headers).await
            }
            Ok(done) => {
                // The verdict on early data arrives with the handshake; wait for it so
                // `used_0rtt` is settled once the first response is in.
                let _ = early_data_verdict(self.zero_rtt.as_ref()).await;
                Ok(done)
            }
            Err(e) => Err(e),
        }
    }

    async fn exchange(
        &self,
        method: http::Method,
        path: &str,
        headers: http::HeaderMap,
    ) -> Result<(http::Response<()>, Bytes), H3Error> {
        let uri = format!("https://{}{}", self.authority, path);
        let mut req = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::USER_AGENT, concat!("appnet/", env!("CARGO_PKG_VERSION")))
            .body(())
            .map_err(|e| H3Error::Request(e.to_string()))?;
        req.headers_mut().extend(headers);
        let mut send = self.send.clone();
        let mut stream = send.send_request(req).await?;
        stream.finish().await?;
        let resp = stream.recv_response().await?;
        let mut body = BytesMut::new();
        while let Some(mut chunk) = stream.recv_data().await? {
            if body.len() + chunk.remaining() > MAX_BODY {
                return Err(H3Error::Request(format!("response body larger than {MAX_BODY} bytes")));
            }
            while chunk.has_remaining() {
                let piece = chunk.chunk();
                body.extend_from_slice(piece);
                let n = piece.len();
                chunk.advance(n);
            }
        }
        Ok((resp, body.freeze()))
    }

    /// The server's address as the connection sees it now.
    pub fn remote_address(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    /// Moves the connection to a new local UDP socket (QUIC connection migration, RFC 9000
    /// §9): the server sees a new address and the connection goes on.
    pub fn rebind(&self, socket: std::net::UdpSocket) -> Result<(), H3Error> {
        Ok(self.endpoint.rebind(socket)?)
    }

    /// The local address the connection sends from.
    pub fn local_addr(&self) -> Result<SocketAddr, H3Error> {
        Ok(self.endpoint.local_addr()?)
    }

    /// Closes the connection (H3_NO_ERROR), waits until the server has been told (so it frees
    /// the connection at once), then writes the session file if there is one.
    pub async fn close(self) {
        self.conn.close(0x100u32.into(), b"done");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
        self.driver.abort();
        if let Some(sessions) = self.sessions.clone() {
            let saved = tokio::task::spawn_blocking(move || sessions.save()).await;
            if let Ok(Err(e)) = saved {
                tracing::warn!("session file not saved: {e}");
            }
        }
    }
}

impl Drop for Http3Client {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// One GET of an `https://` URL over HTTP/3, as `appnet web get --http3` does it: the host is
/// resolved by the system (or `address` is used), the certificate checked against the URL's
/// host and `cacert` (default: the lab CA). With `session_file`, a ticket stored there by an
/// earlier run resumes the session and the GET goes out as 0-RTT early data; the tickets this
/// connection receives are stored for the next run. Returns the response head, the body and,
/// when early data was sent, whether the server accepted it.
pub async fn get_url(
    url: &str,
    cacert: Option<&Path>,
    timeout: Duration,
    address: Option<std::net::IpAddr>,
    session_file: Option<&Path>,
) -> Result<(http::Response<()>, Bytes, Option<bool>), H3Error> {
    let uri: http::Uri = url.parse().map_err(|_| H3Error::Request(format!("bad URL {url}")))?;
    if uri.scheme_str() != Some("https") {
        return Err(H3Error::Request(format!("{url}: HTTP/3 needs an https:// URL")));
    }
    let host = uri.host().ok_or_else(|| H3Error::Request(format!("{url}: no host")))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = uri.port_u16().unwrap_or(443);
    let addr = match address {
        Some(ip) => SocketAddr::new(ip, port),
        None => tokio::net::lookup_host((bare.as_str(), port))
            .await?
            .next()
            .ok_or_else(|| H3Error::Request(format!("{bare}: no address")))?,
    };
    let default_ca = crate::tls::LabCa::default_dir().join("ca.pem");
    let roots = Roots::CaFile(cacert.unwrap_or(&default_ca).to_path_buf());
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let run = async {
        let client = Http3Client::connect(addr, &bare, roots, session_file).await?;
        let (head, body) = client.request(http::Method::GET, &path, http::HeaderMap::new()).await?;
        let early = client.tried_0rtt().then(|| client.used_0rtt());
        client.close().await;
        Ok::<_, H3Error>((head, body, early))
    };
    tokio::time::timeout(timeout, run).await.map_err(|_| H3Error::Timeout(timeout))?
}
