//! The few RFC 5322 header operations the server does itself: dates, finding a header in a
//! message's header section, and the header lines it adds (Received, Date, Message-ID).

use std::time::SystemTime;

/// An RFC 5322 date-time in UTC, e.g. `Sun, 06 Dec 2026 12:24:44 +0000`.
pub fn rfc5322_date(t: SystemTime) -> String {
    let http = httpdate::fmt_http_date(t);
    match http.strip_suffix(" GMT") {
        Some(base) => format!("{base} +0000"),
        None => http,
    }
}

/// The header section of `message` (up to the first empty line, or all of it).
pub fn header_section(message: &[u8]) -> &[u8] {
    for pat in [&b"\r\n\r\n"[..], b"\n\n"] {
        if message.starts_with(&pat[pat.len() / 2..]) {
            return &[];
        }
        if let Some(i) = message.windows(pat.len()).position(|w| w == pat) {
            return &message[..i + pat.len() / 2];
        }
    }
    message
}

/// Whether the header section has a field named `name` (case-insensitive).
pub fn has_header(message: &[u8], name: &str) -> bool {
    header_value(message, name).is_some()
}

/// The first value of field `name` (unfolded, trimmed), if present.
pub fn header_value(message: &[u8], name: &str) -> Option<String> {
    let headers = header_section(message);
    let mut lines = headers.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        if !line[..colon].eq_ignore_ascii_case(name.as_bytes()) {
            continue;
        }
        let mut value = String::from_utf8_lossy(&line[colon + 1..]).trim().to_string();
        while let Some(next) = lines.peek() {
            if next.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                let next = lines.next().unwrap_or_default();
                let next = next.strip_suffix(b"\r").unwrap_or(next);
                value.push(' ');
                value.push_str(String::from_utf8_lossy(next).trim());
            } else {
                break;
            }
        }
        return Some(value);
    }
    None
}

/// The `Received:` trace field (RFC 5321 §4.4) a server prepends.
#[allow(clippy::too_many_arguments)]
pub fn received(
    helo: &str,
    peer: std::net::IpAddr,
    hostname: &str,
    protocol: &str,
    id: &str,
    single_rcpt: Option<&str>,
    now: SystemTime,
) -> String {
    let helo: String = helo.chars().filter(|c| c.is_ascii_graphic()).take(255).collect();
    let mut s =
        format!("Received: from {helo} ([{peer}])\r\n\tby {hostname} (appnet) with {protocol} id {id}");
    if let Some(r) = single_rcpt {
        s.push_str(&format!("\r\n\tfor <{r}>"));
    }
    s.push_str(&format!("; {}\r\n", rfc5322_date(now)));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_headers_only_in_the_header_section() {
        let m = b"Subject: hi\r\nX-Long: a\r\n b\r\n\r\nDate: not a header\r\n";
        assert_eq!(header_value(m, "subject").as_deref(), Some("hi"));
        assert_eq!(header_value(m, "x-long").as_deref(), Some("a b"));
        assert!(!has_header(m, "Date"));
        assert!(!has_header(b"\r\nDate: x\r\n", "date"));
        assert!(has_header(b"date: x\n", "Date"));
    }

    #[test]
    fn dates_are_rfc5322() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        assert_eq!(rfc5322_date(t), "Sun, 09 Sep 2001 01:46:40 +0000");
        let r = received(
            "crepes.fr",
            [127, 0, 0, 1].into(),
            "mail.hamburger.edu",
            "ESMTP",
            "abc",
            Some("bob@hamburger.edu"),
            t,
        );
        assert!(r.starts_with("Received: from crepes.fr ([127.0.0.1])\r\n\tby mail.hamburger.edu"));
        assert!(r.ends_with("+0000\r\n"));
    }
}
