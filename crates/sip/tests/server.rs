//! The UDP driver end to end: a phone registers, a caller's INVITE reaches it through the
//! proxy, the 200 comes back; the server keeps serving after junk.

use appnet_netkit::Service;
use appnet_netkit::harness;
use appnet_sip::wire::{self, Message};
use appnet_sip::{SipConfig, SipServer};
use std::time::Duration;
use tokio::net::UdpSocket;

async fn recv(s: &UdpSocket) -> Message {
    let mut buf = vec![0u8; 65536];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), s.recv_from(&mut buf))
        .await
        .expect("answer in time")
        .unwrap();
    wire::parse(&buf[..n]).expect("a valid SIP message")
}

async fn recv_final(s: &UdpSocket) -> Message {
    for _ in 0..10 {
        let m = recv(s).await;
        if m.code().is_none_or(|c| c >= 200) {
            return m;
        }
    }
    panic!("no final response")
}

#[tokio::test]
async fn register_and_call_through_the_udp_server() {
    let cfg =
        SipConfig { domain: "umass.edu".into(), listen: harness::any_loopback(), ..SipConfig::default() };
    let server = SipServer::bind(cfg).await.unwrap();
    let addr = server.local_addr();
    let running = harness::start(server);
    let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let caller = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (p, c) = (phone.local_addr().unwrap(), caller.local_addr().unwrap());

    caller.send_to(b"\x00junk\r\n\r\n", addr).await.unwrap();
    let reg = format!(
        "REGISTER sip:umass.edu SIP/2.0\r\nVia: SIP/2.0/UDP {p};branch=z9hG4bKr1\r\nFrom: <sip:bob@umass.edu>;tag=1\r\n\
         To: <sip:bob@umass.edu>\r\nCall-ID: r1\r\nCSeq: 1 REGISTER\r\nContact: <sip:bob@{p}>\r\nContent-Length: 0\r\n\r\n"
    );
    phone.send_to(reg.as_bytes(), addr).await.unwrap();
    let ok = recv(&phone).await;
    assert_eq!(ok.code(), Some(200));
    assert!(ok.header("Contact").unwrap().contains(&p.to_string()));

    let inv = format!(
        "INVITE sip:bob@umass.edu SIP/2.0\r\nVia: SIP/2.0/UDP {c};branch=z9hG4bKi1;rport\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@poly.edu>;tag=a\r\nTo: <sip:bob@umass.edu>\r\nCall-ID: i1\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:alice@{c}>\r\nContent-Length: 0\r\n\r\n"
    );
    caller.send_to(inv.as_bytes(), addr).await.unwrap();
    let fwd = recv(&phone).await;
    assert_eq!(fwd.method(), "INVITE");
    assert_eq!(fwd.header_values("Via").len(), 2);
    let ok = Message::response_to(&fwd, 200, "OK", Some("b"));
    phone.send_to(&ok.to_bytes(), addr).await.unwrap();
    let answer = recv_final(&caller).await;
    assert_eq!(answer.code(), Some(200));
    assert_eq!(answer.to().unwrap().tag(), Some("b"));
    running.stop().await.unwrap();
}

#[tokio::test]
async fn tcp_framing_keepalive_and_answers_on_the_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cfg =
        SipConfig { domain: "umass.edu".into(), listen: harness::any_loopback(), ..SipConfig::default() };
    let server = SipServer::bind(cfg).await.unwrap();
    let addr = server.local_addr();
    let running = harness::start(server);
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let me = s.local_addr().unwrap();
    let options = format!(
        "OPTIONS sip:umass.edu SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bKt1\r\nFrom: <sip:a@poly.edu>;tag=1\r\n\
         To: <sip:umass.edu>\r\nCall-ID: t1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    // A keep-alive, then the request split in two writes, then a second one in the same write.
    s.write_all(b"\r\n\r\n").await.unwrap();
    let (a, b) = options.as_bytes().split_at(40);
    s.write_all(a).await.unwrap();
    s.write_all(b).await.unwrap();
    s.write_all(options.replace("z9hG4bKt1", "z9hG4bKt2").replace("CSeq: 1", "CSeq: 2").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut answers = Vec::new();
    for _ in 0..20 {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "connection closed early");
        got.extend_from_slice(&chunk[..n]);
        while got.starts_with(b"\r\n") {
            got.drain(..2);
        }
        while let Ok(Some(len)) = wire::frame_len(&got, wire::Limits::default()) {
            answers.push(wire::parse(&got[..len]).unwrap());
            got.drain(..len);
        }
        if answers.len() == 2 {
            break;
        }
    }
    assert_eq!(answers.len(), 2);
    assert!(answers.iter().all(|m| m.code() == Some(200)));
    assert_eq!(answers[1].cseq(), Some((2, "OPTIONS")));
    running.stop().await.unwrap();
}

#[tokio::test]
async fn options_over_tls_with_a_lab_ca_certificate() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = harness::TempDir::new("sip-tls");
    let cfg = SipConfig {
        domain: "umass.edu".into(),
        listen: harness::any_loopback(),
        tls: true,
        ca_dir: Some(dir.path().to_path_buf()),
        ..SipConfig::default()
    };
    let server = SipServer::bind(cfg).await.unwrap();
    let tls_addr = server.tls_addr().expect("a TLS listener");
    assert!(server.tls_note().is_some_and(|n| n.contains("ca.pem")));
    let _running = harness::start(server);
    let trust =
        appnet_netkit::tls_client::Trust { lab_ca_dir: Some(dir.path().to_path_buf()), ..Default::default() };
    let config = appnet_netkit::tls_client::client_config(&trust, &[]).unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    let tcp = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
    let name = rustls_pki_name(tls_addr.ip());
    let mut tls = connector.connect(name, tcp).await.expect("handshake with the lab CA's certificate");
    let local = tls.get_ref().0.local_addr().unwrap();
    let options = format!(
        "OPTIONS sip:umass.edu SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bKtls1\r\nMax-Forwards: 70\r\n\
         From: <sip:a@umass.edu>;tag=1\r\nTo: <sip:umass.edu>\r\nCall-ID: tls1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    tls.write_all(options.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 8192];
    let mut got = Vec::new();
    for _ in 0..20 {
        let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
        if wire::frame_len(&got, wire::Limits::default()).ok().flatten().is_some() {
            break;
        }
    }
    let m = wire::parse(&got).expect("a SIP response over TLS");
    assert_eq!(m.code(), Some(200));
    assert!(m.header("Allow").unwrap().contains("INVITE"));
}

fn rustls_pki_name(ip: std::net::IpAddr) -> tokio_rustls::rustls::pki_types::ServerName<'static> {
    tokio_rustls::rustls::pki_types::ServerName::IpAddress(ip.into())
}
