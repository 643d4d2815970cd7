//! IMAP wire helpers: command decoding through imap-codec (the one parser of client input,
//! fuzzed), and the small encoders responses are written with (strings as quoted or literal,
//! flag lists, dates).

use imap_codec::decode::Decoder;
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::command::Command;

/// Decodes one complete command (with its literals) as the fragmentizer delivered it.
/// `Err` carries the tag when one could be read, for a tagged `BAD`.
pub fn decode_command(bytes: &[u8]) -> Result<Command<'static>, Option<String>> {
    match imap_codec::CommandCodec::default().decode(bytes) {
        Ok((b"", cmd)) => Ok(cmd.into_static()),
        _ => Err(tag_of(bytes)),
    }
}

/// The tag at the start of a (possibly malformed) command line, when it is a valid tag.
pub fn tag_of(bytes: &[u8]) -> Option<String> {
    let end = bytes.iter().position(|&b| b == b' ' || b == b'\r' || b == b'\n').unwrap_or(bytes.len());
    let tag = &bytes[..end];
    let valid = !tag.is_empty()
        && tag.len() <= 64
        && tag.iter().all(|&b| b.is_ascii_graphic() && !b"(){%*\"\\+".contains(&b) && b != b']');
    if valid { std::str::from_utf8(tag).ok().map(str::to_string) } else { None }
}

/// Appends `s` as an IMAP string: quoted when it is short 7-bit text without CR/LF, else a
/// literal.
pub fn string(out: &mut Vec<u8>, s: &[u8]) {
    let quotable = s.len() < 1024 && s.iter().all(|&b| b != b'\r' && b != b'\n' && b != 0 && b < 0x80);
    if quotable {
        out.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        literal(out, s);
    }
}

/// Appends `{n}\r\n` and the bytes.
pub fn literal(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
    out.extend_from_slice(s);
}

/// Appends an nstring: `NIL` or the string.
pub fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// The IMAP `date-time` of an arrival time: `"06-Dec-2026 12:34:56 +0000"` (UTC).
pub fn date_time(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "\"{d:02}-{}-{y:04} {:02}:{:02}:{:02} +0000\"",
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Month abbreviations as IMAP and RFC 5322 write them.
pub const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Days since 1970-01-01 → (year, month 1-12, day 1-31) (H. Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since 1970-01-01.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The fuzz target's body: splits `data` with the fragmentizer the server uses (a small size
/// cap, so oversized input is exercised too) and decodes every complete command; must never
/// panic.
pub fn fuzz(data: &[u8]) {
    let mut frag = imap_codec::fragmentizer::Fragmentizer::new(4096);
    frag.enqueue_bytes(data);
    for _ in 0..data.len() + 1 {
        if frag.progress().is_none() {
            break;
        }
        if frag.is_message_complete() {
            let _ = decode_command(frag.message_bytes());
            let _ = tag_of(frag.message_bytes());
        }
    }
    let _ = decode_command(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_dates_and_commands() {
        let mut out = Vec::new();
        string(&mut out, b"a \"q\" \\");
        assert_eq!(out, b"\"a \\\"q\\\" \\\\\"");
        out.clear();
        string(&mut out, "caf\u{e9}".as_bytes());
        assert_eq!(out, b"{5}\r\ncaf\xc3\xa9");
        out.clear();
        nstring(&mut out, None);
        assert_eq!(out, b"NIL");
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert_eq!(date_time(t), "\"14-Nov-2023 22:13:20 +0000\"");
        assert_eq!(days_from_civil(2023, 11, 14), 1_700_000_000 / 86_400);
        assert!(decode_command(b"a1 LOGIN bob pw\r\n").is_ok());
        assert_eq!(decode_command(b"a2 FROB\r\n").unwrap_err().as_deref(), Some("a2"));
        assert_eq!(decode_command(b"\xff\r\n").unwrap_err(), None);
        assert!(decode_command(b"a3 SELECT INBOX\r\nextra").is_err());
        for junk in [
            &b"a APPEND x {99999999}\r\n"[..],
            b"* FETCH 1:* (BODY[1.2.3.HEADER.FIELDS (a)]<0.9>)\r\n",
            b"a LOGIN {3+}\r\nabc {1}\r\n",
            b"\r\n\r\n",
            b"a UID SEARCH OR OR OR NOT NOT ALL\r\n",
            &[0xff; 300],
        ] {
            fuzz(junk);
        }
    }
}
