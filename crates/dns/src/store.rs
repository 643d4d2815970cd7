//! What a server keeps in its state directory: the zones it is secondary for and the IXFR
//! journal of every zone (primary and secondary), written crash-safely (temp file, fsync,
//! rename, fsync the directory) so a restart still answers IXFR from where it left off.
//!
//! A journal file is the journal's zone-file text between a header naming the zone version it
//! leads to (serial and a digest of the content) and a trailer with a checksum of the body. It
//! is used only when it leads to exactly the zone loaded at start; otherwise (zone file edited
//! while the server was down, truncated or damaged file) it is ignored and the server starts
//! with an empty journal, so secondaries that are behind get the whole zone, never a wrong diff.

use crate::delta::Journal;
use crate::wire::name;
use crate::zone::{Fnv, Zone};
use std::hash::Hasher;
use std::path::{Path, PathBuf};

const HEADER: &str = "; appnet IXFR journal";
const TRAILER: &str = "; end of journal, checksum ";

/// `DIR/NAME.zone`: where a secondary zone is kept (`root.zone` for the root).
pub fn zone_path(dir: &Path, apex: &[u8]) -> PathBuf {
    dir.join(format!("{}.zone", file_stem(apex)))
}

/// `DIR/NAME.zone.journal`: where the IXFR journal of a zone is kept.
pub fn journal_path(dir: &Path, apex: &[u8]) -> PathBuf {
    dir.join(format!("{}.zone.journal", file_stem(apex)))
}

fn file_stem(apex: &[u8]) -> String {
    let n = name::to_text(apex);
    let n = n.trim_end_matches('.');
    if n.is_empty() { "root".to_string() } else { n.to_string() }
}

/// Writes `bytes` to `file` so that after a crash it holds either the old or the new content
/// (netkit's temp file, fsync, rename, directory fsync), creating the directory if needed.
pub fn write_atomically(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    appnet_netkit::files::write_atomic(file, bytes)
}

/// A digest of a zone's content, independent of record order within an RRset (a reordered
/// file is the same zone): tells a journal whether the zone it meets is the one it leads to.
pub fn zone_digest(zone: &Zone) -> u64 {
    let mut sum = zone.record_count() as u64;
    let mut buf = [0u8; name::MAX_NAME];
    for (owner, set) in zone.rrsets() {
        let owner = name::lower_into(owner, &mut buf);
        for rd in set.rdatas() {
            let mut h = Fnv::default();
            h.write(owner);
            h.write(&set.rtype.to_be_bytes());
            h.write(&set.ttl.to_be_bytes());
            h.write(&(rd.len() as u32).to_be_bytes());
            h.write(rd);
            sum = sum.wrapping_add(h.finish());
        }
    }
    sum
}

fn checksum(body: &str) -> u64 {
    let mut h = Fnv::default();
    h.write(body.as_bytes());
    h.finish()
}

/// The journal file's text for `zone` (its journal, and the version it leads to).
pub fn journal_text(zone: &Zone) -> String {
    let body = format!(
        "{HEADER} of {} leading to serial {} digest {:016x}\n{}",
        name::to_text(zone.apex()),
        zone.soa().serial,
        zone_digest(zone),
        zone.journal().to_text()
    );
    let sum = checksum(&body);
    format!("{body}{TRAILER}{sum:016x}\n")
}

/// Stores `zone`'s journal at `file`, crash-safely.
pub fn save_journal(file: &Path, zone: &Zone) -> std::io::Result<()> {
    write_atomically(file, journal_text(zone).as_bytes())
}

/// Why a stored journal was not used.
#[derive(Debug, thiserror::Error)]
pub enum JournalFileError {
    #[error("cannot read it: {0}")]
    Io(#[from] std::io::Error),
    #[error("it is damaged or truncated ({0})")]
    Corrupt(&'static str),
    #[error(
        "it leads to serial {journal} but the zone has serial {zone} (zone file changed while the server was down)"
    )]
    Stale { journal: u32, zone: u32 },
    #[error(
        "it leads to serial {serial} but the zone's content at that serial differs (zone file edited without a serial change)"
    )]
    Changed { serial: u32 },
}

/// Reads the journal stored at `file` for `zone` (as loaded at start); `Ok(None)` when there is
/// none. Used only when it leads to exactly this zone version.
pub fn load_journal(file: &Path, zone: &Zone, max_bytes: usize) -> Result<Option<Journal>, JournalFileError> {
    let text = match std::fs::read(file) {
        Ok(bytes) => String::from_utf8(bytes).map_err(|_| JournalFileError::Corrupt("not text"))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    journal_from_text(&text, zone, max_bytes).map(Some)
}

/// Parses a journal file's text (see [`journal_text`]) and checks it leads to `zone`.
pub fn journal_from_text(text: &str, zone: &Zone, max_bytes: usize) -> Result<Journal, JournalFileError> {
    use JournalFileError::Corrupt;
    let body_end = text.trim_end_matches('\n').rfind('\n').map(|i| i + 1).ok_or(Corrupt("no trailer"))?;
    let (body, trailer) = text.split_at(body_end);
    let sum = trailer
        .trim_end()
        .strip_prefix(TRAILER)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or(Corrupt("no trailer"))?;
    if sum != checksum(body) {
        return Err(Corrupt("checksum mismatch"));
    }
    let header = body.lines().next().unwrap_or_default();
    let words: Vec<&str> = header.strip_prefix(HEADER).unwrap_or_default().split_whitespace().collect();
    let (serial, digest) = match words[..] {
        ["of", apex, "leading", "to", "serial", serial, "digest", digest]
            if name::from_text(apex).is_ok_and(|a| name::to_lower(&a) == name::to_lower(zone.apex())) =>
        {
            match (serial.parse::<u32>(), u64::from_str_radix(digest, 16)) {
                (Ok(s), Ok(d)) => (s, d),
                _ => return Err(Corrupt("bad header")),
            }
        }
        _ => return Err(Corrupt("bad header")),
    };
    let journal = Journal::parse(body, zone.apex(), max_bytes).ok_or(Corrupt("bad records"))?;
    if journal.newest_serial().is_some_and(|s| s != serial) {
        return Err(Corrupt("header and records disagree"));
    }
    let ours = zone.soa().serial;
    if serial != ours {
        return Err(JournalFileError::Stale { journal: serial, zone: ours });
    }
    if digest != zone_digest(zone) {
        return Err(JournalFileError::Changed { serial });
    }
    Ok(journal)
}

/// [`load_journal`] for a zone just loaded: the zone with its stored journal, or (logged) with
/// an empty one when the stored journal cannot be used.
pub fn with_stored_journal(zone: Zone, dir: &Path, max_bytes: usize) -> Zone {
    let file = journal_path(dir, zone.apex());
    match load_journal(&file, &zone, max_bytes) {
        Ok(Some(j)) => {
            tracing::info!(
                zone = %zone.name(),
                steps = j.len(),
                from = ?j.oldest_serial(),
                to = ?j.newest_serial(),
                "IXFR journal loaded from {}",
                file.display()
            );
            zone.with_journal(j)
        }
        Ok(None) => zone,
        Err(e) => {
            tracing::warn!(zone = %zone.name(), "ignoring the IXFR journal {}: {e}; starting with an empty journal (secondaries that are behind get the whole zone)", file.display());
            zone
        }
    }
}

const UPDATED_HEADER: &str = "; appnet updated zone";
const UPDATED_TRAILER: &str = "; end of updated zone, checksum ";

/// `DIR/NAME.zone.updated`: a primary zone as RFC 2136 updates left it (the user's zone file is
/// never rewritten).
pub fn updated_path(dir: &Path, apex: &[u8]) -> PathBuf {
    dir.join(format!("{}.zone.updated", file_stem(apex)))
}

/// A digest of a zone file's bytes: tells whether the file is still the one stored updates
/// were made on.
pub fn file_digest(bytes: &[u8]) -> u64 {
    let mut h = Fnv::default();
    h.write(bytes);
    h.finish()
}

/// The text of the updated-zone file: a header naming the zone file's digest, the zone, and a
/// trailer with a checksum of everything before it.
pub fn updated_text(zone: &Zone, origin: u64) -> String {
    let body = format!(
        "{UPDATED_HEADER} {} made on zone file digest {origin:016x}\n{}",
        zone.name(),
        zone.to_text()
    );
    let sum = checksum(&body);
    format!("{body}{UPDATED_TRAILER}{sum:016x}\n")
}

/// Makes an accepted update durable before it is answered: the zone as updated (with a digest
/// of `zone_file`, the file it was loaded from), then its IXFR journal, each written
/// crash-safely. After a crash between the two the updated zone is kept and the journal, which
/// then leads to an older serial, is ignored: secondaries get the whole zone, never a wrong
/// diff.
pub fn save_update(dir: &Path, zone_file: &Path, zone: &Zone) -> std::io::Result<()> {
    let origin = file_digest(&std::fs::read(zone_file)?);
    write_atomically(&updated_path(dir, zone.apex()), updated_text(zone, origin).as_bytes())?;
    save_journal(&journal_path(dir, zone.apex()), zone)
}

/// Why a stored updated zone was not used.
#[derive(Debug, thiserror::Error)]
pub enum UpdatedError {
    #[error("cannot read it: {0}")]
    Io(#[from] std::io::Error),
    #[error("it is damaged or truncated ({0})")]
    Corrupt(&'static str),
    #[error("the zone file was changed since the updates were made (the file's content is served)")]
    FileChanged,
    #[error("its records do not load: {0}")]
    Zone(#[from] crate::zone::ZoneError),
}

/// Reads the updated zone stored in `dir` for the zone `loaded` from a file whose bytes are
/// `file_bytes`: `Ok(None)` when there is none; used only when made on exactly this file.
pub fn load_updated(dir: &Path, loaded: &Zone, file_bytes: &[u8]) -> Result<Option<Zone>, UpdatedError> {
    use UpdatedError::Corrupt;
    let text = match std::fs::read(updated_path(dir, loaded.apex())) {
        Ok(bytes) => String::from_utf8(bytes).map_err(|_| Corrupt("not text"))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let body_end = text.trim_end_matches('\n').rfind('\n').map(|i| i + 1).ok_or(Corrupt("no trailer"))?;
    let (body, trailer) = text.split_at(body_end);
    let sum = trailer
        .trim_end()
        .strip_prefix(UPDATED_TRAILER)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or(Corrupt("no trailer"))?;
    if sum != checksum(body) {
        return Err(Corrupt("checksum mismatch"));
    }
    let header = body.lines().next().unwrap_or_default();
    let words: Vec<&str> =
        header.strip_prefix(UPDATED_HEADER).unwrap_or_default().split_whitespace().collect();
    let origin = match words[..] {
        [apex, "made", "on", "zone", "file", "digest", digest]
            if name::from_text(apex).is_ok_and(|a| name::to_lower(&a) == name::to_lower(loaded.apex())) =>
        {
            u64::from_str_radix(digest, 16).map_err(|_| Corrupt("bad header"))?
        }
        _ => return Err(Corrupt("bad header")),
    };
    if origin != file_digest(file_bytes) {
        return Err(UpdatedError::FileChanged);
    }
    Ok(Some(Zone::from_text(&loaded.name(), body)?))
}

/// The zone to serve at start for a primary zone `loaded` from `zone_file`: the updated zone
/// stored in `dir` when the updates were made on this very file (RFC 2136 updates survive a
/// restart), else the file's zone; either with its stored IXFR journal when one leads to it.
/// Replaying is idempotent: the stored files are only read.
pub fn with_stored_updates(loaded: Zone, zone_file: &Path, dir: &Path, max_bytes: usize) -> Zone {
    let bytes = std::fs::read(zone_file).unwrap_or_default();
    let zone = match load_updated(dir, &loaded, &bytes) {
        Ok(Some(updated)) => {
            tracing::info!(zone = %loaded.name(), file_serial = loaded.soa().serial, serial = updated.soa().serial, "serving the zone as updated (RFC 2136) from {}", updated_path(dir, loaded.apex()).display());
            updated
        }
        Ok(None) => loaded,
        Err(e) => {
            tracing::warn!(zone = %loaded.name(), "not using the stored updates {}: {e}", updated_path(dir, loaded.apex()).display());
            loaded
        }
    };
    with_stored_journal(zone, dir, max_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::successor;

    fn zone(serial: u32, body: &str) -> Zone {
        let text =
            format!("$TTL 300\n@ SOA ns h {serial} 3600 600 86400 60\n@ NS ns\nns A 192.0.2.1\n{body}");
        Zone::from_text("example.com", &text).unwrap()
    }

    fn versions() -> Zone {
        let v1 = zone(1, "a A 192.0.2.1\n");
        let v2 = successor(Some(&v1), zone(2, "a A 192.0.2.2\nb TXT \"x y\"\n"), 1 << 20);
        successor(Some(&v2), zone(3, "b TXT \"x y\"\nc A 192.0.2.3\n"), 1 << 20)
    }

    #[test]
    fn round_trip_and_every_way_it_is_refused() {
        let v3 = versions();
        let text = journal_text(&v3);
        let back = journal_from_text(&text, &v3, 1 << 20).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back.since(1), v3.journal().since(1));

        // The same version loaded from a file with its records in another order: still ours.
        let reordered = zone(3, "c A 192.0.2.3\nb TXT \"x y\"\n");
        assert_eq!(journal_from_text(&text, &reordered, 1 << 20).unwrap().len(), 2);
        // The file moved on while we were down / edited without a serial bump.
        let v4 = zone(4, "b TXT \"x y\"\n");
        assert!(matches!(
            journal_from_text(&text, &v4, 1 << 20),
            Err(JournalFileError::Stale { journal: 3, zone: 4 })
        ));
        let edited = zone(3, "b TXT \"x y\"\nc A 192.0.2.33\n");
        assert!(matches!(
            journal_from_text(&text, &edited, 1 << 20),
            Err(JournalFileError::Changed { serial: 3 })
        ));
        // Another zone's journal.
        let other =
            Zone::from_text("example.org", "@ 300 SOA ns h 3 1 1 1 1\n@ NS ns\nns A 192.0.2.1\n").unwrap();
        assert!(matches!(journal_from_text(&text, &other, 1 << 20), Err(JournalFileError::Corrupt(_))));

        // Truncated anywhere (at a line end too) or one byte changed: refused.
        for cut in [0, 10, text.len() / 3, text.len() / 2, text.len() - 30] {
            let cut = text[..cut].rfind('\n').map(|i| i + 1).unwrap_or(cut);
            assert!(journal_from_text(&text[..cut], &v3, 1 << 20).is_err(), "cut at {cut}");
        }
        let mut bad = text.clone().into_bytes();
        let i = text.find("192.0.2.2").unwrap();
        bad[i + 8] = b'9';
        assert!(matches!(
            journal_from_text(std::str::from_utf8(&bad).unwrap(), &v3, 1 << 20),
            Err(JournalFileError::Corrupt("checksum mismatch"))
        ));

        // An empty journal round-trips too.
        let v1 = zone(1, "a A 192.0.2.1\n");
        assert_eq!(journal_from_text(&journal_text(&v1), &v1, 1 << 20).unwrap().len(), 0);
    }

    #[test]
    fn saved_and_loaded_from_disk() {
        let dir = appnet_netkit::harness::TempDir::new("dns-store-unit");
        let v3 = versions();
        let file = journal_path(dir.path(), v3.apex());
        assert!(file.ends_with("example.com.zone.journal"));
        assert!(load_journal(&file, &v3, 1 << 20).unwrap().is_none(), "none yet");
        save_journal(&file, &v3).unwrap();
        let fresh = zone(3, "b TXT \"x y\"\nc A 192.0.2.3\n");
        let z = with_stored_journal(fresh.clone(), dir.path(), 1 << 20);
        assert_eq!(z.journal().len(), 2);
        std::fs::write(&file, "garbage\n").unwrap();
        assert_eq!(with_stored_journal(fresh, dir.path(), 1 << 20).journal().len(), 0);
    }
}
