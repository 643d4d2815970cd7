//! The validating resolver against a signed hierarchy served by appnet's own authoritative
//! server (signed at load with `--dnssec-keys`, in-process): root → tld → sec.tld (NSEC),
//! n3.tld (NSEC3), unsigned.tld (no DS) and bad.tld (pre-signed, then tampered). Each zone has
//! its own server on its own loopback address, all on one port, as in the lab.

use appnet_dns::config::ZoneSource;
use appnet_dns::wire::dnssec::{Algorithm, SignOptions, ds_text, generate_key, load_keys_dir, sign_zone};
use appnet_dns::wire::message::{self, Parsed};
use appnet_dns::wire::name::from_text;
use appnet_dns::wire::response::rcode;
use appnet_dns::wire::rrtype::code;
use appnet_dns::wire::zonefile::{read_file, record_text};
use appnet_dns::{DnsConfig, DnsServer};
use appnet_netkit::harness::{self, Running, TempDir};
use appnet_resolver::{ResolverConfig, ResolverServer};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::UdpSocket;

const RRSIG: u16 = 46;

fn write_key(dir: &Path, zone: &str, ksk: bool) -> String {
    let g = generate_key(&from_text(zone).unwrap(), Algorithm::EcdsaP256Sha256, ksk, 1_700_000_000).unwrap();
    std::fs::write(dir.join(format!("{}.key", g.stem)), &g.public).unwrap();
    std::fs::write(dir.join(format!("{}.private", g.stem)), &g.private).unwrap();
    g.public
}

const SOA: &str = "$TTL 300\n@ SOA ns admin 1 3600 600 86400 300\n@ NS ns\n";

struct Hierarchy {
    _dir: TempDir,
    servers: Vec<Running>,
    port: u16,
    hints: PathBuf,
    anchor: PathBuf,
}

async fn serve(
    dir: &Path,
    ip: u8,
    port: u16,
    zone: &str,
    text: &str,
    keys: Option<&Path>,
    nsec3: bool,
) -> Running {
    let file = dir.join(format!("{}zone", zone.replace('.', "_")));
    std::fs::write(&file, text).unwrap();
    let config = DnsConfig {
        listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, ip)), port),
        zones: vec![ZoneSource { name: Some(zone.into()), file }],
        dnssec_keys: keys.map(Path::to_path_buf),
        dnssec_nsec3: nsec3,
        udp_workers: 1,
        ..DnsConfig::default()
    };
    harness::start(DnsServer::bind(config).await.expect("authoritative server starts"))
}

async fn hierarchy(tag: &str) -> Hierarchy {
    let dir = TempDir::new(&format!("resolver-dnssec-{tag}"));
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let root_ksk = write_key(&keys, ".", true);
    write_key(&keys, ".", false);
    write_key(&keys, "tld.", true);
    write_key(&keys, "sec.tld.", true);
    write_key(&keys, "sec.tld.", false);
    write_key(&keys, "n3.tld.", true);
    write_key(&keys, "bad.tld.", true);
    // The root first, on a free port; every other zone on the same port of its own address.
    let root_text = "$TTL 300\n. SOA ns. admin. 1 3600 600 86400 300\n. NS ns.\nns. A 127.0.0.1\n\
                     tld. NS ns.tld.\nns.tld. A 127.0.0.2\n";
    let root = serve(&dir, 1, 0, ".", root_text, Some(&keys), false).await;
    let port = root.addr().port();
    let tld = format!(
        "$ORIGIN tld.\n{SOA}ns A 127.0.0.2\nsec NS ns.sec\nns.sec A 127.0.0.3\nunsigned NS ns.unsigned\n\
         ns.unsigned A 127.0.0.4\nn3 NS ns.n3\nns.n3 A 127.0.0.5\nbad NS ns.bad\nns.bad A 127.0.0.6\n"
    );
    let sec = format!("$ORIGIN sec.tld.\n{SOA}ns A 127.0.0.3\nwww A 192.0.2.10\n*.wild A 192.0.2.11\n");
    let unsigned = format!("$ORIGIN unsigned.tld.\n{SOA}ns A 127.0.0.4\nwww A 192.0.2.30\n");
    let n3 = format!("$ORIGIN n3.tld.\n{SOA}ns A 127.0.0.5\nwww A 192.0.2.20\n");
    // bad.tld: signed offline, then its www address changed under the signature.
    let bad_file = dir.join("bad.unsigned");
    std::fs::write(&bad_file, format!("$ORIGIN bad.tld.\n{SOA}ns A 127.0.0.6\nwww A 192.0.2.40\n")).unwrap();
    let apex = from_text("bad.tld.").unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as u32;
    let opts = SignOptions { nsec3: false, inception: now - 3600, expiration: now + 86_400 };
    let signed =
        sign_zone(&apex, &read_file(&bad_file, &apex).unwrap(), &load_keys_dir(&keys).unwrap(), opts)
            .unwrap();
    let mut bad = String::new();
    for r in &signed {
        let rdata = if r.rtype == code::A && r.rdata == [192, 0, 2, 40] {
            vec![203, 0, 113, 66]
        } else {
            r.rdata.clone()
        };
        bad.push_str(&record_text(&r.owner, r.rtype, r.ttl, &rdata));
        bad.push('\n');
    }
    let servers = vec![
        root,
        serve(&dir, 2, port, "tld.", &tld, Some(&keys), false).await,
        serve(&dir, 3, port, "sec.tld.", &sec, Some(&keys), false).await,
        serve(&dir, 4, port, "unsigned.tld.", &unsigned, None, false).await,
        serve(&dir, 5, port, "n3.tld.", &n3, Some(&keys), true).await,
        serve(&dir, 6, port, "bad.tld.", &bad, None, false).await,
    ];
    let hints = dir.join("root.hints");
    std::fs::write(&hints, ". 3600 NS ns.\nns. 3600 A 127.0.0.1\n").unwrap();
    let anchor = dir.join("root.anchor");
    std::fs::write(&anchor, ds_text(&root_ksk).unwrap()).unwrap();
    Hierarchy { _dir: dir, servers, port, hints, anchor }
}

async fn resolver(h: &Hierarchy) -> Running {
    let config = ResolverConfig {
        listen: harness::any_loopback(),
        root_hints: Some(h.hints.clone()),
        upstream_port: h.port,
        dnssec: true,
        trust_anchors: vec![h.anchor.clone()],
        ..ResolverConfig::default()
    };
    harness::start(ResolverServer::bind(config).await.expect("resolver starts"))
}

/// Flags a client sets: DO in EDNS, AD and CD in the header.
#[derive(Clone, Copy, Default)]
struct Flags {
    dnssec_ok: bool,
    ad: bool,
    cd: bool,
}

async fn ask(server: SocketAddr, name: &str, qtype: u16, f: Flags) -> (Parsed, Vec<u8>) {
    let mut q = message::build_query(0x4242, 0, &from_text(name).unwrap(), qtype, true, Some((1232, 0)));
    if f.dnssec_ok {
        let n = q.len();
        q[n - 4] |= 0x80;
    }
    q[3] |= if f.ad { 0x20 } else { 0 } | if f.cd { 0x10 } else { 0 };
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = vec![0u8; 65_535];
    for _ in 0..3 {
        sock.send_to(&q, server).await.unwrap();
        if let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf)).await {
            let bytes = buf[..n].to_vec();
            return (message::parse(&bytes).unwrap(), bytes);
        }
    }
    panic!("no answer for {name}");
}

fn ad(bytes: &[u8]) -> bool {
    bytes[3] & 0x20 != 0
}

/// The Extended DNS Error info-code in the OPT record, if any.
fn ede(bytes: &[u8]) -> Option<u16> {
    let n = bytes.len();
    // The OPT record is last: find option 15 in its rdata.
    let pos = (0..n.saturating_sub(6)).rev().find(|&i| bytes[i..i + 2] == [0, 15])?;
    Some(u16::from_be_bytes([bytes[pos + 4], bytes[pos + 5]]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resolver_validates_a_signed_hierarchy() {
    let h = hierarchy("main").await;
    let r = resolver(&h).await;
    let do_ = Flags { dnssec_ok: true, ..Flags::default() };

    // Secure: AD with DO, RRSIGs included; AD with AD alone; no AD for a client asking neither.
    let (p, bytes) = ask(r.addr(), "www.sec.tld", code::A, do_).await;
    assert_eq!(p.rcode, rcode::NOERROR);
    assert!(ad(&bytes), "a secure answer has AD");
    assert!(p.answer.iter().any(|r| r.rtype == RRSIG), "DO=1 gets the RRSIGs");
    let (p, bytes) = ask(r.addr(), "www.sec.tld", code::A, Flags { ad: true, ..Flags::default() }).await;
    assert!(ad(&bytes) && p.answer.iter().all(|r| r.rtype != RRSIG), "AD=1: AD, no RRSIGs");
    let (_, bytes) = ask(r.addr(), "www.sec.tld", code::A, Flags::default()).await;
    assert!(!ad(&bytes));

    // Wildcard expansion and NSEC NXDOMAIN, secure.
    let (p, bytes) = ask(r.addr(), "x.wild.sec.tld", code::A, do_).await;
    assert!(p.rcode == rcode::NOERROR && ad(&bytes), "wildcard answer secure");
    let (p, bytes) = ask(r.addr(), "nope.sec.tld", code::A, do_).await;
    assert!(p.rcode == rcode::NXDOMAIN && ad(&bytes), "NSEC NXDOMAIN secure");

    // NSEC3 NXDOMAIN and NODATA, secure.
    let (p, bytes) = ask(r.addr(), "nope.n3.tld", code::A, do_).await;
    assert!(p.rcode == rcode::NXDOMAIN && ad(&bytes), "NSEC3 NXDOMAIN secure");
    let (p, bytes) = ask(r.addr(), "www.n3.tld", code::TXT, do_).await;
    assert!(p.rcode == rcode::NOERROR && p.answer.is_empty() && ad(&bytes), "NSEC3 NODATA secure");

    // An unsigned child: answered, no AD.
    let (p, bytes) = ask(r.addr(), "www.unsigned.tld", code::A, do_).await;
    assert_eq!(p.rcode, rcode::NOERROR);
    assert_eq!(p.answer.len(), 1);
    assert!(!ad(&bytes), "insecure: no AD");

    // Tampered: SERVFAIL with EDE 6 (DNSSEC Bogus), also from the cache; CD=1 gets the data.
    for _ in 0..2 {
        let (p, bytes) = ask(r.addr(), "www.bad.tld", code::A, do_).await;
        assert_eq!(p.rcode, rcode::SERVFAIL);
        assert_eq!(ede(&bytes), Some(6));
    }
    let (p, bytes) = ask(r.addr(), "www.bad.tld", code::A, Flags { cd: true, ..do_ }).await;
    assert_eq!(p.rcode, rcode::NOERROR, "CD=1: the data, unvalidated");
    assert!(!ad(&bytes));
    assert!(p.answer.iter().any(|r| r.rtype == code::A && r.rdata == [203, 0, 113, 66]));

    // Cached secure answers keep AD.
    let (_, bytes) = ask(r.addr(), "www.sec.tld", code::A, do_).await;
    assert!(ad(&bytes));

    r.stop().await.unwrap();
    for s in h.servers {
        s.stop().await.unwrap();
    }
}
