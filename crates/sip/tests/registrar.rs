//! The location service: expiry, q-values, removal with Expires: 0 and *, ordering, caps.

use appnet_sip::registrar::{RegisterOutcome, Registrar, RegistrarLimits};
use appnet_sip::wire::{self, Message};
use std::time::{Duration, Instant};

fn register(contacts: &[&str], expires: Option<u32>, cseq: u32) -> Message {
    let mut text = format!(
        "REGISTER sip:umass.edu SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK{cseq}\r\n\
         From: <sip:bob@umass.edu>;tag=1\r\nTo: <sip:bob@umass.edu>\r\nCall-ID: reg1\r\nCSeq: {cseq} REGISTER\r\n"
    );
    for c in contacts {
        text.push_str(&format!("Contact: {c}\r\n"));
    }
    if let Some(e) = expires {
        text.push_str(&format!("Expires: {e}\r\n"));
    }
    text.push_str("\r\n");
    wire::parse(text.as_bytes()).unwrap()
}

#[test]
fn bindings_expire_and_sort_by_q() {
    let t0 = Instant::now();
    let mut r = Registrar::new(RegistrarLimits::default());
    let out = r.register(
        &register(&["<sip:bob@10.0.0.1>;q=0.5", "<sip:bob@10.0.0.2>;expires=120"], Some(600), 1),
        "bob@umass.edu",
        t0,
    );
    let RegisterOutcome::Ok(b) = out else { panic!("{out:?}") };
    assert_eq!(b.len(), 2);
    assert_eq!(b[0].contact, "sip:bob@10.0.0.2", "q=1.0 first");
    assert_eq!(b[1].q, 0.5);
    let values = Registrar::contact_values(&b, t0);
    assert_eq!(values, vec!["<sip:bob@10.0.0.2>;expires=120", "<sip:bob@10.0.0.1>;expires=600;q=0.5"]);
    assert_eq!(r.lookup("bob@umass.edu", t0 + Duration::from_secs(121)).len(), 1);
    assert!(r.expire(t0 + Duration::from_secs(121)).is_empty());
    assert_eq!(r.expire(t0 + Duration::from_secs(601)), vec!["bob@umass.edu".to_string()]);
    assert!(!r.is_online("bob@umass.edu", t0 + Duration::from_secs(601)));
}

#[test]
fn removal_ordering_and_limits() {
    let t0 = Instant::now();
    let mut r = Registrar::new(RegistrarLimits { max_bindings_per_user: 2, ..RegistrarLimits::default() });
    let aor = "bob@umass.edu";
    r.register(&register(&["<sip:bob@10.0.0.1>", "<sip:bob@10.0.0.2>"], None, 1), aor, t0);
    assert_eq!(r.register(&register(&["<sip:bob@10.0.0.3>"], None, 2), aor, t0), RegisterOutcome::TooMany);
    assert_eq!(
        r.register(&register(&["<sip:bob@10.0.0.1>"], Some(0), 1), aor, t0),
        RegisterOutcome::OutOfOrder
    );
    let RegisterOutcome::Ok(b) = r.register(&register(&["<sip:bob@10.0.0.1>"], Some(0), 3), aor, t0) else {
        panic!()
    };
    assert_eq!(b.len(), 1);
    assert_eq!(
        r.register(&register(&["<sip:bob@10.0.0.4>"], Some(10), 4), aor, t0),
        RegisterOutcome::IntervalTooBrief(60)
    );
    assert!(matches!(r.register(&register(&["*"], Some(60), 5), aor, t0), RegisterOutcome::Bad(_)));
    assert!(matches!(
        r.register(&register(&["*", "<sip:x@y>"], Some(0), 5), aor, t0),
        RegisterOutcome::Bad(_)
    ));
    assert_eq!(r.register(&register(&["*"], Some(0), 6), aor, t0), RegisterOutcome::Ok(vec![]));
    assert!(!r.is_online(aor, t0));
    // A query (no Contact) lists the bindings without changing them.
    r.register(&register(&["<sip:bob@10.0.0.9>"], Some(100_000), 7), aor, t0);
    let RegisterOutcome::Ok(b) = r.register(&register(&[], None, 8), aor, t0) else { panic!() };
    assert_eq!(b[0].expires_at, t0 + Duration::from_secs(86_400), "capped at max_expires");
}
