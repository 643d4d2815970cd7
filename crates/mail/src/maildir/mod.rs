//! Maildir++ storage: `DIR/mail/<domain>/<user>/` with `cur/ new/ tmp/` for INBOX and one
//! `.Name` directory per folder (`.Sent`, `.Archive.2024`), the layout Dovecot, Courier and
//! mutt use, so an existing tree is served as it is.

pub mod deliver;
pub mod flags;
pub mod folder;
pub mod uidlist;

use std::path::{Path, PathBuf};

use crate::error::MailError;

pub use deliver::deliver;

/// Splits `user@domain` into a local part and a lower-cased domain that are safe as path
/// components (no `/`, no `..`, no control characters, no leading dot).
pub fn address_parts(address: &str) -> Result<(&str, String), MailError> {
    let bad = || MailError::BadAddress(address.to_string());
    let (local, domain) = address.rsplit_once('@').ok_or_else(bad)?;
    if !valid_local(local) || !valid_domain(domain) {
        return Err(bad());
    }
    Ok((local, domain.to_ascii_lowercase()))
}

/// A local part usable as a directory name: RFC 5322 atext plus dots, not starting or ending
/// with a dot, no `..`, at most 64 octets.
pub fn valid_local(local: &str) -> bool {
    !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-=?^_`{|}~.".contains(&b))
}

/// A DNS name usable as a directory name: letters, digits, `-` and `.`, no empty label.
pub fn valid_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|l| !l.is_empty() && l.len() <= 63)
        && domain.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// The Maildir++ root of one user: `root/mail/<domain>/<local>`.
pub fn user_dir(root: &Path, domain: &str, local: &str) -> PathBuf {
    root.join("mail").join(domain.to_ascii_lowercase()).join(local)
}

/// Creates a Maildir (`cur`, `new`, `tmp`, mode 0700) at `dir` if it is not there yet.
pub fn create(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true).mode(0o700);
    for sub in ["cur", "new", "tmp"] {
        b.create(dir.join(sub))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_that_would_escape_the_root_are_refused() {
        assert_eq!(address_parts("Bob@Hamburger.EDU").unwrap(), ("Bob", "hamburger.edu".to_string()));
        for bad in [
            "../x@y.org",
            "x@..",
            "x@a..b",
            ".x@y.org",
            "x/y@z.org",
            "x@y/z",
            "@y.org",
            "x@",
            "x",
            "a b@c.d",
            "x@y.org\n",
        ] {
            assert!(address_parts(bad).is_err(), "{bad:?}");
        }
    }
}
