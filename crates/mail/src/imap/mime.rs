//! MIME structure for IMAP FETCH: ENVELOPE, BODY/BODYSTRUCTURE and `BODY[section]` byte
//! ranges, from mail-parser's parse of the message in its wire form (CRLF line endings, so
//! every offset and size is what the client receives).

use std::borrow::Cow;
use std::ops::Range;

use mail_parser::{Address, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders, PartType};

use super::wire::{nstring, string};

/// The shared parser (building one allocates its header table).
pub(crate) fn parser() -> &'static MessageParser {
    static P: std::sync::OnceLock<MessageParser> = std::sync::OnceLock::new();
    P.get_or_init(MessageParser::default)
}

/// `data` with every bare LF turned into CRLF (the form IMAP sends).
pub fn to_crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 30 + 2);
    let mut prev = 0u8;
    for &b in data {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// The end of the header block (the offset just after the empty line), or the message's
/// length when there is no body.
pub fn header_end(raw: &[u8]) -> usize {
    if raw.starts_with(b"\r\n") {
        return 2;
    }
    let mut i = 0;
    while let Some(p) = raw[i..].iter().position(|&b| b == b'\n') {
        let at = i + p + 1;
        if raw[at..].starts_with(b"\r\n") {
            return at + 2;
        }
        if raw[at..].starts_with(b"\n") {
            return at + 1;
        }
        i = at;
    }
    raw.len()
}

/// One node of the MIME tree: its header and body byte ranges and what it holds.
#[derive(Debug, Clone)]
pub struct Node {
    /// The part's header block (for the root: the message header; for parts: MIME headers),
    /// blank line included.
    pub header: Range<usize>,
    /// The body bytes (still transfer-encoded).
    pub body: Range<usize>,
    /// What is inside.
    pub kind: Kind,
    /// The BODYSTRUCTURE text of this node (basic and extension fields), computed once.
    structure: Vec<u8>,
    structure_basic: Vec<u8>,
}

/// What a MIME node holds.
#[derive(Debug, Clone)]
pub enum Kind {
    /// A single part.
    Leaf,
    /// A multipart with children.
    Multipart(Vec<Node>),
    /// A message/rfc822 with its own root node.
    Message(Box<Node>),
}

/// A parsed message.
pub struct Parsed {
    /// The root node.
    pub root: Node,
    /// The ENVELOPE text.
    pub envelope: Vec<u8>,
}

/// Parses `raw` (CRLF form). Never fails: unparseable input becomes a single text part.
pub fn parse(raw: &[u8]) -> Parsed {
    let hend = header_end(raw);
    match parser().parse(raw) {
        Some(msg) if !msg.parts.is_empty() => {
            let root = node_of_message(raw, &msg, 0, 0, raw.len(), 0);
            let envelope = envelope(raw, &msg);
            Parsed { root, envelope }
        }
        _ => {
            let mut root = Node {
                header: 0..hend,
                body: hend..raw.len(),
                kind: Kind::Leaf,
                structure: Vec::new(),
                structure_basic: Vec::new(),
            };
            let s = leaf_structure(raw, None, &root.body, None, true);
            root.structure_basic = leaf_structure(raw, None, &root.body, None, false);
            root.structure = s;
            Parsed { root, envelope: b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)".to_vec() }
        }
    }
}

const MAX_DEPTH: usize = 20;

fn node_of_message(
    raw: &[u8],
    msg: &Message,
    part_id: usize,
    start: usize,
    end: usize,
    depth: usize,
) -> Node {
    let part = &msg.parts[part_id.min(msg.parts.len() - 1)];
    let header = if part_id == 0 {
        start..(part.offset_body as usize).clamp(start, end)
    } else {
        clamp(part.offset_header, part.offset_body, raw.len())
    };
    let body = if part_id == 0 {
        (part.offset_body as usize).clamp(start, end)..end.min(raw.len())
    } else {
        clamp(part.offset_body, part.offset_end, raw.len())
    };
    let same_buffer =
        |m: &Message| std::ptr::eq(m.raw_message.as_ref().as_ptr(), msg.raw_message.as_ref().as_ptr());
    let kind = match &part.body {
        PartType::Multipart(children) if depth < MAX_DEPTH => Kind::Multipart(
            children
                .iter()
                .filter(|&&c| (c as usize) < msg.parts.len() && c as usize != part_id)
                .map(|&c| node_of_message(raw, msg, c as usize, 0, raw.len(), depth + 1))
                .collect(),
        ),
        PartType::Message(inner) if depth < MAX_DEPTH && !inner.parts.is_empty() && same_buffer(inner) => {
            Kind::Message(Box::new(node_of_message(raw, inner, 0, body.start, body.end, depth + 1)))
        }
        _ => Kind::Leaf,
    };
    let mut node = Node { header, body, kind, structure: Vec::new(), structure_basic: Vec::new() };
    let inner_env = match &part.body {
        PartType::Message(inner) if matches!(node.kind, Kind::Message(_)) => Some(envelope(raw, inner)),
        _ => None,
    };
    for extended in [true, false] {
        let s = match &node.kind {
            Kind::Multipart(children) => {
                let mut s = b"(".to_vec();
                if children.is_empty() {
                    // RFC 3501 needs at least one part: show an empty text part.
                    s.extend_from_slice(b"(\"text\" \"plain\" NIL NIL NIL \"7bit\" 0 0)");
                }
                for c in children {
                    s.extend_from_slice(if extended { &c.structure } else { &c.structure_basic });
                }
                let ct = part.content_type();
                s.push(b' ');
                string(&mut s, ct.and_then(|c| c.subtype()).unwrap_or("mixed").as_bytes());
                if extended {
                    s.push(b' ');
                    params(&mut s, ct.and_then(|c| c.attributes()));
                    s.push(b' ');
                    extension_tail(&mut s, part);
                }
                s.push(b')');
                s
            }
            Kind::Message(inner) => {
                let mut s = leaf_head(raw, Some(part), &node.body, extended);
                s.push(b' ');
                s.extend_from_slice(inner_env.as_deref().unwrap_or(b"NIL"));
                s.push(b' ');
                s.extend_from_slice(if extended { &inner.structure } else { &inner.structure_basic });
                s.extend_from_slice(format!(" {}", line_count(&raw[node.body.clone()])).as_bytes());
                if extended {
                    s.extend_from_slice(b" NIL ");
                    extension_tail(&mut s, part);
                }
                s.push(b')');
                s
            }
            Kind::Leaf => leaf_structure(raw, Some(part), &node.body, None, extended),
        };
        if extended {
            node.structure = s;
        } else {
            node.structure_basic = s;
        }
    }
    node
}

fn clamp(a: u32, b: u32, len: usize) -> Range<usize> {
    let a = (a as usize).min(len);
    let b = (b as usize).clamp(a, len);
    a..b
}

fn line_count(body: &[u8]) -> usize {
    let n = body.iter().filter(|&&b| b == b'\n').count();
    if !body.is_empty() && body.last() != Some(&b'\n') { n + 1 } else { n }
}

/// `("TYPE" "SUBTYPE" (params) id description encoding size` (no closing parenthesis).
fn leaf_head(raw: &[u8], part: Option<&MessagePart>, body: &Range<usize>, _extended: bool) -> Vec<u8> {
    let ct = part.and_then(|p| p.content_type());
    let (t, st) = match ct {
        Some(c) => (
            c.ctype().to_string(),
            c.subtype()
                .unwrap_or(if c.ctype().eq_ignore_ascii_case("text") { "plain" } else { "octet-stream" })
                .to_string(),
        ),
        None => ("text".to_string(), "plain".to_string()),
    };
    let mut s = b"(".to_vec();
    string(&mut s, t.as_bytes());
    s.push(b' ');
    string(&mut s, st.as_bytes());
    s.push(b' ');
    match ct.and_then(|c| c.attributes()) {
        Some(a) if !a.is_empty() => params(&mut s, Some(a)),
        _ if t.eq_ignore_ascii_case("text") => s.extend_from_slice(b"(\"charset\" \"us-ascii\")"),
        _ => s.extend_from_slice(b"NIL"),
    }
    s.push(b' ');
    nstring(
        &mut s,
        part.and_then(|p| p.content_id())
            .map(|v| format!("<{}>", v.trim_matches(['<', '>'])).into_bytes())
            .as_deref(),
    );
    s.push(b' ');
    nstring(&mut s, part.and_then(|p| p.content_description()).map(str::as_bytes));
    s.push(b' ');
    string(&mut s, part.and_then(|p| p.content_transfer_encoding()).unwrap_or("7bit").as_bytes());
    s.extend_from_slice(format!(" {}", raw[body.clone()].len()).as_bytes());
    let _ = raw;
    s
}

fn leaf_structure(
    raw: &[u8],
    part: Option<&MessagePart>,
    body: &Range<usize>,
    _x: Option<()>,
    extended: bool,
) -> Vec<u8> {
    let mut s = leaf_head(raw, part, body, extended);
    let is_text = match part.and_then(|p| p.content_type()) {
        Some(c) => c.ctype().eq_ignore_ascii_case("text"),
        None => true,
    };
    if is_text {
        s.extend_from_slice(format!(" {}", line_count(&raw[body.clone()])).as_bytes());
    }
    if extended {
        s.extend_from_slice(b" NIL ");
        match part {
            Some(p) => extension_tail(&mut s, p),
            None => s.extend_from_slice(b"NIL NIL NIL"),
        }
    }
    s.push(b')');
    s
}

/// `disposition language location` extension fields.
fn extension_tail(s: &mut Vec<u8>, part: &MessagePart) {
    match part.content_disposition() {
        Some(d) => {
            s.push(b'(');
            string(s, d.ctype().as_bytes());
            s.push(b' ');
            params(s, d.attributes());
            s.push(b')');
        }
        None => s.extend_from_slice(b"NIL"),
    }
    s.push(b' ');
    match part.content_language() {
        HeaderValue::Text(t) => {
            s.push(b'(');
            string(s, t.as_bytes());
            s.push(b')');
        }
        HeaderValue::TextList(l) if !l.is_empty() => {
            s.push(b'(');
            for (i, t) in l.iter().enumerate() {
                if i > 0 {
                    s.push(b' ');
                }
                string(s, t.as_bytes());
            }
            s.push(b')');
        }
        _ => s.extend_from_slice(b"NIL"),
    }
    s.push(b' ');
    nstring(s, part.content_location().map(str::as_bytes));
}

fn params(s: &mut Vec<u8>, attrs: Option<&[mail_parser::Attribute]>) {
    match attrs {
        Some(a) if !a.is_empty() => {
            s.push(b'(');
            for (i, at) in a.iter().enumerate() {
                if i > 0 {
                    s.push(b' ');
                }
                string(s, at.name.as_bytes());
                s.push(b' ');
                string(s, encode_word(&at.value).as_bytes());
            }
            s.push(b')');
        }
        _ => s.extend_from_slice(b"NIL"),
    }
}

/// Non-ASCII text as an RFC 2047 encoded word (IMAP4rev1 strings are 7-bit).
fn encode_word(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        return Cow::Borrowed(s);
    }
    use base64::Engine;
    Cow::Owned(format!("=?UTF-8?B?{}?=", base64::engine::general_purpose::STANDARD.encode(s.as_bytes())))
}

/// The raw (unfolded) value of the first header `name` in the header block `raw`.
pub fn raw_header(raw: &[u8], name: &str) -> Option<Vec<u8>> {
    let end = header_end(raw);
    let block = &raw[..end];
    let mut i = 0;
    while i < block.len() {
        let line_end = block[i..].iter().position(|&b| b == b'\n').map(|p| i + p + 1).unwrap_or(block.len());
        let line = &block[i..line_end];
        if let Some(colon) = line.iter().position(|&b| b == b':')
            && line[..colon].trim_ascii().eq_ignore_ascii_case(name.as_bytes())
        {
            let mut value = line[colon + 1..].to_vec();
            let mut j = line_end;
            while j < block.len() && (block[j] == b' ' || block[j] == b'\t') {
                let e = block[j..].iter().position(|&b| b == b'\n').map(|p| j + p + 1).unwrap_or(block.len());
                value.extend_from_slice(&block[j..e]);
                j = e;
            }
            let unfolded: Vec<u8> = value.into_iter().filter(|&b| b != b'\r' && b != b'\n').collect();
            return Some(unfolded.trim_ascii().to_vec());
        }
        i = line_end;
    }
    None
}

fn envelope(raw: &[u8], msg: &Message) -> Vec<u8> {
    let root = &msg.parts[0];
    let hdr = &raw[clamp(root.offset_header, root.offset_body, raw.len())];
    let mut s = b"(".to_vec();
    nstring(&mut s, raw_header(hdr, "Date").as_deref());
    s.push(b' ');
    nstring(&mut s, raw_header(hdr, "Subject").as_deref());
    let from = msg.from();
    for (field, fallback) in [
        (from, None),
        (msg.sender(), from),
        (msg.reply_to(), from),
        (msg.to(), None),
        (msg.cc(), None),
        (msg.bcc(), None),
    ] {
        s.push(b' ');
        addresses(&mut s, field.or(fallback));
    }
    s.push(b' ');
    nstring(&mut s, raw_header(hdr, "In-Reply-To").as_deref());
    s.push(b' ');
    nstring(&mut s, raw_header(hdr, "Message-ID").as_deref());
    s.push(b')');
    s
}

fn addresses(s: &mut Vec<u8>, a: Option<&Address>) {
    let one = |s: &mut Vec<u8>, a: &mail_parser::Addr| {
        let addr = a.address.as_deref().unwrap_or("");
        let (local, host) = match addr.rsplit_once('@') {
            Some((l, h)) => (l, Some(h)),
            None => (addr, None),
        };
        s.push(b'(');
        nstring(s, a.name.as_deref().map(|n| encode_word(n).into_owned().into_bytes()).as_deref());
        s.extend_from_slice(b" NIL ");
        nstring(s, if local.is_empty() { None } else { Some(local.as_bytes()) });
        s.push(b' ');
        // RFC 3501: an address without a domain is shown with host "MISSING_DOMAIN"-like NIL.
        nstring(s, host.map(str::as_bytes));
        s.push(b')');
    };
    match a {
        Some(Address::List(list)) if !list.is_empty() => {
            s.push(b'(');
            for a in list {
                one(s, a);
            }
            s.push(b')');
        }
        Some(Address::Group(groups)) if !groups.is_empty() => {
            s.push(b'(');
            for g in groups {
                match &g.name {
                    Some(name) => {
                        s.extend_from_slice(b"(NIL NIL ");
                        string(s, encode_word(name).as_bytes());
                        s.extend_from_slice(b" NIL)");
                        for a in &g.addresses {
                            one(s, a);
                        }
                        s.extend_from_slice(b"(NIL NIL NIL NIL)");
                    }
                    None => {
                        for a in &g.addresses {
                            one(s, a);
                        }
                    }
                }
            }
            s.push(b')');
        }
        _ => s.extend_from_slice(b"NIL"),
    }
}

impl Node {
    /// BODYSTRUCTURE (`extended`) or BODY text of this node.
    pub fn structure(&self, extended: bool) -> &[u8] {
        if extended { &self.structure } else { &self.structure_basic }
    }

    /// The node a section part path names (`1.2.3`), per RFC 3501 §6.4.5: part 1 of a
    /// non-multipart is its body itself; in a message/rfc822 the numbers go on inside it.
    pub fn find(&self, path: &[u32]) -> Option<&Node> {
        let Some((&first, rest)) = path.split_first() else { return Some(self) };
        let child = match &self.kind {
            Kind::Multipart(children) => children.get((first as usize).checked_sub(1)?)?,
            Kind::Message(inner) => return inner.find(path),
            Kind::Leaf if first == 1 => self,
            Kind::Leaf => return None,
        };
        if rest.is_empty() { Some(child) } else { child.find_in(rest) }
    }

    /// Continues a path below `self` (a part found by number).
    fn find_in(&self, path: &[u32]) -> Option<&Node> {
        match &self.kind {
            Kind::Message(inner) => inner.find(path),
            Kind::Multipart(_) => self.find(path),
            Kind::Leaf => None,
        }
    }

    /// The root node of a message/rfc822 part (for `n.HEADER` and `n.TEXT`).
    pub fn message(&self) -> Option<&Node> {
        match &self.kind {
            Kind::Message(inner) => Some(inner),
            _ => None,
        }
    }
}

/// The header block `header` restricted to (or, with `not`, without) the named fields,
/// followed by the blank line (RFC 3501 HEADER.FIELDS / HEADER.FIELDS.NOT).
pub fn header_fields(header: &[u8], names: &[Vec<u8>], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut keep = false;
    while i < header.len() {
        let end = header[i..].iter().position(|&b| b == b'\n').map(|p| i + p + 1).unwrap_or(header.len());
        let line = &header[i..end];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if line[0] != b' ' && line[0] != b'\t' {
            let name = line.iter().position(|&b| b == b':').map(|c| line[..c].trim_ascii()).unwrap_or(b"");
            let listed = names.iter().any(|n| n.eq_ignore_ascii_case(name));
            keep = !name.is_empty() && listed != not;
        }
        if keep {
            out.extend_from_slice(line);
        }
        i = end;
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The fuzz target's body: parses `data` as a message in both line-ending forms and walks
/// every structure, envelope and section the server would send; must never panic.
pub fn fuzz(data: &[u8]) {
    for raw in [data.to_vec(), to_crlf(data)] {
        let p = parse(&raw);
        let _ = (p.root.structure(true), p.root.structure(false), &p.envelope);
        for path in [&[][..], &[1], &[2], &[1, 1], &[1, 2, 1], &[3, 1]] {
            if let Some(n) = p.root.find(path) {
                let _ = (&raw[n.header.clone()], &raw[n.body.clone()]);
                if let Some(m) = n.message() {
                    let _ = header_fields(&raw[m.header.clone()], &[b"subject".to_vec()], true);
                }
            }
        }
        let _ = raw_header(&raw, "From");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MULTI: &[u8] = b"From: Alice <alice@crepes.fr>\r\nTo: bob@hamburger.edu, \"Carol C\" <carol@x.org>\r\nSubject: Hi\r\n there\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <1@crepes.fr>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\nworld\r\n--b1\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n--b1--\r\n";

    #[test]
    fn envelope_and_structure() {
        let p = parse(MULTI);
        let env = String::from_utf8(p.envelope.clone()).unwrap();
        assert!(
            env.starts_with(
                "(\"Mon, 1 Jan 2024 10:00:00 +0000\" \"Hi there\" ((\"Alice\" NIL \"alice\" \"crepes.fr\"))"
            ),
            "{env}"
        );
        assert!(
            env.contains("((NIL NIL \"bob\" \"hamburger.edu\")(\"Carol C\" NIL \"carol\" \"x.org\"))"),
            "{env}"
        );
        assert!(env.ends_with("NIL \"<1@crepes.fr>\")"), "{env}");
        let bs = String::from_utf8(p.root.structure(true).to_vec()).unwrap();
        assert!(bs.starts_with("((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 12 2 NIL NIL NIL NIL)(\"message\" \"rfc822\""), "{bs}");
        assert!(bs.ends_with(" \"mixed\" (\"boundary\" \"b1\") NIL NIL NIL)"), "{bs}");
        let body = String::from_utf8(p.root.structure(false).to_vec()).unwrap();
        assert!(body.ends_with(" \"mixed\")"), "{body}");
        let one = p.root.find(&[1]).unwrap();
        assert_eq!(&MULTI[one.body.clone()], b"hello\r\nworld", "the CRLF before a boundary belongs to it");
        let inner = p.root.find(&[2]).unwrap().message().unwrap();
        assert_eq!(&MULTI[inner.header.clone()], b"Subject: inner\r\n\r\n");
        assert_eq!(&MULTI[p.root.find(&[2, 1]).unwrap().body.clone()], b"inner body");
        assert!(p.root.find(&[3]).is_none());
        assert!(p.root.find(&[1, 1]).is_none());
    }

    #[test]
    fn single_part_and_header_fields() {
        let raw = b"Subject: x\r\nFrom: a@b.c\r\nX-Long: one\r\n two\r\n\r\nbody\r\n";
        let p = parse(raw);
        assert_eq!(&raw[p.root.find(&[1]).unwrap().body.clone()], b"body\r\n");
        assert_eq!(
            p.root.structure(true),
            b"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1 NIL NIL NIL NIL)"
        );
        let h = &raw[p.root.header.clone()];
        assert_eq!(
            header_fields(h, &[b"subject".to_vec(), b"x-long".to_vec()], false),
            b"Subject: x\r\nX-Long: one\r\n two\r\n\r\n"
        );
        assert_eq!(
            header_fields(h, &[b"subject".to_vec()], true),
            b"From: a@b.c\r\nX-Long: one\r\n two\r\n\r\n"
        );
        assert_eq!(raw_header(h, "x-long").unwrap(), b"one two");
        assert_eq!(to_crlf(b"a\nb\r\n"), b"a\r\nb\r\n");
        assert_eq!(header_end(b"no header end"), 13);
    }

    #[test]
    fn junk_never_panics() {
        let mut seed = 11u64;
        let pieces: [&[u8]; 8] = [
            b"Content-Type: multipart/mixed; boundary=x\r\n",
            b"\r\n",
            b"--x\r\n",
            b"--x--\r\n",
            b"Content-Type: message/rfc822\r\n",
            b"a: b\r\n",
            b"\xff\xfe",
            b"=?utf-8?b?zz?=",
        ];
        for _ in 0..3000 {
            let mut m = Vec::new();
            for _ in 0..(seed % 12) {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                m.extend_from_slice(pieces[(seed >> 40) as usize % pieces.len()]);
            }
            fuzz(&m);
            let p = parse(&m);
            let _ = p.root.structure(true);
            for path in [&[1u32][..], &[1, 1], &[2, 1, 1], &[3]] {
                if let Some(n) = p.root.find(path) {
                    let _ = &m[n.header.clone()];
                    let _ = &m[n.body.clone()];
                }
            }
        }
    }
}
