//! RFC 1035 master files, read with domain's in-place scanner and written back with its
//! presentation format. The scanner reports line:column for syntax errors; this module adds the
//! file name, follows `$INCLUDE`, and remembers the line each record started on so that later
//! semantic checks (CNAME beside other data, out-of-zone data, ...) can point at it too.

use super::name::{NameBuf, to_lower};
use domain::base::iana::{Class, Rtype};
use domain::base::name::{Name, ParsedName, ToName};
use domain::base::rdata::{ComposeRecordData, ParseRecordData};
use domain::dep::octseq::Parser;
use domain::rdata::ZoneRecordData;
use domain::zonefile::inplace::{Entry, Zonefile};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One record read from a zone file, in wire form, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneRecord {
    /// Owner name, lower-cased wire format.
    pub owner: NameBuf,
    pub rtype: u16,
    pub ttl: u32,
    /// Uncompressed wire-format rdata.
    pub rdata: Vec<u8>,
    /// Where the record was read (file and 1-based line).
    pub at: Location,
}

/// A place in a zone file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// Shared by all records of a file (a million records need not hold a million copies).
    pub file: std::sync::Arc<str>,
    pub line: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A zone file that could not be read: where and why.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{at}: {reason}")]
pub struct ZoneFileError {
    pub at: Location,
    pub reason: String,
}

/// Deepest `$INCLUDE` nesting accepted (also stops include loops).
const MAX_INCLUDE_DEPTH: usize = 8;

/// Where `$INCLUDE` files are read from.
pub enum Includes<'a> {
    /// Relative paths resolve against this directory (reading a file from disk).
    Dir(PathBuf),
    /// No file system access: `$INCLUDE` is an error (zones built from text or the network).
    Forbidden,
    /// A custom reader (tests, the lab).
    Custom(&'a dyn Fn(&str) -> Result<String, String>),
}

/// Reads the zone file at `path` for the zone `origin` (wire format).
pub fn read_file(path: &Path, origin: &[u8]) -> Result<Vec<ZoneRecord>, ZoneFileError> {
    let label = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ZoneFileError {
        at: Location { file: label.as_str().into(), line: 0 },
        reason: format!("cannot read the file: {e}"),
    })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut out = Vec::new();
    parse_into(&text, &label, origin, &Includes::Dir(dir), 0, &mut out)?;
    Ok(out)
}

/// Parses zone text for the zone `origin` (wire format); `file` labels error messages.
pub fn parse_text(
    text: &str,
    file: &str,
    origin: &[u8],
    includes: &Includes<'_>,
) -> Result<Vec<ZoneRecord>, ZoneFileError> {
    let mut out = Vec::new();
    parse_into(text, file, origin, includes, 0, &mut out)?;
    Ok(out)
}

fn parse_into(
    text: &str,
    file: &str,
    origin: &[u8],
    includes: &Includes<'_>,
    depth: usize,
    out: &mut Vec<ZoneRecord>,
) -> Result<(), ZoneFileError> {
    let file_name: std::sync::Arc<str> = file.into();
    let err = |line: usize, reason: String| ZoneFileError {
        at: Location { file: file_name.clone(), line },
        reason,
    };
    let origin_name = Name::<bytes::Bytes>::from_octets(bytes::Bytes::copy_from_slice(origin))
        .map_err(|e| err(0, format!("bad origin: {e}")))?;
    // domain's scanner reads `@` in record data as a label "@" (RFC 1035 §5.1 says it is the
    // origin wherever a name may appear) and knows no TTL units (`1h`, BIND's syntax).
    let expanded = expand_at_in_rdata(text, origin);
    let text = expanded.as_deref().unwrap_or(text);
    let mut zf = Zonefile::from(text);
    if !text.ends_with('\n') {
        // The scanner needs the last entry terminated.
        zf.extend_from_slice(b"\n");
    }
    zf.set_origin(origin_name);
    zf.set_default_class(Class::IN);
    let starts = entry_lines(text);
    let mut entries = 0;
    loop {
        // domain 0.12.3's in-place scanner can index past its buffer on some malformed input
        // (found by fuzzing); contain that as an error for this entry instead of a crash.
        let scanned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| zf.next_entry()));
        let Ok(scanned) = scanned else {
            let line = starts.get(entries).copied().unwrap_or(0);
            return Err(err(line, "the zone-file scanner failed on this entry (malformed text)".into()));
        };
        let entry = match scanned {
            Ok(Some(entry)) => entry,
            Ok(None) => return Ok(()),
            Err(e) => {
                // domain's error reads "line:col: reason"; column 1 means it had already moved
                // past the line feed that ended the offending line.
                let shown = e.to_string();
                return Err(match split_line(&shown) {
                    Some((line, 1, reason)) if line > 1 => err(line - 1, reason),
                    Some((line, _, reason)) => err(line, reason),
                    None => err(0, shown),
                });
            }
        };
        let line = starts.get(entries).copied().unwrap_or(0);
        entries += 1;
        match entry {
            Entry::Record(rec) => {
                if rec.class() != Class::IN {
                    return Err(err(line, format!("class {} is not supported (only IN)", rec.class())));
                }
                let mut owner = Vec::with_capacity(64);
                let _ = rec.owner().compose(&mut owner);
                let mut rdata = Vec::with_capacity(32);
                let _ = rec.data().compose_rdata(&mut rdata);
                if rdata.len() > 65535 {
                    return Err(err(line, "record data longer than 65535 bytes".into()));
                }
                // RFC 2181 §8: a TTL with the top bit set counts as 0 (as BIND loads it).
                let ttl = rec.ttl().as_secs();
                out.push(ZoneRecord {
                    owner: to_lower(&owner),
                    rtype: rec.rtype().to_int(),
                    ttl: if ttl > 0x7fff_ffff { 0 } else { ttl },
                    rdata,
                    at: Location { file: file_name.clone(), line },
                });
            }
            Entry::Include { path, origin: inc_origin } => {
                if depth >= MAX_INCLUDE_DEPTH {
                    return Err(err(line, format!("$INCLUDE nested deeper than {MAX_INCLUDE_DEPTH}")));
                }
                let path_str = path.to_string();
                let (label, text) = match includes {
                    Includes::Forbidden => {
                        return Err(err(line, "$INCLUDE is not allowed here".into()));
                    }
                    Includes::Custom(read) => (path_str.clone(), read(&path_str).map_err(|e| err(line, e))?),
                    Includes::Dir(dir) => {
                        let p = dir.join(&path_str);
                        let t = std::fs::read_to_string(&p).map_err(|e| {
                            err(line, format!("cannot read $INCLUDE file {}: {e}", p.display()))
                        })?;
                        (p.display().to_string(), t)
                    }
                };
                let inc_origin = match inc_origin {
                    Some(o) => o.as_slice().to_vec(),
                    None => zf.origin().map(|o| o.as_slice().to_vec()).unwrap_or_else(|_| origin.to_vec()),
                };
                parse_into(&text, &label, &inc_origin, includes, depth + 1, out)?;
            }
        }
    }
}

/// Indexes of the domain-name fields in the presentation form of a type's record data (the
/// fields where `@` means the origin); empty for types without names.
fn name_fields(rtype: &str) -> &'static [usize] {
    match rtype.to_ascii_uppercase().as_str() {
        "NS" | "CNAME" | "PTR" | "DNAME" | "MB" | "MD" | "MF" | "MG" | "MR" | "NSEC" | "NXT" => &[0],
        "SOA" | "RP" | "MINFO" | "TALINK" => &[0, 1],
        "MX" | "AFSDB" | "RT" | "KX" | "LP" | "SVCB" | "HTTPS" => &[1],
        "PX" => &[1, 2],
        "SRV" => &[3],
        "NAPTR" => &[5],
        "RRSIG" | "SIG" => &[7],
        _ => &[],
    }
}

/// Rewrites what domain's scanner would misread: every bare `@` that stands for a domain name
/// in record data (CNAME @, MX 10 @, the SOA names, SRV targets, ...) as the current origin in
/// absolute form, following `$ORIGIN`; and TTLs with BIND's units (`$TTL 1h`, `1d` before the
/// type, the SOA timers `2w 1h30m`) as seconds. `None` when there is nothing to rewrite. Line
/// breaks are kept, so line numbers stay right. Quoted and escaped text, comments, `\#`
/// generic data and owner names are left alone.
pub fn expand_at_in_rdata(text: &str, origin: &[u8]) -> Option<String> {
    let has_unit = |b: &u8| matches!(b.to_ascii_lowercase(), b'w' | b'd' | b'h' | b'm' | b's');
    let may_have_units = text.as_bytes().windows(2).any(|w| w[0].is_ascii_digit() && has_unit(&w[1]));
    let has_ttl_directive =
        text.lines().any(|l| l.as_bytes().get(..4).is_some_and(|b| b.eq_ignore_ascii_case(b"$TTL")));
    if !text.contains('@') && !may_have_units && has_ttl_directive {
        return None;
    }
    let bytes = text.as_bytes();
    let mut state = EntryState { origin: origin.into(), ttl_directive: false, soa_minimum: None };
    let mut replace: Vec<(usize, usize, String)> = Vec::new();
    // The current entry's tokens: (start, end, quoted), and whether it began with an owner.
    let mut tokens: Vec<(usize, usize, bool)> = Vec::new();
    let mut has_owner = false;
    let mut depth = 0usize;
    let mut i = 0;
    let mut at_line_start = true;
    loop {
        let end_of_entry = i >= bytes.len() || (bytes[i] == b'\n' && depth == 0);
        if end_of_entry {
            if !tokens.is_empty() {
                finish_entry(text, &tokens, has_owner, &mut state, &mut replace);
            }
            tokens.clear();
            if i >= bytes.len() {
                break;
            }
            i += 1;
            at_line_start = true;
            continue;
        }
        let b = bytes[i];
        match b {
            b'\n' => {
                i += 1;
                at_line_start = true;
            }
            b' ' | b'\t' | b'\r' => {
                i += 1;
                at_line_start = false;
            }
            b';' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' => {
                depth += 1;
                i += 1;
                at_line_start = false;
            }
            b')' => {
                depth = depth.saturating_sub(1);
                i += 1;
                at_line_start = false;
            }
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(bytes.len());
                if tokens.is_empty() {
                    has_owner = at_line_start;
                }
                tokens.push((start, i, true));
                at_line_start = false;
            }
            _ => {
                let start = i;
                while i < bytes.len()
                    && !matches!(bytes[i], b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b')' | b'"')
                {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i = i.min(bytes.len());
                if tokens.is_empty() {
                    has_owner = at_line_start;
                }
                tokens.push((start, i, false));
                at_line_start = false;
            }
        }
    }
    if replace.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len() + replace.len() * 32);
    let mut last = 0;
    for (start, end, with) in replace {
        out.push_str(text.get(last..start).unwrap_or_default());
        out.push_str(&with);
        last = end;
    }
    out.push_str(text.get(last..).unwrap_or_default());
    Some(out)
}

/// What [`expand_at_in_rdata`] carries from one entry to the next.
struct EntryState {
    /// The current origin (`$ORIGIN`).
    origin: NameBuf,
    /// Whether a `$TTL` was seen.
    ttl_directive: bool,
    /// The SOA's MINIMUM: BIND's TTL for records without one when there is no `$TTL`.
    soa_minimum: Option<u32>,
}

/// One entry's tokens for [`expand_at_in_rdata`]: follows `$ORIGIN` and `$TTL`, finds the type,
/// marks the `@` name fields of its data and TTLs with units, and gives records without a TTL
/// (and no `$TTL` before them) the SOA's MINIMUM, as BIND does.
fn finish_entry(
    text: &str,
    tokens: &[(usize, usize, bool)],
    has_owner: bool,
    state: &mut EntryState,
    replace: &mut Vec<(usize, usize, String)>,
) {
    let origin = &mut state.origin;
    let tok = |k: usize| tokens.get(k).filter(|t| !t.2).and_then(|t| text.get(t.0..t.1));
    let seconds = |k: usize, replace: &mut Vec<(usize, usize, String)>| {
        if let (Some(t), Some(&(start, end, _))) = (tok(k), tokens.get(k))
            && let Some(secs) = ttl_with_units(t)
        {
            replace.push((start, end, secs.to_string()));
        }
    };
    if let Some(first) = tok(0).filter(|t| t.starts_with('$')) {
        if first.eq_ignore_ascii_case("$TTL") {
            state.ttl_directive = true;
            seconds(1, replace);
        }
        if first.eq_ignore_ascii_case("$ORIGIN")
            && let Some(arg) = tok(1)
        {
            let absolute = arg.ends_with('.') && !arg.ends_with("\\.");
            let full = if absolute || arg == "@" {
                arg.to_string()
            } else if origin.len() <= 1 {
                format!("{arg}.")
            } else {
                format!("{arg}.{}", super::name::to_zone_text(origin))
            };
            if arg != "@"
                && let Ok(n) = super::name::from_text(&full)
            {
                *origin = n;
            }
        }
        return;
    }
    let mut k = usize::from(has_owner);
    let is_class = |t: &str| {
        let u = t.to_ascii_uppercase();
        matches!(u.as_str(), "IN" | "CH" | "CHAOS" | "HS" | "HESIOD" | "CS" | "NONE" | "ANY")
            || (u.starts_with("CLASS") && u.len() > 5 && u[5..].bytes().all(|c| c.is_ascii_digit()))
    };
    let mut has_ttl = false;
    while let Some(t) = tok(k) {
        if t.as_bytes()[0].is_ascii_digit() {
            seconds(k, replace);
            has_ttl = true;
            k += 1;
        } else if is_class(t) {
            k += 1;
        } else {
            break;
        }
    }
    let Some(rtype) = tok(k) else { return };
    if rtype.eq_ignore_ascii_case("SOA") && tok(k + 1) != Some("\\#") {
        // MNAME RNAME SERIAL then the four timers.
        if state.soa_minimum.is_none() {
            state.soa_minimum = tok(k + 7).and_then(|t| t.parse().ok().or_else(|| ttl_with_units(t)));
        }
        for f in 3..=6 {
            seconds(k + 1 + f, replace);
        }
    }
    if !has_ttl
        && !state.ttl_directive
        && let (Some(min), Some(&(start, _, _))) = (state.soa_minimum, tokens.get(k))
    {
        replace.push((start, start, format!("{min} ")));
    }
    let fields = name_fields(rtype);
    if fields.is_empty() || tok(k + 1) == Some("\\#") {
        return;
    }
    for &f in fields {
        if let Some(&(start, end, false)) = tokens.get(k + 1 + f)
            && text.get(start..end) == Some("@")
        {
            replace.push((start, end, super::name::to_zone_text(origin)));
        }
    }
}

/// Seconds for a TTL written with units (`1h30m`, `2W`, `1d2h`; a bare number at the end counts
/// as seconds); `None` for a plain number (already fine) or anything else.
fn ttl_with_units(t: &str) -> Option<u32> {
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut total: u64 = 0;
    let mut num: Option<u64> = None;
    for b in t.bytes() {
        if b.is_ascii_digit() {
            num = Some(num.unwrap_or(0).checked_mul(10)?.checked_add(u64::from(b - b'0'))?);
            continue;
        }
        let unit = match b.to_ascii_lowercase() {
            b'w' => 604_800,
            b'd' => 86_400,
            b'h' => 3_600,
            b'm' => 60,
            b's' => 1,
            _ => return None,
        };
        total = total.checked_add(num.take()?.checked_mul(unit)?)?;
    }
    total = total.checked_add(num.unwrap_or(0))?;
    u32::try_from(total).ok()
}

/// Splits domain's "LINE:COL: reason" error text.
fn split_line(shown: &str) -> Option<(usize, usize, String)> {
    let (line, rest) = shown.split_once(':')?;
    let (col, reason) = rest.split_once(':')?;
    Some((line.trim().parse().ok()?, col.trim().parse().ok()?, reason.trim().to_string()))
}

/// The 1-based line on which each record or `$INCLUDE` entry starts, in order (the scanner does
/// not say). Follows the same lexical rules: `;` comments, quoted strings, `\` escapes, and
/// parentheses that continue an entry over several lines. `$ORIGIN`/`$TTL` are not entries.
fn entry_lines(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    for (i, line) in text.lines().enumerate() {
        let bytes = line.as_bytes();
        let starts_entry = depth == 0;
        let mut has_content = false;
        let mut quoted = false;
        let mut j = 0;
        while j < bytes.len() {
            let b = bytes[j];
            match b {
                b'\\' => j += 1,
                b'"' => quoted = !quoted,
                b';' if !quoted => break,
                b'(' if !quoted => depth += 1,
                b')' if !quoted => depth = depth.saturating_sub(1),
                _ => {}
            }
            if !b.is_ascii_whitespace() {
                has_content = true;
            }
            j += 1;
        }
        if starts_entry && has_content {
            let upper = line.trim_start().to_ascii_uppercase();
            let directive =
                line.starts_with('$') && (upper.starts_with("$ORIGIN") || upper.starts_with("$TTL"));
            if !directive {
                out.push(i + 1);
            }
        } else if starts_entry && !has_content {
            // A blank or comment-only line; a '(' cannot have been opened on it.
            depth = 0;
        }
    }
    out
}

/// Presentation text for one record (`owner TTL IN TYPE data`), as a zone file line. Names in
/// the data are absolute but may lack the final dot: read it back with the root as origin.
/// Data that domain's printer would not read back the same (it leaves some special characters
/// in names unescaped) is written in the generic RFC 3597 form instead.
pub fn record_text(owner: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) -> String {
    let owner_text = super::name::to_zone_text(owner);
    let rt = Rtype::from_int(rtype);
    let mut parser = Parser::from_ref(rdata);
    let known = ZoneRecordData::<&[u8], ParsedName<&[u8]>>::parse_rdata(rt, &mut parser);
    if let Ok(Some(data)) = known
        && parser.remaining() == 0
        && !matches!(data, ZoneRecordData::Unknown(_))
    {
        let line = format!("{owner_text} {ttl} IN {rt} {data}");
        if matches!(rtype, super::rrtype::code::A | super::rrtype::code::AAAA)
            || reads_back(&line, rtype, rdata)
        {
            return line;
        }
    }
    let mut s = format!("{owner_text} {ttl} IN {rt} \\# {}", rdata.len());
    for b in rdata {
        let _ = write!(s, " {b:02x}");
    }
    s
}

fn reads_back(line: &str, rtype: u16, rdata: &[u8]) -> bool {
    match parse_text(line, "check", super::name::ROOT, &Includes::Forbidden) {
        Ok(recs) => recs.len() == 1 && recs[0].rtype == rtype && recs[0].rdata == rdata,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::name::{from_text, to_text};
    use crate::wire::rrtype::code;

    const ZONE: &str = "$ORIGIN example.com.\n$TTL 3600\n; a comment\n@ IN SOA ns1 hostmaster (\n  2024010101 ; serial\n  7200 3600 1209600 300 )\n\
        @ NS ns1\nns1 A 192.0.2.1\nwww 300 IN AAAA 2001:db8::1\nmail MX 10 mx.other.net.\n\
        txt TXT \"hello world\" \"second string\"\n_sip._udp SRV 10 20 5060 sip\nunk TYPE65534 \\# 3 010203\n\
        @ CAA 0 issue \"letsencrypt.org\"\n";

    #[test]
    fn parses_the_usual_syntax_with_lines() {
        let origin = from_text("example.com").unwrap();
        let recs = parse_text(ZONE, "t.zone", &origin, &Includes::Forbidden).unwrap();
        assert_eq!(recs.len(), 9);
        assert_eq!(recs[0].rtype, code::SOA);
        assert_eq!(recs[0].at.line, 4);
        assert_eq!(recs[1].at.line, 7);
        assert_eq!(to_text(&recs[3].owner), "www.example.com.");
        assert_eq!(recs[3].ttl, 300);
        assert_eq!(recs[2].ttl, 3600);
        assert_eq!(recs[2].rdata, vec![192, 0, 2, 1]);
        assert_eq!(recs[7].rtype, 65534);
        assert_eq!(recs[7].rdata, vec![1, 2, 3]);
        assert_eq!(recs[7].at.line, 13);
        // Presentation text parses back to the same record.
        for r in &recs {
            let text = record_text(&r.owner, r.rtype, r.ttl, &r.rdata);
            // Printed names may lack the final dot; zone text we write is read relative to the root.
            let again = parse_text(&text, "rt", crate::wire::name::ROOT, &Includes::Forbidden).unwrap();
            assert_eq!(again[0].rdata, r.rdata, "{text}");
            assert_eq!(again[0].rtype, r.rtype, "{text}");
        }
    }

    #[test]
    fn at_in_record_data_is_the_origin_but_not_when_escaped_or_quoted() {
        let origin = from_text("example.com").unwrap();
        let text = "$TTL 60\n@ SOA @ h.@ 1 2 3 4 5\nwww CNAME @\nesc CNAME \\@\nq TXT \"@\" @ ; @ comment\n\
            mx MX 10 @\nuni TXT \"a\\\" @\" @\nx\\; CNAME @\n";
        let recs = parse_text(text, "t", &origin, &Includes::Forbidden).unwrap();
        let name_at =
            |i: usize, off: usize| to_text(crate::wire::rrtype::embedded_name(&recs[i].rdata, off).unwrap());
        assert_eq!(name_at(0, 0), "example.com.");
        assert_eq!(name_at(0, 13), "h.@.example.com.", "only a bare @ is the origin");
        assert_eq!(name_at(1, 0), "example.com.");
        assert_eq!(name_at(2, 0), "@.example.com.", "an escaped @ is a label");
        assert_eq!(recs[3].rdata, b"\x01@\x01@");
        assert_eq!(name_at(4, 2), "example.com.");
        assert_eq!(recs[5].rdata.last(), Some(&b'@'));
        assert_eq!(name_at(6, 0), "example.com.");
        // Line numbers survive the rewrite.
        assert_eq!(recs[4].at.line, 6);
        // Odd input never panics.
        for junk in [
            "abcé\nx A 1.2.3.4",
            "@ @ @",
            "\\",
            "( @",
            "\"@",
            "é\\",
            "x CNAME é\\@ @",
            "x CNAME @\\",
            "$ORIGIN\n@ CNAME @",
        ] {
            let _ = parse_text(junk, "j", &origin, &Includes::Forbidden);
        }
    }

    #[test]
    fn errors_carry_file_and_line() {
        let origin = from_text("example.com").unwrap();
        let e = parse_text(
            "@ 3600 IN SOA a b 1 2 3 4 5\nwww A 300.1.1.1\n",
            "bad.zone",
            &origin,
            &Includes::Forbidden,
        )
        .unwrap_err();
        assert_eq!(&*e.at.file, "bad.zone");
        assert_eq!(e.at.line, 2, "{e}");
    }

    #[test]
    fn include_uses_the_reader_and_origin() {
        let origin = from_text("example.com").unwrap();
        let read = |p: &str| -> Result<String, String> {
            assert_eq!(p, "hosts.inc");
            Ok("host A 192.0.2.9\n".into())
        };
        let recs =
            parse_text("$INCLUDE hosts.inc sub.example.com.\n", "m", &origin, &Includes::Custom(&read))
                .unwrap();
        assert_eq!(to_text(&recs[0].owner), "host.sub.example.com.");
        assert_eq!(&*recs[0].at.file, "hosts.inc");
        assert!(parse_text("$INCLUDE x\n", "m", &origin, &Includes::Forbidden).is_err());
    }
}

#[cfg(test)]
mod scanner_bug {
    use super::*;

    /// A fuzzer-found input on which domain 0.12.3's scanner panics: it must become an error.
    #[test]
    fn a_scanner_panic_becomes_an_error() {
        let bytes =
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/scanner-panic.zone")).unwrap();
        let origin = crate::wire::name::from_text("example.com").unwrap();
        let raw = String::from_utf8_lossy(&bytes).to_string();
        assert!(parse_text(&raw, "crash", &origin, &Includes::Forbidden).is_err());
    }
}
