//! The IXFR journal's steps (RFC 1995): what changed between successive versions of a zone,
//! kept in memory (bounded) so a secondary that is a few serials behind gets only the difference.
//!
//! A [`Delta`] is one version step (the records deleted and added, SOA aside). The [`Journal`]
//! is an immutable chain carried by each [`Zone`](crate::zone::Zone) version, so the answering
//! core decides IXFR-or-AXFR without I/O; [`Journal::since`] condenses the steps from a
//! client's serial into one (RFC 1995 §4 allows the condensed form). Building and applying
//! steps between zone versions is [`crate::journal`]'s.

use crate::soa::SoaInfo;
use crate::wire::message::Record;
use crate::wire::rrtype::{CLASS_IN, code};
use crate::wire::zonefile::{Includes, parse_text, record_text};
use std::sync::Arc;

/// Steps kept at most, whatever their size.
const MAX_STEPS: usize = 128;

/// One change of a zone: from `old_soa`'s serial to `new_soa`'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    pub old_soa: Record,
    pub new_soa: Record,
    pub deleted: Vec<Record>,
    pub added: Vec<Record>,
}

impl Delta {
    /// The serial this step starts from.
    pub fn from_serial(&self) -> u32 {
        soa_serial(&self.old_soa)
    }

    /// The serial this step leads to.
    pub fn to_serial(&self) -> u32 {
        soa_serial(&self.new_soa)
    }

    /// Approximate memory held, for the journal's bound.
    pub fn size(&self) -> usize {
        self.deleted.iter().chain(&self.added).map(|r| r.owner.len() + r.rdata.len() + 48).sum::<usize>()
            + 256
    }
}

fn soa_serial(r: &Record) -> u32 {
    SoaInfo::from_rdata(&r.rdata).map(|s| s.serial).unwrap_or(0)
}

/// The chain of steps that led to a zone version, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Journal {
    steps: Vec<Arc<Delta>>,
    bytes: usize,
}

impl Journal {
    /// This journal with `delta` appended, then trimmed (oldest first) to `max_bytes`. A step
    /// that does not continue the chain starts a new one.
    pub fn push(&self, delta: Delta, max_bytes: usize) -> Journal {
        let mut j = self.clone();
        if j.steps.last().is_some_and(|last| last.to_serial() != delta.from_serial()) {
            j = Journal::default();
        }
        j.bytes += delta.size();
        j.steps.push(Arc::new(delta));
        while !j.steps.is_empty() && (j.bytes > max_bytes || j.steps.len() > MAX_STEPS) {
            let gone = j.steps.remove(0);
            j.bytes -= gone.size();
        }
        j
    }

    /// Number of steps kept.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether no steps are kept.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The change from `serial` to the newest version, condensed into one step; `None` when
    /// `serial` is not in the journal (too old, or never ours): answer with the whole zone.
    pub fn since(&self, serial: u32) -> Option<Delta> {
        let i = self.steps.iter().position(|d| d.from_serial() == serial)?;
        let chain = &self.steps[i..];
        if chain.len() == 1 {
            return Some((*chain[0]).clone());
        }
        Some(condense(chain.iter().map(|d| &**d)))
    }
}

impl Journal {
    /// The steps as zone-file text, each as in an IXFR answer (old SOA, deletions, new SOA,
    /// additions), so a secondary can keep its journal next to its zone file.
    pub fn to_text(&self) -> String {
        let mut out = String::from("$ORIGIN .\n");
        for d in &self.steps {
            let seq = std::iter::once(&d.old_soa)
                .chain(&d.deleted)
                .chain(std::iter::once(&d.new_soa))
                .chain(&d.added);
            for r in seq {
                out.push_str(&record_text(&r.owner, r.rtype, r.ttl, &r.rdata));
                out.push('\n');
            }
        }
        out
    }

    /// Reads what [`to_text`](Self::to_text) wrote, for the zone at `apex`, as the journal of
    /// a version with serial `serial`; `None` if it does not parse or does not lead there.
    pub fn from_text(text: &str, apex: &[u8], serial: u32, max_bytes: usize) -> Option<Journal> {
        Journal::parse(text, apex, max_bytes).filter(|j| j.newest_serial().is_none_or(|s| s == serial))
    }

    /// The serial the newest step leads to (`None` when empty).
    pub fn newest_serial(&self) -> Option<u32> {
        self.steps.last().map(|d| d.to_serial())
    }

    /// The serial the oldest step starts from (`None` when empty).
    pub fn oldest_serial(&self) -> Option<u32> {
        self.steps.first().map(|d| d.from_serial())
    }

    /// Reads what [`to_text`](Self::to_text) wrote, for the zone at `apex`, wherever it leads;
    /// `None` if it does not parse as a chain of steps.
    pub fn parse(text: &str, apex: &[u8], max_bytes: usize) -> Option<Journal> {
        let records = parse_text(text, "<journal>", apex, &Includes::Forbidden).ok()?;
        let mut steps: Vec<Delta> = Vec::new();
        let mut soas = 0usize;
        for r in records {
            let rec = Record { owner: r.owner, rtype: r.rtype, class: CLASS_IN, ttl: r.ttl, rdata: r.rdata };
            if rec.rtype == code::SOA && rec.owner[..] == *apex {
                soas += 1;
                if soas % 2 == 1 {
                    steps.push(Delta {
                        old_soa: rec.clone(),
                        new_soa: rec,
                        deleted: Vec::new(),
                        added: Vec::new(),
                    });
                } else {
                    steps.last_mut()?.new_soa = rec;
                }
                continue;
            }
            let step = steps.last_mut()?;
            if soas % 2 == 1 { step.deleted.push(rec) } else { step.added.push(rec) }
        }
        if soas % 2 == 1 || steps.windows(2).any(|w| w[0].to_serial() != w[1].from_serial()) {
            return None;
        }
        Some(steps.into_iter().fold(Journal::default(), |j, d| j.push(d, max_bytes)))
    }
}

/// Several consecutive steps as one: records added then deleted again cancel out.
pub fn condense<'a>(steps: impl IntoIterator<Item = &'a Delta>) -> Delta {
    let mut steps = steps.into_iter();
    let Some(first) = steps.next() else {
        let empty =
            Record { owner: Box::new([0]), rtype: code::SOA, class: CLASS_IN, ttl: 0, rdata: Vec::new() };
        return Delta { old_soa: empty.clone(), new_soa: empty, deleted: Vec::new(), added: Vec::new() };
    };
    let mut out = first.clone();
    for d in steps {
        out.new_soa = d.new_soa.clone();
        for r in &d.deleted {
            if let Some(p) = out.added.iter().position(|a| a == r) {
                out.added.swap_remove(p);
            } else {
                out.deleted.push(r.clone());
            }
        }
        for r in &d.added {
            if let Some(p) = out.deleted.iter().position(|x| x == r) {
                out.deleted.swap_remove(p);
            } else {
                out.added.push(r.clone());
            }
        }
    }
    out
}
