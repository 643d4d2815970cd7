//! The users file: one line per user,
//! `bob@umass.edu:md5=<HA1>,sha256=<HA1> [always=URI] [busy=URI] [noanswer=URI] [noanswer-secs=N]`.
//!
//! Only HA1 values are stored (H(user:realm:password), realm = the user's domain), never
//! the password, and they are exactly what Digest verification needs.

use crate::digest::Algorithm;
use std::collections::HashMap;
use std::io;
use std::path::Path;
use thiserror::Error;

/// Problems with the users file.
#[derive(Debug, Error)]
pub enum UsersError {
    #[error("users file {0}: {1}")]
    Io(String, io::Error),
    #[error("users file line {0}: {1}")]
    Syntax(usize, String),
    #[error("{0} is a symbolic link; refusing to write through it")]
    Symlink(String),
    #[error("bad user {0}: expected user@domain")]
    BadAor(String),
    #[error("bad forwarding {0}: expected always=URI, busy=URI or noanswer=URI")]
    BadForward(String),
}

/// Per-user call forwarding (the proxy retargets itself).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarding {
    /// Every call goes here instead.
    pub always: Option<String>,
    /// When every branch answers 486/600 Busy.
    pub busy: Option<String>,
    /// When nobody answers within `noanswer_secs`.
    pub noanswer: Option<String>,
    pub noanswer_secs: Option<u64>,
}

/// One user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// `user@domain`, lowercased domain.
    pub aor: String,
    pub ha1_md5: String,
    pub ha1_sha256: String,
    pub forwarding: Forwarding,
}

impl User {
    /// The stored HA1 for an algorithm.
    pub fn ha1(&self, alg: Algorithm) -> &str {
        match alg {
            Algorithm::Md5 => &self.ha1_md5,
            Algorithm::Sha256 => &self.ha1_sha256,
        }
    }

    /// The user part (the Digest username).
    pub fn name(&self) -> &str {
        self.aor.split('@').next().unwrap_or("")
    }

    fn line(&self) -> String {
        let mut s = format!("{}:md5={},sha256={}", self.aor, self.ha1_md5, self.ha1_sha256);
        let f = &self.forwarding;
        for (k, v) in [("always", &f.always), ("busy", &f.busy), ("noanswer", &f.noanswer)] {
            if let Some(v) = v {
                s.push_str(&format!(" {k}={v}"));
            }
        }
        if let Some(n) = f.noanswer_secs {
            s.push_str(&format!(" noanswer-secs={n}"));
        }
        s
    }
}

/// Normalises `user@domain` (the domain is case-insensitive); `None` if malformed.
pub fn normalise_aor(aor: &str) -> Option<String> {
    let aor = aor.trim().trim_start_matches("sip:");
    let (user, domain) = aor.split_once('@')?;
    let ok =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._+!~*'".contains(&b));
    (ok(user) && ok(domain)).then(|| format!("{user}@{}", domain.to_ascii_lowercase()))
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parses the file's text.
pub fn parse(text: &str) -> Result<HashMap<String, User>, UsersError> {
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |m: &str| UsersError::Syntax(i + 1, m.to_string());
        let mut fields = line.split_whitespace();
        let first = fields.next().ok_or_else(|| bad("empty"))?;
        let (aor, hashes) = first.split_once(':').ok_or_else(|| bad("expected user@domain:hashes"))?;
        let aor = normalise_aor(aor).ok_or_else(|| bad("bad user@domain"))?;
        let (mut md5, mut sha) = (None, None);
        for h in hashes.split(',') {
            match h.split_once('=') {
                Some(("md5", v)) if is_hex(v, 32) => md5 = Some(v.to_ascii_lowercase()),
                Some(("sha256", v)) if is_hex(v, 64) => sha = Some(v.to_ascii_lowercase()),
                _ => return Err(bad("expected md5=<32 hex>,sha256=<64 hex>")),
            }
        }
        let mut forwarding = Forwarding::default();
        for f in fields {
            set_forward(&mut forwarding, f).map_err(|_| bad("bad forwarding field"))?;
        }
        let user = User {
            aor: aor.clone(),
            ha1_md5: md5.ok_or_else(|| bad("missing md5="))?,
            ha1_sha256: sha.ok_or_else(|| bad("missing sha256="))?,
            forwarding,
        };
        users.insert(aor, user);
    }
    Ok(users)
}

/// Applies one `always=URI` / `busy=URI` / `noanswer=URI` / `noanswer-secs=N` setting
/// (`always=` with an empty value clears it).
pub fn set_forward(f: &mut Forwarding, spec: &str) -> Result<(), UsersError> {
    let err = || UsersError::BadForward(spec.to_string());
    let (k, v) = spec.split_once('=').ok_or_else(err)?;
    if k == "noanswer-secs" {
        f.noanswer_secs = Some(v.parse().map_err(|_| err())?);
        return Ok(());
    }
    let uri = if v.is_empty() {
        None
    } else {
        crate::wire::SipUri::parse(v).ok_or_else(err)?;
        Some(v.to_string())
    };
    match k {
        "always" => f.always = uri,
        "busy" => f.busy = uri,
        "noanswer" => f.noanswer = uri,
        _ => return Err(err()),
    }
    Ok(())
}

/// Reads the users file.
pub fn load(path: &Path) -> Result<HashMap<String, User>, UsersError> {
    let text = std::fs::read_to_string(path).map_err(|e| UsersError::Io(path.display().to_string(), e))?;
    parse(&text)
}

/// Adds or updates a user (password given: new HA1s; forwarding specs applied), creating
/// the file if needed. Written atomically; a symlink at `path` is refused.
pub fn add_user(
    path: &Path,
    aor: &str,
    password: Option<&str>,
    forward: &[String],
) -> Result<User, UsersError> {
    let aor = normalise_aor(aor).ok_or_else(|| UsersError::BadAor(aor.to_string()))?;
    let shown = path.display().to_string();
    let mut users = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => return Err(UsersError::Symlink(shown)),
        Ok(_) => load(path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => HashMap::new(),
        Err(e) => return Err(UsersError::Io(shown, e)),
    };
    let (name, realm) = aor.split_once('@').unwrap_or((&aor, ""));
    let mut user = match (users.remove(&aor), password) {
        (Some(mut u), Some(pw)) => {
            u.ha1_md5 = Algorithm::Md5.ha1(name, realm, pw);
            u.ha1_sha256 = Algorithm::Sha256.ha1(name, realm, pw);
            u
        }
        (Some(u), None) => u,
        (None, pw) => {
            let pw =
                pw.ok_or_else(|| UsersError::Syntax(0, format!("{aor} is new: a password is needed")))?;
            User {
                aor: aor.clone(),
                ha1_md5: Algorithm::Md5.ha1(name, realm, pw),
                ha1_sha256: Algorithm::Sha256.ha1(name, realm, pw),
                forwarding: Forwarding::default(),
            }
        }
    };
    for f in forward {
        set_forward(&mut user.forwarding, f)?;
    }
    users.insert(aor, user.clone());
    let mut lines: Vec<String> = users.values().map(User::line).collect();
    lines.sort();
    let text = format!("# appnet sip users: user@domain:HA1s [forwarding]\n{}\n", lines.join("\n"));
    appnet_netkit::files::write_private(path, text.as_bytes()).map_err(|e| UsersError::Io(shown, e))?;
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_then_load_and_forwarding() {
        let dir = appnet_netkit::harness::TempDir::new("sip-users");
        let path = dir.path().join("users");
        add_user(&path, "bob@UMass.edu", Some("pw"), &[]).unwrap();
        add_user(&path, "alice@poly.edu", Some("secret"), &["busy=sip:vm@umass.edu".into()]).unwrap();
        add_user(
            &path,
            "bob@umass.edu",
            None,
            &["noanswer=sip:bob@10.0.0.2".into(), "noanswer-secs=5".into()],
        )
        .unwrap();
        let users = load(&path).unwrap();
        let bob = &users["bob@umass.edu"];
        assert_eq!(bob.ha1_md5, Algorithm::Md5.ha1("bob", "umass.edu", "pw"));
        assert_eq!(bob.forwarding.noanswer.as_deref(), Some("sip:bob@10.0.0.2"));
        assert_eq!(bob.forwarding.noanswer_secs, Some(5));
        assert_eq!(users["alice@poly.edu"].forwarding.busy.as_deref(), Some("sip:vm@umass.edu"));
        assert!(add_user(&path, "carol@x", None, &[]).is_err(), "a new user needs a password");
        assert!(add_user(&path, "bob@umass.edu", None, &["sideways=sip:x@y".into()]).is_err());
        assert!(parse("bob@x:md5=zz").is_err());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(matches!(add_user(&link, "x@y", Some("p"), &[]), Err(UsersError::Symlink(_))));
    }
}
