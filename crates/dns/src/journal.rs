//! The IXFR journal (RFC 1995): what changed between successive versions of a zone, kept in
//! memory (bounded) so a secondary that is a few serials behind gets only the difference.
//!
//! The steps themselves ([`Delta`], [`Journal`]) live in [`crate::delta`], below the zone that
//! carries them; this module builds and applies them between zone versions: [`diff`],
//! [`apply`], [`successor`].

/// Re-exported for the fuzz targets that name the journal here.
pub use crate::delta::Journal;
use crate::delta::{Delta, condense};
use crate::serial::Serial;
use crate::wire::message::Record;
use crate::wire::name::{self, NameBuf};
use crate::wire::rrtype::{CLASS_IN, code};
use crate::wire::zonefile::{Location, ZoneRecord};
use crate::zone::{Zone, ZoneError};
use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::Arc;

/// The SOA record of a zone.
pub fn soa_record(zone: &Zone) -> Option<Record> {
    let s = zone.soa_rrset()?;
    let rd = s.rdatas().next()?;
    Some(Record {
        owner: zone.apex().into(),
        rtype: code::SOA,
        class: CLASS_IN,
        ttl: s.ttl,
        rdata: rd.to_vec(),
    })
}

/// What changed from `old` to `new` (a TTL change is a delete and an add, as in RFC 1995).
/// Both zones list their RRsets sorted by (owner, type), so this is one merge walk that holds
/// only the differences, even for million-record zones.
pub fn diff(old: &Zone, new: &Zone) -> Option<Delta> {
    let mut delta = Delta {
        old_soa: soa_record(old)?,
        new_soa: soa_record(new)?,
        deleted: Vec::new(),
        added: Vec::new(),
    };
    let mut a = old.rrsets().filter(|(o, s)| !(s.rtype == code::SOA && *o == old.apex())).peekable();
    let mut b = new.rrsets().filter(|(o, s)| !(s.rtype == code::SOA && *o == new.apex())).peekable();
    let record = |owner: &[u8], s: &crate::zone::RRset<'_>, rd: &[u8]| Record {
        owner: owner.into(),
        rtype: s.rtype,
        class: CLASS_IN,
        ttl: s.ttl,
        rdata: rd.to_vec(),
    };
    loop {
        let order = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((oa, sa)), Some((ob, sb))) => (*oa, sa.rtype).cmp(&(*ob, sb.rtype)),
        };
        match order {
            Ordering::Less => {
                let Some((o, s)) = a.next() else { break };
                delta.deleted.extend(s.rdatas().map(|rd| record(o, &s, rd)));
            }
            Ordering::Greater => {
                let Some((o, s)) = b.next() else { break };
                delta.added.extend(s.rdatas().map(|rd| record(o, &s, rd)));
            }
            Ordering::Equal => {
                let (Some((o, sa)), Some((_, sb))) = (a.next(), b.next()) else { break };
                if sa.ttl == sb.ttl && sa.data == sb.data {
                    continue;
                }
                let same_ttl = sa.ttl == sb.ttl;
                for rd in sa.rdatas() {
                    if !same_ttl || !sb.rdatas().any(|x| x == rd) {
                        delta.deleted.push(record(o, &sa, rd));
                    }
                }
                for rd in sb.rdatas() {
                    if !same_ttl || !sa.rdatas().any(|x| x == rd) {
                        delta.added.push(record(o, &sb, rd));
                    }
                }
            }
        }
    }
    Some(delta)
}

/// Why an incremental transfer could not be applied (fall back to AXFR).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("the IXFR starts from serial {got}, we hold {ours}")]
    WrongStart { got: u32, ours: u32 },
    #[error("the IXFR deletes a record we do not hold")]
    Missing,
    #[error("{0}")]
    Zone(#[from] ZoneError),
}

/// Applies `steps` to `zone`: the new version, its journal extended by the steps. The steps
/// are condensed first, so only the deleted records are held in a set.
pub fn apply(zone: &Zone, steps: &[Delta], max_bytes: usize) -> Result<Zone, ApplyError> {
    let mut serial = zone.soa().serial;
    let mut journal = zone.journal().clone();
    for d in steps {
        if d.from_serial() != serial {
            return Err(ApplyError::WrongStart { got: d.from_serial(), ours: serial });
        }
        serial = d.to_serial();
        journal = journal.push(d.clone(), max_bytes);
    }
    let Some(change) = steps.first().map(|_| condense(steps)) else {
        return Ok(zone.clone());
    };
    // An RRset keeps one TTL here: a deletion matches whatever TTL it names.
    let mut gone: HashSet<(NameBuf, u16, Vec<u8>)> =
        change.deleted.iter().map(|r| (name::to_lower(&r.owner), r.rtype, r.rdata.clone())).collect();
    let from: Arc<str> = "IXFR".into();
    let at = Location { file: from, line: 0 };
    let mut records = vec![zone_record(&lowered(&change.new_soa), &at)];
    for (owner, s) in zone.rrsets().filter(|(o, s)| !(s.rtype == code::SOA && *o == zone.apex())) {
        for rd in s.rdatas() {
            let key = (NameBuf::from(owner), s.rtype, rd.to_vec());
            if !gone.remove(&key) {
                records.push(ZoneRecord {
                    owner: key.0,
                    rtype: s.rtype,
                    ttl: s.ttl,
                    rdata: key.2,
                    at: at.clone(),
                });
            }
        }
    }
    if !gone.is_empty() {
        return Err(ApplyError::Missing);
    }
    records.extend(change.added.iter().map(|r| zone_record(&lowered(r), &at)));
    Ok(Zone::from_records(zone.apex(), records)?.with_journal(journal))
}

fn zone_record(r: &Record, at: &Location) -> ZoneRecord {
    ZoneRecord { owner: r.owner.clone(), rtype: r.rtype, ttl: r.ttl, rdata: r.rdata.clone(), at: at.clone() }
}

fn lowered(r: &Record) -> Record {
    Record { owner: name::to_lower(&r.owner), class: CLASS_IN, ..r.clone() }
}

/// `new` as the successor of `old` (a reload or a full transfer): when the serial went up, it
/// carries `old`'s journal plus the step between them; otherwise an empty journal.
pub fn successor(old: Option<&Zone>, new: Zone, max_bytes: usize) -> Zone {
    match old {
        Some(old) if Serial(old.soa().serial) < Serial(new.soa().serial) => match diff(old, &new) {
            Some(d) => {
                let journal = old.journal().push(d, max_bytes);
                new.with_journal(journal)
            }
            None => new,
        },
        _ => new,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(serial: u32, body: &str) -> Zone {
        let text =
            format!("$TTL 300\n@ SOA ns h {serial} 3600 600 86400 60\n@ NS ns\nns A 192.0.2.1\n{body}");
        Zone::from_text("example.com", &text).unwrap()
    }

    /// The zone's records as sorted lines (RRset order does not matter).
    fn sorted(z: &Zone) -> Vec<String> {
        let mut lines: Vec<String> = z.to_text().lines().map(String::from).collect();
        lines.sort();
        lines
    }

    #[test]
    fn diff_and_apply_round_trip() {
        let v1 =
            zone(1, "www A 192.0.2.10\nwww A 192.0.2.20\nold TXT \"x\"\nt 300 A 192.0.2.5\nzz MX 1 ns\n");
        let v2 =
            zone(2, "www A 192.0.2.11\nwww A 192.0.2.20\nnew TXT \"y\"\nt 600 A 192.0.2.5\nzz MX 1 ns\n");
        let d = diff(&v1, &v2).unwrap();
        assert_eq!((d.from_serial(), d.to_serial()), (1, 2));
        // www .10, old TXT, t at TTL 300 out; www .11, new TXT, t at TTL 600 in.
        assert_eq!(d.deleted.len(), 3, "{:?}", d.deleted);
        assert_eq!(d.added.len(), 3, "{:?}", d.added);
        let applied = apply(&v1, std::slice::from_ref(&d), 1 << 20).unwrap();
        assert_eq!(sorted(&applied), sorted(&v2));
        assert_eq!(applied.journal().len(), 1);
        // Applying to the wrong version fails.
        assert!(matches!(apply(&v2, &[d], 1 << 20), Err(ApplyError::WrongStart { .. })));
    }

    #[test]
    fn journal_text_round_trip() {
        let v1 = zone(1, "a A 192.0.2.1\n");
        let v2 = successor(Some(&v1), zone(2, "a A 192.0.2.2\nb TXT \"x y\"\n"), 1 << 20);
        let v3 = successor(Some(&v2), zone(3, "b TXT \"x y\"\n"), 1 << 20);
        let text = v3.journal().to_text();
        let back = Journal::from_text(&text, v3.apex(), 3, 1 << 20).expect("reads back");
        assert_eq!(back.len(), 2);
        assert_eq!(back.since(1), v3.journal().since(1));
        assert!(Journal::from_text(&text, v3.apex(), 4, 1 << 20).is_none(), "leads elsewhere");
        assert!(Journal::from_text("$ORIGIN .\nnot a record\n", v3.apex(), 3, 1 << 20).is_none());
        assert_eq!(Journal::from_text("", v3.apex(), 3, 1 << 20).map(|j| j.len()), Some(0));
    }

    #[test]
    fn journal_condenses_and_forgets() {
        let v1 = zone(1, "a A 192.0.2.1\n");
        let v2 = zone(2, "a A 192.0.2.2\n");
        let v3 = zone(3, "a A 192.0.2.1\nb A 192.0.2.3\n");
        let j =
            Journal::default().push(diff(&v1, &v2).unwrap(), 1 << 20).push(diff(&v2, &v3).unwrap(), 1 << 20);
        assert_eq!(j.len(), 2);
        let c = j.since(1).unwrap();
        assert_eq!((c.from_serial(), c.to_serial()), (1, 3));
        // a=192.0.2.1 was deleted then added back: gone from the condensed step.
        assert!(c.deleted.is_empty(), "{:?}", c.deleted);
        assert_eq!(c.added.len(), 1);
        assert_eq!(sorted(&apply(&v1, &[c], 1 << 20).unwrap()), sorted(&v3));
        assert_eq!(j.since(2).unwrap().to_serial(), 3);
        assert!(j.since(3).is_none());
        assert!(j.since(7).is_none());
        // The byte bound drops the oldest steps.
        let small = Journal::default().push(diff(&v1, &v2).unwrap(), 600).push(diff(&v2, &v3).unwrap(), 600);
        assert_eq!(small.len(), 1);
        assert!(small.since(1).is_none());
        // A step that does not follow the chain restarts it.
        let broken = j.push(diff(&v1, &v2).unwrap(), 1 << 20);
        assert_eq!(broken.len(), 1);
    }
}
