//! The resolution algorithm over a simulated textbook hierarchy: referrals, caching, negative
//! caching, failover, CNAMEs across zones, glueless delegations and poisoning attempts.

mod support;

use appnet_dns::wire::name::from_text;
use appnet_dns::wire::rrtype::code;
use appnet_resolver::cache::{CacheLimits, Outcome};
use appnet_resolver::driver::Resolver;
use appnet_resolver::iterate::{DEFAULT_MAX_QUERIES, Mode, Settings};
use appnet_resolver::trace::StepOutcome;
use std::sync::atomic::Ordering;
use support::{FakeNet, roots, textbook_net};

fn resolver(net: &FakeNet, use_0x20: bool) -> Resolver<FakeNet> {
    let settings = Settings {
        mode: Mode::Iterative { roots: roots() },
        upstream_port: 53,
        use_0x20,
        cache: CacheLimits::default(),
        max_in_flight_per_zone: 64,
        max_queries: DEFAULT_MAX_QUERIES,
        dnssec: false,
    };
    Resolver::new(settings, net.clone())
}

fn a_records(answer: &appnet_resolver::cache::Answer) -> Vec<[u8; 4]> {
    answer.records.iter().filter(|r| r.rtype == code::A).map(|r| r.rdata[..].try_into().unwrap()).collect()
}

#[tokio::test]
async fn iterative_resolution_follows_referrals_root_tld_authoritative() {
    let net = textbook_net();
    let r = resolver(&net, false);
    let (answer, steps) = r.resolve_traced(&from_text("gaia.cs.umass.edu.").unwrap(), code::A).await;
    assert_eq!(answer.outcome, Outcome::Positive);
    assert_eq!(a_records(&answer), vec![[128, 119, 245, 12]]);
    // root → edu → umass.edu → cs.umass.edu: four exchanges, three referrals then the answer.
    let kinds: Vec<_> = steps.iter().map(|s| &s.outcome).collect();
    assert_eq!(steps.len(), 4, "{steps:#?}");
    assert!(matches!(kinds[0], StepOutcome::Referral { zone, .. } if zone == "edu."));
    assert!(matches!(kinds[1], StepOutcome::Referral { zone, .. } if zone == "umass.edu."));
    assert!(matches!(kinds[2], StepOutcome::Referral { zone, .. } if zone == "cs.umass.edu."));
    assert!(matches!(kinds[3], StepOutcome::Answer { .. }));
}

#[tokio::test]
async fn a_repeat_is_served_from_the_cache_without_upstream_queries() {
    let net = textbook_net();
    let r = resolver(&net, false);
    let name = from_text("gaia.cs.umass.edu.").unwrap();
    r.resolve(&name, code::A).await;
    let before = net.queries_to(None);
    let again = r.resolve(&name, code::A).await;
    assert_eq!(a_records(&again), vec![[128, 119, 245, 12]]);
    assert_eq!(net.queries_to(None), before, "no upstream query for a cached answer");
    assert_eq!(r.counters().served_from_cache.load(Ordering::Relaxed), 1);
    // A sibling name reuses the cached delegation: one query, straight to cs.umass.edu.
    let before = net.queries_to(None);
    r.resolve(&from_text("dns.cs.umass.edu.").unwrap(), code::A).await;
    assert_eq!(net.queries_to(None) - before, 1);
    assert_eq!(net.queries_to(Some("127.0.3.3")), 2);
}

#[tokio::test]
async fn nxdomain_is_cached_negatively() {
    let net = textbook_net();
    let r = resolver(&net, false);
    let name = from_text("gaai.cs.umass.edu.").unwrap();
    let first = r.resolve(&name, code::A).await;
    assert_eq!(first.outcome, Outcome::NxDomain);
    assert_eq!(first.authority.len(), 1, "the SOA comes along for the client to cache");
    let before = net.queries_to(None);
    let second = r.resolve(&name, code::A).await;
    assert_eq!(second.outcome, Outcome::NxDomain);
    assert_eq!(net.queries_to(None), before);
    // NODATA as well: the name exists, the type does not.
    let nodata = r.resolve(&from_text("gaia.cs.umass.edu.").unwrap(), code::MX).await;
    assert_eq!(nodata.outcome, Outcome::NoData);
}

#[tokio::test]
async fn a_dead_replica_times_out_and_the_other_answers() {
    let net = textbook_net();
    net.kill("127.0.3.30");
    let r = resolver(&net, false);
    for i in 0..3 {
        let name =
            from_text(&format!("www{}.stanford.edu.", if i == 0 { String::new() } else { i.to_string() }))
                .unwrap();
        let answer = r.resolve(&name, code::A).await;
        if i == 0 {
            assert_eq!(a_records(&answer), vec![[171, 64, 64, 64]]);
        } else {
            assert_eq!(answer.outcome, Outcome::NxDomain);
        }
    }
    // After the first timeout the dead server is avoided, not asked again and again.
    assert!(
        net.queries_to(Some("127.0.3.30")) <= 1,
        "asked the dead server {} times",
        net.queries_to(Some("127.0.3.30"))
    );
    assert_eq!(net.queries_to(Some("127.0.3.31")), 3);
}

#[tokio::test]
async fn every_server_dead_gives_servfail_and_it_is_remembered_briefly() {
    let net = textbook_net();
    net.kill("127.0.3.30");
    net.kill("127.0.3.31");
    let r = resolver(&net, false);
    let name = from_text("www.stanford.edu.").unwrap();
    assert_eq!(r.resolve(&name, code::A).await.outcome, Outcome::ServFail);
    let before = net.queries_to(None);
    assert_eq!(r.resolve(&name, code::A).await.outcome, Outcome::ServFail);
    assert_eq!(net.queries_to(None), before, "the SERVFAIL is cached, the dead zone is not hammered");
}

#[tokio::test]
async fn cnames_are_followed_within_and_across_zones() {
    let net = textbook_net();
    let r = resolver(&net, false);
    let answer = r.resolve(&from_text("www.ibm.com.").unwrap(), code::A).await;
    assert_eq!(answer.records[0].rtype, code::CNAME);
    assert_eq!(a_records(&answer), vec![[129, 42, 38, 10]]);
    let across = r.resolve(&from_text("mirror.ibm.com.").unwrap(), code::A).await;
    assert_eq!(across.records[0].rtype, code::CNAME);
    assert_eq!(a_records(&across), vec![[127, 0, 10, 1]]);
}

#[tokio::test]
async fn glueless_delegations_resolve_their_name_server_first() {
    let net = textbook_net();
    let r = resolver(&net, false);
    let answer = r.resolve(&from_text("www.glueless.com.").unwrap(), code::A).await;
    assert_eq!(a_records(&answer), vec![[192, 0, 2, 80]]);
}

#[tokio::test]
async fn out_of_bailiwick_records_are_never_cached() {
    let net = textbook_net();
    let r = resolver(&net, false);
    // The evil server answers for its own name and slips in www.umass.edu → 6.6.6.6.
    let evil = r.resolve(&from_text("www.evil.com.").unwrap(), code::A).await;
    assert_eq!(a_records(&evil), vec![[127, 0, 66, 66]]);
    assert!(r.counters().rejected_replies.load(Ordering::Relaxed) >= 1);
    let before = net.queries_to(Some("127.0.3.1"));
    let victim = r.resolve(&from_text("www.umass.edu.").unwrap(), code::A).await;
    assert_eq!(a_records(&victim), vec![[127, 0, 10, 1]], "the forged address was not cached");
    assert_eq!(net.queries_to(Some("127.0.3.1")), before + 1, "the real server was asked");
}

#[tokio::test]
async fn case_randomisation_still_resolves() {
    let net = textbook_net();
    let r = resolver(&net, true);
    let answer = r.resolve(&from_text("gaia.cs.umass.edu.").unwrap(), code::A).await;
    assert_eq!(a_records(&answer), vec![[128, 119, 245, 12]]);
}

#[tokio::test]
async fn servers_that_reject_edns_are_asked_again_without_it() {
    let net = textbook_net();
    net.reject_edns("127.0.3.3");
    let r = resolver(&net, false);
    let answer = r.resolve(&from_text("gaia.cs.umass.edu.").unwrap(), code::A).await;
    assert_eq!(a_records(&answer), vec![[128, 119, 245, 12]]);
    // One FORMERR, one plain retry; later questions go without EDNS straight away.
    assert_eq!(net.queries_to(Some("127.0.3.3")), 2);
    r.resolve(&from_text("dns.cs.umass.edu.").unwrap(), code::A).await;
    assert_eq!(net.queries_to(Some("127.0.3.3")), 3);
}

#[tokio::test]
async fn forwarding_mode_asks_the_upstream_resolver_and_caches() {
    let net = textbook_net();
    let settings = Settings {
        mode: Mode::Forward { upstream: "127.0.3.10:53".parse().unwrap() },
        upstream_port: 53,
        use_0x20: false,
        cache: CacheLimits::default(),
        max_in_flight_per_zone: 64,
        max_queries: DEFAULT_MAX_QUERIES,
        dnssec: false,
    };
    let r = Resolver::new(settings, net.clone());
    let answer = r.resolve(&from_text("www.ibm.com.").unwrap(), code::A).await;
    assert_eq!(a_records(&answer), vec![[129, 42, 38, 10]]);
    assert_eq!(net.queries_to(None), 1, "one recursive query to the forwarder, nothing else");
    r.resolve(&from_text("www.ibm.com.").unwrap(), code::A).await;
    assert_eq!(net.queries_to(None), 1);
    let nx = r.resolve(&from_text("nope.ibm.com.").unwrap(), code::A).await;
    assert_eq!(nx.outcome, Outcome::NxDomain);
}

/// The textbook net plus, delegated from the root, `wt.zz.` on a black hole (127.0.3.99) and
/// `huge.example.` whose records and SOA carry the largest TTL there is.
fn hostile_net() -> FakeNet {
    let net = textbook_net();
    let root = format!(
        "{}wt.zz. NS ns.wt.zz.\nns.wt.zz. A 127.0.3.99\nhuge.example. NS ns.huge.example.\n\
         ns.huge.example. A 127.0.3.98\n",
        support::ROOT
    );
    net.serve("127.0.1.1", &[(".", &root)]);
    net.serve("127.0.1.2", &[(".", &root)]);
    net.serve(
        "127.0.3.98",
        &[(
            "huge.example.",
            "$TTL 2147483647\n@ SOA ns admin 1 3600 600 86400 2147483647\n@ NS ns\nns A 127.0.3.98\n\
             www A 192.0.2.80\n",
        )],
    );
    net.black_hole("127.0.3.99");
    net
}

#[tokio::test(start_paused = true)]
async fn a_flooded_zone_gets_servfail_past_its_in_flight_limit_while_others_resolve() {
    let net = hostile_net();
    let settings = Settings {
        mode: Mode::Iterative { roots: roots() },
        upstream_port: 53,
        use_0x20: false,
        cache: CacheLimits::default(),
        max_in_flight_per_zone: 8,
        max_queries: DEFAULT_MAX_QUERIES,
        dnssec: false,
    };
    let r = std::sync::Arc::new(Resolver::new(settings, net.clone()));
    let start = tokio::time::Instant::now();
    let mut flood = Vec::new();
    for i in 0..100 {
        let r = r.clone();
        flood.push(tokio::spawn(async move {
            let answer = r.resolve(&from_text(&format!("r{i}.wt.zz.")).unwrap(), code::A).await;
            (answer.outcome, start.elapsed())
        }));
    }
    // Meanwhile another zone resolves at once: no upstream wait is shared with the flood.
    let other = r.resolve(&from_text("gaia.cs.umass.edu.").unwrap(), code::A).await;
    assert_eq!(a_records(&other), vec![[128, 119, 245, 12]]);
    assert_eq!(start.elapsed(), std::time::Duration::ZERO);
    let mut instant = 0;
    for task in flood {
        let (outcome, took) = task.await.unwrap();
        assert_eq!(outcome, Outcome::ServFail);
        if took.is_zero() {
            instant += 1;
        }
    }
    assert_eq!(net.peak_concurrency("127.0.3.99"), 8, "never more than the limit at the dead zone");
    assert!(instant >= 92, "past the limit, SERVFAIL without waiting ({instant} of 100)");
    assert!(r.counters().zone_limited.load(Ordering::Relaxed) >= 92);
    // The slots come back: once the flood is over, the zone is asked again.
    let before = net.queries_to(Some("127.0.3.99"));
    r.resolve(&from_text("late.wt.zz.").unwrap(), code::A).await;
    assert!(net.queries_to(Some("127.0.3.99")) > before);
}

#[tokio::test]
async fn huge_upstream_ttls_are_capped_in_answers_fresh_and_cached() {
    let net = hostile_net();
    let r = resolver(&net, false);
    let www = from_text("www.huge.example.").unwrap();
    let fresh = r.resolve(&www, code::A).await;
    assert_eq!(fresh.records.iter().map(|rec| rec.ttl).collect::<Vec<_>>(), vec![86_400]);
    let cached = r.resolve(&www, code::A).await;
    assert!(cached.records[0].ttl <= 86_400);
    let nx = r.resolve(&from_text("nope.huge.example.").unwrap(), code::A).await;
    assert_eq!(nx.outcome, Outcome::NxDomain);
    assert_eq!(nx.authority.iter().map(|rec| rec.ttl).collect::<Vec<_>>(), vec![3_600]);
}
