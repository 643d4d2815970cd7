//! Request bytes → what to do, sans-IO: parse, look up, and write the response into a reused
//! buffer. Zone transfers and NOTIFYs are returned to the driver, which owns connections and
//! the secondary state.

use crate::acl::TransferAcl;
use crate::answer::{AnyPolicy, Kind, Plan, Scratch, lookup_with};
use crate::delta::Delta;
use crate::serial::Serial;
use crate::served::ServedZones;
use crate::wire::message::{Record, xfr_messages};
use crate::wire::name::{MAX_NAME, NameBuf, lower_into, to_lower};
use crate::wire::query::{self, BadQuery, Header, Query, opcode};
use crate::wire::response::{self, OptOut, Question, Reply, rcode};
use crate::wire::rrtype::{CLASS_ANY, CLASS_IN, code, pack_rdata};
use crate::wire::tsig::{self, Keyring, Signer, TsigError, Verified};
use crate::zone::Zone;
use std::net::IpAddr;
use std::sync::Arc;

/// How the request arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// The allow-lists every service shares; re-exported here for existing callers.
pub use appnet_netkit::acl::{AccessList, canonical};

/// Answering policy shared by all requests of one server.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Our EDNS UDP payload size (advertised, and the cap on UDP replies).
    pub max_udp_payload: u16,
    /// Who may transfer zones (AXFR/IXFR), by address and TSIG key.
    pub allow_transfer: TransferAcl,
    /// TSIG keys we verify requests with.
    pub keys: Keyring,
    /// RFC 2136 updates: (zone apex, TSIG key name) pairs; an update must be signed with its
    /// zone's key, anything else is REFUSED.
    pub allow_update: Vec<(NameBuf, String)>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_udp_payload: 1232,
            allow_transfer: TransferAcl::default(),
            keys: Keyring::default(),
            allow_update: Vec::new(),
        }
    }
}

/// A zone transfer to stream: the messages are built by [`Transfer::messages`].
#[derive(Debug, Clone)]
pub struct Transfer {
    pub zone: Arc<Zone>,
    pub header: Header,
    pub qname: NameBuf,
    pub qtype: u16,
    /// For an IXFR answered incrementally: the (condensed) change from the client's serial.
    pub delta: Option<Delta>,
    /// Sign every message with this (RFC 8945 §5.3.1), with time `now`.
    pub tsig: Option<(Signer, u64)>,
}

impl Transfer {
    /// The transfer's messages (each at most `limit` bytes; use 16 KiB or so for TCP).
    pub fn messages(&self, limit: usize) -> Vec<Vec<u8>> {
        let room = self.tsig.as_ref().map(|(s, _)| tsig::record_size(s.key())).unwrap_or(0);
        let limit = limit.saturating_sub(room);
        let mut msgs = match &self.delta {
            // RFC 1995 §4: new SOA, old SOA, deletions, new SOA, additions, new SOA (the
            // closing copy is added by xfr_messages, which repeats the first SOA).
            Some(d) => {
                let seq = std::iter::once(&d.new_soa)
                    .chain(std::iter::once(&d.old_soa))
                    .chain(&d.deleted)
                    .chain(std::iter::once(&d.new_soa))
                    .chain(&d.added);
                let packed: Vec<(&Record, Vec<u8>)> = seq
                    .map(|r| {
                        let mut blob = Vec::with_capacity(r.rdata.len() + 2);
                        pack_rdata(&mut blob, &r.rdata);
                        (r, blob)
                    })
                    .collect();
                let rrs = packed.iter().map(|(r, blob)| response::RrRef {
                    owner: &r.owner,
                    rtype: r.rtype,
                    ttl: r.ttl,
                    rdata: blob,
                });
                xfr_messages(self.header, &self.qname, self.qtype, rrs, limit)
            }
            None => {
                let rrsets = self.zone.rrsets().map(|(owner, set)| set.at(owner));
                xfr_messages(self.header, &self.qname, self.qtype, rrsets, limit)
            }
        };
        if let Some((signer, now)) = &self.tsig {
            let mut signer = signer.clone();
            for m in &mut msgs {
                signer.sign(m, *now);
            }
        }
        msgs
    }
}

/// What the driver should do with a request.
#[derive(Debug)]
pub enum Outcome {
    /// Send these bytes back; `kind` and `key` feed statistics and rate limiting.
    Reply { bytes: Vec<u8>, kind: Kind, key: u64 },
    /// Send nothing (not a request, or too broken to answer).
    Ignore,
    /// Stream a zone transfer (TCP only).
    Transfer(Transfer),
    /// A NOTIFY for `apex` (lower-cased); the driver decides and answers with [`notify_reply`].
    /// `tsig`: the key it was signed with (verified).
    Notify { apex: NameBuf, serial: Option<u32>, header: Header, qname: NameBuf, tsig: Option<Verified> },
    /// An accepted RFC 2136 update of `apex` computed against serial `base`: the driver swaps in
    /// `records` (re-signing, journal, NOTIFY) and sends `ok`, or `fail` (SERVFAIL) if it
    /// cannot (the zone moved on meanwhile, or signing failed). Both replies are signed.
    Update {
        apex: NameBuf,
        base: u32,
        records: Vec<crate::wire::zonefile::ZoneRecord>,
        ok: Vec<u8>,
        fail: Vec<u8>,
    },
}

/// Handles one request. `out` is reused for the reply (cleared first).
pub fn handle(
    catalog: &ServedZones,
    policy: &Policy,
    packet: &[u8],
    transport: Transport,
    peer: IpAddr,
    out: Vec<u8>,
) -> Outcome {
    handle_at(catalog, policy, packet, transport, peer, crate::clock::unix_now, out)
}

/// [`handle`] with the clock injected: `now` (seconds since the epoch) is asked only for signed
/// requests, to check and make TSIG signatures.
pub fn handle_at(
    catalog: &ServedZones,
    policy: &Policy,
    packet: &[u8],
    transport: Transport,
    peer: IpAddr,
    now: impl FnOnce() -> u64,
    out: Vec<u8>,
) -> Outcome {
    let q = match query::parse(packet) {
        Ok(q) => q,
        Err(BadQuery::Ignore) => return Outcome::Ignore,
        Err(BadQuery::FormErr(h)) => return error(h, None, None, rcode::FORMERR, out),
        Err(BadQuery::NotImp(h)) => return error(h, None, None, rcode::NOTIMP, out),
    };
    let question = Question { qname: q.qname, qtype: q.qtype, qclass: q.qclass };
    let opt = q.edns.map(|_| OptOut { payload: policy.max_udp_payload });
    // RFC 6891 §6.1.3: an EDNS version we do not speak gets BADVERS and nothing else.
    let badvers = q.edns.is_some_and(|e| e.version != 0);
    let cx = Ctx { catalog, policy, q: &q, question, opt, transport, peer, signed: None, packet, now: 0 };
    if q.signed {
        // The TSIG is checked first: a failed one is answered with its own error; a good one
        // signs whatever we answer, BADVERS included (RFC 8945 §5.3).
        let now = now();
        return match tsig::verify_request(&policy.keys, packet, now) {
            Ok(Some(v)) => {
                let outcome = if badvers {
                    error(q.header(), Some(question), opt, rcode::BADVERS, out)
                } else {
                    answer(&Ctx { signed: Some(&v), now, ..cx }, out)
                };
                sign_outcome(outcome, v, now)
            }
            Ok(None) => error(q.header(), Some(question), opt, rcode::FORMERR, out),
            Err(rejected) => tsig_error(q.header(), question, packet, rejected, now, out),
        };
    }
    if badvers {
        return error(q.header(), Some(question), opt, rcode::BADVERS, out);
    }
    answer(&cx, out)
}

/// One parsed request and everything answering it depends on.
#[derive(Clone, Copy)]
struct Ctx<'a, 'q> {
    catalog: &'a ServedZones,
    policy: &'a Policy,
    q: &'a Query<'q>,
    question: Question<'q>,
    opt: Option<OptOut>,
    transport: Transport,
    peer: IpAddr,
    signed: Option<&'a Verified>,
    /// The whole request (UPDATE reads its sections).
    packet: &'a [u8],
    /// The clock, for signed requests (0 otherwise).
    now: u64,
}

fn answer(cx: &Ctx<'_, '_>, out: Vec<u8>) -> Outcome {
    let Ctx { catalog, policy, q, question, opt, transport, signed, .. } = *cx;
    if q.qclass != CLASS_IN && q.qclass != CLASS_ANY {
        return error(q.header(), Some(question), opt, rcode::REFUSED, out);
    }
    if q.opcode == opcode::UPDATE {
        return update(cx, out);
    }
    if q.opcode == opcode::NOTIFY {
        return Outcome::Notify {
            apex: to_lower(q.qname),
            serial: q.serial,
            header: q.header(),
            qname: q.qname.into(),
            tsig: signed.cloned(),
        };
    }
    match q.qtype {
        code::AXFR | code::IXFR => {
            return transfer(cx, out);
        }
        // MAILA/MAILB are obsolete; answer as NOTIMP like other servers.
        253 | 254 => return error(q.header(), Some(question), opt, rcode::NOTIMP, out),
        _ => {}
    }
    let any = match transport {
        Transport::Udp => AnyPolicy::Minimal,
        Transport::Tcp => AnyPolicy::All,
    };
    let mut scratch = Scratch::new();
    let mut plan = lookup_with(catalog, q.qname, q.qtype, any, &mut scratch);
    if q.edns.is_some_and(|e| e.dnssec_ok) {
        crate::proofs::add(catalog, &mut plan, q.qname);
    }
    let limit = match transport {
        Transport::Udp => response::udp_limit(q.edns, policy.max_udp_payload),
        Transport::Tcp => 65535,
    };
    let room = signed.map(|v| tsig::record_size(&v.key)).unwrap_or(0);
    write_plan(q, question, opt, &plan, limit.saturating_sub(room), out)
}

/// Signs whatever goes back to a verified request (a transfer signs each of its messages).
fn sign_outcome(outcome: Outcome, v: Verified, now: u64) -> Outcome {
    match outcome {
        Outcome::Reply { mut bytes, kind, key } => {
            Signer::new(v.key, v.mac).sign(&mut bytes, now);
            Outcome::Reply { bytes, kind, key }
        }
        Outcome::Transfer(mut t) => {
            t.tsig = Some((Signer::new(v.key, v.mac), now));
            Outcome::Transfer(t)
        }
        other => other,
    }
}

/// The answer to a request whose TSIG failed (RFC 8945 §5.2): NOTAUTH with the TSIG error;
/// unsigned for BADKEY/BADSIG, signed for BADTIME (with our time); FORMERR for a broken record.
fn tsig_error(
    header: Header,
    question: Question<'_>,
    packet: &[u8],
    rejected: tsig::Rejected,
    now: u64,
    out: Vec<u8>,
) -> Outcome {
    tracing::info!(error = %rejected.error, "TSIG check failed");
    if rejected.error == TsigError::FormErr {
        return error(header, Some(question), None, rcode::FORMERR, out);
    }
    let mut bytes = match error(header, Some(question), None, rcode::NOTAUTH, out) {
        Outcome::Reply { bytes, .. } => bytes,
        other => return other,
    };
    match (rejected.signer, tsig::find(packet)) {
        (Some(v), _) => {
            let other = &now.to_be_bytes()[2..];
            Signer::new(v.key, v.mac).sign_error(&mut bytes, now, rejected.error.code(), other);
        }
        (None, Ok(Some(rec))) => tsig::append_unsigned_error(&mut bytes, &rec, now, rejected.error.code()),
        (None, _) => {}
    }
    Outcome::Reply { bytes, kind: Kind::Error, key: 0 }
}

fn write_plan(
    q: &Query<'_>,
    question: Question<'_>,
    opt: Option<OptOut>,
    plan: &Plan<'_>,
    limit: usize,
    out: Vec<u8>,
) -> Outcome {
    let reply = Reply {
        rcode: plan.rcode,
        aa: plan.aa,
        answer: plan.answer.as_slice(),
        authority: plan.authority.as_slice(),
        additional: plan.additional.as_slice(),
        required_additional: plan.required_additional,
    };
    let key = rrl_key(plan.kind, plan.synthesized_from.unwrap_or(q.qname), plan.zone);
    let mut bytes = response::write(q.header(), Some(question), opt, &reply, limit, out);
    if q.edns.is_some_and(|e| e.dnssec_ok) {
        response::set_do_bit(&mut bytes);
    }
    Outcome::Reply { bytes, kind: plan.kind, key }
}

/// Rate-limit key (RRL's "response class"): for answers the name they were found at (the
/// qname, or the wildcard/DNAME owner that synthesised them), the zone for NXDOMAIN, NODATA
/// and referrals, so random-subdomain floods share one bucket (as in BIND and Knot).
fn rrl_key(kind: Kind, name: &[u8], zone: Option<&[u8]>) -> u64 {
    use std::hash::Hasher;
    let mut h = crate::zone::Fnv::default();
    h.write(&[kind as u8]);
    let mut buf = [0u8; MAX_NAME];
    match kind {
        Kind::Answer => h.write(lower_into(name, &mut buf)),
        _ => h.write(zone.unwrap_or(&[])),
    }
    h.finish()
}

fn transfer(cx: &Ctx<'_, '_>, out: Vec<u8>) -> Outcome {
    let Ctx { catalog, policy, q, question, opt, transport, peer, signed, .. } = *cx;
    let mut buf = [0u8; MAX_NAME];
    let low = lower_into(q.qname, &mut buf);
    let Some(zone) = catalog.zone(low) else {
        return error(q.header(), Some(question), opt, rcode::NOTAUTH, out);
    };
    let key = signed.map(|v| &v.key.name[..]);
    if !policy.allow_transfer.allows(peer, key) {
        tracing::info!(%peer, zone = %zone.name(), signed = key.is_some(), "zone transfer refused (not in allow-transfer)");
        return error(q.header(), Some(question), opt, rcode::REFUSED, out);
    }
    let up_to_date = q.serial.is_some_and(|s| !Serial(s).is_older_than(Serial(zone.soa().serial)));
    // IXFR from a serial the journal knows: only the difference, unless it is as big as the
    // zone itself (like BIND's max-ixfr-ratio); otherwise the whole zone.
    let delta = match (q.qtype, q.serial) {
        (code::IXFR, Some(s)) if !up_to_date => {
            zone.journal().since(s).filter(|d| d.deleted.len() + d.added.len() < zone.record_count())
        }
        _ => None,
    };
    // RFC 1995 §2: over UDP the incremental answer goes out when it fits one message.
    if q.qtype == code::IXFR
        && transport == Transport::Udp
        && let Some(d) = &delta
        && let Some(bytes) = udp_incremental(cx, zone, d.clone())
    {
        return Outcome::Reply { bytes, kind: Kind::Answer, key: 0 };
    }
    if q.qtype == code::IXFR && (transport == Transport::Udp || up_to_date) {
        // RFC 1995 §4: the SOA alone says "up to date" (or, over UDP, "ask again over TCP").
        let soa = zone.soa_rrset();
        let rr = soa.map(|s| s.at(zone.apex()));
        let answer: Vec<_> = rr.into_iter().collect();
        let reply = Reply { aa: true, answer: &answer, ..Default::default() };
        let bytes = response::write(q.header(), Some(question), opt, &reply, 65535, out);
        return Outcome::Reply { bytes, kind: Kind::Answer, key: 0 };
    }
    if transport == Transport::Udp {
        return error(q.header(), Some(question), opt, rcode::FORMERR, out);
    }
    tracing::info!(
        %peer,
        zone = %zone.name(),
        serial = zone.soa().serial,
        kind = if delta.is_some() { "incremental" } else { "full" },
        tsig = ?signed.map(|v| v.key.name_text()),
        "zone transfer"
    );
    Outcome::Transfer(Transfer {
        zone: zone.clone(),
        header: q.header(),
        qname: q.qname.into(),
        qtype: q.qtype,
        delta,
        tsig: None,
    })
}

/// The incremental IXFR answer as one UDP message, or `None` when it does not fit: within the
/// client's UDP size, leaving room for the TSIG record [`sign_outcome`] adds to a signed
/// request and for the OPT record (added here when the request had EDNS, RFC 6891 §7).
fn udp_incremental(cx: &Ctx<'_, '_>, zone: &Arc<Zone>, delta: Delta) -> Option<Vec<u8>> {
    let Ctx { policy, q, opt, peer, signed, .. } = *cx;
    let room =
        signed.map(|v| tsig::record_size(&v.key)).unwrap_or(0) + opt.map(|_| response::OPT_LEN).unwrap_or(0);
    let limit = response::udp_limit(q.edns, policy.max_udp_payload).saturating_sub(room);
    // New SOA, old SOA, deletions, new SOA, additions, new SOA: one record each.
    let records = delta.deleted.len() + delta.added.len() + 4;
    // Every record takes at least 12 bytes (a compressed owner and the fixed fields): a delta
    // that cannot fit is not built at all.
    if records.saturating_mul(12) > limit {
        return None;
    }
    let transfer = Transfer {
        zone: zone.clone(),
        header: q.header(),
        qname: q.qname.into(),
        qtype: q.qtype,
        delta: Some(delta),
        tsig: None,
    };
    let mut msgs = transfer.messages(limit);
    // A record too big for any message is left out by xfr_messages: then it is not complete.
    let complete = |m: &Vec<u8>| m.len() >= 12 && usize::from(u16::from_be_bytes([m[6], m[7]])) == records;
    if msgs.len() != 1 || !complete(&msgs[0]) {
        return None;
    }
    let mut bytes = msgs.pop()?;
    if let Some(o) = opt {
        response::append_opt(&mut bytes, o);
    }
    tracing::info!(
        %peer,
        zone = %zone.name(),
        serial = zone.soa().serial,
        kind = "incremental over UDP",
        tsig = ?signed.map(|v| v.key.name_text()),
        "zone transfer"
    );
    Some(bytes)
}

/// RFC 2136: only TSIG-signed updates with the zone's key; the prerequisites and changes are
/// checked here, the swap is the driver's.
fn update(cx: &Ctx<'_, '_>, out: Vec<u8>) -> Outcome {
    let Ctx { catalog, policy, q, question, opt, signed, packet, now, .. } = *cx;
    let apex = to_lower(q.qname);
    let Some(v) = signed else { return error(q.header(), Some(question), opt, rcode::REFUSED, out) };
    let allowed = policy
        .allow_update
        .iter()
        .any(|(z, k)| *z == apex && v.key.name_text().trim_end_matches('.') == k.trim_end_matches('.'));
    if !allowed {
        return error(q.header(), Some(question), opt, rcode::REFUSED, out);
    }
    let Some(zone) = catalog.zone(&apex) else {
        return error(q.header(), Some(question), opt, crate::update::NOTAUTH, out);
    };
    let result = crate::update::parse(packet).and_then(|req| crate::update::apply(zone, &req));
    match result {
        Ok(Some(records)) => {
            let sign = |code: u16| {
                let mut bytes = match error(q.header(), Some(question), opt, code, Vec::new()) {
                    Outcome::Reply { bytes, .. } => bytes,
                    _ => Vec::new(),
                };
                Signer::new(v.key.clone(), v.mac.clone()).sign(&mut bytes, now);
                bytes
            };
            let (ok, fail) = (sign(rcode::NOERROR), sign(rcode::SERVFAIL));
            Outcome::Update { apex, base: zone.soa().serial, records, ok, fail }
        }
        Ok(None) => error(q.header(), Some(question), opt, rcode::NOERROR, out),
        Err(code) => error(q.header(), Some(question), opt, code, out),
    }
}

fn error(
    header: Header,
    question: Option<Question<'_>>,
    opt: Option<OptOut>,
    code: u16,
    out: Vec<u8>,
) -> Outcome {
    let reply = Reply { rcode: code, ..Default::default() };
    let bytes = response::write(header, question, opt, &reply, 65535, out);
    let kind = if code == rcode::REFUSED { Kind::Refused } else { Kind::Error };
    Outcome::Reply { bytes, kind, key: 0 }
}

/// The answer to a NOTIFY: NOERROR with AA when accepted, else the given rcode (NOTAUTH/REFUSED);
/// signed when the NOTIFY was (`tsig`, at `now`).
pub fn notify_reply(
    header: Header,
    qname: &[u8],
    accepted: Option<u16>,
    tsig: Option<Verified>,
    now: u64,
) -> Vec<u8> {
    let question = Question { qname, qtype: code::SOA, qclass: CLASS_IN };
    let reply = match accepted {
        None => Reply { aa: true, ..Default::default() },
        Some(code) => Reply { rcode: code, ..Default::default() },
    };
    let mut bytes = response::write(header, Some(question), None, &reply, 512, Vec::new());
    if let Some(v) = tsig {
        Signer::new(v.key, v.mac).sign(&mut bytes, now);
    }
    bytes
}
