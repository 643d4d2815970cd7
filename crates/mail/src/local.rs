//! Final delivery to a local mailbox: the address is mapped to the users file's spelling,
//! then the message goes into that user's Maildir with `maildir::deliver` (tmp → fsync → new).

use crate::maildir;
use crate::users::Users;
use std::io;
use std::path::{Path, PathBuf};

/// Delivers `data` to `address`'s INBOX under `root`; the file is synced when this returns.
pub fn deliver_local(root: &Path, users: &Users, address: &str, data: &[u8]) -> io::Result<PathBuf> {
    let canonical = users.canonical(address).unwrap_or_else(|| address.to_string());
    let (local, domain) = maildir::address_parts(&canonical)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    maildir::deliver(root, &domain, local, data)
}
