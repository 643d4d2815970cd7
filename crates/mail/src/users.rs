//! The user database: `DIR/users`, a Dovecot passwd-file (`user@domain:{SCHEME}hash[:...]`), so
//! an existing Dovecot installation's users log in unchanged and `appnet mail user add` writes
//! lines Dovecot reads.
//!
//! Schemes read: `{SHA512-CRYPT}` (and `{CRYPT}` holding a `$6$` hash), `{ARGON2ID}` and
//! `{ARGON2I}` (PHC strings). Written: `{SHA512-CRYPT}` with a 16-character random salt and the
//! default 5000 rounds, the scheme `doveadm pw -s SHA512-CRYPT` writes.

use std::collections::HashMap;
use std::path::Path;

use rand::Rng;
use subtle::ConstantTimeEq;

use crate::error::MailError;
use crate::maildir;

/// The users file's name under the mail root.
pub const USERS_FILE: &str = "users";

/// A stored password hash, parsed once at load.
#[derive(Clone, Debug)]
enum Hash {
    /// `$6$[rounds=N$]salt$hash` (SHA-512 crypt).
    Sha512Crypt { rounds: usize, salt: String, hash: String },
    /// A PHC string for argon2 (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`).
    Argon2(String),
    /// A scheme appnet cannot check: the user exists but cannot log in.
    Unsupported,
}

/// The users of all served domains, loaded from `DIR/users`.
#[derive(Clone, Debug, Default)]
pub struct Users {
    /// Key: `local@domain` with the domain in lower case.
    by_address: HashMap<String, Hash>,
}

/// A fixed hash verified for unknown users, so a login attempt takes as long for an address
/// that does not exist as for a wrong password (no user enumeration by timing).
const DUMMY_SALT: &str = "appnetdummysalt0";

impl Users {
    /// Reads `root/users`; a missing file means no users yet.
    pub fn load(root: &Path) -> Result<Users, MailError> {
        let path = root.join(USERS_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Users::default()),
            Err(e) => return Err(MailError::io(path, e)),
        };
        Users::parse(&text, &path)
    }

    /// Parses the passwd-file text (`path` only names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Users, MailError> {
        let mut by_address = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let bad = |why: &str| MailError::BadUsersLine {
                path: path.to_path_buf(),
                line: i + 1,
                why: why.to_string(),
            };
            let mut fields = line.splitn(3, ':');
            let user = fields.next().unwrap_or_default();
            let password = fields.next().ok_or_else(|| bad("expected user@domain:{SCHEME}hash"))?;
            let key = normalize(user).ok_or_else(|| bad("the user must be a full address user@domain"))?;
            by_address.insert(key, parse_hash(password));
        }
        Ok(Users { by_address })
    }

    /// Whether `address` is a user (the domain compares case-insensitively).
    pub fn exists(&self, address: &str) -> bool {
        self.lookup(address).is_some()
    }

    /// How many users there are.
    pub fn len(&self) -> usize {
        self.by_address.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.by_address.is_empty()
    }

    /// Checks `password` for `address`; the comparison is constant-time, and an unknown
    /// address costs the same hashing work as a known one.
    pub fn verify(&self, address: &str, password: &str) -> bool {
        match self.lookup(address) {
            Some(hash) => check(hash, password),
            None => {
                let dummy = Hash::Sha512Crypt { rounds: 5000, salt: DUMMY_SALT.into(), hash: String::new() };
                let _ = check(&dummy, password);
                false
            }
        }
    }

    /// The canonical form (`local@domain`, domain in lower case) of a user's address, as the
    /// users file spells the local part; `None` for an unknown user.
    pub fn canonical(&self, address: &str) -> Option<String> {
        let key = normalize(address)?;
        if self.by_address.contains_key(&key) {
            return Some(key);
        }
        self.by_address.keys().find(|k| k.eq_ignore_ascii_case(&key)).cloned()
    }

    fn lookup(&self, address: &str) -> Option<&Hash> {
        let key = self.canonical(address)?;
        self.by_address.get(&key)
    }
}

/// `local@domain` with the domain lower-cased, or `None` when it is not a full address.
fn normalize(address: &str) -> Option<String> {
    let (local, domain) = address.rsplit_once('@')?;
    if local.is_empty() || domain.is_empty() {
        return None;
    }
    Some(format!("{local}@{}", domain.to_ascii_lowercase()))
}

fn parse_hash(field: &str) -> Hash {
    let (scheme, body) = match field.strip_prefix('{').and_then(|r| r.split_once('}')) {
        Some((s, b)) => (s.to_ascii_uppercase(), b),
        // Dovecot's default scheme for a bare hash is CRYPT.
        None => ("CRYPT".to_string(), field),
    };
    match scheme.as_str() {
        "SHA512-CRYPT" | "CRYPT" if body.starts_with("$6$") => {
            parse_sha512_crypt(body).unwrap_or(Hash::Unsupported)
        }
        "ARGON2ID" | "ARGON2I" | "CRYPT" if body.starts_with("$argon2") => Hash::Argon2(body.to_string()),
        _ => Hash::Unsupported,
    }
}

/// Splits `$6$[rounds=N$]salt$hash` (rounds clamped to crypt's 1000..=999999999 like glibc).
fn parse_sha512_crypt(body: &str) -> Option<Hash> {
    let rest = body.strip_prefix("$6$")?;
    let mut parts: Vec<&str> = rest.split('$').collect();
    let mut rounds = sha_crypt::ROUNDS_DEFAULT;
    if parts.first()?.starts_with("rounds=") {
        let r: usize = parts.remove(0)["rounds=".len()..].parse().ok()?;
        rounds = r.clamp(sha_crypt::ROUNDS_MIN, sha_crypt::ROUNDS_MAX);
    }
    if parts.len() != 2 {
        return None;
    }
    Some(Hash::Sha512Crypt { rounds, salt: parts[0].to_string(), hash: parts[1].to_string() })
}

fn check(hash: &Hash, password: &str) -> bool {
    match hash {
        Hash::Sha512Crypt { rounds, salt, hash } => {
            let Ok(params) = sha_crypt::Sha512Params::new(*rounds) else { return false };
            let Ok(computed) = sha_crypt::sha512_crypt_b64(password.as_bytes(), salt.as_bytes(), &params)
            else {
                return false;
            };
            computed.len() == hash.len() && bool::from(computed.as_bytes().ct_eq(hash.as_bytes()))
        }
        Hash::Argon2(phc) => {
            use argon2::password_hash::{PasswordHash, PasswordVerifier};
            let Ok(parsed) = PasswordHash::new(phc) else { return false };
            // verify_password compares in constant time (password-hash's Output::eq).
            argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()
        }
        Hash::Unsupported => false,
    }
}

/// `{SHA512-CRYPT}$6$salt$hash` for `password` with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, MailError> {
    const CRYPT_ALPHABET: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let salt: String =
        (0..16).map(|_| CRYPT_ALPHABET[rng.random_range(0..CRYPT_ALPHABET.len())] as char).collect();
    let params = sha_crypt::Sha512Params::new(sha_crypt::ROUNDS_DEFAULT)
        .map_err(|e| MailError::Hash(format!("{e:?}")))?;
    let hash = sha_crypt::sha512_crypt_b64(password.as_bytes(), salt.as_bytes(), &params)
        .map_err(|e| MailError::Hash(format!("{e:?}")))?;
    Ok(format!("{{SHA512-CRYPT}}$6${salt}${hash}"))
}

/// Adds `address` with `password` to `root/users` (or sets a new password for an existing
/// user, keeping the line's other fields), and creates the user's Maildir++ under
/// `root/mail/<domain>/<user>/`. The users file is replaced crash-safely (temp, fsync,
/// rename) under a lock, so concurrent adds never lose each other's lines.
pub fn add_user(root: &Path, address: &str, password: &str) -> Result<(), MailError> {
    let (local, domain) = maildir::address_parts(address)?;
    if password.is_empty() {
        return Err(MailError::BadPassword("it is empty"));
    }
    if password.contains(['\n', '\r', '\0']) {
        return Err(MailError::BadPassword("it contains a line break or NUL"));
    }
    std::fs::create_dir_all(root).map_err(|e| MailError::io(root, e))?;
    let path = root.join(USERS_FILE);
    let _lock = FileLock::acquire(&root.join(".users.lock"))?;
    let old = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(MailError::io(&path, e)),
    };
    let key = format!("{local}@{domain}");
    let hashed = hash_password(password)?;
    let mut out = String::with_capacity(old.len() + 160);
    let mut replaced = false;
    for line in old.lines() {
        let user = line.split(':').next().unwrap_or_default();
        if !replaced
            && !line.trim_start().starts_with('#')
            && normalize(user).is_some_and(|k| k.eq_ignore_ascii_case(&key))
        {
            let rest = line.splitn(3, ':').nth(2);
            out.push_str(user);
            out.push(':');
            out.push_str(&hashed);
            if let Some(rest) = rest {
                out.push(':');
                out.push_str(rest);
            }
            replaced = true;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if !replaced {
        out.push_str(&key);
        out.push(':');
        out.push_str(&hashed);
        out.push('\n');
    }
    appnet_netkit::files::write_private(&path, out.as_bytes()).map_err(|e| MailError::io(&path, e))?;
    maildir::create(&maildir::user_dir(root, &domain, local))
        .map_err(|e| MailError::io(root.join("mail"), e))?;
    Ok(())
}

/// An exclusive advisory lock (flock) held until dropped.
pub(crate) struct FileLock(#[allow(dead_code)] std::fs::File);

impl FileLock {
    /// Opens (creating) `path` and waits for an exclusive lock on it.
    pub(crate) fn acquire(path: &Path) -> Result<FileLock, MailError> {
        Self::lock(path, libc::LOCK_EX)
    }

    /// Like `acquire` but fails at once with `None` when someone else holds it.
    pub(crate) fn try_acquire(path: &Path) -> Result<Option<FileLock>, MailError> {
        match Self::lock(path, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(l) => Ok(Some(l)),
            Err(MailError::Io { source, .. }) if source.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn lock(path: &Path, op: libc::c_int) -> Result<FileLock, MailError> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .mode(0o600)
            .open(path)
            .map_err(|e| MailError::io(path, e))?;
        loop {
            // SAFETY: flock on an open descriptor we own; errors come back through errno.
            let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
            if rc == 0 {
                return Ok(FileLock(file));
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(MailError::io(path, err));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use appnet_netkit::harness::TempDir;

    #[test]
    fn add_then_verify_and_the_maildir_exists() {
        let dir = TempDir::new("mail-users");
        add_user(dir.path(), "bob@Hamburger.EDU", "s3cret pass").unwrap();
        add_user(dir.path(), "alice@crepes.fr", "x").unwrap();
        let users = Users::load(dir.path()).unwrap();
        assert_eq!(users.len(), 2);
        assert!(users.exists("bob@hamburger.edu"));
        assert!(users.exists("bob@HAMBURGER.edu"));
        assert!(!users.exists("carol@hamburger.edu"));
        assert!(users.verify("bob@hamburger.edu", "s3cret pass"));
        assert!(!users.verify("bob@hamburger.edu", "s3cret pas"));
        assert!(!users.verify("carol@hamburger.edu", "s3cret pass"));
        for sub in ["cur", "new", "tmp"] {
            assert!(dir.join("mail/hamburger.edu/bob").join(sub).is_dir());
        }
        let text = std::fs::read_to_string(dir.join("users")).unwrap();
        assert!(text.starts_with("bob@hamburger.edu:{SHA512-CRYPT}$6$"), "{text}");
    }

    #[test]
    fn re_adding_changes_the_password_and_keeps_other_fields() {
        let dir = TempDir::new("mail-users-readd");
        std::fs::write(
            dir.join("users"),
            "# comment\nbob@hamburger.edu:{PLAIN}x::::::userdb_quota_rule=*:storage=1G\n",
        )
        .unwrap();
        add_user(dir.path(), "bob@hamburger.edu", "new").unwrap();
        let text = std::fs::read_to_string(dir.join("users")).unwrap();
        assert!(text.starts_with("# comment\nbob@hamburger.edu:{SHA512-CRYPT}$6$"), "{text}");
        assert!(text.contains("::::::userdb_quota_rule=*:storage=1G\n"), "{text}");
        assert_eq!(text.lines().count(), 2);
        assert!(Users::load(dir.path()).unwrap().verify("bob@hamburger.edu", "new"));
    }

    #[test]
    fn reads_dovecot_hashes() {
        // The test vectors of Drepper's SHA-crypt specification, as Dovecot stores them.
        let text = "a@x.org:{SHA512-CRYPT}$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1\n\
                    b@x.org:{CRYPT}$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.\n";
        let users = Users::parse(text, Path::new("u")).unwrap();
        assert!(users.verify("a@x.org", "Hello world!"));
        assert!(users.verify("b@x.org", "Hello world!"));
        assert!(!users.verify("a@x.org", "hello world!"));
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let phc = argon2::Argon2::default().hash_password(b"pw", &salt).unwrap().to_string();
        let users3 =
            Users::parse(&format!("c@x.org:{{ARGON2ID}}{phc}\nd@x.org:{{PLAIN}}pw\n"), Path::new("u"))
                .unwrap();
        assert!(users3.verify("c@x.org", "pw"));
        assert!(!users3.verify("c@x.org", "pw2"));
        assert!(users3.exists("d@x.org"), "an unsupported scheme still names a user");
        assert!(!users3.verify("d@x.org", "pw"), "but it cannot log in");
    }

    #[test]
    fn junk_lines_are_errors_and_missing_file_is_empty() {
        let dir = TempDir::new("mail-users-junk");
        assert!(Users::load(dir.path()).unwrap().is_empty());
        assert!(Users::parse("nocolon\n", Path::new("u")).is_err());
        assert!(Users::parse("bob:{PLAIN}x\n", Path::new("u")).is_err());
        assert!(Users::parse("\n# c\n", Path::new("u")).unwrap().is_empty());
        assert!(add_user(dir.path(), "../x@y.org", "p").is_err());
        assert!(add_user(dir.path(), "x@../y", "p").is_err());
        assert!(add_user(dir.path(), "x@y.org", "").is_err());
        assert!(add_user(dir.path(), "x@y.org", "a\nb").is_err());
        assert!(add_user(dir.path(), "noat", "p").is_err());
    }
}
