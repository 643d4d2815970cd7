//! The message: start line, header fields, body; `parse` and `to_bytes`.

use super::header::canonical_name;
use thiserror::Error;

/// Why a datagram or stream segment is not a SIP message we accept.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("message larger than {0} bytes")]
    TooLarge(usize),
    #[error("more than {0} header fields")]
    TooManyHeaders(usize),
    #[error("message ends before the blank line after the headers")]
    Incomplete,
    #[error("bad start line")]
    BadStartLine,
    #[error("bad header line")]
    BadHeader,
    #[error("not UTF-8")]
    NotUtf8,
    #[error("bad Content-Length")]
    BadContentLength,
    #[error("body shorter than Content-Length")]
    ShortBody,
    #[error("missing mandatory header {0}")]
    Missing(&'static str),
    #[error("bad {0} header")]
    BadValue(&'static str),
}

/// Caps applied while parsing, so one message cannot make us allocate without bound.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest whole message, headers and body, in bytes.
    pub max_size: usize,
    /// Most header fields (after folding continuation lines).
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_size: 65_535, max_headers: 100 }
    }
}

/// Request-Line or Status-Line (RFC 3261 §7.1, §7.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: String, uri: String },
    Response { code: u16, reason: String },
}

/// One header field with its name in canonical long form (compact forms expanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// A SIP request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    pub headers: Vec<Header>,
    pub body: Vec<u8>,
}

/// Parses one message with the default limits.
pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
    parse_with(bytes, Limits::default())
}

/// How many bytes the first message in a stream buffer takes (RFC 3261 §18.3 framing by
/// Content-Length), `Ok(None)` if more bytes are needed.
pub fn frame_len(buf: &[u8], limits: Limits) -> Result<Option<usize>, ParseError> {
    // Leading CRLFs are keep-alives (RFC 5626 §3.5.1); the caller skips them.
    let Some(end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > limits.max_size {
            return Err(ParseError::TooLarge(limits.max_size));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| ParseError::NotUtf8)?;
    let mut len: Option<usize> = None;
    for line in head.split("\r\n").skip(1) {
        if let Some((n, v)) = line.split_once(':') {
            let n = n.trim();
            if n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("l") {
                len = Some(v.trim().parse().map_err(|_| ParseError::BadContentLength)?);
            }
        }
    }
    // On a stream Content-Length is mandatory; its absence means an empty body.
    let total = end + 4 + len.unwrap_or(0);
    if total > limits.max_size {
        return Err(ParseError::TooLarge(limits.max_size));
    }
    Ok(if buf.len() >= total { Some(total) } else { None })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

/// Parses one message, enforcing `limits` and the presence of the headers every
/// RFC 3261 message must carry (§8.1.1: To, From, CSeq, Call-ID, Via; Max-Forwards is
/// not required of received requests here, a proxy adds 70 when missing).
pub fn parse_with(bytes: &[u8], limits: Limits) -> Result<Message, ParseError> {
    if bytes.len() > limits.max_size {
        return Err(ParseError::TooLarge(limits.max_size));
    }
    let end = find(bytes, b"\r\n\r\n").ok_or(ParseError::Incomplete)?;
    let head = std::str::from_utf8(&bytes[..end]).map_err(|_| ParseError::NotUtf8)?;
    let mut lines = head.split("\r\n");
    let first = lines.next().ok_or(ParseError::BadStartLine)?;
    let start = parse_start(first)?;
    let mut headers: Vec<Header> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            // Continuation line (LWS folding, §7.3.1).
            if line.bytes().any(|b| b < 0x20 && b != b'\t') {
                return Err(ParseError::BadHeader);
            }
            let last = headers.last_mut().ok_or(ParseError::BadHeader)?;
            last.value.push(' ');
            last.value.push_str(line.trim());
            continue;
        }
        let (name, value) = line.split_once(':').ok_or(ParseError::BadHeader)?;
        let name = name.trim_end();
        if !is_token(name) {
            return Err(ParseError::BadHeader);
        }
        if value.bytes().any(|b| b < 0x20 && b != b'\t') {
            return Err(ParseError::BadHeader);
        }
        if headers.len() >= limits.max_headers {
            return Err(ParseError::TooManyHeaders(limits.max_headers));
        }
        headers.push(Header { name: canonical_name(name), value: value.trim().to_string() });
    }
    let rest = &bytes[end + 4..];
    let body_len = match headers.iter().find(|h| h.name == "Content-Length") {
        Some(h) => {
            let n: usize = h.value.parse().map_err(|_| ParseError::BadContentLength)?;
            if n > rest.len() {
                return Err(ParseError::ShortBody);
            }
            n
        }
        // Over UDP a missing Content-Length means the rest of the datagram (§18.3).
        None => rest.len(),
    };
    let msg = Message { start, headers, body: rest[..body_len].to_vec() };
    validate(msg)
}

/// Parses without the mandatory-header checks, so a server can still answer `400` to a
/// request whose Via it can read. Never use the result for anything but that answer.
pub fn parse_lenient(bytes: &[u8], limits: Limits) -> Option<Message> {
    match parse_with(bytes, limits) {
        Ok(m) => Some(m),
        Err(
            ParseError::Missing(_)
            | ParseError::BadValue(_)
            | ParseError::TooLarge(_)
            | ParseError::TooManyHeaders(_),
        ) => parse_raw(&bytes[..bytes.len().min(limits.max_size)], limits),
        Err(_) => None,
    }
}

fn parse_raw(bytes: &[u8], limits: Limits) -> Option<Message> {
    let end = find(bytes, b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let start = parse_start(lines.next()?).ok()?;
    let mut headers = Vec::new();
    for line in lines.take(limits.max_headers) {
        let (n, v) = line.split_once(':')?;
        headers.push(Header { name: canonical_name(n.trim()), value: v.trim().to_string() });
    }
    Some(Message { start, headers, body: Vec::new() })
}

fn validate(msg: Message) -> Result<Message, ParseError> {
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        if msg.header(name).is_none() {
            return Err(ParseError::Missing(match name {
                "Via" => "Via",
                "From" => "From",
                "To" => "To",
                "Call-ID" => "Call-ID",
                _ => "CSeq",
            }));
        }
    }
    let (_, cseq_method) = msg.cseq().ok_or(ParseError::BadValue("CSeq"))?;
    if let StartLine::Request { method, .. } = &msg.start
        && cseq_method != method
    {
        return Err(ParseError::BadValue("CSeq"));
    }
    if msg.top_via().is_none() {
        return Err(ParseError::BadValue("Via"));
    }
    if msg.header("Max-Forwards").is_some() && msg.max_forwards().is_none() {
        return Err(ParseError::BadValue("Max-Forwards"));
    }
    Ok(msg)
}

fn parse_start(line: &str) -> Result<StartLine, ParseError> {
    if line.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(ParseError::BadStartLine);
    }
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        if code.len() != 3 {
            return Err(ParseError::BadStartLine);
        }
        let code: u16 = code.parse().map_err(|_| ParseError::BadStartLine)?;
        if !(100..=699).contains(&code) {
            return Err(ParseError::BadStartLine);
        }
        return Ok(StartLine::Response { code, reason: reason.to_string() });
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(ver), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::BadStartLine);
    };
    if ver != "SIP/2.0" || !is_token(method) || uri.is_empty() || !uri.contains(':') {
        return Err(ParseError::BadStartLine);
    }
    Ok(StartLine::Request { method: method.to_string(), uri: uri.to_string() })
}

impl Message {
    /// A request with the given method and Request-URI and no headers yet.
    pub fn request(method: &str, uri: &str) -> Message {
        Message {
            start: StartLine::Request { method: method.into(), uri: uri.into() },
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A response to `req` (§8.2.6): copies Via, From, To, Call-ID and CSeq; adds a To tag
    /// when `to_tag` is given and the request's To has none.
    pub fn response_to(req: &Message, code: u16, reason: &str, to_tag: Option<&str>) -> Message {
        let mut resp = Message {
            start: StartLine::Response { code, reason: reason.into() },
            headers: Vec::new(),
            body: Vec::new(),
        };
        for h in &req.headers {
            match h.name.as_str() {
                "Via" | "From" | "Call-ID" | "CSeq" => resp.headers.push(h.clone()),
                "To" => {
                    let mut v = h.value.clone();
                    if let Some(tag) = to_tag
                        && !has_param(&v, "tag")
                    {
                        v.push_str(";tag=");
                        v.push_str(tag);
                    }
                    resp.headers.push(Header { name: "To".into(), value: v });
                }
                _ => {}
            }
        }
        resp
    }

    /// Is this a request?
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The request method, or the CSeq method of a response.
    pub fn method(&self) -> &str {
        match &self.start {
            StartLine::Request { method, .. } => method,
            StartLine::Response { .. } => self.cseq().map(|(_, m)| m).unwrap_or(""),
        }
    }

    /// The Request-URI of a request.
    pub fn uri(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            _ => None,
        }
    }

    /// Replaces the Request-URI (retargeting, §16.5).
    pub fn set_uri(&mut self, new: &str) {
        if let StartLine::Request { uri, .. } = &mut self.start {
            *uri = new.to_string();
        }
    }

    /// The status code of a response.
    pub fn code(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The first header field with this (canonical) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
    }

    /// Every value of a header, with comma-separated lists split (§7.3.1).
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .flat_map(|h| super::header::split_list(&h.value))
            .collect()
    }

    /// Appends a header field.
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.headers.push(Header { name: name.into(), value: value.into() });
    }

    /// Inserts a header field before all others (Via, Record-Route).
    pub fn push_front(&mut self, name: &str, value: impl Into<String>) {
        self.headers.insert(0, Header { name: name.into(), value: value.into() });
    }

    /// Replaces every field of this name with one value.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.remove(name);
        self.push(name, value);
    }

    /// Removes every field of this name.
    pub fn remove(&mut self, name: &str) {
        self.headers.retain(|h| !h.name.eq_ignore_ascii_case(name));
    }

    /// Removes the first value of a (possibly comma-joined) header such as Via or Route.
    pub fn remove_first_value(&mut self, name: &str) -> Option<String> {
        let i = self.headers.iter().position(|h| h.name.eq_ignore_ascii_case(name))?;
        let mut values = super::header::split_list(&self.headers[i].value);
        if values.is_empty() {
            self.headers.remove(i);
            return None;
        }
        let first = values.remove(0);
        if values.is_empty() {
            self.headers.remove(i);
        } else {
            self.headers[i].value = values.join(", ");
        }
        Some(first)
    }

    /// CSeq number and method.
    pub fn cseq(&self) -> Option<(u32, &str)> {
        let v = self.header("CSeq")?;
        let mut it = v.split_whitespace();
        let n = it.next()?.parse().ok()?;
        let m = it.next()?;
        if it.next().is_some() || !is_token(m) {
            return None;
        }
        Some((n, m))
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Option<&str> {
        self.header("Call-ID")
    }

    /// The topmost Via, parsed.
    pub fn top_via(&self) -> Option<super::Via> {
        super::Via::parse(self.header_values("Via").first()?)
    }

    /// Max-Forwards (0..=255).
    pub fn max_forwards(&self) -> Option<u8> {
        self.header("Max-Forwards")?.trim().parse().ok()
    }

    /// Expires header value in seconds.
    pub fn expires(&self) -> Option<u32> {
        self.header("Expires")?.trim().parse().ok()
    }

    /// From, parsed.
    pub fn from(&self) -> Option<super::NameAddr> {
        super::NameAddr::parse(self.header("From")?)
    }

    /// To, parsed.
    pub fn to(&self) -> Option<super::NameAddr> {
        super::NameAddr::parse(self.header("To")?)
    }

    /// The message as bytes, with Content-Length set from the body (§20.14).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.body.len());
        match &self.start {
            StartLine::Request { method, uri } => {
                out.extend_from_slice(format!("{method} {uri} SIP/2.0\r\n").as_bytes())
            }
            StartLine::Response { code, reason } => {
                out.extend_from_slice(format!("SIP/2.0 {code} {reason}\r\n").as_bytes())
            }
        }
        for h in &self.headers {
            if h.name == "Content-Length" {
                continue;
            }
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", self.body.len()).as_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

/// Does a header value carry `;name` or `;name=...` as a parameter (outside <>)?
pub(crate) fn has_param(value: &str, name: &str) -> bool {
    let params = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value,
    };
    params.split(';').skip(1).any(|p| {
        let key = p.split('=').next().unwrap_or("").trim();
        key.eq_ignore_ascii_case(name)
    })
}
