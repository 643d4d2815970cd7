//! RFC 3263 end to end: alice@poly.edu calls bob@umass.edu through poly.edu's proxy, which
//! answers her with 407 first, then finds umass.edu's server through a real DNS server
//! (NAPTR → SRV → A): the TCP NAPTR wins, the SRV record with the best priority names a
//! dead server (the TCP connect is refused), so the INVITE fails over to the next one over
//! TCP; umass.edu's proxy hands it to Bob's registered phone; media flows; BYE follows the
//! route. A far domain offering only SIP over TLS (SIPS+D2T) is reached over TLS, its lab-CA
//! certificate checked for the name umass.edu (RFC 5922).

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
    let (s, d) = (sip.port(), dead.port());
    serve_zone(
        dir,
        &format!(
            "@ IN NAPTR 10 10 \"s\" \"SIP+D2T\" \"\" _sip._tcp.umass.edu.\n\
             @ IN NAPTR 20 10 \"s\" \"SIP+D2U\" \"\" _sip._udp.umass.edu.\n\
             _sip._tcp IN SRV 10 10 {d} dead\n_sip._tcp IN SRV 20 10 {s} sip\n\
             _sip._udp IN SRV 10 10 {d} dead\n_sip._udp IN SRV 20 10 {s} sip\n\
             dead IN A {}\nsip IN A {}\n",
            dead.ip(),
            sip.ip()
        ),
    )
    .await
}

/// umass.edu's zone with these records, served by a real DNS server.
async fn serve_zone(dir: &Path, records: &str) -> (Running, SocketAddr) {
    let zone = dir.join("umass.edu.zone");
    std::fs::write(
        &zone,
        format!(
            "$ORIGIN umass.edu.\n$TTL 60\n@ IN SOA ns admin 1 3600 600 86400 60\n@ IN NS ns\nns IN A 127.0.0.1\n\
             {records}"
        ),
    )
    .unwrap();
    let mut c = DnsConfig { listen: any_loopback(), udp_workers: 1, ..Default::default() };
    c.zones.push(ZoneSource { name: None, file: zone });
    let server = DnsServer::bind(c).await.expect("dns starts");
    let addr = server.local_addr();
    (start(server), addr)
}

/// A loopback port nobody listens on (neither UDP nor TCP).
/// umass.edu's zone offering SIP only over TLS at `tls_addr` (NAPTR SIPS+D2T → SRV → A).
async fn sips_only_zone(dir: &Path, tls_addr: SocketAddr) -> (Running, SocketAddr) {
    let records = format!(
        "@ IN NAPTR 10 10 \"s\" \"SIPS+D2T\" \"\" _sips._tcp.umass.edu.\n\
         _sips._tcp IN SRV 10 10 {} sip\nsip IN A {}\n",
        tls_addr.port(),
        tls_addr.ip()
    );
    serve_zone(dir, &records).await
}

/// A SIP server for `domain` with TLS on (its certificate from the CA in `ca`), not yet running.
async fn tls_server(domain: &str, ca: &Path) -> SipServer {
    let cfg = SipConfig {
        domain: domain.into(),
        listen: any_loopback(),
        tls: true,
        ca_dir: Some(ca.to_path_buf()),
        ..SipConfig::default()
    };
    SipServer::bind(cfg).await.unwrap()
}

async fn dead_port() -> SocketAddr {
    let s = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
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
    assert_eq!(tcp[1].addr, umass_addr);
    call_bob(dir.path(), resolver, umass_addr, None).await;
}

/// alice@poly.edu (through a poly.edu proxy using `resolver`, trusting the lab CA in
/// `ca_dir`) calls bob@umass.edu, whose phone registers with umass.edu at `umass_addr`.
async fn call_bob(dir: &Path, resolver: SocketAddr, umass_addr: SocketAddr, ca_dir: Option<&Path>) {
    let users = dir.join("poly.users");
    appnet_sip::users::add_user(&users, "alice@poly.edu", Some("secret"), &[]).unwrap();
    let poly_cfg = SipConfig {
        domain: "poly.edu".into(),
        listen: any_loopback(),
        users: Some(users),
        resolver: Some(resolver),
        t1_ms: 50,
        ca_dir: ca_dir.map(Path::to_path_buf),
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
async fn a_far_domain_reachable_only_over_tls_is_called_over_tls() {
    let dir = TempDir::new("sip-locate-tls");
    let ca = dir.path().join("ca");
    let umass = tls_server("umass.edu", &ca).await;
    let (umass_addr, tls_addr) = (umass.local_addr(), umass.tls_addr().expect("TLS on"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut umass = umass;
    let s = seen.clone();
    umass.observe(Arc::new(move |_, what| {
        if let appnet_sip::server::Observed::Received { from, bytes } = what
            && bytes.starts_with(b"INVITE ")
        {
            s.lock().unwrap().push((from, String::from_utf8_lossy(bytes).into_owned()));
        }
    }));
    let _umass = start(umass);
    let (_dns, resolver) = sips_only_zone(dir.path(), tls_addr).await;
    let found = locate(resolver, "sip:bob@umass.edu", &[Transport::Udp], Duration::from_secs(2)).await;
    assert!(found.is_err() || found.is_ok_and(|f| f.is_empty()), "no UDP server offered");
    call_bob(dir.path(), resolver, umass_addr, Some(&ca)).await;
    let seen = seen.lock().unwrap();
    let over_tls: Vec<_> = seen.iter().filter(|(_, m)| m.contains("Via: SIP/2.0/TLS ")).collect();
    assert!(!over_tls.is_empty(), "the INVITE came over TLS: {seen:#?}");
}

#[tokio::test]
async fn a_far_domain_whose_certificate_names_another_domain_is_not_called() {
    let dir = TempDir::new("sip-locate-badtls");
    let ca = dir.path().join("ca");
    // The server's certificate is for poly.edu, not umass.edu.
    let umass = tls_server("elsewhere.edu", &ca).await;
    let tls_addr = umass.tls_addr().expect("TLS on");
    let _umass = start(umass);
    let (_dns, resolver) = sips_only_zone(dir.path(), tls_addr).await;
    let users = dir.path().join("poly.users");
    appnet_sip::users::add_user(&users, "alice@poly.edu", Some("secret"), &[]).unwrap();
    let poly_cfg = SipConfig {
        domain: "poly.edu".into(),
        listen: any_loopback(),
        users: Some(users),
        resolver: Some(resolver),
        ca_dir: Some(ca),
        ..SipConfig::default()
    };
    let poly = SipServer::bind(poly_cfg).await.unwrap();
    let poly_addr = poly.local_addr();
    let _poly = start(poly);
    let cfg = CallConfig {
        from: "alice@poly.edu".into(),
        to: "bob@umass.edu".into(),
        proxy: poly_addr,
        duration: Duration::from_millis(100),
        password: Some("secret".into()),
        audio: tone(440.0, 8000),
        ring_timeout: Duration::from_secs(10),
        trace: None,
    };
    let r = tokio::time::timeout(Duration::from_secs(20), call(cfg)).await.expect("the call ends");
    assert!(matches!(r, Err(CallError::Refused(408 | 503, _))), "{r:?}");
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
