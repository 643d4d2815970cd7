//! `ftp://[user[:password]@]host[:port]/path` (RFC 1738 §3.2): what `appnet ftp ls|get|put`
//! take. The path is relative to the login directory, percent-decoded, split into the directory
//! the client changes into (the control connection keeps it) and the file it names.

use std::fmt;

/// A parsed `ftp://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct FtpUrl {
    /// User name from the URL (None: anonymous).
    pub user: Option<String>,
    /// Password from the URL (`user:password@`; better given on stdin).
    pub password: Option<String>,
    /// Host name or address (IPv6 without its brackets).
    pub host: String,
    /// Port (21 when the URL names none).
    pub port: u16,
    /// The decoded path after the host, without its leading `/`; empty for the login directory.
    pub path: String,
}

impl fmt::Debug for FtpUrl {
    // The password stays out of logs and error messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FtpUrl")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "****"))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("path", &self.path)
            .finish()
    }
}

/// Why a URL was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0} (expected ftp://[user@]host[:port]/path)")]
pub struct UrlError(String);

fn decode(s: &str) -> Result<String, UrlError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let v = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(v.ok_or_else(|| UrlError(format!("bad percent escape in {s:?}")))?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    let text = String::from_utf8(out).map_err(|_| UrlError(format!("{s:?} does not decode to UTF-8")))?;
    if text.contains(['\r', '\n', '\0']) {
        // A CR LF in a path would end the command on the control connection.
        return Err(UrlError(format!("{s:?} decodes to a control character")));
    }
    Ok(text)
}

impl FtpUrl {
    /// Parses `ftp://[user[:password]@]host[:port]/path`.
    pub fn parse(url: &str) -> Result<FtpUrl, UrlError> {
        let rest = url
            .strip_prefix("ftp://")
            .or_else(|| url.strip_prefix("FTP://"))
            .ok_or_else(|| UrlError(format!("{url:?} is not an ftp:// URL")))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((name, pass)) => (Some(decode(name)?), Some(decode(pass)?)),
                None => (Some(decode(u)?), None),
            },
        };
        if user.as_deref() == Some("") {
            return Err(UrlError(format!("{url:?} has an empty user name")));
        }
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let close = v6.find(']').ok_or_else(|| UrlError(format!("unclosed [ in {url:?}")))?;
            let host = &v6[..close];
            match &v6[close + 1..] {
                "" => (host, None),
                p => {
                    (host, Some(p.strip_prefix(':').ok_or_else(|| UrlError(format!("bad port in {url:?}")))?))
                }
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(UrlError(format!("{url:?} names no host")));
        }
        let port = match port {
            None => 21,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| UrlError(format!("bad port {p:?} in {url:?}")))?,
        };
        // ";type=i" and the like (RFC 1738 typecodes) are accepted and ignored: transfers are binary.
        let path = path.split(';').next().unwrap_or("");
        Ok(FtpUrl { user, password, host: host.to_string(), port, path: decode(path)? })
    }

    /// The directory part of the path (what the client changes into): empty for the login
    /// directory; for a path ending in `/`, all of it.
    pub fn dir(&self) -> &str {
        match self.path.rfind('/') {
            Some(i) => &self.path[..i],
            None => "",
        }
    }

    /// The last part of the path (a file name); empty when the path ends in `/` or is empty.
    pub fn file(&self) -> &str {
        match self.path.rfind('/') {
            Some(i) => &self.path[i + 1..],
            None => &self.path,
        }
    }

    /// `host:port` as the URL spells it (brackets around IPv6), for connecting and messages.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_urls() {
        let u = FtpUrl::parse("ftp://alice@127.0.0.1:2121/pub/notes.txt").unwrap();
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password, None);
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 2121));
        assert_eq!((u.dir(), u.file()), ("pub", "notes.txt"));
        let u = FtpUrl::parse("ftp://bob:s%40cret@[::1]:21/a%20b/").unwrap();
        assert_eq!(u.password.as_deref(), Some("s@cret"));
        assert_eq!(u.host, "::1");
        assert_eq!(u.authority(), "[::1]:21");
        assert_eq!((u.dir(), u.file()), ("a b", ""));
        assert!(!format!("{u:?}").contains("cret"));
    }

    #[test]
    fn defaults() {
        let u = FtpUrl::parse("ftp://ftp.cs.umass.edu").unwrap();
        assert_eq!((u.user.as_deref(), u.port, u.path.as_str()), (None, 21, ""));
        assert_eq!((u.dir(), u.file()), ("", ""));
        let u = FtpUrl::parse("ftp://h/file;type=i").unwrap();
        assert_eq!((u.dir(), u.file()), ("", "file"));
    }

    #[test]
    fn bad_urls_are_errors() {
        for bad in [
            "http://x/",
            "ftp://",
            "ftp://:21/",
            "ftp://h:0/",
            "ftp://h:99999/",
            "ftp://h:x/",
            "ftp://@h/",
            "ftp://[::1/",
            "ftp://[::1]x/",
            "ftp://h/%zz",
            "ftp://h/a%0d%0aDELE%20x",
            "ftp://h/%ff",
        ] {
            assert!(FtpUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
