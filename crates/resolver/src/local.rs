//! Junk queries answered locally, never sent upstream (the "root traffic" most resolvers leak):
//! special-use names (RFC 6761, 6762, 7686, 8375), private and special reverse zones (RFC 1918,
//! RFC 6303, AS112), A-for-A queries (a name that is an IPv4 literal) and names carrying
//! non-printable bytes. The built-in set matches Unbound's default local zones; extra zones
//! (`local`, `lan`, `home`, `corp`, ...) are configurable.

use crate::cache::{Answer, Outcome};
use appnet_dns::wire::message::Record;
use appnet_dns::wire::name::{self, NameBuf, from_text, is_at_or_below};
use appnet_dns::wire::rrtype::code;

/// Zones answered NXDOMAIN locally (Unbound's defaults, minus `localhost` handled apart).
const STATIC_ZONES: &[&str] = &[
    "invalid.",
    "test.",
    "onion.",
    "home.arpa.",
    "local.",
    // RFC 1918 reverse zones.
    "10.in-addr.arpa.",
    "16.172.in-addr.arpa.",
    "17.172.in-addr.arpa.",
    "18.172.in-addr.arpa.",
    "19.172.in-addr.arpa.",
    "20.172.in-addr.arpa.",
    "21.172.in-addr.arpa.",
    "22.172.in-addr.arpa.",
    "23.172.in-addr.arpa.",
    "24.172.in-addr.arpa.",
    "25.172.in-addr.arpa.",
    "26.172.in-addr.arpa.",
    "27.172.in-addr.arpa.",
    "28.172.in-addr.arpa.",
    "29.172.in-addr.arpa.",
    "30.172.in-addr.arpa.",
    "31.172.in-addr.arpa.",
    "168.192.in-addr.arpa.",
    // RFC 6303: this network, link local, documentation, broadcast; shared address space.
    "0.in-addr.arpa.",
    "254.169.in-addr.arpa.",
    "2.0.192.in-addr.arpa.",
    "100.51.198.in-addr.arpa.",
    "113.0.203.in-addr.arpa.",
    "255.255.255.255.in-addr.arpa.",
    "64.100.in-addr.arpa.",
    // IPv6: unspecified, ULA, link local, site local (deprecated), documentation.
    "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.",
    "d.f.ip6.arpa.",
    "8.e.f.ip6.arpa.",
    "9.e.f.ip6.arpa.",
    "a.e.f.ip6.arpa.",
    "b.e.f.ip6.arpa.",
    "8.b.d.0.1.0.0.2.ip6.arpa.",
];

/// The extra local zones enabled by default: common private TLDs that leak to the root.
pub const DEFAULT_EXTRA_ZONES: &[&str] =
    &["localdomain", "lan", "home", "corp", "internal", "intranet", "private"];

/// Why a query was answered locally (for statistics and the tour).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Junk {
    /// `localhost` and its reverse zones.
    Localhost,
    /// A special-use or private zone.
    LocalZone,
    /// A name that is an IPv4 address literal ("A-for-A").
    AForA,
    /// A name with non-printable bytes.
    Unprintable,
}

/// The local-zone policy: the built-in zones plus configured extras. Names are prepared once,
/// so checking a query allocates nothing unless it is answered locally.
#[derive(Debug, Clone)]
pub struct LocalZones {
    zones: Vec<NameBuf>,
    localhost: NameBuf,
    reverse_v4: NameBuf,
    reverse_v6: NameBuf,
}

impl LocalZones {
    /// Built-in zones plus `extra` (names such as "corp" or "corp.").
    pub fn new(extra: &[String]) -> Result<LocalZones, String> {
        let mut zones = Vec::new();
        for z in STATIC_ZONES.iter().copied().map(str::to_string).chain(extra.iter().cloned()) {
            zones.push(name::to_lower(&from_text(&z)?));
        }
        let name = |t: &str| from_text(t).expect("static name");
        Ok(LocalZones {
            zones,
            localhost: name("localhost."),
            reverse_v4: name("127.in-addr.arpa."),
            reverse_v6: name("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa."),
        })
    }

    /// The local answer for `qname`/`qtype`, or `None` when the query should be resolved.
    pub fn answer(&self, qname: &[u8], qtype: u16) -> Option<(Junk, Answer)> {
        let mut buf = [0u8; name::MAX_NAME];
        let low = name::lower_into(qname, &mut buf);
        if has_unprintable(low) {
            return Some((Junk::Unprintable, nxdomain(name::ROOT)));
        }
        if is_ipv4_literal(low) {
            return Some((Junk::AForA, nxdomain(name::ROOT)));
        }
        if is_at_or_below(low, &self.localhost) {
            return Some((Junk::Localhost, localhost_answer(qname, qtype, &self.localhost)));
        }
        for zone in [&self.reverse_v4, &self.reverse_v6] {
            if is_at_or_below(low, zone) {
                return Some((Junk::Localhost, reverse_localhost(qname, qtype, low, zone)));
            }
        }
        let zone = self.zones.iter().find(|z| is_at_or_below(low, z))?;
        Some((Junk::LocalZone, nxdomain(zone)))
    }
}

fn has_unprintable(name: &[u8]) -> bool {
    let mut pos = 0;
    while let Some(&len) = name.get(pos) {
        if len == 0 {
            break;
        }
        let label = name.get(pos + 1..pos + 1 + len as usize).unwrap_or(&[]);
        if label.iter().any(|&b| !(0x21..0x7f).contains(&b)) {
            return true;
        }
        pos += 1 + len as usize;
    }
    false
}

/// Four labels of one to three digits, each at most 255: "192.168.1.1." as a name.
fn is_ipv4_literal(name: &[u8]) -> bool {
    let mut pos = 0;
    for _ in 0..4 {
        let len = name.get(pos).copied().unwrap_or(0) as usize;
        let Some(label) = name.get(pos + 1..pos + 1 + len) else { return false };
        if !(1..=3).contains(&len) || !label.iter().all(u8::is_ascii_digit) {
            return false;
        }
        if label.iter().fold(0u32, |n, d| n * 10 + (d - b'0') as u32) > 255 {
            return false;
        }
        pos += 1 + len;
    }
    name.get(pos) == Some(&0) && pos + 1 == name.len()
}

/// The SOA a local zone answers with (as Unbound's: a day-long negative TTL would be too long
/// for a teaching lab; 3 hours like Unbound).
fn local_soa(zone: &[u8]) -> Record {
    let mut rdata = Vec::new();
    rdata.extend_from_slice(if zone == name::ROOT { b"\x09localhost\x00" } else { zone });
    rdata.extend_from_slice(&from_text("nobody.invalid.").expect("static name"));
    for v in [1u32, 3600, 1200, 604_800, 10_800] {
        rdata.extend_from_slice(&v.to_be_bytes());
    }
    Record { owner: zone.into(), rtype: code::SOA, class: 1, ttl: 10_800, rdata }
}

fn nxdomain(zone: &[u8]) -> Answer {
    Answer { outcome: Outcome::NxDomain, records: vec![], authority: vec![local_soa(zone)] }
}

fn nodata(zone: &[u8]) -> Answer {
    Answer { outcome: Outcome::NoData, records: vec![], authority: vec![local_soa(zone)] }
}

fn localhost_answer(qname: &[u8], qtype: u16, zone: &[u8]) -> Answer {
    let rdata = match qtype {
        code::A => vec![127, 0, 0, 1],
        code::AAAA => std::net::Ipv6Addr::LOCALHOST.octets().to_vec(),
        _ => return nodata(zone),
    };
    let record = Record { owner: qname.into(), rtype: qtype, class: 1, ttl: 10_800, rdata };
    Answer { outcome: Outcome::Positive, records: vec![record], authority: vec![] }
}

fn reverse_localhost(qname: &[u8], qtype: u16, low: &[u8], zone: &[u8]) -> Answer {
    // 1.0.0.127.in-addr.arpa and the ::1 name (the whole ip6 zone) are "localhost.".
    let loopback_v4 = from_text("1.0.0.127.in-addr.arpa.").expect("static name");
    let is_v6_zone = zone.len() > 60;
    let is_loopback = low == &loopback_v4[..] || (is_v6_zone && low == zone);
    if !is_loopback {
        return if low == zone { nodata(zone) } else { nxdomain(zone) };
    }
    if qtype != code::PTR {
        return nodata(zone);
    }
    let rdata = from_text("localhost.").expect("static name").to_vec();
    let record = Record { owner: qname.into(), rtype: code::PTR, class: 1, ttl: 10_800, rdata };
    Answer { outcome: Outcome::Positive, records: vec![record], authority: vec![] }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones() -> LocalZones {
        LocalZones::new(&DEFAULT_EXTRA_ZONES.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn ask(name: &str, qtype: u16) -> Option<(Junk, Outcome)> {
        zones().answer(&from_text(name).unwrap(), qtype).map(|(j, a)| (j, a.outcome))
    }

    #[test]
    fn special_use_and_private_names_are_nxdomain() {
        for n in [
            "foo.invalid.",
            "x.test.",
            "abc.onion.",
            "printer.home.arpa.",
            "mac.local.",
            "db.corp.",
            "nas.lan.",
        ] {
            assert_eq!(ask(n, code::A), Some((Junk::LocalZone, Outcome::NxDomain)), "{n}");
        }
        for n in ["5.1.168.192.in-addr.arpa.", "1.0.0.10.in-addr.arpa.", "4.3.20.172.in-addr.arpa."] {
            assert_eq!(ask(n, code::PTR), Some((Junk::LocalZone, Outcome::NxDomain)), "{n}");
        }
    }

    #[test]
    fn public_names_are_resolved() {
        for n in
            ["gaia.cs.umass.edu.", "www.example.com.", "4.3.32.172.in-addr.arpa.", "1.1.1.1.in-addr.arpa."]
        {
            assert_eq!(ask(n, code::A), None, "{n}");
        }
    }

    #[test]
    fn localhost_answers_loopback() {
        let (j, a) = zones().answer(&from_text("localhost.").unwrap(), code::A).unwrap();
        assert_eq!(j, Junk::Localhost);
        assert_eq!(a.records[0].rdata, vec![127, 0, 0, 1]);
        let (_, a) = zones().answer(&from_text("1.0.0.127.in-addr.arpa.").unwrap(), code::PTR).unwrap();
        assert_eq!(a.records[0].rdata, from_text("localhost.").unwrap().to_vec());
        assert_eq!(ask("localhost.", code::MX), Some((Junk::Localhost, Outcome::NoData)));
    }

    #[test]
    fn a_for_a_and_unprintable_names_are_caught() {
        assert_eq!(ask("192.168.1.1.", code::A), Some((Junk::AForA, Outcome::NxDomain)));
        let weird: NameBuf = vec![3, b'a', 0x07, b'b', 3, b'c', b'o', b'm', 0].into();
        assert_eq!(zones().answer(&weird, code::A).map(|(j, _)| j), Some(Junk::Unprintable));
    }
}
