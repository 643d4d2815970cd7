//! IMAP against a real Maildir over TCP: login, LIST, SELECT, FETCH (sizes, envelope,
//! structure, sections, \Seen), SEARCH, STORE, COPY/MOVE with UIDPLUS, APPEND with both
//! literal kinds, EXPUNGE, STATUS, IDLE announcing new mail, two sessions seeing each other's
//! changes, UIDs kept across a restart, and bad input answered with BAD while the session goes on.

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
    n: u32,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Client {
        let mut c = Client { io: BufReader::new(TcpStream::connect(addr).await.unwrap()), n: 0 };
        let g = c.line().await;
        assert!(g.starts_with("* OK"), "{g}");
        c
    }
    async fn line(&mut self) -> String {
        let mut l = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), self.io.read_until(b'\n', &mut l))
            .await
            .expect("answer in time")
            .unwrap();
        // Literals: read the announced bytes and the rest of the line.
        let mut s = String::from_utf8_lossy(&l).into_owned();
        while let Some(n) = s
            .trim_end()
            .strip_suffix('}')
            .and_then(|x| x.rsplit_once('{'))
            .and_then(|(_, n)| n.parse::<usize>().ok())
        {
            let mut lit = vec![0u8; n];
            self.io.read_exact(&mut lit).await.unwrap();
            s.push_str(&String::from_utf8_lossy(&lit));
            let mut more = Vec::new();
            self.io.read_until(b'\n', &mut more).await.unwrap();
            s.push_str(&String::from_utf8_lossy(&more));
        }
        s
    }
    /// Sends a tagged command; returns (untagged lines, tagged line).
    async fn cmd(&mut self, c: &str) -> (Vec<String>, String) {
        self.n += 1;
        let tag = format!("a{}", self.n);
        self.io.get_mut().write_all(format!("{tag} {c}\r\n").as_bytes()).await.unwrap();
        self.until(&tag).await
    }
    async fn until(&mut self, tag: &str) -> (Vec<String>, String) {
        let mut untagged = Vec::new();
        loop {
            let l = self.line().await;
            assert!(!l.is_empty(), "connection closed");
            if l.starts_with(&format!("{tag} ")) {
                return (untagged, l);
            }
            untagged.push(l);
        }
    }
    async fn ok(&mut self, c: &str) -> Vec<String> {
        let (u, t) = self.cmd(c).await;
        assert!(t.contains(" OK"), "{c} -> {t} ({u:?})");
        u
    }
}

fn setup(tag: &str) -> (TempDir, Arc<AccessContext>) {
    let dir = TempDir::new(tag);
    appnet_mail::add_user(dir.path(), "bob@hamburger.edu", "hunter2").unwrap();
    let m1 = "From: Alice <alice@crepes.fr>\r\nTo: bob@hamburger.edu\r\nSubject: Hello Bob\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <1@crepes.fr>\r\n\r\nDo you like ketchup?\r\nHow about pickles?\r\n";
    let m2 = "From: carol@x.org\r\nTo: bob@hamburger.edu\r\nSubject: Pictures\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"zz\"\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--zz\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--zz--\r\n";
    maildir::deliver(dir.path(), "hamburger.edu", "bob", m1.as_bytes()).unwrap();
    maildir::deliver(dir.path(), "hamburger.edu", "bob", m2.as_bytes()).unwrap();
    let limits = AccessLimits { auth_failure_delay: Duration::from_millis(10), ..AccessLimits::default() };
    let ctx = Arc::new(AccessContext::new(dir.path(), "mail.hamburger.edu", None, true, limits));
    (dir, ctx)
}

async fn start(ctx: Arc<AccessContext>) -> (std::net::SocketAddr, Shutdown) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = Shutdown::new();
    tokio::spawn(appnet_mail::imap::serve_imap(listener, ctx, shutdown.clone()));
    (addr, shutdown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_session() {
    let (dir, ctx) = setup("imap-session");
    let (addr, shutdown) = start(ctx.clone()).await;
    let mut c = Client::connect(addr).await;
    let caps = c.ok("CAPABILITY").await.join("");
    assert!(caps.contains("IMAP4rev1") && caps.contains("AUTH=PLAIN") && caps.contains("LITERAL+"), "{caps}");
    let (_, t) = c.cmd("SELECT INBOX").await;
    assert!(t.contains("BAD"), "not logged in: {t}");
    let (_, t) = c.cmd("LOGIN bob@hamburger.edu wrong").await;
    assert!(t.contains("NO [AUTHENTICATIONFAILED]"), "{t}");
    c.ok("LOGIN bob@hamburger.edu hunter2").await;
    let caps = c.ok("CAPABILITY").await.join("");
    for cap in ["IDLE", "UIDPLUS", "MOVE", "NAMESPACE"] {
        assert!(caps.contains(cap), "{caps}");
    }
    assert!(c.ok("NAMESPACE").await[0].starts_with("* NAMESPACE ((\"\" \".\"))"));
    c.ok("CREATE Archive").await;
    let (_, t) = c.cmd("CREATE Archive").await;
    assert!(t.contains("NO [ALREADYEXISTS]"), "{t}");
    let (_, t) = c.cmd("CREATE ../../etc").await;
    assert!(t.contains("NO"), "{t}");
    let list = c.ok("LIST \"\" *").await.join("");
    assert!(list.contains("\"INBOX\"") && list.contains("\"Archive\""), "{list}");
    c.ok("SUBSCRIBE Archive").await;
    assert!(c.ok("LSUB \"\" *").await.join("").contains("Archive"));

    let sel = c.ok("SELECT INBOX").await.join("");
    assert!(
        sel.contains("* 2 EXISTS") && sel.contains("* 2 RECENT") && sel.contains("[UIDVALIDITY "),
        "{sel}"
    );
    let f = c.ok("FETCH 1:* (UID FLAGS RFC822.SIZE)").await;
    assert_eq!(f.len(), 2, "{f:?}");
    assert!(f[0].starts_with("* 1 FETCH (UID 1 FLAGS (\\Recent) RFC822.SIZE "), "{f:?}");
    // RFC822.SIZE is exactly what BODY[] sends.
    let size: usize =
        f[0].split("RFC822.SIZE ").nth(1).unwrap().trim_end().trim_end_matches(')').parse().unwrap();
    let body = c.ok("FETCH 1 BODY.PEEK[]").await.join("");
    assert!(body.contains(&format!("BODY[] {{{size}}}\r\n")), "{body}");
    let env = c.ok("FETCH 1 (ENVELOPE)").await.join("");
    assert!(env.contains("\"Hello Bob\" ((\"Alice\" NIL \"alice\" \"crepes.fr\"))"), "{env}");
    let bs = c.ok("FETCH 2 (BODYSTRUCTURE)").await.join("");
    assert!(bs.contains("(\"image\" \"png\" NIL NIL NIL \"base64\" 12") && bs.contains("\"mixed\""), "{bs}");
    let part = c.ok("FETCH 2 BODY.PEEK[1]").await.join("");
    assert!(part.contains("BODY[1] {12}\r\nsee attached"), "{part}");
    let hf = c.ok("FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]").await.join("");
    assert!(hf.contains("BODY[HEADER.FIELDS (SUBJECT)] {22}\r\nSubject: Hello Bob\r\n\r\n"), "{hf}");
    let partial = c.ok("FETCH 1 BODY.PEEK[TEXT]<3.4>").await.join("");
    assert!(partial.contains("BODY[TEXT]<3> {4}\r\nyou "), "{partial}");
    assert!(c.ok("SEARCH UNSEEN").await[0].starts_with("* SEARCH 1 2"));
    // BODY[] without PEEK sets \Seen and says so.
    let seen = c.ok("FETCH 1 BODY[TEXT]").await.join("");
    assert!(seen.contains("FLAGS (\\Seen \\Recent)"), "{seen}");
    assert_eq!(c.ok("SEARCH UNSEEN").await[0].trim_end(), "* SEARCH 2");
    assert_eq!(c.ok("SEARCH SUBJECT pictures").await[0].trim_end(), "* SEARCH 2");
    assert_eq!(c.ok("SEARCH FROM alice BODY ketchup").await[0].trim_end(), "* SEARCH 1");
    assert_eq!(c.ok("UID SEARCH OR SEEN LARGER 100000").await[0].trim_end(), "* SEARCH 1");
    let st = c.ok("STORE 2 +FLAGS (\\Flagged Work)").await.join("");
    assert!(st.contains("* 2 FETCH (FLAGS (\\Flagged \\Recent Work))"), "{st}");
    assert!(c.ok("UID STORE 2 -FLAGS.SILENT (Work)").await.is_empty());

    // COPY and MOVE report the new UIDs (UIDPLUS).
    let (_, t) = c.cmd("COPY 1 Nowhere").await;
    assert!(t.contains("NO [TRYCREATE]"), "{t}");
    let (_, t) = c.cmd("COPY 1 Archive").await;
    assert!(t.contains("OK [COPYUID ") && t.contains(" 1 1]"), "{t}");
    let mv = c.ok("UID MOVE 2 Archive").await.join("");
    assert!(mv.contains("[COPYUID ") && mv.contains("* 2 EXPUNGE"), "{mv}");
    let status = c.ok("STATUS Archive (MESSAGES UIDNEXT UNSEEN)").await.join("");
    assert!(status.contains("(MESSAGES 2 UIDNEXT 3 UNSEEN 1)"), "{status}");

    // APPEND with a synchronising literal and with LITERAL+.
    c.n += 1;
    let tag = format!("a{}", c.n);
    let msg = "Subject: appended\r\n\r\nhi\r\n";
    c.io.get_mut()
        .write_all(format!("{tag} APPEND Archive (\\Seen) {{{}}}\r\n", msg.len()).as_bytes())
        .await
        .unwrap();
    assert!(c.line().await.starts_with("+ "));
    c.io.get_mut().write_all(format!("{msg}\r\n").as_bytes()).await.unwrap();
    let (_, t) = c.until(&tag).await;
    assert!(t.contains("OK [APPENDUID ") && t.contains(" 3]"), "{t}");
    let (u, t) = c.cmd(&format!("APPEND INBOX {{{}+}}\r\n{msg}", msg.len())).await;
    assert!(t.contains("OK [APPENDUID "), "{t}");
    assert!(u.join("").contains("* 2 EXISTS"), "the appended message shows up: {u:?}");

    // Bad input: BAD, and the session goes on.
    let (_, t) = c.cmd("FROB").await;
    assert!(t.contains("BAD"), "{t}");
    let (_, t) = c.cmd("FETCH x:y FLAGS").await;
    assert!(t.contains("BAD"), "{t}");
    c.ok("NOOP").await;

    // EXPUNGE of \Deleted.
    c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    let x = c.ok("EXPUNGE").await.join("");
    assert!(x.contains("* 1 EXPUNGE"), "{x}");
    c.ok("LOGOUT").await;
    let _ = dir;
    shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_idle_and_restart() {
    let (dir, ctx) = setup("imap-idle");
    let (addr, shutdown) = start(ctx.clone()).await;
    let mut a = Client::connect(addr).await;
    let mut b = Client::connect(addr).await;
    a.ok("LOGIN bob@hamburger.edu hunter2").await;
    b.ok("LOGIN bob@hamburger.edu hunter2").await;
    let sel = a.ok("SELECT INBOX").await.join("");
    let validity = sel.split("[UIDVALIDITY ").nth(1).unwrap().split(']').next().unwrap().to_string();
    b.ok("SELECT INBOX").await;
    // b's flag change and expunge reach a.
    b.ok("STORE 1 +FLAGS (\\Seen)").await;
    let n = a.ok("NOOP").await.join("");
    assert!(n.contains("* 1 FETCH (FLAGS (\\Seen \\Recent))"), "{n}");
    b.ok("STORE 2 +FLAGS (\\Deleted)").await;
    b.ok("EXPUNGE").await;
    let n = a.ok("NOOP").await.join("");
    assert!(n.contains("* 2 EXPUNGE"), "{n}");

    // IDLE: a delivery is announced without any command.
    a.n += 1;
    let tag = format!("a{}", a.n);
    a.io.get_mut().write_all(format!("{tag} IDLE\r\n").as_bytes()).await.unwrap();
    assert!(a.line().await.starts_with("+ "));
    maildir::deliver(dir.path(), "hamburger.edu", "bob", b"Subject: new\r\n\r\nnew mail\r\n").unwrap();
    let announced = a.line().await;
    assert!(announced.starts_with("* 2 EXISTS"), "{announced}");
    a.io.get_mut().write_all(b"DONE\r\n").await.unwrap();
    let (_, t) = a.until(&tag).await;
    assert!(t.contains("OK"), "{t}");
    let uids = a.ok("UID FETCH 1:* (FLAGS)").await.join("");
    assert!(uids.contains("UID 3"), "{uids}");
    drop(a);
    drop(b);
    shutdown.trigger();

    // A new server on the same tree: same UIDVALIDITY and UIDs.
    let (addr, shutdown) =
        start(Arc::new(AccessContext::new(dir.path(), "x", None, true, AccessLimits::default()))).await;
    let mut c = Client::connect(addr).await;
    c.ok("AUTHENTICATE PLAIN AGJvYkBoYW1idXJnZXIuZWR1AGh1bnRlcjI=").await;
    let sel = c.ok("EXAMINE INBOX").await.join("");
    assert!(sel.contains(&format!("[UIDVALIDITY {validity}]")), "{sel}");
    let uids = c.ok("UID FETCH 1:* (FLAGS)").await.join("");
    assert!(uids.contains("UID 1 ") && uids.contains("UID 3 ") && !uids.contains("UID 2 "), "{uids}");
    let (u, t) = c.cmd("STORE 1 +FLAGS (\\Flagged)").await;
    assert!(t.contains("OK Store ignored") && u.is_empty(), "{t}");
    // A huge synchronising literal is refused before it is sent.
    let (_, t) = c.cmd("APPEND INBOX {999999999}").await;
    assert!(t.contains("BAD"), "{t}");
    c.ok("NOOP").await;
    shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fetch_client_lists_and_gets() {
    let (_dir, ctx) = setup("imap-fetch");
    let (addr, shutdown) = start(ctx).await;
    let list = appnet_mail::fetch::imap_list(addr, "bob@hamburger.edu", "hunter2").await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].subject, "Hello Bob");
    assert_eq!(list[1].from, "carol@x.org");
    let m = appnet_mail::fetch::imap_get(addr, "bob@hamburger.edu", "hunter2", 1).await.unwrap();
    assert_eq!(m.len() as u64, list[0].size);
    assert!(String::from_utf8(m).unwrap().ends_with("How about pickles?\r\n"));
    assert!(appnet_mail::fetch::imap_get(addr, "bob@hamburger.edu", "hunter2", 9).await.is_err());
    shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_per_user_are_capped() {
    let dir = TempDir::new("imap-per-user");
    appnet_mail::add_user(dir.path(), "bob@hamburger.edu", "hunter2").unwrap();
    let limits = AccessLimits { max_sessions_per_user: 2, ..AccessLimits::default() };
    let ctx = Arc::new(AccessContext::new(dir.path(), "h", None, true, limits));
    let (addr, shutdown) = start(ctx.clone()).await;
    let mut a = Client::connect(addr).await;
    let mut b = Client::connect(addr).await;
    let mut c = Client::connect(addr).await;
    a.ok("LOGIN bob@hamburger.edu hunter2").await;
    b.ok("LOGIN bob@hamburger.edu hunter2").await;
    let (_, t) = c.cmd("LOGIN bob@hamburger.edu hunter2").await;
    assert!(t.contains("NO [LIMIT]"), "{t}");
    a.ok("LOGOUT").await;
    drop(a);
    let freed = appnet_netkit::harness::wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        let ctx = ctx.clone();
        async move { ctx.sessions.lock().unwrap().get("bob@hamburger.edu").copied() == Some(1) }
    })
    .await;
    assert!(freed, "the closed session is no longer counted");
    c.ok("LOGIN bob@hamburger.edu hunter2").await;
    shutdown.trigger();
}
