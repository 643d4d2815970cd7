//! HTTP/3 (RFC 9114) over QUIC (RFC 9000): quinn carries QUIC, h3 the HTTP/3 framing and QPACK;
//! the request semantics are the same [`Router`](crate::site::Router) as HTTP/1.1 and HTTP/2.
//!
//! - [`quic`]: the QUIC endpoint configurations (ALPN `h3`, TLS 1.3 from the TCP listener's
//!   certificate, transport limits, 0-RTT).
//! - [`session_file`]: session tickets kept in a file, so a later run resumes with 0-RTT.
//! - [`head`]: the pure RFC 9114 §4.2/§4.3 request-head checks the server runs before routing
//!   (fuzzed): malformed requests reset only their own stream.
//! - [`server`]: the tokio driver (`appnet web serve --tls --http3`): admission per address,
//!   Retry under load, request and idle timeouts, 0-RTT for safe methods only.
//! - [`proxy`]: the caching proxy as an HTTP/3 service (`appnet web proxy --tls --http3`).
//! - [`client`]: [`client::Http3Client`], the library client (`appnet web get --http3`, the
//!   experiments): one QUIC connection, concurrent GETs from several tasks, 0-RTT resumption.
//!
//! # The client API
//! ```no_run
//! # async fn f(ca: &std::path::Path) -> Result<(), appnet_web::h3::H3Error> {
//! use appnet_web::h3::client::{Http3Client, Roots};
//! let addr = "127.0.0.1:8443".parse().unwrap();
//! let tickets = std::path::Path::new("/tmp/tickets");
//! // The first connection does a full handshake; its session ticket goes to the file on close ...
//! let c = Http3Client::connect(addr, "localhost", Roots::CaFile(ca.into()), Some(tickets)).await?;
//! let (status, body) = c.get("/index.html").await?;
//! c.close().await;
//! // ... a second one with the same file (here or in another process) sends its requests as
//! // 0-RTT early data.
//! let again = Http3Client::connect(addr, "localhost", Roots::CaFile(ca.into()), Some(tickets)).await?;
//! let (a, b) = tokio::join!(again.get("/a.jpg"), again.get("/b.jpg"));
//! assert!(again.used_0rtt());
//! # Ok(()) }
//! ```

pub mod client;
pub mod head;
pub mod proxy;
pub mod quic;
pub mod server;
pub mod session_file;

/// What can go wrong setting up or using HTTP/3, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum H3Error {
    /// The TLS configuration cannot carry QUIC (QUIC needs TLS 1.3 with AES-128-GCM).
    #[error("TLS configuration unusable for QUIC: {0}")]
    Tls(String),
    /// The CA file has no usable certificate.
    #[error("CA file {0}: no PEM certificates (pass --cacert with the server's CA)")]
    Ca(String),
    /// Binding or using the UDP socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The QUIC connection could not be set up.
    #[error("QUIC connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The QUIC connection failed or was closed.
    #[error("QUIC connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The HTTP/3 connection failed.
    #[error("HTTP/3 connection: {0}")]
    H3Connection(#[from] h3::error::ConnectionError),
    /// One HTTP/3 request failed (its stream was reset or the connection closed).
    #[error("HTTP/3 stream: {0}")]
    Stream(#[from] h3::error::StreamError),
    /// The request could not be built (bad path or name).
    #[error("bad request: {0}")]
    Request(String),
    /// No answer in time.
    #[error("no response within {0:?}")]
    Timeout(std::time::Duration),
}
