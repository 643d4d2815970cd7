//! [`SessionFile`]: TLS 1.3 session tickets kept in a file, so that a later run of
//! `appnet web get --http3 --0rtt` resumes the session and sends its request as 0-RTT early
//! data (what ngtcp2's `--session-file` and curl's `--ssl-sessions` do).
//!
//! The file is text, one entry a line, and private (0600): it holds resumption secrets.
//! ```text
//! # appnet HTTP/3 session tickets: resumption secrets, keep private
//! ticket NAME ADDR TRUST EXPIRES HEX
//! kx NAME ADDR TRUST GROUP
//! ```
//! `NAME` is the TLS server name, `ADDR` the server's `IP:port`, `TRUST` a digest of the trust
//! anchors the session was verified under (a ticket is only used under the same trust),
//! `EXPIRES` the ticket's end (Unix seconds), `HEX` the session as rustls encodes it (our
//! patch of rustls, `vendor/rustls/APPNET-PATCH.md`). Expired tickets are dropped; a file that
//! does not parse is ignored with a warning and replaced at the next save. Saving is
//! crash-safe (temporary file, fsync, rename, directory fsync) and never follows a symlink.

use rustls::NamedGroup;
use rustls::client::danger::ServerCertVerifier;
use rustls::client::{
    ClientSessionStore, ResolvesClientCert, Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use rustls::pki_types::ServerName;
use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The first line of every session file.
const HEADER: &str = "# appnet HTTP/3 session tickets: resumption secrets, keep private";

/// A larger file is not read (a session is a few KB, mostly the server's certificates).
const MAX_FILE: u64 = 4 << 20;

/// Tickets kept per server (servers send a few per connection; each is used once).
const TICKETS_PER_SERVER: usize = 8;

/// Lines kept for other servers; the oldest beyond this are dropped.
const MAX_OTHER_LINES: usize = 1024;

/// A [`ClientSessionStore`] for one server address and trust, backed by a session file: the
/// tickets for it are read when the store is made and written back by [`SessionFile::save`].
/// Within the process the store is an ordinary in-memory store, so writing never delays a
/// handshake.
pub struct SessionFile {
    path: PathBuf,
    addr: SocketAddr,
    trust: String,
    suites: Vec<rustls::SupportedCipherSuite>,
    verifier: Arc<dyn ServerCertVerifier>,
    creds: Arc<dyn ResolvesClientCert>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    tickets: HashMap<String, VecDeque<Tls13ClientSessionValue>>,
    kx: HashMap<String, NamedGroup>,
    dirty: bool,
}

impl std::fmt::Debug for SessionFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionFile")
            .field("path", &self.path)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Where `--0rtt` keeps tickets by default: `$XDG_CACHE_HOME/appnet/h3-sessions`, else
/// `~/.cache/appnet/h3-sessions`; `None` when neither variable is set.
pub fn default_path() -> Option<PathBuf> {
    let cache = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".cache"),
    };
    Some(cache.join("appnet").join("h3-sessions"))
}

/// A digest of the trust anchors in `roots`: tickets are only resumed under the trust that
/// verified the server (rustls does not verify the certificate again on resumption).
pub fn trust_digest(roots: &rustls::RootCertStore) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for anchor in &roots.roots {
        for part in [&anchor.subject[..], &anchor.subject_public_key_info[..]] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
    }
    hex(&ctx.finish().as_ref()[..12])
}

impl SessionFile {
    /// Opens the store for `addr` under `trust` (see [`trust_digest`]), bound to the verifier
    /// and client-certificate resolver of the `ClientConfig` it will serve. A missing file is
    /// an empty store; a corrupt or unreadable one is too, with a warning.
    pub fn open(
        path: &Path,
        addr: SocketAddr,
        trust: String,
        suites: Vec<rustls::SupportedCipherSuite>,
        verifier: Arc<dyn ServerCertVerifier>,
        creds: Arc<dyn ResolvesClientCert>,
    ) -> SessionFile {
        let store = SessionFile {
            path: path.to_path_buf(),
            addr,
            trust,
            suites,
            verifier,
            creds,
            state: Mutex::new(State::default()),
        };
        let now = unix_now();
        let mut state = State::default();
        for entry in store.read_entries() {
            if !store.is_ours(&entry) {
                continue;
            }
            match entry.kind {
                Kind::Ticket { expires, bytes } if expires > now => {
                    let decoded = Tls13ClientSessionValue::appnet_decode(
                        &bytes,
                        &store.suites,
                        &store.verifier,
                        &store.creds,
                    );
                    if let Some(value) = decoded {
                        push_ticket(state.tickets.entry(entry.name).or_default(), value);
                    }
                }
                Kind::Ticket { .. } => {}
                Kind::Kx(group) => {
                    state.kx.insert(entry.name, group);
                }
            }
        }
        *store.lock() = state;
        store
    }

    /// Whether this store holds a ticket for `name` (a connection to it will try 0-RTT).
    pub fn has_ticket(&self, name: &str) -> bool {
        self.lock().tickets.get(name).is_some_and(|q| !q.is_empty())
    }

    /// Writes the file back if anything changed: this store's entries replace those for the
    /// same address and trust, other servers' unexpired entries are kept.
    pub fn save(&self) -> std::io::Result<()> {
        let mut lines = Vec::new();
        {
            let mut state = self.lock();
            if !state.dirty {
                return Ok(());
            }
            let now = unix_now();
            for (name, queue) in &state.tickets {
                for value in queue.iter().filter(|v| v.appnet_expires_at() > now) {
                    lines.push(format!(
                        "ticket {name} {} {} {} {}",
                        self.addr,
                        self.trust,
                        value.appnet_expires_at(),
                        hex(&value.appnet_encode())
                    ));
                }
            }
            for (name, group) in &state.kx {
                lines.push(format!("kx {name} {} {} {}", self.addr, self.trust, u16::from(*group)));
            }
            state.dirty = false;
        }
        let now = unix_now();
        let mut others: Vec<String> = self
            .read_entries()
            .into_iter()
            .filter(|e| !self.is_ours(e) && !matches!(e.kind, Kind::Ticket { expires, .. } if expires <= now))
            .map(|e| e.line)
            .collect();
        let excess = others.len().saturating_sub(MAX_OTHER_LINES);
        others.drain(..excess);
        let mut text = String::from(HEADER);
        text.push('\n');
        for line in others.iter().chain(&lines) {
            text.push_str(line);
            text.push('\n');
        }
        write_private(&self.path, text.as_bytes())
    }

    fn is_ours(&self, e: &Entry) -> bool {
        e.addr == self.addr && e.trust == self.trust
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The file's entries; none (with a warning) if it is missing, unreadable or corrupt.
    fn read_entries(&self) -> Vec<Entry> {
        let text = match read_private(&self.path) {
            Ok(Some(text)) => text,
            Ok(None) => return Vec::new(),
            Err(e) => {
                tracing::warn!("session file {}: {e}; ignored", self.path.display());
                return Vec::new();
            }
        };
        match parse(&text) {
            Some(entries) => entries,
            None => {
                tracing::warn!(
                    "session file {}: not a session file or corrupt; ignored",
                    self.path.display()
                );
                Vec::new()
            }
        }
    }
}

fn push_ticket(queue: &mut VecDeque<Tls13ClientSessionValue>, value: Tls13ClientSessionValue) {
    if queue.len() >= TICKETS_PER_SERVER {
        queue.pop_front();
    }
    queue.push_back(value);
}

impl ClientSessionStore for SessionFile {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        let mut state = self.lock();
        let name = server_name.to_str().into_owned();
        if state.kx.get(&name) != Some(&group) {
            state.kx.insert(name, group);
            state.dirty = true;
        }
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.lock().kx.get(server_name.to_str().as_ref()).copied()
    }

    // HTTP/3 is TLS 1.3 only: there are no TLS 1.2 sessions to keep.
    fn set_tls12_session(&self, _: ServerName<'static>, _: Tls12ClientSessionValue) {}

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        None
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {}

    fn insert_tls13_ticket(&self, server_name: ServerName<'static>, value: Tls13ClientSessionValue) {
        let mut state = self.lock();
        push_ticket(state.tickets.entry(server_name.to_str().into_owned()).or_default(), value);
        state.dirty = true;
    }

    fn take_tls13_ticket(&self, server_name: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        let mut state = self.lock();
        // The newest ticket first; each is used once (RFC 8446 §C.4).
        let value = state.tickets.get_mut(server_name.to_str().as_ref())?.pop_back()?;
        state.dirty = true;
        Some(value)
    }
}

/// One line of the file.
#[derive(Debug, PartialEq)]
struct Entry {
    line: String,
    name: String,
    addr: SocketAddr,
    trust: String,
    kind: Kind,
}

#[derive(Debug, PartialEq)]
enum Kind {
    Ticket { expires: u64, bytes: Vec<u8> },
    Kx(NamedGroup),
}

/// Parses a whole file; `None` if any line is malformed.
fn parse(text: &str) -> Option<Vec<Entry>> {
    let mut lines = text.lines();
    if lines.next()? != HEADER {
        return None;
    }
    lines.filter(|l| !l.is_empty()).map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Entry> {
    let mut f = line.split(' ');
    let tag = f.next()?;
    let name = f.next().filter(|n| !n.is_empty() && n.len() <= 253)?.to_string();
    let addr = f.next()?.parse().ok()?;
    let trust = f.next().filter(|t| t.len() == 24 && t.bytes().all(|b| b.is_ascii_hexdigit()))?.to_string();
    let kind = match tag {
        "ticket" => {
            let expires = f.next()?.parse().ok()?;
            Kind::Ticket { expires, bytes: unhex(f.next()?)? }
        }
        "kx" => Kind::Kx(NamedGroup::from(f.next()?.parse::<u16>().ok()?)),
        _ => return None,
    };
    if f.next().is_some() {
        return None;
    }
    Some(Entry { line: line.to_string(), name, addr, trust, kind })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Reads `path` without following a symlink; `Ok(None)` if it does not exist.
fn read_private(path: &Path) -> std::io::Result<Option<String>> {
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(std::io::Error::other("is a symlink (not followed)"));
        }
        Err(e) => return Err(e),
    };
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut text = String::new();
    (&mut file).take(MAX_FILE + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_FILE {
        return Err(std::io::Error::other(format!("larger than {MAX_FILE} bytes")));
    }
    Ok(Some(text))
}

/// Replaces `path` with `data`, mode 0600 (netkit's crash-safe private write). The directory
/// is made (0700) if missing; a symlink at `path` is left alone and reported.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(std::io::Error::other(format!("{} is a symlink: not replaced", path.display())));
    }
    appnet_netkit::files::write_private(path, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_junk_is_refused() {
        let line = "ticket localhost 127.0.0.1:8443 0123456789abcdef01234567 1900000000 00ff10";
        let e = parse_line(line).unwrap();
        assert_eq!(e.name, "localhost");
        assert_eq!(e.kind, Kind::Ticket { expires: 1_900_000_000, bytes: vec![0, 0xff, 0x10] });
        let kx = parse_line("kx localhost [::1]:443 0123456789abcdef01234567 29").unwrap();
        assert_eq!(kx.kind, Kind::Kx(NamedGroup::X25519));
        for bad in [
            "ticket localhost 127.0.0.1:8443 0123456789abcdef01234567 1900000000 0ff",
            "ticket localhost 127.0.0.1:8443 short 1900000000 00",
            "ticket localhost nowhere 0123456789abcdef01234567 1 00",
            "kx localhost 127.0.0.1:1 0123456789abcdef01234567 29 extra",
            "other localhost 127.0.0.1:1 0123456789abcdef01234567 29",
            "",
        ] {
            assert!(parse_line(bad).is_none(), "{bad:?}");
        }
        assert!(parse("no header\n").is_none());
        assert_eq!(parse(&format!("{HEADER}\n{line}\n")).unwrap().len(), 1);
        assert_eq!(unhex(&hex(&[1, 2, 254])).unwrap(), vec![1, 2, 254]);
        assert!(unhex("zz").is_none());
    }

    #[test]
    fn writes_are_private_and_refuse_symlinks() {
        use std::os::unix::fs::PermissionsExt;
        let dir = appnet_netkit::harness::TempDir::new("h3-session-file");
        let path = dir.join("sub/h3-sessions");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(read_private(&path).unwrap().as_deref(), Some("two"));
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let names: Vec<_> =
            std::fs::read_dir(dir.join("sub")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("h3-sessions")], "no temporary left behind");
        let target = dir.join("target");
        std::fs::write(&target, "secret").unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(read_private(&link).is_err(), "a symlink is not followed when reading");
        assert!(write_private(&link, b"x").is_err(), "nor replaced when writing");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "secret");
        assert_eq!(read_private(&dir.join("missing")).unwrap(), None);
    }
}
