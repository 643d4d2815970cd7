//! Message flags as Maildir stores them: the letters after `:2,` in a file name (`D` draft,
//! `F` flagged, `P` passed, `R` replied, `S` seen, `T` trashed), lower-case letters for
//! keywords named in the folder's `dovecot-keywords` file (`0 Junk` = `a`, ...).

use std::path::Path;

/// IMAP system flags and their Maildir letters (RFC 3501 §2.3.2).
pub const SYSTEM: [(u8, &str); 5] =
    [(b'D', "\\Draft"), (b'F', "\\Flagged"), (b'R', "\\Answered"), (b'S', "\\Seen"), (b'T', "\\Deleted")];

/// The keyword names of a folder, index = letter - 'a'.
pub const KEYWORDS_FILE: &str = "dovecot-keywords";

/// A folder's keyword table (at most 26 keywords, one per lower-case letter).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Keywords(pub Vec<String>);

impl Keywords {
    /// Reads `dir/dovecot-keywords` (missing = none).
    pub fn load(dir: &Path) -> Keywords {
        let text = std::fs::read_to_string(dir.join(KEYWORDS_FILE)).unwrap_or_default();
        let mut names: Vec<String> = Vec::new();
        for line in text.lines() {
            let Some((i, name)) = line.split_once(' ') else { continue };
            let Ok(i) = i.parse::<usize>() else { continue };
            if i < 26 && !name.is_empty() {
                if names.len() <= i {
                    names.resize(i + 1, String::new());
                }
                names[i] = name.to_string();
            }
        }
        Keywords(names)
    }

    /// Writes the table crash-safely.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let mut out = String::new();
        for (i, n) in self.0.iter().enumerate() {
            if !n.is_empty() {
                out.push_str(&format!("{i} {n}\n"));
            }
        }
        appnet_netkit::files::write_atomic(&dir.join(KEYWORDS_FILE), out.as_bytes())
    }

    /// The letter of `name`, adding it when there is room (`None` when all 26 are used).
    pub fn letter_for(&mut self, name: &str, add: bool) -> Option<u8> {
        if let Some(i) = self.0.iter().position(|n| n.eq_ignore_ascii_case(name)) {
            return Some(b'a' + i as u8);
        }
        if !add {
            return None;
        }
        if let Some(i) = self.0.iter().position(|n| n.is_empty()) {
            self.0[i] = name.to_string();
            return Some(b'a' + i as u8);
        }
        if self.0.len() < 26 {
            self.0.push(name.to_string());
            return Some(b'a' + (self.0.len() - 1) as u8);
        }
        None
    }

    /// Every defined keyword.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter(|n| !n.is_empty()).map(String::as_str)
    }
}

/// The IMAP flags of a Maildir info string (letters after `:2,`).
pub fn imap_flags(info: &str, keywords: &Keywords) -> Vec<String> {
    let mut out = Vec::new();
    for b in info.bytes() {
        if let Some((_, name)) = SYSTEM.iter().find(|(l, _)| *l == b) {
            out.push((*name).to_string());
        } else if b.is_ascii_lowercase()
            && let Some(n) = keywords.0.get((b - b'a') as usize).filter(|n| !n.is_empty())
        {
            out.push(n.clone());
        }
    }
    out
}

/// The Maildir letter of one IMAP flag (`None` for `\Recent` and unknown keywords when the
/// table is full).
pub fn letter(flag: &str, keywords: &mut Keywords, add: bool) -> Option<u8> {
    if let Some((l, _)) = SYSTEM.iter().find(|(_, n)| n.eq_ignore_ascii_case(flag)) {
        return Some(*l);
    }
    if flag.starts_with('\\') {
        return None;
    }
    keywords.letter_for(flag, add)
}

/// `info` with `letters` added or removed (or replaced, keeping letters IMAP does not name,
/// such as `P`), sorted as the Maildir specification asks.
pub fn apply(info: &str, letters: &[u8], mode: Mode) -> String {
    let mut set: Vec<u8> = match mode {
        Mode::Replace => info.bytes().filter(|b| *b == b'P').collect(),
        _ => info.bytes().collect(),
    };
    match mode {
        Mode::Add | Mode::Replace => set.extend_from_slice(letters),
        Mode::Remove => set.retain(|b| !letters.contains(b)),
    }
    set.sort_unstable();
    set.dedup();
    String::from_utf8(set).unwrap_or_default()
}

/// How a STORE changes flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `+FLAGS`
    Add,
    /// `-FLAGS`
    Remove,
    /// `FLAGS`
    Replace,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_and_flags() {
        let mut kw = Keywords(vec!["Junk".into(), "$Forwarded".into()]);
        assert_eq!(imap_flags("FSa", &kw), vec!["\\Flagged", "\\Seen", "Junk"]);
        assert_eq!(letter("\\seen", &mut kw, false), Some(b'S'));
        assert_eq!(letter("$forwarded", &mut kw, false), Some(b'b'));
        assert_eq!(letter("Work", &mut kw, false), None);
        assert_eq!(letter("Work", &mut kw, true), Some(b'c'));
        assert_eq!(letter("\\Recent", &mut kw, true), None);
        assert_eq!(apply("PS", b"FT", Mode::Add), "FPST");
        assert_eq!(apply("FPST", b"T", Mode::Remove), "FPS");
        assert_eq!(apply("FPS", b"D", Mode::Replace), "DP");
    }
}
