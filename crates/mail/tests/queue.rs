//! The queue end to end: submission at crepes.fr, MX lookup through a real DNS server, SMTP to
//! hamburger.edu's server, bounces for unknown users and expired messages, and a queue that
//! survives a restart.

use appnet_dns::config::ZoneSource;
use appnet_dns::{DnsConfig, DnsServer};
use appnet_mail::smtp::client::{ClientOptions, Outcome, deliver};
use appnet_mail::{MailConfig, MailServer, add_user};
use appnet_netkit::Service;
use appnet_netkit::harness::{Running, TempDir, any_loopback, start, wait_until};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// An authoritative server for hamburger.edu whose MX is mail.hamburger.edu at 127.0.0.1.
async fn dns(dir: &Path) -> (Running, SocketAddr) {
    let zone = dir.join("hamburger.edu.zone");
    std::fs::write(
        &zone,
        "$ORIGIN hamburger.edu.\n$TTL 60\n@ IN SOA ns admin 1 3600 600 86400 60\n@ IN NS ns\n\
         @ IN MX 10 mail\nns IN A 127.0.0.1\nmail IN A 127.0.0.1\n",
    )
    .unwrap();
    let mut c = DnsConfig { listen: any_loopback(), udp_workers: 1, ..Default::default() };
    c.zones.push(ZoneSource { name: None, file: zone });
    let server = DnsServer::bind(c).await.expect("dns starts");
    let addr = server.local_addr();
    (start(server), addr)
}

fn config(dir: &Path, domain: &str) -> MailConfig {
    MailConfig {
        domains: vec![domain.to_string()],
        root: dir.to_path_buf(),
        smtp: Some("127.0.0.1:0".parse().unwrap()),
        submission: Some("127.0.0.1:0".parse().unwrap()),
        pop3: None,
        imap: None,
        allow_plain_auth: true,
        retry_initial_secs: 1,
        retry_max_secs: 1,
        auth_failure_delay_secs: 0,
        ..MailConfig::default()
    }
}

async fn submit(addr: SocketAddr, to: &str, subject: &str) {
    let mut opts = ClientOptions::new("ua.crepes.fr");
    opts.auth = Some(("alice@crepes.fr".into(), "pw".into()));
    let msg =
        format!("From: alice@crepes.fr\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nDo you like ketchup?\r\n");
    let out = deliver(addr, &mut opts, "alice@crepes.fr", &[to.to_string()], msg.as_bytes()).await.unwrap();
    assert!(matches!(out[0], Outcome::Delivered(_)), "{out:?}");
}

fn new_mail(root: &Path, domain: &str, user: &str) -> Vec<PathBuf> {
    let dir = root.join("mail").join(domain).join(user).join("new");
    std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default()
}

async fn arrives(root: &Path, domain: &str, user: &str, n: usize) -> bool {
    wait_until(Duration::from_secs(20), Duration::from_millis(50), || async {
        new_mail(root, domain, user).len() >= n
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_to_bob_through_the_mx_and_a_bounce_for_an_unknown_user() {
    let dir = TempDir::new("mail-queue-mx");
    let (a_dir, b_dir) = (dir.path().join("crepes"), dir.path().join("hamburger"));
    add_user(&a_dir, "alice@crepes.fr", "pw").unwrap();
    add_user(&b_dir, "bob@hamburger.edu", "pw").unwrap();
    let (_dns, resolver) = dns(dir.path()).await;
    let b = MailServer::bind(config(&b_dir, "hamburger.edu")).await.unwrap();
    let b_port = b.smtp_addr().unwrap().port();
    let _b = start(b);
    let a = MailServer::bind(MailConfig {
        resolver: Some(resolver),
        remote_smtp_port: b_port,
        ..config(&a_dir, "crepes.fr")
    })
    .await
    .unwrap();
    let a_sub = a.submission_addr().unwrap();
    let _a = start(a);

    submit(a_sub, "bob@hamburger.edu", "hello bob").await;
    assert!(arrives(&b_dir, "hamburger.edu", "bob", 1).await, "the queue delivered to hamburger.edu's MX");
    let text = std::fs::read_to_string(&new_mail(&b_dir, "hamburger.edu", "bob")[0]).unwrap();
    assert!(text.contains("by mail.hamburger.edu (appnet) with ESMTP"), "{text}");
    assert!(text.contains("by mail.crepes.fr (appnet) with ESMTPA"), "{text}");
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(50), || async {
            std::fs::read_dir(a_dir.join("queue")).unwrap().count() == 0
        })
        .await,
        "the delivered message left crepes.fr's queue"
    );

    submit(a_sub, "nobody@hamburger.edu", "to nobody").await;
    assert!(arrives(&a_dir, "crepes.fr", "alice", 1).await, "the bounce reached alice");
    let bounce = std::fs::read_to_string(&new_mail(&a_dir, "crepes.fr", "alice")[0]).unwrap();
    assert!(bounce.contains("report-type=delivery-status"), "{bounce}");
    assert!(bounce.contains("Final-Recipient: rfc822; nobody@hamburger.edu"), "{bounce}");
    assert!(bounce.contains("Status: 5.1.1"), "{bounce}");
    assert!(bounce.contains("Subject: to nobody"), "the original headers come back: {bounce}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_message_survives_a_restart_and_expiry_bounces() {
    let dir = TempDir::new("mail-queue-restart");
    let (a_dir, b_dir) = (dir.path().join("crepes"), dir.path().join("hamburger"));
    add_user(&a_dir, "alice@crepes.fr", "pw").unwrap();
    add_user(&b_dir, "bob@hamburger.edu", "pw").unwrap();
    let (_dns, resolver) = dns(dir.path()).await;
    // hamburger.edu's server is down: reserve a port nobody listens on.
    let b_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let a_config =
        MailConfig { resolver: Some(resolver), remote_smtp_port: b_port, ..config(&a_dir, "crepes.fr") };
    let a = MailServer::bind(a_config.clone()).await.unwrap();
    let a_sub = a.submission_addr().unwrap();
    let a_run = start(a);
    submit(a_sub, "bob@hamburger.edu", "patience").await;
    let spool = appnet_mail::queue::Spool::open(&a_dir).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || async {
            spool.list().unwrap().first().is_some_and(|e| e.attempts >= 1)
        })
        .await
    );
    assert!(spool.list().unwrap()[0].last_error.contains("4.4.1"), "{:?}", spool.list());
    a_run.stop().await.unwrap();

    // hamburger.edu comes up on that port; crepes.fr restarts and resumes its queue.
    let b = MailServer::bind(MailConfig {
        smtp: Some(SocketAddr::from(([127, 0, 0, 1], b_port))),
        ..config(&b_dir, "hamburger.edu")
    })
    .await
    .unwrap();
    let b_run = start(b);
    let a = MailServer::bind(MailConfig { submission: None, ..a_config.clone() }).await.unwrap();
    let a_run = start(a);
    assert!(arrives(&b_dir, "hamburger.edu", "bob", 1).await, "delivered after the restart");
    a_run.stop().await.unwrap();
    b_run.stop().await.unwrap();

    // With hamburger.edu down again and a 2-second lifetime, the message bounces.
    let a = MailServer::bind(MailConfig { queue_lifetime_secs: 2, ..a_config }).await.unwrap();
    let a_sub = a.submission_addr().unwrap();
    let _a = start(a);
    submit(a_sub, "bob@hamburger.edu", "too late").await;
    assert!(arrives(&a_dir, "crepes.fr", "alice", 1).await, "expired message bounced");
    let bounce = std::fs::read_to_string(&new_mail(&a_dir, "crepes.fr", "alice")[0]).unwrap();
    assert!(bounce.contains("Status: 5.4.7") && bounce.contains("delivery time expired"), "{bounce}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_uses_starttls_when_the_mx_offers_it() {
    let dir = TempDir::new("mail-queue-tls");
    let (a_dir, b_dir) = (dir.path().join("crepes"), dir.path().join("hamburger"));
    add_user(&a_dir, "alice@crepes.fr", "pw").unwrap();
    add_user(&b_dir, "bob@hamburger.edu", "pw").unwrap();
    let (_dns, resolver) = dns(dir.path()).await;
    let b_config =
        MailConfig { tls: true, ca_dir: Some(dir.path().join("ca")), ..config(&b_dir, "hamburger.edu") };
    let b = MailServer::bind(b_config).await.unwrap();
    let b_port = b.smtp_addr().unwrap().port();
    let _b = start(b);
    let a = MailServer::bind(MailConfig {
        resolver: Some(resolver),
        remote_smtp_port: b_port,
        ..config(&a_dir, "crepes.fr")
    })
    .await
    .unwrap();
    let a_sub = a.submission_addr().unwrap();
    let _a = start(a);
    submit(a_sub, "bob@hamburger.edu", "encrypted hop").await;
    assert!(arrives(&b_dir, "hamburger.edu", "bob", 1).await);
    let text = std::fs::read_to_string(&new_mail(&b_dir, "hamburger.edu", "bob")[0]).unwrap();
    assert!(text.contains("by mail.hamburger.edu (appnet) with ESMTPS"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_send_direct_finds_the_mx_itself() {
    let dir = TempDir::new("mail-send-direct");
    let b_dir = dir.path().join("hamburger");
    add_user(&b_dir, "bob@hamburger.edu", "pw").unwrap();
    let (_dns, resolver) = dns(dir.path()).await;
    let b = MailServer::bind(config(&b_dir, "hamburger.edu")).await.unwrap();
    let port = b.smtp_addr().unwrap().port();
    let _b = start(b);
    let draft = appnet_mail::send::Draft {
        from: "alice@crepes.fr".into(),
        to: vec!["bob@hamburger.edu".into(), "ghost@hamburger.edu".into()],
        subject: "direct".into(),
        body: "no submission server in between\n".into(),
        ..Default::default()
    };
    let data = draft.build().unwrap();
    let route = appnet_mail::send::Route::Direct { resolver, port };
    let mut make = || ClientOptions::new("crepes.fr");
    let out =
        appnet_mail::send::send(route, &mut make, &draft.from, &draft.recipients(), &data).await.unwrap();
    assert!(matches!(out[0].1, Outcome::Delivered(_)), "{out:?}");
    assert!(matches!(&out[1].1, Outcome::Permanent(w) if w.contains("5.1.1")), "{out:?}");
    assert_eq!(new_mail(&b_dir, "hamburger.edu", "bob").len(), 1);
}
