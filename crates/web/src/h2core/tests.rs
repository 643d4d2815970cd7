//! The core driven by bytes and a clock: frames in, frames out.

use super::conn::PREFACE;
use super::frame::{self, FrameHeader, Reason};
use super::hpack;
use super::{Conn, Event, Limits};
use bytes::Bytes;
use http::HeaderMap;
use std::time::{Duration, Instant};

/// A frame the server wrote.
#[derive(Debug)]
struct Out {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

fn frames(bytes: &[u8]) -> Vec<Out> {
    let mut v = Vec::new();
    let mut rest = bytes;
    while let Some(h) = FrameHeader::of(rest) {
        let end = FrameHeader::LEN + h.payload_len();
        v.push(Out {
            kind: h.kind,
            flags: h.flags,
            stream: h.stream,
            payload: rest[FrameHeader::LEN..end].to_vec(),
        });
        rest = &rest[end..];
    }
    assert!(rest.is_empty(), "a partial frame was written");
    v
}

fn output(c: &mut Conn) -> Vec<Out> {
    let mut out = Vec::new();
    c.take_output(usize::MAX, &mut out);
    frames(&out.concat())
}

fn raw(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    frame::head(&mut v, payload.len(), kind, flags, stream);
    v.extend_from_slice(payload);
    v
}

fn get(stream: u32, path: &str, extra: &[(&str, &str)], end: bool) -> Vec<u8> {
    let mut block = Vec::new();
    for (n, v) in [(":method", "GET"), (":scheme", "http"), (":authority", "example.com"), (":path", path)]
        .iter()
        .chain(extra)
    {
        hpack::encode_field(n.as_bytes(), v.as_bytes(), &mut block);
    }
    let flags = frame::END_HEADERS | if end { frame::END_STREAM } else { 0 };
    raw(frame::HEADERS, flags, stream, &block)
}

fn settings(params: &[(u16, u32)]) -> Vec<u8> {
    let mut v = Vec::new();
    frame::settings(&mut v, params);
    v
}

/// A connection past the preface and both SETTINGS, its output so far discarded.
fn open(limits: Limits, client_settings: &[(u16, u32)], now: Instant) -> Conn {
    let mut c = Conn::new(limits, now);
    let mut input = PREFACE.to_vec();
    input.extend(settings(client_settings));
    c.recv(&input, now);
    let first = output(&mut c);
    assert_eq!(first[0].kind, frame::SETTINGS, "our SETTINGS come first");
    assert!(first.iter().any(|f| f.kind == frame::SETTINGS && f.flags == frame::ACK));
    c
}

fn request(c: &mut Conn) -> (u32, http::Request<Bytes>) {
    match c.poll_event() {
        Some(Event::Request { stream, req }) => (stream, req),
        other => panic!("expected a request, got {other:?}"),
    }
}

fn goaway_code(frames: &[Out]) -> Option<u32> {
    frames
        .iter()
        .find(|f| f.kind == frame::GOAWAY)
        .map(|f| u32::from_be_bytes(f.payload[4..8].try_into().unwrap()))
}

fn rst_code(frames: &[Out], stream: u32) -> Option<u32> {
    frames
        .iter()
        .find(|f| f.kind == frame::RST_STREAM && f.stream == stream)
        .map(|f| u32::from_be_bytes(f.payload[..4].try_into().unwrap()))
}

#[test]
fn a_get_is_answered_with_headers_and_data_under_the_stream_window() {
    let now = Instant::now();
    let mut c = open(Limits::default(), &[(frame::SETTINGS_INITIAL_WINDOW_SIZE, 100)], now);
    c.recv(&get(1, "/a", &[("accept", "*/*")], true), now);
    let (id, req) = request(&mut c);
    assert_eq!((id, req.method().as_str(), req.uri().path()), (1, "GET", "/a"));
    assert_eq!(req.uri().authority().unwrap().as_str(), "example.com");
    assert!(c.send_headers(1, 200, &HeaderMap::new(), false));
    assert!(c.send_data(1, Bytes::from(vec![7u8; 250]), true));
    let out = output(&mut c);
    assert_eq!((out[0].kind, out[0].stream, out[0].flags), (frame::HEADERS, 1, frame::END_HEADERS));
    let mut fields = Vec::new();
    hpack::Decoder::default().decode(&out[0].payload, |n, v| fields.push((n.to_vec(), v.to_vec()))).unwrap();
    assert_eq!(fields[0], (b":status".to_vec(), b"200".to_vec()));
    assert_eq!((out[1].kind, out[1].payload.len(), out[1].flags), (frame::DATA, 100, 0));
    assert_eq!(out.len(), 2, "the stream window stops the rest");
    c.recv(&raw(frame::WINDOW_UPDATE, 0, 1, &1000u32.to_be_bytes()), now);
    let out = output(&mut c);
    assert_eq!((out[0].kind, out[0].payload.len(), out[0].flags), (frame::DATA, 150, frame::END_STREAM));
    assert_eq!(c.open_streams(), 0);
}

#[test]
fn a_post_body_arrives_with_its_request_and_windows_are_replenished() {
    let now = Instant::now();
    let limits = Limits { stream_window: 1000, conn_window: 100_000, ..Limits::default() };
    let mut c = open(limits, &[], now);
    c.recv(&get(1, "/echo", &[("content-length", "1200")], false), now);
    assert!(c.poll_event().is_none());
    c.recv(&raw(frame::DATA, 0, 1, &[1u8; 600]), now);
    let out = output(&mut c);
    assert!(out.iter().any(|f| f.kind == frame::WINDOW_UPDATE && f.stream == 1));
    c.recv(&raw(frame::DATA, frame::END_STREAM, 1, &[2u8; 600]), now);
    let (_, req) = request(&mut c);
    assert_eq!(req.body().len(), 1200);
}

#[test]
fn a_high_urgency_stream_overtakes_an_earlier_low_urgency_one_on_a_throttled_connection() {
    let now = Instant::now();
    // The connection window (65,535 by default) is the throttle: the client opens it slowly.
    let mut c = open(Limits::default(), &[(frame::SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20)], now);
    c.recv(&get(1, "/low", &[("priority", "u=5")], true), now);
    request(&mut c);
    c.send_headers(1, 200, &HeaderMap::new(), false);
    c.send_data(1, Bytes::from(vec![1u8; 200_000]), true);
    let out = output(&mut c);
    let sent: usize = out.iter().filter(|f| f.kind == frame::DATA).map(|f| f.payload.len()).sum();
    assert_eq!(sent, 65_535, "stream 1 started and used the whole connection window");
    c.recv(&get(3, "/high", &[("priority", "u=0")], true), now);
    request(&mut c);
    c.send_headers(3, 200, &HeaderMap::new(), false);
    c.send_data(3, Bytes::from(vec![3u8; 100_000]), true);
    let mut ended = Vec::new();
    for _ in 0..100 {
        c.recv(&raw(frame::WINDOW_UPDATE, 0, 0, &16_384u32.to_be_bytes()), now);
        for f in output(&mut c) {
            if f.kind == frame::DATA && f.flags & frame::END_STREAM != 0 {
                ended.push(f.stream);
            }
        }
    }
    assert_eq!(ended, [3, 1], "the urgent body completed first");
}

#[test]
fn incremental_streams_of_one_urgency_take_turns_and_priority_update_reorders() {
    let now = Instant::now();
    let mut c = open(Limits::default(), &[(frame::SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20)], now);
    for id in [1, 3] {
        c.recv(&get(id, "/i", &[("priority", "u=2, i")], true), now);
        request(&mut c);
        c.send_headers(id, 200, &HeaderMap::new(), false);
        c.send_data(id, Bytes::from(vec![0u8; 48 * 1024]), true);
    }
    let order: Vec<u32> = output(&mut c).iter().filter(|f| f.kind == frame::DATA).map(|f| f.stream).collect();
    assert_eq!(order, [1, 3, 1, 3], "one 16 KiB frame each in turn");
    // PRIORITY_UPDATE (RFC 9218 §7.1) moves stream 3 ahead of stream 1; RFC 7540 PRIORITY is
    // accepted and changes nothing.
    let mut update = 3u32.to_be_bytes().to_vec();
    update.extend_from_slice(b"u=0");
    c.recv(&raw(frame::PRIORITY_UPDATE, 0, 0, &update), now);
    c.recv(&raw(frame::PRIORITY, 0, 1, &[0, 0, 0, 3, 200]), now);
    assert_eq!(c.priority(3).map(|p| p.urgency), Some(0));
    c.recv(&raw(frame::WINDOW_UPDATE, 0, 0, &65_536u32.to_be_bytes()), now);
    let order: Vec<u32> = output(&mut c).iter().filter(|f| f.kind == frame::DATA).map(|f| f.stream).collect();
    assert_eq!(order.first(), Some(&3));
    assert!(!c.is_failed());
}

#[test]
fn unsignalled_streams_share_the_connection_unless_the_client_speaks_rfc_9218() {
    let now = Instant::now();
    let window = (frame::SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20);
    let no_7540 = (frame::SETTINGS_NO_RFC7540_PRIORITIES, 1);
    // (client SETTINGS, the first request's extra fields, DATA frames in the first 64 KiB).
    type Case<'a> = (&'a [(u16, u32)], &'a [(&'a str, &'a str)], [u32; 4]);
    let cases: [Case; 3] = [
        // RFC 7540's scheme (curl, h2load): equal-weight siblings share, a frame each in turn.
        (&[window], &[], [1, 3, 1, 3]),
        // RFC 9218 clients: no signal means urgency 3, one response after the other.
        (&[window, no_7540], &[], [1, 1, 1, 3]),
        (&[window], &[("priority", "u=3")], [1, 1, 1, 3]),
    ];
    for (client, first, want) in cases {
        let mut c = open(Limits::default(), client, now);
        for id in [1, 3] {
            c.recv(&get(id, "/f", if id == 1 { first } else { &[] }, true), now);
            request(&mut c);
            c.send_headers(id, 200, &HeaderMap::new(), false);
            c.send_data(id, Bytes::from(vec![0u8; 48 * 1024]), true);
        }
        let order: Vec<u32> =
            output(&mut c).iter().filter(|f| f.kind == frame::DATA).map(|f| f.stream).collect();
        assert_eq!(order, want, "client SETTINGS {client:?}, first request {first:?}");
        assert_eq!(c.priority(3).map(|p| p.urgency), Some(3));
    }
}

#[test]
fn protocol_violations_get_their_rfc_9113_codes() {
    let now = Instant::now();
    let cases: Vec<(Vec<u8>, Reason)> = vec![
        (raw(frame::DATA, 0, 0, b"x"), Reason::Protocol),
        (raw(frame::DATA, 0, 5, b"x"), Reason::Protocol), // idle stream
        (raw(frame::PING, 0, 0, b"short"), Reason::FrameSize),
        (raw(frame::SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 2]), Reason::Protocol),
        (raw(frame::SETTINGS, 0, 0, &[0, 4, 0x80, 0, 0, 0]), Reason::FlowControl),
        // RFC 9218 §2.1: SETTINGS_NO_RFC7540_PRIORITIES is 0 or 1.
        (raw(frame::SETTINGS, 0, 0, &[0, 9, 0, 0, 0, 2]), Reason::Protocol),
        (raw(frame::SETTINGS, frame::ACK, 0, &[0]), Reason::FrameSize),
        (raw(frame::WINDOW_UPDATE, 0, 0, &0u32.to_be_bytes()), Reason::Protocol),
        (raw(frame::CONTINUATION, frame::END_HEADERS, 1, &[]), Reason::Protocol),
        (raw(frame::PUSH_PROMISE, frame::END_HEADERS, 1, &[0, 0, 0, 2]), Reason::Protocol),
        (raw(frame::HEADERS, frame::END_HEADERS, 1, &[0x80]), Reason::Compression),
        (raw(frame::HEADERS, frame::END_HEADERS, 2, &[0x82]), Reason::Protocol),
        (raw(frame::RST_STREAM, 0, 0, &[0, 0, 0, 8]), Reason::Protocol),
    ];
    for (input, want) in cases {
        let mut c = open(Limits::default(), &[], now);
        c.recv(&input, now);
        assert!(c.is_failed(), "{input:?}");
        assert_eq!(goaway_code(&output(&mut c)), Some(want as u32), "{input:?}");
    }
}

#[test]
fn stream_errors_reset_only_their_stream() {
    let now = Instant::now();
    let mut c = open(Limits::default(), &[], now);
    c.recv(&get(1, "/", &[("Upper", "x")], true), now);
    c.recv(&get(3, "/", &[("connection", "close")], true), now);
    c.recv(&raw(frame::PRIORITY, 0, 5, &[0, 0, 0, 5, 16]), now);
    c.recv(&raw(frame::PRIORITY, 0, 7, &[0, 0, 0, 1]), now);
    c.recv(&get(9, "/", &[], true), now);
    let out = output(&mut c);
    assert_eq!(rst_code(&out, 1), Some(Reason::Protocol as u32));
    assert_eq!(rst_code(&out, 3), Some(Reason::Protocol as u32));
    assert_eq!(rst_code(&out, 5), Some(Reason::Protocol as u32));
    assert_eq!(rst_code(&out, 7), Some(Reason::FrameSize as u32));
    assert!(!c.is_failed());
    assert!(matches!(c.poll_event(), Some(Event::Cancelled { .. })));
    while let Some(ev) = c.poll_event() {
        if let Event::Request { stream, .. } = ev {
            assert_eq!(stream, 9);
            return;
        }
    }
    panic!("the good request after the bad ones was not served");
}

#[test]
fn limits_refuse_extra_streams_big_heads_and_rapid_resets() {
    let now = Instant::now();
    let limits = Limits { max_streams: 2, max_header_list: 200, resets_per_sec: 5, ..Limits::default() };
    let mut c = open(limits.clone(), &[], now);
    c.recv(&[get(1, "/", &[], true), get(3, "/", &[], true), get(5, "/", &[], true)].concat(), now);
    assert_eq!(rst_code(&output(&mut c), 5), Some(Reason::Refused as u32));

    let mut c = open(limits.clone(), &[], now);
    let big = "v".repeat(300);
    c.recv(&get(1, "/", &[("x-big", &big)], true), now);
    assert!(matches!(c.poll_event(), Some(Event::Refuse { stream: 1, status: 431, .. })));

    let mut c = open(limits.clone(), &[], now);
    let mut id = 1;
    for _ in 0..6 {
        c.recv(&[get(id, "/", &[], true), raw(frame::RST_STREAM, 0, id, &8u32.to_be_bytes())].concat(), now);
        id += 2;
    }
    assert_eq!(goaway_code(&output(&mut c)), Some(Reason::Calm as u32));
    // The same resets spread over time are fine.
    let mut c = open(limits, &[], now);
    let mut id = 1;
    for i in 0..12 {
        let t = now + Duration::from_millis(400 * i);
        c.recv(&[get(id, "/", &[], true), raw(frame::RST_STREAM, 0, id, &8u32.to_be_bytes())].concat(), t);
        id += 2;
    }
    assert!(!c.is_failed());
}

#[test]
fn continuation_floods_are_cut_and_pings_answered() {
    let now = Instant::now();
    let mut c = open(Limits::default(), &[], now);
    let mut input = raw(frame::HEADERS, 0, 1, &[0x82]);
    for _ in 0..200 {
        input.extend(raw(frame::CONTINUATION, 0, 1, &[]));
    }
    c.recv(&input, now);
    assert_eq!(goaway_code(&output(&mut c)), Some(Reason::Calm as u32));

    let mut c = open(Limits::default(), &[], now);
    c.recv(&raw(frame::PING, 0, 0, b"12345678"), now);
    let out = output(&mut c);
    assert_eq!(
        (out[0].kind, out[0].flags, out[0].payload.as_slice()),
        (frame::PING, frame::ACK, &b"12345678"[..])
    );
}

#[test]
fn push_promises_precede_the_page_and_respect_enable_push() {
    let now = Instant::now();
    let mut c = open(Limits::default(), &[], now);
    c.recv(&get(1, "/", &[], true), now);
    request(&mut c);
    let fields: [(&[u8], &[u8]); 4] =
        [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"example.com"), (b":path", b"/s.css")];
    assert_eq!(c.push_promise(1, &fields), Some(2));
    c.send_headers(1, 200, &HeaderMap::new(), true);
    assert!(c.send_headers(2, 200, &HeaderMap::new(), true));
    let kinds: Vec<(u8, u32)> = output(&mut c).iter().map(|f| (f.kind, f.stream)).collect();
    assert_eq!(kinds, [(frame::PUSH_PROMISE, 1), (frame::HEADERS, 1), (frame::HEADERS, 2)]);

    let mut c = open(Limits::default(), &[(frame::SETTINGS_ENABLE_PUSH, 0)], now);
    c.recv(&get(1, "/", &[], true), now);
    request(&mut c);
    assert_eq!(c.push_promise(1, &fields), None);
}

#[test]
fn bytes_split_anywhere_decide_the_same() {
    let now = Instant::now();
    let mut input = PREFACE.to_vec();
    input.extend(settings(&[]));
    input.extend(get(1, "/x", &[("priority", "u=1")], false));
    input.extend(raw(frame::DATA, frame::PADDED | frame::END_STREAM, 1, &[2, b'h', b'i', 0, 0]));
    for step in 1..input.len() {
        let mut c = Conn::new(Limits::default(), now);
        for chunk in input.chunks(step) {
            c.recv(chunk, now);
        }
        let (_, req) = request(&mut c);
        assert_eq!(req.body().as_ref(), b"hi", "step {step}");
    }
}

/// A literal field with incremental indexing and a literal name (RFC 7541 §6.2.1).
fn indexed_literal(name: &str, value: &str, block: &mut Vec<u8>) {
    block.push(0x40);
    for s in [name, value] {
        block.push(s.len() as u8);
        block.extend_from_slice(s.as_bytes());
    }
}

#[test]
fn fields_repeated_by_index_are_taken_from_their_slots_and_still_checked() {
    let now = Instant::now();
    let mut c = open(Limits::default(), &[], now);
    let head = |stream: u32, block: &[u8], end: bool| {
        let flags = frame::END_HEADERS | if end { frame::END_STREAM } else { 0 };
        raw(frame::HEADERS, flags, stream, block)
    };
    // First sight: :method and :scheme from the static table, the rest entering the dynamic
    // table (newest first: content-length 62, x-test 63, :path 64, :authority 65).
    let mut first = vec![0x82, 0x86];
    for (n, v) in [(":authority", "example.com"), (":path", "/a"), ("x-test", "1"), ("content-length", "0")] {
        indexed_literal(n, v, &mut first);
    }
    c.recv(&head(1, &first, true), now);
    // The same request by index only: parsed once, taken from the slots since.
    c.recv(&head(3, &[0x82, 0x86, 0x80 | 65, 0x80 | 64, 0x80 | 63, 0x80 | 62], true), now);
    for want in [1, 3] {
        let (id, req) = request(&mut c);
        assert_eq!(id, want);
        assert_eq!((req.method().as_str(), req.uri().path()), ("GET", "/a"));
        assert_eq!(req.uri().authority().unwrap().as_str(), "example.com");
        assert_eq!(req.headers()["x-test"], "1");
        assert_eq!(req.headers()["content-length"], "0");
    }
    // Rules that depend on the block, not the field, hold for fields from slots: a
    // pseudo-header after a regular field, a pseudo-header twice, and content-length (never
    // kept in a slot) against the body.
    c.recv(&head(5, &[0x82, 0x86, 0x80 | 63, 0x80 | 65, 0x80 | 64], true), now);
    c.recv(&head(7, &[0x82, 0x86, 0x80 | 65, 0x80 | 64, 0x80 | 64], true), now);
    c.recv(&head(9, &[0x82, 0x86, 0x80 | 65, 0x80 | 64, 0x80 | 62], false), now);
    c.recv(&raw(frame::DATA, frame::END_STREAM, 9, b"abc"), now);
    let out = output(&mut c);
    for stream in [5, 7, 9] {
        assert_eq!(rst_code(&out, stream), Some(Reason::Protocol as u32), "stream {stream}");
    }
    for _ in 0..10 {
        match c.poll_event() {
            Some(Event::Request { stream, .. }) => panic!("stream {stream} was handed over"),
            Some(_) => {}
            None => break,
        }
    }
}
