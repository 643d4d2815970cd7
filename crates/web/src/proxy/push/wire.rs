//! The push request and reply bodies. The request is plain text, one absolute `http://` or
//! `https://` URL per line (blank lines and `#` comments ignored), exactly the URLs clients
//! will ask the replica for. The reply is one line per URL, in order:
//! `RESULT<TAB>URL<TAB>DETAIL`, where RESULT is `stored`, `not-stored` (the origin's
//! Cache-Control or size forbade it) or `failed` (the origin could not be fetched).

use http::Uri;

/// Longest URL accepted in a push, in bytes.
pub const MAX_URL: usize = 8 * 1024;

/// Why a push body was refused (400 or 413).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Not UTF-8.
    #[error("the push body is not UTF-8 text")]
    NotText,
    /// A line is not an absolute http(s) URL with a host, or carries userinfo or a fragment.
    #[error("line {0}: not an absolute http:// or https:// URL without userinfo")]
    BadUrl(usize),
    /// No URL at all.
    #[error("the push lists no URL")]
    Empty,
    /// More URLs than allowed.
    #[error("the push lists more than {0} URLs")]
    TooMany(usize),
}

impl BodyError {
    /// The HTTP status for this refusal.
    pub fn status(&self) -> u16 {
        match self {
            BodyError::TooMany(_) => 413,
            _ => 400,
        }
    }
}

/// Parses a push body into its URLs (duplicates dropped, order kept), at most `max_urls`.
pub fn parse_body(body: &[u8], max_urls: usize) -> Result<Vec<Uri>, BodyError> {
    let text = std::str::from_utf8(body).map_err(|_| BodyError::NotText)?;
    let mut out: Vec<Uri> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let uri = parse_url(line).ok_or(BodyError::BadUrl(i + 1))?;
        if out.iter().any(|u| u == &uri) {
            continue;
        }
        if out.len() == max_urls {
            return Err(BodyError::TooMany(max_urls));
        }
        out.push(uri);
    }
    if out.is_empty() {
        return Err(BodyError::Empty);
    }
    Ok(out)
}

/// One URL of a push: absolute http(s) with a host, no userinfo, no fragment.
pub fn parse_url(s: &str) -> Option<Uri> {
    if s.len() > MAX_URL || s.contains('#') {
        return None;
    }
    let uri: Uri = s.parse().ok()?;
    let auth = uri.authority()?;
    if auth.as_str().contains('@') || auth.host().is_empty() {
        return None;
    }
    matches!(uri.scheme_str(), Some("http") | Some("https")).then_some(uri)
}

/// What happened to one pushed URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Fetched and stored: a request for it is now a hit.
    Stored,
    /// Fetched, and the origin's answer may not be stored (no-store, private, too large...).
    NotStored,
    /// Not fetched (origin unreachable, refused, no origin for the host...).
    Failed,
}

impl Outcome {
    /// The reply word.
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Stored => "stored",
            Outcome::NotStored => "not-stored",
            Outcome::Failed => "failed",
        }
    }
}

/// One reply line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyLine {
    /// What happened.
    pub outcome: Outcome,
    /// The URL as pushed.
    pub url: String,
    /// Details for people (status, size, freshness, or why not).
    pub detail: String,
}

impl ReplyLine {
    /// The line, without its newline (tabs and newlines in fields become spaces).
    pub fn render(&self) -> String {
        let clean = |s: &str| s.replace(['\t', '\r', '\n'], " ");
        format!("{}\t{}\t{}", self.outcome.word(), clean(&self.url), clean(&self.detail))
    }
}

/// Parses a reply body (the client's side); lines that are not reply lines are skipped.
pub fn parse_reply(body: &str) -> Vec<ReplyLine> {
    body.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, '\t');
            let outcome = match f.next()? {
                "stored" => Outcome::Stored,
                "not-stored" => Outcome::NotStored,
                "failed" => Outcome::Failed,
                _ => return None,
            };
            let url = f.next()?.to_string();
            Some(ReplyLine { outcome, url, detail: f.next().unwrap_or("").to_string() })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_comments_and_duplicates() {
        let b = b"# pushed\nhttp://www.example.com/a.png\n\n  https://www.example.com:8443/b?x=1  \nhttp://www.example.com/a.png\n";
        let u = parse_body(b, 2).unwrap();
        assert_eq!(u.len(), 2);
        assert_eq!(u[1].to_string(), "https://www.example.com:8443/b?x=1");
    }

    #[test]
    fn bad_bodies_are_refused() {
        assert_eq!(parse_body(b"\xff\xfe", 10), Err(BodyError::NotText));
        assert_eq!(parse_body(b"# nothing\n", 10), Err(BodyError::Empty));
        assert_eq!(parse_body(b"http://a/1\nhttp://a/2\n", 1), Err(BodyError::TooMany(1)));
        for bad in
            ["/relative", "ftp://a/b", "http://user@a/b", "http://a/b#frag", "http:///x", "*", "http://"]
        {
            assert!(matches!(parse_body(bad.as_bytes(), 10), Err(BodyError::BadUrl(1))), "{bad}");
        }
        let long = format!("http://a/{}", "x".repeat(MAX_URL));
        assert_eq!(parse_body(long.as_bytes(), 10), Err(BodyError::BadUrl(1)));
        assert_eq!(BodyError::TooMany(1).status(), 413);
    }

    #[test]
    fn junk_never_panics() {
        let mut seed = 0x1234_5678u32;
        for len in 0..300 {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    b"http:/s\n#@:?x\t\xff "[(seed >> 16) as usize % 16]
                })
                .collect();
            let _ = parse_body(&junk, 5);
            let _ = parse_reply(&String::from_utf8_lossy(&junk));
        }
    }

    #[test]
    fn reply_lines_round_trip() {
        let lines = [
            ReplyLine { outcome: Outcome::Stored, url: "http://a/x".into(), detail: "200, 5 bytes".into() },
            ReplyLine { outcome: Outcome::NotStored, url: "http://a/y".into(), detail: "no-store".into() },
            ReplyLine { outcome: Outcome::Failed, url: "http://a/z".into(), detail: "502\tbad".into() },
        ];
        let text: String = lines.iter().map(|l| l.render() + "\n").collect();
        let back = parse_reply(&text);
        assert_eq!(back[..2], lines[..2]);
        assert_eq!(back[2].detail, "502 bad");
    }
}
