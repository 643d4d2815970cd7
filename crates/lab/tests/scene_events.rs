//! Every scene puts its exchanges on the event bus (what `lab --ui` draws): one lab, a
//! subscriber, then scenes 1 (DNS), 11 (mail), 13 (load balancer), 14 (Napster/Gnutella) and
//! 10 (Chord) through `tour::run_scene`, checking protocol, sender and receiver of each scene's
//! key messages. One test, because the bus is one per process.

mod common;

use appnet_lab::Lab;
use appnet_lab::events::{Event, bus};
use std::sync::Arc;
use tokio::sync::broadcast::Receiver;

/// Everything emitted since the last call.
fn drain(rx: &mut Receiver<Arc<Event>>) -> Vec<Arc<Event>> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

fn has(events: &[Arc<Event>], protocol: &str, from: &str, to: &str, summary: &str) -> bool {
    events.iter().any(|e| {
        e.protocol == protocol && e.from.host == from && e.to.host == to && e.summary.contains(summary)
    })
}

fn show(events: &[Arc<Event>]) -> String {
    events
        .iter()
        .map(|e| format!("{} {} > {}: {}", e.protocol, e.from.host, e.to.host, e.summary))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scene_emits_its_exchanges() {
    let dir = appnet_netkit::harness::TempDir::new("lab-events");
    let mut topology = common::topology();
    topology.swarm = None;
    topology.cdn = None;
    topology.ftps.clear();
    topology.caches.clear();
    topology.sips.clear();
    topology.registrar = None;
    topology.attacker = None;
    topology.chord.as_mut().expect("the lab has a ring").port = 0;
    for m in &mut topology.mails {
        (m.smtp_port, m.submission_port, m.pop3_port, m.imap_port) = (0, 0, 0, 0);
    }
    let spec = topology.overlay.as_mut().expect("the default lab has an overlay");
    (spec.napster_port, spec.share_port, spec.gnutella_port, spec.flat_port) = (0, 0, 0, 0);
    let mut lab = Lab::start(topology, &dir).await.expect("lab starts");
    let mut rx = bus().subscribe();
    let mut printed = Vec::new();

    // Scene 1: every upstream query of the resolver's walk carries its bytes and decodes.
    let r = appnet_lab::tour::run_scene(&mut lab, 1, &mut |l| printed.push(l)).await;
    r.unwrap_or_else(|e| panic!("scene 1: {e}\n{}", printed.join("\n")));
    let dns = drain(&mut rx);
    let walk: Vec<_> =
        dns.iter().filter(|e| e.from.host == "dns.poly.edu" && e.to.host != "cis.poly.edu").collect();
    assert!(walk.len() >= 4, "{}", show(&dns));
    for e in &walk {
        assert!(!e.bytes.is_empty(), "no bytes: {}", e.summary);
        assert!(e.fields.iter().any(|(k, _)| k == "ID"), "not decoded: {:?}", e.fields);
    }
    assert!(dns.iter().any(|e| e.from.host == "dns.cs.umass.edu" && !e.bytes.is_empty()), "{}", show(&dns));

    // Scene 11: the SMTP dialogue from Alice's host to mail.crepes.fr and on to
    // mail.hamburger.edu, then Bob's POP3 and IMAP sessions.
    let r = appnet_lab::tour::run_scene(&mut lab, 11, &mut |l| printed.push(l)).await;
    r.unwrap_or_else(|e| panic!("scene 11: {e}\n{}", printed.join("\n")));
    let mail = drain(&mut rx);
    let text = show(&mail);
    assert!(has(&mail, "SMTP", "alice's host", "mail.crepes.fr", "MAIL FROM:<alice@crepes.fr>"), "{text}");
    for cmd in ["MAIL FROM:<alice@crepes.fr>", "RCPT TO:<bob@hamburger.edu>", "DATA", "the message:"] {
        assert!(has(&mail, "SMTP", "mail.crepes.fr", "mail.hamburger.edu", cmd), "{cmd}\n{text}");
    }
    assert!(has(&mail, "SMTP", "mail.hamburger.edu", "mail.crepes.fr", "250 2.0.0 Ok: queued"), "{text}");
    assert!(has(&mail, "DNS", "dns.poly.edu", "mail.crepes.fr", "MX 10 mail.hamburger.edu."), "{text}");
    assert!(has(&mail, "POP3", "mail.hamburger.edu", "bob's host", "POP3 RETR"), "{text}");
    assert!(has(&mail, "IMAP", "mail.hamburger.edu", "bob's host", "BODY.PEEK[]"), "{text}");
    let rcpt = mail.iter().find(|e| e.summary.starts_with("RCPT TO")).expect("an RCPT");
    assert_eq!(rcpt.bytes, b"RCPT TO:<bob@hamburger.edu>\r\n");
    assert!(rcpt.fields.contains(&("Argument".into(), "<bob@hamburger.edu>".into())), "{:?}", rcpt.fields);
    assert!(rcpt.fields.contains(&("Command".into(), "RCPT TO".into())), "{:?}", rcpt.fields);
    // The text tour printed the same lines.
    assert!(printed.iter().any(|l| l == "   C: RCPT TO:<bob@hamburger.edu>"), "{}", printed.join("\n"));

    // Scene 13: client → balancer → machine.
    let r = appnet_lab::tour::run_scene(&mut lab, 13, &mut |l| printed.push(l)).await;
    r.unwrap_or_else(|e| panic!("scene 13: {e}\n{}", printed.join("\n")));
    let lb = drain(&mut rx);
    assert!(lb.iter().any(|e| e.protocol == "LB" && e.from.host == "www.stanford.edu"), "{}", show(&lb));
    assert!(lb.iter().any(|e| e.protocol == "HTTP" && e.to.host == "www.stanford.edu"), "{}", show(&lb));

    // Scene 14: Napster's steps and the Gnutella Query hop by hop with TTL and hops.
    let r = appnet_lab::tour::run_scene(&mut lab, 14, &mut |l| printed.push(l)).await;
    r.unwrap_or_else(|e| panic!("scene 14: {e}\n{}", printed.join("\n")));
    let p2p = drain(&mut rx);
    let text = show(&p2p);
    assert!(has(&p2p, "Napster", "napster-bob", "napster-directory", "ADD"), "{text}");
    assert!(has(&p2p, "Napster", "alice's search client", "napster-directory", "hey jude"), "{text}");
    let flat = p2p
        .iter()
        .filter(|e| {
            e.protocol == "Gnutella" && e.summary.starts_with("Query ") && e.to.host.ends_with("-flat")
        })
        .count();
    assert!(flat >= 11, "the flooded Query reaches every flat peer\n{text}");
    assert!(
        p2p.iter().any(|e| e.summary.starts_with("QueryHit") && e.to.host == "alice's search client"),
        "{text}"
    );

    // Scene 10: FindSuccessor asked by peer 3, answered, and the leave.
    let r = appnet_lab::tour::run_scene(&mut lab, 10, &mut |l| printed.push(l)).await;
    r.unwrap_or_else(|e| panic!("scene 10: {e}\n{}", printed.join("\n")));
    let chord = drain(&mut rx);
    let text = show(&chord);
    assert!(has(&chord, "Chord", "chord-peer-3", "chord-peer-12", "FindSuccessor(key 14)"), "{text}");
    assert!(has(&chord, "Chord", "chord-peer-12", "chord-peer-3", "is my successor's: 15"), "{text}");
    assert!(has(&chord, "Chord", "chord-peer-4", "chord-peer-5", "does not answer"), "{text}");
    lab.stop().await;
}
