//! The HTTP/2 driver's memo of static answers: a plain `GET` of a file (no conditional or
//! range headers, no body) whose answer was a complete in-memory `200` with an `ETag` is kept,
//! per connection, as its fields (this second's `Date` included), their last HPACK encoding
//! and the cached body bytes, so the next request for it during the same second skips the
//! router (path checks, `stat`, header building) and costs a lookup, one copy of the encoded
//! head (while the HPACK table is unchanged) and a reference to the body. Entries end with the
//! second (the `Date` granularity; a file changed on disk is seen at the next second) and when
//! the connection itself writes (PUT/DELETE).

use crate::h2core::hpack_enc::HeadCache;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, header};

/// Entries kept per connection (a page and its resources).
const ENTRIES: usize = 32;

/// What a memoized answer depends on: the site (authority or Host), the target, and the
/// accepted codings (precompressed variants), in one allocation (target, host, codings) so a
/// lookup reads one place in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    bytes: Box<[u8]>,
    target_len: usize,
    host_len: usize,
}

/// Request fields the file handler reads besides the key: requests with any of them take the
/// router.
const PER_REQUEST: [header::HeaderName; 7] = [
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
    header::RANGE,
    header::EXPECT,
];

/// A [`Key`] borrowed from its request: looking up a hit allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRef<'a> {
    host: &'a [u8],
    target: &'a [u8],
    accept_encoding: &'a [u8],
}

impl<'a> KeyRef<'a> {
    /// The key of a request whose answer may come from the memo: a `GET` without a body and
    /// without per-request fields.
    pub fn of<B>(req: &'a Request<B>, body_empty: bool) -> Option<KeyRef<'a>> {
        if req.method() != Method::GET || !body_empty {
            return None;
        }
        // One pass over the few fields (names compare as enums), not a hash lookup per name.
        let mut host_field = None;
        let mut accept_encoding: &[u8] = &[];
        for (name, value) in req.headers() {
            if PER_REQUEST.contains(name) {
                return None;
            }
            if name == header::HOST {
                host_field = Some(value.as_bytes());
            } else if name == header::ACCEPT_ENCODING {
                accept_encoding = value.as_bytes();
            }
        }
        let host = match req.uri().authority() {
            Some(a) => a.as_str().as_bytes(),
            None => host_field?,
        };
        let target = req.uri().path_and_query().map_or(&b"/"[..], |p| p.as_str().as_bytes());
        Some(KeyRef { host, target, accept_encoding })
    }

    /// The owned key, to keep with an answer.
    pub fn to_owned(self) -> Key {
        Key {
            bytes: [self.target, self.host, self.accept_encoding].concat().into_boxed_slice(),
            target_len: self.target.len(),
            host_len: self.host.len(),
        }
    }

    fn matches(&self, k: &Key) -> bool {
        let (target, rest) = (self.target.len(), self.host.len() + self.accept_encoding.len());
        if k.target_len != target || k.host_len != self.host.len() || k.bytes.len() != target + rest {
            return false;
        }
        let (t, rest) = k.bytes.split_at(target);
        let (h, ae) = rest.split_at(k.host_len);
        same(self.target, t) && same(self.host, h) && same(self.accept_encoding, ae)
    }
}

/// Whether two byte strings are equal, compared eight bytes at a time in
/// line: the parts of a key are short, and three calls to `memcmp` per lookup showed in
/// profiles.
fn same(a: &[u8], b: &[u8]) -> bool {
    let word = |s: &[u8], at: usize| {
        s.get(at..at + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()).map(u64::from_ne_bytes)
    };
    if a.len() != b.len() {
        return false;
    }
    if a.len() < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    // Whole words, then the last eight bytes (overlapping the words before when not aligned).
    let mut at = 0;
    while at + 8 <= a.len() {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    at == a.len() || word(a, a.len() - 8) == word(b, b.len() - 8)
}

/// A memoized answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The response fields (lower case, no connection-specific ones, `Date` last).
    pub fields: Vec<(HeaderName, HeaderValue)>,
    /// The fields' last HPACK encoding, reused while the connection's table is unchanged.
    pub head: HeadCache,
    /// The whole body.
    pub body: Bytes,
}

impl Answer {
    /// An answer not encoded yet.
    pub fn new(fields: Vec<(HeaderName, HeaderValue)>, body: Bytes) -> Answer {
        Answer { fields, head: HeadCache::default(), body }
    }
}

struct Entry {
    key: Key,
    second: u64,
    answer: Answer,
}

/// The memo of one connection.
#[derive(Default)]
pub struct Memo {
    entries: Vec<Entry>,
    next: usize,
}

impl Memo {
    /// The answer for `key` memoized during `second`, if any.
    pub fn get(&mut self, key: KeyRef<'_>, second: u64) -> Option<&mut Answer> {
        self.entries.iter_mut().find(|e| e.second == second && key.matches(&e.key)).map(|e| &mut e.answer)
    }

    /// Keeps `answer` for `key` until `second` ends, replacing the oldest entry when full.
    pub fn put(&mut self, key: Key, second: u64, answer: Answer) -> &mut Answer {
        let entry = Entry { key, second, answer };
        let slot = if let Some(i) = self.entries.iter().position(|e| e.key == entry.key || e.second != second)
        {
            i
        } else if self.entries.len() < ENTRIES {
            self.entries.push(entry);
            return &mut self.entries.last_mut().expect("just pushed").answer;
        } else {
            self.next = (self.next + 1) % ENTRIES;
            self.next
        };
        self.entries[slot] = entry;
        &mut self.entries[slot].answer
    }

    /// Forgets everything (the connection changed files).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, extra: Option<(&str, &str)>) -> Request<()> {
        let mut b = Request::builder().uri(uri);
        if let Some((n, v)) = extra {
            b = b.header(n, v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn only_plain_gets_have_keys() {
        assert!(KeyRef::of(&req("http://a/x", None), true).is_some());
        assert!(KeyRef::of(&req("http://a/x", None), false).is_none());
        assert!(KeyRef::of(&req("http://a/x", Some(("range", "bytes=0-1"))), true).is_none());
        assert!(KeyRef::of(&req("http://a/x", Some(("if-none-match", "\"x\""))), true).is_none());
        assert!(KeyRef::of(&req("/x", None), true).is_none()); // no authority, no Host
        assert!(KeyRef::of(&req("/x", Some(("host", "a"))), true).is_some());
        let head = Request::builder().method("HEAD").uri("http://a/x").body(()).unwrap();
        assert!(KeyRef::of(&head, true).is_none());
    }

    #[test]
    fn byte_strings_compare_whole() {
        let long = b"/images/some-rather-long-name.png";
        for n in 0..long.len() {
            assert!(same(&long[..n], &long[..n]));
            for i in 0..n {
                let mut other = long[..n].to_vec();
                other[i] ^= 1;
                assert!(!same(&long[..n], &other), "length {n}, byte {i}");
            }
            assert!(!same(&long[..n], &long[..n + 1]));
        }
    }

    #[test]
    fn entries_last_one_second_and_differ_by_coding() {
        let mut m = Memo::default();
        let (plain, gzip) = (req("http://a/x", None), req("http://a/x", Some(("accept-encoding", "gzip"))));
        let k = KeyRef::of(&plain, true).unwrap();
        let gz = KeyRef::of(&gzip, true).unwrap();
        let a = Answer::new(Vec::new(), Bytes::from_static(b"b"));
        m.put(k.to_owned(), 7, a);
        assert!(m.get(k, 7).is_some());
        assert!(m.get(gz, 7).is_none());
        assert!(m.get(k, 8).is_none());
        for i in 0..100 {
            let r = req(&format!("http://a/{i}"), None);
            m.put(KeyRef::of(&r, true).unwrap().to_owned(), 8, Answer::new(Vec::new(), Bytes::new()));
        }
        assert!(m.entries.len() <= ENTRIES);
        m.clear();
        assert!(m.get(k, 8).is_none());
    }
}
