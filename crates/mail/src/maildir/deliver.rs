//! Local delivery into a Maildir: the message is written under `tmp/`, synced, renamed into
//! `new/`, and `new/` itself synced, so once `deliver` returns the message survives a crash
//! (SMTP may say `250` then), and no reader ever sees a partial file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Delivers `message` to `user@domain`'s INBOX under `root/mail/<domain>/<user>/new/`,
/// creating the Maildir when it is missing. Line endings are stored as LF (the Maildir
/// convention Dovecot and mutt use); the file name carries `,S=<file size>,W=<size with CRLF>`
/// like Dovecot's, so POP3 and IMAP sizes need no read. Returns the new file's path.
pub fn deliver(root: &Path, domain: &str, user: &str, message: &[u8]) -> std::io::Result<PathBuf> {
    if !super::valid_local(user) || !super::valid_domain(domain) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("not a deliverable mailbox: {user}@{domain}"),
        ));
    }
    let dir = super::user_dir(root, domain, user);
    if !dir.join("new").is_dir() || !dir.join("tmp").is_dir() {
        super::create(&dir)?;
    }
    let data = to_lf(message);
    store(&dir, &data)
}

/// Writes `data` (already LF line endings) as a new message of the Maildir folder `dir`
/// into `new/`. Returns the final path.
pub fn store(dir: &Path, data: &[u8]) -> std::io::Result<PathBuf> {
    store_with(dir, data, None, None)
}

/// Like [`store`], but with `Some(info)` the message goes to `cur/` with `:2,<info>` (an
/// IMAP APPEND or COPY), and `date` becomes its arrival time (the file's mtime).
pub fn store_with(
    dir: &Path,
    data: &[u8],
    info: Option<&str>,
    date: Option<std::time::SystemTime>,
) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = unique_name(data);
    let tmp = dir.join("tmp").join(&name);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        if let Some(date) = date {
            f.set_modified(date)?;
        }
        f.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let (sub, final_name) = match info {
        None => ("new", name),
        Some(info) => ("cur", format!("{name}:2,{info}")),
    };
    let target = dir.join(sub).join(final_name);
    if let Err(e) = std::fs::rename(&tmp, &target) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::File::open(dir.join(sub))?.sync_all()?;
    Ok(target)
}

/// `<secs>.M<usecs>P<pid>Q<n>.<host>,S=<size>,W=<crlf size>`: unique per host, process and
/// call (the Maildir naming rule), with Dovecot's size fields.
fn unique_name(data: &[u8]) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!(
        "{}.M{}P{}Q{}.{},S={},W={}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        hostname(),
        data.len(),
        crlf_size(data)
    )
}

/// This host's name with `/` and `:` escaped as the Maildir specification asks.
pub fn hostname() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "localhost".into());
        let raw = raw.trim();
        let raw = if raw.is_empty() { "localhost" } else { raw };
        raw.replace('/', "\\057").replace(':', "\\072").replace(',', "\\054")
    })
}

/// `message` with every CRLF turned into LF (bare CRs are kept).
pub fn to_lf(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    let mut i = 0;
    while i < message.len() {
        if message[i] == b'\r' && message.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(message[i]);
        i += 1;
    }
    out
}

/// The size of `data` when every LF not already preceded by CR is sent as CRLF: the size
/// POP3 LIST and IMAP RFC822.SIZE report, exactly what RETR and FETCH send.
pub fn crlf_size(data: &[u8]) -> u64 {
    let mut bare = 0u64;
    let mut prev = 0u8;
    for &b in data {
        if b == b'\n' && prev != b'\r' {
            bare += 1;
        }
        prev = b;
    }
    data.len() as u64 + bare
}

#[cfg(test)]
mod tests {
    use super::*;
    use appnet_netkit::harness::TempDir;

    #[test]
    fn delivers_into_new_with_sizes_in_the_name() {
        let dir = TempDir::new("mail-deliver");
        let msg = b"Subject: hi\r\n\r\nline one\r\nline two\r\n";
        let path = deliver(dir.path(), "Hamburger.edu", "bob", msg).unwrap();
        assert!(path.starts_with(dir.join("mail/hamburger.edu/bob/new")));
        let stored = std::fs::read(&path).unwrap();
        assert_eq!(stored, b"Subject: hi\n\nline one\nline two\n");
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.ends_with(&format!(",S={},W={}", stored.len(), msg.len())), "{name}");
        assert_eq!(std::fs::read_dir(dir.join("mail/hamburger.edu/bob/tmp")).unwrap().count(), 0);
        let second = deliver(dir.path(), "hamburger.edu", "bob", msg).unwrap();
        assert_ne!(path, second);
        assert!(deliver(dir.path(), "hamburger.edu", "../bob", msg).is_err());
        assert!(deliver(dir.path(), "..", "bob", msg).is_err());
    }

    #[test]
    fn sizes_count_line_endings_as_two_octets() {
        assert_eq!(crlf_size(b"a\nb\r\nc"), 7);
        assert_eq!(to_lf(b"a\r\nb\rc\r\n"), b"a\nb\rc\n");
        assert_eq!(crlf_size(b""), 0);
    }
}
