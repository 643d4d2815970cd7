//! Safe request-path handling: percent-decoding and normalisation of the URI path into segments
//! that can only name something under the site root. `..` (plain or `%2e%2e`), NUL bytes,
//! malformed escapes and backslashes are refused here; symlinks that leave the root are caught
//! later by [`within_root`] after the file system resolves them.

use std::path::{Path, PathBuf};

/// Why a request path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start with `/` (origin-form is required for files).
    #[error("request path must start with /")]
    NotAbsolute,
    /// A `%` escape was not followed by two hex digits.
    #[error("malformed percent escape")]
    BadEscape,
    /// The path contains a NUL byte (encoded or not).
    #[error("NUL byte in path")]
    Nul,
    /// A `..` segment (also when percent-encoded) would climb above the root.
    #[error("path traversal")]
    Traversal,
    /// The path is too long or has too many segments.
    #[error("path too long")]
    TooLong,
}

/// Longest decoded path accepted, in bytes.
pub const MAX_PATH: usize = 4096;
/// Most segments accepted in one path.
pub const MAX_SEGMENTS: usize = 64;

/// A cleaned request path: decoded segments without `.`/empty ones, and whether it ended in `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanPath {
    /// The decoded segments, each non-empty, never `.` or `..`, never containing `/` or NUL.
    pub segments: Vec<String>,
    /// The original path ended with `/` (a directory was asked for).
    pub trailing_slash: bool,
}

impl CleanPath {
    /// The path relative to a site root (empty for the root itself).
    pub fn relative(&self) -> PathBuf {
        self.segments.iter().collect()
    }

    /// The canonical URL path (`/a/b` or `/a/b/`), percent-encoded for use in a Location header.
    pub fn url(&self) -> String {
        let mut out = String::from("/");
        for (i, seg) in self.segments.iter().enumerate() {
            if i > 0 {
                out.push('/');
            }
            out.push_str(&encode_segment(seg));
        }
        if self.trailing_slash && !self.segments.is_empty() {
            out.push('/');
        }
        out
    }

    /// Whether any segment is a hidden name (starts with `.`), other than `.well-known`.
    pub fn has_hidden_segment(&self) -> bool {
        self.segments.iter().any(|s| s.starts_with('.') && s != ".well-known")
    }
}

/// Decodes and normalises the path part of a request target (no query string).
pub fn clean(raw: &str) -> Result<CleanPath, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if raw.len() > MAX_PATH * 3 {
        return Err(PathError::TooLong);
    }
    let decoded = percent_decode(raw.as_bytes())?;
    if decoded.len() > MAX_PATH {
        return Err(PathError::TooLong);
    }
    if decoded.contains(&0) {
        return Err(PathError::Nul);
    }
    // Non-UTF-8 names are refused rather than guessed at; sites use UTF-8 names.
    let decoded = String::from_utf8(decoded).map_err(|_| PathError::BadEscape)?;
    let mut segments = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => return Err(PathError::Traversal),
            s if s.contains('\\') => return Err(PathError::Traversal),
            s => segments.push(s.to_string()),
        }
        if segments.len() > MAX_SEGMENTS {
            return Err(PathError::TooLong);
        }
    }
    let trailing_slash = decoded.ends_with('/') || decoded.ends_with("/.");
    Ok(CleanPath { segments, trailing_slash })
}

/// Percent-decodes bytes; `+` stays `+` (this is a path, not a form).
pub fn percent_decode(input: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            let hi = input.get(i + 1).and_then(|b| hex_val(*b));
            let lo = input.get(i + 2).and_then(|b| hex_val(*b));
            match (hi, lo) {
                (Some(h), Some(l)) => out.push(h << 4 | l),
                _ => return Err(PathError::BadEscape),
            }
            i += 3;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-encodes one path segment (everything but unreserved characters and a few safe ones).
pub fn encode_segment(seg: &str) -> String {
    let mut out = String::with_capacity(seg.len());
    for &b in seg.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether `resolved` (already canonicalised, symlinks followed) lies inside `root` (canonical).
pub fn within_root(root: &Path, resolved: &Path) -> bool {
    resolved.starts_with(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_split_into_segments() {
        let p = clean("/a/b.html").unwrap();
        assert_eq!(p.segments, vec!["a", "b.html"]);
        assert!(!p.trailing_slash);
        assert_eq!(clean("/").unwrap().segments, Vec::<String>::new());
        assert!(clean("/dir/").unwrap().trailing_slash);
        assert_eq!(clean("//a/./b//").unwrap().segments, vec!["a", "b"]);
    }

    #[test]
    fn traversal_is_refused_in_every_spelling() {
        for bad in ["/../etc/passwd", "/a/../../b", "/%2e%2e/x", "/%2E%2e/x", "/a/%2e%2e", "/..", "/a\\..\\b"]
        {
            assert_eq!(clean(bad), Err(PathError::Traversal), "{bad}");
        }
        // An encoded slash cannot smuggle a `..` either: decoding happens before splitting.
        assert_eq!(clean("/a%2f..%2fb"), Err(PathError::Traversal));
    }

    #[test]
    fn nul_and_bad_escapes_are_refused() {
        assert_eq!(clean("/a%00b"), Err(PathError::Nul));
        assert_eq!(clean("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(clean("/a%4"), Err(PathError::BadEscape));
        assert_eq!(clean("/%ff%fe"), Err(PathError::BadEscape));
        assert_eq!(clean("a/b"), Err(PathError::NotAbsolute));
        assert_eq!(clean(&"/a".repeat(100)), Err(PathError::TooLong));
    }

    #[test]
    fn encoded_names_decode_and_reencode() {
        let p = clean("/my%20file%21.txt").unwrap();
        assert_eq!(p.segments, vec!["my file!.txt"]);
        assert_eq!(p.url(), "/my%20file!.txt");
        assert_eq!(clean("/caf%C3%A9/").unwrap().url(), "/caf%C3%A9/");
    }

    #[test]
    fn hidden_segments_are_flagged_except_well_known() {
        assert!(clean("/.git/config").unwrap().has_hidden_segment());
        assert!(!clean("/.well-known/x").unwrap().has_hidden_segment());
    }

    #[test]
    fn root_containment() {
        assert!(within_root(Path::new("/srv/site"), Path::new("/srv/site/a")));
        assert!(!within_root(Path::new("/srv/site"), Path::new("/srv/site2/a")));
        assert!(!within_root(Path::new("/srv/site"), Path::new("/etc/passwd")));
    }

    proptest::proptest! {
        #[test]
        fn cleaned_segments_never_escape(raw in "/[a-z./%0-9A-F\\\\]{0,40}") {
            if let Ok(p) = clean(&raw) {
                for s in &p.segments {
                    proptest::prop_assert!(s != ".." && s != "." && !s.is_empty());
                    proptest::prop_assert!(!s.contains('/') && !s.contains('\0'));
                }
                // The canonical URL cleans to the same path.
                proptest::prop_assert_eq!(clean(&p.url()).unwrap().segments, p.segments.clone());
            }
        }
    }
}
