//! SIP URIs (RFC 3261 §19.1): `sip:user@host:port;params`.

use super::header::split_host_port;

/// A parsed sip:/sips: URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    pub scheme: String,
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// URI parameters (`;transport=tcp`, `;lr`), names lowercased.
    pub params: Vec<(String, Option<String>)>,
}

impl SipUri {
    /// Parses a sip: or sips: URI; `None` for other schemes or a malformed one.
    pub fn parse(s: &str) -> Option<SipUri> {
        let s = s.trim();
        let (scheme, rest) = s.split_once(':')?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "sip" && scheme != "sips" {
            return None;
        }
        let rest = rest.split('?').next()?;
        let (userhost, ps) = match rest.find(';') {
            // A ';' inside the user part is legal; parameters start after the host.
            Some(_) => {
                let at = rest.rfind('@').map(|i| i + 1).unwrap_or(0);
                match rest[at..].find(';') {
                    Some(j) => (&rest[..at + j], &rest[at + j + 1..]),
                    None => (rest, ""),
                }
            }
            None => (rest, ""),
        };
        let (user, hostport) = match userhost.rsplit_once('@') {
            Some((u, h)) => {
                let u = u.split(':').next().unwrap_or("");
                (Some(u.to_string()).filter(|u| !u.is_empty()), h)
            }
            None => (None, userhost),
        };
        if hostport.is_empty() || hostport.contains(char::is_whitespace) {
            return None;
        }
        let (host, port) = split_host_port(hostport, 0);
        if host.is_empty() || !host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b)) {
            return None;
        }
        let params = ps
            .split(';')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_string())),
                None => (p.to_ascii_lowercase(), None),
            })
            .collect();
        Some(SipUri {
            scheme,
            user,
            host: host.to_ascii_lowercase(),
            port: (port != 0).then_some(port),
            params,
        })
    }

    /// A URI parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_deref().unwrap_or(""))
    }

    /// `user@host` (the address-of-record key), lowercased host.
    pub fn aor(&self) -> String {
        match &self.user {
            Some(u) => format!("{}@{}", u, self.host),
            None => self.host.clone(),
        }
    }

    /// Is this a loose-routing URI (`;lr`, §16.12)?
    pub fn is_loose(&self) -> bool {
        self.param("lr").is_some()
    }
}

impl std::fmt::Display for SipUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:", self.scheme)?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        for (k, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{k}={v}")?,
                None => write!(f, ";{k}")?,
            }
        }
        Ok(())
    }
}
