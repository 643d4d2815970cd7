//! The tour's SIP scene on the lab's sip.umass.edu and sip.poly.edu: registration from a new
//! address, a call located through DNS (NAPTR/SRV/A), forwarding on no answer, presence, and
//! admission control, every SIP message on the event bus.

mod common;

use appnet_lab::Lab;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_calls_bob_over_sip() {
    let dir = appnet_netkit::harness::TempDir::new("lab-sip");
    let mut topology = common::topology();
    topology.chord = None;
    topology.swarm = None;
    topology.overlay = None;
    let mut lab = Lab::start(topology, &dir).await.expect("lab starts");
    let directory = lab.directory();
    assert!(directory.contains("sip.umass.edu") && directory.contains("127.0.14.2"), "{directory}");

    let mut bus = appnet_lab::events::bus().subscribe();
    let mut printed = Vec::new();
    let result = appnet_lab::tour::run_scene(&mut lab, 15, &mut |line| printed.push(line)).await;
    let text = printed.join("\n");
    lab.stop().await;
    result.unwrap_or_else(|e| panic!("SIP scene failed: {e}\n{text}"));
    println!("{text}");

    let mut events = Vec::new();
    while let Ok(e) = bus.try_recv() {
        events.push(e);
    }
    let sip: Vec<_> = events.iter().filter(|e| e.protocol == "SIP").collect();
    let has = |from: &str, to: &str, start: &str| {
        sip.iter().any(|e| e.from.host == from && e.to.host == to && e.summary.starts_with(start))
    };
    // 1) user location: Digest registration from the laptop's new address.
    assert!(has("bob's laptop", "sip.umass.edu", "REGISTER sip:umass.edu"), "{text}");
    assert!(has("sip.umass.edu", "bob's laptop", "SIP/2.0 401"), "{text}");
    assert!(has("sip.umass.edu", "bob's laptop", "SIP/2.0 200 OK (REGISTER)"), "{text}");
    // 2) the call: 407 at poly.edu, DNS for umass.edu, forwarded, answered, BYE.
    assert!(has("alice@poly.edu", "sip.poly.edu", "INVITE sip:bob@umass.edu"), "{text}");
    assert!(has("sip.poly.edu", "alice@poly.edu", "SIP/2.0 407"), "{text}");
    let dns: Vec<_> =
        events.iter().filter(|e| e.protocol == "DNS" && e.from.host == "sip.poly.edu").collect();
    for q in ["NAPTR umass.edu", "SRV _sip._udp.umass.edu", "A sip.umass.edu"] {
        assert!(dns.iter().any(|e| e.summary.starts_with(q) && e.to.host == "dns.poly.edu"), "{q}: {text}");
    }
    assert!(has("sip.poly.edu", "sip.umass.edu", "INVITE sip:bob@umass.edu"), "{text}");
    assert!(has("sip.umass.edu", "bob's laptop", "INVITE sip:bob@127.0.14.11"), "{text}");
    for (from, to, start) in [
        ("sip.poly.edu", "alice@poly.edu", "SIP/2.0 100 Trying (INVITE)"),
        ("sip.poly.edu", "alice@poly.edu", "SIP/2.0 180 Ringing (INVITE)"),
        ("sip.poly.edu", "alice@poly.edu", "SIP/2.0 200 OK (INVITE)"),
        ("alice@poly.edu", "sip.poly.edu", "ACK "),
        ("alice@poly.edu", "sip.poly.edu", "BYE "),
        ("sip.umass.edu", "bob's laptop", "BYE "),
        ("sip.poly.edu", "alice@poly.edu", "SIP/2.0 200 OK (BYE)"),
    ] {
        assert!(has(from, to, start), "{from} -> {to} {start} missing\n{text}");
    }
    let invite = sip.iter().find(|e| e.summary.starts_with("INVITE") && !e.bytes.is_empty()).unwrap();
    assert!(String::from_utf8_lossy(&invite.bytes).starts_with("INVITE sip:bob@umass.edu SIP/2.0\r\n"));
    assert!(invite.fields.iter().any(|(k, _)| k == "Call-ID"));
    // 3) forwarding on no answer: the laptop rings, is cancelled, the desk phone answers.
    assert!(has("sip.umass.edu", "bob's laptop", "CANCEL "), "{text}");
    assert!(has("sip.umass.edu", "bob's desk phone", "INVITE sip:bob@127.0.14.12"), "{text}");
    assert!(has("bob's desk phone", "sip.umass.edu", "SIP/2.0 200 OK (INVITE)"), "{text}");
    // 4) presence: open, then closed when the laptop unregistered.
    assert!(has("sip.umass.edu", "alice's watcher", "NOTIFY "), "{text}");
    assert!(text.contains("presence: open") && text.contains("presence: closed"), "{text}");
    // 5) admission control: 503 with a Warning while the link carries one call.
    let refused = sip
        .iter()
        .find(|e| e.to.host == "alice@poly.edu" && e.summary.starts_with("SIP/2.0 503"))
        .unwrap_or_else(|| panic!("no 503\n{text}"));
    assert!(
        refused.fields.iter().any(|(k, v)| k == "Warning" && v.contains("Insufficient bandwidth")),
        "{text}"
    );
}
