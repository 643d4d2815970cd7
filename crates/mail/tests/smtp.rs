//! SMTP and submission end to end: real listeners on 127.0.0.1:0, raw-socket dialogues as a
//! client would type them, STARTTLS with the lab CA, and the limits.

use appnet_mail::smtp::auth::plain_response;
use appnet_mail::{MailConfig, MailServer, add_user};
use appnet_netkit::harness::{Running, TempDir, start};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Mail {
    running: Running,
    smtp: SocketAddr,
    submission: SocketAddr,
}

fn config(dir: &Path, domain: &str) -> MailConfig {
    MailConfig {
        domains: vec![domain.to_string()],
        root: dir.to_path_buf(),
        smtp: Some("127.0.0.1:0".parse().unwrap()),
        submission: Some("127.0.0.1:0".parse().unwrap()),
        pop3: None,
        imap: None,
        auth_failure_delay_secs: 0,
        ..MailConfig::default()
    }
}

async fn serve(config: MailConfig) -> Mail {
    let server = MailServer::bind(config).await.expect("mail server starts");
    let smtp = server.smtp_addr().unwrap();
    let submission = server.submission_addr().unwrap();
    Mail { running: start(server), smtp, submission }
}

/// A line-at-a-time SMTP client over a raw socket.
struct Raw {
    r: BufReader<tokio::io::ReadHalf<TcpStream>>,
    w: tokio::io::WriteHalf<TcpStream>,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).await.unwrap();
        let (r, w) = tokio::io::split(s);
        Raw { r: BufReader::new(r), w }
    }

    /// Reads one whole reply (all its lines), returned joined with "\n".
    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), self.r.read_line(&mut line))
                .await
                .unwrap()
                .unwrap();
            if n == 0 {
                return all;
            }
            all.push_str(line.trim_end());
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
            all.push('\n');
        }
    }

    async fn send(&mut self, text: &str) {
        self.w.write_all(text.as_bytes()).await.unwrap();
    }

    async fn say(&mut self, line: &str) -> String {
        self.send(&format!("{line}\r\n")).await;
        self.reply().await
    }
}

fn maildir_new(root: &Path, domain: &str, user: &str) -> Vec<PathBuf> {
    let dir = root.join("mail").join(domain).join(user).join("new");
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_textbook_dialogue_lands_in_the_maildir_before_250() {
    let dir = TempDir::new("mail-smtp-textbook");
    add_user(dir.path(), "bob@hamburger.edu", "pw").unwrap();
    let mail = serve(config(dir.path(), "hamburger.edu")).await;
    let mut c = Raw::connect(mail.smtp).await;
    assert!(c.reply().await.starts_with("220 mail.hamburger.edu"));
    assert_eq!(c.say("HELO crepes.fr").await, "250 mail.hamburger.edu");
    assert!(c.say("MAIL FROM: <alice@crepes.fr>").await.starts_with("250"));
    assert!(c.say("RCPT TO: <bob@hamburger.edu>").await.starts_with("250"));
    assert!(c.say("DATA").await.starts_with("354"));
    c.send("Do you like ketchup?\r\nHow about pickles?\r\n..leading dot\r\n.\r\n").await;
    let r = c.reply().await;
    assert!(r.starts_with("250 2.0.0 Ok: queued as"), "{r}");
    let files = maildir_new(dir.path(), "hamburger.edu", "bob");
    assert_eq!(files.len(), 1, "the message is on disk when 250 arrives");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.starts_with("Received: from crepes.fr ([127.0.0.1])"), "{text}");
    assert!(text.ends_with("Do you like ketchup?\nHow about pickles?\n.leading dot\n"), "{text}");
    assert!(c.say("QUIT").await.starts_with("221"));
    mail.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_commands_are_answered_in_order() {
    let dir = TempDir::new("mail-smtp-pipelining");
    add_user(dir.path(), "bob@hamburger.edu", "pw").unwrap();
    let mail = serve(config(dir.path(), "hamburger.edu")).await;
    let mut c = Raw::connect(mail.smtp).await;
    c.reply().await;
    let ehlo = c.say("EHLO client.example").await;
    for ext in ["PIPELINING", "SIZE 26214400", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8"] {
        assert!(ehlo.contains(ext), "{ext} missing: {ehlo}");
    }
    c.send("MAIL FROM:<a@example.com>\r\nRCPT TO:<nobody@hamburger.edu>\r\nRCPT TO:<bob@hamburger.edu>\r\nDATA\r\n").await;
    assert!(c.reply().await.starts_with("250 2.1.0"));
    assert!(c.reply().await.starts_with("550 5.1.1"));
    assert!(c.reply().await.starts_with("250 2.1.5"));
    assert!(c.reply().await.starts_with("354"));
    c.send("Subject: pipelined\r\n\r\nhello\r\n.\r\nQUIT\r\n").await;
    assert!(c.reply().await.starts_with("250 2.0.0"));
    assert!(c.reply().await.starts_with("221"));
    assert_eq!(maildir_new(dir.path(), "hamburger.edu", "bob").len(), 1);
    mail.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_open_relay_but_relay_networks_may_and_nothing_is_queued_for_strangers() {
    let dir = TempDir::new("mail-smtp-relay");
    let mail = serve(config(dir.path(), "hamburger.edu")).await;
    let mut c = Raw::connect(mail.smtp).await;
    c.reply().await;
    c.say("EHLO spammer.example").await;
    c.say("MAIL FROM:<spam@spammer.example>").await;
    let r = c.say("RCPT TO:<victim@elsewhere.example>").await;
    assert!(r.starts_with("554 5.7.1"), "{r}");
    assert!(c.say("DATA").await.starts_with("554"), "no recipients, no data");
    mail.running.stop().await.unwrap();
    assert_eq!(std::fs::read_dir(dir.path().join("queue")).unwrap().count(), 0);

    let relay =
        serve(MailConfig { relay_nets: vec!["127.0.0.0/8".into()], ..config(dir.path(), "hamburger.edu") })
            .await;
    let mut c = Raw::connect(relay.smtp).await;
    c.reply().await;
    c.say("EHLO inside").await;
    c.say("MAIL FROM:<me@hamburger.edu>").await;
    assert!(c.say("RCPT TO:<friend@elsewhere.example>").await.starts_with("250"));
    relay.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submission_wants_auth_and_auth_wants_tls_unless_allowed() {
    let dir = TempDir::new("mail-smtp-submission");
    add_user(dir.path(), "alice@crepes.fr", "secret").unwrap();
    let mail = serve(config(dir.path(), "crepes.fr")).await;
    let mut c = Raw::connect(mail.submission).await;
    c.reply().await;
    assert!(!c.say("EHLO ua").await.contains("AUTH"));
    assert!(
        c.say(&format!("AUTH PLAIN {}", plain_response("alice@crepes.fr", "secret")))
            .await
            .starts_with("538")
    );
    assert!(c.say("MAIL FROM:<alice@crepes.fr>").await.starts_with("530 5.7.0"));
    mail.running.stop().await.unwrap();

    // The queue tries a message as soon as it is queued: through the machine's resolver, an
    // NXDOMAIN for hamburger.edu would bounce it and empty the spool before it is read below. A
    // resolver port nobody answers on only defers it.
    let nowhere = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mail = serve(MailConfig {
        allow_plain_auth: true,
        resolver: Some(nowhere),
        ..config(dir.path(), "crepes.fr")
    })
    .await;
    let mut c = Raw::connect(mail.submission).await;
    c.reply().await;
    assert!(c.say("EHLO ua").await.contains("AUTH PLAIN LOGIN"));
    assert!(
        c.say(&format!("AUTH PLAIN {}", plain_response("alice@crepes.fr", "wrong")))
            .await
            .starts_with("535 5.7.8")
    );
    assert!(
        c.say(&format!("AUTH PLAIN {}", plain_response("alice@crepes.fr", "secret")))
            .await
            .starts_with("235")
    );
    assert!(c.say("MAIL FROM:<alice@crepes.fr>").await.starts_with("250"));
    assert!(c.say("RCPT TO:<bob@hamburger.edu>").await.starts_with("250"));
    assert!(c.say("DATA").await.starts_with("354"));
    c.send("Subject: to the queue\r\n\r\nhi\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("250"));
    let spool = appnet_mail::queue::Spool::open(dir.path()).unwrap();
    let queued = spool.list().unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].rcpts, vec!["bob@hamburger.edu".to_string()]);
    let msg = String::from_utf8(spool.message(&queued[0].id).unwrap()).unwrap();
    assert!(
        msg.contains("with ESMTPA") && msg.contains("\r\nDate: ") && msg.contains("\r\nMessage-ID: <"),
        "{msg}"
    );
    mail.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_with_the_lab_ca_then_auth() {
    let dir = TempDir::new("mail-smtp-tls");
    add_user(dir.path(), "alice@crepes.fr", "secret").unwrap();
    let ca = dir.path().join("ca");
    let mail =
        serve(MailConfig { tls: true, ca_dir: Some(ca.clone()), ..config(dir.path(), "crepes.fr") }).await;
    let trust = appnet_netkit::tls_client::Trust { system: false, lab_ca_dir: Some(ca), extra: vec![] };
    let tls = appnet_netkit::tls_client::client_config(&trust, &[]).unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = lines.clone();
    let mut opts = appnet_mail::smtp::client::ClientOptions::new("ua.crepes.fr");
    opts.tls = Some((tls, "localhost".into()));
    opts.require_tls = true;
    opts.auth = Some(("alice@crepes.fr".into(), "secret".into()));
    opts.trace = Some(Box::new(move |l: &str| seen.lock().unwrap().push(l.to_string())));
    let out = appnet_mail::smtp::client::deliver(
        mail.submission,
        &mut opts,
        "alice@crepes.fr",
        &["alice@crepes.fr".to_string()],
        b"Subject: over TLS\r\n\r\nsecret stuff\r\n",
    )
    .await
    .unwrap();
    assert!(matches!(out[0], appnet_mail::smtp::client::Outcome::Delivered(_)), "{out:?}");
    let trace = lines.lock().unwrap().join("\n");
    assert!(
        trace.contains("C: STARTTLS") && trace.contains("(TLS established)") && trace.contains("S: 235"),
        "{trace}"
    );
    let text = std::fs::read_to_string(&maildir_new(dir.path(), "crepes.fr", "alice")[0]).unwrap();
    assert!(text.contains("with ESMTPSA"), "{text}");
    mail.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_silent_clients_long_lines_and_error_floods() {
    let dir = TempDir::new("mail-smtp-limits");
    let mail =
        serve(MailConfig { greeting_timeout_secs: 1, max_errors: 3, ..config(dir.path(), "hamburger.edu") })
            .await;
    let mut silent = Raw::connect(mail.smtp).await;
    silent.reply().await;
    let r = silent.reply().await;
    assert!(r.starts_with("421 4.4.2"), "{r}");

    let mut c = Raw::connect(mail.smtp).await;
    c.reply().await;
    assert!(c.say(&"A".repeat(5000)).await.starts_with("500 5.5.2"));
    assert!(c.say("NOOP").await.starts_with("250"), "the session goes on after a long line");
    c.say("BOGUS").await;
    assert!(c.say("BOGUS").await.starts_with("500"));
    let r = c.reply().await;
    assert!(r.starts_with("421 4.7.0"), "{r}");
    assert_eq!(c.reply().await, "", "closed after too many errors");

    let mut big = Raw::connect(mail.smtp).await;
    big.reply().await;
    big.say("EHLO x").await;
    assert!(big.say("MAIL FROM:<a@b.example> SIZE=999999999").await.starts_with("552 5.3.4"));
    mail.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_keeps_guessing_is_locked_out_across_sessions() {
    let dir = TempDir::new("mail-smtp-lockout");
    add_user(dir.path(), "alice@crepes.fr", "secret").unwrap();
    let mail = serve(MailConfig {
        allow_plain_auth: true,
        login_lockout_failures: 2,
        ..config(dir.path(), "crepes.fr")
    })
    .await;
    for _ in 0..2 {
        let mut c = Raw::connect(mail.submission).await;
        c.reply().await;
        c.say("EHLO guesser").await;
        assert!(
            c.say(&format!("AUTH PLAIN {}", plain_response("alice@crepes.fr", "guess")))
                .await
                .starts_with("535")
        );
    }
    let mut c = Raw::connect(mail.submission).await;
    c.reply().await;
    c.say("EHLO guesser").await;
    let r = c.say(&format!("AUTH PLAIN {}", plain_response("alice@crepes.fr", "secret"))).await;
    assert!(r.starts_with("535"), "the right password is refused while the address is locked out: {r}");
    mail.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bdat_chunks_pipelined_with_their_octets() {
    let dir = TempDir::new("mail-smtp-bdat");
    add_user(dir.path(), "bob@hamburger.edu", "pw").unwrap();
    let mail = serve(config(dir.path(), "hamburger.edu")).await;
    let mut c = Raw::connect(mail.smtp).await;
    c.reply().await;
    assert!(c.say("EHLO chunker").await.contains("CHUNKING"));
    let first = "Subject: chunks\r\n\r\nBDAT 1 LAST\r\n";
    let second = "in two chunks\r\n";
    c.send(&format!(
        "MAIL FROM:<a@example.org>\r\nRCPT TO:<bob@hamburger.edu>\r\nBDAT {}\r\n{first}BDAT {} LAST\r\n{second}",
        first.len(),
        second.len()
    ))
    .await;
    assert!(c.reply().await.starts_with("250 2.1.0"));
    assert!(c.reply().await.starts_with("250 2.1.5"));
    let r = c.reply().await;
    assert!(r.starts_with(&format!("250 2.0.0 Ok: {} octets", first.len())), "{r}");
    assert!(c.reply().await.starts_with("250 2.0.0 Ok: queued as"));
    let files = maildir_new(dir.path(), "hamburger.edu", "bob");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(
        text.ends_with("Subject: chunks\n\nBDAT 1 LAST\nin two chunks\n"),
        "chunk octets are data, not commands: {text}"
    );
    // A refused chunk's octets are read and dropped, not run as commands.
    c.send("BDAT 6\r\nQUIT\r\n").await;
    assert!(c.reply().await.starts_with("503"));
    assert!(c.say("NOOP").await.starts_with("250"), "the session goes on");
    mail.running.stop().await.unwrap();
}
