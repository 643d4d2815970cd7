//! The server against a raw-TCP FTP client: login, passive and active transfers, uploads with
//! resume, the bounce refusal, the chroot, ABOR/STAT during a slow transfer, and the limits.

use appnet_ftp::{FtpConfig, FtpServer};
use appnet_netkit::harness::{self, TempDir};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

const T: Duration = Duration::from_secs(10);

struct Client {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
    addr: SocketAddr,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).await.unwrap();
        let (r, w) = s.into_split();
        let mut c = Client { r: BufReader::new(r), w, addr };
        let (code, _) = c.reply().await;
        assert_eq!(code, 220);
        c
    }

    /// One whole reply (multi-line aware): code and all text.
    async fn reply(&mut self) -> (u16, String) {
        let mut all = String::new();
        let mut first: Option<String> = None;
        loop {
            let mut line = String::new();
            let n =
                tokio::time::timeout(T, self.r.read_line(&mut line)).await.expect("reply in time").unwrap();
            assert!(n > 0, "connection closed while waiting for a reply; so far {all:?}");
            all.push_str(&line);
            let code = &line.get(..3).unwrap_or("");
            match &first {
                None if line.as_bytes().get(3) == Some(&b'-') => first = Some(code.to_string()),
                None => return (code.parse().unwrap(), all),
                Some(f) if line.starts_with(f.as_str()) && line.as_bytes().get(3) == Some(&b' ') => {
                    return (f.parse().unwrap(), all);
                }
                Some(_) => {}
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> (u16, String) {
        self.w.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
        self.reply().await
    }

    async fn login_anonymous(&mut self) {
        assert_eq!(self.cmd("USER anonymous").await.0, 331);
        assert_eq!(self.cmd("PASS a@b").await.0, 230);
    }

    /// EPSV, then a connection to the announced port.
    async fn epsv(&mut self) -> TcpStream {
        let (code, text) = self.cmd("EPSV").await;
        assert_eq!(code, 229, "{text}");
        let port: u16 = text.split("|||").nth(1).unwrap().split('|').next().unwrap().parse().unwrap();
        TcpStream::connect((self.addr.ip(), port)).await.unwrap()
    }

    /// `cmd` over a passive connection: everything the data connection carried, and the final reply.
    async fn fetch(&mut self, cmd: &str) -> (Vec<u8>, u16) {
        let mut data = self.epsv().await;
        let (code, text) = self.cmd(cmd).await;
        assert_eq!(code, 150, "{cmd}: {text}");
        let mut buf = Vec::new();
        tokio::time::timeout(T, data.read_to_end(&mut buf)).await.unwrap().unwrap();
        (buf, self.reply().await.0)
    }

    async fn upload(&mut self, cmd: &str, body: &[u8]) -> u16 {
        let mut data = self.epsv().await;
        let (code, text) = self.cmd(cmd).await;
        assert_eq!(code, 150, "{cmd}: {text}");
        data.write_all(body).await.unwrap();
        data.shutdown().await.unwrap();
        drop(data);
        self.reply().await.0
    }
}

async fn server(config: FtpConfig) -> harness::Running {
    let server =
        FtpServer::bind(FtpConfig { listen: "127.0.0.1:0".parse().unwrap(), ..config }).await.unwrap();
    harness::start(server)
}

fn tree(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    std::fs::create_dir_all(dir.path().join("pub/sub")).unwrap();
    std::fs::write(dir.path().join("pub/hello.txt"), b"line one\nline two\n").unwrap();
    dir
}

#[tokio::test]
async fn anonymous_session_lists_retrieves_and_cannot_write() {
    let dir = tree("ftp-anon");
    let running = server(FtpConfig { root: dir.path().into(), ..FtpConfig::default() }).await;
    let mut c = Client::connect(running.addr()).await;
    assert_eq!(c.cmd("RETR pub/hello.txt").await.0, 530);
    c.login_anonymous().await;
    assert!(c.cmd("FEAT").await.1.contains("MLST"));
    assert_eq!(c.cmd("CWD pub").await.0, 250);
    assert_eq!(c.cmd("PWD").await.1, "257 \"/pub\" is the current directory.\r\n");
    assert_eq!(c.cmd("CWD nothere").await.0, 550);
    let (list, code) = c.fetch("LIST").await;
    assert_eq!(code, 226);
    let list = String::from_utf8(list).unwrap();
    assert!(list.lines().any(|l| l.starts_with("-rw-") && l.ends_with(" hello.txt")), "{list}");
    assert!(list.lines().any(|l| l.starts_with("drwx") && l.ends_with(" sub")), "{list}");
    let (names, _) = c.fetch("NLST").await;
    assert_eq!(names, b"hello.txt\r\nsub\r\n");
    let (names, _) = c.fetch("NLST *.txt").await;
    assert_eq!(names, b"hello.txt\r\n", "a wildcard in the last component lists the matches");
    let (long, _) = c.fetch("LIST s?b").await;
    assert!(String::from_utf8_lossy(&long).ends_with(" sub\r\n"));
    let (mlsd, _) = c.fetch("MLSD").await;
    assert!(
        String::from_utf8_lossy(&mlsd).contains("type=file;size=18;"),
        "{}",
        String::from_utf8_lossy(&mlsd)
    );
    // TYPE A (the default) sends CRLF line ends; TYPE I sends the bytes as stored.
    let (ascii, _) = c.fetch("RETR hello.txt").await;
    assert_eq!(ascii, b"line one\r\nline two\r\n");
    assert_eq!(c.cmd("TYPE I").await.0, 200);
    assert_eq!(c.cmd("SIZE hello.txt").await.1, "213 18\r\n");
    assert_eq!(c.cmd("MDTM hello.txt").await.0, 213);
    assert_eq!(c.cmd("REST 5").await.0, 350);
    let (tail, code) = c.fetch("RETR hello.txt").await;
    assert_eq!((tail.as_slice(), code), (&b"one\nline two\n"[..], 226));
    assert_eq!(c.cmd("STOR x").await.0, 550);
    assert_eq!(c.cmd("MKD d").await.0, 550);
    assert_eq!(c.cmd("QUIT").await.0, 221);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn paths_never_leave_the_root() {
    let outside = TempDir::new("ftp-outside");
    std::fs::write(outside.path().join("secret"), b"secret").unwrap();
    let dir = tree("ftp-chroot");
    std::os::unix::fs::symlink(outside.path(), dir.path().join("pub/out")).unwrap();
    let running =
        server(FtpConfig { root: dir.path().join("pub"), write: true, ..FtpConfig::default() }).await;
    let mut c = Client::connect(running.addr()).await;
    c.login_anonymous().await;
    assert_eq!(c.cmd("CWD ../../../../").await.0, 250);
    assert_eq!(c.cmd("PWD").await.1, "257 \"/\" is the current directory.\r\n");
    assert_eq!(c.cmd("SIZE /../hello.txt").await.1, "213 18\r\n");
    assert_eq!(c.cmd("CWD out").await.0, 550);
    assert_eq!(c.cmd("SIZE out/secret").await.0, 550);
    let mut data = c.epsv().await;
    assert_eq!(c.cmd("RETR out/secret").await.0, 550);
    let mut junk = Vec::new();
    let _ = tokio::time::timeout(T, data.read_to_end(&mut junk)).await;
    assert!(junk.is_empty());
    assert_eq!(c.cmd("DELE out").await.0, 250, "deleting the link removes the link only");
    assert_eq!(std::fs::read(outside.path().join("secret")).unwrap(), b"secret");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn uploads_appear_on_completion_and_resume_with_rest_or_appe() {
    let dir = tree("ftp-up");
    let running = server(FtpConfig { root: dir.path().into(), write: true, ..FtpConfig::default() }).await;
    let mut c = Client::connect(running.addr()).await;
    c.login_anonymous().await;
    c.cmd("TYPE I").await;
    assert_eq!(c.upload("STOR up.bin", b"0123456789").await, 226);
    assert_eq!(std::fs::read(dir.path().join("up.bin")).unwrap(), b"0123456789");
    assert_eq!(c.upload("APPE up.bin", b"abc").await, 226);
    assert_eq!(std::fs::read(dir.path().join("up.bin")).unwrap(), b"0123456789abc");
    assert_eq!(c.cmd("REST 4").await.0, 350);
    assert_eq!(c.upload("STOR up.bin", b"XY").await, 226);
    assert_eq!(std::fs::read(dir.path().join("up.bin")).unwrap(), b"0123XY");
    // A broken upload leaves only the hidden partial; SIZE reports it and APPE finishes it.
    let mut data = c.epsv().await;
    assert_eq!(c.cmd("STOR half.bin").await.0, 150);
    data.write_all(b"first-").await.unwrap();
    socket2::SockRef::from(&data).set_linger(Some(Duration::ZERO)).unwrap();
    drop(data);
    let (code, _) = c.reply().await;
    assert!(code == 426 || code == 226, "{code}");
    if code == 426 {
        assert!(!dir.path().join("half.bin").exists());
        assert_eq!(c.cmd("SIZE half.bin").await.1, "213 6\r\n");
        assert_eq!(c.upload("APPE half.bin", b"second").await, 226);
        assert_eq!(std::fs::read(dir.path().join("half.bin")).unwrap(), b"first-second");
    }
    let (code, text) = c.cmd("MKD new dir").await;
    assert_eq!((code, text.as_str()), (257, "257 \"/new dir\" created.\r\n"));
    assert_eq!(c.cmd("RNFR up.bin").await.0, 350);
    assert_eq!(c.cmd("RNTO new dir/moved.bin").await.0, 250);
    assert_eq!(c.cmd("DELE new dir/moved.bin").await.0, 250);
    assert_eq!(c.cmd("RMD new dir").await.0, 250);
    let mut data = c.epsv().await;
    let (code, text) = c.cmd("STOU").await;
    assert_eq!(code, 150, "{text}");
    data.write_all(b"u").await.unwrap();
    drop(data);
    assert_eq!(c.reply().await.0, 226);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn upload_size_cap_stops_a_big_upload_and_keeps_no_file() {
    let dir = tree("ftp-cap");
    let config = FtpConfig { root: dir.path().into(), write: true, max_upload: 1000, ..FtpConfig::default() };
    let running = server(config).await;
    let mut c = Client::connect(running.addr()).await;
    c.login_anonymous().await;
    c.cmd("TYPE I").await;
    let mut data = c.epsv().await;
    assert_eq!(c.cmd("STOR big").await.0, 150);
    let _ = data.write_all(&vec![7u8; 5000]).await;
    let _ = data.shutdown().await;
    assert_eq!(c.reply().await.0, 552);
    assert!(!dir.path().join("big").exists());
    running.stop().await.unwrap();
}

#[tokio::test]
async fn active_mode_connects_back_only_to_the_client() {
    let dir = tree("ftp-active");
    let running = server(FtpConfig { root: dir.path().into(), ..FtpConfig::default() }).await;
    let mut c = Client::connect(running.addr()).await;
    c.login_anonymous().await;
    // The bounce attack: a PORT naming another host is refused, and nothing is connected.
    assert_eq!(c.cmd("PORT 10,1,2,3,31,144").await.0, 500);
    assert_eq!(c.cmd("EPRT |1|127.0.0.2|8080|").await.0, 500);
    assert_eq!(c.cmd("RETR pub/hello.txt").await.0, 425);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    assert_eq!(c.cmd(&format!("EPRT |1|127.0.0.1|{port}|")).await.0, 200);
    c.cmd("TYPE I").await;
    c.w.write_all(b"RETR pub/hello.txt\r\n").await.unwrap();
    let (mut data, from) = tokio::time::timeout(T, listener.accept()).await.unwrap().unwrap();
    // From the control port - 1 where the server can bind it; another test's socket may hold
    // that port (tests run in parallel), and then the server connects from another port. Either
    // way it connects from its own address, to the client's.
    assert_eq!(from.ip(), running.addr().ip(), "active data comes from the server's address");
    if from.port() != running.addr().port() - 1 {
        eprintln!("control port - 1 was taken; the data connection came from port {}", from.port());
    }
    assert_eq!(c.reply().await.0, 150);
    let mut buf = Vec::new();
    data.read_to_end(&mut buf).await.unwrap();
    assert_eq!(buf, b"line one\nline two\n");
    assert_eq!(c.reply().await.0, 226);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn stat_and_abor_are_answered_during_a_slow_transfer() {
    let dir = tree("ftp-abor");
    std::fs::write(dir.path().join("big"), vec![1u8; 64 << 20]).unwrap();
    let running = server(FtpConfig { root: dir.path().into(), ..FtpConfig::default() }).await;
    let mut c = Client::connect(running.addr()).await;
    c.login_anonymous().await;
    c.cmd("TYPE I").await;
    let data = c.epsv().await;
    assert_eq!(c.cmd("RETR big").await.0, 150);
    // The data connection is never read: the transfer stalls with full buffers.
    let (code, text) = c.cmd("STAT").await;
    assert_eq!(code, 213, "{text}");
    assert!(text.contains("RETR /big"), "{text}");
    // lftp's form: Telnet IP, then Synch (IAC inline, DM as TCP urgent data), then ABOR.
    c.w.write_all(b"\xff\xf4\xff").await.unwrap();
    socket2::SockRef::from(c.w.as_ref()).send_out_of_band(b"\xf2").unwrap();
    assert_eq!(c.cmd("ABOR").await.0, 426);
    assert_eq!(c.reply().await.0, 226);
    assert_eq!(c.cmd("NOOP").await.0, 200);
    drop(data);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn named_users_log_in_to_their_home_and_failures_disconnect() {
    let dir = tree("ftp-users");
    let home = dir.path().join("pub/sub");
    let users = dir.path().join("users");
    appnet_ftp::users::add_user(&users, "alice", "secret", &home).unwrap();
    let config = FtpConfig {
        root: dir.path().into(),
        users: Some(users),
        login_failure_delay_ms: 10,
        max_login_failures: 2,
        ..FtpConfig::default()
    };
    let running = server(config).await;
    let mut c = Client::connect(running.addr()).await;
    assert_eq!(c.cmd("USER anonymous").await.0, 530, "no anonymous with a users file unless asked");
    assert_eq!(c.cmd("USER alice").await.0, 331);
    assert_eq!(c.cmd("PASS secret").await.0, 230);
    std::fs::write(home.join("mine"), b"x").unwrap();
    assert_eq!(c.cmd("SIZE /mine").await.1, "213 1\r\n");
    let mut bad = Client::connect(running.addr()).await;
    bad.cmd("USER alice").await;
    assert_eq!(bad.cmd("PASS nope").await.0, 530);
    bad.cmd("USER alice").await;
    assert_eq!(bad.cmd("PASS nope").await.0, 421);
    let mut rest = Vec::new();
    let n = tokio::time::timeout(T, bad.r.read_to_end(&mut rest)).await.unwrap().unwrap();
    assert_eq!(n, 0, "closed after too many failures");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn sessions_per_address_are_capped_with_421() {
    let dir = tree("ftp-cap-ip");
    let config = FtpConfig { root: dir.path().into(), max_sessions_per_ip: 2, ..FtpConfig::default() };
    let running = server(config).await;
    let mut a = Client::connect(running.addr()).await;
    a.login_anonymous().await;
    let mut b = Client::connect(running.addr()).await;
    b.login_anonymous().await;
    let mut third = TcpStream::connect(running.addr()).await.unwrap();
    let mut buf = String::new();
    tokio::time::timeout(T, third.read_to_string(&mut buf)).await.unwrap().unwrap();
    assert!(buf.starts_with("421 "), "{buf}");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn commands_do_not_extend_the_login_deadline() {
    let dir = tree("ftp-login-deadline");
    let config = FtpConfig { root: dir.path().into(), login_timeout_secs: 1, ..FtpConfig::default() };
    let running = server(config).await;
    let mut c = Client::connect(running.addr()).await;
    let start = std::time::Instant::now();
    let mut closed = false;
    for _ in 0..40 {
        let (code, _) = c.cmd("NOOP").await;
        if code == 421 {
            closed = true;
            break;
        }
        assert_eq!(code, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(closed, "a client that never logs in is closed at the login timeout");
    assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());
    // A logged-in session is not subject to it.
    let mut ok = Client::connect(running.addr()).await;
    ok.login_anonymous().await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(ok.cmd("NOOP").await.0, 200);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn uploads_are_refused_when_the_disk_would_fill() {
    let dir = tree("ftp-full");
    // A floor above any real disk's free space: every upload finds the disk "full".
    let config = FtpConfig {
        root: dir.path().into(),
        write: true,
        min_free_space: u64::MAX / 2,
        ..FtpConfig::default()
    };
    let running = server(config).await;
    let mut c = Client::connect(running.addr()).await;
    c.login_anonymous().await;
    let _data = c.epsv().await;
    assert_eq!(c.cmd("STOR f").await.0, 452);
    assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| e.unwrap().file_name() == "pub"));
    assert_eq!(c.cmd("NOOP").await.0, 200);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn ipv6_control_uses_epsv_and_eprt() {
    let dir = tree("ftp-v6");
    let Ok(server) = FtpServer::bind(FtpConfig {
        listen: "[::1]:0".parse().unwrap(),
        root: dir.path().into(),
        ..FtpConfig::default()
    })
    .await
    else {
        return; // no IPv6 loopback on this machine
    };
    let running = harness::start(server);
    let mut c = Client::connect(running.addr()).await;
    c.login_anonymous().await;
    assert_eq!(c.cmd("PASV").await.0, 522);
    c.cmd("TYPE I").await;
    let (body, code) = c.fetch("RETR pub/hello.txt").await;
    assert_eq!((body.as_slice(), code), (&b"line one\nline two\n"[..], 226));
    assert_eq!(c.cmd("EPRT |1|127.0.0.1|40000|").await.0, 500, "another address family is another host");
    let listener = TcpListener::bind("[::1]:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    assert_eq!(c.cmd(&format!("EPRT |2|::1|{port}|")).await.0, 200);
    c.w.write_all(b"NLST pub\r\n").await.unwrap();
    let (mut data, _) = tokio::time::timeout(T, listener.accept()).await.unwrap().unwrap();
    let mut names = Vec::new();
    data.read_to_end(&mut names).await.unwrap();
    assert_eq!(names, b"hello.txt\r\nsub\r\n");
    assert_eq!(c.reply().await.0, 150);
    assert_eq!(c.reply().await.0, 226);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn an_address_that_keeps_guessing_is_refused_across_connections() {
    let dir = tree("ftp-guess");
    let users = dir.path().join("users");
    appnet_ftp::users::add_user(&users, "alice", "secret", dir.path()).unwrap();
    let config = FtpConfig {
        root: dir.path().into(),
        users: Some(users),
        login_failure_delay_ms: 1,
        max_login_failures: 2,
        max_login_failures_per_ip: 3,
        ..FtpConfig::default()
    };
    let running = server(config).await;
    let mut first = Client::connect(running.addr()).await;
    first.cmd("USER alice").await;
    assert_eq!(first.cmd("PASS a").await.0, 530);
    first.cmd("USER alice").await;
    assert_eq!(first.cmd("PASS b").await.0, 421);
    let mut second = Client::connect(running.addr()).await;
    second.cmd("USER alice").await;
    let (code, text) = second.cmd("PASS c").await;
    assert_eq!(code, 421, "{text}");
    assert!(text.contains("your address"), "{text}");
    // Now even the right password cannot be tried from this address.
    let mut third = TcpStream::connect(running.addr()).await.unwrap();
    let mut buf = String::new();
    tokio::time::timeout(T, third.read_to_string(&mut buf)).await.unwrap().unwrap();
    assert!(buf.starts_with("421 Too many failed logins"), "{buf}");
    running.stop().await.unwrap();
}
