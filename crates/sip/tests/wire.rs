//! The SIP codec: real messages parse, round-trip, and junk is refused without a panic.

use appnet_sip::wire::{self, Limits, NameAddr, ParseError, SipUri, Via};

const INVITE: &str = "INVITE sip:bob@umass.edu SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds;rport\r\n\
v: SIP/2.0/TCP proxy.poly.edu;branch=z9hG4bKnashds8, SIP/2.0/UDP pc.poly.edu;branch=z9hG4bK1\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@umass.edu>\r\n\
f: \"Alice, A.\" <sip:alice@poly.edu>;tag=1928301774\r\n\
i: a84b4c76e66710@pc33.poly.edu\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@10.0.0.1>\r\n\
Subject: long\r\n folded header\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 5\r\n\r\nv=0\r\n";

#[test]
fn parses_a_real_invite() {
    let m = wire::parse(INVITE.as_bytes()).unwrap();
    assert_eq!(m.method(), "INVITE");
    assert_eq!(m.uri(), Some("sip:bob@umass.edu"));
    assert_eq!(m.call_id(), Some("a84b4c76e66710@pc33.poly.edu"));
    assert_eq!(m.cseq(), Some((314159, "INVITE")));
    assert_eq!(m.max_forwards(), Some(70));
    assert_eq!(m.header_values("Via").len(), 3);
    let via = m.top_via().unwrap();
    assert_eq!(via.branch(), Some("z9hG4bK776asdhds"));
    assert_eq!(via.param("rport"), Some(""));
    assert_eq!(via.host_port(), ("10.0.0.1".to_string(), 5060));
    let from = m.from().unwrap();
    assert_eq!(from.tag(), Some("1928301774"));
    assert_eq!(from.display.as_deref(), Some("Alice, A."));
    assert_eq!(m.header("Subject"), Some("long folded header"));
    assert_eq!(m.body, b"v=0\r\n");
}

#[test]
fn round_trips() {
    let m = wire::parse(INVITE.as_bytes()).unwrap();
    let again = wire::parse(&m.to_bytes()).unwrap();
    assert_eq!(m, again);
}

#[test]
fn response_copies_dialog_headers_and_tags_to() {
    let m = wire::parse(INVITE.as_bytes()).unwrap();
    let r = wire::Message::response_to(&m, 486, "Busy Here", Some("xyz"));
    let r = wire::parse(&r.to_bytes()).unwrap();
    assert_eq!(r.code(), Some(486));
    assert_eq!(r.to().unwrap().tag(), Some("xyz"));
    assert_eq!(r.header_values("Via").len(), 3);
    assert_eq!(r.method(), "INVITE");
}

#[test]
fn framing_over_streams() {
    let bytes = INVITE.as_bytes();
    assert_eq!(wire::frame_len(&bytes[..40], Limits::default()), Ok(None));
    assert_eq!(wire::frame_len(&bytes[..bytes.len() - 1], Limits::default()), Ok(None));
    assert_eq!(wire::frame_len(bytes, Limits::default()), Ok(Some(bytes.len())));
}

#[test]
fn limits_and_junk() {
    let small = Limits { max_size: 100, max_headers: 100 };
    assert_eq!(wire::parse_with(INVITE.as_bytes(), small), Err(ParseError::TooLarge(100)));
    let few = Limits { max_size: 65535, max_headers: 5 };
    assert_eq!(wire::parse_with(INVITE.as_bytes(), few), Err(ParseError::TooManyHeaders(5)));
    let cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\r\n\r\n".to_vec(),
        b"INVITE sip:x SIP/2.0\r\n\r\n".to_vec(),
        INVITE.replace("CSeq: 314159 INVITE", "CSeq: x INVITE").into_bytes(),
        INVITE.replace("CSeq: 314159 INVITE", "CSeq: 1 BYE").into_bytes(),
        INVITE.replace("Max-Forwards: 70", "Max-Forwards: 300").into_bytes(),
        INVITE.replace("Content-Length: 5", "Content-Length: 40").into_bytes(),
        INVITE.replace("Content-Length: 5", "Content-Length: -1").into_bytes(),
        INVITE.replace("SIP/2.0\r\n", "SIP/3.0\r\n").into_bytes(),
        INVITE.replace("Via: SIP/2.0/UDP 10.0.0.1:5060", "Via: garbage").into_bytes(),
        b"SIP/2.0 99 Low\r\n\r\n".to_vec(),
        vec![0xff; 300],
    ];
    for c in cases {
        assert!(wire::parse(&c).is_err(), "{:?}", String::from_utf8_lossy(&c));
    }
    // Every prefix of a valid message is refused or parsed, never a panic.
    for i in 0..INVITE.len() {
        let _ = wire::parse(&INVITE.as_bytes()[..i]);
    }
}

#[test]
fn uris_and_addresses() {
    let u = SipUri::parse("sip:bob@Umass.EDU:5070;transport=tcp;lr").unwrap();
    assert_eq!(u.user.as_deref(), Some("bob"));
    assert_eq!(u.host, "umass.edu");
    assert_eq!(u.port, Some(5070));
    assert!(u.is_loose());
    assert_eq!(u.param("transport"), Some("tcp"));
    assert_eq!(u.aor(), "bob@umass.edu");
    assert_eq!(SipUri::parse(&u.to_string()).unwrap(), u);
    assert!(SipUri::parse("tel:+123").is_none());
    assert!(SipUri::parse("sip:").is_none());
    let c = NameAddr::parse("<sip:bob@1.2.3.4>;q=0.7;expires=60").unwrap();
    assert_eq!(c.param("q"), Some("0.7"));
    assert_eq!(c.param("expires"), Some("60"));
    assert!(NameAddr::parse("*").unwrap().star);
    let v = Via::parse("SIP/2.0/UDP [::1]:5062;branch=z9hG4bKx").unwrap();
    assert_eq!(v.host_port(), ("::1".to_string(), 5062));
    assert_eq!(Via::parse(&v.to_string()).unwrap(), v);
}

#[test]
fn round_trip_check_over_mutations() {
    // The fuzz target's body over deterministic mutations of a real message.
    let base = INVITE.as_bytes();
    let mut seed = 0x9e37_79b9_u32;
    for _ in 0..5000 {
        let mut m = base.to_vec();
        for _ in 0..3 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let i = seed as usize % m.len();
            m[i] = (seed >> 8) as u8;
        }
        wire::check_round_trip(&m);
    }
    wire::check_round_trip(b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>\r\nTo: <sip:c@d>\r\nCall-ID: 1\r\nCSeq: 1 OPTIONS\r\n\r\nbody-without-length");
}
