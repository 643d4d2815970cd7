//! Replies (RFC 959 §4.2): a three-digit code and text; several lines are sent as
//! `211-first`, indented middle lines, and `211 last`.

/// One reply to a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The text, one entry per line (at least one).
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply.
    pub fn new(code: u16, text: impl Into<String>) -> Reply {
        Reply { code, lines: vec![text.into()] }
    }

    /// A multi-line reply: `first` on the code line, `body` lines between, `last` closing.
    pub fn multi(code: u16, first: impl Into<String>, body: Vec<String>, last: impl Into<String>) -> Reply {
        let mut lines = Vec::with_capacity(body.len() + 2);
        lines.push(first.into());
        lines.extend(body);
        lines.push(last.into());
        Reply { code, lines }
    }

    /// The reply's bytes on the control connection. Line breaks inside a text are removed
    /// (a file name must not be able to forge a reply line); middle lines that begin with a
    /// digit get a leading space so no client reads them as the end of the reply.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.encode_into(&mut out);
        out
    }

    /// Appends the reply's bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let code = self.code.min(999);
        let n = self.lines.len();
        if n <= 1 {
            let text = self.lines.first().map(String::as_str).unwrap_or("");
            out.extend_from_slice(format!("{code} {}\r\n", clean(text)).as_bytes());
            return;
        }
        for (i, line) in self.lines.iter().enumerate() {
            let line = clean(line);
            if i == 0 {
                out.extend_from_slice(format!("{code}-{line}\r\n").as_bytes());
            } else if i == n - 1 {
                out.extend_from_slice(format!("{code} {line}\r\n").as_bytes());
            } else if line.starts_with(|c: char| c.is_ascii_digit()) {
                out.extend_from_slice(format!(" {line}\r\n").as_bytes());
            } else {
                out.extend_from_slice(format!("{line}\r\n").as_bytes());
            }
        }
    }
}

/// Quotes a path for 257 replies (RFC 959 Appendix II: a `"` inside is doubled).
pub fn quote_path(path: &str) -> String {
    format!("\"{}\"", path.replace('"', "\"\""))
}

fn clean(text: &str) -> String {
    text.chars().map(|c| if c == '\r' || c == '\n' || c == '\0' { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multi_line_forms() {
        assert_eq!(Reply::new(200, "OK").encode(), b"200 OK\r\n");
        let r = Reply::multi(211, "Features:", vec![" UTF8".into(), "213 trick".into()], "End");
        assert_eq!(r.encode(), b"211-Features:\r\n UTF8\r\n 213 trick\r\n211 End\r\n");
    }

    #[test]
    fn line_breaks_in_text_cannot_forge_replies() {
        let r = Reply::new(550, "no\r\n230 logged in");
        assert_eq!(r.encode(), b"550 no  230 logged in\r\n");
        assert_eq!(quote_path("/a\"b"), "\"/a\"\"b\"");
    }
}
