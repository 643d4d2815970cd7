//! POP3 against a real Maildir over TCP: login, STAT/LIST sizes equal to what RETR sends,
//! TOP, UIDL stable across sessions, DELE only at QUIT, RSET, one session per maildrop,
//! bad commands answered with -ERR while the session goes on, failed-login lock-out.

use std::sync::Arc;
use std::time::Duration;

use appnet_mail::access::{AccessContext, AccessLimits};
use appnet_mail::maildir;
use appnet_netkit::Shutdown;
use appnet_netkit::harness::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Client {
    io: BufReader<TcpStream>,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Client {
        let mut c = Client { io: BufReader::new(TcpStream::connect(addr).await.unwrap()) };
        let greeting = c.line().await;
        assert!(greeting.starts_with("+OK"), "{greeting}");
        c
    }
    async fn line(&mut self) -> String {
        let mut s = String::new();
        tokio::time::timeout(Duration::from_secs(10), self.io.read_line(&mut s)).await.unwrap().unwrap();
        s
    }
    async fn cmd(&mut self, c: &str) -> String {
        self.io.get_mut().write_all(format!("{c}\r\n").as_bytes()).await.unwrap();
        self.line().await
    }
    /// A multi-line answer's raw bytes, dot-stuffing and all, up to and including ".\r\n".
    async fn multi(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let mut l = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), self.io.read_until(b'\n', &mut l))
                .await
                .unwrap()
                .unwrap();
            assert!(!l.is_empty(), "connection closed mid-answer");
            out.extend_from_slice(&l);
            if l == b".\r\n" {
                return out;
            }
        }
    }
}

fn setup(tag: &str) -> (TempDir, Arc<AccessContext>) {
    let dir = TempDir::new(tag);
    appnet_mail::add_user(dir.path(), "bob@hamburger.edu", "hunter2").unwrap();
    maildir::deliver(
        dir.path(),
        "hamburger.edu",
        "bob",
        b"From: alice@crepes.fr\r\nSubject: one\r\n\r\nHello Bob.\r\n.dotted line\r\nbye\r\n",
    )
    .unwrap();
    maildir::deliver(dir.path(), "hamburger.edu", "bob", b"Subject: two\r\n\r\nsecond\r\n").unwrap();
    let limits = AccessLimits {
        auth_failure_delay: Duration::from_millis(10),
        lockout_failures: 4,
        ..AccessLimits::default()
    };
    let ctx = Arc::new(AccessContext::new(dir.path(), "mail.hamburger.edu", None, true, limits));
    (dir, ctx)
}

async fn start(ctx: Arc<AccessContext>) -> (std::net::SocketAddr, Shutdown) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = Shutdown::new();
    tokio::spawn(appnet_mail::pop3::serve_pop3(listener, ctx, shutdown.clone()));
    (addr, shutdown)
}

#[tokio::test]
async fn a_full_session_and_deletion_at_quit() {
    let (dir, ctx) = setup("pop3-session");
    let (addr, shutdown) = start(ctx).await;
    let mut c = Client::connect(addr).await;
    c.io.get_mut().write_all(b"CAPA\r\n").await.unwrap();
    let capa = String::from_utf8(c.multi().await).unwrap();
    for cap in ["TOP", "UIDL", "USER", "SASL PLAIN", "RESP-CODES", "PIPELINING"] {
        assert!(capa.contains(cap), "{capa}");
    }
    assert!(c.cmd("STAT").await.starts_with("-ERR"));
    assert!(c.cmd("USER bob@hamburger.edu").await.starts_with("+OK"));
    assert!(c.cmd("PASS hunter2").await.starts_with("+OK"));
    let stat = c.cmd("STAT").await;
    let (n, total): (u64, u64) = {
        let f: Vec<&str> = stat.split_whitespace().collect();
        (f[1].parse().unwrap(), f[2].parse().unwrap())
    };
    assert_eq!(n, 2);
    c.io.get_mut().write_all(b"LIST\r\n").await.unwrap();
    let list = String::from_utf8(c.multi().await).unwrap();
    let sizes: Vec<u64> = list
        .lines()
        .skip(1)
        .filter(|l| *l != ".")
        .map(|l| l.split(' ').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(sizes.iter().sum::<u64>(), total);
    // RETR sends exactly LIST's size, once dot-stuffing and the terminator are undone.
    assert!(c.cmd("RETR 1").await.starts_with("+OK"));
    let body = c.multi().await;
    let text = String::from_utf8(body.clone()).unwrap();
    assert!(text.contains("\r\n..dotted line\r\n"), "{text}");
    let unstuffed = text.trim_end_matches(".\r\n").replace("\r\n..", "\r\n.");
    assert_eq!(unstuffed.len() as u64, sizes[0]);
    assert!(c.cmd("TOP 1 1").await.starts_with("+OK"));
    let top = String::from_utf8(c.multi().await).unwrap();
    assert!(top.ends_with("\r\n\r\nHello Bob.\r\n.\r\n"), "{top:?}");
    c.io.get_mut().write_all(b"UIDL\r\n").await.unwrap();
    let uidl = String::from_utf8(c.multi().await).unwrap();
    assert_eq!(uidl.lines().count(), 4, "{uidl}");
    // Bad commands get -ERR and the session goes on.
    assert!(c.cmd("FROB").await.starts_with("-ERR"));
    assert!(c.cmd("RETR 9").await.starts_with("-ERR"));
    assert!(c.cmd("RETR 0").await.starts_with("-ERR"));
    assert!(c.cmd("DELE 1").await.starts_with("+OK"));
    assert!(c.cmd("RETR 1").await.starts_with("-ERR"), "deleted");
    assert!(c.cmd("STAT").await.starts_with("+OK 1 "));
    assert!(c.cmd("RSET").await.starts_with("+OK"));
    assert!(c.cmd("STAT").await.starts_with("+OK 2 "));
    assert!(c.cmd("DELE 2").await.starts_with("+OK"));

    // A second session on the same maildrop is refused while the first holds it.
    let mut other = Client::connect(addr).await;
    assert!(other.cmd("USER bob@hamburger.edu").await.starts_with("+OK"));
    assert!(other.cmd("PASS hunter2").await.starts_with("-ERR [IN-USE]"));
    // Nothing is deleted until QUIT.
    let cur = dir.join("mail/hamburger.edu/bob/cur");
    assert_eq!(std::fs::read_dir(&cur).unwrap().count(), 2);
    assert!(c.cmd("QUIT").await.starts_with("+OK"));
    let left: Vec<String> =
        std::fs::read_dir(&cur).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].ends_with(":2,S"), "RETR marked it seen: {left:?}");

    // Now the lock is free; the UIDL of the kept message is unchanged.
    assert!(other.cmd("USER bob@hamburger.edu").await.starts_with("+OK"));
    assert!(other.cmd("PASS hunter2").await.starts_with("+OK"));
    let first_uidl = uidl.lines().nth(1).unwrap().split(' ').nth(1).unwrap().to_string();
    assert_eq!(other.cmd("UIDL 1").await.trim_end(), format!("+OK 1 {first_uidl}"));
    assert!(other.cmd("QUIT").await.starts_with("+OK"));
    shutdown.trigger();
}

#[tokio::test]
async fn failed_logins_are_delayed_then_locked_out() {
    let (_dir, ctx) = setup("pop3-lockout");
    let (addr, shutdown) = start(ctx).await;
    let mut attempts = 0;
    let mut locked = false;
    for _ in 0..4 {
        let mut c = Client::connect(addr).await;
        for _ in 0..3 {
            assert!(c.cmd("USER bob@hamburger.edu").await.starts_with("+OK"));
            let r = c.cmd("PASS wrong").await;
            assert!(r.starts_with("-ERR"), "{r}");
            attempts += 1;
            if r.contains("Too many failed logins") {
                locked = true;
            }
            if r.contains("closing") {
                break;
            }
        }
    }
    assert!(attempts >= 4);
    assert!(locked, "the address is locked out after 4 failures");
    // Even the right password is refused while locked out.
    let mut c = Client::connect(addr).await;
    c.cmd("USER bob@hamburger.edu").await;
    assert!(c.cmd("PASS hunter2").await.contains("Too many failed logins"));
    // AUTH PLAIN with junk, then a long line: -ERR each time, the connection stays.
    let mut c = Client::connect(addr).await;
    assert!(c.cmd("AUTH PLAIN !!!").await.starts_with("-ERR"));
    let long = "X".repeat(10_000);
    assert!(c.cmd(&long).await.starts_with("-ERR"));
    assert!(c.cmd("NOOP").await.starts_with("-ERR"), "not logged in, but still answering");
    let mut rest = Vec::new();
    c.io.get_mut().write_all(b"QUIT\r\n").await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.io.read_to_end(&mut rest)).await;
    assert!(String::from_utf8_lossy(&rest).starts_with("+OK"));
    shutdown.trigger();
}

#[tokio::test]
async fn the_fetch_client_lists_and_gets() {
    let (_dir, ctx) = setup("pop3-fetch");
    let (addr, shutdown) = start(ctx).await;
    let list = appnet_mail::fetch::pop3_list(addr, "bob@hamburger.edu", "hunter2").await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].subject, "one");
    assert_eq!(list[0].from, "alice@crepes.fr");
    let m = appnet_mail::fetch::pop3_get(addr, "bob@hamburger.edu", "hunter2", 1).await.unwrap();
    assert_eq!(m.len() as u64, list[0].size, "undone dot-stuffing gives LIST's size");
    assert!(String::from_utf8(m).unwrap().contains("\r\n.dotted line\r\n"));
    assert!(appnet_mail::fetch::pop3_get(addr, "bob@hamburger.edu", "bad", 1).await.is_err());
    shutdown.trigger();
}
