//! The users file: one `name:$6$salt$hash:home` line per user (SHA-512 crypt, the format of
//! `/etc/shadow` and `openssl passwd -6`), `#` comments. The server reads it at each login, so
//! `appnet ftp user add` takes effect without a restart.

use rand::Rng;
use std::io;
use std::path::{Path, PathBuf};

/// What can go wrong with the users file.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The users file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A bad user name (empty, or with `:`, `/`, blanks or control characters).
    #[error("bad user name {0:?}: use letters, digits, '.', '_', '-' or '@'")]
    BadName(String),
    /// The password cannot be used.
    #[error("bad password: {0}")]
    BadPassword(&'static str),
    /// The anonymous names are reserved.
    #[error("{0:?} is the anonymous login; pass --anonymous to the server instead")]
    Reserved(String),
}

/// One user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Login name.
    pub name: String,
    /// `$6$salt$hash` (or `$6$rounds=N$salt$hash`).
    pub hash: String,
    /// The user's root directory.
    pub home: PathBuf,
}

/// Parses the file's text; malformed lines are skipped (and logged).
pub fn parse(text: &str) -> Vec<User> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(name), Some(hash), Some(home)) if !name.is_empty() && !home.is_empty() => {
                out.push(User { name: name.to_string(), hash: hash.to_string(), home: PathBuf::from(home) })
            }
            _ => tracing::warn!("users file line {}: expected name:hash:home; skipped", n + 1),
        }
    }
    out
}

/// Reads the users file.
pub fn load(path: &Path) -> Result<Vec<User>, UsersError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| UsersError::Io { path: path.into(), source })?;
    Ok(parse(&text))
}

/// The home of `name` if `password` is right. Always computes one hash, so a wrong name
/// costs as much time as a wrong password.
pub fn verify(users: &[User], name: &str, password: &str) -> Option<PathBuf> {
    const DUMMY: &str = "$6$appnetdummysalt$";
    let user = users.iter().find(|u| u.name == name);
    let hash = user.map(|u| u.hash.as_str()).unwrap_or(DUMMY);
    let ok = check_sha512_crypt(hash, password);
    match user {
        Some(u) if ok => Some(u.home.clone()),
        _ => None,
    }
}

/// Checks `password` against a `$6$[rounds=N$]salt$hash` string in constant time.
pub fn check_sha512_crypt(stored: &str, password: &str) -> bool {
    let Some(body) = stored.strip_prefix("$6$") else { return false };
    let mut rounds = sha_crypt::ROUNDS_DEFAULT;
    let mut rest = body;
    if let Some(r) = body.strip_prefix("rounds=") {
        let Some((n, after)) = r.split_once('$') else { return false };
        let Ok(n) = n.parse::<usize>() else { return false };
        rounds = n.clamp(sha_crypt::ROUNDS_MIN, sha_crypt::ROUNDS_MAX);
        rest = after;
    }
    let Some((salt, expected)) = rest.split_once('$') else { return false };
    let Ok(params) = sha_crypt::Sha512Params::new(rounds) else { return false };
    let Ok(computed) = sha_crypt::sha512_crypt_b64(password.as_bytes(), salt.as_bytes(), &params) else {
        return false;
    };
    constant_time_eq(computed.as_bytes(), expected.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `$6$salt$hash` for `password` with a fresh 16-character salt.
pub fn hash_password(password: &str) -> Result<String, UsersError> {
    const ALPHABET: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    if password.is_empty() {
        return Err(UsersError::BadPassword("it is empty"));
    }
    let mut rng = rand::rng();
    let salt: String = (0..16).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    let params = sha_crypt::Sha512Params::new(sha_crypt::ROUNDS_DEFAULT)
        .map_err(|_| UsersError::BadPassword("cannot hash it"))?;
    let hash = sha_crypt::sha512_crypt_b64(password.as_bytes(), salt.as_bytes(), &params)
        .map_err(|_| UsersError::BadPassword("cannot hash it"))?;
    Ok(format!("$6${salt}${hash}"))
}

/// Adds `name` (or replaces its line) in the users file at `path`, creating the file if it is
/// missing; written crash-safely (temp, fsync, rename) with mode 0600.
pub fn add_user(path: &Path, name: &str, password: &str, home: &Path) -> Result<(), UsersError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if !valid {
        return Err(UsersError::BadName(name.to_string()));
    }
    if crate::session::is_anonymous(name) {
        return Err(UsersError::Reserved(name.to_string()));
    }
    let home_str = home.to_str().filter(|h| !h.contains('\n') && !h.is_empty());
    let Some(home_str) = home_str else {
        return Err(UsersError::Io {
            path: home.into(),
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                "the home must be a UTF-8 path without newlines",
            ),
        });
    };
    let io_err = |source| UsersError::Io { path: path.into(), source };
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io_err(e)),
    };
    let line = format!("{name}:{}:{home_str}", hash_password(password)?);
    let mut out = String::new();
    let mut replaced = false;
    for l in old.lines() {
        if l.split(':').next() == Some(name) {
            out.push_str(&line);
            replaced = true;
        } else {
            out.push_str(l);
        }
        out.push('\n');
    }
    if !replaced {
        if out.is_empty() {
            out.push_str(
                "# appnet ftp users: name:sha512-crypt:home (appnet ftp user add NAME --users FILE)\n",
            );
        }
        out.push_str(&line);
        out.push('\n');
    }
    appnet_netkit::files::write_private(path, out.as_bytes()).map_err(io_err)?;
    Ok(())
}

/// Asks for a password on the terminal without echoing it (stdin that is not a terminal is
/// read as is): the first line, without its line end.
pub fn prompt_password(prompt: &str) -> io::Result<String> {
    use std::io::{BufRead, Write};
    let fd = libc::STDIN_FILENO;
    // SAFETY: isatty only inspects the descriptor.
    let tty = unsafe { libc::isatty(fd) } == 1;
    // SAFETY: a zeroed termios is a valid out-parameter for tcgetattr.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor and out-pointer.
    let echo_off = tty && unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if echo_off {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        // SAFETY: valid descriptor and a termios derived from the current one.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    if tty {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if echo_off {
        // SAFETY: restores the settings read above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    }
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sha512_crypt_reference_vector_verifies() {
        // From Ulrich Drepper's SHA-crypt specification.
        let stored = "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1";
        assert!(check_sha512_crypt(stored, "Hello world!"));
        assert!(!check_sha512_crypt(stored, "Hello world"));
        assert!(!check_sha512_crypt("$1$x$y", "x"));
        assert!(!check_sha512_crypt("$6$rounds=junk$x$y", "x"));
    }

    #[test]
    fn add_then_verify_and_replace() {
        let dir = appnet_netkit::harness::TempDir::new("ftp-users");
        let file = dir.path().join("users");
        add_user(&file, "alice", "s3cret", Path::new("/srv/alice")).unwrap();
        add_user(&file, "bob", "pw", Path::new("/srv/bob")).unwrap();
        add_user(&file, "alice", "new", Path::new("/srv/alice2")).unwrap();
        let users = load(&file).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(verify(&users, "alice", "new"), Some(PathBuf::from("/srv/alice2")));
        assert_eq!(verify(&users, "alice", "s3cret"), None);
        assert_eq!(verify(&users, "nobody", "pw"), None);
        assert!(matches!(add_user(&file, "a:b", "x", Path::new("/")), Err(UsersError::BadName(_))));
        assert!(matches!(add_user(&file, "ftp", "x", Path::new("/")), Err(UsersError::Reserved(_))));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let users = parse("# c\n\nbad\nx:$6$a$b:/h\n:y:z\n");
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].home, PathBuf::from("/h"));
    }
}
