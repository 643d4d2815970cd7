//! Domain names as uncompressed wire-format bytes (`3www7example3com0`), the form the zone store
//! keys on. Keys are lower-cased so lookups are case-insensitive without per-query allocation.

use std::str::FromStr;

/// An owned wire-format name.
pub type NameBuf = Box<[u8]>;

/// The longest wire-format name (RFC 1035 §2.3.4).
pub const MAX_NAME: usize = 255;

/// The root name in wire format.
pub const ROOT: &[u8] = &[0];

/// Whether `name` is a well-formed uncompressed wire name (labels ≤ 63, total ≤ 255, ends in root).
pub fn is_valid(name: &[u8]) -> bool {
    let mut pos = 0;
    while pos < name.len() {
        let len = name[pos] as usize;
        if len > 63 {
            return false;
        }
        if len == 0 {
            return pos + 1 == name.len() && name.len() <= MAX_NAME;
        }
        pos += 1 + len;
    }
    false
}

/// Copies `name` lower-cased (ASCII) into `buf`, returning the used prefix. `name` must be valid.
pub fn lower_into<'b>(name: &[u8], buf: &'b mut [u8; MAX_NAME]) -> &'b [u8] {
    let n = name.len().min(MAX_NAME);
    for (d, s) in buf[..n].iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    &buf[..n]
}

/// A lower-cased owned copy of `name`.
pub fn to_lower(name: &[u8]) -> NameBuf {
    name.iter().map(|b| b.to_ascii_lowercase()).collect()
}

/// The name with its first label removed; `None` for the root.
pub fn parent(name: &[u8]) -> Option<&[u8]> {
    let len = *name.first()? as usize;
    if len == 0 { None } else { name.get(1 + len..) }
}

/// Number of labels, not counting the root label.
pub fn label_count(name: &[u8]) -> usize {
    let mut n = 0;
    let mut cur = name;
    while let Some(p) = parent(cur) {
        n += 1;
        cur = p;
    }
    n
}

/// Whether `name` equals `apex` or lies below it (both lower-cased).
pub fn is_at_or_below(name: &[u8], apex: &[u8]) -> bool {
    let mut cur = name;
    loop {
        if cur.len() < apex.len() {
            return false;
        }
        if cur.len() == apex.len() {
            return cur == apex;
        }
        match parent(cur) {
            Some(p) => cur = p,
            None => return false,
        }
    }
}

/// `*.name`, the wildcard owner directly below `name`.
pub fn wildcard_of(name: &[u8]) -> NameBuf {
    let mut v = Vec::with_capacity(name.len() + 2);
    v.extend_from_slice(&[1, b'*']);
    v.extend_from_slice(name);
    v.into_boxed_slice()
}

/// Whether the name's first label is `*`.
pub fn is_wildcard(name: &[u8]) -> bool {
    name.len() >= 2 && name[0] == 1 && name[1] == b'*'
}

/// The name in presentation format with a trailing dot (`www.example.com.`, `.` for the root).
pub fn to_text(name: &[u8]) -> String {
    match domain::base::Name::from_slice(name) {
        Ok(n) if n.is_root() => ".".to_string(),
        Ok(n) => format!("{n}."),
        Err(_) => "<invalid name>".to_string(),
    }
}

/// The name in zone-file syntax with every special character escaped (`\;`, `\032`, ...), so
/// it reads back as the same name whatever its labels hold.
pub fn to_zone_text(name: &[u8]) -> String {
    let mut out = String::new();
    let mut pos = 0;
    while pos < name.len() {
        let len = name[pos] as usize;
        if len == 0 {
            break;
        }
        for &b in name.get(pos + 1..pos + 1 + len).unwrap_or(&[]) {
            match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'*' | b'/' => out.push(b as char),
                0x21..=0x7e => {
                    out.push('\\');
                    out.push(b as char);
                }
                _ => out.push_str(&format!("\\{b:03}")),
            }
        }
        out.push('.');
        pos += 1 + len;
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

/// Parses a presentation-format name (`example.com` or `example.com.`; always absolute).
pub fn from_text(text: &str) -> Result<NameBuf, String> {
    let name = domain::base::Name::<Vec<u8>>::from_str(text)
        .map_err(|e| format!("bad domain name {text:?}: {e}"))?;
    Ok(name.into_octets().into_boxed_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_and_helpers() {
        let n = from_text("WWW.Example.com").unwrap();
        assert!(is_valid(&n));
        assert_eq!(to_text(&n), "WWW.Example.com.");
        let low = to_lower(&n);
        assert_eq!(to_text(&low), "www.example.com.");
        assert_eq!(label_count(&low), 3);
        let apex = from_text("example.com.").unwrap();
        assert!(is_at_or_below(&low, &apex));
        assert!(is_at_or_below(&apex, &apex));
        assert!(!is_at_or_below(&apex, &low));
        let other = from_text("xexample.com").unwrap();
        assert!(!is_at_or_below(&other, &apex));
        assert_eq!(parent(&low).unwrap(), &apex[..]);
        assert_eq!(to_text(&wildcard_of(&apex)), "*.example.com.");
        assert!(is_wildcard(&wildcard_of(&apex)));
        assert_eq!(to_text(ROOT), ".");
        assert_eq!(from_text(".").unwrap().as_ref(), ROOT);
        assert!(!is_valid(&[3, b'a']));
        let odd = [3, b'a', b';', b' ', 0];
        assert_eq!(to_zone_text(&odd), "a\\;\\032.");
        assert_eq!(from_text(&to_zone_text(&odd)).unwrap().as_ref(), &odd[..]);
    }
}
