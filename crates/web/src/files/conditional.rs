//! Validators (strong ETag, Last-Modified) and the RFC 9110 §13.2.2 precondition order:
//! If-Match → If-Unmodified-Since → If-None-Match → If-Modified-Since, and If-Range.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A representation's validators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    /// The strong entity tag, quotes included (`"1f4-5f2a..."`).
    pub etag: String,
    /// Modification time, truncated to whole seconds (HTTP dates have no finer resolution).
    pub last_modified: SystemTime,
}

impl Validators {
    /// Validators for a file from its size, modification time and a variant tag (`""`, `"br"`, ...).
    pub fn for_file(len: u64, mtime: SystemTime, variant: &str) -> Validators {
        let since = mtime.duration_since(UNIX_EPOCH).unwrap_or_default();
        let etag = if variant.is_empty() {
            format!("\"{:x}-{:x}.{:x}\"", len, since.as_secs(), since.subsec_nanos())
        } else {
            format!("\"{:x}-{:x}.{:x}-{variant}\"", len, since.as_secs(), since.subsec_nanos())
        };
        Validators { etag, last_modified: UNIX_EPOCH + Duration::from_secs(since.as_secs()) }
    }

    /// The Last-Modified header value.
    pub fn last_modified_header(&self) -> String {
        httpdate::fmt_http_date(self.last_modified)
    }
}

/// The request headers that carry preconditions (raw values, `None` when absent).
#[derive(Debug, Clone, Copy, Default)]
pub struct Preconditions<'a> {
    /// If-Match.
    pub if_match: Option<&'a str>,
    /// If-None-Match.
    pub if_none_match: Option<&'a str>,
    /// If-Modified-Since.
    pub if_modified_since: Option<&'a str>,
    /// If-Unmodified-Since.
    pub if_unmodified_since: Option<&'a str>,
}

/// What the preconditions say to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Go on and serve the method normally.
    Proceed,
    /// 304 Not Modified (GET/HEAD only).
    NotModified,
    /// 412 Precondition Failed.
    PreconditionFailed,
}

/// Evaluates preconditions in the RFC 9110 order. `safe` is true for GET and HEAD.
pub fn evaluate(pre: &Preconditions<'_>, v: &Validators, safe: bool) -> Outcome {
    if let Some(im) = pre.if_match {
        if !list_matches(im, &v.etag, true) {
            return Outcome::PreconditionFailed;
        }
    } else if let Some(date) = pre.if_unmodified_since.and_then(parse_date)
        && v.last_modified > date
    {
        return Outcome::PreconditionFailed;
    }
    if let Some(inm) = pre.if_none_match {
        if list_matches(inm, &v.etag, false) {
            return if safe { Outcome::NotModified } else { Outcome::PreconditionFailed };
        }
    } else if safe
        && let Some(date) = pre.if_modified_since.and_then(parse_date)
        && v.last_modified <= date
    {
        return Outcome::NotModified;
    }
    Outcome::Proceed
}

/// Whether an If-Range value lets a Range be honoured: a strong ETag equal to ours, or an
/// HTTP date exactly equal to Last-Modified.
pub fn if_range_allows(value: &str, v: &Validators) -> bool {
    let value = value.trim();
    if value.starts_with('"') {
        return value == v.etag;
    }
    if value.starts_with("W/") {
        return false;
    }
    parse_date(value) == Some(v.last_modified)
}

fn parse_date(s: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(s.trim()).ok()
}

/// Whether a comma-separated entity-tag list (or `*`) matches `etag`. Strong comparison refuses
/// weak tags; weak comparison ignores the `W/` prefix.
pub fn list_matches(list: &str, etag: &str, strong: bool) -> bool {
    let list = list.trim();
    if list == "*" {
        return true;
    }
    let ours = etag.trim_start_matches("W/");
    for tag in split_tags(list) {
        let (weak, opaque) = match tag.strip_prefix("W/") {
            Some(rest) => (true, rest),
            None => (false, tag),
        };
        if strong && weak {
            continue;
        }
        if opaque == ours {
            return true;
        }
    }
    false
}

/// Splits an entity-tag list on commas outside quotes; malformed pieces are skipped.
fn split_tags(list: &str) -> impl Iterator<Item = &str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    for (i, c) in list.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => {
                pieces.push(list[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    pieces.push(list[start..].trim());
    pieces.into_iter().filter(|p| p.ends_with('"') && p.len() >= 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v() -> Validators {
        Validators::for_file(500, UNIX_EPOCH + Duration::new(1_700_000_000, 123), "")
    }
    const LM: &str = "Tue, 14 Nov 2023 22:13:20 GMT";
    const EARLIER: &str = "Tue, 14 Nov 2023 22:13:19 GMT";

    #[test]
    fn etags_are_strong_and_distinct_per_variant() {
        let a = v();
        assert_eq!(a.etag, "\"1f4-6553f100.7b\"");
        assert_eq!(a.last_modified_header(), LM);
        let br = Validators::for_file(500, UNIX_EPOCH + Duration::new(1_700_000_000, 123), "br");
        assert_ne!(a.etag, br.etag);
    }

    #[test]
    fn if_none_match_gives_304_for_get_and_412_otherwise() {
        let tag = v().etag;
        let pre = Preconditions { if_none_match: Some(&tag), ..Default::default() };
        assert_eq!(evaluate(&pre, &v(), true), Outcome::NotModified);
        assert_eq!(evaluate(&pre, &v(), false), Outcome::PreconditionFailed);
        let weak = format!("\"x\", W/{tag}");
        let pre = Preconditions { if_none_match: Some(&weak), ..Default::default() };
        assert_eq!(evaluate(&pre, &v(), true), Outcome::NotModified);
        let pre = Preconditions { if_none_match: Some("\"other\""), ..Default::default() };
        assert_eq!(evaluate(&pre, &v(), true), Outcome::Proceed);
        let pre = Preconditions { if_none_match: Some("*"), ..Default::default() };
        assert_eq!(evaluate(&pre, &v(), true), Outcome::NotModified);
    }

    #[test]
    fn if_modified_since_compares_seconds() {
        let pre = Preconditions { if_modified_since: Some(LM), ..Default::default() };
        assert_eq!(evaluate(&pre, &v(), true), Outcome::NotModified);
        let pre = Preconditions { if_modified_since: Some(EARLIER), ..Default::default() };
        assert_eq!(evaluate(&pre, &v(), true), Outcome::Proceed);
        let pre = Preconditions { if_modified_since: Some("garbage"), ..Default::default() };
        assert_eq!(evaluate(&pre, &v(), true), Outcome::Proceed);
        // If-None-Match takes precedence over If-Modified-Since.
        let pre = Preconditions {
            if_none_match: Some("\"nope\""),
            if_modified_since: Some(LM),
            ..Default::default()
        };
        assert_eq!(evaluate(&pre, &v(), true), Outcome::Proceed);
    }

    #[test]
    fn if_match_and_if_unmodified_since_give_412() {
        let pre = Preconditions { if_match: Some("\"nope\""), ..Default::default() };
        assert_eq!(evaluate(&pre, &v(), false), Outcome::PreconditionFailed);
        let tag = format!("W/{}", v().etag);
        let pre = Preconditions { if_match: Some(&tag), ..Default::default() };
        assert_eq!(evaluate(&pre, &v(), false), Outcome::PreconditionFailed, "weak never matches strongly");
        let pre = Preconditions { if_match: Some("*"), ..Default::default() };
        assert_eq!(evaluate(&pre, &v(), false), Outcome::Proceed);
        let pre = Preconditions { if_unmodified_since: Some(EARLIER), ..Default::default() };
        assert_eq!(evaluate(&pre, &v(), true), Outcome::PreconditionFailed);
        let pre = Preconditions { if_unmodified_since: Some(LM), ..Default::default() };
        assert_eq!(evaluate(&pre, &v(), true), Outcome::Proceed);
    }

    #[test]
    fn if_range_needs_an_exact_strong_match() {
        assert!(if_range_allows(&v().etag, &v()));
        assert!(!if_range_allows(&format!("W/{}", v().etag), &v()));
        assert!(if_range_allows(LM, &v()));
        assert!(!if_range_allows(EARLIER, &v()));
        assert!(!if_range_allows("junk", &v()));
    }
}
