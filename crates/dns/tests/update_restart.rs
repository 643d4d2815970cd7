//! RFC 2136 updates survive a restart: a TSIG-signed update is accepted, the server stops, a
//! new one starts from the same (untouched) zone file and state directory and serves the
//! updated records with the bumped serial (and valid signatures when signing online), and IXFR
//! from the old serial still works. Damaged state files and an edited zone file never make
//! zone, journal and signatures disagree.

use appnet_dns::client::{self, QueryOpts, Transferred};
use appnet_dns::config::ZoneSource;
use appnet_dns::wire::message::{Record, parse};
use appnet_dns::wire::name::{from_text, to_lower};
use appnet_dns::wire::rrtype::{CLASS_IN, code};
use appnet_dns::wire::tsig::Key;
use appnet_dns::wire::update::{UpdateRr, build};
use appnet_dns::wire::verify::{RRSIG, parse_rrsig, rrsig_covers, verify};
use appnet_dns::{DnsConfig, DnsServer};
use appnet_netkit::harness::{Running, TempDir, any_loopback, start};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const KEY: &str = "upd:hmac-sha256:c2VjcmV0LXNlY3JldC1zZWNyZXQ=";
const ZONE: &str =
    "$ORIGIN example.com.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A 192.0.2.1\n";

fn config(dir: &Path, signed: bool) -> DnsConfig {
    let mut c = DnsConfig { listen: any_loopback(), udp_workers: 1, ..Default::default() };
    c.zones.push(ZoneSource { name: Some("example.com.".into()), file: dir.join("example.com.zone") });
    c.state_dir = Some(dir.join("state"));
    c.tsig_keys = vec![KEY.into()];
    c.allow_update = vec!["example.com.=upd".into()];
    c.allow_transfer = vec!["127.0.0.1".into()];
    if signed {
        let keys = dir.join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        let apex = from_text("example.com.").unwrap();
        for ksk in [true, false] {
            let alg = appnet_dns::wire::dnssec::Algorithm::EcdsaP256Sha256;
            let g = appnet_dns::wire::dnssec::generate_key(&apex, alg, ksk, 1_700_000_000).unwrap();
            std::fs::write(keys.join(format!("{}.key", g.stem)), g.public).unwrap();
            std::fs::write(keys.join(format!("{}.private", g.stem)), g.private).unwrap();
        }
        c.dnssec_keys = Some(keys);
    }
    c
}

async fn serve(c: &DnsConfig) -> (Running, appnet_dns::Control) {
    let server = DnsServer::bind(c.clone()).await.expect("server starts");
    let control = server.control();
    (start(server), control)
}

fn a(name: &str, ip: [u8; 4]) -> UpdateRr {
    UpdateRr {
        name: to_lower(&from_text(name).unwrap()),
        rtype: code::A,
        class: CLASS_IN,
        ttl: 300,
        rdata: ip.to_vec(),
    }
}

/// Sends an update adding `rr`, signed with the update key; returns the response code.
async fn add(server: SocketAddr, rr: UpdateRr, key: Option<Key>) -> u16 {
    let packet = build(7, &from_text("example.com.").unwrap(), &[], &[rr]);
    let key = key.map(Arc::new);
    client::update(server, packet, key.as_ref(), Duration::from_secs(5)).await.expect("update answered")
}

async fn a_record(server: SocketAddr, name: &str) -> Option<Vec<u8>> {
    let opts = QueryOpts { timeout: Duration::from_secs(2), ..Default::default() };
    let ans = client::query(server, &from_text(name).unwrap(), code::A, opts).await.ok()?;
    parse(&ans.bytes).ok()?.answer.into_iter().find(|r| r.rtype == code::A).map(|r| r.rdata)
}

async fn ixfr_from(server: SocketAddr, soa: &Record) -> Transferred {
    let apex = from_text("example.com.").unwrap();
    client::transfer(server, &apex, Some(soa), Duration::from_secs(5), None).await.expect("IXFR answered")
}

/// The A RRset of `owner` in an AXFR of the zone verifies with one of the zone's DNSKEYs.
async fn a_signature_verifies(server: SocketAddr, owner: &str) -> bool {
    let apex = from_text("example.com.").unwrap();
    let records = client::axfr(server, &apex, Duration::from_secs(5), None).await.expect("AXFR");
    let owner = to_lower(&from_text(owner).unwrap());
    let set: Vec<Record> =
        records.iter().filter(|r| r.rtype == code::A && to_lower(&r.owner) == owner).cloned().collect();
    let keys: Vec<&Record> = records.iter().filter(|r| r.rtype == appnet_dns::wire::dnssec::DNSKEY).collect();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as u32;
    records
        .iter()
        .filter(|r| r.rtype == RRSIG && rrsig_covers(&r.rdata) == code::A && to_lower(&r.owner) == owner)
        .filter_map(|r| parse_rrsig(&r.rdata))
        .any(|sig| {
            appnet_dns::wire::verify::in_window(&sig, now).is_ok()
                && keys.iter().any(|k| verify(&sig, &set, &k.rdata).is_ok())
        })
}

async fn updates_survive_a_restart(signed: bool) {
    let dir = TempDir::new(if signed { "dns-test-update-restart-signed" } else { "dns-test-update-restart" });
    let file = dir.join("example.com.zone");
    std::fs::write(&file, ZONE).unwrap();
    let c = config(&dir, signed);
    let key = Key::parse_spec(KEY).unwrap();
    let apex = to_lower(&from_text("example.com.").unwrap());

    let (running, control) = serve(&c).await;
    let before = control.catalog().zone(&apex).cloned().unwrap();
    let soa_before = appnet_dns::journal::soa_record(&before).unwrap();
    // Unsigned: refused, nothing changes.
    assert_ne!(add(running.addr(), a("new.example.com.", [192, 0, 2, 80]), None).await, 0);
    assert_eq!(control.serial("example.com."), Some(before.soa().serial));
    assert_eq!(add(running.addr(), a("new.example.com.", [192, 0, 2, 80]), Some(key.clone())).await, 0);
    let updated = control.serial("example.com.").unwrap();
    assert_ne!(updated, before.soa().serial, "the serial is bumped");
    running.stop().await.unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), ZONE, "the user's zone file is not rewritten");

    // Restarted from the same zone file and state directory.
    let (running, control) = serve(&c).await;
    assert_eq!(control.serial("example.com."), Some(updated));
    assert_eq!(a_record(running.addr(), "new.example.com.").await, Some(vec![192, 0, 2, 80]));
    if signed {
        assert!(a_signature_verifies(running.addr(), "new.example.com.").await);
    }
    // The journal from the old serial is back. Signed online, every update re-signs the zone,
    // so this tiny zone's diff is larger than the zone and IXFR answers with the whole zone
    // (RFC 1995 §4 allows it); unsigned, it is the one change.
    assert_eq!(control.catalog().zone(&apex).unwrap().journal().len(), 1);
    let new_a = |r: &Record| r.rtype == code::A && r.rdata == [192, 0, 2, 80];
    match ixfr_from(running.addr(), &soa_before).await {
        Transferred::Incremental(steps) => {
            assert_eq!(steps.last().unwrap().to_serial(), updated);
            assert!(steps.iter().any(|s| s.added.iter().any(new_a)));
        }
        Transferred::Full(records) if signed => assert!(records.iter().any(new_a)),
        other => panic!("expected an incremental answer, got {other:?}"),
    }
    // A second update after the restart goes on from there.
    assert_eq!(add(running.addr(), a("two.example.com.", [192, 0, 2, 81]), Some(key.clone())).await, 0);
    let second = control.serial("example.com.").unwrap();
    running.stop().await.unwrap();
    let (running, control) = serve(&c).await;
    assert_eq!(control.serial("example.com."), Some(second));
    assert_eq!(a_record(running.addr(), "new.example.com.").await, Some(vec![192, 0, 2, 80]));
    assert_eq!(a_record(running.addr(), "two.example.com.").await, Some(vec![192, 0, 2, 81]));
    assert_eq!(control.catalog().zone(&apex).unwrap().journal().len(), 2);
    if !signed {
        assert!(matches!(ixfr_from(running.addr(), &soa_before).await, Transferred::Incremental(_)));
    }
    running.stop().await.unwrap();

    // A torn journal (crash while it was written, or a damaged disk) is ignored as a whole:
    // the updated zone is served with an empty journal, IXFR falls back to the whole zone.
    let state = dir.join("state");
    let journal = state.join("example.com.zone.journal");
    let good_journal = std::fs::read(&journal).unwrap();
    std::fs::write(&journal, &good_journal[..good_journal.len() - 20]).unwrap();
    let (running, control) = serve(&c).await;
    assert_eq!(control.serial("example.com."), Some(second));
    assert_eq!(a_record(running.addr(), "two.example.com.").await, Some(vec![192, 0, 2, 81]));
    assert!(control.catalog().zone(&apex).unwrap().journal().is_empty());
    assert!(matches!(ixfr_from(running.addr(), &soa_before).await, Transferred::Full(_)));
    if signed {
        assert!(a_signature_verifies(running.addr(), "two.example.com.").await);
    }
    running.stop().await.unwrap();

    // A torn updated zone: the zone file is served as it is, and the journal (which leads to
    // the updated serial) is not used with it.
    std::fs::write(&journal, &good_journal).unwrap();
    let updated_file = state.join("example.com.zone.updated");
    let good_updated = std::fs::read(&updated_file).unwrap();
    std::fs::write(&updated_file, &good_updated[..good_updated.len() / 2]).unwrap();
    let (running, control) = serve(&c).await;
    assert_eq!(control.serial("example.com."), Some(1));
    assert_eq!(a_record(running.addr(), "two.example.com.").await, None);
    assert!(control.catalog().zone(&apex).unwrap().journal().is_empty());
    running.stop().await.unwrap();

    // The zone file edited while the server was down: the file wins, the stored updates are
    // set aside.
    std::fs::write(&updated_file, &good_updated).unwrap();
    std::fs::write(&file, ZONE.replace(" 1 3600 ", " 9 3600 ")).unwrap();
    let (running, control) = serve(&c).await;
    assert_eq!(control.serial("example.com."), Some(9));
    assert_eq!(a_record(running.addr(), "new.example.com.").await, None);
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_survive_a_restart_unsigned() {
    updates_survive_a_restart(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_survive_a_restart_signed_online() {
    updates_survive_a_restart(true).await;
}
