//! `appnet web push`: signs one push (the URL list, the time) with the shared secret and sends
//! it to each replica, returning per replica the reply lines or why the push failed there.

use super::PUSH_PATH;
use super::auth::{SIGNATURE_HEADER, Secret, TIMESTAMP_HEADER, unix};
use super::wire::{ReplyLine, parse_reply};
use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::time::{Duration, SystemTime};
use tokio::net::TcpStream;

/// Why a push to one replica failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The replica address is not HOST:PORT or http://HOST:PORT.
    #[error("bad replica address {0}: use HOST:PORT or http://HOST:PORT")]
    Address(String),
    /// Connecting or the exchange failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// hyper reported a protocol error.
    #[error("HTTP error: {0}")]
    Http(#[from] hyper::Error),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The replica refused the push (authentication, limits, push off).
    #[error("refused with {0}: {1}")]
    Refused(u16, String),
}

/// The body of a push listing `urls`.
pub fn body(urls: &[String]) -> Vec<u8> {
    urls.iter().map(|u| format!("{u}\n")).collect::<String>().into_bytes()
}

/// Pushes `body` (see [`body`]) to `replica`, signed with `secret` at the current time.
pub async fn push(
    replica: &str,
    body: &[u8],
    secret: &Secret,
    timeout: Duration,
) -> Result<Vec<ReplyLine>, PushError> {
    let authority = replica.strip_prefix("http://").unwrap_or(replica).trim_end_matches('/');
    if authority.contains('/') || authority.contains("://") || authority.rsplit_once(':').is_none() {
        return Err(PushError::Address(replica.into()));
    }
    let ts = unix(SystemTime::now());
    let req = Request::post(PUSH_PATH)
        .header(header::HOST, authority)
        .header(header::CONTENT_TYPE, "text/plain")
        .header(TIMESTAMP_HEADER, ts.to_string())
        .header(SIGNATURE_HEADER, secret.sign(ts, body))
        .body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(|_| PushError::Address(replica.into()))?;
    let exchange = async {
        let stream = TcpStream::connect(authority).await?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let resp = send.send_request(req).await?;
        let status = resp.status();
        let text = String::from_utf8_lossy(&resp.into_body().collect().await?.to_bytes()).into_owned();
        if !status.is_success() {
            return Err(PushError::Refused(status.as_u16(), text.trim().to_string()));
        }
        Ok(parse_reply(&text))
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| PushError::Timeout(timeout))?
}
