//! Header field helpers: canonical names, list splitting, Via and name-addr (§20, §25.1).

/// The canonical long name of a header field: compact forms expanded (§7.3.3) and the
/// common names in their RFC spelling, so lookups are exact.
pub fn canonical_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let known = match lower.as_str() {
        "i" | "call-id" => "Call-ID",
        "m" | "contact" => "Contact",
        "e" | "content-encoding" => "Content-Encoding",
        "l" | "content-length" => "Content-Length",
        "c" | "content-type" => "Content-Type",
        "f" | "from" => "From",
        "s" | "subject" => "Subject",
        "k" | "supported" => "Supported",
        "t" | "to" => "To",
        "v" | "via" => "Via",
        "o" | "event" => "Event",
        "u" | "allow-events" => "Allow-Events",
        "r" | "refer-to" => "Refer-To",
        "cseq" => "CSeq",
        "max-forwards" => "Max-Forwards",
        "route" => "Route",
        "record-route" => "Record-Route",
        "expires" => "Expires",
        "min-expires" => "Min-Expires",
        "authorization" => "Authorization",
        "www-authenticate" => "WWW-Authenticate",
        "proxy-authorization" => "Proxy-Authorization",
        "proxy-authenticate" => "Proxy-Authenticate",
        "allow" => "Allow",
        "accept" => "Accept",
        "require" => "Require",
        "proxy-require" => "Proxy-Require",
        "unsupported" => "Unsupported",
        "retry-after" => "Retry-After",
        "warning" => "Warning",
        "user-agent" => "User-Agent",
        "server" => "Server",
        "subscription-state" => "Subscription-State",
        "sip-etag" => "SIP-ETag",
        "sip-if-match" => "SIP-If-Match",
        _ => return name.to_string(),
    };
    known.to_string()
}

/// Splits a comma-separated header value (§7.3.1), respecting quoted strings and <...>.
pub fn split_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut angle, mut escape) = (false, false, false);
    for c in value.chars() {
        if escape {
            escape = false;
            cur.push(c);
            continue;
        }
        match c {
            '\\' if quoted => escape = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                let t = cur.trim();
                if !t.is_empty() {
                    out.push(t.to_string());
                }
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    let t = cur.trim();
    if !t.is_empty() {
        out.push(t.to_string());
    }
    out
}

/// Parses `;a=b;c` into (name lowercased, value) pairs.
fn params(s: &str) -> Vec<(String, Option<String>)> {
    s.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim().trim_matches('"').to_string())),
            None => (p.to_ascii_lowercase(), None),
        })
        .collect()
}

/// One Via value (§20.42): `SIP/2.0/UDP host:port;branch=...;received=...;rport`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// UDP, TCP, TLS, ...
    pub transport: String,
    /// host[:port] as sent.
    pub sent_by: String,
    pub params: Vec<(String, Option<String>)>,
}

impl Via {
    /// Parses one Via value; `None` if it is not `SIP/2.0/<transport> <sent-by>`.
    pub fn parse(v: &str) -> Option<Via> {
        let v = v.trim();
        let (proto, rest) = v.split_once(|c: char| c.is_ascii_whitespace())?;
        let mut p = proto.split('/');
        let (name, ver, transport) = (p.next()?, p.next()?, p.next()?);
        if !name.trim().eq_ignore_ascii_case("SIP") || ver.trim() != "2.0" || p.next().is_some() {
            return None;
        }
        let rest = rest.trim();
        let (sent_by, ps) = match rest.split_once(';') {
            Some((a, b)) => (a.trim(), b),
            None => (rest, ""),
        };
        if sent_by.is_empty() || sent_by.contains(char::is_whitespace) {
            return None;
        }
        Some(Via {
            transport: transport.trim().to_ascii_uppercase(),
            sent_by: sent_by.to_string(),
            params: params(ps),
        })
    }

    /// A parameter's value (`Some("")` for a flag without value).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_deref().unwrap_or(""))
    }

    /// The branch parameter.
    pub fn branch(&self) -> Option<&str> {
        self.param("branch")
    }

    /// Host and port of sent-by (default port 5060).
    pub fn host_port(&self) -> (String, u16) {
        split_host_port(&self.sent_by, 5060)
    }
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.sent_by)?;
        for (k, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{k}={v}")?,
                None => write!(f, ";{k}")?,
            }
        }
        Ok(())
    }
}

/// Splits `host:port` / `[v6]:port`.
pub(crate) fn split_host_port(s: &str, default: u16) -> (String, u16) {
    if let Some(rest) = s.strip_prefix('[')
        && let Some((h, p)) = rest.split_once(']')
    {
        let port = p.strip_prefix(':').and_then(|p| p.parse().ok()).unwrap_or(default);
        return (h.to_string(), port);
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_string(), p.parse().unwrap_or(default)),
        _ => (s.to_string(), default),
    }
}

/// A name-addr or addr-spec with header parameters (From, To, Contact, Route; §25.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    pub display: Option<String>,
    pub uri: String,
    pub params: Vec<(String, Option<String>)>,
    /// `Contact: *`
    pub star: bool,
}

impl NameAddr {
    /// Parses one value; `None` when malformed.
    pub fn parse(v: &str) -> Option<NameAddr> {
        let v = v.trim();
        if v == "*" {
            return Some(NameAddr { display: None, uri: "*".into(), params: vec![], star: true });
        }
        if let Some(lt) = v.find('<') {
            let gt = lt + v[lt..].find('>')?;
            let display = v[..lt].trim().trim_matches('"').trim();
            let uri = v[lt + 1..gt].trim();
            if uri.is_empty() {
                return None;
            }
            Some(NameAddr {
                display: (!display.is_empty()).then(|| display.to_string()),
                uri: uri.to_string(),
                params: params(&v[gt + 1..]),
                star: false,
            })
        } else {
            // addr-spec: parameters after the URI belong to the header (§20.10).
            let (uri, ps) = match v.split_once(';') {
                Some((a, b)) => (a.trim(), b),
                None => (v, ""),
            };
            if uri.is_empty() || !uri.contains(':') || uri.contains(char::is_whitespace) {
                return None;
            }
            Some(NameAddr { display: None, uri: uri.to_string(), params: params(ps), star: false })
        }
    }

    /// A header parameter (tag, expires, q).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_deref().unwrap_or(""))
    }

    /// The tag parameter.
    pub fn tag(&self) -> Option<&str> {
        self.param("tag")
    }
}

impl std::fmt::Display for NameAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.star {
            return f.write_str("*");
        }
        if let Some(d) = &self.display {
            write!(f, "\"{}\" ", d.replace('"', ""))?;
        }
        write!(f, "<{}>", self.uri)?;
        for (k, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{k}={v}")?,
                None => write!(f, ";{k}")?,
            }
        }
        Ok(())
    }
}
