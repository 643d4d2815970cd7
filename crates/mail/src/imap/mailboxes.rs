//! The folders of one user as IMAP mailboxes: `INBOX` is the Maildir++ root, every other
//! mailbox `Name` (hierarchy delimiter `.`) is the directory `.Name`, the layout Dovecot uses
//! for Maildir++; subscriptions live in the root's `subscriptions` file (Courier/Dovecot).

use std::path::{Path, PathBuf};

/// The hierarchy delimiter.
pub const DELIMITER: char = '.';

/// The directory of mailbox `name` under the user's Maildir `root`, or `None` for a name that
/// is not safe as a path (empty components, `/`, control characters, a leading dot).
pub fn dir_of(root: &Path, name: &str) -> Option<PathBuf> {
    if name.eq_ignore_ascii_case("INBOX") {
        return Some(root.to_path_buf());
    }
    // "INBOX.x" is a child of INBOX in Dovecot's namespace without a prefix: same directory as "x"
    // would be ambiguous, so children of INBOX are stored as ".INBOX.x" like any other name.
    if !valid_name(name) {
        return None;
    }
    Some(root.join(format!(".{name}")))
}

/// Whether `name` is a mailbox name appnet can store.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.contains('/')
        && !name.chars().any(|c| c.is_control())
        && name.split(DELIMITER).all(|c| !c.is_empty() && c != "..")
}

/// All mailboxes of the user (INBOX first, then the `.Name` directories holding `cur/`).
pub fn list(root: &Path) -> Vec<String> {
    let mut names = vec!["INBOX".to_string()];
    let mut others: Vec<String> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let folder = name.strip_prefix('.')?;
            if folder.is_empty() || folder == "." || !valid_name(folder) {
                return None;
            }
            e.file_type().ok()?.is_dir().then_some(())?;
            e.path().join("cur").is_dir().then(|| folder.to_string())
        })
        .collect();
    others.sort();
    names.extend(others);
    names
}

/// Whether mailbox `name` has children among `all`.
pub fn has_children(all: &[String], name: &str) -> bool {
    let prefix = format!("{name}{DELIMITER}");
    all.iter().any(|n| n.starts_with(&prefix))
}

/// IMAP LIST pattern matching: `*` matches anything, `%` anything but the delimiter;
/// INBOX matches case-insensitively.
pub fn matches(pattern: &str, name: &str) -> bool {
    fn m(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|i| m(rest, &n[i..])),
            Some((b'%', rest)) => {
                (0..=n.len()).take_while(|&i| i == 0 || n[i - 1] != DELIMITER as u8).any(|i| m(rest, &n[i..]))
            }
            Some((c, rest)) => n.first() == Some(c) && m(rest, &n[1..]),
        }
    }
    // Bound the backtracking: long patterns full of wildcards are refused.
    if pattern.len() > 256 || pattern.bytes().filter(|b| *b == b'*' || *b == b'%').count() > 8 {
        return false;
    }
    if name.eq_ignore_ascii_case("INBOX") {
        // INBOX is case-insensitive: fold the pattern's literal prefix (up to its length).
        let upper_pattern: String = pattern
            .char_indices()
            .map(
                |(i, c)| {
                    if i < 5 && !pattern[..=i].contains(['*', '%']) { c.to_ascii_uppercase() } else { c }
                },
            )
            .collect();
        return m(upper_pattern.as_bytes(), b"INBOX");
    }
    m(pattern.as_bytes(), name.as_bytes())
}

/// Creates mailbox `name` (a Maildir with the Maildir++ `maildirfolder` marker).
pub fn create(root: &Path, name: &str) -> std::io::Result<()> {
    let dir = dir_of(root, name)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "invalid mailbox name"))?;
    if dir.join("cur").is_dir() {
        return Err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, "mailbox exists"));
    }
    crate::maildir::create(&dir)?;
    std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(dir.join("maildirfolder"))?;
    Ok(())
}

/// Deletes mailbox `name` and its messages (children stay, as in Maildir++).
pub fn delete(root: &Path, name: &str) -> std::io::Result<()> {
    if name.eq_ignore_ascii_case("INBOX") {
        return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, "INBOX cannot be deleted"));
    }
    let dir = dir_of(root, name)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "invalid mailbox name"))?;
    let meta = std::fs::symlink_metadata(&dir)?;
    if !meta.is_dir() {
        return Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no such mailbox"));
    }
    // remove_dir_all does not follow symlinks inside the tree.
    std::fs::remove_dir_all(&dir)
}

/// Renames mailbox `from` (and its children) to `to`.
pub fn rename(root: &Path, from: &str, to: &str) -> std::io::Result<()> {
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "invalid mailbox name");
    if from.eq_ignore_ascii_case("INBOX") || to.eq_ignore_ascii_case("INBOX") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "INBOX cannot be renamed here",
        ));
    }
    let src = dir_of(root, from).ok_or_else(invalid)?;
    let dst = dir_of(root, to).ok_or_else(invalid)?;
    if !src.join("cur").is_dir() {
        return Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no such mailbox"));
    }
    if dst.exists() {
        return Err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, "mailbox exists"));
    }
    let children: Vec<String> =
        list(root).into_iter().filter(|n| n.starts_with(&format!("{from}{DELIMITER}"))).collect();
    std::fs::rename(&src, &dst)?;
    for child in children {
        let new_name = format!("{to}{}", &child[from.len()..]);
        if let (Some(a), Some(b)) = (dir_of(root, &child), dir_of(root, &new_name)) {
            std::fs::rename(a, b)?;
        }
    }
    Ok(())
}

/// The subscribed mailbox names.
pub fn subscriptions(root: &Path) -> Vec<String> {
    std::fs::read_to_string(root.join("subscriptions"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Adds or removes a subscription (crash-safe rewrite).
pub fn set_subscribed(root: &Path, name: &str, on: bool) -> std::io::Result<()> {
    let mut subs = subscriptions(root);
    subs.retain(|s| s != name);
    if on {
        subs.push(name.to_string());
    }
    let mut text = subs.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    appnet_netkit::files::write_atomic(&root.join("subscriptions"), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_and_names() {
        assert!(matches("*", "Archive.2024"));
        assert!(matches("%", "Archive"));
        assert!(!matches("%", "Archive.2024"));
        assert!(matches("Archive.%", "Archive.2024"));
        assert!(matches("inbox", "INBOX"));
        assert!(matches("In*", "INBOX"));
        assert!(!matches("Sent", "Sentx"));
        assert!(!matches("%%%%%%%%%%", "a"));
        assert!(valid_name("Sent"));
        for bad in ["", "a/b", "..", "a..b", ".a", "a.", "x\u{1}"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        let root = std::path::Path::new("/r");
        assert_eq!(dir_of(root, "inbox").unwrap(), root);
        assert_eq!(dir_of(root, "Sent").unwrap(), root.join(".Sent"));
        assert!(dir_of(root, "../x").is_none());
    }
}
