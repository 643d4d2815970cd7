//! The client against a small scripted FTP server (independent of appnet's server): passive
//! and active data connections, REST resume, STOR, the trace, and hostile replies.

use appnet_ftp::client::ops::{get_to_file, open};
use appnet_ftp::client::{ClientConfig, ClientError, DataMode, FtpClient, FtpUrl, ListKind, TraceEvent};
use appnet_netkit::harness::TempDir;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const FILE: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// What the scripted server recorded: the commands it got and the bytes uploaded.
#[derive(Default)]
struct Seen {
    commands: Vec<String>,
    uploaded: Vec<u8>,
}

/// Serves one control connection: anonymous login, TYPE, CWD, SIZE, REST, PASV, PORT, LIST,
/// RETR, STOR, QUIT. Active connections go from the server to the PORT address.
async fn scripted_server(seen: Arc<Mutex<Seen>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (control, _) = listener.accept().await.unwrap();
        let (r, mut w) = control.into_split();
        let mut lines = BufReader::new(r).lines();
        w.write_all(b"220-welcome\r\n220 scripted server\r\n").await.unwrap();
        let mut rest = 0usize;
        let mut passive: Option<TcpListener> = None;
        let mut active: Option<SocketAddr> = None;
        while let Ok(Some(line)) = lines.next_line().await {
            seen.lock().unwrap().commands.push(line.clone());
            let (verb, arg) = line.split_once(' ').unwrap_or((&line, ""));
            let reply: String = match verb {
                "USER" => "331 send your address\r\n".into(),
                "PASS" => "230 in\r\n".into(),
                "TYPE" => "200 binary\r\n".into(),
                "CWD" => "250 ok\r\n".into(),
                "SIZE" => format!("213 {}\r\n", FILE.len()),
                "REST" => {
                    rest = arg.parse().unwrap();
                    format!("350 restarting at {rest}\r\n")
                }
                "PASV" => {
                    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                    let p = l.local_addr().unwrap().port();
                    passive = Some(l);
                    // A foreign address in the 227: the client must use the control address.
                    format!("227 Entering Passive Mode (10,9,8,7,{},{})\r\n", p >> 8, p & 0xff)
                }
                "PORT" => {
                    let n: Vec<u16> = arg.split(',').map(|x| x.parse().unwrap()).collect();
                    active = Some(SocketAddr::from((
                        [n[0] as u8, n[1] as u8, n[2] as u8, n[3] as u8],
                        n[4] * 256 + n[5],
                    )));
                    "200 PORT ok\r\n".into()
                }
                "LIST" | "RETR" | "STOR" => {
                    w.write_all(b"150 opening data connection\r\n").await.unwrap();
                    let mut data = match (passive.take(), active.take()) {
                        (Some(l), _) => l.accept().await.unwrap().0,
                        (None, Some(to)) => {
                            // A third party reaches the client's data port first: the client
                            // must turn it away and keep waiting for the server.
                            let rogue = tokio::net::TcpSocket::new_v4().unwrap();
                            rogue.bind("127.0.0.2:0".parse().unwrap()).unwrap();
                            let mut rogue = rogue.connect(to).await.unwrap();
                            let _ = rogue.write_all(b"not the file").await;
                            TcpStream::connect(to).await.unwrap()
                        }
                        _ => panic!("no data connection prepared"),
                    };
                    match verb {
                        "LIST" => {
                            data.write_all(b"-rw-r--r-- 1 ftp ftp 36 Jan 1 00:00 file.txt\r\n").await.unwrap()
                        }
                        "RETR" => data.write_all(&FILE[rest..]).await.unwrap(),
                        _ => {
                            let mut got = Vec::new();
                            data.read_to_end(&mut got).await.unwrap();
                            seen.lock().unwrap().uploaded = got;
                        }
                    }
                    rest = 0;
                    drop(data);
                    "226 done\r\n".into()
                }
                "QUIT" => {
                    w.write_all(b"221 bye\r\n").await.unwrap();
                    return;
                }
                _ => "502 not here\r\n".into(),
            };
            w.write_all(reply.as_bytes()).await.unwrap();
        }
    });
    addr
}

fn recording() -> (ClientConfig, Arc<Mutex<Vec<TraceEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let config = ClientConfig {
        timeout: Duration::from_secs(5),
        trace: Some(Arc::new(move |e: &TraceEvent| sink.lock().unwrap().push(e.clone()))),
        ..ClientConfig::default()
    };
    (config, events)
}

#[tokio::test]
async fn passive_list_resumed_retr_and_stor_each_use_a_new_data_connection() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let addr = scripted_server(seen.clone()).await;
    let (config, events) = recording();
    let url = FtpUrl::parse(&format!("ftp://{addr}/pub/file.txt")).unwrap();
    let mut client = open(&url, None, config).await.unwrap();
    client.cwd(url.dir()).await.unwrap();
    let listing = client.list(ListKind::List, None).await.unwrap();
    assert!(String::from_utf8_lossy(&listing).contains("file.txt"));

    let dir = TempDir::new("ftp-client");
    let dest = dir.join("file.txt");
    std::fs::write(dir.join("file.txt.part"), &FILE[..10]).unwrap();
    let got = get_to_file(&mut client, url.file(), &dest, true).await.unwrap();
    assert_eq!((got.resumed_from, got.received), (10, FILE.len() as u64 - 10));
    assert_eq!(std::fs::read(&dest).unwrap(), FILE);
    assert!(!dir.join("file.txt.part").exists());
    let again = get_to_file(&mut client, url.file(), &dest, true).await.unwrap();
    assert!(again.already_complete);

    let sent = client.stor("up.bin", &mut &b"uploaded bytes"[..]).await.unwrap();
    assert_eq!(sent, 14);
    client.quit().await.unwrap();

    let seen = seen.lock().unwrap();
    assert_eq!(seen.uploaded, b"uploaded bytes");
    let want = [
        "USER anonymous",
        "PASS appnet@",
        "TYPE I",
        "CWD pub",
        "PASV",
        "LIST",
        "PASV",
        "REST 10",
        "RETR file.txt",
        "SIZE file.txt",
        "PASV",
        "STOR up.bin",
        "QUIT",
    ];
    assert_eq!(seen.commands, want);
    let events = events.lock().unwrap();
    let opens: Vec<_> = events.iter().filter(|e| matches!(e, TraceEvent::DataOpen { .. })).collect();
    let closes = events.iter().filter(|e| matches!(e, TraceEvent::DataClose { .. })).count();
    assert_eq!((opens.len(), closes), (3, 3), "one data connection per transfer");
    for open in opens {
        let TraceEvent::DataOpen { remote, mode, .. } = open else { unreachable!() };
        assert_eq!(remote.ip(), addr.ip(), "the 227's foreign address is not used");
        assert_eq!(*mode, DataMode::Passive);
    }
    assert!(events.contains(&TraceEvent::Sent("PASS ****".into())), "the password is masked");
    assert!(events.contains(&TraceEvent::Received("220-welcome".into())));
    assert_eq!(events.iter().filter(|e| matches!(e, TraceEvent::ControlOpen { .. })).count(), 1);
}

#[tokio::test]
async fn active_mode_names_a_port_on_the_control_address_and_the_server_connects() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let addr = scripted_server(seen.clone()).await;
    let (mut config, events) = recording();
    config.mode = DataMode::Active;
    let url = FtpUrl::parse(&format!("ftp://{addr}/file.txt")).unwrap();
    let mut client = open(&url, None, config).await.unwrap();
    let mut out = Vec::new();
    let n = client.retr("file.txt", 0, &mut out).await.unwrap();
    assert_eq!((n, out.as_slice()), (FILE.len() as u64, FILE));
    client.quit().await.unwrap();
    let port = seen.lock().unwrap().commands.iter().find(|c| c.starts_with("PORT ")).cloned().unwrap();
    assert!(port.starts_with("PORT 127,0,0,1,"), "{port}");
    let events = events.lock().unwrap();
    let open = events.iter().find(|e| matches!(e, TraceEvent::DataOpen { .. })).unwrap();
    let TraceEvent::DataOpen { local, mode, .. } = open else { unreachable!() };
    assert_eq!(*mode, DataMode::Active);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, TraceEvent::DataRefused { from } if from.ip().to_string() == "127.0.0.2")),
        "the foreign connection was refused: {events:?}"
    );
    assert_eq!(format!("PORT 127,0,0,1,{},{}", local.port() >> 8, local.port() & 0xff), port);
}

/// A server that sends `greeting` and then nothing.
async fn one_shot(greeting: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let _ = s.write_all(&greeting).await;
        let mut sink = [0u8; 1024];
        while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    addr
}

#[tokio::test]
async fn hostile_servers_get_errors_not_hangs() {
    let config = ClientConfig { timeout: Duration::from_secs(2), ..ClientConfig::default() };
    let endless: Vec<u8> = std::iter::once(b"220-hi\r\n".to_vec())
        .chain((0..2000).map(|_| b" more\r\n".to_vec()))
        .flatten()
        .collect();
    let long_line = [b"220 ".to_vec(), vec![b'x'; 20_000], b"\r\n".to_vec()].concat();
    let cases: [(&str, Vec<u8>); 4] = [
        ("not FTP", b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()),
        ("endless multi-line reply", endless),
        ("a huge line", long_line),
        ("busy", b"421 too many connections\r\n".to_vec()),
    ];
    for (what, greeting) in cases {
        let addr = one_shot(greeting).await;
        let err = FtpClient::connect(addr, config.clone())
            .await
            .err()
            .unwrap_or_else(|| panic!("{what}: connected"));
        match (what, &err) {
            ("busy", ClientError::Refused { reply, .. }) => assert_eq!(reply.code, 421),
            ("busy", other) => panic!("busy: {other}"),
            (_, ClientError::Protocol(_)) => {}
            (_, other) => panic!("{what}: {other}"),
        }
    }
    let silent = one_shot(Vec::new()).await;
    let err = FtpClient::connect(silent, config).await.err().unwrap();
    assert!(matches!(err, ClientError::Timeout(_)), "{err}");
}
