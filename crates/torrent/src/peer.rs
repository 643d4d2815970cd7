//! One peer connection: the handshake (wrong info hash or self-connections are dropped), then a
//! reader that decodes and validates every message and feeds the session, and a writer that
//! sends control messages first and then queued block uploads read from disk. Downloads are
//! shaped by wrapping the read half; uploads block by block through one FIFO gate per session.

use crate::swarm::PeerKey;
use crate::wire::{BlockRef, HANDSHAKE_LEN, Handshake, MAX_REQUEST, Message, piece_header};
use appnet_netkit::Shutdown;
use appnet_netkit::accept::ConnSlot;
use appnet_netkit::rate::{Limited, Limiter};
use bytes::BytesMut;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

/// What the session offers each of its peer connections: admission, the handshake, the core's
/// message handling, and the disk and upload shaping for uploads. A trait so that this module
/// runs connections without depending on the session that spawns them.
pub(crate) trait PeerHost: Clone + Send + Sync + 'static {
    /// Whether a connection from or to `addr` may start its handshake (not banned).
    fn admit(&self, addr: &SocketAddr) -> bool;
    /// Our handshake (info hash and peer id).
    fn handshake(&self) -> Handshake;
    /// Pieces in the torrent (bounds the messages a peer may send).
    fn num_pieces(&self) -> u32;
    /// The download shaper the read half is wrapped in.
    fn download_limiter(&self) -> Limiter;
    /// The session's shutdown.
    fn shutdown(&self) -> &Shutdown;
    /// Adds a handshaken peer whose writer listens on `tx`; `None` if it is refused.
    fn register(
        &self,
        addr: SocketAddr,
        peer_id: [u8; 20],
        outgoing: bool,
        fast: bool,
        extended: bool,
        tx: mpsc::UnboundedSender<Out>,
    ) -> Option<PeerKey>;
    /// Removes a closed peer.
    fn unregister(&self, id: PeerKey);
    /// Handles one message from peer `id`.
    fn handle(&self, id: PeerKey, msg: Message) -> impl Future<Output = Result<(), PeerError>> + Send;
    /// Whether the session is stopping.
    fn is_stopping(&self) -> bool;
    /// Whether we have piece `index` (checked again before each upload).
    fn has_piece(&self, index: u32) -> bool;
    /// Reads a block of a verified piece from disk into `buf`.
    fn read_block(&self, index: u32, begin: u32, buf: &mut [u8]) -> io::Result<()>;
    /// Waits for the upload shaper to allow `bytes` more (one upload at a time).
    fn upload_turn(&self, bytes: u64) -> impl Future<Output = ()> + Send;
    /// Counts an uploaded block.
    fn uploaded(&self, id: PeerKey, bytes: u64);
}

/// What a peer connection's writer is told to do.
#[derive(Debug)]
pub(crate) enum Out {
    /// Send a message.
    Msg(Message),
    /// Queue a block upload.
    Serve(BlockRef),
    /// Drop a queued upload (the peer cancelled).
    Unserve(BlockRef),
    /// Close the connection.
    Close,
}

/// Why a peer connection was closed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("protocol violation: {0}")]
    Protocol(String),
}

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
pub(crate) async fn run<H: PeerHost>(h: H, stream: TcpStream, addr: SocketAddr, slot: Option<ConnSlot>) {
    match run_inner(&h, stream, addr, slot.as_ref()).await {
        Ok(()) => tracing::debug!("peer {addr} closed"),
        Err(e) => tracing::info!("peer {addr} dropped: {e}"),
    }
}

async fn run_inner<H: PeerHost>(
    h: &H,
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
    let mut rd = Limited::new(rd, h.download_limiter(), Limiter::unlimited());
    // Uploads are shaped per block in the writer (see `write_loop`), not per write.
    let mut wr = wr;
    let ours = h.handshake();
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
        _ = h.shutdown().wait() => return Ok(()),
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

async fn read_loop<H: PeerHost>(
    h: &H,
    id: PeerKey,
    rd: &mut Limited<OwnedReadHalf>,
) -> Result<(), PeerError> {
    let n = h.num_pieces();
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

async fn write_loop<H: PeerHost>(
    h: H,
    id: PeerKey,
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
            h.read_block(r.index, r.begin, &mut block[13..])?;
            h.upload_turn(block.len() as u64).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::net::TcpListener;

    /// A host that records what the connection asked of it.
    #[derive(Clone)]
    struct Recorder {
        ours: Handshake,
        shutdown: Shutdown,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Recorder {
        fn new() -> Recorder {
            Recorder {
                ours: Handshake::new([7; 20], [1; 20]),
                shutdown: Shutdown::new(),
                log: Arc::default(),
            }
        }

        fn note(&self, what: String) {
            self.log.lock().unwrap().push(what);
        }

        fn log(&self) -> Vec<String> {
            self.log.lock().unwrap().clone()
        }
    }

    impl PeerHost for Recorder {
        fn admit(&self, _addr: &SocketAddr) -> bool {
            true
        }
        fn handshake(&self) -> Handshake {
            self.ours
        }
        fn num_pieces(&self) -> u32 {
            4
        }
        fn download_limiter(&self) -> Limiter {
            Limiter::unlimited()
        }
        fn shutdown(&self) -> &Shutdown {
            &self.shutdown
        }
        fn register(
            &self,
            _addr: SocketAddr,
            peer_id: [u8; 20],
            _outgoing: bool,
            _fast: bool,
            _extended: bool,
            _tx: mpsc::UnboundedSender<Out>,
        ) -> Option<PeerKey> {
            self.note(format!("register {}", peer_id[0]));
            Some(9)
        }
        fn unregister(&self, id: PeerKey) {
            self.note(format!("unregister {id}"));
        }
        async fn handle(&self, id: PeerKey, msg: Message) -> Result<(), PeerError> {
            self.note(format!("{id}: {msg:?}"));
            Ok(())
        }
        fn is_stopping(&self) -> bool {
            false
        }
        fn has_piece(&self, _index: u32) -> bool {
            false
        }
        fn read_block(&self, _index: u32, _begin: u32, _buf: &mut [u8]) -> io::Result<()> {
            Ok(())
        }
        async fn upload_turn(&self, _bytes: u64) {}
        fn uploaded(&self, _id: PeerKey, _bytes: u64) {}
    }

    /// Runs our side of a connection whose other end sends `bytes` and closes.
    async fn connect_and_send(host: &Recorder, bytes: Vec<u8>) -> Result<(), PeerError> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let remote = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(&bytes).await.unwrap();
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink).await;
        });
        let stream = TcpStream::connect(addr).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(10), run_inner(host, stream, addr, None))
            .await
            .expect("the connection ends by itself");
        remote.abort();
        r
    }

    #[tokio::test]
    async fn a_handshake_for_another_torrent_is_dropped_before_the_session_sees_the_peer() {
        let host = Recorder::new();
        let theirs = Handshake::new([8; 20], [2; 20]);
        let r = connect_and_send(&host, theirs.encode().to_vec()).await;
        assert!(matches!(r, Err(PeerError::Protocol(ref why)) if why == "wrong info hash"), "{r:?}");
        assert!(host.log().is_empty(), "{:?}", host.log());
    }

    #[tokio::test]
    async fn a_peer_is_registered_its_messages_handed_over_and_unregistered_at_close() {
        let host = Recorder::new();
        let mut bytes = Handshake::new([7; 20], [2; 20]).encode().to_vec();
        let mut msg = BytesMut::new();
        Message::Interested.encode(&mut msg);
        bytes.extend_from_slice(&msg);
        let r = connect_and_send(&host, bytes).await;
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(host.log(), ["register 2", "9: Interested", "unregister 9"]);
    }
}
