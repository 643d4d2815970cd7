//! `appnet web get`: a small HTTP client (HTTP/1.0, HTTP/1.1, HTTP/2 over TLS by ALPN or
//! cleartext with prior knowledge) on hyper, trusting a given CA file (by default the lab CA).

use bytes::Bytes;
use http::{Request, Response, Uri, Version, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// Client errors, with what to do about them.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not http:// or https:// with a host.
    #[error("bad URL {0}: use http://HOST[:PORT]/PATH or https://...")]
    Url(String),
    /// Connecting, TLS or the exchange failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// hyper reported a protocol error.
    #[error("HTTP error: {0}")]
    Http(#[from] hyper::Error),
    /// The CA file could not be used.
    #[error("CA file {0}: no PEM certificates (pass --cacert with the server's CA)")]
    Ca(String),
    /// The response did not arrive in time.
    #[error("no response within {0:?}")]
    Timeout(Duration),
}

/// Which protocol to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.0 (one request per connection).
    Http10,
    /// HTTP/1.1 (for https, whatever ALPN picks: h2 preferred only with `Http2`).
    Http11,
    /// HTTP/2: ALPN h2 over TLS, prior knowledge over cleartext.
    Http2,
}

/// Fetches `url` and returns the response with its whole body.
pub async fn get(
    url: &str,
    proto: Proto,
    cacert: Option<&Path>,
    timeout: Duration,
) -> Result<Response<Bytes>, ClientError> {
    get_at(url, proto, cacert, timeout, None).await
}

/// Like [`get`], connecting to `address` instead of resolving the URL's host with the system
/// resolver (the Host header and TLS name still come from the URL), as curl's `--resolve` does.
/// The lab resolves names through its own DNS this way.
pub async fn get_at(
    url: &str,
    proto: Proto,
    cacert: Option<&Path>,
    timeout: Duration,
    address: Option<std::net::IpAddr>,
) -> Result<Response<Bytes>, ClientError> {
    tokio::time::timeout(timeout, fetch(url, proto, cacert, address))
        .await
        .map_err(|_| ClientError::Timeout(timeout))?
}

async fn fetch(
    url: &str,
    proto: Proto,
    cacert: Option<&Path>,
    address: Option<std::net::IpAddr>,
) -> Result<Response<Bytes>, ClientError> {
    let uri: Uri = url.parse().map_err(|_| ClientError::Url(url.into()))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(ClientError::Url(url.into())),
    };
    let host = uri.host().ok_or_else(|| ClientError::Url(url.into()))?.to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let connect_host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let tcp = match address {
        Some(ip) => TcpStream::connect((ip, port)).await?,
        None => TcpStream::connect((connect_host.as_str(), port)).await?,
    };
    let _ = tcp.set_nodelay(true);
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let authority = uri.authority().map(|a| a.to_string()).unwrap_or(host.clone());
    if https {
        let config = client_tls(cacert, proto)?;
        let name = ServerName::try_from(connect_host.clone()).map_err(|_| ClientError::Url(url.into()))?;
        let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        if h2 {
            exchange_h2(TokioIo::new(tls), uri.clone()).await
        } else {
            exchange_h1(TokioIo::new(tls), &authority, &path, proto).await
        }
    } else if proto == Proto::Http2 {
        exchange_h2(TokioIo::new(tcp), uri.clone()).await
    } else {
        exchange_h1(TokioIo::new(tcp), &authority, &path, proto).await
    }
}

fn client_tls(cacert: Option<&Path>, proto: Proto) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let default_ca = crate::tls::LabCa::default_dir().join("ca.pem");
    let ca = cacert.unwrap_or(&default_ca);
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca).map_err(|_| ClientError::Ca(ca.display().to_string()))?;
    for cert in certs.flatten() {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(ClientError::Ca(ca.display().to_string()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = match proto {
        Proto::Http2 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        _ => vec![b"http/1.1".to_vec()],
    };
    Ok(Arc::new(config))
}

async fn exchange_h1<IO>(
    io: IO,
    authority: &str,
    path: &str,
    proto: Proto,
) -> Result<Response<Bytes>, ClientError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let version = if proto == Proto::Http10 { Version::HTTP_10 } else { Version::HTTP_11 };
    let req = Request::builder()
        .method("GET")
        .uri(path)
        .version(version)
        .header(header::HOST, authority)
        .header(header::USER_AGENT, concat!("appnet/", env!("CARGO_PKG_VERSION")))
        .body(Empty::<Bytes>::new())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let resp = sender.send_request(req).await?;
    collect(resp).await
}

async fn exchange_h2<IO>(io: IO, uri: Uri) -> Result<Response<Bytes>, ClientError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::builder()
        .method("GET")
        .uri(uri)
        .version(Version::HTTP_2)
        .header(header::USER_AGENT, concat!("appnet/", env!("CARGO_PKG_VERSION")))
        .body(Empty::<Bytes>::new())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let resp = sender.send_request(req).await?;
    collect(resp).await
}

async fn collect(resp: Response<hyper::body::Incoming>) -> Result<Response<Bytes>, ClientError> {
    let (parts, body) = resp.into_parts();
    let data = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, data))
}
