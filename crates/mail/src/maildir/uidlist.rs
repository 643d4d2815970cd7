//! The UID list of a Maildir folder, in Dovecot's `dovecot-uidlist` format (version 3:
//! `3 V<uidvalidity> N<nextuid>` then `<uid> [ext...] :<base name>` per message), so UIDs
//! survive restarts and a Dovecot tree keeps its UIDs (clients keep their caches).

use std::collections::HashMap;

/// The file's name inside each folder.
pub const FILE: &str = "dovecot-uidlist";

/// UIDVALIDITY, the next UID, and the UID of every known base name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UidList {
    /// The folder's UIDVALIDITY (RFC 3501 §2.3.1.1).
    pub validity: u32,
    /// The UID the next new message gets.
    pub next: u32,
    /// Base name (file name without `:2,...`) → UID.
    pub uids: HashMap<String, u32>,
}

impl UidList {
    /// A fresh list for a folder seen for the first time.
    pub fn new(validity: u32) -> UidList {
        UidList { validity: validity.max(1), next: 1, uids: HashMap::new() }
    }

    /// Parses the file's text; `None` when the header is unusable (the list is then rebuilt
    /// with a new UIDVALIDITY, as Dovecot does with a corrupt list).
    pub fn parse(text: &str) -> Option<UidList> {
        let mut lines = text.lines();
        let header = lines.next()?;
        let mut fields = header.split(' ');
        let mut list = match fields.next()? {
            "3" => {
                let mut l = UidList::default();
                for f in fields {
                    if let Some(v) = f.strip_prefix('V') {
                        l.validity = v.parse().ok()?;
                    } else if let Some(n) = f.strip_prefix('N') {
                        l.next = n.parse().ok()?;
                    }
                }
                l
            }
            "1" => {
                let validity = fields.next()?.parse().ok()?;
                let next = fields.next()?.parse().ok()?;
                UidList { validity, next, uids: HashMap::new() }
            }
            _ => return None,
        };
        if list.validity == 0 {
            return None;
        }
        for line in lines {
            let Some((uid, rest)) = line.split_once(' ') else { continue };
            let Ok(uid) = uid.parse::<u32>() else { continue };
            // Version 3 puts the name after " :"; version 1 has it as the only field.
            let base = match rest.find(':') {
                Some(i) if rest[..i].is_empty() || rest[..i].ends_with(' ') => &rest[i + 1..],
                _ => rest.rsplit(' ').next().unwrap_or(rest),
            };
            if uid == 0 || base.is_empty() {
                continue;
            }
            list.next = list.next.max(uid.saturating_add(1));
            list.uids.insert(base.to_string(), uid);
        }
        list.next = list.next.max(1);
        Some(list)
    }

    /// The file's text, messages in UID order.
    pub fn render(&self) -> String {
        let mut entries: Vec<(&u32, &String)> = self.uids.iter().map(|(b, u)| (u, b)).collect();
        entries.sort();
        let mut out = format!("3 V{} N{}\n", self.validity, self.next);
        for (uid, base) in entries {
            out.push_str(&format!("{uid} :{base}\n"));
        }
        out
    }

    /// The UID of `base`, assigning the next one when it is new (returns whether it was).
    pub fn assign(&mut self, base: &str) -> (u32, bool) {
        if let Some(&uid) = self.uids.get(base) {
            return (uid, false);
        }
        let uid = self.next;
        self.next = self.next.saturating_add(1);
        self.uids.insert(base.to_string(), uid);
        (uid, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dovecot_lists_and_round_trips() {
        let text = "3 V1700000000 N5 G3085f01b7f11094c501100008c4a11c1\n1 :1035478339.27041_118.foo.org\n3 W2048 S2000 :1035478340.M1P2.host,S=2000,W=2048\n";
        let l = UidList::parse(text).unwrap();
        assert_eq!(l.validity, 1700000000);
        assert_eq!(l.next, 5);
        assert_eq!(l.uids["1035478339.27041_118.foo.org"], 1);
        assert_eq!(l.uids["1035478340.M1P2.host,S=2000,W=2048"], 3);
        let again = UidList::parse(&l.render()).unwrap();
        assert_eq!(again, l);
        let v1 = UidList::parse("1 42 7\n2 a.b.c\n").unwrap();
        assert_eq!((v1.validity, v1.next, v1.uids["a.b.c"]), (42, 7, 2));
        assert!(UidList::parse("").is_none());
        assert!(UidList::parse("3 V0 N1\n").is_none());
        assert!(UidList::parse("9 junk\n").is_none());
        let mut fresh = UidList::new(9);
        assert_eq!(fresh.assign("x"), (1, true));
        assert_eq!(fresh.assign("y"), (2, true));
        assert_eq!(fresh.assign("x"), (1, false));
    }
}
