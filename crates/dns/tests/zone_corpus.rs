//! The corpus of tricky zone files in tests/zones: each `ok-*` file must load and each `bad-*`
//! file must be rejected, as `named-checkzone` decides (interop/dns-nsd-diff.sh compares the
//! verdicts and the loaded records with BIND's on the same files). Some files also get their
//! records checked here.

use appnet_dns::wire::name::{from_text, to_text};
use appnet_dns::wire::rrtype::{code, embedded_name};
use appnet_dns::wire::zonefile::{self, ZoneRecord};
use appnet_dns::zone::{Severity, Zone, check};
use std::path::{Path, PathBuf};

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/zones");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/zones exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "zone"))
        .collect();
    files.sort();
    files
}

/// What `appnet dns check-zone` decides: Ok(records) or the reasons.
fn verdict(path: &Path) -> Result<Vec<ZoneRecord>, String> {
    let apex = from_text("example.com").unwrap();
    let records = zonefile::read_file(path, &apex).map_err(|e| e.to_string())?;
    let problems = check(&apex, &records);
    let errors: Vec<String> =
        problems.iter().filter(|p| p.severity == Severity::Error).map(|p| p.to_string()).collect();
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    Zone::from_records(&apex, records.clone()).map_err(|e| e.to_string())?;
    Ok(records)
}

fn load(file: &str) -> Vec<ZoneRecord> {
    verdict(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/zones").join(file)).expect("loads")
}

/// The text of the name at `offset` in the first record `owner`/`rtype`.
fn target(records: &[ZoneRecord], owner: &str, rtype: u16, offset: usize) -> String {
    let owner = from_text(owner).unwrap();
    let r = records
        .iter()
        .find(|r| r.owner == owner && r.rtype == rtype)
        .unwrap_or_else(|| panic!("no {rtype} at {}", to_text(&owner)));
    to_text(embedded_name(&r.rdata, offset).expect("a name"))
}

#[test]
fn every_corpus_file_gets_the_named_checkzone_verdict() {
    let files = corpus();
    assert!(files.len() >= 20, "the corpus is there");
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        match (name.starts_with("ok-"), verdict(&f)) {
            (true, Err(e)) => panic!("{name} must load: {e}"),
            (false, Ok(_)) => panic!("{name} must be rejected"),
            _ => {}
        }
    }
}

#[test]
fn at_is_the_origin_in_record_data() {
    let recs = load("ok-at-in-rdata.zone");
    assert_eq!(target(&recs, "www.example.com", code::CNAME, 0), "example.com.");
    assert_eq!(target(&recs, "example.com", code::MX, 2), "example.com.");
    assert_eq!(target(&recs, "example.com", code::NS, 0), "example.com.");
    assert_eq!(target(&recs, "example.com", code::SOA, 0), "example.com.");
    assert_eq!(target(&recs, "example.com", code::SOA, 13), "example.com.");
    assert_eq!(target(&recs, "ptr.example.com", code::PTR, 0), "example.com.");
    assert_eq!(target(&recs, "_http._tcp.example.com", code::SRV, 6), "example.com.");
    assert_eq!(target(&recs, "dn.example.com", code::DNAME, 0), "example.com.");
    assert_eq!(target(&recs, "rp.example.com", 17, 13), "example.com.");
    // After `$ORIGIN sub.example.com.` and a relative `$ORIGIN inner`.
    assert_eq!(target(&recs, "sub.example.com", code::NS, 0), "ns.sub.example.com.");
    assert_eq!(target(&recs, "alias.inner.sub.example.com", code::CNAME, 0), "inner.sub.example.com.");
    // In TXT it is just the text "@", quoted or not.
    let txt = recs.iter().find(|r| r.rtype == code::TXT).unwrap();
    assert_eq!(txt.rdata, b"\x01@\x01@");
}

#[test]
fn ttl_units_and_the_soa_minimum_default_read_like_bind() {
    let recs = load("ok-syntax-forms.zone");
    let soa = recs.iter().find(|r| r.rtype == code::SOA).unwrap();
    assert_eq!(soa.ttl, 86_400);
    let timers = &soa.rdata[soa.rdata.len() - 16..];
    let n = |i: usize| u32::from_be_bytes(timers[i * 4..i * 4 + 4].try_into().unwrap());
    assert_eq!((n(0), n(1), n(2), n(3)), (7200, 3600, 1_209_600, 300));
    let ns = recs.iter().find(|r| r.rtype == code::NS).unwrap();
    assert_eq!(ns.ttl, 3600, "$TTL 1h");
    // No $TTL: records without a TTL get the SOA's MINIMUM (named-checkzone does the same).
    let recs = load("ok-no-ttl.zone");
    let ttl_of = |t: u16| recs.iter().find(|r| r.rtype == t).unwrap().ttl;
    assert_eq!((ttl_of(code::SOA), ttl_of(code::NS), ttl_of(code::A)), (300, 3600, 300));
    // RFC 2181 §8: a TTL above 2^31 - 1 is read as 0.
    let recs = load("ok-ttl-too-big.zone");
    let w = from_text("w.example.com").unwrap();
    assert_eq!(recs.iter().find(|r| r.owner == w).unwrap().ttl, 0);
}

#[test]
fn name_server_checks_follow_named_checkzone() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/zones");
    let problems = |file: &str| {
        let apex = from_text("example.com").unwrap();
        let recs = zonefile::read_file(&dir.join(file), &apex).unwrap();
        check(&apex, &recs).iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n")
    };
    // A delegation without glue, or to an in-zone name without address: reported, not fatal.
    assert!(problems("ok-glue-missing.zone").contains("warning: NS without glue"));
    assert!(problems("ok-delegation-ns-without-address.zone").contains("warning: NS without address"));
    // The zone's own name servers must be reachable: not below a DNAME, not at a wildcard.
    assert!(
        problems("bad-apex-ns-below-dname.zone")
            .contains("error: example.com. NS ns.dn.example.com. is below a DNAME")
    );
    assert!(problems("bad-dname-at-apex-over-ns.zone").contains("is below a DNAME example.com."));
    assert!(problems("bad-wildcard-ns.zone").contains("error: invalid NS owner name (wildcard)"));
}

#[test]
fn out_of_zone_data_is_ignored_not_fatal() {
    let apex = from_text("example.com").unwrap();
    let recs = load("ok-out-of-zone.zone");
    let zone = Zone::from_records(&apex, recs).unwrap();
    assert!(zone.node(&from_text("glue.other.org").unwrap()).is_none());
}

#[test]
fn one_rrset_has_one_ttl_the_first_as_bind_does() {
    let apex = from_text("example.com").unwrap();
    let zone = Zone::from_records(&apex, load("ok-syntax-forms.zone")).unwrap();
    let node = zone.node(&from_text("ttls.example.com").unwrap()).unwrap();
    assert_eq!(node.get(code::A).unwrap().ttl, 100);
}

proptest::proptest! {
    /// Zone text made of the characters the BIND-syntax rewriting looks at (`@`, `$`,
    /// parentheses, quotes, escapes, comments, units, multi-byte letters) never panics the reader.
    #[test]
    fn any_zone_text_is_read_or_rejected_without_panic(
        text in "(\\$TTL |\\$ORIGIN |@ |SOA |MX |CNAME |1h |\\\\|\"|\\(|\\)|;|é|[a-z0-9. ]|\n){0,80}"
    ) {
        let apex = from_text("example.com").unwrap();
        let _ = zonefile::parse_text(&text, "p", &apex, &zonefile::Includes::Forbidden);
    }
}
