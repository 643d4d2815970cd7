//! Body types shared by the HTTP/1 (hyper) and HTTP/2 (h2) drivers: the response body (bytes
//! or file segments streamed in chunks) and request-body collection with a size cap.

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;

/// The response body type of every handler.
pub type Body = BoxBody<Bytes, io::Error>;

/// An empty body.
pub fn empty() -> Body {
    http_body_util::Empty::new().map_err(|never| match never {}).boxed()
}

/// A body of bytes already in memory.
pub fn full(data: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(data.into()).map_err(|never| match never {}).boxed()
}

/// One piece of a file-backed body.
#[derive(Debug, Clone)]
pub enum Segment {
    /// Bytes in memory (multipart headers, cached files).
    Bytes(Bytes),
    /// `len` bytes of the file starting at `offset`.
    File {
        /// Start offset.
        offset: u64,
        /// Number of bytes.
        len: u64,
    },
}

/// Read size for streamed files.
const CHUNK: usize = 256 * 1024;

/// A body that streams `segments`, reading file ranges from `path` in chunks.
pub fn segments(path: PathBuf, segments: Vec<Segment>) -> Body {
    struct St {
        path: PathBuf,
        file: Option<tokio::fs::File>,
        pos: Option<u64>,
        left: VecDeque<Segment>,
    }
    let st = St { path, file: None, pos: None, left: segments.into() };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        loop {
            let seg = st.left.pop_front()?;
            match seg {
                Segment::Bytes(b) if b.is_empty() => continue,
                Segment::Bytes(b) => return Some((Ok(hyper::body::Frame::data(b)), st)),
                Segment::File { len: 0, .. } => continue,
                Segment::File { offset, len } => {
                    let result: io::Result<Bytes> = async {
                        if st.file.is_none() {
                            st.file = Some(tokio::fs::File::open(&st.path).await?);
                        }
                        let file = st.file.as_mut().expect("opened above");
                        if st.pos != Some(offset) {
                            file.seek(io::SeekFrom::Start(offset)).await?;
                        }
                        let want = (len as usize).min(CHUNK);
                        let mut buf = vec![0u8; want];
                        let mut got = 0;
                        while got < want {
                            let n = file.read(&mut buf[got..]).await?;
                            if n == 0 {
                                return Err(io::Error::new(
                                    io::ErrorKind::UnexpectedEof,
                                    "file shrank while sending",
                                ));
                            }
                            got += n;
                        }
                        st.pos = Some(offset + want as u64);
                        if (want as u64) < len {
                            st.left.push_front(Segment::File {
                                offset: offset + want as u64,
                                len: len - want as u64,
                            });
                        }
                        Ok(Bytes::from(buf))
                    }
                    .await;
                    return match result {
                        Ok(b) => Some((Ok(hyper::body::Frame::data(b)), st)),
                        Err(e) => {
                            st.left.clear();
                            Some((Err(e), st))
                        }
                    };
                }
            }
        }
    });
    http_body_util::StreamBody::new(stream).boxed()
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// It is larger than the configured cap (413).
    #[error("request body larger than {0} bytes")]
    TooLarge(u64),
    /// The client broke off or sent bad framing.
    #[error("request body unreadable: {0}")]
    Broken(String),
}

/// A request body from either protocol.
pub enum RequestBody {
    /// HTTP/1 via hyper.
    H1(hyper::body::Incoming),
    /// HTTP/2 via h2 (flow-control capacity is released as data is read).
    H2(h2::RecvStream),
    /// A body already read in full (HTTP/2 reads bodies before answering).
    Buffered(Bytes),
    /// No body.
    Empty,
}

impl RequestBody {
    /// Reads the whole body, refusing more than `limit` bytes.
    pub async fn collect(self, limit: u64) -> Result<Bytes, BodyError> {
        let mut out = bytes::BytesMut::new();
        match self {
            RequestBody::Empty => {}
            RequestBody::Buffered(b) => {
                if b.len() as u64 > limit {
                    return Err(BodyError::TooLarge(limit));
                }
                return Ok(b);
            }
            RequestBody::H1(mut body) => {
                while let Some(frame) = body.frame().await {
                    let frame = frame.map_err(|e| BodyError::Broken(e.to_string()))?;
                    if let Ok(data) = frame.into_data() {
                        if out.len() as u64 + data.len() as u64 > limit {
                            return Err(BodyError::TooLarge(limit));
                        }
                        out.extend_from_slice(&data);
                    }
                }
            }
            RequestBody::H2(mut body) => {
                while let Some(data) = body.data().await {
                    let data = data.map_err(|e| BodyError::Broken(e.to_string()))?;
                    let _ = body.flow_control().release_capacity(data.len());
                    if out.len() as u64 + data.len() as u64 > limit {
                        return Err(BodyError::TooLarge(limit));
                    }
                    out.extend_from_slice(&data);
                }
            }
        }
        Ok(out.freeze())
    }
}
