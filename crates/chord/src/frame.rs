//! Length-prefixed frames over an async byte stream: read one (bounded, with a shared memory
//! budget on the server) and write one. The pool, the client and the server all frame the same
//! way; this is the one copy, below all three.

use crate::wire::{self, WireError};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Memory for frames being read, shared by the connections of a server. A frame's buffer
/// grows as its bytes arrive (never preallocated to the announced length), and each growth is
/// taken from this budget; a frame that would go over it is refused with [`WireError::Busy`].
/// Exists so that many connections announcing large frames cannot take the node's memory.
#[derive(Debug, Clone)]
pub struct FrameBudget {
    used: Arc<AtomicUsize>,
    max: usize,
}

impl FrameBudget {
    /// A budget of `max` bytes for all frames being read at once.
    pub fn new(max: usize) -> FrameBudget {
        FrameBudget { used: Arc::new(AtomicUsize::new(0)), max }
    }

    /// No shared limit (each frame is still bounded by [`wire::MAX_FRAME`]).
    pub fn unlimited() -> FrameBudget {
        FrameBudget::new(usize::MAX)
    }

    /// Bytes held by frames being read now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= self.max)
            })
            .is_ok()
    }
}

/// Bytes of a [`FrameBudget`] held by one frame being read; given back on drop.
struct Held<'a> {
    budget: &'a FrameBudget,
    bytes: usize,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// First read of a frame body; later reads double it (up to [`MAX_READ_STEP`]).
const FIRST_READ_STEP: usize = 4096;
/// Largest single growth of a frame buffer.
const MAX_READ_STEP: usize = 256 * 1024;

/// Reads one frame body (without its length prefix), bounded by [`wire::MAX_FRAME`].
/// `Ok(None)` at a clean end of stream before a frame starts.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<Result<Vec<u8>, WireError>>> {
    read_frame_within(r, &FrameBudget::unlimited()).await
}

/// Like [`read_frame`], growing the buffer step by step as the bytes arrive and taking each
/// step from `budget`: `Some(Err(WireError::Busy))` when the budget cannot cover the next step.
pub async fn read_frame_within<R: AsyncRead + Unpin>(
    r: &mut R,
    budget: &FrameBudget,
) -> io::Result<Option<Result<Vec<u8>, WireError>>> {
    let mut prefix = [0u8; 4];
    match r.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = match wire::frame_len(prefix) {
        Ok(n) => n,
        Err(e) => return Ok(Some(Err(e))),
    };
    let mut body = Vec::new();
    let mut held = Held { budget, bytes: 0 };
    while body.len() < len {
        let start = body.len();
        let step = start.clamp(FIRST_READ_STEP, MAX_READ_STEP).min(len - start);
        if !budget.take(step) {
            return Ok(Some(Err(WireError::Busy)));
        }
        held.bytes += step;
        body.reserve_exact(step);
        body.resize(start + step, 0);
        r.read_exact(&mut body[start..]).await?;
    }
    Ok(Some(Ok(body)))
}

/// Writes a whole frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &[u8]) -> io::Result<()> {
    w.write_all(frame).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Request;

    #[tokio::test]
    async fn a_frame_buffer_grows_with_the_bytes_not_the_announced_length() {
        let budget = FrameBudget::new(64 * 1024);
        let (mut tx, mut rx) = tokio::io::duplex(1 << 20);
        tx.write_all(&(wire::MAX_FRAME as u32).to_be_bytes()).await.unwrap();
        tx.write_all(&[1, 2, 3]).await.unwrap();
        let reader = budget.clone();
        let task = tokio::spawn(async move { read_frame_within(&mut rx, &reader).await });
        // The reader waits for the rest of a 4 MiB frame holding one small step of memory.
        for _ in 0..1000 {
            if budget.used() > 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(budget.used(), FIRST_READ_STEP);
        // More bytes than the budget allows: refused as busy, and the memory given back.
        tx.write_all(&vec![0u8; 100 * 1024]).await.unwrap();
        assert_eq!(task.await.unwrap().unwrap(), Some(Err(WireError::Busy)));
        assert_eq!(budget.used(), 0);
        // A whole frame within the budget reads back intact.
        let frame = wire::encode_request(8, &Request::Get { key: vec![7; 1000] });
        let (mut tx, mut rx) = tokio::io::duplex(1 << 16);
        tx.write_all(&frame).await.unwrap();
        assert_eq!(read_frame_within(&mut rx, &budget).await.unwrap(), Some(Ok(frame[4..].to_vec())));
        assert_eq!(budget.used(), 0);
    }
}
