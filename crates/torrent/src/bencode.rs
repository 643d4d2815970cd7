//! Raw bencode scanning: finds where a value ends without decoding it, so the info hash can be
//! taken over the exact bytes of the `info` dictionary as they appear in a .torrent file or a
//! tracker message (re-encoding could reorder or normalise them and change the hash).

use thiserror::Error;

/// Deepest nesting accepted; real torrents use 4 or 5 levels.
pub const MAX_DEPTH: usize = 64;

/// Why a byte string is not well-formed bencode.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("malformed bencode at byte {at}: {what}")]
pub struct ScanError {
    /// Offset of the problem.
    pub at: usize,
    /// What was wrong.
    pub what: &'static str,
}

fn err(at: usize, what: &'static str) -> ScanError {
    ScanError { at, what }
}

/// An integer whichever way bt_bencode stored it (it keeps non-negative ones as unsigned, so
/// `Value::as_i64` alone misses them).
pub fn as_int(v: &bt_bencode::Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_u64().and_then(|u| i64::try_from(u).ok()))
}

/// Returns the offset just past the value starting at `pos`.
pub fn value_end(buf: &[u8], pos: usize) -> Result<usize, ScanError> {
    scan(buf, pos, 0)
}

fn scan(buf: &[u8], pos: usize, depth: usize) -> Result<usize, ScanError> {
    if depth > MAX_DEPTH {
        return Err(err(pos, "nested too deeply"));
    }
    match buf.get(pos) {
        None => Err(err(pos, "unexpected end")),
        Some(b'i') => {
            let end =
                buf[pos..].iter().position(|&b| b == b'e').ok_or(err(pos, "unterminated integer"))? + pos;
            let digits = &buf[pos + 1..end];
            let body = digits.strip_prefix(b"-").unwrap_or(digits);
            if body.is_empty() || !body.iter().all(u8::is_ascii_digit) {
                return Err(err(pos, "bad integer"));
            }
            Ok(end + 1)
        }
        Some(b'l') => {
            let mut p = pos + 1;
            while buf.get(p) != Some(&b'e') {
                p = scan(buf, p, depth + 1)?;
            }
            Ok(p + 1)
        }
        Some(b'd') => {
            let mut p = pos + 1;
            while buf.get(p) != Some(&b'e') {
                if !buf.get(p).is_some_and(u8::is_ascii_digit) {
                    return Err(err(p, "dictionary key is not a string"));
                }
                p = scan(buf, p, depth + 1)?;
                p = scan(buf, p, depth + 1)?;
            }
            Ok(p + 1)
        }
        Some(b'0'..=b'9') => {
            let colon =
                buf[pos..].iter().take(21).position(|&b| b == b':').ok_or(err(pos, "bad string length"))?
                    + pos;
            let len: usize = std::str::from_utf8(&buf[pos..colon])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(err(pos, "bad string length"))?;
            let end = len.checked_add(colon + 1).ok_or(err(pos, "string too long"))?;
            if end > buf.len() {
                return Err(err(pos, "string runs past the end"));
            }
            Ok(end)
        }
        Some(_) => Err(err(pos, "unknown value type")),
    }
}

/// The raw bytes of `key`'s value in the top-level dictionary `buf`, if present.
pub fn dict_value<'a>(buf: &'a [u8], key: &[u8]) -> Result<Option<&'a [u8]>, ScanError> {
    if buf.first() != Some(&b'd') {
        return Err(err(0, "not a dictionary"));
    }
    let mut p = 1;
    while buf.get(p) != Some(&b'e') {
        if !buf.get(p).is_some_and(u8::is_ascii_digit) {
            return Err(err(p, "dictionary key is not a string"));
        }
        let key_end = scan(buf, p, 1)?;
        let colon = buf[p..key_end].iter().position(|&b| b == b':').unwrap_or(0) + p;
        let k = &buf[colon + 1..key_end];
        let val_end = scan(buf, key_end, 1)?;
        if k == key {
            return Ok(Some(&buf[key_end..val_end]));
        }
        p = val_end;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_nested_values() {
        let b = b"d3:food3:bari-42ee4:listl1:ai0eee";
        assert_eq!(value_end(b, 0), Ok(b.len()));
        assert_eq!(dict_value(b, b"foo").unwrap(), Some(&b"d3:bari-42ee"[..]));
        assert_eq!(dict_value(b, b"list").unwrap(), Some(&b"l1:ai0ee"[..]));
        assert_eq!(dict_value(b, b"nope").unwrap(), None);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            &b"d3:foo"[..],
            b"i12",
            b"5:abc",
            b"x",
            b"ie",
            b"di1e1:ae",
            b"99999999999999999999999:",
            b"18446744073709551615:2",
        ] {
            assert!(value_end(bad, 0).is_err(), "{bad:?}");
        }
        let deep = vec![b'l'; 1000];
        assert!(value_end(&deep, 0).is_err());
    }
}
