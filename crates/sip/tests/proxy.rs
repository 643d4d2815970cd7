//! The proxy/registrar core, sans-IO: registration with Digest, parallel forking with the
//! first 2xx winning, CANCEL, Max-Forwards, loops, no open relay, forwarding on busy and on
//! no answer, admission control, retransmissions absorbed, junk answered with 400.

use appnet_sip::digest::Algorithm;
use appnet_sip::locate::{Target, Transport};
use appnet_sip::proxy::{Located, Outbound, Proxy, ProxyConfig, Transmit};
use appnet_sip::registrar::RegistrarLimits;
use appnet_sip::transaction::Timers;
use appnet_sip::users::{Forwarding, User};
use appnet_sip::wire::{Limits, Message};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const PROXY: &str = "127.0.0.1:5060";
const ALICE: &str = "127.0.0.1:6001";
const PHONE1: &str = "127.0.0.1:7001";
const PHONE2: &str = "127.0.0.1:7002";
const VOICEMAIL: &str = "127.0.0.1:7009";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn config() -> ProxyConfig {
    ProxyConfig {
        domain: "umass.edu".into(),
        local: addr(PROXY),
        redirect: false,
        link_kbps: None,
        max_transactions: 1000,
        max_transactions_per_ip: 100,
        nonce_lifetime: Duration::from_secs(300),
        dialog_timeout: Duration::from_secs(3600),
        noanswer_default: Duration::from_secs(20),
        timer_c: Duration::from_secs(181),
        max_subscriptions: 100,
        max_subscriptions_per_ip: 2,
        registrar: RegistrarLimits::default(),
        limits: Limits::default(),
        timers: Timers::default(),
        route_other_domains: false,
        md5_only: false,
    }
}

fn user(aor: &str, pw: &str, forwarding: Forwarding) -> (String, User) {
    let (n, d) = aor.split_once('@').unwrap();
    let u = User {
        aor: aor.into(),
        ha1_md5: Algorithm::Md5.ha1(n, d, pw),
        ha1_sha256: Algorithm::Sha256.ha1(n, d, pw),
        forwarding,
    };
    (aor.to_string(), u)
}

fn msg(text: &str) -> Vec<u8> {
    text.replace('\n', "\r\n").into_bytes()
}

fn register(contact: &str, from: &str, cseq: u32, auth: Option<String>) -> Vec<u8> {
    let auth = auth.map(|a| format!("Authorization: {a}\n")).unwrap_or_default();
    msg(&format!(
        "REGISTER sip:umass.edu SIP/2.0\nVia: SIP/2.0/UDP {from};branch=z9hG4bKreg{cseq}{contact}\n\
         From: <sip:bob@umass.edu>;tag=r\nTo: <sip:bob@umass.edu>\nCall-ID: reg-{contact}\nCSeq: {cseq} REGISTER\n\
         Contact: <sip:bob@{contact}>\nExpires: 600\n{auth}Max-Forwards: 70\n\n"
    ))
}

fn only(out: &[Transmit]) -> &Transmit {
    assert_eq!(out.len(), 1, "{out:#?}");
    &out[0]
}

/// Registers bob's contact with Digest (`alg`), checking the challenge first.
fn register_with_digest(p: &mut Proxy, contact: &str, alg: Algorithm, now: Instant) {
    let out = p.on_message(&register(contact, contact, 1, None), addr(contact), now);
    let r = &only(&out).msg;
    assert_eq!(r.code(), Some(401));
    let challenges = r.header_values("WWW-Authenticate");
    let ch = &r
        .headers
        .iter()
        .filter(|h| h.name == "WWW-Authenticate")
        .map(|h| h.value.clone())
        .collect::<Vec<_>>();
    assert!(ch[0].contains("algorithm=MD5") && ch[1].contains("algorithm=SHA-256"), "{challenges:?}");
    let nonce = ch[0].split("nonce=\"").nth(1).unwrap().split('"').next().unwrap();
    let ha1 = alg.ha1("bob", "umass.edu", "pw");
    let ha2 = alg.hex("REGISTER:sip:umass.edu");
    let resp = alg.hex(&format!("{ha1}:{nonce}:00000001:c0:auth:{ha2}"));
    let auth = format!(
        "Digest username=\"bob\", realm=\"umass.edu\", nonce=\"{nonce}\", uri=\"sip:umass.edu\", response=\"{resp}\", algorithm={}, qop=auth, nc=00000001, cnonce=\"c0\"",
        alg.name()
    );
    let out = p.on_message(&register(contact, contact, 2, Some(auth.clone())), addr(contact), now);
    assert_eq!(only(&out).msg.code(), Some(200));
    assert_eq!(only(&out).to, addr(contact));
    // The same credentials again (a replay with a fresh transaction): refused.
    let out = p.on_message(&register(contact, contact, 3, Some(auth)), addr(contact), now);
    assert_eq!(only(&out).msg.code(), Some(403));
}

fn invite(branch: &str, sdp: &str) -> Vec<u8> {
    let body = sdp.replace('\n', "\r\n");
    let mut m = msg(&format!(
        "INVITE sip:bob@umass.edu SIP/2.0\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bK{branch}\nMax-Forwards: 70\n\
         From: <sip:alice@poly.edu>;tag=a1\nTo: <sip:bob@umass.edu>\nCall-ID: call-{branch}\nCSeq: 1 INVITE\n\
         Contact: <sip:alice@{ALICE}>\nContent-Type: application/sdp\nContent-Length: {}\n\n",
        body.len()
    ));
    m.extend_from_slice(body.as_bytes());
    m
}

fn answer(req: &Message, code: u16, reason: &str, tag: &str) -> Vec<u8> {
    let mut r = Message::response_to(req, code, reason, Some(tag));
    r.push("Contact", format!("<sip:bob@{PHONE1}>"));
    r.to_bytes()
}

fn to(out: &[Transmit], dest: &str) -> Vec<Message> {
    out.iter().filter(|t| t.to == addr(dest)).map(|t| t.msg.clone()).collect()
}

#[test]
fn register_then_fork_first_2xx_wins_and_others_are_cancelled() {
    let t0 = Instant::now();
    let users = HashMap::from([user("bob@umass.edu", "pw", Forwarding::default())]);
    let mut p = Proxy::new(config(), users);
    register_with_digest(&mut p, PHONE1, Algorithm::Md5, t0);
    register_with_digest(&mut p, PHONE2, Algorithm::Sha256, t0);
    assert_eq!(p.registrar().lookup("bob@umass.edu", t0).len(), 2);

    let out = p.on_message(&invite("i1", ""), addr(ALICE), t0);
    assert_eq!(to(&out, ALICE)[0].code(), Some(100));
    let f1 = to(&out, PHONE1).pop().expect("branch to phone 1");
    let f2 = to(&out, PHONE2).pop().expect("branch to phone 2");
    for f in [&f1, &f2] {
        assert_eq!(f.max_forwards(), Some(69));
        assert_eq!(f.header_values("Via").len(), 2);
        assert!(f.header("Record-Route").unwrap().contains(";lr"));
    }
    assert_ne!(f1.top_via().unwrap().branch(), f2.top_via().unwrap().branch());
    assert_eq!(f1.uri(), Some(format!("sip:bob@{PHONE1}").as_str()));

    // Alice retransmits the INVITE: absorbed (100 again), not forked twice.
    let out = p.on_message(&invite("i1", ""), addr(ALICE), t0);
    assert!(to(&out, PHONE1).is_empty() && to(&out, PHONE2).is_empty());

    let out = p.on_message(&answer(&f1, 180, "Ringing", "p1"), addr(PHONE1), t0);
    let ringing = &only(&out).msg;
    assert_eq!((only(&out).to, ringing.code()), (addr(ALICE), Some(180)));
    assert_eq!(ringing.header_values("Via").len(), 1, "our Via removed");
    p.on_message(&answer(&f2, 180, "Ringing", "p2"), addr(PHONE2), t0);

    let out = p.on_message(&answer(&f2, 200, "OK", "p2"), addr(PHONE2), t0);
    assert_eq!(to(&out, ALICE)[0].code(), Some(200));
    let cancels = to(&out, PHONE1);
    assert_eq!(cancels.len(), 1);
    assert_eq!(cancels[0].method(), "CANCEL");
    assert_eq!(cancels[0].top_via().unwrap().branch(), f1.top_via().unwrap().branch());
    // Phone 1 answers the CANCEL and the INVITE with 487: nothing more reaches Alice.
    let out = p.on_message(&answer(&f1, 487, "Request Terminated", "p1"), addr(PHONE1), t0);
    assert!(to(&out, ALICE).is_empty());
    assert_eq!(to(&out, PHONE1)[0].method(), "ACK", "the 487 is ACKed hop by hop");

    // In-dialog BYE along the Record-Route goes to phone 2.
    let bye = msg(&format!(
        "BYE sip:bob@{PHONE2} SIP/2.0\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKbye1\nMax-Forwards: 70\n\
         Route: <sip:{PROXY};lr>\nFrom: <sip:alice@poly.edu>;tag=a1\nTo: <sip:bob@umass.edu>;tag=p2\n\
         Call-ID: call-i1\nCSeq: 2 BYE\n\n"
    ));
    let out = p.on_message(&bye, addr(ALICE), t0);
    let fwd = &only(&out).msg;
    assert_eq!(only(&out).to, addr(PHONE2));
    assert!(fwd.header("Route").is_none(), "our Route popped");
}

#[test]
fn cancel_from_the_caller() {
    let t0 = Instant::now();
    let mut p = Proxy::new(config(), HashMap::new());
    p.on_message(&register(PHONE1, PHONE1, 1, None), addr(PHONE1), t0);
    let out = p.on_message(&invite("c1", ""), addr(ALICE), t0);
    let f1 = to(&out, PHONE1).pop().unwrap();
    p.on_message(&answer(&f1, 180, "Ringing", "p1"), addr(PHONE1), t0);
    let cancel = msg(&format!(
        "CANCEL sip:bob@umass.edu SIP/2.0\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKc1\nMax-Forwards: 70\n\
         From: <sip:alice@poly.edu>;tag=a1\nTo: <sip:bob@umass.edu>\nCall-ID: call-c1\nCSeq: 1 CANCEL\n\n"
    ));
    let out = p.on_message(&cancel, addr(ALICE), t0);
    assert_eq!(to(&out, ALICE)[0].code(), Some(200));
    assert_eq!(to(&out, PHONE1)[0].method(), "CANCEL");
    let out = p.on_message(&answer(&f1, 487, "Request Terminated", "p1"), addr(PHONE1), t0);
    assert_eq!(to(&out, ALICE)[0].code(), Some(487));
}

#[test]
fn hop_limit_loops_relay_and_junk() {
    let t0 = Instant::now();
    let mut p = Proxy::new(config(), HashMap::new());
    let mf0 = String::from_utf8(invite("m0", "")).unwrap().replace("Max-Forwards: 70", "Max-Forwards: 0");
    let out = p.on_message(mf0.as_bytes(), addr(ALICE), t0);
    assert_eq!(to(&out, ALICE).last().unwrap().code(), Some(483));
    let relay = String::from_utf8(invite("r0", ""))
        .unwrap()
        .replace("INVITE sip:bob@umass.edu", "INVITE sip:carol@example.com");
    let out = p.on_message(relay.as_bytes(), addr(ALICE), t0);
    assert_eq!(to(&out, ALICE).last().unwrap().code(), Some(403));
    let out = p.on_message(&invite("n0", ""), addr(ALICE), t0);
    assert_eq!(to(&out, ALICE).last().unwrap().code(), Some(480), "nobody registered");
    // A loop: bob registered the proxy itself as his contact.
    p.on_message(&register(PROXY, PHONE1, 1, None), addr(PHONE1), t0);
    let out = p.on_message(&invite("l0", ""), addr(ALICE), t0);
    let looped = to(&out, PROXY).pop().expect("forwarded to itself");
    // The first pass retargeted the Request-URI; from the second pass on the request is
    // unchanged, so the third arrival carries a Via with the branch we would compute.
    let out = p.on_message(&looped.to_bytes(), addr(PROXY), t0);
    let again = to(&out, PROXY).into_iter().find(|m| m.is_request()).expect("second pass");
    let out = p.on_message(&again.to_bytes(), addr(PROXY), t0);
    assert_eq!(to(&out, PROXY).last().unwrap().code(), Some(482));
    // Junk with a readable Via: 400; unreadable junk: silence.
    let bad =
        msg(&format!("OPTIONS sip:umass.edu SIP/2.0\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKj\nCSeq: x\n\n"));
    assert_eq!(only(&p.on_message(&bad, addr(ALICE), t0)).msg.code(), Some(400));
    assert!(p.on_message(b"\x00\x01garbage", addr(ALICE), t0).is_empty());
    let options = msg(&format!(
        "OPTIONS sip:umass.edu SIP/2.0\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKo\nFrom: <sip:a@b>;tag=1\nTo: <sip:umass.edu>\nCall-ID: o\nCSeq: 1 OPTIONS\n\n"
    ));
    let out = p.on_message(&options, addr(ALICE), t0);
    let r = &only(&out).msg;
    assert_eq!(r.code(), Some(200));
    assert!(r.header("Allow").unwrap().contains("INVITE"));
}

#[test]
fn forwarding_on_busy_and_on_no_answer() {
    let t0 = Instant::now();
    let fwd = Forwarding {
        busy: Some(format!("sip:vm@{VOICEMAIL}")),
        noanswer: Some(format!("sip:bob@{PHONE2}")),
        noanswer_secs: Some(5),
        ..Forwarding::default()
    };
    let mut p = Proxy::new(config(), HashMap::from([user("bob@umass.edu", "pw", fwd)]));
    register_with_digest(&mut p, PHONE1, Algorithm::Md5, t0);
    // Busy: the proxy retargets to voicemail itself; Alice never sees the 486.
    let out = p.on_message(&invite("b1", ""), addr(ALICE), t0);
    let f1 = to(&out, PHONE1).pop().unwrap();
    let out = p.on_message(&answer(&f1, 486, "Busy Here", "p1"), addr(PHONE1), t0);
    assert!(to(&out, ALICE).is_empty());
    let vm = to(&out, VOICEMAIL).pop().expect("retargeted to voicemail");
    assert_eq!(vm.uri(), Some(format!("sip:vm@{VOICEMAIL}").as_str()));
    let out = p.on_message(&answer(&vm, 200, "OK", "vm"), addr(VOICEMAIL), t0);
    assert_eq!(to(&out, ALICE)[0].code(), Some(200));
    // No answer for 5 s: phone 1 is cancelled and phone 2 rings.
    let out = p.on_message(&invite("n1", ""), addr(ALICE), t0);
    let f1 = to(&out, PHONE1).pop().unwrap();
    p.on_message(&answer(&f1, 180, "Ringing", "p1"), addr(PHONE1), t0);
    assert!(to(&p.tick(t0 + Duration::from_secs(4)), PHONE2).is_empty());
    let out = p.tick(t0 + Duration::from_secs(5));
    assert_eq!(to(&out, PHONE1)[0].method(), "CANCEL");
    let f2 = to(&out, PHONE2).pop().expect("retargeted on no answer");
    let out = p.on_message(&answer(&f1, 487, "Request Terminated", "p1"), addr(PHONE1), t0);
    assert!(to(&out, ALICE).is_empty(), "the cancelled branch's 487 is not the answer");
    let out = p.on_message(&answer(&f2, 200, "OK", "p2"), addr(PHONE2), t0);
    assert_eq!(to(&out, ALICE)[0].code(), Some(200));
}

#[test]
fn admission_control_and_redirect() {
    let t0 = Instant::now();
    let mut cfg = config();
    cfg.link_kbps = Some(160);
    let mut p = Proxy::new(cfg, HashMap::new());
    p.on_message(&register(PHONE1, PHONE1, 1, None), addr(PHONE1), t0);
    let sdp = "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 4000 RTP/AVP 0\n";
    for call in ["a1", "a2"] {
        let out = p.on_message(&invite(call, sdp), addr(ALICE), t0);
        let f = to(&out, PHONE1).pop().expect("admitted");
        p.on_message(&answer(&f, 200, "OK", "p"), addr(PHONE1), t0);
    }
    assert_eq!(p.reserved_kbps(), 160);
    let out = p.on_message(&invite("a3", sdp), addr(ALICE), t0);
    let refused = to(&out, ALICE).pop().unwrap();
    assert_eq!(refused.code(), Some(503));
    assert!(refused.header("Retry-After").is_some());
    assert!(refused.header("Warning").unwrap().starts_with("370 "));
    // BYE releases one call.
    let bye = msg(&format!(
        "BYE sip:bob@{PHONE1} SIP/2.0\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKbyea1\nMax-Forwards: 70\n\
         Route: <sip:{PROXY};lr>\nFrom: <sip:alice@poly.edu>;tag=a1\nTo: <sip:bob@umass.edu>;tag=p\nCall-ID: call-a1\nCSeq: 2 BYE\n\n"
    ));
    p.on_message(&bye, addr(ALICE), t0);
    assert_eq!(p.reserved_kbps(), 80);

    let mut cfg = config();
    cfg.redirect = true;
    let mut r = Proxy::new(cfg, HashMap::new());
    r.on_message(&register(PHONE1, PHONE1, 1, None), addr(PHONE1), t0);
    let out = r.on_message(&invite("d1", ""), addr(ALICE), t0);
    let moved = to(&out, ALICE).pop().unwrap();
    assert_eq!(moved.code(), Some(302));
    assert_eq!(moved.header("Contact"), Some(format!("<sip:bob@{PHONE1}>").as_str()));
}

#[test]
fn timer_c_ends_a_branch_that_rings_forever() {
    let t0 = Instant::now();
    let mut p = Proxy::new(config(), HashMap::new());
    p.on_message(&register(PHONE1, PHONE1, 1, None), addr(PHONE1), t0);
    let out = p.on_message(&invite("tc", ""), addr(ALICE), t0);
    let f1 = to(&out, PHONE1).pop().unwrap();
    let t1 = t0 + Duration::from_secs(100);
    p.on_message(&answer(&f1, 180, "Ringing", "p1"), addr(PHONE1), t1);
    assert!(to(&p.tick(t0 + Duration::from_secs(200)), ALICE).is_empty(), "a provisional restarts timer C");
    let out = p.tick(t1 + Duration::from_secs(181));
    assert_eq!(to(&out, PHONE1)[0].method(), "CANCEL");
    assert_eq!(to(&out, ALICE)[0].code(), Some(408));
    assert_eq!(p.transactions(), 1, "the server transaction now only waits for the ACK");
}

fn subscribe(call: &str, expires: u32, event: &str) -> Vec<u8> {
    msg(&format!(
        "SUBSCRIBE sip:bob@umass.edu SIP/2.0\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKs{call}{expires}\nMax-Forwards: 70\n\
         From: <sip:alice@poly.edu>;tag=w{call}\nTo: <sip:bob@umass.edu>\nCall-ID: sub-{call}\nCSeq: {} SUBSCRIBE\n\
         Contact: <sip:alice@{ALICE}>\nEvent: {event}\nExpires: {expires}\n\n",
        expires + 1
    ))
}

fn body(m: &Message) -> String {
    String::from_utf8_lossy(&m.body).into_owned()
}

#[test]
fn presence_follows_registration_and_publish() {
    let t0 = Instant::now();
    let mut p = Proxy::new(config(), HashMap::new());
    let out = p.on_message(&subscribe("1", 600, "presence"), addr(ALICE), t0);
    let msgs = to(&out, ALICE);
    assert_eq!(msgs[0].code(), Some(200));
    assert_eq!(msgs[0].header("Expires"), Some("600"));
    let notify = &msgs[1];
    assert_eq!(notify.method(), "NOTIFY");
    assert_eq!(notify.header("Event"), Some("presence"));
    assert_eq!(notify.header("Subscription-State"), Some("active;expires=600"));
    assert_eq!(notify.header("Content-Type"), Some("application/pidf+xml"));
    assert!(body(notify).contains("<basic>closed</basic>"));
    assert_eq!(notify.to().unwrap().tag(), Some("w1"));
    assert_eq!(notify.from().unwrap().tag(), msgs[0].to().unwrap().tag(), "the dialog's tags");

    // Bob registers: the watcher hears "open".
    let out = p.on_message(&register(PHONE1, PHONE1, 1, None), addr(PHONE1), t0);
    let n = to(&out, ALICE).pop().expect("NOTIFY on registration");
    assert!(body(&n).contains("<basic>open</basic>"));
    assert_eq!(n.cseq(), Some((2, "NOTIFY")));
    // The watcher's 200 to the NOTIFY ends that client transaction quietly.
    let ok = Message::response_to(&n, 200, "OK", None);
    assert!(p.on_message(&ok.to_bytes(), addr(ALICE), t0).is_empty());

    // PUBLISH replaces the document the watchers get.
    let pidf = "<?xml version=\"1.0\"?><presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:bob@umass.edu\"><tuple id=\"t\"><status><basic>closed</basic></status><note>in a meeting</note></tuple></presence>";
    let publish = msg(&format!(
        "PUBLISH sip:bob@umass.edu SIP/2.0\nVia: SIP/2.0/UDP {PHONE1};branch=z9hG4bKpub1\nMax-Forwards: 70\n\
         From: <sip:bob@umass.edu>;tag=p\nTo: <sip:bob@umass.edu>\nCall-ID: pub1\nCSeq: 1 PUBLISH\nEvent: presence\n\
         Expires: 300\nContent-Type: application/pidf+xml\nContent-Length: {}\n\n{pidf}",
        pidf.len()
    ));
    let mut publish = publish;
    // msg() turned the body's newlines into CRLF; the body has none, so the length holds.
    publish.truncate(publish.len());
    let out = p.on_message(&publish, addr(PHONE1), t0);
    let ok = to(&out, PHONE1).pop().unwrap();
    assert_eq!(ok.code(), Some(200));
    assert!(ok.header("SIP-ETag").is_some());
    let n = to(&out, ALICE).pop().expect("NOTIFY on PUBLISH");
    assert!(body(&n).contains("in a meeting"));

    // Caps per watcher address; other events refused; Expires: 0 ends the subscription.
    let r = to(&p.on_message(&subscribe("2", 600, "presence"), addr(ALICE), t0), ALICE)[0].clone();
    assert_eq!(r.code(), Some(200), "{r:?}");
    assert_eq!(
        to(&p.on_message(&subscribe("3", 600, "presence"), addr(ALICE), t0), ALICE)[0].code(),
        Some(503)
    );
    assert_eq!(
        to(&p.on_message(&subscribe("4", 600, "dialog"), addr(ALICE), t0), ALICE)[0].code(),
        Some(489)
    );
    let out = p.on_message(&subscribe("1", 0, "presence"), addr(ALICE), t0);
    let n = to(&out, ALICE).pop().unwrap();
    assert_eq!(n.header("Subscription-State"), Some("terminated;reason=timeout"));
    assert_eq!(
        to(&p.on_message(&subscribe("3", 601, "presence"), addr(ALICE), t0), ALICE)[0].code(),
        Some(200)
    );
}

/// An INVITE from alice@umass.edu (a local user) to carol@example.com.
fn outbound_invite(branch: &str, cseq: u32, from: &str, auth: Option<String>) -> Vec<u8> {
    let auth = auth.map(|a| format!("Proxy-Authorization: {a}\n")).unwrap_or_default();
    msg(&format!(
        "INVITE sip:carol@example.com SIP/2.0\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bK{branch}\nMax-Forwards: 70\n\
         From: <sip:{from}>;tag=a1\nTo: <sip:carol@example.com>\nCall-ID: out-1\nCSeq: {cseq} INVITE\n\
         Contact: <sip:alice@{ALICE}>\n{auth}Content-Length: 0\n\n"
    ))
}

#[test]
fn calls_to_other_domains_need_proxy_auth_and_fail_over_between_located_servers() {
    let t0 = Instant::now();
    let users = HashMap::from([user("alice@umass.edu", "pw", Forwarding::default())]);
    let mut p = Proxy::new(ProxyConfig { route_other_domains: true, ..config() }, users);
    // A stranger is no user of ours: no relay, no lookup.
    let out = p.on_message(&outbound_invite("s1", 1, "mallory@poly.edu", None), addr(ALICE), t0);
    assert_eq!(to(&out, ALICE).last().unwrap().code(), Some(403));
    assert!(p.take_lookups().is_empty());
    // Alice without credentials: 407 with the proxy's challenges.
    let out = p.on_message(&outbound_invite("o1", 1, "alice@umass.edu", None), addr(ALICE), t0);
    let challenge = to(&out, ALICE).pop().unwrap();
    assert_eq!(challenge.code(), Some(407));
    assert!(p.take_lookups().is_empty());
    let (c, header) = appnet_sip::ua::auth::best_challenge(&challenge).expect("a Digest challenge");
    assert_eq!(header, "Proxy-Authorization");
    let creds = appnet_sip::ua::auth::answer(&c, "alice", "pw", "INVITE", "sip:carol@example.com", 1);
    let out = p.on_message(&outbound_invite("o2", 2, "alice@umass.edu", Some(creds)), addr(ALICE), t0);
    assert_eq!(only(&out).msg.code(), Some(100));
    let lookups = p.take_lookups();
    assert_eq!(lookups.len(), 1);
    assert_eq!(lookups[0].uri, "sip:carol@example.com");
    // Two servers located: the first answers 503, so the request moves to the second.
    let (s1, s2) = ("127.0.0.1:7101", "127.0.0.1:7102");
    let out = p.on_located(lookups[0].id, Located::Targets(vec![udp(s1), udp(s2)]), t0);
    let first = only(&out);
    assert_eq!(first.to, addr(s1));
    assert_eq!(first.msg.uri(), Some("sip:carol@example.com"), "the Request-URI stays");
    assert!(first.msg.header("Proxy-Authorization").is_none(), "our credentials stop here");
    assert!(first.msg.header("Record-Route").is_some());
    let out = p.on_message(&answer(&first.msg, 503, "Service Unavailable", "x"), addr(s1), t0);
    let second = to(&out, s2);
    assert_eq!(second.len(), 1, "{out:#?}");
    assert_eq!(second[0].method(), "INVITE");
    assert!(to(&out, ALICE).is_empty(), "the caller never sees the 503");
    let out = p.on_message(&answer(&second[0], 200, "OK", "c1"), addr(s2), t0);
    assert_eq!(to(&out, ALICE)[0].code(), Some(200));
    // A domain without SIP servers: 404; a failed resolver: 503.
    let creds = appnet_sip::ua::auth::answer(&c, "alice", "pw", "INVITE", "sip:carol@example.com", 2);
    let mut again = String::from_utf8(outbound_invite("o3", 3, "alice@umass.edu", Some(creds))).unwrap();
    again = again.replace("Call-ID: out-1", "Call-ID: out-2");
    p.on_message(again.as_bytes(), addr(ALICE), t0);
    let id = p.take_lookups()[0].id;
    let out = p.on_located(id, Located::NotFound, t0);
    assert_eq!(to(&out, ALICE)[0].code(), Some(404));
}

#[test]
fn a_timed_out_server_hands_over_to_the_next() {
    let t0 = Instant::now();
    let users = HashMap::from([user("alice@umass.edu", "pw", Forwarding::default())]);
    let mut p = Proxy::new(ProxyConfig { route_other_domains: true, ..config() }, users);
    let out = p.on_message(&outbound_invite("t1", 1, "alice@umass.edu", None), addr(ALICE), t0);
    let (c, _) = appnet_sip::ua::auth::best_challenge(&to(&out, ALICE).pop().unwrap()).unwrap();
    let creds = appnet_sip::ua::auth::answer(&c, "alice", "pw", "INVITE", "sip:carol@example.com", 1);
    p.on_message(&outbound_invite("t2", 2, "alice@umass.edu", Some(creds)), addr(ALICE), t0);
    let id = p.take_lookups()[0].id;
    let (dead, alive) = ("127.0.0.1:7201", "127.0.0.1:7202");
    p.on_located(id, Located::Targets(vec![udp(dead), udp(alive)]), t0);
    // Timer B (64·T1) passes with retransmissions to the dead server only.
    let mut moved = false;
    for i in 1..=80 {
        let out = p.tick(t0 + Duration::from_millis(500 * i));
        assert!(to(&out, ALICE).iter().all(|m| m.code() != Some(408)), "no 408 while a server is left");
        if to(&out, alive).iter().any(|m| m.method() == "INVITE") {
            moved = true;
            break;
        }
    }
    assert!(moved, "the INVITE went to the second server after timer B");
}

fn udp(a: &str) -> Target {
    Target { addr: addr(a), transport: Transport::Udp }
}

#[test]
fn tcp_and_tls_targets_go_over_outbound_connections_and_a_failed_connect_fails_over() {
    let t0 = Instant::now();
    let users = HashMap::from([user("alice@umass.edu", "pw", Forwarding::default())]);
    let mut p = Proxy::new(ProxyConfig { route_other_domains: true, ..config() }, users);
    let out = p.on_message(&outbound_invite("c1", 1, "alice@umass.edu", None), addr(ALICE), t0);
    let (c, _) = appnet_sip::ua::auth::best_challenge(&to(&out, ALICE).pop().unwrap()).unwrap();
    let creds = appnet_sip::ua::auth::answer(&c, "alice", "pw", "INVITE", "sip:carol@example.com", 1);
    p.on_message(&outbound_invite("c2", 2, "alice@umass.edu", Some(creds)), addr(ALICE), t0);
    let id = p.take_lookups()[0].id;
    let (refused, tls) = ("127.0.0.1:7301", "127.0.0.1:7302");
    let targets = vec![
        Target { addr: addr(refused), transport: Transport::Tcp },
        Target { addr: addr(tls), transport: Transport::Tls },
    ];
    let first = only(&p.on_located(id, Located::Targets(targets), t0)).clone();
    assert_eq!(first.to, addr(refused));
    let stream = Outbound { transport: Transport::Tcp, name: "example.com".into() };
    assert_eq!(first.stream, Some(stream));
    assert!(first.msg.header("Via").unwrap().starts_with("SIP/2.0/TCP "), "{:?}", first.msg.header("Via"));
    // Reliable: no retransmission over TCP.
    assert!(to(&p.tick(t0 + Duration::from_millis(600)), refused).is_empty());
    // The connect fails: the request goes to the next target, over TLS checked for example.com.
    let out = p.on_connect_failed(addr(refused), t0 + Duration::from_millis(700));
    let second = only(&out);
    assert_eq!(second.to, addr(tls));
    assert_eq!(second.stream, Some(Outbound { transport: Transport::Tls, name: "example.com".into() }));
    assert!(second.msg.header("Via").unwrap().starts_with("SIP/2.0/TLS "));
    // A second report for the same address changes nothing; the TLS server answers.
    assert!(p.on_connect_failed(addr(refused), t0 + Duration::from_millis(800)).is_empty());
    let out = p.on_message(&answer(&second.msg, 200, "OK", "c9"), addr(tls), t0 + Duration::from_millis(900));
    assert_eq!(to(&out, ALICE)[0].code(), Some(200));
    // The last target failing too ends in 408 for the caller: nothing is left.
    let creds = appnet_sip::ua::auth::answer(&c, "alice", "pw", "INVITE", "sip:carol@example.com", 3);
    let again = String::from_utf8(outbound_invite("c3", 3, "alice@umass.edu", Some(creds))).unwrap();
    p.on_message(again.replace("Call-ID: out-1", "Call-ID: out-3").as_bytes(), addr(ALICE), t0);
    let id = p.take_lookups()[0].id;
    let only_tcp = vec![Target { addr: addr(refused), transport: Transport::Tcp }];
    p.on_located(id, Located::Targets(only_tcp), t0);
    let out = p.on_connect_failed(addr(refused), t0);
    let failed = to(&out, ALICE);
    assert_eq!(failed.last().and_then(|m| m.code()), Some(408), "{out:#?}");
    assert!(failed[0].header("Via").is_some_and(|v| v.contains(ALICE)), "the caller's Via stays");
}

#[test]
fn only_live_transactions_count_against_the_per_address_cap() {
    let t0 = Instant::now();
    let mut p = Proxy::new(ProxyConfig { max_transactions_per_ip: 3, ..config() }, HashMap::new());
    // Ten OPTIONS answered at once: they linger (timer J) but no longer hold the quota.
    for i in 0..10 {
        let options = msg(&format!(
            "OPTIONS sip:umass.edu SIP/2.0\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKcap{i}\nFrom: <sip:a@b>;tag=1\n\
             To: <sip:umass.edu>\nCall-ID: cap{i}\nCSeq: 1 OPTIONS\n\n"
        ));
        assert_eq!(only(&p.on_message(&options, addr(ALICE), t0)).msg.code(), Some(200), "OPTIONS {i}");
    }
    assert_eq!(p.transactions(), 10);
    assert_eq!(p.live_transactions(), 0);
    // Calls that ring hold it: the fourth unanswered one gets 503.
    p.on_message(&register(PHONE1, PHONE1, 1, None), addr(PHONE1), t0);
    for i in 0..3 {
        let out = p.on_message(&invite(&format!("ring{i}"), ""), addr(ALICE), t0);
        assert_eq!(to(&out, ALICE)[0].code(), Some(100));
    }
    let out = p.on_message(&invite("ring3", ""), addr(ALICE), t0);
    assert_eq!(to(&out, ALICE).last().unwrap().code(), Some(503));
    assert_eq!(p.live_transactions(), 3);
}
