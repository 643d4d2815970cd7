//! One peer connection: the handshake (wrong info hash or self-connections are dropped), then a
//! reader that decodes and validates every message and feeds the session, and a writer that
//! sends control messages first and then queued block uploads read from disk. Downloads are
//! shaped by wrapping the read half; uploads block by block through one FIFO gate per session.

use crate::session::{Out, PeerError, TorrentHandle};
use crate::wire::{HANDSHAKE_LEN, Handshake, MAX_REQUEST, Message, piece_header};
use appnet_netkit::accept::ConnSlot;
use appnet_netkit::rate::{Limited, Limiter};
use bytes::BytesMut;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

/// Time allowed for the handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A peer silent this long (no keep-alive either) is dropped.
const IDLE_TIMEOUT: Duration = Duration::from_secs(180);
/// We send a keep-alive after this much silence.
const KEEPALIVE: Duration = Duration::from_secs(90);
/// Most block requests queued from one peer.
const MAX_QUEUED_REQUESTS: usize = 1000;

/// Runs a connection to the end, logging why it ended. `slot`: an incoming connection's place
/// in the listener's table (`None` for connections we opened).
pub(crate) async fn run(h: TorrentHandle, stream: TcpStream, addr: SocketAddr, slot: Option<ConnSlot>) {
    match run_inner(&h, stream, addr, slot.as_ref()).await {
        Ok(()) => tracing::debug!("peer {addr} closed"),
        Err(e) => tracing::info!("peer {addr} dropped: {e}"),
    }
}

async fn run_inner(
    h: &TorrentHandle,
    stream: TcpStream,
    addr: SocketAddr,
    slot: Option<&ConnSlot>,
) -> Result<(), PeerError> {
    let outgoing = slot.is_none();
    if !h.admit(&addr) {
        return Ok(());
    }
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let mut rd = Limited::new(rd, h.inner.down.clone(), Limiter::unlimited());
    // Uploads are shaped per block in the writer (see `write_loop`), not per write.
    let mut wr = wr;
    let ours = Handshake::new(h.inner.meta.info_hash, h.inner.peer_id);
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        wr.write_all(&ours.encode()).await?;
        let mut b = [0u8; HANDSHAKE_LEN];
        rd.read_exact(&mut b).await?;
        Ok::<_, std::io::Error>(b)
    });
    let closed = async {
        match slot {
            Some(slot) => slot.closed().await,
            None => std::future::pending().await,
        }
    };
    let theirs = tokio::select! {
        r = handshake => r,
        why = closed => {
            return Err(PeerError::Protocol(format!("closed during the handshake ({why:?})")));
        }
        _ = h.inner.shutdown.wait() => return Ok(()),
    }
    .map_err(|_| PeerError::Protocol("handshake timed out".into()))??;
    let theirs = Handshake::decode(&theirs).map_err(|e| PeerError::Protocol(e.to_string()))?;
    if theirs.info_hash != ours.info_hash {
        return Err(PeerError::Protocol("wrong info hash".into()));
    }
    if theirs.peer_id == ours.peer_id {
        return Ok(()); // connected to ourselves
    }
    let fast = theirs.fast();
    let (tx, rx) = mpsc::unbounded_channel();
    let Some(id) = h.register(addr, theirs.peer_id, outgoing, fast, theirs.extended(), tx) else {
        return Ok(());
    };
    if let Some(slot) = slot {
        slot.busy(); // a peer now: the admission core governs its slot
    }
    tracing::debug!("peer {addr} connected (fast extension: {fast})");
    let mut writer = tokio::spawn(write_loop(h.clone(), id, wr, rx, fast));
    let res = tokio::select! {
        r = read_loop(h, id, &mut rd) => r,
        w = &mut writer => match w {
            Ok(r) => r,
            Err(e) => Err(PeerError::Io(std::io::Error::other(e))),
        },
    };
    h.unregister(id);
    writer.abort();
    res
}

async fn read_loop(h: &TorrentHandle, id: u64, rd: &mut Limited<OwnedReadHalf>) -> Result<(), PeerError> {
    let n = h.inner.meta.info.num_pieces();
    let max_len = (n.div_ceil(8) + 1).max(MAX_REQUEST + 9);
    let mut buf = BytesMut::with_capacity(256 * 1024);
    loop {
        while let Some(msg) =
            Message::decode(&mut buf, max_len).map_err(|e| PeerError::Protocol(e.to_string()))?
        {
            h.handle(id, msg).await?;
        }
        if h.is_stopping() {
            return Ok(());
        }
        if buf.capacity() - buf.len() < 32 * 1024 {
            buf.reserve(128 * 1024);
        }
        let got = tokio::time::timeout(IDLE_TIMEOUT, rd.read_buf(&mut buf))
            .await
            .map_err(|_| PeerError::Protocol("idle timeout".into()))??;
        if got == 0 {
            return Ok(());
        }
    }
}

/// Applies one instruction to the writer's queues; false means close.
fn apply(o: Out, ctrl: &mut BytesMut, queue: &mut VecDeque<crate::wire::BlockRef>, fast: bool) -> bool {
    match o {
        Out::Close => return false,
        Out::Msg(Message::Choke) => {
            // Choking discards queued requests; with the fast extension each is rejected.
            for r in queue.drain(..) {
                if fast {
                    Message::Reject(r).encode(ctrl);
                }
            }
            Message::Choke.encode(ctrl);
        }
        Out::Msg(m) => m.encode(ctrl),
        Out::Serve(r) => {
            if queue.len() < MAX_QUEUED_REQUESTS && !queue.contains(&r) {
                queue.push_back(r);
            } else if fast {
                Message::Reject(r).encode(ctrl);
            }
        }
        Out::Unserve(r) => {
            if let Some(pos) = queue.iter().position(|q| *q == r) {
                queue.remove(pos);
                if fast {
                    Message::Reject(r).encode(ctrl);
                }
            }
        }
    }
    true
}

async fn write_loop(
    h: TorrentHandle,
    id: u64,
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Out>,
    fast: bool,
) -> Result<(), PeerError> {
    let mut ctrl = BytesMut::with_capacity(4096);
    let mut queue = VecDeque::new();
    let mut block = Vec::new();
    loop {
        loop {
            match rx.try_recv() {
                Ok(o) => {
                    if !apply(o, &mut ctrl, &mut queue, fast) {
                        let _ = wr.shutdown().await;
                        return Ok(());
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return Ok(()),
            }
        }
        if !ctrl.is_empty() {
            wr.write_all(&ctrl).await?;
            ctrl.clear();
            continue;
        }
        if let Some(r) = queue.pop_front() {
            if !h.has_piece(r.index) {
                continue;
            }
            block.clear();
            block.extend_from_slice(&piece_header(r.index, r.begin, r.length));
            block.resize(13 + r.length as usize, 0);
            h.inner.storage.read_into(r.index, r.begin, &mut block[13..])?;
            if h.inner.up.is_limited() {
                let _turn = h.inner.up_gate.lock().await;
                h.inner.up.acquire(block.len() as u64).await;
            }
            wr.write_all(&block).await?;
            h.uploaded(id, r.length as u64);
            continue;
        }
        tokio::select! {
            o = rx.recv() => match o {
                None => return Ok(()),
                Some(o) => {
                    if !apply(o, &mut ctrl, &mut queue, fast) {
                        let _ = wr.shutdown().await;
                        return Ok(());
                    }
                }
            },
            _ = tokio::time::sleep(KEEPALIVE) => Message::KeepAlive.encode(&mut ctrl),
        }
    }
}
