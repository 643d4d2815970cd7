use super::*;
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

const GUID_HEX: &str = "01 02 03 04 05 06 07 08 ff 0a 0b 0c 0d 0e 0f 00";
fn guid() -> Guid {
    Guid([1, 2, 3, 4, 5, 6, 7, 8, 0xff, 10, 11, 12, 13, 14, 15, 0])
}

fn check(bytes: &[u8], expect: &Descriptor) {
    let (d, used) = Descriptor::decode(bytes, DEFAULT_MAX_PAYLOAD).unwrap().unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(&d, expect);
    assert_eq!(expect.encode(), bytes);
}

// Byte layouts from the Gnutella 0.6 specification (section 2.2 "Message Header" and the
// per-message sections), written out by hand.

#[test]
fn ping_capture() {
    // GUID | 00 (Ping) | TTL 7 | hops 0 | length 0
    let bytes = hex(&format!("{GUID_HEX} 00 07 00 00000000"));
    check(&bytes, &Descriptor { guid: guid(), ttl: 7, hops: 0, payload: Payload::Ping(Ping::default()) });
}

#[test]
fn pong_capture() {
    // port 6346 (LE ca 18) | 192.168.0.1 | 5 files | 1024 KB
    let bytes = hex(&format!("{GUID_HEX} 01 06 01 0e000000  ca18 c0a80001 05000000 00040000"));
    let pong = Pong { port: 6346, ip: Ipv4Addr::new(192, 168, 0, 1), files: 5, kbytes: 1024, ext: vec![] };
    check(&bytes, &Descriptor { guid: guid(), ttl: 6, hops: 1, payload: Payload::Pong(pong) });
}

#[test]
fn query_capture_with_huge_urn() {
    // flags 0x0000 | "hey jude" NUL | urn:sha1 (HUGE) NUL
    let urn = "urn:sha1:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBYJ";
    let mut payload = hex("0000");
    payload.extend_from_slice(b"hey jude\0");
    payload.extend_from_slice(urn.as_bytes());
    payload.push(0);
    let mut bytes = hex(&format!("{GUID_HEX} 80 05 02"));
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&payload);
    let q = Query { flags: 0, criteria: "hey jude".into(), ext: vec![Extension::Urn(urn.into())] };
    check(&bytes, &Descriptor { guid: guid(), ttl: 5, hops: 2, payload: Payload::Query(q.clone()) });
    assert_eq!(q.sha1_urns().len(), 1);
}

#[test]
fn plain_query_capture() {
    // The 0.4-style query: minimum speed 0, criteria, NUL, nothing else.
    let bytes = hex(&format!("{GUID_HEX} 80 07 00 0b000000 0000 6865 7920 6a75 6465 00"));
    let q = Query { flags: 0, criteria: "hey jude".into(), ext: vec![] };
    check(&bytes, &Descriptor { guid: guid(), ttl: 7, hops: 0, payload: Payload::Query(q) });
}

#[test]
fn query_hit_capture_with_eqhd() {
    // 1 hit | port 6346 | 10.0.0.2 | speed 256 | index 3, size 4096, "Hey Jude.mp3" NUL urn NUL |
    // EQHD "APNT" 02 <flags 1c 11> | servent GUID
    let urn = "urn:sha1:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBYJ";
    let mut payload = hex("01 ca18 0a000002 00010000 03000000 00100000");
    payload.extend_from_slice(b"Hey Jude.mp3\0");
    payload.extend_from_slice(urn.as_bytes());
    payload.push(0);
    payload.extend_from_slice(b"APNT");
    payload.extend_from_slice(&hex("02 0c 19"));
    payload.extend_from_slice(&[0xAA; 16]);
    let mut bytes = hex(&format!("{GUID_HEX} 81 03 04"));
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&payload);
    let qhd = Qhd::with_flags(*b"APNT", false, true, true);
    assert_eq!(qhd.open, vec![0x0c, 0x0d]);
    let hit = QueryHit {
        port: 6346,
        ip: Ipv4Addr::new(10, 0, 0, 2),
        speed: 256,
        results: vec![HitResult {
            index: 3,
            size: 4096,
            name: "Hey Jude.mp3".into(),
            ext: vec![Extension::Urn(urn.into())],
        }],
        qhd: Some(Qhd { vendor: *b"APNT", open: vec![0x0c, 0x19], private: vec![] }),
        servent: Guid([0xAA; 16]),
    };
    check(&bytes, &Descriptor { guid: guid(), ttl: 3, hops: 4, payload: Payload::QueryHit(hit.clone()) });
    assert!(hit.results[0].sha1().is_some());
    let q = hit.qhd.unwrap();
    assert_eq!(q.flag(qhd_flag::PUSH), Some(false));
    assert_eq!(q.flag(qhd_flag::BUSY), Some(false));
    assert_eq!(q.flag(qhd_flag::UPLOADED), Some(true));
    assert_eq!(q.flag(qhd_flag::SPEED), None);
    assert_eq!(q.flag(qhd_flag::GGEP), None);
}

#[test]
fn push_capture() {
    // servent GUID | index 7 | 127.0.0.1 | port 6347
    let bytes = hex(&format!("{GUID_HEX} 40 07 00 1a000000 {} 07000000 7f000001 cb18", "bb".repeat(16)));
    let p = Push { servent: Guid([0xbb; 16]), index: 7, ip: Ipv4Addr::LOCALHOST, port: 6347, ext: vec![] };
    check(&bytes, &Descriptor { guid: guid(), ttl: 7, hops: 0, payload: Payload::Push(p) });
}

#[test]
fn bye_and_qrp_captures() {
    // code 200, "Ok bye!" NUL
    let mut b = hex(&format!("{GUID_HEX} 02 01 00 0a000000 c800"));
    b.extend_from_slice(b"Ok bye!\0");
    check(
        &b,
        &Descriptor {
            guid: guid(),
            ttl: 1,
            hops: 0,
            payload: Payload::Bye(Bye { code: 200, message: "Ok bye!".into() }),
        },
    );
    // QRP RESET: variant 0 | table length 65536 | infinity 7
    let reset = hex(&format!("{GUID_HEX} 30 01 00 06000000 00 00000100 07"));
    check(
        &reset,
        &Descriptor {
            guid: guid(),
            ttl: 1,
            hops: 0,
            payload: Payload::RouteTable(RouteTableUpdate::Reset { table_len: 65536, infinity: 7 }),
        },
    );
    // QRP PATCH: variant 1 | seq 1 of 1 | no compression | 4 bits | data
    let patch = hex(&format!("{GUID_HEX} 30 01 00 07000000 01 01 01 00 04 a0 0f"));
    check(
        &patch,
        &Descriptor {
            guid: guid(),
            ttl: 1,
            hops: 0,
            payload: Payload::RouteTable(RouteTableUpdate::Patch {
                seq_no: 1,
                seq_size: 1,
                compressor: 0,
                entry_bits: 4,
                data: vec![0xa0, 0x0f],
            }),
        },
    );
}

#[test]
fn ggep_in_query_and_ping() {
    // A GGEP block with two extensions: "H" (2 bytes) and "DU" (last, 1 byte).
    let ggep = hex("c3 01 48 42 0102 82 4455 41 05");
    let mut payload = hex("0080");
    payload.extend_from_slice(b"x\0");
    payload.extend_from_slice(&ggep);
    let (d, _) = Descriptor::decode(
        &[
            hex(&format!("{GUID_HEX} 80 01 00")),
            (payload.len() as u32).to_le_bytes().to_vec(),
            payload.clone(),
        ]
        .concat(),
        DEFAULT_MAX_PAYLOAD,
    )
    .unwrap()
    .unwrap();
    let Payload::Query(q) = d.payload else { panic!("not a query") };
    assert_eq!(q.flags, 0x8000);
    assert_eq!(
        q.ext,
        vec![Extension::Ggep(vec![
            GgepItem { id: b"H".to_vec(), data: vec![1, 2], cobs: false, deflate: false },
            GgepItem { id: b"DU".to_vec(), data: vec![5], cobs: false, deflate: false },
        ])]
    );
    // GGEP with a two-byte length (100 bytes of data).
    let mut out = Vec::new();
    write_ggep(&[GgepItem { id: b"X".to_vec(), data: vec![7; 100], cobs: false, deflate: false }], &mut out);
    assert_eq!(&out[..5], &[0xc3, 0x81, b'X', 0x81, 0x40 | 36]);
}

#[test]
fn bad_lengths_are_errors() {
    let short_pong = hex(&format!("{GUID_HEX} 01 07 00 0d000000 {}", "00".repeat(13)));
    assert!(matches!(
        Descriptor::decode(&short_pong, DEFAULT_MAX_PAYLOAD),
        Err(WireError::Malformed { ptype: 1, .. })
    ));
    let short_push = hex(&format!("{GUID_HEX} 40 07 00 19000000 {}", "00".repeat(25)));
    assert!(Descriptor::decode(&short_push, DEFAULT_MAX_PAYLOAD).is_err());
    let no_nul = hex(&format!("{GUID_HEX} 80 07 00 04000000 0000 4142"));
    assert!(Descriptor::decode(&no_nul, DEFAULT_MAX_PAYLOAD).is_err());
    // A hit announcing 2 results but carrying 1.
    let mut p = hex("02 ca18 0a000002 00010000 03000000 00100000");
    p.extend_from_slice(b"a\0\0");
    p.extend_from_slice(&[0; 16]);
    assert!(decode_payload(ptype::QUERY_HIT, &p).is_err());
    assert!(decode_payload(ptype::QUERY_HIT, &[1; 26]).is_err());
    // QHD open-data size past the end.
    let mut p = hex("00 ca18 0a000002 00010000");
    p.extend_from_slice(b"LIME\x09\x01");
    p.extend_from_slice(&[0; 16]);
    assert!(decode_payload(ptype::QUERY_HIT, &p).is_err());
    assert!(decode_payload(ptype::ROUTE_TABLE_UPDATE, &[0, 1, 2, 3]).is_err());
    assert!(decode_payload(ptype::ROUTE_TABLE_UPDATE, &[0, 1, 2, 3, 4, 5, 6]).is_err());
    assert!(decode_payload(ptype::ROUTE_TABLE_UPDATE, &[9]).is_err());
    assert!(decode_payload(ptype::ROUTE_TABLE_UPDATE, &[]).is_err());
    // GGEP: reserved bit, zero-length ID, bad length encoding, truncated data.
    for g in [
        &[0xc3, 0x91, b'A', 0x41, 0][..],
        &[0xc3, 0x80, 0x41],
        &[0xc3, 0x81, b'A', 0xc1, 0],
        &[0xc3, 0x81, b'A', 0x45, 1],
    ] {
        let mut p = b"\0\0q\0".to_vec();
        p.extend_from_slice(g);
        assert!(decode_payload(ptype::QUERY, &p).is_err(), "{g:02x?}");
    }
}

#[test]
fn oversized_payload_rejected_before_buffering() {
    let mut h = hex(&format!("{GUID_HEX} 80 07 00"));
    h.extend_from_slice(&(1u32 << 20).to_le_bytes());
    let mut f = Framer::new(DEFAULT_MAX_PAYLOAD);
    f.push(&h);
    assert_eq!(f.next_descriptor(), Err(WireError::TooLarge { len: 1 << 20, max: DEFAULT_MAX_PAYLOAD }));
}

#[test]
fn framer_reassembles_split_stream() {
    let d1 = Descriptor::new(guid(), 7, Payload::Ping(Ping::default()));
    let d2 =
        Descriptor::new(guid(), 3, Payload::Query(Query { flags: 0, criteria: "a b".into(), ext: vec![] }));
    let mut stream = d1.encode();
    stream.extend(d2.encode());
    let mut f = Framer::new(DEFAULT_MAX_PAYLOAD);
    let mut got = Vec::new();
    for b in &stream {
        f.push(std::slice::from_ref(b));
        while let Some(d) = f.next_descriptor().unwrap() {
            got.push(d);
        }
    }
    assert_eq!(got, vec![d1, d2]);
    assert_eq!(f.buffered(), 0);
}

#[test]
fn unknown_types_are_kept() {
    let bytes = hex(&format!("{GUID_HEX} 31 01 00 02000000 abcd"));
    let (d, _) = Descriptor::decode(&bytes, DEFAULT_MAX_PAYLOAD).unwrap().unwrap();
    assert_eq!(d.payload, Payload::Unknown { ptype: 0x31, data: vec![0xab, 0xcd] });
    assert_eq!(d.encode(), bytes);
}

#[test]
fn fuzz_body_survives_junk() {
    assert_eq!(fuzz_descriptors(&[]), 0);
    assert_eq!(fuzz_descriptors(&[0xff; 100]), 0);
    let d = Descriptor::new(guid(), 7, Payload::Ping(Ping::default())).encode();
    assert_eq!(fuzz_descriptors(&[d.clone(), d].concat()), 2);
    let mut x: u64 = 12345;
    for _ in 0..2000 {
        let mut buf = Vec::new();
        for _ in 0..(x % 200) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf.push(x as u8);
        }
        // Plausible header with a small length so the payload decoders run on junk.
        if buf.len() > 23 {
            buf[16] = [0, 1, 2, 0x30, 0x40, 0x80, 0x81][(x % 7) as usize];
            let len = (buf.len() - 23) as u32;
            buf[19..23].copy_from_slice(&len.to_le_bytes());
        }
        fuzz_descriptors(&buf);
    }
}

fn arb_guid() -> impl Strategy<Value = Guid> {
    any::<[u8; 16]>().prop_map(Guid)
}

fn arb_ip() -> impl Strategy<Value = Ipv4Addr> {
    any::<[u8; 4]>().prop_map(Ipv4Addr::from)
}

fn arb_text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ._é-]{0,20}"
}

fn arb_ggep() -> impl Strategy<Value = Vec<GgepItem>> {
    prop::collection::vec(
        (
            prop::collection::vec(1u8..=255, 1..=15),
            prop::collection::vec(any::<u8>(), 0..300),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(id, data, cobs, deflate)| GgepItem { id, data, cobs, deflate }),
        1..4,
    )
}

fn arb_ext() -> impl Strategy<Value = Vec<Extension>> {
    prop::collection::vec(
        prop_oneof![
            any::<[u8; 20]>().prop_map(|d| Extension::Urn(crate::gnutella::base32::sha1_urn(&d))),
            arb_ggep().prop_map(Extension::Ggep),
            "<\\?xml[a-z ]{0,10}".prop_map(|s| Extension::Other(s.into_bytes())),
        ],
        0..4,
    )
}

fn arb_payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..10).prop_map(|ext| Payload::Ping(Ping { ext })),
        (any::<u16>(), arb_ip(), any::<u32>(), any::<u32>(), prop::collection::vec(any::<u8>(), 0..10))
            .prop_map(|(port, ip, files, kbytes, ext)| Payload::Pong(Pong { port, ip, files, kbytes, ext })),
        (any::<u16>(), arb_text()).prop_map(|(code, message)| Payload::Bye(Bye { code, message })),
        (any::<u32>(), any::<u8>()).prop_map(|(table_len, infinity)| Payload::RouteTable(
            RouteTableUpdate::Reset { table_len, infinity }
        )),
        (any::<[u8; 4]>(), prop::collection::vec(any::<u8>(), 0..50)).prop_map(|(h, data)| {
            Payload::RouteTable(RouteTableUpdate::Patch {
                seq_no: h[0],
                seq_size: h[1],
                compressor: h[2],
                entry_bits: h[3],
                data,
            })
        }),
        (arb_guid(), any::<u32>(), arb_ip(), any::<u16>(), prop::collection::vec(any::<u8>(), 0..10))
            .prop_map(|(servent, index, ip, port, ext)| Payload::Push(Push {
                servent,
                index,
                ip,
                port,
                ext
            })),
        (any::<u16>(), arb_text(), arb_ext()).prop_map(|(flags, criteria, ext)| Payload::Query(Query {
            flags,
            criteria,
            ext
        })),
        (
            any::<u16>(),
            arb_ip(),
            any::<u32>(),
            prop::collection::vec(
                (any::<u32>(), any::<u32>(), arb_text(), arb_ext())
                    .prop_map(|(index, size, name, ext)| HitResult { index, size, name, ext }),
                0..5
            ),
            prop::option::of(
                (
                    any::<[u8; 4]>(),
                    prop::collection::vec(any::<u8>(), 0..4),
                    prop::collection::vec(any::<u8>(), 0..8)
                )
                    .prop_map(|(vendor, open, private)| Qhd { vendor, open, private })
            ),
            arb_guid(),
        )
            .prop_map(|(port, ip, speed, results, qhd, servent)| {
                Payload::QueryHit(QueryHit { port, ip, speed, results, qhd, servent })
            }),
    ]
}

proptest! {
    #[test]
    fn decode_encode_is_identity(guid in arb_guid(), ttl in any::<u8>(), hops in any::<u8>(), payload in arb_payload()) {
        let d = Descriptor { guid, ttl, hops, payload };
        let bytes = d.encode();
        let (back, used) = Descriptor::decode(&bytes, usize::MAX).unwrap().unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(back, d);
    }

    #[test]
    fn junk_never_panics(data in prop::collection::vec(any::<u8>(), 0..400)) {
        fuzz_descriptors(&data);
        for t in [0u8, 1, 2, 0x30, 0x40, 0x80, 0x81] {
            let _ = decode_payload(t, &data);
        }
    }
}
