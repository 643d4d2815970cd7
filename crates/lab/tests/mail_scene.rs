//! The tour's mail scene on the lab: Alice submits to mail.crepes.fr, its queue finds
//! hamburger.edu's MX through the lab resolver and speaks SMTP to mail.hamburger.edu, and the
//! message lands in Bob's Maildir with both servers' Received: lines.

mod common;

use appnet_lab::Lab;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_sends_a_message_to_bob_through_the_mx() {
    let dir = appnet_netkit::harness::TempDir::new("lab-mail");
    let mut topology = common::topology();
    topology.chord = None;
    topology.swarm = None;
    topology.ftps.clear();
    for m in &mut topology.mails {
        m.smtp_port = 0;
        m.submission_port = 0;
        m.pop3_port = 0;
        m.imap_port = 0;
    }
    let lab = Lab::start(topology, &dir).await.expect("lab starts");
    let directory = lab.directory();
    assert!(
        directory.contains("mail.hamburger.edu") && directory.contains("bob@hamburger.edu / bob-lab"),
        "{directory}"
    );

    let mut printed = Vec::new();
    let result = appnet_lab::mail_scene::run(&lab, &mut |line| printed.push(line)).await;
    let text = printed.join("\n");
    let facts = result.unwrap_or_else(|e| panic!("mail scene failed: {e}\n{text}"));
    lab.stop().await;

    assert!(facts.submission.iter().any(|l| l.starts_with("S: 235")), "{text}");
    assert!(
        facts.relay.iter().any(|l| l.contains("MX for hamburger.edu: mail.hamburger.edu (127.0.10.12:")),
        "{text}"
    );
    assert!(facts.relay.iter().any(|l| l == "C: EHLO mail.crepes.fr"), "{text}");
    assert!(facts.relay.iter().any(|l| l.starts_with("S: 250 2.0.0 Ok: queued as")), "{text}");
    assert!(text.contains("hamburger.edu MX 10 mail.hamburger.edu."), "{text}");
    assert!(facts.delivered.contains("by mail.hamburger.edu (appnet) with ESMTP"), "{text}");
    assert!(facts.delivered.contains("by mail.crepes.fr (appnet) with ESMTPA"), "{text}");
    assert!(facts.delivered.contains("Do you like ketchup?"), "{text}");
    assert!(facts.path.starts_with(dir.path()), "{text}");
    assert!(
        facts.pop3.contains("Do you like ketchup?") && facts.pop3.contains("Subject: Ketchup?"),
        "{text}"
    );
    assert!(
        facts.imap.contains("Do you like ketchup?") && facts.imap.contains("Subject: Ketchup?"),
        "{text}"
    );
    assert!(text.contains("POP3 LIST/TOP: 1") && text.contains("IMAP INBOX 1:"), "{text}");
    println!("{text}");
}
