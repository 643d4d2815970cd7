//! The sans-IO HTTP/2 server connection (RFC 9113): bytes from the client go in with
//! [`Conn::recv`], requests come out as [`Event`]s, responses go in with
//! [`Conn::send_headers`]/[`Conn::send_data`]/[`Conn::push_promise`], and the frames to write
//! come out of [`Conn::take_output`], DATA chosen by the RFC 9218 [`Scheduler`] under the
//! peer's flow-control windows. No sockets, no clock but the `now` passed in.

use super::frame::{self, FrameHeader, Reason};
use super::hpack::{self, Decoder};
use super::hpack_enc::{Encoder, HeadCache};
use super::idmap::IdMap;
use super::priority::{Priority, Scheduler};
use bytes::{Bytes, BytesMut};
use http::uri::{self, Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The connection preface every client sends first.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Largest header block (HEADERS + CONTINUATION) assembled; more is ENHANCE_YOUR_CALM.
const MAX_BLOCK: usize = 256 * 1024;
/// Most CONTINUATION frames in one header block (CONTINUATION floods).
const MAX_CONTINUATIONS: u32 = 128;
/// Streams we reset whose late frames are still ignored rather than treated as errors.
const REMEMBER_RESETS: usize = 128;
/// Client streams remembered as opened, to tell a closed stream (STREAM_CLOSED) from one that
/// was skipped over and can never open (PROTOCOL_ERROR).
const REMEMBER_OPENED: usize = 4096;
/// Control frames (SETTINGS/PING answers...) pending for a client that does not read them.
const MAX_PENDING_CONTROL: usize = 1 << 20;
/// Bytes of a response held per stream before the driver stops pulling its body.
const STREAM_BUFFER: usize = 256 * 1024;
/// Payloads up to this size are copied next to their frame header; larger ones are written
/// from their own buffer.
const COPY_BELOW: usize = 2048;

/// The server's side of the limits and windows.
#[derive(Debug, Clone)]
pub struct Limits {
    /// SETTINGS_MAX_CONCURRENT_STREAMS: client streams open at once; more get REFUSED_STREAM.
    pub max_streams: u32,
    /// Our initial stream window (SETTINGS_INITIAL_WINDOW_SIZE).
    pub stream_window: u32,
    /// Our connection window.
    pub conn_window: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE: larger request heads get 431.
    pub max_header_list: usize,
    /// Largest request body; larger gets 413.
    pub max_body: u64,
    /// Client resets of unanswered streams allowed per second (rapid reset, CVE-2023-44487).
    pub resets_per_sec: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_streams: 128,
            stream_window: 1 << 20,
            conn_window: 4 << 20,
            max_header_list: 16 * 1024,
            max_body: 10 << 20,
            resets_per_sec: 200,
        }
    }
}

/// What the connection asks of the server.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per request, moved straight to the server
pub enum Event {
    /// A complete request (head and body).
    Request {
        /// Its stream.
        stream: u32,
        /// The request; the body is complete.
        req: Request<Bytes>,
    },
    /// A request to refuse with an error status (431 head too large, 413 body too large).
    Refuse {
        /// Its stream.
        stream: u32,
        /// The status to answer.
        status: u16,
        /// Why, for the log.
        why: &'static str,
    },
    /// The stream is gone (reset by the client or by us): drop its work.
    Cancelled {
        /// Its stream.
        stream: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Send {
    /// No HEADERS sent yet.
    Idle,
    /// HEADERS sent; more DATA may be queued.
    Open,
    /// All DATA queued; END_STREAM goes with the last of it.
    Closing,
}

#[derive(Debug)]
struct Stream {
    /// The client may still send DATA (no END_STREAM yet).
    recv_open: bool,
    /// The request head, until the body is complete (boxed: streams move inside the map, and
    /// most requests have no body, so their head never waits here).
    head: Option<Box<Request<()>>>,
    body: BytesMut,
    content_length: Option<u64>,
    received: u64,
    /// The body passed `max_body`: answered with 413, then reset.
    too_large: bool,
    recv_window: i64,
    send_window: i64,
    send: Send,
    queue: VecDeque<Bytes>,
    queued: usize,
    prio: Priority,
    /// Counted against SETTINGS_MAX_CONCURRENT_STREAMS.
    counted: bool,
}

impl Stream {
    fn new(recv_open: bool, send_window: i64, recv_window: i64) -> Stream {
        Stream {
            recv_open,
            head: None,
            body: BytesMut::new(),
            content_length: None,
            received: 0,
            too_large: false,
            recv_window,
            send_window,
            send: Send::Idle,
            queue: VecDeque::new(),
            queued: 0,
            prio: Priority::default(),
            counted: false,
        }
    }

    fn ready(&self) -> bool {
        match self.send {
            Send::Idle => false,
            Send::Open => self.queued > 0 && self.send_window > 0,
            Send::Closing => self.queued == 0 || self.send_window > 0,
        }
    }
}

/// A header block being assembled from HEADERS and CONTINUATION frames.
struct Block {
    stream: u32,
    end_stream: bool,
    self_dependent: bool,
    buf: Vec<u8>,
    continuations: u32,
}

/// One server-side HTTP/2 connection's state (see the module docs).
pub struct Conn {
    limits: Limits,
    inbuf: BytesMut,
    preface_done: bool,
    decoder: Decoder,
    block: Option<Block>,
    streams: IdMap<Stream>,
    /// PRIORITY_UPDATEs for streams not opened yet.
    early_priority: HashMap<u32, Priority>,
    /// Whether the client speaks RFC 9218 (see [`Conn::unsignalled`]).
    rfc9218_client: bool,
    reset_by_us: VecDeque<u32>,
    /// The latest client streams opened, ascending (ids only grow): one not open now is closed.
    opened: VecDeque<u32>,
    last_client: u32,
    last_push: u32,
    active: u32,
    peer_window: i64,
    peer_max_frame: usize,
    peer_push: bool,
    peer_max_streams: u32,
    pushes_open: u32,
    send_window: i64,
    recv_window: i64,
    ctl: Vec<u8>,
    /// What the last [`Conn::take_output`] took from `ctl`: the next buffer's capacity.
    ctl_hint: usize,
    encoder: Encoder,
    scheduler: Scheduler,
    events: VecDeque<Event>,
    goaway_sent: bool,
    failed: bool,
    peer_goaway: bool,
    reset_window: (Instant, u32),
}

impl Conn {
    /// A connection whose preface has not arrived yet; our SETTINGS are queued.
    pub fn new(limits: Limits, now: Instant) -> Conn {
        let mut ctl = Vec::with_capacity(256);
        frame::settings(
            &mut ctl,
            &[
                (frame::SETTINGS_MAX_CONCURRENT_STREAMS, limits.max_streams),
                (frame::SETTINGS_INITIAL_WINDOW_SIZE, limits.stream_window.min(frame::MAX_WINDOW as u32)),
                (frame::SETTINGS_MAX_HEADER_LIST_SIZE, limits.max_header_list.min(u32::MAX as usize) as u32),
                (frame::SETTINGS_NO_RFC7540_PRIORITIES, 1),
            ],
        );
        let conn_window = i64::from(limits.conn_window).clamp(frame::DEFAULT_WINDOW, frame::MAX_WINDOW);
        if conn_window > frame::DEFAULT_WINDOW {
            frame::window_update(&mut ctl, 0, (conn_window - frame::DEFAULT_WINDOW) as u32);
        }
        Conn {
            limits,
            inbuf: BytesMut::with_capacity(16 * 1024),
            preface_done: false,
            decoder: Decoder::default(),
            block: None,
            streams: IdMap::default(),
            early_priority: HashMap::new(),
            rfc9218_client: false,
            reset_by_us: VecDeque::new(),
            opened: VecDeque::new(),
            last_client: 0,
            last_push: 0,
            active: 0,
            peer_window: frame::DEFAULT_WINDOW,
            peer_max_frame: frame::DEFAULT_MAX_FRAME as usize,
            peer_push: true,
            peer_max_streams: u32::MAX,
            pushes_open: 0,
            send_window: frame::DEFAULT_WINDOW,
            recv_window: conn_window,
            ctl,
            ctl_hint: 4096,
            encoder: Encoder::default(),
            scheduler: Scheduler::default(),
            events: VecDeque::new(),
            goaway_sent: false,
            failed: false,
            peer_goaway: false,
            reset_window: (now, 0),
        }
    }

    /// The next thing for the server to do.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether a connection error ended the connection (flush the output, then close).
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Whether GOAWAY went out (no new streams are accepted).
    pub fn goaway_sent(&self) -> bool {
        self.goaway_sent
    }

    /// Whether the client sent GOAWAY.
    pub fn peer_goaway(&self) -> bool {
        self.peer_goaway
    }

    /// Streams not finished yet (requests being read or answered, pushes).
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// The highest client stream id seen.
    pub fn last_client_stream(&self) -> u32 {
        self.last_client
    }

    /// The priority of a response its request gave no signal for. A client that speaks RFC 9218
    /// (it sent SETTINGS_NO_RFC7540_PRIORITIES = 1, a `priority` field or a PRIORITY_UPDATE)
    /// gets that scheme's defaults: urgency 3, one response after another (RFC 9218 §2.1, §4).
    /// Any other client speaks RFC 7540's scheme, where a stream without a signal depends on
    /// stream 0 with the default weight, like all its siblings, and siblings of equal weight
    /// share the connection (RFC 7540 §5.3.5): urgency 3, in turn. Clients of that kind (curl,
    /// nghttp, h2load, download managers) fetch in parallel on purpose and expect the shares;
    /// served one after another, the last of ten parallel downloads waited for the other nine.
    /// (Their RFC 7540 weights and dependencies are still not acted on: our SETTINGS say so.)
    fn unsignalled(&self) -> Priority {
        Priority { urgency: 3, incremental: !self.rfc9218_client }
    }

    /// The priority a stream has now (RFC 9218), if it is open.
    pub fn priority(&self, stream: u32) -> Option<Priority> {
        self.streams.get(&stream).map(|s| s.prio)
    }

    /// Starts a graceful close: GOAWAY(NO_ERROR) naming the last stream that will be answered.
    pub fn shutdown(&mut self) {
        if !self.goaway_sent {
            self.goaway_sent = true;
            frame::goaway(&mut self.ctl, self.last_client, Reason::NoError);
        }
    }

    fn conn_error(&mut self, reason: Reason, why: &'static str) {
        if self.failed {
            return;
        }
        tracing::debug!(?reason, "HTTP/2 connection error: {why}");
        self.failed = true;
        self.goaway_sent = true;
        frame::goaway(&mut self.ctl, self.last_client, reason);
        for (&id, s) in self.streams.iter() {
            if s.send != Send::Idle || s.head.is_none() {
                self.events.push_back(Event::Cancelled { stream: id });
            }
        }
        self.streams.clear();
        self.inbuf.clear();
    }

    fn stream_error(&mut self, id: u32, reason: Reason) {
        tracing::debug!(stream = id, ?reason, "HTTP/2 stream error");
        frame::rst_stream(&mut self.ctl, id, reason);
        self.forget(id);
        self.events.push_back(Event::Cancelled { stream: id });
    }

    /// Removes a stream we reset or finished while the client may still send on it.
    fn forget(&mut self, id: u32) {
        if let Some(s) = self.streams.remove(&id) {
            self.release(id, &s);
        }
        if self.reset_by_us.len() >= REMEMBER_RESETS {
            self.reset_by_us.pop_front();
        }
        self.reset_by_us.push_back(id);
    }

    fn release(&mut self, id: u32, s: &Stream) {
        if s.counted {
            self.active = self.active.saturating_sub(1);
        }
        if id.is_multiple_of(2) {
            self.pushes_open = self.pushes_open.saturating_sub(1);
        }
    }

    /// Whether `id` was never opened (RFC 9113 §5.1 "idle").
    fn is_idle(&self, id: u32) -> bool {
        if id.is_multiple_of(2) { id > self.last_push } else { id > self.last_client }
    }

    /// Feeds bytes read from the client.
    pub fn recv(&mut self, data: &[u8], now: Instant) {
        if self.failed {
            return;
        }
        self.inbuf.extend_from_slice(data);
        self.process(now);
    }

    /// Feeds bytes read from the client in `buf`, which is left empty: when nothing is
    /// pending, the buffer itself is taken (swapped with the core's empty one), not copied.
    pub fn recv_buf(&mut self, buf: &mut BytesMut, now: Instant) {
        if self.failed {
            buf.clear();
            return;
        }
        if self.inbuf.is_empty() {
            std::mem::swap(&mut self.inbuf, buf);
        } else {
            self.inbuf.extend_from_slice(buf);
        }
        buf.clear();
        self.process(now);
    }

    /// Handles every complete frame in `inbuf`.
    fn process(&mut self, now: Instant) {
        if !self.preface_done {
            let n = self.inbuf.len().min(PREFACE.len());
            if self.inbuf[..n] != PREFACE[..n] {
                self.conn_error(Reason::Protocol, "bad connection preface");
                return;
            }
            if n < PREFACE.len() {
                return;
            }
            let _ = self.inbuf.split_to(PREFACE.len());
            self.preface_done = true;
        }
        while !self.failed && self.inbuf.len() >= FrameHeader::LEN {
            let Some(h) = FrameHeader::of(&self.inbuf) else { break };
            if h.len > frame::DEFAULT_MAX_FRAME {
                self.conn_error(Reason::FrameSize, "frame larger than SETTINGS_MAX_FRAME_SIZE");
                break;
            }
            let total = FrameHeader::LEN + h.payload_len();
            if self.inbuf.len() < total {
                break;
            }
            let mut whole = self.inbuf.split_to(total).freeze();
            let payload = whole.split_off(FrameHeader::LEN);
            self.frame(h, payload, now);
        }
        if self.ctl.len() > MAX_PENDING_CONTROL {
            self.ctl.clear();
            self.conn_error(Reason::Calm, "the client does not read our control frames");
        }
    }

    fn frame(&mut self, h: FrameHeader, payload: Bytes, now: Instant) {
        match &self.block {
            Some(b) if h.kind != frame::CONTINUATION || h.stream != b.stream => {
                return self.conn_error(Reason::Protocol, "header block interrupted");
            }
            None if h.kind == frame::CONTINUATION => {
                return self.conn_error(Reason::Protocol, "CONTINUATION without a header block");
            }
            _ => {}
        }
        match h.kind {
            frame::DATA => self.on_data(h, payload),
            frame::HEADERS => self.on_headers(h, payload),
            frame::CONTINUATION => self.on_continuation(h, payload),
            frame::PRIORITY => self.on_priority(h, &payload),
            frame::RST_STREAM => self.on_rst(h, &payload, now),
            frame::SETTINGS => self.on_settings(h, &payload),
            frame::PUSH_PROMISE => self.conn_error(Reason::Protocol, "PUSH_PROMISE from a client"),
            frame::PING => self.on_ping(h, &payload),
            frame::GOAWAY => {
                if h.stream != 0 {
                    self.conn_error(Reason::Protocol, "GOAWAY on a stream");
                } else if payload.len() < 8 {
                    self.conn_error(Reason::FrameSize, "short GOAWAY");
                } else {
                    self.peer_goaway = true;
                }
            }
            frame::WINDOW_UPDATE => self.on_window_update(h, &payload),
            frame::PRIORITY_UPDATE => self.on_priority_update(h, &payload),
            _ => {} // unknown frame types are ignored (RFC 9113 §4.1)
        }
    }

    fn on_data(&mut self, h: FrameHeader, payload: Bytes) {
        if h.stream == 0 {
            return self.conn_error(Reason::Protocol, "DATA on stream 0");
        }
        let Some(data) = unpad(h.flags, payload.clone()) else {
            return self.conn_error(Reason::Protocol, "DATA padding longer than the frame");
        };
        let len = payload.len() as i64;
        self.recv_window -= len;
        if self.recv_window < 0 {
            return self.conn_error(Reason::FlowControl, "DATA beyond the connection window");
        }
        self.replenish_conn();
        if self.is_idle(h.stream) {
            return self.conn_error(Reason::Protocol, "DATA on an idle stream");
        }
        let stream_window = i64::from(self.limits.stream_window);
        let max_body = self.limits.max_body;
        let Some(s) = self.streams.get_mut(&h.stream) else {
            if self.reset_by_us.contains(&h.stream) {
                return; // in flight when we reset it
            }
            return self.conn_error(Reason::StreamClosed, "DATA on a closed stream");
        };
        if !s.recv_open {
            return self.stream_error(h.stream, Reason::StreamClosed);
        }
        s.recv_window -= len;
        if s.recv_window < 0 {
            return self.stream_error(h.stream, Reason::FlowControl);
        }
        s.received += data.len() as u64;
        if s.content_length.is_some_and(|cl| s.received > cl) {
            return self.stream_error(h.stream, Reason::Protocol);
        }
        let end = h.flags & frame::END_STREAM != 0;
        if !s.too_large {
            if s.body.len() as u64 + data.len() as u64 > max_body {
                s.too_large = true;
                s.body = BytesMut::new();
                s.head = None;
                self.events.push_back(Event::Refuse {
                    stream: h.stream,
                    status: 413,
                    why: "request body too large",
                });
            } else {
                s.body.extend_from_slice(&data);
            }
        }
        if end {
            s.recv_open = false;
            if s.content_length.is_some_and(|cl| s.received != cl) {
                return self.stream_error(h.stream, Reason::Protocol);
            }
            self.dispatch(h.stream);
        } else if !s.too_large && s.recv_window < stream_window / 2 {
            frame::window_update(&mut self.ctl, h.stream, (stream_window - s.recv_window) as u32);
            s.recv_window = stream_window;
        }
    }

    fn replenish_conn(&mut self) {
        let full = i64::from(self.limits.conn_window).clamp(frame::DEFAULT_WINDOW, frame::MAX_WINDOW);
        if self.recv_window < full / 2 {
            frame::window_update(&mut self.ctl, 0, (full - self.recv_window) as u32);
            self.recv_window = full;
        }
    }

    fn on_headers(&mut self, h: FrameHeader, payload: Bytes) {
        if h.stream == 0 {
            return self.conn_error(Reason::Protocol, "HEADERS on stream 0");
        }
        let Some(mut fragment) = unpad(h.flags, payload) else {
            return self.conn_error(Reason::Protocol, "HEADERS padding longer than the frame");
        };
        let mut self_dependent = false;
        if h.flags & frame::PRIORITY_FLAG != 0 {
            if fragment.len() < 5 {
                return self.conn_error(Reason::FrameSize, "HEADERS too short for its priority");
            }
            let dep = u32::from_be_bytes([fragment[0], fragment[1], fragment[2], fragment[3]]) & 0x7fff_ffff;
            self_dependent = dep == h.stream;
            fragment = fragment.slice(5..);
        }
        let end_stream = h.flags & frame::END_STREAM != 0;
        if h.flags & frame::END_HEADERS != 0 {
            // The whole block in one frame (the usual case): decoded where it lies.
            return self.on_block(h.stream, end_stream, self_dependent, &fragment);
        }
        self.block = Some(Block {
            stream: h.stream,
            end_stream,
            self_dependent,
            buf: fragment.to_vec(),
            continuations: 0,
        });
    }

    fn on_continuation(&mut self, h: FrameHeader, payload: Bytes) {
        let Some(mut block) = self.block.take() else {
            return self.conn_error(Reason::Protocol, "CONTINUATION without a header block");
        };
        block.buf.extend_from_slice(&payload);
        block.continuations += 1;
        if block.buf.len() > MAX_BLOCK || block.continuations > MAX_CONTINUATIONS {
            return self.conn_error(Reason::Calm, "header block too long");
        }
        if h.flags & frame::END_HEADERS != 0 {
            self.on_block(block.stream, block.end_stream, block.self_dependent, &block.buf);
        } else {
            self.block = Some(block);
        }
    }

    fn on_block(&mut self, id: u32, end_stream: bool, self_dependent: bool, buf: &[u8]) {
        // Every block goes through the decoder, whatever becomes of its stream: the dynamic
        // table must stay in step with the client's.
        let mut head = HeadBuilder::new(self.limits.max_header_list);
        if self.decoder.decode_with_slots(buf, |n, v, slot| head.field(n, v, slot)).is_err() {
            return self.conn_error(Reason::Compression, "undecodable header block");
        }
        if id.is_multiple_of(2) {
            return self.conn_error(Reason::Protocol, "client stream with an even id");
        }
        if let Some(s) = self.streams.get_mut(&id) {
            // Trailers, or a second head on a stream.
            if !s.recv_open {
                return self.stream_error(id, Reason::StreamClosed);
            }
            if !end_stream || head.pseudo || head.error.is_some() {
                return self.stream_error(id, Reason::Protocol);
            }
            s.recv_open = false;
            if s.content_length.is_some_and(|cl| s.received != cl) {
                return self.stream_error(id, Reason::Protocol);
            }
            return self.dispatch(id);
        }
        if id <= self.last_client {
            if self.reset_by_us.contains(&id) {
                return;
            }
            if self.opened.binary_search(&id).is_err() {
                return self.conn_error(Reason::Protocol, "stream id lower than one already used");
            }
            return self.conn_error(Reason::StreamClosed, "HEADERS on a closed stream");
        }
        self.last_client = id;
        if self.goaway_sent {
            return; // above the GOAWAY's last stream: ignored, the client retries elsewhere
        }
        let early = self.early_priority.remove(&id);
        if self_dependent {
            return self.stream_error(id, Reason::Protocol);
        }
        if self.active >= self.limits.max_streams {
            return self.stream_error(id, Reason::Refused);
        }
        let (req, content_length, prio, too_big) = match head.finish() {
            Ok(r) => r,
            Err(why) => {
                tracing::debug!(stream = id, "malformed HTTP/2 request: {why}");
                return self.stream_error(id, Reason::Protocol);
            }
        };
        if end_stream && content_length.is_some_and(|cl| cl != 0) {
            return self.stream_error(id, Reason::Protocol);
        }
        let mut s = Stream::new(!end_stream, self.peer_window, i64::from(self.limits.stream_window));
        self.rfc9218_client |= early.is_some() || prio.is_some();
        s.prio = early.or(prio).unwrap_or_else(|| self.unsignalled());
        s.content_length = content_length;
        s.counted = true;
        self.active += 1;
        if too_big {
            s.too_large = true;
            self.open(id, s);
            self.events.push_back(Event::Refuse { stream: id, status: 431, why: "request head too large" });
            return;
        }
        if end_stream {
            // Complete already: handed over at once, never parked in the stream.
            self.open(id, s);
            self.events.push_back(Event::Request { stream: id, req: req.map(|()| Bytes::new()) });
        } else {
            s.head = Some(Box::new(req));
            self.open(id, s);
        }
    }

    /// Opens a client stream.
    fn open(&mut self, id: u32, s: Stream) {
        if self.opened.len() >= REMEMBER_OPENED {
            self.opened.pop_front();
        }
        self.opened.push_back(id);
        self.streams.insert(id, s);
    }

    /// Hands a complete request to the server.
    fn dispatch(&mut self, id: u32) {
        let Some(s) = self.streams.get_mut(&id) else { return };
        if s.too_large {
            return; // already refused
        }
        let Some(head) = s.head.take() else { return };
        let body = std::mem::take(&mut s.body).freeze();
        let (parts, ()) = (*head).into_parts();
        self.events.push_back(Event::Request { stream: id, req: Request::from_parts(parts, body) });
    }

    fn on_priority(&mut self, h: FrameHeader, payload: &[u8]) {
        if h.stream == 0 {
            return self.conn_error(Reason::Protocol, "PRIORITY on stream 0");
        }
        if payload.len() != 5 {
            return self.stream_error(h.stream, Reason::FrameSize);
        }
        let dep = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & 0x7fff_ffff;
        if dep == h.stream {
            self.stream_error(h.stream, Reason::Protocol);
        }
        // Otherwise RFC 7540's tree is not used (SETTINGS_NO_RFC7540_PRIORITIES).
    }

    fn on_priority_update(&mut self, h: FrameHeader, payload: &[u8]) {
        if h.stream != 0 {
            return self.conn_error(Reason::Protocol, "PRIORITY_UPDATE on a stream");
        }
        let Some((id, value)) = payload.split_first_chunk::<4>() else {
            return self.conn_error(Reason::FrameSize, "short PRIORITY_UPDATE");
        };
        let id = u32::from_be_bytes(*id) & 0x7fff_ffff;
        if id == 0 || id.is_multiple_of(2) {
            return self.conn_error(Reason::Protocol, "PRIORITY_UPDATE for a push or stream 0");
        }
        let prio = Priority::parse(value);
        self.rfc9218_client = true;
        if let Some(s) = self.streams.get_mut(&id) {
            s.prio = prio;
        } else if id > self.last_client && self.early_priority.len() < self.limits.max_streams as usize {
            self.early_priority.insert(id, prio);
        }
    }

    fn on_rst(&mut self, h: FrameHeader, payload: &[u8], now: Instant) {
        if h.stream == 0 {
            return self.conn_error(Reason::Protocol, "RST_STREAM on stream 0");
        }
        if payload.len() != 4 {
            return self.conn_error(Reason::FrameSize, "RST_STREAM of the wrong size");
        }
        if self.is_idle(h.stream) {
            return self.conn_error(Reason::Protocol, "RST_STREAM on an idle stream");
        }
        let Some(s) = self.streams.remove(&h.stream) else { return };
        self.release(h.stream, &s);
        self.events.push_back(Event::Cancelled { stream: h.stream });
        // Rapid reset: streams opened and cancelled before their answer is out.
        let (start, count) = &mut self.reset_window;
        if now.saturating_duration_since(*start) >= Duration::from_secs(1) {
            *start = now;
            *count = 0;
        }
        *count += 1;
        if *count > self.limits.resets_per_sec {
            self.conn_error(Reason::Calm, "too many streams reset by the client");
        }
    }

    fn on_settings(&mut self, h: FrameHeader, payload: &[u8]) {
        if h.stream != 0 {
            return self.conn_error(Reason::Protocol, "SETTINGS on a stream");
        }
        if h.flags & frame::ACK != 0 {
            if !payload.is_empty() {
                self.conn_error(Reason::FrameSize, "SETTINGS ACK with a payload");
            }
            return;
        }
        if !payload.len().is_multiple_of(6) {
            return self.conn_error(Reason::FrameSize, "SETTINGS not a multiple of 6 bytes");
        }
        for p in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([p[0], p[1]]);
            let value = u32::from_be_bytes([p[2], p[3], p[4], p[5]]);
            match id {
                frame::SETTINGS_ENABLE_PUSH => match value {
                    0 => self.peer_push = false,
                    1 => self.peer_push = true,
                    _ => return self.conn_error(Reason::Protocol, "SETTINGS_ENABLE_PUSH not 0 or 1"),
                },
                frame::SETTINGS_MAX_CONCURRENT_STREAMS => self.peer_max_streams = value,
                frame::SETTINGS_INITIAL_WINDOW_SIZE => {
                    let value = i64::from(value);
                    if value > frame::MAX_WINDOW {
                        return self
                            .conn_error(Reason::FlowControl, "SETTINGS_INITIAL_WINDOW_SIZE too large");
                    }
                    let delta = value - self.peer_window;
                    self.peer_window = value;
                    let mut overflow = false;
                    for s in self.streams.values_mut() {
                        s.send_window += delta;
                        overflow |= s.send_window > frame::MAX_WINDOW;
                    }
                    if overflow {
                        return self.conn_error(Reason::FlowControl, "a stream window beyond 2^31-1");
                    }
                }
                frame::SETTINGS_MAX_FRAME_SIZE => {
                    if !(16_384..=16_777_215).contains(&value) {
                        return self.conn_error(Reason::Protocol, "SETTINGS_MAX_FRAME_SIZE out of range");
                    }
                    self.peer_max_frame = value as usize;
                }
                frame::SETTINGS_HEADER_TABLE_SIZE => self.encoder.set_peer_max(value as usize),
                frame::SETTINGS_NO_RFC7540_PRIORITIES => match value {
                    0 => {}
                    1 => self.rfc9218_client = true,
                    _ => {
                        return self
                            .conn_error(Reason::Protocol, "SETTINGS_NO_RFC7540_PRIORITIES not 0 or 1");
                    }
                },
                // MAX_HEADER_LIST_SIZE: our response heads are small. Unknown: ignored.
                _ => {}
            }
        }
        frame::head(&mut self.ctl, 0, frame::SETTINGS, frame::ACK, 0);
    }

    fn on_ping(&mut self, h: FrameHeader, payload: &[u8]) {
        if h.stream != 0 {
            return self.conn_error(Reason::Protocol, "PING on a stream");
        }
        if payload.len() != 8 {
            return self.conn_error(Reason::FrameSize, "PING not 8 bytes");
        }
        if h.flags & frame::ACK == 0 {
            frame::head(&mut self.ctl, 8, frame::PING, frame::ACK, 0);
            self.ctl.extend_from_slice(payload);
        }
    }

    fn on_window_update(&mut self, h: FrameHeader, payload: &[u8]) {
        let Ok(b) = <[u8; 4]>::try_from(payload) else {
            return self.conn_error(Reason::FrameSize, "WINDOW_UPDATE not 4 bytes");
        };
        let inc = i64::from(u32::from_be_bytes(b) & 0x7fff_ffff);
        if h.stream == 0 {
            if inc == 0 {
                return self.conn_error(Reason::Protocol, "WINDOW_UPDATE of 0");
            }
            self.send_window += inc;
            if self.send_window > frame::MAX_WINDOW {
                self.conn_error(Reason::FlowControl, "connection window beyond 2^31-1");
            }
            return;
        }
        if self.is_idle(h.stream) {
            return self.conn_error(Reason::Protocol, "WINDOW_UPDATE on an idle stream");
        }
        let Some(s) = self.streams.get_mut(&h.stream) else { return };
        if inc == 0 {
            return self.stream_error(h.stream, Reason::Protocol);
        }
        s.send_window += inc;
        if s.send_window > frame::MAX_WINDOW {
            self.stream_error(h.stream, Reason::FlowControl);
        }
    }

    /// Sends a response head. `end_stream` when there is no body. False when the stream is
    /// gone (reset, or the connection failed).
    pub fn send_headers(&mut self, id: u32, status: u16, headers: &HeaderMap, end_stream: bool) -> bool {
        let fields = headers
            .iter()
            .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
            .filter(|(n, _)| !is_connection_specific(n));
        self.send_head(id, end_stream, |enc, out| {
            enc.begin(out);
            enc.status(status, out);
            for (n, v) in fields {
                enc.field(n, v, out);
            }
        })
    }

    /// Sends a response head whose encoding is kept in `cache` (the driver's memo of static
    /// answers): while the HPACK table is unchanged the cached bytes go out as they are.
    /// `fields` must be lower case and free of connection-specific fields, and always the same
    /// for one cache. Same answers as [`Conn::send_headers`].
    pub fn send_cached_headers<'a>(
        &mut self,
        id: u32,
        status: u16,
        fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
        cache: &mut HeadCache,
        end_stream: bool,
    ) -> bool {
        self.send_head(id, end_stream, |enc, out| enc.head(status, fields, cache, out))
    }

    /// Writes a HEADERS frame (and CONTINUATIONs) whose block `encode` appends, when the
    /// stream may send one: the block is encoded only then, since encoding changes the HPACK
    /// table the client's decoder follows.
    fn send_head(
        &mut self,
        id: u32,
        end_stream: bool,
        encode: impl FnOnce(&mut Encoder, &mut Vec<u8>),
    ) -> bool {
        if self.failed {
            return false;
        }
        if !self.streams.get(&id).is_some_and(|s| s.send == Send::Idle) {
            return false;
        }
        // Encoded in place after a frame header written once its length is known.
        let start = self.ctl.len();
        self.ctl.extend_from_slice(&[0; FrameHeader::LEN]);
        encode(&mut self.encoder, &mut self.ctl);
        let len = self.ctl.len() - start - FrameHeader::LEN;
        if len <= self.peer_max_frame {
            let flags = frame::END_HEADERS | if end_stream { frame::END_STREAM } else { 0 };
            let h = FrameHeader { len: len as u32, kind: frame::HEADERS, flags, stream: id }.emit();
            self.ctl[start..start + FrameHeader::LEN].copy_from_slice(&h);
        } else {
            let block = self.ctl.split_off(start + FrameHeader::LEN);
            self.ctl.truncate(start);
            frame::header_block(&mut self.ctl, id, None, &block, end_stream, self.peer_max_frame);
        }
        if end_stream {
            self.finished(id);
        } else if let Some(s) = self.streams.get_mut(&id) {
            s.send = Send::Open;
        }
        true
    }

    /// Queues response body bytes; `end_stream` with the last. False when the stream is gone.
    pub fn send_data(&mut self, id: u32, data: Bytes, end_stream: bool) -> bool {
        let Some(s) = self.streams.get_mut(&id) else { return false };
        if s.send != Send::Open {
            return false;
        }
        if !data.is_empty() {
            s.queued += data.len();
            s.queue.push_back(data);
        }
        if end_stream {
            s.send = Send::Closing;
        }
        true
    }

    /// Whether the driver should pull more of this stream's body (little is queued).
    pub fn wants_data(&self, id: u32) -> bool {
        self.streams.get(&id).is_some_and(|s| s.send == Send::Open && s.queued < STREAM_BUFFER)
    }

    /// Whether the stream's response has started and not all of its body is queued.
    pub fn is_sending(&self, id: u32) -> bool {
        self.streams.get(&id).is_some_and(|s| s.send == Send::Open)
    }

    /// Promises a pushed GET of `path` on `parent` (RFC 9113 §8.4): the new stream's id, or
    /// `None` when the client disabled push, its stream limit is reached, or the parent's
    /// response has ended.
    pub fn push_promise(&mut self, parent: u32, fields: &[(&[u8], &[u8])]) -> Option<u32> {
        if self.failed || !self.peer_push || self.goaway_sent || self.peer_goaway {
            return None;
        }
        if self.pushes_open >= self.peer_max_streams {
            return None;
        }
        if !self.streams.get(&parent).is_some_and(|s| s.send != Send::Closing) {
            return None;
        }
        let id = self.last_push + 2;
        if id > 0x7fff_ffff {
            return None;
        }
        self.last_push = id;
        let mut block = Vec::with_capacity(128);
        // A header block like any other: it carries a table size update we owe.
        self.encoder.begin(&mut block);
        for (name, value) in fields {
            hpack::encode_field(name, value, &mut block);
        }
        frame::header_block(&mut self.ctl, parent, Some(id), &block, false, self.peer_max_frame);
        let mut s = Stream::new(false, self.peer_window, 0);
        s.prio = self.unsignalled();
        self.streams.insert(id, s);
        self.pushes_open += 1;
        Some(id)
    }

    /// Resets a stream (the server gives up on it).
    pub fn reset(&mut self, id: u32, reason: Reason) {
        if self.streams.contains_key(&id) {
            frame::rst_stream(&mut self.ctl, id, reason);
            self.forget(id);
        }
    }

    /// The stream's response has ended with END_STREAM.
    fn finished(&mut self, id: u32) {
        let Some(s) = self.streams.remove(&id) else { return };
        self.release(id, &s);
        if s.recv_open {
            // Answered before the request ended (an error status): the client may stop.
            frame::rst_stream(&mut self.ctl, id, Reason::NoError);
            if self.reset_by_us.len() >= REMEMBER_RESETS {
                self.reset_by_us.pop_front();
            }
            self.reset_by_us.push_back(id);
        }
    }

    /// Appends the frames to write now: control frames first, then DATA picked by priority
    /// within the windows, up to about `budget` payload bytes.
    pub fn take_output(&mut self, budget: usize, out: &mut Vec<Bytes>) {
        // Small frames (control, HEADERS, short DATA) gather in `ctl`, written as one buffer.
        let mut sent = 0;
        while sent < budget && !self.failed {
            let conn_open = self.send_window > 0;
            let ready = self
                .streams
                .iter()
                .filter(|(_, s)| s.ready() && (conn_open || s.queued == 0))
                .map(|(&id, s)| (id, s.prio));
            let Some(id) = self.scheduler.pick(ready) else { break };
            let max_frame = self.peer_max_frame;
            let Some(s) = self.streams.get_mut(&id) else { break };
            let Some(front) = s.queue.front_mut() else {
                // Only END_STREAM is left.
                frame::head(&mut self.ctl, 0, frame::DATA, frame::END_STREAM, id);
                self.finished(id);
                continue;
            };
            let n = front.len().min(max_frame).min(s.send_window as usize).min(self.send_window as usize);
            let chunk = front.split_to(n);
            if front.is_empty() {
                s.queue.pop_front();
            }
            s.queued -= n;
            s.send_window -= n as i64;
            self.send_window -= n as i64;
            let end = s.queued == 0 && s.send == Send::Closing;
            frame::head(&mut self.ctl, n, frame::DATA, if end { frame::END_STREAM } else { 0 }, id);
            if n < COPY_BELOW {
                self.ctl.extend_from_slice(&chunk);
            } else {
                out.push(self.take_ctl());
                out.push(chunk);
            }
            sent += n;
            if end {
                self.finished(id);
            }
        }
        if !self.ctl.is_empty() {
            out.push(self.take_ctl());
        }
    }

    /// The gathered small frames; the next buffer starts as large as this one grew (no
    /// regrowth per batch).
    fn take_ctl(&mut self) -> Bytes {
        self.ctl_hint = self.ctl.len().clamp(1024, 64 * 1024);
        Bytes::from(std::mem::replace(&mut self.ctl, Vec::with_capacity(self.ctl_hint)))
    }
}

/// The payload without its padding (RFC 9113 §6.1), or `None` when the padding does not fit.
fn unpad(flags: u8, mut payload: Bytes) -> Option<Bytes> {
    if flags & frame::PADDED == 0 {
        return Some(payload);
    }
    let (&pad, _) = payload.split_first()?;
    let pad = usize::from(pad);
    if pad >= payload.len() {
        return None;
    }
    let end = payload.len() - pad;
    Some(payload.split_to(end).split_off(1))
}

fn is_connection_specific(name: &[u8]) -> bool {
    matches!(name, b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding" | b"upgrade")
}

/// A request field as [`HeadBuilder`] parsed it, kept in its HPACK table entry's slot: a
/// client repeats most fields by index, and they are then not parsed (or copied) again.
#[derive(Debug, Clone)]
pub(super) enum Prepared {
    Method(Method),
    Scheme(Scheme),
    Authority(Authority),
    Path(PathAndQuery),
    Field(HeaderName, HeaderValue),
}

/// Collects a decoded request head and checks it (RFC 9113 §8.2, §8.3).
struct HeadBuilder {
    limit: usize,
    size: usize,
    // The pseudo-headers, parsed as they arrive (no copy kept of their bytes).
    method: Option<Method>,
    scheme: Option<Scheme>,
    authority: Option<Authority>,
    path: Option<PathAndQuery>,
    headers: HeaderMap,
    pseudo: bool,
    regular: bool,
    content_length: Option<u64>,
    priority: Option<Priority>,
    error: Option<&'static str>,
}

impl HeadBuilder {
    fn new(limit: usize) -> HeadBuilder {
        HeadBuilder {
            limit,
            size: 0,
            method: None,
            scheme: None,
            authority: None,
            path: None,
            headers: HeaderMap::new(),
            pseudo: false,
            regular: false,
            content_length: None,
            priority: None,
            error: None,
        }
    }

    fn fail(&mut self, why: &'static str) {
        self.error.get_or_insert(why);
    }

    /// Takes one decoded field; `slot` is its table entry's (see
    /// [`Decoder::decode_with_slots`]): a field parsed before is taken from it as it was
    /// parsed, and a field parsed now is kept there when nothing but its bytes decided it.
    fn field(&mut self, name: &[u8], value: &[u8], slot: Option<&mut hpack::Slot>) {
        self.size = self.size.saturating_add(name.len() + value.len() + 32);
        if self.error.is_some() {
            return;
        }
        match slot {
            Some(Some(p)) => self.apply(p.clone()),
            Some(empty) => {
                if let Some((p, keep)) = self.parse(name, value) {
                    if keep {
                        *empty = Some(p.clone());
                    }
                    self.apply(p);
                }
            }
            None => {
                if let Some((p, _)) = self.parse(name, value) {
                    self.apply(p);
                }
            }
        }
    }

    /// Checks and parses a field seen for the first time: `None` when it failed the request
    /// or is counted but not kept; else the parsed field and whether it may be kept in its
    /// slot (not when it also set something per request: content-length, priority).
    fn parse(&mut self, name: &[u8], value: &[u8]) -> Option<(Prepared, bool)> {
        if let Some(pseudo) = name.strip_prefix(b":") {
            let parsed = match pseudo {
                b"method" => Method::from_bytes(value).ok().map(Prepared::Method),
                b"scheme" => Scheme::try_from(value).ok().map(Prepared::Scheme),
                b"authority" => Authority::try_from(value).ok().map(Prepared::Authority),
                // An empty :path is malformed (RFC 9113 §8.3.1), not "/".
                b"path" if value.is_empty() => None,
                b"path" => PathAndQuery::try_from(value).ok().map(Prepared::Path),
                _ => {
                    self.fail("unknown pseudo-header");
                    return None;
                }
            };
            if parsed.is_none() {
                self.fail("invalid pseudo-header value");
            }
            return parsed.map(|p| (p, true));
        }
        self.regular = true;
        if name.is_empty() || name.iter().any(|c| c.is_ascii_uppercase()) {
            self.fail("field name not in lower case");
            return None;
        }
        if is_connection_specific(name) || (name == b"te" && value != b"trailers") {
            self.fail("connection-specific field");
            return None;
        }
        if value.first().is_some_and(|b| *b == b' ' || *b == b'\t')
            || value.last().is_some_and(|b| *b == b' ' || *b == b'\t')
        {
            self.fail("field value with leading or trailing whitespace");
            return None;
        }
        let mut keep = true;
        if name == b"content-length" {
            keep = false;
            let parsed = std::str::from_utf8(value).ok().filter(|s| s.bytes().all(|b| b.is_ascii_digit()));
            match parsed.and_then(|s| s.parse::<u64>().ok()) {
                Some(n) if self.content_length.is_none_or(|c| c == n) => self.content_length = Some(n),
                _ => {
                    self.fail("invalid content-length");
                    return None;
                }
            }
        }
        if name == b"priority" {
            keep = false;
            self.priority = Some(Priority::parse(value));
        }
        if self.size > self.limit {
            return None; // counted, not kept: the request gets 431
        }
        let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) else {
            self.fail("invalid field");
            return None;
        };
        Some((Prepared::Field(n, v), keep))
    }

    /// Adds a parsed field to the request.
    fn apply(&mut self, p: Prepared) {
        let fresh = match p {
            Prepared::Field(n, v) => {
                self.regular = true;
                if self.size <= self.limit {
                    self.headers.append(n, v);
                }
                return;
            }
            Prepared::Method(m) => self.method.replace(m).is_none(),
            Prepared::Scheme(v) => self.scheme.replace(v).is_none(),
            Prepared::Authority(v) => self.authority.replace(v).is_none(),
            Prepared::Path(v) => self.path.replace(v).is_none(),
        };
        self.pseudo = true;
        if self.regular {
            return self.fail("pseudo-header after a regular field");
        }
        if !fresh {
            self.fail("duplicate pseudo-header");
        }
    }

    #[allow(clippy::type_complexity)]
    fn finish(self) -> Result<(Request<()>, Option<u64>, Option<Priority>, bool), &'static str> {
        if let Some(why) = self.error {
            return Err(why);
        }
        let method = self.method.ok_or("no :method")?;
        let mut uri = uri::Parts::default();
        if method == Method::CONNECT {
            if self.authority.is_none() || self.scheme.is_some() || self.path.is_some() {
                return Err("CONNECT needs :authority only");
            }
        } else {
            let scheme = self.scheme.ok_or("no :scheme")?;
            uri.path_and_query = Some(self.path.ok_or("no :path")?);
            if self.authority.is_some() {
                uri.scheme = Some(scheme);
            }
        }
        // A Host that differs from :authority is the server's to judge (after its Host checks).
        uri.authority = self.authority;
        let uri = Uri::from_parts(uri).map_err(|_| "invalid request target")?;
        let mut req = Request::new(());
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_2;
        *req.headers_mut() = self.headers;
        Ok((req, self.content_length, self.priority, self.size > self.limit))
    }
}
