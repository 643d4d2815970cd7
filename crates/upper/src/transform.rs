//! The service's whole logic, kept pure so it can be tested and fuzzed without sockets.

/// Upper-cases one request. Valid UTF-8 is upper-cased with Unicode rules ("straße" → "STRASSE");
/// anything else has its ASCII letters upper-cased and every other byte passed through unchanged,
/// so binary input is answered rather than rejected or mangled.
pub fn upper(input: &[u8]) -> Vec<u8> {
    match std::str::from_utf8(input) {
        Ok(text) if text.is_ascii() => input.to_ascii_uppercase(),
        Ok(text) => text.to_uppercase().into_bytes(),
        Err(_) => input.to_ascii_uppercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::upper;

    #[test]
    fn ascii_is_upper_cased() {
        assert_eq!(upper(b"hello, world 42"), b"HELLO, WORLD 42");
    }

    #[test]
    fn unicode_follows_unicode_rules() {
        assert_eq!(upper("straße café".as_bytes()), "STRASSE CAFÉ".as_bytes());
    }

    #[test]
    fn invalid_utf8_keeps_non_ascii_bytes() {
        assert_eq!(upper(b"ab\xff\xfecd"), b"AB\xff\xfeCD");
    }
}
