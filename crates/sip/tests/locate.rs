//! RFC 3263 end to end: alice@poly.edu calls bob@umass.edu through poly.edu's proxy, which
//! answers her with 407 first, then finds umass.edu's server through a real DNS server
//! (NAPTR → SRV → A): the TCP NAPTR is skipped (the proxy sends over UDP), the SRV record
//! with the best priority names a dead server, so the INVITE fails over to the next one;
//! umass.edu's proxy hands it to Bob's registered phone; media flows; BYE follows the route.

use appnet_dns::config::ZoneSource;
use appnet_dns::{DnsConfig, DnsServer};
use appnet_netkit::harness::{Running, TempDir, any_loopback, start};
use appnet_netkit::{Service, Shutdown};
use appnet_sip::locate::Transport;
use appnet_sip::locate::dns::locate;
use appnet_sip::rtp::tone;
use appnet_sip::ua::call::{CallConfig, CallError, call};
use appnet_sip::ua::phone::{Phone, PhoneConfig};
use appnet_sip::{SipConfig, SipServer};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn dns(dir: &Path, sip: SocketAddr, dead: SocketAddr) -> (Running, SocketAddr) {
    let zone = dir.join("umass.edu.zone");
    std::fs::write(
        &zone,
        format!(
            "$ORIGIN umass.edu.\n$TTL 60\n@ IN SOA ns admin 1 3600 600 86400 60\n@ IN NS ns\nns IN A 127.0.0.1\n\
             @ IN NAPTR 10 10 \"s\" \"SIP+D2T\" \"\" _sip._tcp.umass.edu.\n\
             @ IN NAPTR 20 10 \"s\" \"SIP+D2U\" \"\" _sip._udp.umass.edu.\n\
             _sip._tcp IN SRV 10 10 {} sip\n\
             _sip._udp IN SRV 10 10 {} dead\n_sip._udp IN SRV 20 10 {} sip\n\
             dead IN A {}\nsip IN A {}\n",
            sip.port(),
            dead.port(),
            sip.port(),
            dead.ip(),
            sip.ip()
        ),
    )
    .unwrap();
    let mut c = DnsConfig { listen: any_loopback(), udp_workers: 1, ..Default::default() };
    c.zones.push(ZoneSource { name: None, file: zone });
    let server = DnsServer::bind(c).await.expect("dns starts");
    let addr = server.local_addr();
    (start(server), addr)
}

/// A loopback UDP port nobody listens on.
async fn dead_port() -> SocketAddr {
    let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.local_addr().unwrap()
}

#[tokio::test]
async fn alice_at_poly_calls_bob_at_umass_located_through_dns() {
    let dir = TempDir::new("sip-locate");
    let umass_cfg = SipConfig { domain: "umass.edu".into(), listen: any_loopback(), ..SipConfig::default() };
    let umass = SipServer::bind(umass_cfg).await.unwrap();
    let umass_addr = umass.local_addr();
    let _umass = start(umass);
    let dead = dead_port().await;
    let (_dns, resolver) = dns(dir.path(), umass_addr, dead).await;

    // The lookup alone: UDP only skips the TCP NAPTR; the dead server comes first.
    let found =
        locate(resolver, "sip:bob@umass.edu", &[Transport::Udp], Duration::from_secs(2)).await.unwrap();
    let addrs: Vec<SocketAddr> = found.iter().map(|t| t.addr).collect();
    assert_eq!(addrs, vec![dead, umass_addr]);
    let tcp =
        locate(resolver, "sip:bob@umass.edu", &[Transport::Tcp, Transport::Udp], Duration::from_secs(2))
            .await
            .unwrap();
    assert_eq!(tcp[0].transport, Transport::Tcp, "the better NAPTR wins when supported");

    let users = dir.path().join("poly.users");
    appnet_sip::users::add_user(&users, "alice@poly.edu", Some("secret"), &[]).unwrap();
    let poly_cfg = SipConfig {
        domain: "poly.edu".into(),
        listen: any_loopback(),
        users: Some(users),
        resolver: Some(resolver),
        t1_ms: 50,
        ..SipConfig::default()
    };
    let poly = SipServer::bind(poly_cfg).await.unwrap();
    let poly_addr = poly.local_addr();
    let _poly = start(poly);

    let phone = Phone::bind(PhoneConfig {
        user: "bob@umass.edu".into(),
        proxy: Some(umass_addr),
        password: None,
        listen: "127.0.0.1:0".parse().unwrap(),
        auto_answer: true,
        busy: false,
        expires: 3600,
        max_calls: Some(1),
        on_call_end: None,
        trace: None,
    })
    .await
    .unwrap();
    let shutdown = Shutdown::new();
    let ph = tokio::spawn(phone.run(shutdown.clone()));

    let trace = Arc::new(Mutex::new(Vec::new()));
    let t = trace.clone();
    let cfg = CallConfig {
        from: "alice@poly.edu".into(),
        to: "bob@umass.edu".into(),
        proxy: poly_addr,
        duration: Duration::from_millis(1000),
        password: Some("secret".into()),
        audio: tone(440.0, 8000),
        ring_timeout: Duration::from_secs(15),
        trace: Some(Arc::new(move |l: &str| t.lock().unwrap().push(l.to_string()))),
    };
    // Bob's phone registers in the background: until then umass.edu answers 480.
    let mut report = None;
    for _ in 0..50 {
        match tokio::time::timeout(Duration::from_secs(30), call(cfg.clone())).await.expect("call ends") {
            Err(CallError::Refused(480, _)) => tokio::time::sleep(Duration::from_millis(100)).await,
            r => {
                report = Some(r.expect("the call succeeds"));
                break;
            }
        }
    }
    let report = report.expect("bob registered in time");
    assert!(report.sent >= 40 && report.received >= report.sent - 10, "{report}");
    let lines = trace.lock().unwrap().join("\n");
    for step in ["407", "INVITE", "180 Ringing (INVITE)", "200 OK (INVITE)", "ACK", "BYE", "200 OK (BYE)"] {
        assert!(lines.contains(step), "{step} missing from\n{lines}");
    }
    let phone_reports = tokio::time::timeout(Duration::from_secs(10), ph).await.unwrap().unwrap().unwrap();
    assert_eq!(phone_reports.len(), 1, "bob's phone took the call");
    shutdown.trigger();
}

#[tokio::test]
async fn strangers_cannot_use_the_proxy_as_a_relay() {
    let dir = TempDir::new("sip-relay");
    let users = dir.path().join("poly.users");
    appnet_sip::users::add_user(&users, "alice@poly.edu", Some("secret"), &[]).unwrap();
    let poly_cfg = SipConfig {
        domain: "poly.edu".into(),
        listen: any_loopback(),
        users: Some(users),
        resolver: Some(dead_port().await),
        ..SipConfig::default()
    };
    let poly = SipServer::bind(poly_cfg).await.unwrap();
    let poly_addr = poly.local_addr();
    let _poly = start(poly);
    let cfg = CallConfig {
        from: "mallory@example.org".into(),
        to: "bob@umass.edu".into(),
        proxy: poly_addr,
        duration: Duration::from_millis(100),
        password: Some("secret".into()),
        audio: tone(440.0, 8000),
        ring_timeout: Duration::from_secs(5),
        trace: None,
    };
    let r = call(cfg.clone()).await;
    assert!(matches!(r, Err(CallError::Refused(403, _))), "{r:?}");
    // A user with the wrong password gets no further than the challenge.
    let r = call(CallConfig { from: "alice@poly.edu".into(), password: Some("wrong".into()), ..cfg }).await;
    assert!(matches!(r, Err(CallError::Refused(403 | 407, _))), "{r:?}");
}
