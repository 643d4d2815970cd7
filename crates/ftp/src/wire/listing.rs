//! The formats directory listings and file facts travel in: the `ls -l` line of LIST (what
//! lftp, curl, wget and browsers parse), the bare names of NLST, RFC 3659 MLSx facts, and the
//! MDTM/`modify` timestamp (`YYYYMMDDHHMMSS`, UTC).

/// What kind of directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (listed, never followed).
    Link,
    /// Anything else (sockets, devices, fifos).
    Other,
}

/// One directory entry's facts, as the file system gave them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The name within its directory.
    pub name: String,
    /// File, directory, link.
    pub kind: Kind,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, seconds since the Unix epoch.
    pub mtime: i64,
    /// Permission bits (the low 12 bits of st_mode).
    pub mode: u32,
    /// Hard links.
    pub nlink: u64,
    /// Where a link points (shown by LIST as `name -> target`).
    pub target: Option<String>,
}

const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// A UTC calendar date and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    /// Year (e.g. 2026).
    pub year: i64,
    /// Month 1-12.
    pub month: u32,
    /// Day 1-31.
    pub day: u32,
    /// Hour, minute, second.
    pub hms: (u32, u32, u32),
}

/// Seconds since the epoch → UTC date and time (Howard Hinnant's civil_from_days).
pub fn datetime(secs: i64) -> DateTime {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    DateTime { year, month, day, hms: (rem / 3600, rem / 60 % 60, rem % 60) }
}

/// `YYYYMMDDHHMMSS` (MDTM's 213 reply and the MLSx `modify` fact).
pub fn timeval(secs: i64) -> String {
    let d = datetime(secs);
    let (h, m, s) = d.hms;
    format!("{:04}{:02}{:02}{h:02}{m:02}{s:02}", d.year.clamp(0, 9999), d.month, d.day)
}

/// One `ls -l` line: `drwxr-xr-x 2 ftp ftp 4096 Mar 05 14:10 name`. Entries from the last
/// six months show the time, older ones (or future ones) the year, as ls does.
pub fn list_line(e: &Entry, now_secs: i64) -> String {
    let kind = match e.kind {
        Kind::Dir => 'd',
        Kind::Link => 'l',
        Kind::File => '-',
        Kind::Other => '?',
    };
    let mut perms = String::with_capacity(9);
    for shift in [6, 3, 0] {
        let bits = (e.mode >> shift) & 7;
        perms.push(if bits & 4 != 0 { 'r' } else { '-' });
        perms.push(if bits & 2 != 0 { 'w' } else { '-' });
        perms.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    let d = datetime(e.mtime);
    let month = MONTHS[(d.month as usize).clamp(1, 12) - 1];
    let recent = e.mtime <= now_secs.saturating_add(3600) && now_secs.saturating_sub(e.mtime) < 183 * 86_400;
    let when = if recent {
        format!("{month} {:02} {:02}:{:02}", d.day, d.hms.0, d.hms.1)
    } else {
        format!("{month} {:02}  {}", d.day, d.year)
    };
    let mut line =
        format!("{kind}{perms} {:>3} ftp      ftp      {:>12} {when} {}", e.nlink.max(1), e.size, e.name);
    if let (Kind::Link, Some(t)) = (e.kind, &e.target) {
        line.push_str(" -> ");
        line.push_str(t);
    }
    line
}

/// RFC 3659 facts for MLSD lines and MLST replies, followed by a space and `name`.
/// `writable` says whether this session may change the entry (the `perm` fact).
pub fn mlsx_facts(e: &Entry, name: &str, cdir: bool, writable: bool) -> String {
    let kind = match (cdir, e.kind) {
        (true, _) => "cdir",
        (false, Kind::Dir) => "dir",
        (false, Kind::File) => "file",
        (false, Kind::Link) => "OS.unix=symlink",
        (false, Kind::Other) => "OS.unix=special",
    };
    let perm = match (e.kind, writable) {
        (Kind::Dir, true) => "elcmfp",
        (Kind::Dir, false) => "el",
        (Kind::File, true) => "radfw",
        (Kind::File, false) => "r",
        _ => "",
    };
    let mut s = format!("type={kind};");
    if e.kind == Kind::File {
        s.push_str(&format!("size={};", e.size));
    }
    s.push_str(&format!("modify={};perm={perm};UNIX.mode=0{:o}; {name}", timeval(e.mtime), e.mode & 0o7777));
    s
}

/// Whether a name holds shell wildcards (`*`, `?`, `[`).
pub fn is_glob(name: &str) -> bool {
    name.contains(['*', '?', '['])
}

/// Shell-style matching of one name: `*` any run, `?` one byte, `[abc]`/`[a-z]`/`[!x]` a set.
/// Iterative with one backtrack point, so no pattern costs more than O(pattern × name).
pub fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p, n));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    n += 1;
                    continue;
                }
                b'[' => match class(&pattern[p..], name[n]) {
                    Some((true, len)) => {
                        p += len;
                        n += 1;
                        continue;
                    }
                    // An unclosed `[` is an ordinary byte.
                    None if name[n] == b'[' => {
                        p += 1;
                        n += 1;
                        continue;
                    }
                    _ => {}
                },
                c if c == name[n] => {
                    p += 1;
                    n += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                p = sp + 1;
                n = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A `[...]` set at the start of `pat`: whether `c` matches, and the set's length. `None` if
/// the bracket is not closed (then `[` is an ordinary byte that did not match).
fn class(pat: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(pat.get(1), Some(b'!') | Some(b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < pat.len() {
        if pat[i] == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if i + 2 < pat.len() && pat[i + 1] == b'-' && pat[i + 2] != b']' {
            matched |= pat[i] <= c && c <= pat[i + 2];
            i += 3;
        } else {
            matched |= pat[i] == c;
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, mtime: i64) -> Entry {
        Entry { name: name.into(), kind: Kind::File, size: 1234, mtime, mode: 0o644, nlink: 1, target: None }
    }

    #[test]
    fn calendar_dates() {
        assert_eq!(timeval(0), "19700101000000");
        assert_eq!(timeval(951_782_400), "20000229000000");
        assert_eq!(timeval(1_780_000_000), "20260528202640");
        assert_eq!(datetime(-1).year, 1969);
    }

    #[test]
    fn list_lines_look_like_ls() {
        let now = 1_780_000_000;
        assert_eq!(
            list_line(&file("a b.txt", now - 60), now),
            "-rw-r--r--   1 ftp      ftp              1234 May 28 20:25 a b.txt"
        );
        let old = list_line(&file("old", 951_782_400), now);
        for extreme in [i64::MIN, i64::MAX, -1] {
            assert!(!list_line(&file("x", extreme), now).is_empty());
            assert!(timeval(extreme).len() >= 14);
        }
        assert!(old.ends_with("Feb 29  2000 old"), "{old}");
        let dir = Entry { kind: Kind::Dir, mode: 0o755, ..file("pub", now) };
        assert!(list_line(&dir, now).starts_with("drwxr-xr-x"));
    }

    #[test]
    fn mlsx_facts_per_kind() {
        let f = file("x", 0);
        assert_eq!(
            mlsx_facts(&f, "x", false, false),
            "type=file;size=1234;modify=19700101000000;perm=r;UNIX.mode=0644; x"
        );
        let d = Entry { kind: Kind::Dir, mode: 0o755, ..file("d", 0) };
        assert!(mlsx_facts(&d, ".", true, true).starts_with("type=cdir;modify="));
    }

    #[test]
    fn globs_match_like_the_shell() {
        let m = |p: &str, n: &str| glob_match(p.as_bytes(), n.as_bytes());
        assert!(m("*.txt", "a.txt") && m("*.txt", ".txt") && !m("*.txt", "a.txt.gz"));
        assert!(m("f?.bin", "f1.bin") && !m("f?.bin", "f10.bin"));
        assert!(m("[ab]*", "apple") && !m("[!ab]*", "apple") && m("[a-c]x", "bx"));
        assert!(m("*", "") && m("a*b*c", "aXbYc") && !m("a*b*c", "aXbY"));
        assert!(!m("[abc", "a") && m("[abc", "[abc"));
        assert!(is_glob("*.txt") && !is_glob("plain"));
        // Pathological patterns stay cheap.
        let long = "a".repeat(5000);
        assert!(!m(&"*a".repeat(200), &(long + "b")));
    }
}
