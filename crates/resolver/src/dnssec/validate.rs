//! The validator, sans-IO: an answer's records in, a verdict out (RFC 4035 §5). It walks the
//! chain of trust from the closest trust anchor down to each RRset's signer, one label at a
//! time (DS at each name: a signed DS leads to the child's DNSKEY, a proven absence at a
//! delegation makes everything below insecure), verifies the RRSIGs, then checks the NSEC/NSEC3
//! proofs a negative or wildcard answer needs.
//!
//! It never sends anything: [`Validation::poll`] either returns the verdict or asks for one
//! more RRset ([`Poll::Need`], a DS or DNSKEY lookup the driver resolves through the resolver
//! and hands back with [`Validation::supply`]). Each poll restarts from the top; work already
//! done is remembered (zone states in the shared [`KeyCache`], RRset verdicts in the
//! validation), so a restart costs lookups, not signature checks.
//!
//! KeyTrap limits (CVE-2023-50387, CVE-2023-50868): signature checks per question (in all, and
//! failed ones), DNSKEYs tried per key tag, RRSIGs tried per RRset, RRsets per answer, NSEC3
//! iterations (above the limit the denial is insecure, RFC 9276).

use super::anchors::TrustAnchors;
use super::denial::{Cut, Denials, Proof};
use super::{Ede, Limits, Security, ede};
use crate::cache::{Answer, Outcome};
use appnet_dns::wire::dnssec::DNSKEY;
use appnet_dns::wire::message::Record;
use appnet_dns::wire::name::{self, NameBuf, is_at_or_below, label_count, parent};
use appnet_dns::wire::verify::{
    self, DS, RRSIG, algorithm_supported, dnskey_fields, ds_fields, ds_matches, in_window, parse_rrsig,
    rrsig_covers,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What is known about the zone a name lies in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneState {
    /// Inside a secure zone: its apex and its verified DNSKEY RRset.
    Secure { zone: NameBuf, keys: Arc<Vec<Vec<u8>>> },
    /// Below a proven unsigned delegation, or under no trust anchor.
    Insecure,
    /// The chain of trust is broken here.
    Bogus(Ede),
}

/// What validations share: the zone state per name (the validation state cached beside the
/// records) and the signature checks that passed. Each is behind its own lock, taken for one
/// lookup or insert only, never across a signature check, so validations run in parallel.
/// Bounded: past `max` entries the expired ones go, then everything.
#[derive(Debug, Default)]
pub struct KeyCache {
    zones: Mutex<HashMap<NameBuf, (ZoneState, Instant)>>,
    /// [`verify::fingerprint`]s of checks that passed: the same RRset with the same RRSIG and
    /// DNSKEY again (the zone's SOA and NSEC records in every negative answer, the DNSKEY RRset
    /// for every question that starts while its zone state is being made) costs a digest, not
    /// a public-key operation. Time windows are checked before this cache is consulted.
    verified: Mutex<HashSet<[u8; 32]>>,
    max: usize,
}

impl KeyCache {
    /// An empty cache of at most `max` names (and `4 * max` passed signature checks).
    pub fn new(max: usize) -> KeyCache {
        KeyCache { zones: Mutex::default(), verified: Mutex::default(), max: max.max(16) }
    }

    fn zones(&self) -> std::sync::MutexGuard<'_, HashMap<NameBuf, (ZoneState, Instant)>> {
        self.zones.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, n: &[u8], now: Instant) -> Option<ZoneState> {
        self.zones().get(n).filter(|(_, exp)| *exp > now).map(|(s, _)| s.clone())
    }

    fn put(&self, n: &[u8], state: ZoneState, ttl: Duration, now: Instant) {
        let mut map = self.zones();
        if map.len() >= self.max {
            map.retain(|_, (_, exp)| *exp > now);
            if map.len() >= self.max {
                map.clear();
            }
        }
        map.insert(n.into(), (state, now + ttl));
    }

    fn passed(&self, fingerprint: &[u8; 32]) -> bool {
        self.verified.lock().unwrap_or_else(|e| e.into_inner()).contains(fingerprint)
    }

    fn remember_pass(&self, fingerprint: [u8; 32]) {
        let mut set = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if set.len() >= 4 * self.max {
            set.clear();
        }
        set.insert(fingerprint);
    }

    /// Forgets everything.
    pub fn clear(&self) {
        self.zones().clear();
        self.verified.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Names with a known state.
    pub fn len(&self) -> usize {
        self.zones().len()
    }

    /// Whether no zone state is cached.
    pub fn is_empty(&self) -> bool {
        self.zones().is_empty()
    }
}

/// What the validation needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    /// Resolve this name and type and [`supply`](Validation::supply) the answer.
    Need(NameBuf, u16),
    /// The verdict.
    Done(Security),
}

/// What a poll consults: anchors, the shared zone states, limits and the clocks.
pub struct Ctx<'a> {
    pub anchors: &'a TrustAnchors,
    pub keys: &'a KeyCache,
    pub limits: &'a Limits,
    /// For cache lifetimes.
    pub now: Instant,
    /// Unix seconds, for signature validity windows.
    pub unix: u32,
}

/// Signature checks done for one question (the KeyTrap budget).
#[derive(Debug, Default, Clone, Copy)]
struct Work {
    verifications: usize,
    failures: usize,
}

/// The validation of one answer.
pub struct Validation {
    qname: NameBuf,
    qtype: u16,
    answer: Answer,
    fetched: HashMap<(NameBuf, u16), Answer>,
    verdicts: HashMap<(NameBuf, u16), (Security, u8)>,
    work: Work,
}

type Pending<T> = Result<T, (NameBuf, u16)>;

/// Groups records into RRsets (lower-cased owner, type), RRSIGs apart.
fn rrsets(records: &[Record]) -> Vec<(NameBuf, u16, Vec<Record>)> {
    let mut sets: Vec<(NameBuf, u16, Vec<Record>)> = Vec::new();
    for r in records.iter().filter(|r| r.rtype != RRSIG) {
        let owner = name::to_lower(&r.owner);
        match sets.iter_mut().find(|(o, t, _)| *o == owner && *t == r.rtype) {
            Some(s) => s.2.push(r.clone()),
            None => sets.push((owner, r.rtype, vec![r.clone()])),
        }
    }
    sets
}

fn sigs_for<'a>(records: &'a [Record], owner: &[u8], rtype: u16) -> Vec<&'a Record> {
    records
        .iter()
        .filter(|r| {
            r.rtype == RRSIG && rrsig_covers(&r.rdata) == rtype && r.owner.eq_ignore_ascii_case(owner)
        })
        .collect()
}

fn min_ttl(records: &[Record]) -> u32 {
    records.iter().map(|r| r.ttl).min().unwrap_or(0)
}

fn combine(a: Security, b: Security) -> Security {
    match (a, b) {
        (Security::Bogus(e), _) | (_, Security::Bogus(e)) => Security::Bogus(e),
        (Security::Insecure, _) | (_, Security::Insecure) => Security::Insecure,
        _ => Security::Secure,
    }
}

impl Validation {
    /// Validation of `answer` to `qname`/`qtype`.
    pub fn new(qname: &[u8], qtype: u16, answer: &Answer) -> Validation {
        Validation {
            qname: name::to_lower(qname),
            qtype,
            answer: answer.clone(),
            fetched: HashMap::new(),
            verdicts: HashMap::new(),
            work: Work::default(),
        }
    }

    /// The answer to a [`Poll::Need`].
    pub fn supply(&mut self, qname: &[u8], qtype: u16, answer: Answer) {
        self.fetched.insert((name::to_lower(qname), qtype), answer);
    }

    /// Signature checks done so far.
    pub fn verifications(&self) -> usize {
        self.work.verifications
    }

    /// The verdict, or the next RRset needed for it.
    pub fn poll(&mut self, ctx: &mut Ctx<'_>) -> Poll {
        match self.run(ctx) {
            Ok(s) => Poll::Done(s),
            Err((n, t)) => Poll::Need(n, t),
        }
    }

    fn fetch(&self, n: &[u8], t: u16) -> Pending<&Answer> {
        self.fetched.get(&(n.into(), t)).ok_or_else(|| (n.into(), t))
    }

    fn run(&mut self, ctx: &mut Ctx<'_>) -> Pending<Security> {
        if self.answer.outcome == Outcome::ServFail {
            return Ok(Security::Insecure);
        }
        let all: Vec<Record> = self.answer.records.iter().chain(&self.answer.authority).cloned().collect();
        let sets = rrsets(&all);
        if sets.len() > ctx.limits.max_rrsets {
            return Ok(Security::Bogus(Ede::new(ede::DNSSEC_BOGUS, "too many RRsets in the answer")));
        }
        let mut verdict = Security::Secure;
        let mut wildcards: Vec<(NameBuf, u8)> = Vec::new();
        for (owner, rtype, set) in &sets {
            let key = (owner.clone(), *rtype);
            let (v, labels) = match self.verdicts.get(&key) {
                Some(v) => v.clone(),
                None => {
                    let sigs = sigs_for(&all, owner, *rtype);
                    let v = self.rrset(ctx, owner, set, &sigs)?;
                    self.verdicts.insert(key, v.clone());
                    v
                }
            };
            // RRSIG labels leave out a leading `*`: fewer than the owner has means an expansion.
            let own_labels = label_count(owner) - usize::from(name::is_wildcard(owner));
            if v == Security::Secure && usize::from(labels) < own_labels {
                wildcards.push((owner.clone(), labels));
            }
            verdict = combine(verdict, v);
        }
        if verdict != Security::Secure {
            return Ok(verdict);
        }
        // Every RRset is secure: the denial records among them are verified.
        let denials = Denials::new(&self.answer.authority, ctx.limits.max_nsec3_iterations);
        let last = self.chain_end();
        let proof = match self.answer.outcome {
            Outcome::Positive => {
                let mut p = Proof::Proven;
                for (owner, labels) in &wildcards {
                    match denials.wildcard_answer(owner, usize::from(*labels)) {
                        Proof::Proven => {}
                        other => p = other,
                    }
                }
                p
            }
            Outcome::NxDomain => denials.nxdomain(&last),
            Outcome::NoData => denials.nodata(&last, self.qtype),
            Outcome::ServFail => Proof::Proven,
        };
        Ok(match proof {
            Proof::Proven => Security::Secure,
            Proof::Insecure => Security::Insecure,
            Proof::Missing if denials.is_empty() => {
                // No denial records: fine only if the zone turns out to be insecure.
                match self.zone_state(ctx, &last)? {
                    (ZoneState::Insecure, _) => Security::Insecure,
                    (ZoneState::Bogus(e), _) => Security::Bogus(e),
                    (ZoneState::Secure { .. }, _) => {
                        Security::Bogus(Ede::new(ede::NSEC_MISSING, "no NSEC/NSEC3 proof in a signed zone"))
                    }
                }
            }
            Proof::Missing => {
                Security::Bogus(Ede::new(ede::NSEC_MISSING, "the NSEC/NSEC3 records prove nothing"))
            }
        })
    }

    /// The name the CNAME chain of the answer ends on.
    fn chain_end(&self) -> NameBuf {
        let mut current = self.qname.clone();
        for _ in 0..=crate::iterate::MAX_CNAME_CHAIN {
            let next = self.answer.records.iter().find(|r| {
                r.rtype == appnet_dns::wire::rrtype::code::CNAME && name::to_lower(&r.owner) == current
            });
            match next.and_then(|r| appnet_dns::wire::rrtype::embedded_name(&r.rdata, 0)) {
                Some(t) => current = name::to_lower(t),
                None => break,
            }
        }
        current
    }

    /// The verdict on one RRset and, when secure, the RRSIG's label count.
    fn rrset(
        &mut self,
        ctx: &mut Ctx<'_>,
        owner: &[u8],
        set: &[Record],
        sigs: &[&Record],
    ) -> Pending<(Security, u8)> {
        let labels = label_count(owner) as u8;
        let Some(signer) = sigs.iter().find_map(|s| parse_rrsig(&s.rdata)).map(|s| s.signer) else {
            return Ok(match self.zone_state(ctx, owner)? {
                (ZoneState::Insecure, _) => (Security::Insecure, labels),
                (ZoneState::Bogus(e), _) => (Security::Bogus(e), labels),
                (ZoneState::Secure { .. }, _) => (
                    Security::Bogus(Ede::new(ede::RRSIGS_MISSING, "an RRset of a signed zone has no RRSIG")),
                    labels,
                ),
            });
        };
        if !is_at_or_below(owner, &signer) {
            return Ok((
                Security::Bogus(Ede::new(ede::DNSSEC_BOGUS, "RRSIG signer is not above the owner")),
                labels,
            ));
        }
        Ok(match self.zone_state(ctx, &signer)? {
            (ZoneState::Insecure, _) => (Security::Insecure, labels),
            (ZoneState::Bogus(e), _) => (Security::Bogus(e), labels),
            (ZoneState::Secure { zone, keys }, _) if zone == signer => {
                match self.verify(ctx, set, sigs, &zone, &keys) {
                    Ok(l) => (Security::Secure, l),
                    Err(e) => (Security::Bogus(e), labels),
                }
            }
            (ZoneState::Secure { .. }, _) => {
                (Security::Bogus(Ede::new(ede::DNSSEC_BOGUS, "RRSIG signer is not a zone apex")), labels)
            }
        })
    }

    /// Checks the RRSIGs of `set` made by `zone` against its `keys` until one verifies, within
    /// the question's budget. Returns the verifying RRSIG's label count.
    fn verify(
        &mut self,
        ctx: &Ctx<'_>,
        set: &[Record],
        sigs: &[&Record],
        zone: &[u8],
        keys: &[Vec<u8>],
    ) -> Result<u8, Ede> {
        let limits = ctx.limits;
        let (mut tried_key, mut time_error, mut supported) = (false, None, false);
        for sig in sigs.iter().take(limits.max_sigs_per_rrset).filter_map(|s| parse_rrsig(&s.rdata)) {
            if sig.signer[..] != *zone || !algorithm_supported(sig.algorithm) {
                continue;
            }
            supported = true;
            if let Err(expired) = in_window(&sig, ctx.unix) {
                time_error = Some(expired);
                continue;
            }
            let candidates = keys
                .iter()
                .filter(|k| {
                    dnskey_fields(k).is_some_and(|(flags, proto, alg, _)| {
                        flags & 0x0100 != 0 && proto == 3 && alg == sig.algorithm
                    }) && appnet_dns::wire::dnssec::key_tag(k) == sig.key_tag
                })
                .take(limits.max_keys_per_tag);
            // The signed data of this RRSIG, built once for all its candidate keys.
            let mut data = None;
            for key in candidates {
                tried_key = true;
                if self.work.verifications >= limits.max_verifications
                    || self.work.failures >= limits.max_failures
                {
                    return Err(Ede::new(ede::DNSSEC_BOGUS, "signature validation budget exhausted"));
                }
                let Ok(data) = data.get_or_insert_with(|| verify::signed_data(&sig, set)) else {
                    self.work.failures += 1;
                    break;
                };
                let fingerprint = verify::fingerprint(&sig, data, key);
                if ctx.keys.passed(&fingerprint) {
                    return Ok(sig.labels);
                }
                self.work.verifications += 1;
                match verify::verify_signed(&sig, data, key) {
                    Ok(()) => {
                        ctx.keys.remember_pass(fingerprint);
                        return Ok(sig.labels);
                    }
                    Err(_) => self.work.failures += 1,
                }
            }
        }
        Err(if tried_key {
            Ede::new(ede::DNSSEC_BOGUS, "the signature does not verify")
        } else if let Some(expired) = time_error {
            if expired {
                Ede::new(ede::SIGNATURE_EXPIRED, "the signature has expired")
            } else {
                Ede::new(ede::SIGNATURE_NOT_YET_VALID, "the signature is not yet valid")
            }
        } else if !supported {
            Ede::new(ede::RRSIGS_MISSING, "no usable RRSIG from the zone")
        } else {
            Ede::new(ede::DNSKEY_MISSING, "no DNSKEY matches the RRSIG")
        })
    }

    /// The state of the zone `target` lies in, walking down from the closest trust anchor.
    /// Returns the state and how long it may be cached.
    fn zone_state(&mut self, ctx: &mut Ctx<'_>, target: &[u8]) -> Pending<(ZoneState, Duration)> {
        let target = name::to_lower(target);
        let bogus_ttl = Duration::from_secs(u64::from(ctx.limits.bogus_ttl));
        if let Some(s) = ctx.keys.get(&target, ctx.now) {
            return Ok((s, bogus_ttl));
        }
        let Some(anchor) = ctx.anchors.closest(&target).cloned() else {
            return Ok((ZoneState::Insecure, Duration::from_secs(3600)));
        };
        let mut names: Vec<NameBuf> = Vec::new();
        let mut cur: &[u8] = &target;
        while cur.len() > anchor.zone.len() {
            names.push(cur.into());
            cur = parent(cur).unwrap_or(name::ROOT);
        }
        names.reverse();
        let (mut state, mut ttl) = match ctx.keys.get(&anchor.zone, ctx.now) {
            Some(s) => (s, bogus_ttl),
            None => {
                let (s, ttl) = self.anchored(ctx, &anchor)?;
                ctx.keys.put(&anchor.zone, s.clone(), ttl, ctx.now);
                (s, ttl)
            }
        };
        for n in names {
            if let Some(s) = ctx.keys.get(&n, ctx.now) {
                state = s;
                continue;
            }
            let (s, t) = match &state {
                ZoneState::Secure { zone, keys } => {
                    let (zone, keys) = (zone.clone(), keys.clone());
                    self.step_down(ctx, &zone, &keys, &n)?
                }
                other => (other.clone(), ttl),
            };
            ttl = t;
            ctx.keys.put(&n, s.clone(), ttl, ctx.now);
            state = s;
        }
        Ok((state, ttl))
    }

    /// The anchored zone's DNSKEY RRset, verified with a key the anchor trusts.
    fn anchored(
        &mut self,
        ctx: &mut Ctx<'_>,
        anchor: &super::anchors::Anchor,
    ) -> Pending<(ZoneState, Duration)> {
        let bogus_ttl = Duration::from_secs(u64::from(ctx.limits.bogus_ttl));
        let answer = self.fetch(&anchor.zone, DNSKEY)?.clone();
        let set: Vec<Record> = answer.records.iter().filter(|r| r.rtype == DNSKEY).cloned().collect();
        if set.is_empty() {
            return Ok((
                ZoneState::Bogus(Ede::new(ede::DNSKEY_MISSING, "no DNSKEY at the trust anchor")),
                bogus_ttl,
            ));
        }
        let trusted: Vec<Vec<u8>> =
            set.iter().filter(|r| anchor.trusts(&r.rdata)).map(|r| r.rdata.clone()).collect();
        if trusted.is_empty() {
            return Ok((
                ZoneState::Bogus(Ede::new(ede::DNSKEY_MISSING, "no DNSKEY matches the trust anchor")),
                bogus_ttl,
            ));
        }
        let sigs = sigs_for(&answer.records, &anchor.zone, DNSKEY);
        Ok(match self.verify(ctx, &set, &sigs, &anchor.zone, &trusted) {
            Ok(_) => {
                let keys = set.iter().map(|r| r.rdata.clone()).collect();
                let ttl = Duration::from_secs(u64::from(min_ttl(&set)));
                (ZoneState::Secure { zone: anchor.zone.clone(), keys: Arc::new(keys) }, ttl)
            }
            Err(e) => (ZoneState::Bogus(e), bogus_ttl),
        })
    }

    /// From the secure zone `zone` one label down to `n`: a signed DS leads to `n`'s DNSKEYs, a
    /// proven absence of DS at a delegation makes `n` insecure, anything else keeps `zone`.
    fn step_down(
        &mut self,
        ctx: &mut Ctx<'_>,
        zone: &[u8],
        keys: &[Vec<u8>],
        n: &[u8],
    ) -> Pending<(ZoneState, Duration)> {
        let bogus = |code, text: &str| {
            (ZoneState::Bogus(Ede::new(code, text)), Duration::from_secs(u64::from(ctx.limits.bogus_ttl)))
        };
        let answer = self.fetch(n, DS)?.clone();
        let same = ZoneState::Secure { zone: zone.into(), keys: Arc::new(keys.to_vec()) };
        match answer.outcome {
            Outcome::ServFail => Ok(bogus(ede::DNSSEC_BOGUS, "the DS lookup failed")),
            Outcome::NoData | Outcome::NxDomain => {
                let ttl = Duration::from_secs(u64::from(min_ttl(&answer.authority)));
                for (owner, rtype, set) in rrsets(&answer.authority) {
                    let sigs = sigs_for(&answer.authority, &owner, rtype);
                    if sigs.is_empty() {
                        return Ok(bogus(ede::RRSIGS_MISSING, "the DS denial is not signed"));
                    }
                    if let Err(e) = self.verify(ctx, &set, &sigs, zone, keys) {
                        return Ok((
                            ZoneState::Bogus(e),
                            Duration::from_secs(u64::from(ctx.limits.bogus_ttl)),
                        ));
                    }
                }
                let denials = Denials::new(&answer.authority, ctx.limits.max_nsec3_iterations);
                if denials.is_empty() {
                    return Ok(bogus(ede::NSEC_MISSING, "no NSEC/NSEC3 record denies the DS"));
                }
                let proof = if answer.outcome == Outcome::NxDomain {
                    denials.nxdomain(n)
                } else {
                    denials.nodata(n, DS)
                };
                Ok(match proof {
                    Proof::Missing => bogus(ede::NSEC_MISSING, "the DS denial proves nothing"),
                    Proof::Insecure => (ZoneState::Insecure, ttl),
                    Proof::Proven => match denials.ds_denial(n) {
                        Cut::Unsigned => (ZoneState::Insecure, ttl),
                        Cut::NotACut => (same, ttl),
                    },
                })
            }
            Outcome::Positive => {
                let ds: Vec<Record> = answer
                    .records
                    .iter()
                    .filter(|r| r.rtype == DS && r.owner.eq_ignore_ascii_case(n))
                    .cloned()
                    .collect();
                if ds.is_empty() {
                    return Ok(bogus(ede::DNSSEC_BOGUS, "the DS answer holds no DS"));
                }
                let sigs = sigs_for(&answer.records, n, DS);
                if let Err(e) = self.verify(ctx, &ds, &sigs, zone, keys) {
                    return Ok((ZoneState::Bogus(e), Duration::from_secs(u64::from(ctx.limits.bogus_ttl))));
                }
                let usable: Vec<&Record> = ds
                    .iter()
                    .filter(|r| {
                        ds_fields(&r.rdata)
                            .is_some_and(|(_, alg, dt)| algorithm_supported(alg) && matches!(dt, 1 | 2 | 4))
                    })
                    .collect();
                if usable.is_empty() {
                    // RFC 4035 §5.2: no DS we can use means the child is treated as unsigned.
                    return Ok((ZoneState::Insecure, Duration::from_secs(u64::from(min_ttl(&ds)))));
                }
                let dnskeys = self.fetch(n, DNSKEY)?.clone();
                let set: Vec<Record> = dnskeys
                    .records
                    .iter()
                    .filter(|r| r.rtype == DNSKEY && r.owner.eq_ignore_ascii_case(n))
                    .cloned()
                    .collect();
                let trusted: Vec<Vec<u8>> = set
                    .iter()
                    .filter(|k| usable.iter().any(|d| ds_matches(n, &k.rdata, &d.rdata) == Some(true)))
                    .map(|k| k.rdata.clone())
                    .collect();
                if trusted.is_empty() {
                    return Ok(bogus(ede::DNSKEY_MISSING, "no DNSKEY matches the DS"));
                }
                let sigs = sigs_for(&dnskeys.records, n, DNSKEY);
                let zone_n = name::to_lower(n);
                Ok(match self.verify(ctx, &set, &sigs, &zone_n, &trusted) {
                    Ok(_) => {
                        let ttl = Duration::from_secs(u64::from(min_ttl(&set).min(min_ttl(&ds))));
                        let keys = set.iter().map(|r| r.rdata.clone()).collect();
                        (ZoneState::Secure { zone: zone_n, keys: Arc::new(keys) }, ttl)
                    }
                    Err(e) => (ZoneState::Bogus(e), Duration::from_secs(u64::from(ctx.limits.bogus_ttl))),
                })
            }
        }
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
