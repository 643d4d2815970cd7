//! `Range: bytes=...` parsing (RFC 9110 §14) and the multipart/byteranges layout.
//! Pure: the caller supplies the representation length and reads the bytes.

/// Most ranges honoured in one request; more (a known amplification trick) serves the whole file.
pub const MAX_RANGES: usize = 32;

/// An inclusive byte range `start..=end` within a representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte offset.
    pub start: u64,
    /// Last byte offset (inclusive).
    pub end: u64,
}

impl ByteRange {
    /// Number of bytes in the range.
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Always false: a satisfiable range holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The Content-Range value for this range of a `total`-byte representation.
    pub fn content_range(&self, total: u64) -> String {
        format!("bytes {}-{}/{}", self.start, self.end, total)
    }
}

/// What a Range header asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeRequest {
    /// Ignore the header and send the whole representation (bad syntax, other unit, too many).
    Full,
    /// 206 with these ranges (sorted, overlapping and adjacent ones coalesced).
    Partial(Vec<ByteRange>),
    /// 416 Range Not Satisfiable.
    Unsatisfiable,
}

/// Parses a Range header value against a representation of `len` bytes.
pub fn parse(value: &str, len: u64) -> RangeRequest {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    let mut ranges = Vec::new();
    let mut any_valid_syntax = false;
    for (count, part) in spec.split(',').enumerate() {
        if count >= MAX_RANGES {
            return RangeRequest::Full;
        }
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let Some((first, last)) = part.split_once('-') else {
            return RangeRequest::Full;
        };
        let (first, last) = (first.trim(), last.trim());
        if first.is_empty() {
            // Suffix range: the last N bytes.
            let Some(n) = parse_num(last) else { return RangeRequest::Full };
            any_valid_syntax = true;
            if n == 0 || len == 0 {
                continue;
            }
            ranges.push(ByteRange { start: len.saturating_sub(n), end: len - 1 });
        } else {
            let Some(start) = parse_num(first) else { return RangeRequest::Full };
            let end = if last.is_empty() {
                None
            } else {
                match parse_num(last) {
                    Some(e) if e >= start => Some(e),
                    _ => return RangeRequest::Full,
                }
            };
            any_valid_syntax = true;
            if start >= len {
                continue;
            }
            let end = end.map_or(len - 1, |e| e.min(len - 1));
            ranges.push(ByteRange { start, end });
        }
    }
    if !any_valid_syntax {
        return RangeRequest::Full;
    }
    if ranges.is_empty() {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Partial(coalesce(ranges))
}

fn parse_num(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn coalesce(mut ranges: Vec<ByteRange>) -> Vec<ByteRange> {
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<ByteRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(prev) if r.start <= prev.end.saturating_add(1) => prev.end = prev.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// The multipart/byteranges framing around each part, so the body length is known up front.
#[derive(Debug, Clone)]
pub struct Multipart {
    /// The boundary string (without leading dashes).
    pub boundary: String,
    /// For each range: its part header (starting with CRLF-- boundary) and the range.
    pub parts: Vec<(String, ByteRange)>,
    /// The closing delimiter.
    pub trailer: String,
}

impl Multipart {
    /// Lays out the parts for `ranges` of a `total`-byte representation of `content_type`.
    pub fn new(boundary: String, content_type: &str, ranges: &[ByteRange], total: u64) -> Multipart {
        let parts = ranges
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let lead = if i == 0 { "" } else { "\r\n" };
                let head = format!(
                    "{lead}--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: {}\r\n\r\n",
                    r.content_range(total)
                );
                (head, *r)
            })
            .collect();
        let trailer = format!("\r\n--{boundary}--\r\n");
        Multipart { boundary, parts, trailer }
    }

    /// The Content-Type header of the whole response.
    pub fn content_type(&self) -> String {
        format!("multipart/byteranges; boundary={}", self.boundary)
    }

    /// The total body length.
    pub fn body_len(&self) -> u64 {
        self.parts.iter().map(|(h, r)| h.len() as u64 + r.len()).sum::<u64>() + self.trailer.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    #[test]
    fn single_ranges() {
        assert_eq!(parse("bytes=0-99", 1000), RangeRequest::Partial(vec![r(0, 99)]));
        assert_eq!(parse("bytes=900-", 1000), RangeRequest::Partial(vec![r(900, 999)]));
        assert_eq!(parse("bytes=-100", 1000), RangeRequest::Partial(vec![r(900, 999)]));
        assert_eq!(parse("bytes=-5000", 1000), RangeRequest::Partial(vec![r(0, 999)]));
        assert_eq!(parse("bytes=990-5000", 1000), RangeRequest::Partial(vec![r(990, 999)]));
    }

    #[test]
    fn unsatisfiable_and_ignored() {
        assert_eq!(parse("bytes=1000-", 1000), RangeRequest::Unsatisfiable);
        assert_eq!(parse("bytes=-0", 1000), RangeRequest::Unsatisfiable);
        assert_eq!(parse("bytes=0-", 0), RangeRequest::Unsatisfiable);
        assert_eq!(parse("items=0-5", 1000), RangeRequest::Full);
        assert_eq!(parse("bytes=5-1", 1000), RangeRequest::Full);
        assert_eq!(parse("bytes=a-b", 1000), RangeRequest::Full);
        assert_eq!(parse("bytes=", 1000), RangeRequest::Full);
        assert_eq!(parse("bytes=99999999999999999999-", 1000), RangeRequest::Full);
        let many: Vec<String> = (0..40).map(|i| format!("{}-{}", i * 2, i * 2)).collect();
        assert_eq!(parse(&format!("bytes={}", many.join(",")), 1000), RangeRequest::Full);
    }

    #[test]
    fn multiple_ranges_are_sorted_and_coalesced() {
        assert_eq!(parse("bytes=500-600, 0-10", 1000), RangeRequest::Partial(vec![r(0, 10), r(500, 600)]));
        assert_eq!(parse("bytes=0-10,5-20,21-30", 1000), RangeRequest::Partial(vec![r(0, 30)]));
        assert_eq!(parse("bytes=0-1,2000-3000", 1000), RangeRequest::Partial(vec![r(0, 1)]));
    }

    #[test]
    fn multipart_length_matches_layout() {
        let m = Multipart::new("B".into(), "text/plain", &[r(0, 1), r(5, 9)], 10);
        let mut body = String::new();
        for (head, range) in &m.parts {
            body.push_str(head);
            body.push_str(&"x".repeat(range.len() as usize));
        }
        body.push_str(&m.trailer);
        assert_eq!(body.len() as u64, m.body_len());
        assert!(body.starts_with(
            "--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\nxx\r\n--B\r\n"
        ));
        assert!(body.ends_with("\r\n--B--\r\n"));
    }

    proptest::proptest! {
        #[test]
        fn ranges_stay_inside_the_representation(spec in "bytes=[0-9,-]{0,30}", len in 0u64..5000) {
            if let RangeRequest::Partial(rs) = parse(&spec, len) {
                proptest::prop_assert!(!rs.is_empty());
                for w in rs.windows(2) {
                    proptest::prop_assert!(w[0].end + 1 < w[1].start);
                }
                for r in rs {
                    proptest::prop_assert!(r.start <= r.end && r.end < len);
                }
            }
        }
    }
}
